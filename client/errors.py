"""The one error type for bad merchant data."""

from __future__ import annotations


class DataError(ValueError):
    """Merchant data that cannot be used: one clear line naming the file, row and/or column.

    Rows are numbered from 1 for the first data row (the line after a CSV header)."""
