"""A real deployment on one machine: certificates, SuperLink and SuperNode processes, the demo."""
