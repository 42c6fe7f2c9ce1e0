"""Experiments over the real apps: one simulated run and its evaluation, sweeps, scenarios, choosing k, metrics."""
