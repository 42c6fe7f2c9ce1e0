"""``fedseg assign``: a merchant labels its own customers from the published model.

Runs entirely at the merchant: the output keeps the merchant's own customer ids, since
nothing here leaves the merchant. Pseudonyms are computed with a throw-away key only
to reuse the validated loading path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from fedseg.client.errors import DataError
from fedseg.client.features import customer_features
from fedseg.client.load_report import LoadReport
from fedseg.client.loading import load_merchant_table
from fedseg.client.tables import read_table
from fedseg.privacy.pseudonyms import Pseudonymizer
from fedseg.privacy.published.identity import check_features, check_identity
from fedseg.privacy.published.segments import PublishedSegments


def assign_segments(
    model_path: str | Path, data: str | Path, *, strict: bool = False
) -> pd.DataFrame:
    """One row per customer: user_id (the merchant's own), segment (1-based), segment_name,
    and ``recommendations`` (top-10 item ids, space-separated) when the model has a recommender."""
    return assign_with_report(model_path, data, strict=strict)[0]


def assign_with_report(
    model_path: str | Path, data: str | Path, *, strict: bool = False
) -> tuple[pd.DataFrame, LoadReport]:
    """``assign_segments`` and the load report of ``data`` (what was kept and dropped).

    A model that is not this data's — other features, another major version of fedseg, a
    schema that no longer matches its digest — is refused with one line, before any
    customer is labelled; ``strict`` refuses a table with bad rows (client/loading.py)."""
    try:
        segments, model = PublishedSegments.load(model_path)
        check_identity(model, source=str(model_path), schema=segments.schema)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    pseudonymizer = Pseudonymizer(os.urandom(32), purpose="assign")
    # The run's features, with recency as the model measured it.
    features, _, report = customer_features(
        data, pseudonymizer=pseudonymizer, schema=segments.schema, as_of=segments.as_of,
        strict=strict,
    )  # fmt: skip
    try:
        check_features(
            segments.scaling, features.columns, source=str(model_path), data=report.source
        )
    except ValueError as exc:
        raise DataError(str(exc)) from None
    values = features[list(segments.features)].to_numpy(dtype=np.float64)
    if segments.schema is not None:
        _check_share_groups(segments.schema, values, source=str(model_path), data=report.source)
    labels = segments.assign(values)
    raw_ids = read_table(data)["user_id"].astype(str).unique()
    own_id = dict(zip(pseudonymizer.pseudonymize(raw_ids), raw_ids, strict=True))
    table = pd.DataFrame(
        {
            "user_id": [own_id[p] for p in features.index],
            "segment": labels + 1,
            "segment_name": [segments.names[i] for i in labels],
        }
    )
    if "recommender" in model:  # top-10 item ids, space-separated, from this merchant's own data
        clean, loaded = load_merchant_table(data, pseudonymizer=pseudonymizer)
        events = clean if loaded.kind == "events" else None
        _check_catalogue(model, events, source=str(model_path), data=report.source)
        table["recommendations"] = _recommendations(model, model_path, events, features, labels)
    return table, report


def _check_share_groups(schema, values: np.ndarray, *, source: str, data: str) -> None:
    """Refuse data none of whose customers falls in a share group of the model (a film
    model's genres for a shop's categories): its features would all be 0, its labels noise."""
    for group, columns in schema.groups().items():
        if values.size and not np.any(values[:, columns] > 0):
            names = ", ".join(schema.names[c] for c in columns[:3])
            raise DataError(
                f"{source}: none of {data}'s customers has any {group} of the model "
                f"({names}, …): the model was made for other data"
            )


def _check_catalogue(model: dict, events, *, source: str, data: str) -> None:
    """Refuse to recommend from a catalogue this merchant sells none of."""
    published = model["recommender"]
    ids = published.get("item_ids") if isinstance(published, dict) else None
    if events is None or not isinstance(ids, list) or not ids:
        return  # a broken section is named by _recommendations
    if not events["item_id"].astype(str).isin({str(i) for i in ids}).any():
        raise DataError(
            f"{source}: field 'recommender': none of {data}'s items is in the model's "
            f"catalogue of {len(ids):,} items: the model was made for other data"
        )


def _recommendations(model: dict, model_path, events, features: pd.DataFrame, labels) -> list:
    """Top-10 items per customer; a broken recommender section is one line naming it."""
    from fedseg.client.recommender.local import recommendations_for

    published = model["recommender"]
    try:
        if not isinstance(published, dict):
            raise TypeError("not a JSON object")
        return recommendations_for(published, events, list(features.index), labels)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{model_path}: field 'recommender': {exc}") from None
