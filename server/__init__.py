"""fedseg.server."""
