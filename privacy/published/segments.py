"""The published segmentation, as every merchant reads it from model.json, and the one way
a customer is assigned to a segment (by the merchant, locally; by the evaluation)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fedseg.privacy.protocol.schema import FeatureSchema, SchemaError, schema_from_dict
from fedseg.privacy.scaling import FeatureScaling
from threadpoolctl import ThreadpoolController

_BLOCK_DISTANCES = 1 << 17  # distances computed per block (1 MB: larger ones leave the cache)
_SINGLE_THREAD_WORK = 1 << 16  # multiply-adds (rows × d × k) too few for BLAS threads
_BLAS = ThreadpoolController()


class ModelError(ValueError):
    """A model.json that is missing, unreadable or inconsistent (one line naming the field)."""


@dataclass(frozen=True)
class PublishedSegments:
    """What a merchant needs from model.json to label its own customers."""

    scaling: FeatureScaling
    centres: np.ndarray  # (k, d) in the standardized space
    names: tuple[str, ...]
    as_of: str | None = None
    schema: FeatureSchema | None = None  # the run's feature schema (models since issue 16)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "model.json") -> PublishedSegments:
        missing = [name for name in ("scaler", "centroids_standardized") if name not in data]
        if missing:
            raise ModelError(f"{source}: not a fedseg model (no field {missing[0]!r})")
        try:
            scaling = FeatureScaling.from_dict(data["scaler"])
        except KeyError as key:
            raise ModelError(f"{source}: field 'scaler' has no entry {key}") from None
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: field 'scaler': {exc}") from None
        try:
            centres = np.asarray(data["centroids_standardized"], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: field 'centroids_standardized': {exc}") from None
        if centres.ndim != 2 or centres.shape[1] != scaling.dim or not len(centres):
            raise ModelError(
                f"{source}: field 'centroids_standardized' has shape {centres.shape}, "
                f"expected (k, {scaling.dim}) for its {scaling.dim} features"
            )
        if not np.all(np.isfinite(centres)):
            raise ModelError(f"{source}: field 'centroids_standardized' is not finite")
        names = data.get("segment_names") or [f"segment {i + 1}" for i in range(len(centres))]
        if len(names) != len(centres):
            raise ModelError(
                f"{source}: field 'segment_names' does not match the {len(centres)} centres"
            )
        return cls(scaling, centres, tuple(map(str, names)), data.get("as_of"),
                   _schema_of(data, scaling, source))  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> tuple[PublishedSegments, dict]:
        """The segmentation and the whole parsed model.json."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{path}: model file not found") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{path}: not a readable model.json ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise ModelError(f"{path}: not a fedseg model.json")
        return cls.from_dict(data, source=str(path)), data

    @property
    def features(self) -> tuple[str, ...]:
        return self.scaling.names

    def assign(self, features: np.ndarray) -> np.ndarray:
        """Each customer's segment (0-based) from their features in original units."""
        return nearest_centre(self.scaling.transform(features), self.centres)


def _schema_of(
    data: Mapping[str, Any], scaling: FeatureScaling, source: str
) -> FeatureSchema | None:
    """The model's schema, checked against its digest and its scaler's features."""
    if "schema" not in data:
        return None
    try:
        schema = schema_from_dict(data["schema"], source=f"{source}: field 'schema'")
    except (SchemaError, TypeError, AttributeError) as exc:
        raise ModelError(f"{source}: field 'schema': {exc}") from None
    if data.get("schema_digest", schema.digest()) != schema.digest():
        raise ModelError(f"{source}: field 'schema_digest' does not match its schema")
    if schema.names != scaling.names:
        raise ModelError(f"{source}: field 'schema' names other features than 'scaler'")
    return schema


def nearest_centre(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean) for every row of ``z``."""
    labels = np.empty(len(z), dtype=np.int64)
    centre_sq = np.einsum("ij,ij->i", centres, centres)
    # Products this thin (k × d per row) run faster on one BLAS thread: waking the others
    # costs more than they save (BENCHMARKS.md, "Engineering notes"). Blocks of ~1 MB stay
    # in cache (10,000 rows × 160 cells: 3.3 ms against 6.8 ms in 8 MB blocks; each row's
    # distances are the same bits in any block); one product, updated in place.
    chunk = max(1024, _BLOCK_DISTANCES // len(centres))
    # Setting the limit costs ~60 µs, more than a product of a few hundred rows: below
    # _SINGLE_THREAD_WORK multiply-adds OpenBLAS runs one thread by itself (its own
    # threshold is 4 × 65,536), and a GEMM splits rows and columns across threads, never
    # the inner sum, so each distance is the same bits either way.
    small = z.size * len(centres) < _SINGLE_THREAD_WORK
    with contextlib.nullcontext() if small else _BLAS.limit(limits=1, user_api="blas"):
        for start in range(0, len(z), chunk):
            # ‖x−c‖² = ‖x‖² − 2x·c + ‖c‖²; ‖x‖² is the same for every centre.
            distances = z[start : start + chunk] @ (-2.0 * centres.T)
            distances += centre_sq
            labels[start : start + chunk] = np.argmin(distances, axis=1)
    return labels
