"""What leaves a merchant: every message in a traced simulation is scanned for customer data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import assert_no_identifier_sent, assert_no_per_customer_array
from fedseg.client.features import customer_features
from fedseg.privacy.pseudonyms import Pseudonymizer
from fedseg.simulations.data.federation import write_federation
from fedseg.simulations.data.synthetic import generate_federation
from fedseg.simulations.experiments.runner import merchant_files, simulate

DIRTY_CELLS = ("not-a-price-7731", "1999-99-99T99:99", "unheard-of-event", "-41.5")


@pytest.fixture
def traced_run(tmp_path):
    generated = generate_federation(users=600, merchants=3, seed=5)
    for merchant_id, table in generated.merchants.items():  # ids long enough to search for
        table["user_id"] = [f"customer-{merchant_id}-{u}" for u in table["user_id"]]
    fed = write_federation(generated, tmp_path / "fed")
    _add_dirty_merchants(fed, generated.merchants["m0"])
    trace = tmp_path / "trace"
    simulate(
        fed,
        {"k": 3, "epsilon": 1.0, "rounds": 3, "seed": 5, "lifetime-value": True},
        out_dir=tmp_path / "out",
        trace_dir=trace,
        evaluate=False,
    )
    return fed, sorted(trace.iterdir())


def _add_dirty_merchants(fed, table) -> None:
    """m3: every price an e-mail address (the table is unusable); m4: usable, with bad rows."""
    unusable = table.head(200).copy()
    unusable["user_id"] = [f"customer-m3-{u}" for u in range(len(unusable))]
    unusable["price"] = unusable["email"]
    unusable.to_csv(fed / "merchants" / "m3.csv", index=False)
    dirty = table.head(300).copy().astype({"price": object, "timestamp": object, "event": object})
    dirty["user_id"] = [f"customer-m4-{u}" for u in range(len(dirty))]
    for row, (column, cell) in enumerate(zip(("price", "timestamp", "event", "price"),
                                             DIRTY_CELLS, strict=True)):  # fmt: skip
        dirty.loc[row, column] = cell
    dirty.to_csv(fed / "merchants" / "m4.csv", index=False)


def test_every_client_message_is_traced(traced_run):
    _, files = traced_run
    # 4 usable merchants × (describe + plan + ranges + moments + 1 init round + 3 Lloyd rounds
    # + profiles + the two lifetime-value rounds), and the unusable one's error replies
    assert len(files) >= 4 * 11
    assert all(f.stat().st_size > 0 for f in files)
    errors = [f for f in files if _is_error(f.read_bytes())]
    assert errors and all(_error_reason(f.read_bytes()).startswith("fedseg:") for f in errors)


def test_no_identifier_or_customer_vector_leaves_a_merchant(traced_run):
    fed, files = traced_run
    blob = b"".join(f.read_bytes() for f in files)
    sizes = []
    for path in merchant_files(fed)[:3]:  # the generated merchants
        raw = pd.read_csv(path)
        pseudonymizer = Pseudonymizer.for_simulation(path.stem, 5)
        features, _, _ = customer_features(path, pseudonymizer=pseudonymizer)
        assert_no_identifier_sent(blob, raw, features.index)
        rows = features.to_numpy(dtype=np.float64)
        for row in rows[:300]:
            informative = row[row != 0]
            if len(informative) >= 3:  # a customer's vector, as the bytes numpy would send
                assert informative.tobytes() not in blob, "a raw feature row was sent"
        sizes.append(len(rows))
    assert_no_per_customer_array(files, sizes)
    for path in (fed / "merchants" / "m3.csv", fed / "merchants" / "m4.csv"):  # dirty files
        raw = pd.read_csv(path, dtype=str)
        columns = ("user_id", "email", "timestamp", "price")  # the categories name features
        cells = {c for column in columns for c in raw[column].dropna().unique()}
        for cell in sorted(cells | set(DIRTY_CELLS)):
            if len(cell) >= 6:  # shorter cells (3.5, "view") occur in any message by chance
                assert cell.encode() not in blob, f"a cell of {path.name} was sent: {cell!r}"


def _message(data: bytes):
    from flwr.common.serde import message_from_proto
    from flwr.proto.message_pb2 import Message as ProtoMessage

    return message_from_proto(ProtoMessage.FromString(data))


def _is_error(data: bytes) -> bool:
    return _message(data).has_error()


def _error_reason(data: bytes) -> str:
    return _message(data).error.reason
