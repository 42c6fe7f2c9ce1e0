"""Column names of merchant tables, direct identifiers, and how to tell events from features.

See the "Merchant data" section of the user-facing contract: an *events* table has
``user_id, timestamp, event, item_id, price`` (optionally ``category, quantity,
duration_s, rating, session_id, order_id``); a *features* table has ``user_id`` plus
numeric columns. Column names are matched without case, spaces or punctuation
(``" User ID"`` is ``user_id``).

Event names: ``view``, ``cart``, ``purchase``, ``review``, matched without case, spaces or
punctuation (``"Purchase "`` and ``"PURCHASE"`` are purchases), and these aliases:

=========  ===============================================
event      also accepted
=========  ===============================================
view       ``page_view``, ``pageview``, ``product_view``
cart       ``add_to_cart``, ``addtocart``
purchase   ``order``, ``transaction``, ``buy``
review     ``rating``
=========  ===============================================

Any other name (``refund``, ``click``, ``remove_from_cart``) is an unknown event: the row is
dropped and counted, or, with ``strict=True``, the table is refused.
"""

from __future__ import annotations

import re

import pandas as pd
from fedseg.client.errors import DataError

EVENT_NAMES: tuple[str, ...] = ("view", "cart", "purchase", "review")
EVENT_ALIASES: dict[str, str] = {
    "page_view": "view",
    "pageview": "view",
    "product_view": "view",
    "add_to_cart": "cart",
    "addtocart": "cart",
    "order": "purchase",
    "transaction": "purchase",
    "buy": "purchase",
    "rating": "review",
}
EVENT_REQUIRED: tuple[str, ...] = ("user_id", "timestamp", "event", "item_id", "price")
EVENT_OPTIONAL: tuple[str, ...] = (
    "category",
    "quantity",
    "duration_s",
    "rating",
    "session_id",
    "order_id",
)
EVENT_COLUMNS: tuple[str, ...] = EVENT_REQUIRED + EVENT_OPTIONAL
# The Index pandas makes of a list of column names (text, Arrow-backed in pandas 3).
_NAMES_DTYPE = pd.Index(["user_id"]).dtype
# Any of these marks a table as events (then all of EVENT_REQUIRED must be there).
_EVENT_MARKERS = frozenset({"timestamp", "event", "item_id", "category"})

# Direct identifiers: whole (normalized) column names ...
_IDENTIFIER_NAMES = frozenset(
    {
        "name",
        "full_name",
        "fullname",
        "first_name",
        "firstname",
        "last_name",
        "lastname",
        "given_name",
        "middle_name",
        "customer_name",
        "user_name",
        "username",
        "login",
        "street",
        "house_number",
        "zip",
        "zipcode",
        "zip_code",
        "postcode",
        "post_code",
        "postal_code",
        "date_of_birth",
        "birth_date",
        "credit_card",
        "card_number",
        "account_number",
        "tax_id",
        "national_id",
    }
)
# ... and words that make any column an identifier wherever they appear (email_address, client_ip).
_IDENTIFIER_WORDS = frozenset(
    {
        "email",
        "mail",
        "phone",
        "mobile",
        "telephone",
        "tel",
        "fax",
        "address",
        "ip",
        "ipv4",
        "ipv6",
        "surname",
        "ssn",
        "passport",
        "iban",
        "birthdate",
        "birthday",
        "dob",
        "cookie",
        "imei",
        "mac",
    }
)


def normalize_column_name(name: object) -> str:
    """``" E-Mail Address "`` -> ``"e_mail_address"``: lower case, words joined by ``_``."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def canonical_event_name(name: str) -> str | None:
    """``" Add-To-Cart"`` -> ``"cart"``; None for a name that is neither an event nor an alias."""
    key = normalize_column_name(name)
    if key in EVENT_NAMES:
        return key
    return EVENT_ALIASES.get(key)


def is_direct_identifier(column: str) -> bool:
    """True for columns such as ``email``, ``phone``, ``first_name``, ``ip_address``."""
    words = column.split("_")
    joined = column.replace("_", "")
    return (
        column in _IDENTIFIER_NAMES
        or joined in _IDENTIFIER_WORDS
        or any(word in _IDENTIFIER_WORDS for word in words)
    )


def normalize_columns(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """Rename columns to their normalized names; two columns that collide are an error."""
    originals = table.columns.tolist()  # one pass: iterating an Arrow-backed Index is slow
    names = [normalize_column_name(c) for c in originals]
    seen: dict[str, object] = {}
    for original, name in zip(originals, names, strict=True):
        if not name:
            raise DataError(f"{source}: column {original!r} has an empty name")
        if name in seen:
            raise DataError(f"{source}: columns {seen[name]!r} and {original!r} both mean {name!r}")
        seen[name] = original
    columns = table.columns
    if names == originals and columns.name is None and columns.dtype == _NAMES_DTYPE:
        return table  # already normalized (the usual): the frame set_axis would give
    return table.set_axis(names, axis=1)


def detect_kind(columns: list[str], source: str) -> str:
    """``"events"`` or ``"features"`` from the column names; DataError when neither fits."""
    if "user_id" not in columns:
        raise DataError(f"{source}: missing required column 'user_id'")
    if _EVENT_MARKERS & set(columns):
        missing = [c for c in EVENT_REQUIRED if c not in columns]
        if missing:
            raise DataError(
                f"{source}: missing required column {missing[0]!r} for an events table "
                f"(needs {', '.join(EVENT_REQUIRED)})"
            )
        return "events"
    if len(columns) < 2:
        raise DataError(
            f"{source}: only column 'user_id'; expected an events table "
            f"({', '.join(EVENT_REQUIRED)}) or user_id plus numeric feature columns"
        )
    return "features"
