"""Fixed error codes: all a merchant's error reply ever carries.

A merchant that cannot answer replies with one of these codes and nothing else — no
message text, value, row, item id or pseudonym — and writes the details to its own log.
The operator learns which rule stopped the merchant, never anything about its data.
"""

from __future__ import annotations

PREFIX = "fedseg:"
CODES = {
    "budget_exceeded": (4101, "the merchant's own privacy cap does not allow the release"),
    "plan_refused": (4102, "the merchant refused the run's plan (its policy or remaining budget)"),
    "bad_request": (4103, "the merchant found the request malformed or outside the plan"),
    "data_error": (4104, "the merchant's data or settings could not be used"),
    "secagg_protocol": (
        4105,
        "the merchant stopped a secure-aggregation round that broke the rules",
    ),
    "ledger": (4106, "the merchant's privacy ledger is missing or unreadable"),
    "internal": (4199, "the merchant failed (see its own log)"),
}


def reason(name: str) -> str:
    """The text an error reply carries for code ``name``."""
    return PREFIX + name


def describe(text: str | None) -> str:
    """What an error reply's reason means, for the operator's report."""
    name = (text or "").removeprefix(PREFIX)
    if name in CODES:
        return f"{name}: {CODES[name][1]}"
    return "error reply without a fedseg code"
