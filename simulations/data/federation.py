"""A federation of merchant tables, in memory and on disk (docs/contract.md, "A federation on disk").

On disk::

    DIR/merchants/<merchant_id>.csv | .parquet | .db   one table per merchant (events or
                                                 features; .db: a SQLite file)
    DIR/items.csv                                optional catalogue
    DIR/truth.csv                                optional: merchant_id, user_id, segment
    DIR/federation.toml                          optional public run parameters (as_of,
                                                 features: a built-in schema or a TOML file)

`truth.csv` is for evaluation only; no client or server code path reads it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from fedseg.client.loading import DataError
from fedseg.client.sql_sources import SQLITE_SUFFIXES, read_sqlite_file
from fedseg.client.tables import MERCHANT_SUFFIXES
from fedseg.server.config import unknown_key

EVENT_COLUMNS = ("user_id", "timestamp", "event", "item_id", "price")
TRUTH_COLUMNS = ("merchant_id", "user_id", "segment")
KINDS = ("events", "features")
FORMATS = ("auto", "csv", "parquet")
# Above this many rows in total, `fmt="auto"` writes Parquet (CSV is slow and large).
PARQUET_THRESHOLD_ROWS = 1_000_000
FEDERATION_FILE = "federation.toml"
PUBLIC_PARAMETERS = ("as_of", "features")  # what federation.toml may declare


class FederationLayoutError(DataError):
    """A federation directory or table does not follow docs/contract.md (a ValueError)."""


@dataclass(frozen=True)
class Federation:
    """Merchant tables in the CONTRACT schema plus the optional catalogue and ground truth."""

    merchants: dict[str, pd.DataFrame]
    items: pd.DataFrame | None
    truth: pd.DataFrame | None
    kind: str
    as_of: str | None = None  # public run parameter: the time recency is measured from
    features: str | None = None  # the feature schema: a built-in name (privacy/protocol/builtin)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FederationLayoutError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.merchants:
            raise FederationLayoutError("a federation needs at least one merchant")
        for merchant_id, table in self.merchants.items():
            _check_table(table, kind=self.kind, where=f"merchant {merchant_id!r}")
        if self.truth is not None:
            _require_columns(self.truth, TRUTH_COLUMNS, where="truth")

    @property
    def n_users(self) -> int:
        """Distinct customers summed over merchants (a customer is per merchant)."""
        return sum(int(t["user_id"].nunique()) for t in self.merchants.values())


def write_federation(fed: Federation, out_dir: str | Path, *, fmt: str = "auto") -> Path:
    """Write `fed` in the CONTRACT layout under `out_dir` and return the directory.

    `fmt="auto"` picks Parquet when the merchant tables hold more than
    PARQUET_THRESHOLD_ROWS rows in total, CSV otherwise. items.csv and truth.csv are CSV.
    """
    if fmt not in FORMATS:
        raise FederationLayoutError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if fmt == "auto":
        total = sum(len(t) for t in fed.merchants.values())
        fmt = "parquet" if total > PARQUET_THRESHOLD_ROWS else "csv"
    out = Path(out_dir)
    merchant_dir = out / "merchants"
    merchant_dir.mkdir(parents=True, exist_ok=True)
    for merchant_id, table in fed.merchants.items():
        path = merchant_dir / f"{merchant_id}.{fmt}"
        if fmt == "csv":
            table.to_csv(path, index=False)
        else:
            table.to_parquet(path, index=False)
    if fed.items is not None:
        fed.items.to_csv(out / "items.csv", index=False)
    if fed.truth is not None:
        fed.truth.to_csv(out / "truth.csv", index=False)
    parameters = {"as_of": fed.as_of, "features": fed.features}
    lines = [f'{key} = "{value}"\n' for key, value in parameters.items() if value is not None]
    if lines:
        (out / FEDERATION_FILE).write_text("".join(lines))
    return out


def public_parameters(directory: str | Path) -> dict[str, str]:
    """The public run parameters a federation directory declares (federation.toml), as run
    config entries, e.g. {"as-of": "2025-01-01T00:00:00Z", "features": "cdnow"}; a schema
    file is named relative to the directory. None if it has no such file."""
    path = Path(directory) / FEDERATION_FILE
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise FederationLayoutError(f"{path}: not a TOML file ({exc})") from None
    unknown = [unknown_key(key, PUBLIC_PARAMETERS) for key in data if key not in PUBLIC_PARAMETERS]
    if unknown:  # e.g. a misspelt as_of, which would silently leave the default
        raise FederationLayoutError(f"{path}: {'; '.join(unknown)}")
    out = {"as-of": str(data["as_of"])} if "as_of" in data else {}
    if "features" in data:
        features = str(data["features"])
        local = Path(directory) / features
        out["features"] = str(local) if features.endswith(".toml") else features
    return out


def read_federation(directory: str | Path) -> Federation:
    """Read a federation in the CONTRACT layout; FederationLayoutError if it is not one."""
    root = Path(directory)
    merchant_dir = root / "merchants"
    if not merchant_dir.is_dir():
        raise FederationLayoutError(f"{root}: no merchants/ directory (expected {merchant_dir})")
    paths = sorted(p for p in merchant_dir.iterdir() if p.suffix in MERCHANT_SUFFIXES)
    if not paths:
        raise FederationLayoutError(
            f"{merchant_dir}: no .csv, .parquet or SQLite .db merchant files"
        )
    stems = [p.stem for p in paths]
    duplicated = sorted({s for s in stems if stems.count(s) > 1})
    if duplicated:
        raise FederationLayoutError(f"{merchant_dir}: merchant(s) {duplicated} in two formats")
    merchants = {p.stem: _read_table(p) for p in paths}
    kinds = {p.stem: _infer_kind(merchants[p.stem], where=str(p)) for p in paths}
    if len(set(kinds.values())) > 1:
        raise FederationLayoutError(f"{merchant_dir}: mixed events and features tables {kinds}")
    kind = next(iter(kinds.values()))
    if kind == "events":
        merchants = {m: _parse_timestamps(t, where=m) for m, t in merchants.items()}
    items = _read_optional(root / "items.csv", ("item_id", "category", "price"))
    truth = _read_optional(root / "truth.csv", TRUTH_COLUMNS)
    public = public_parameters(root)
    return Federation(merchants=merchants, items=items, truth=truth, kind=kind,
                      as_of=public.get("as-of"), features=public.get("features"))  # fmt: skip


def table_columns(path: Path) -> list[str]:
    """A merchant file's column names, without reading its rows."""
    if path.suffix == ".csv":
        return list(pd.read_csv(path, nrows=0).columns)
    if path.suffix in SQLITE_SUFFIXES:
        return list(read_sqlite_file(path, limit=0).columns)
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix in SQLITE_SUFFIXES:
        return read_sqlite_file(path)
    return pd.read_parquet(path)


def _read_optional(path: Path, required: tuple[str, ...]) -> pd.DataFrame | None:
    if not path.exists():
        return None
    table = pd.read_csv(path)
    _require_columns(table, required, where=str(path))
    return table


def _infer_kind(table: pd.DataFrame, *, where: str) -> str:
    if set(EVENT_COLUMNS) <= set(table.columns):
        return "events"
    _check_table(table, kind="features", where=where)
    return "features"


def _check_table(table: pd.DataFrame, *, kind: str, where: str) -> None:
    if kind == "events":
        _require_columns(table, EVENT_COLUMNS, where=where)
        return
    _require_columns(table, ("user_id",), where=where)
    non_numeric = [
        c for c in table.columns if c != "user_id" and not pd.api.types.is_numeric_dtype(table[c])
    ]
    if non_numeric:
        raise FederationLayoutError(
            f"{where}: not an events table (needs {list(EVENT_COLUMNS)}) and feature column(s) "
            f"{non_numeric} are not numeric"
        )


def _require_columns(table: pd.DataFrame, required: tuple[str, ...], *, where: str) -> None:
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise FederationLayoutError(f"{where}: missing column(s) {missing}")


def _parse_timestamps(table: pd.DataFrame, *, where: str) -> pd.DataFrame:
    if pd.api.types.is_datetime64_any_dtype(table["timestamp"]):
        return table
    try:
        parsed = pd.to_datetime(table["timestamp"], format="ISO8601")
    except (ValueError, TypeError) as err:
        raise FederationLayoutError(f"merchant {where!r}: column 'timestamp': {err}") from err
    return table.assign(timestamp=parsed)
