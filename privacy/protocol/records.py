"""The message codec both apps use: a payload dict ↔ a Flower ``RecordDict``.

Arrays travel raw (privacy/wire.py) in one ArrayRecord ``arrays``; scalars, strings and lists
in one ConfigRecord ``config``. Anything else in a received message is refused, on both
sides alike. This is the one module below the apps that imports Flower.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from fedseg.privacy.wire import array_fields, decode_array
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

RECORDS = ("arrays", "config")


def to_records(payload: Mapping[str, Any]) -> RecordDict:
    """Arrays into the ArrayRecord, everything else into the ConfigRecord."""
    # Filled item by item: ArrayRecord(array_dict=...) builds every Array a second time.
    arrays = ArrayRecord()
    config = {}
    for key, value in payload.items():
        if isinstance(value, np.ndarray):
            arrays[key] = Array(*array_fields(value))
        else:
            config[key] = value
    return RecordDict({"arrays": arrays, "config": ConfigRecord(config)})


def from_records(records: RecordDict) -> dict[str, Any]:
    """The payload back; ValueError on a record this codec never writes."""
    payload: dict[str, Any] = {}
    for name, record in records.items():
        if name == "arrays" and isinstance(record, ArrayRecord):
            payload.update({k: decode_array(a) for k, a in record.items()})
        elif name == "config" and isinstance(record, ConfigRecord):
            payload.update(dict(record))
        else:
            raise ValueError(f"unexpected record {name!r}")
    return payload


def array_bytes(records: RecordDict) -> int:
    """Bytes of the arrays of a message, read before decoding any of them."""
    arrays = records.get("arrays")
    return arrays.count_bytes() if isinstance(arrays, ArrayRecord) else 0
