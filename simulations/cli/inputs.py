"""Checks the `fedseg` commands make before any work: one line naming the flag or file.

A simulation is every merchant at once, so it can read the merchants' tables up front: each
table's load report is shown, and ``--k`` is checked against the customers the federation
really has before a single release is planned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedseg.client.errors import DataError
from fedseg.client.load_report import LoadReport
from fedseg.client.loading import load_merchant_table
from fedseg.client.merchant import as_of_timestamp
from fedseg.privacy.pseudonyms import Pseudonymizer
from fedseg.simulations.data.datasets import DATASETS
from fedseg.simulations.data.federation import public_parameters
from fedseg.simulations.experiments.runner import merchant_files


def parse_epsilon(text: str, *, flag: str = "--epsilon") -> float:
    """A positive ε or ``inf``; anything else names ``flag``."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{flag}: expected a positive number or inf, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"{flag} must be positive or inf, got {text}")
    return value


def check_dataset(name: str, known: tuple[str, ...] = DATASETS) -> None:
    if name not in known:
        raise ValueError(f"--dataset: unknown dataset {name!r}; choose one of {', '.join(known)}")


@dataclass(frozen=True)
class MerchantTable:
    """One merchant file of a federation: its load report, or why it cannot be used."""

    path: Path
    report: LoadReport | None
    problem: str = ""

    @property
    def customers(self) -> int:
        return self.report.n_users if self.report else 0


def inspect_federation(
    data_dir: Path, *, as_of: str = "", strict: bool = False
) -> list[MerchantTable]:
    """Every merchant table loaded as its ClientApp will (same rules and time window).

    ``as_of`` is the run's (default: the federation's, else the next UTC midnight). A table
    that cannot be used is kept with its one-line problem: its merchant sits the run out;
    with ``strict``, a table with any bad row (an unknown event name…) stops the run."""
    public = public_parameters(data_dir)  # a bad federation.toml fails before any table
    when = as_of_timestamp(as_of or public.get("as-of", ""))
    tables = []
    for path in merchant_files(data_dir):
        pseudonymizer = Pseudonymizer.for_simulation(path.stem, 0)  # ids are only counted
        try:
            _, report = load_merchant_table(
                path, pseudonymizer=pseudonymizer, as_of=when, strict=strict
            )
        except DataError as exc:
            if strict:
                raise
            tables.append(MerchantTable(path, None, str(exc)))
            continue
        tables.append(MerchantTable(path, report))
    return tables


def check_k(ks: tuple[int, ...], tables: list[MerchantTable], *, where: str) -> None:
    """Refuse a --k larger than the federation's customers (before any release)."""
    customers = sum(t.customers for t in tables)
    if customers == 0:
        first = next((t.problem for t in tables if t.problem), "")
        raise DataError(f"{where}: no merchant table can be used ({first})")
    if max(ks) > customers:
        raise ValueError(
            f"--k {max(ks)}: {where} has only {customers:,} customers; "
            f"choose --k between 2 and {customers}"
        )
