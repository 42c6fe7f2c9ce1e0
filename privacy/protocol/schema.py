"""The operator's feature schema: what every merchant computes, in which units and bounds.

The schema is public and the operator's (never one merchant's): per feature a name, a kind
(numeric, count, money, share, categorical), a unit, public bounds — each side may be
"unknown: find privately" — and whether the feature is clustered on ``log1p`` of its value.
Both halves read it: a merchant checks its columns against it and clips to its bounds; the
server plans histograms, range finding and profiles from it. A TOML file::

    [schema]
    name = "cdnow"

    [[feature]]
    name = "spend"
    kind = "money"
    unit = "USD"
    lower = 0
    upper = "unknown"        # found privately (server/ranges.py)
    log = true

A categorical feature lists ``categories`` and becomes one share column per category
(``<name>=<category>``), which sum to 1 for every customer. Numpy and the standard library
only, so the schema sits below both the client and the server.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

KINDS = ("numeric", "count", "money", "share", "categorical")
UNKNOWN = "unknown"
MAX_FEATURES = 1_000  # a schema (and any describe reply checked against it) stays this small


class SchemaError(ValueError):
    """A schema file is malformed, or a merchant's columns disagree with the schema."""


@dataclass(frozen=True)
class Feature:
    """One clustered column. ``lower``/``upper`` of None mean "unknown: find privately"."""

    name: str
    kind: str = "numeric"
    unit: str = ""
    lower: float | None = None
    upper: float | None = None
    log: bool = False
    group: str = ""  # shares of one group sum to 1 per customer (profiles renormalize them)
    description: str = ""

    def __post_init__(self) -> None:
        where = f"feature {self.name!r}"
        if not self.name or self.name != self.name.strip():
            raise SchemaError(f"{where}: name must be non-empty, without surrounding spaces")
        if self.kind not in KINDS or self.kind == "categorical":
            raise SchemaError(f"{where}: kind must be one of {KINDS[:-1]}, got {self.kind!r}")
        for side in ("lower", "upper"):
            value = getattr(self, side)
            if value is not None and not math.isfinite(value):
                raise SchemaError(f"{where}: {side} must be finite or {UNKNOWN!r}")
        if self.lower is not None and self.upper is not None and not self.lower < self.upper:
            raise SchemaError(f"{where}: lower {self.lower} >= upper {self.upper}")
        if self.log and (self.lower is None or self.lower < 0):
            raise SchemaError(f"{where}: a log-scale feature needs a known lower bound >= 0")

    @property
    def bounded(self) -> bool:
        return self.lower is not None and self.upper is not None

    def model_bounds(self) -> tuple[float | None, float | None]:
        """Public bounds on the clustering scale (``log1p`` applied where ``log``)."""
        f = np.log1p if self.log else (lambda v: v)
        return (
            None if self.lower is None else float(f(self.lower)),
            None if self.upper is None else float(f(self.upper)),
        )


@dataclass(frozen=True)
class FeatureSchema:
    """The published list of features, in column order."""

    features: tuple[Feature, ...]
    name: str = ""
    source: str = "<built-in>"  # the file it came from, for messages
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.features:
            raise SchemaError(f"{self.source}: a schema needs at least one feature")
        if len(self.features) > MAX_FEATURES:
            raise SchemaError(f"{self.source}: more than {MAX_FEATURES} features")
        names = [f.name for f in self.features]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise SchemaError(f"{self.source}: feature {duplicate!r} is declared twice")
        self._index.update({n: i for i, n in enumerate(names)})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def dim(self) -> int:
        return len(self.features)

    @property
    def log(self) -> tuple[bool, ...]:
        return tuple(f.log for f in self.features)

    def feature(self, name: str) -> Feature:
        return self.features[self._index[name]]

    def groups(self) -> dict[str, list[int]]:
        """Column indices of each share group (shares that sum to 1 per customer)."""
        out: dict[str, list[int]] = {}
        for i, f in enumerate(self.features):
            if f.group:
                out.setdefault(f.group, []).append(i)
        return out

    def unknown(self) -> np.ndarray:
        """(d, 2) bool: which public bounds (lower, upper) must be found privately."""
        return np.array([[f.lower is None, f.upper is None] for f in self.features])

    def check_columns(self, columns: Sequence[str], *, source: str) -> None:
        """One line naming the merchant's file and the first column that disagrees."""
        have = [str(c) for c in columns if str(c) != "user_id"]
        missing = [n for n in self.names if n not in have]
        if missing:
            raise SchemaError(
                f"{source}: column {missing[0]!r} required by the feature schema "
                f"{self.source} is missing"
            )
        extra = [c for c in have if c not in self._index]
        if extra:
            raise SchemaError(
                f"{source}: column {extra[0]!r} is not in the feature schema {self.source}"
            )

    def check_values(self, x: np.ndarray, *, source: str) -> None:
        """Values a merchant computed must be finite and within any known public bound."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise SchemaError(f"{source}: expected {self.dim} feature columns, got {x.shape}")
        for j, f in enumerate(self.features):
            col = x[:, j]
            if not np.all(np.isfinite(col)):
                raise SchemaError(f"{source}: column {f.name!r} has missing or infinite values")
            if f.log and col.size and col.min() < 0:
                raise SchemaError(f"{source}: column {f.name!r} is log-scale but has negatives")

    def to_model_space(self, x: np.ndarray) -> np.ndarray:
        """Values on the clustering scale: ``log1p`` where flagged, then known bounds clipped."""
        x = np.array(x, dtype=np.float64)
        log = np.asarray(self.log, dtype=bool)
        x[:, log] = np.log1p(np.maximum(x[:, log], 0.0))
        lo, hi = self.model_bounds()
        return np.clip(x, np.where(np.isnan(lo), -np.inf, lo), np.where(np.isnan(hi), np.inf, hi))

    def model_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Known bounds on the clustering scale; NaN where a bound is unknown."""
        pairs = [f.model_bounds() for f in self.features]
        lo = np.array([np.nan if a is None else a for a, _ in pairs])
        hi = np.array([np.nan if b is None else b for _, b in pairs])
        return lo, hi

    def to_dict(self) -> dict:
        return {"schema": {"name": self.name}, "feature": [_feature_dict(f) for f in self.features]}

    def digest(self) -> str:
        """SHA-256 of the canonical schema: describe replies carry it to prove agreement."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_toml(self) -> str:
        lines = ["[schema]", f"name = {json.dumps(self.name)}", ""]
        for f in self.features:
            lines.append("[[feature]]")
            for key, value in _feature_dict(f).items():
                lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)


def _feature_dict(f: Feature) -> dict:
    out = {k: v for k, v in asdict(f).items() if v not in ("", None, False) or k == "name"}
    out["kind"] = f.kind
    out["lower"] = UNKNOWN if f.lower is None else f.lower
    out["upper"] = UNKNOWN if f.upper is None else f.upper
    return out


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return json.dumps(str(value))


def schema_from_dict(data: Mapping, *, source: str = "<dict>") -> FeatureSchema:
    """Parse the TOML structure (``[schema]`` and ``[[feature]]`` tables)."""
    header = data.get("schema", {})
    entries = data.get("feature")
    if not isinstance(entries, list) or not entries:
        raise SchemaError(f"{source}: no [[feature]] tables")
    features: list[Feature] = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise SchemaError(f"{source}: feature #{number} has no name")
        features.extend(_parse_feature(entry, source))
    return FeatureSchema(tuple(features), name=str(header.get("name", "")), source=source)


_KEYS = {"name", "kind", "unit", "lower", "upper", "log", "group", "description", "categories"}


def _parse_feature(entry: Mapping, source: str) -> list[Feature]:
    name = str(entry["name"])
    unknown_keys = sorted(set(entry) - _KEYS)
    if unknown_keys:
        raise SchemaError(f"{source}: feature {name!r}: unknown key {unknown_keys[0]!r}")
    kind = str(entry.get("kind", "numeric"))
    try:
        if kind == "categorical":
            categories = entry.get("categories")
            if not isinstance(categories, list) or len(categories) < 2:
                raise SchemaError(f"feature {name!r}: a categorical feature lists >= 2 categories")
            return [
                Feature(f"{name}={c}", "share", "fraction", 0.0, 1.0, False, name, str(c))
                for c in categories
            ]
        return [
            Feature(
                name,
                kind,
                str(entry.get("unit", "")),
                _bound(entry.get("lower", _default_lower(kind)), name, "lower"),
                _bound(entry.get("upper", 1.0 if kind == "share" else UNKNOWN), name, "upper"),
                bool(entry.get("log", False)),
                str(entry.get("group", "")),
                str(entry.get("description", "")),
            )
        ]
    except SchemaError as exc:
        raise SchemaError(f"{source}: {exc}") from None


def _default_lower(kind: str) -> object:
    return 0.0 if kind in ("count", "money", "share") else UNKNOWN


def _bound(value: object, name: str, side: str) -> float | None:
    if isinstance(value, str) and value.strip().lower() == UNKNOWN:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(f"feature {name!r}: {side} must be a number or {UNKNOWN!r}")
    return float(value)


MAX_SCHEMA_BYTES = 1_000_000  # a schema's TOML text, as a request carries it


def schema_from_toml(text: object, *, source: str) -> FeatureSchema:
    """A schema from its TOML text (SchemaError naming ``source`` if it is not one)."""
    if not isinstance(text, str) or len(text.encode()) > MAX_SCHEMA_BYTES:
        raise SchemaError(
            f"{source}: a feature schema is TOML text of at most {MAX_SCHEMA_BYTES} bytes"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{source}: not a TOML feature schema ({exc})") from None
    return schema_from_dict(data, source=source)


def load_schema(path: str | Path) -> FeatureSchema:
    """A schema from a TOML file, or a built-in one by name (``ecommerce``, ``cdnow``, ...)."""
    from fedseg.privacy.protocol.builtin import BUILTIN_SCHEMAS

    text = str(path)
    if text in BUILTIN_SCHEMAS:
        return BUILTIN_SCHEMAS[text]()
    path = Path(path)
    try:
        text = path.read_text()
    except (FileNotFoundError, IsADirectoryError):
        raise SchemaError(
            f"{path}: feature schema file not found (or a built-in name: "
            f"{', '.join(BUILTIN_SCHEMAS)})"
        ) from None
    return schema_from_toml(text, source=str(path))
