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
    labels = segments.assign(features[list(segments.features)].to_numpy(dtype=np.float64))
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
        table["recommendations"] = _recommendations(model, model_path, events, features, labels)
    return table, report


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
