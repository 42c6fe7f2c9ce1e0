"""Public run parameters every party reads the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class RunParameterError(ValueError):
    """A public run parameter that cannot be read."""


def as_of(text: str) -> datetime:
    """The run's ``as-of`` (UTC): the time every merchant measures recency from. Empty means
    the next UTC midnight, a date every party computes without looking at any data."""
    if not text:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today + timedelta(days=1)
    try:
        stamp = datetime.fromisoformat(str(text))
    except ValueError:
        raise RunParameterError(
            "run config 'as-of' is not a date (use ISO 8601, e.g. 2025-01-01)"
        ) from None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
