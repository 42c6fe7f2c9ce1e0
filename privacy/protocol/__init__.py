"""Definitions both halves of the protocol read: the operator's feature schema."""
