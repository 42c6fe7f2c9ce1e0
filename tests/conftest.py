"""Shared fixtures: small federations written to disk, as merchants would have them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def write_mixture_federation(
    root: Path, *, n: int, d: int, k: int, merchants: int, seed: int, spread: float = 10.0
) -> Path:
    """A features-kind federation: Gaussian blobs, merchant m gets every merchants-th row."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-spread, spread, (k, d))
    labels = rng.integers(k, size=n)
    x = centres[labels] + rng.normal(size=(n, d))
    (root / "merchants").mkdir(parents=True, exist_ok=True)
    truth = []
    for m in range(merchants):
        rows = np.arange(m, n, merchants)
        ids = [f"cust-{m}-{i}" for i in rows]
        table = pd.DataFrame(x[rows], columns=[f"f{j}" for j in range(d)])
        table.insert(0, "user_id", ids)
        table.to_csv(root / "merchants" / f"m{m:02d}.csv", index=False)
        truth.append(
            pd.DataFrame({"merchant_id": f"m{m:02d}", "user_id": ids, "segment": labels[rows]})
        )
    pd.concat(truth).to_csv(root / "truth.csv", index=False)
    return root


@pytest.fixture
def mixture_federation(tmp_path: Path) -> Path:
    return write_mixture_federation(tmp_path / "fed", n=3000, d=4, k=3, merchants=3, seed=7)


def assert_no_identifier_sent(blob: bytes, raw: pd.DataFrame, pseudonyms) -> None:
    """No raw user id, pseudonym or e-mail of this merchant appears in the sent bytes."""
    for user_id in raw["user_id"].astype(str).unique():
        assert user_id.encode() not in blob, f"raw user id {user_id} was sent"
    for pseudonym in list(pseudonyms)[:200]:
        assert pseudonym.encode() not in blob, "a pseudonym was sent"
    for email in raw["email"].dropna().unique()[:200]:
        assert email.encode() not in blob, "an email was sent"


def assert_no_per_customer_array(files, sizes) -> None:
    """No traced array has as many rows as some merchant has customers."""
    for f in files:
        for array in traced_arrays(f.read_bytes()):
            assert array.ndim <= 2 and not set(array.shape) & set(sizes), array.shape


def traced_arrays(data: bytes) -> list[np.ndarray]:
    """Every array in one traced message (``--trace`` writes Flower's protobuf bytes)."""
    from fedseg.privacy.wire import decode_array
    from flwr.app import ArrayRecord
    from flwr.common.serde import message_from_proto
    from flwr.proto.message_pb2 import Message as ProtoMessage

    records = message_from_proto(ProtoMessage.FromString(data)).content.values()
    return [decode_array(a) for r in records if isinstance(r, ArrayRecord) for a in r.values()]
