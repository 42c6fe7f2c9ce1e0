"""A research scenario: which federation, which privacy settings, which grid of runs.

One frozen dataclass, read from a TOML file (``[scenario]`` table, keys as below) or built
from CLI flags. A scenario expands into grid points (setting × ε × seed); each point is one
``simulate`` run. The federation depends only on the scenario's data options and the seed,
so it is generated once per seed and reused by every ε point and setting.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DATASETS = ("synthetic", "mixture", "cdnow", "ml-100k")
SIZE_DISTRIBUTIONS = ("lognormal", "equal")
NOISE_PLACEMENTS = ("local", "distributed")
BACKENDS = ("inprocess", "ray")
DEFAULT_EPSILONS = (0.1, 0.5, 1.0, 2.0, 4.0, 8.0, math.inf)


class ScenarioError(ValueError):
    """A scenario file or option is invalid; the message names the field."""


@dataclass(frozen=True)
class Setting:
    """One privacy setting of the grid: where noise is added and whether sums are masked."""

    noise: str
    secure_agg: bool

    @property
    def label(self) -> str:
        return self.noise + (" + secure agg" if self.secure_agg else "")


@dataclass(frozen=True)
class GridPoint:
    """One run of the sweep: a setting, a total ε and a seed."""

    setting: Setting
    epsilon: float
    seed: int

    @property
    def point_id(self) -> str:
        """File-name-safe id; stable, so a finished point is found again on resume."""
        eps = "inf" if math.isinf(self.epsilon) else f"{self.epsilon:g}"
        agg = "-secagg" if self.setting.secure_agg else ""
        return f"{self.setting.noise}{agg}_eps{eps}_seed{self.seed}"


@dataclass(frozen=True)
class Scenario:
    """Everything a sweep varies or holds fixed (see docs/simulations.md for each field).

    ``data`` (a federation directory) wins over ``dataset``. ``sizes``, ``alpha`` and
    ``feature_shift`` shape generated federations only (synthetic and mixture).
    """

    name: str = "default"
    dataset: str = "synthetic"
    data: str = ""
    users: int = 20_000
    merchants: int = 10
    segments: int = 5
    sizes: str = "lognormal"
    alpha: float = 1.0
    feature_shift: float = 0.0
    dims: int = 10  # mixture only
    dropout: float = 0.0
    k: int = 5
    rounds: int = 2  # as `fedseg simulate`
    epsilons: tuple[float, ...] = DEFAULT_EPSILONS
    delta: float = 1e-6
    noise: tuple[str, ...] = ("local",)
    secure_agg: tuple[bool, ...] = (False,)
    recommender: bool = False
    seeds: tuple[int, ...] = (0, 1, 2)
    backend: str = "inprocess"

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("sizes", self.sizes, SIZE_DISTRIBUTIONS)
        _check_choice("backend", self.backend, BACKENDS)
        for placement in self.noise:
            _check_choice("noise", placement, NOISE_PLACEMENTS)
        if self.data and not Path(self.data).is_dir():
            raise ScenarioError(f"data: {self.data} is not a federation directory")
        if min(self.users, self.merchants, self.segments, self.k, self.rounds, self.dims) < 1:
            raise ScenarioError("users, merchants, segments, k, rounds and dims must be >= 1")
        if not self.alpha > 0:
            raise ScenarioError(f"alpha must be > 0, got {self.alpha}")
        if not (0 <= self.dropout < 1 and 0 <= self.feature_shift):
            raise ScenarioError("dropout must be in [0, 1) and feature_shift >= 0")
        if not self.epsilons or any(not e > 0 for e in self.epsilons):
            raise ScenarioError(f"epsilons must be positive numbers or inf, got {self.epsilons}")
        if not (0 < self.delta < 1):
            raise ScenarioError(f"delta must be in (0, 1), got {self.delta}")
        if not self.seeds or not self.noise or not self.secure_agg:
            raise ScenarioError("seeds, noise and secure_agg need at least one value each")

    @property
    def settings(self) -> list[Setting]:
        return [Setting(n, s) for n in self.noise for s in self.secure_agg]

    def grid(self) -> list[GridPoint]:
        """Every run, seeds outermost so early results already cover the whole ε range."""
        return [
            GridPoint(setting, eps, seed)
            for seed in self.seeds
            for setting in self.settings
            for eps in self.epsilons
        ]

    def run_config(self, point: GridPoint) -> dict[str, Any]:
        """The Flower run_config of one point (kebab-case keys, as server/config.py reads)."""
        config: dict[str, Any] = {
            "k": self.k,
            "epsilon": point.epsilon,
            "delta": self.delta,
            "rounds": self.rounds,
            "noise": point.setting.noise,
            "secure-agg": point.setting.secure_agg,
            "dropout": self.dropout,
            "seed": point.seed,
        }
        if self.recommender:
            config["recommender"] = True
        return config

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def scenario_from_mapping(values: Mapping[str, Any], *, where: str = "scenario") -> Scenario:
    """Build a Scenario from TOML-like values; lists become tuples, ``"inf"`` a float."""
    known = {f.name: f for f in fields(Scenario)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        try:
            parsed[key] = _parse_field(key, value)
        except (TypeError, ValueError) as exc:
            raise ScenarioError(f"{where}: field {key!r}: {exc}") from None
    try:
        return Scenario(**parsed)
    except ScenarioError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read the ``[scenario]`` table of a TOML file."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{path}: scenario file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML ({exc})") from None
    table = document.get("scenario")
    if not isinstance(table, dict):
        raise ScenarioError(f"{path}: needs a [scenario] table")
    return scenario_from_mapping(table, where=str(path))


def parse_epsilons(text: str | Sequence[Any]) -> tuple[float, ...]:
    """ "0.1,0.5,inf" or a list of numbers/"inf" → floats (inf = no noise)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(float(str(item).strip()) for item in items if str(item).strip())


def _parse_field(key: str, value: Any) -> Any:
    if key == "epsilons":
        return parse_epsilons(value)
    if key == "seeds":
        return tuple(range(value)) if isinstance(value, int) else tuple(int(s) for s in value)
    if key == "noise":
        return (value,) if isinstance(value, str) else tuple(str(v) for v in value)
    if key == "secure_agg":
        return (value,) if isinstance(value, bool) else tuple(_as_bool(v) for v in value)
    default = next(f.default for f in fields(Scenario) if f.name == key)
    if isinstance(default, bool):
        return _as_bool(value)
    if isinstance(default, int):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value}")
        return int(value)
    if isinstance(default, float):
        return float(value)
    return str(value)


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    words = {"on": True, "true": True, "off": False, "false": False}
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise ValueError(f"expected true/false (or on/off), got {value!r}")


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ScenarioError(f"{field} must be one of {choices}, got {value!r}")
