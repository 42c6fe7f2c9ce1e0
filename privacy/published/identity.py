"""Who made a model.json, and for which features: the stamp the server writes into every
model and the check every reader makes before using one.

Four fields, at the top level of model.json:

- ``fedseg_version``: the fedseg that fitted it; a reader refuses another major version
  (the first number), whose model format or features may differ;
- ``run_id``: the Flower run (``flwr log RUN_ID``) or, in simulations, the simulator's id;
- ``created``: UTC time, ISO 8601 (``2026-12-02T10:00:00Z``);
- ``schema_digest``: the run's ``FeatureSchema.digest()``, which the server writes beside
  the schema itself (server/app.py) and which PublishedSegments checks against that
  schema. It is the model's one fingerprint: the same digest merchants' describe replies
  carry to prove they compute the run's features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fedseg.privacy.protocol.schema import FeatureSchema
from fedseg.privacy.scaling import FeatureScaling

IDENTITY_FIELDS = ("fedseg_version", "run_id", "created", "schema_digest")


class ModelIdentityError(ValueError):
    """A model.json without its identity, or one made for other data or another fedseg."""


@lru_cache(maxsize=1)
def fedseg_version() -> str:
    """The installed fedseg's version (``0+unknown`` when run from an uninstalled tree).

    Read once per process: the package metadata lookup costs ~100 µs, and a simulated
    merchant checks the server's version on every ``describe``."""
    try:
        return version("fedseg")
    except PackageNotFoundError:
        return "0+unknown"


def stamp(*, run_id: str, now: datetime | None = None) -> dict[str, str]:
    """The identity fields of a model fitted now in this run; ``schema_digest`` comes with
    the schema (server/app.py's segmentation_extras)."""
    created = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"fedseg_version": fedseg_version(), "run_id": str(run_id), "created": created}


def check_identity(
    model: Mapping[str, Any], *, source: str, schema: FeatureSchema | None = None
) -> None:
    """Refuse, with one line naming ``source`` and the field, a model that lacks its identity,
    comes from another major version of fedseg, or whose ``schema_digest`` is not that of
    ``schema`` (the model's own, parsed, or the one the reader computes with). Read before
    any data is loaded."""
    for field in IDENTITY_FIELDS:
        if not isinstance(model.get(field), str) or not model[field]:
            raise ModelIdentityError(
                f"{source}: field {field!r} is missing or not text: not a model this fedseg "
                f"wrote (refit it with fedseg {fedseg_version()})"
            )
    theirs, ours = model["fedseg_version"], fedseg_version()
    if not same_major_version(theirs):
        raise ModelIdentityError(
            f"{source}: field 'fedseg_version' is {theirs}, this is fedseg {ours}: a model "
            f"from another major version cannot be read safely; refit it"
        )
    if schema is not None and model["schema_digest"] != schema.digest():
        raise ModelIdentityError(
            f"{source}: field 'schema_digest' does not match the feature schema "
            f"{schema.source}: the model was made for other features, or edited since"
        )


def check_features(
    scaling: FeatureScaling, features: Sequence[str], *, source: str, data: str
) -> None:
    """Refuse a model whose features are not the names ``features`` that ``data`` gives (in
    any order: callers select the model's columns by name)."""
    if set(features) != set(scaling.names):
        raise ModelIdentityError(f"{source}: {_feature_mismatch(scaling.names, features, data)}")


def same_major_version(theirs: str) -> bool:
    """Whether a model or a peer from fedseg ``theirs`` shares this fedseg's major version."""
    return _major(str(theirs)) == _major(fedseg_version())


def _major(text: str) -> str:
    return text.split(".", 1)[0].split("+", 1)[0]


def _feature_mismatch(model: Sequence[str], given: Sequence[str], data: str) -> str:
    missing = [name for name in model if name not in given]
    if missing:
        return f"the model needs feature {missing[0]!r}, which {data} does not give"
    extra = [name for name in given if name not in model]
    return f"{data} gives feature {extra[0]!r}, which the model was not fitted on"
