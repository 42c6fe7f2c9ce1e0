"""Run configuration, parsed once from Flower's run_config into frozen dataclasses.

``SegmentationConfig`` holds the run's own settings and one small part per concern: the
segmentation stages' budget shares, secure aggregation, the recommender, the lifetime value
and the warm start. Every field declares the kebab-case run-config key it is read from
(docs/contract.md); a key that nothing reads is refused, not ignored.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any

NOISE_PLACEMENTS = ("local", "distributed")
RECOMMENDER_MODELS = ("ease", "dpsgd")
# DP-SGD training at each merchant per FedAvg round (client/recommender/dpsgd.py): one epoch
# in Poisson batches of rate DPSGD_SAMPLING_RATE, so round(1 / rate) steps per round.
DPSGD_SAMPLING_RATE, DPSGD_EPOCHS, DPSGD_LEARNING_RATE = 0.1, 1.0, 0.01
AGGREGATIONS = ("sum", "median", "trimmed")
DEFAULT_RECOMMENDER_SHARE = 0.9  # of the run's ε, as benchmarked (docs/recommender.md)
DEFAULT_LIFETIME_SHARE = 0.5  # of the run's ε, as benchmarked (docs/lifetime_value.md)
# What else the one run config Flower gives both apps carries: where the ServerApp writes
# (server/app.py), the simulated merchants' federation, ledgers, cap and hold-out
# (client/merchant.py), the simulation's run id and the simulator's dropout (simulations/).
KEYS_BESIDE_SETTINGS = ("out-dir", "sim-run-id", "sim-data-dir", "sim-state-dir",
                        "sim-epsilon-cap", "sim-holdout-last", "dropout")  # fmt: skip


def setting(key: str, default: Any) -> Any:
    """A field read from the run-config entry ``key``."""
    return field(default=default, metadata={"key": key})


@dataclass(frozen=True)
class StageShares:
    """The segmentation stages' fractions of the segmentation's part of ε (docs/
    segmentation.md); the Lloyd rounds get the remainder."""

    ranges: float = setting("range-share", 0.15)  # private range finding (feature histograms)
    moments: float = setting("moments-share", 0.10)  # means, variances (and Gram when d > 16)
    init: float = setting("init-share", 0.25)  # the candidate cells of the initialization
    profiles: float = setting("profiles-share", 0.10)  # the published per-segment profiles
    square_norm: float = setting("square-norm-share", 0.0)  # > 0: Σ‖z‖² for choose_k's curve

    def __post_init__(self) -> None:
        if min(self.as_dict().values()) < 0 or self.total >= 1:
            raise ValueError(
                "budget shares must be ≥ 0 and leave a positive share for Lloyd rounds"
            )

    def as_dict(self) -> dict[str, float]:
        return {"ranges": self.ranges, "moments": self.moments, "init": self.init,
                "profiles": self.profiles, "square_norm": self.square_norm}  # fmt: skip

    @property
    def total(self) -> float:
        return sum(self.as_dict().values())


@dataclass(frozen=True)
class SecureAggConfig:
    """Secure aggregation (docs/secagg.md): the server sees only the sum of masked replies."""

    enabled: bool = setting("secure-agg", False)
    dropout_tolerance: float = setting("dropout-tolerance", 0.3)  # share that may drop out
    collusion: float = setting("collusion", 0.0)  # share assumed to collude with the server (γ)
    roster: str = setting("secagg-roster", "")  # the pinned roster of merchants' signing keys

    def __post_init__(self) -> None:
        if not 0 <= self.dropout_tolerance < 0.5:
            raise ValueError(f"dropout-tolerance must be in [0, 0.5), got {self.dropout_tolerance}")
        if not 0 <= self.collusion < 0.5:
            raise ValueError(f"collusion must be in [0, 0.5), got {self.collusion}")


@dataclass(frozen=True)
class RecommenderConfig:
    """The recommender fitted after the segmentation (server/recommender/): DP-EASE, or the
    opacus DP-SGD model in FedAvg rounds. ``share`` 0 with it on means
    ``DEFAULT_RECOMMENDER_SHARE``; ``content_share`` of it goes to the content check when the
    catalogue has item attributes, the rest to two releases in equal halves."""

    enabled: bool = setting("recommender", False)
    share: float = setting("recommender-share", 0.0)  # of the run's ε
    content_share: float = setting("content-share", 0.1)  # of ``share``: the content check
    model: str = setting("recommender-model", "ease")  # or "dpsgd"
    fedavg_rounds: int = setting("fedavg-rounds", 5)  # FedAvg rounds of the dpsgd model
    items: str = setting("items", "")  # the public item catalogue (CSV with item_id)

    def __post_init__(self) -> None:
        if self.enabled and self.share == 0:
            object.__setattr__(self, "share", DEFAULT_RECOMMENDER_SHARE)
        if self.share < 0:
            raise ValueError(f"recommender-share must be ≥ 0, got {self.share}")
        if self.share >= 1:
            raise ValueError(
                "budget shares: recommender-share must leave a share for the segmentation"
            )
        if self.model not in RECOMMENDER_MODELS:
            raise ValueError(
                f"recommender-model must be one of {RECOMMENDER_MODELS}, got {self.model!r}"
            )
        if self.fedavg_rounds < 1:
            raise ValueError(f"fedavg-rounds must be at least 1, got {self.fedavg_rounds}")
        if not 0 <= self.content_share < 1:
            raise ValueError(f"content-share must be in [0, 1), got {self.content_share}")

    @property
    def dpsgd_steps(self) -> int:
        """DP-SGD steps per merchant per FedAvg round."""
        return max(1, round(DPSGD_EPOCHS / DPSGD_SAMPLING_RATE))


@dataclass(frozen=True)
class LifetimeConfig:
    """BG/NBD + Gamma-Gamma lifetime value per segment (server/lifetime_value.py). ``share``
    0 with it on means ``DEFAULT_LIFETIME_SHARE`` of what the recommender leaves."""

    enabled: bool = setting("lifetime-value", False)
    share: float = setting("lifetime-share", 0.0)  # of the run's ε
    horizon: float = setting("lifetime-horizon", 365.0)  # days the expected purchases look ahead

    def __post_init__(self) -> None:
        if not self.horizon > 0:
            raise ValueError(f"lifetime-horizon must be positive, got {self.horizon}")


@dataclass(frozen=True)
class WarmStart:
    """Earlier models a run builds on (paths of their model.json; "" = none)."""

    centres_from: str = setting("warm-start", "")  # start from its centres and scaler
    statistics_from: str = setting("statistics-from", "")  # reuse its scaler and marginals


def part(config_class: type) -> Any:
    """A field holding one part of the configuration, read from the same run config."""
    return field(default_factory=config_class)


@dataclass(frozen=True)
class SegmentationConfig:
    """Everything the server needs to run one segmentation.

    Budget shares split the run's total ε (zCDP-style): ``recommender.share`` of it goes to
    the recommender, ``lifetime.share`` to the lifetime value, the rest to the segmentation,
    whose stages take ``shares`` of that part; the Lloyd rounds get the remainder.
    """

    k: int = setting("k", 5)
    epsilon: float = setting("epsilon", 1.0)
    delta: float = setting("delta", 1e-6)
    rounds: int = setting("rounds", 2)  # DP Lloyd rounds (two do as well as three: accuracy.md)
    init_rounds: int = setting("init-rounds", 1)
    range_bins: int = setting("range-bins", 96)  # bins per feature of the range histograms
    features: str = setting("features", "ecommerce")  # the operator's schema: TOML file or built-in
    noise: str = setting("noise", "local")
    aggregation: str = setting("aggregation", "sum")  # or "median" / "trimmed": bound influence
    min_clients: int = setting("min-clients", 1)
    expected_nodes: int = setting("expected-nodes", 0)  # wait for this many (0: until stable)
    round_timeout: float = setting("round-timeout", 0.0)  # seconds for replies; 0 = no deadline
    seed: int = setting("seed", -1)  # -1: OS randomness (deployments); ≥ 0: reproducible
    as_of: str = setting("as-of", "")  # public: when recency is measured from ("": next midnight)
    shares: StageShares = part(StageShares)
    secagg: SecureAggConfig = part(SecureAggConfig)
    recommender: RecommenderConfig = part(RecommenderConfig)
    lifetime: LifetimeConfig = part(LifetimeConfig)
    warm_start: WarmStart = part(WarmStart)

    def __post_init__(self) -> None:
        if self.lifetime.enabled and self.lifetime.share == 0:
            share = DEFAULT_LIFETIME_SHARE * (1 - self.recommender.share)  # of what is left
            object.__setattr__(self, "lifetime", replace(self.lifetime, share=share))
        if self.lifetime.share < 0 or 0 < 1 - self.recommender.share <= self.lifetime.share:
            raise ValueError("lifetime-share must be ≥ 0 and leave a share for the segmentation")
        if self.k < 2:
            raise ValueError(f"k must be at least 2 (one segment is no segmentation), got {self.k}")
        if not (self.epsilon > 0):
            raise ValueError(f"epsilon must be positive (or inf), got {self.epsilon}")
        if not (0 < self.delta < 1):
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
        if self.rounds < 1 or self.init_rounds < 1:
            raise ValueError("rounds and init-rounds must be at least 1")
        if self.noise not in NOISE_PLACEMENTS:
            raise ValueError(f"noise must be one of {NOISE_PLACEMENTS}, got {self.noise!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.aggregation != "sum" and self.secagg.enabled:
            raise ValueError(
                "robust aggregation must see each reply; it cannot run with secure-agg"
            )
        if self.noise == "distributed" and not self.secagg.enabled:
            raise ValueError("noise 'distributed' needs secure aggregation (--secure-agg)")
        if self.range_bins < 8:
            raise ValueError(f"range-bins must be at least 8, got {self.range_bins}")
        if self.recommender.model == "dpsgd" and self.noise == "distributed":
            raise ValueError(
                "the dpsgd recommender adds its noise at every local step: use "
                "--noise local (secure aggregation still hides each update)"
            )
        if self.min_clients < 1:
            raise ValueError("min-clients must be at least 1")

    @property
    def lloyd_share(self) -> float:
        return self.segmentation_share * (1.0 - self.shares.total)

    @property
    def segmentation_share(self) -> float:
        return 1.0 - self.recommender.share - self.lifetime.share

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)

    @classmethod
    def defaults(cls) -> dict[str, object]:
        """Every run-config key the configuration reads, with its default."""
        return {f.metadata["key"]: f.default for f in _settings(cls)}

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, object]) -> SegmentationConfig:
        """Read Flower's run_config (kebab-case keys); a key nothing reads is refused."""
        check_keys(run_config, known=(*cls.defaults(), *KEYS_BESIDE_SETTINGS))
        parts = {f.name: f.default_factory(**_read(f.default_factory, run_config))
                 for f in fields(cls) if _is_part(f)}  # fmt: skip
        return cls(**_read(cls, run_config), **parts)


def check_keys(keys: Iterable[str], *, known: Collection[str]) -> None:
    """Refuse run-config keys that nothing reads: one line naming each, with the nearest
    known key when one is close."""
    unknown = [unknown_key(key, known) for key in keys if key not in known]
    if unknown:
        raise ValueError(f"run config: {'; '.join(unknown)}")


def unknown_key(key: str, known: Collection[str]) -> str:
    """``unknown key 'epsilom' (did you mean 'epsilon'?)``, the hint only when one is close."""
    close = difflib.get_close_matches(key, known, n=1)
    return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _is_part(f: Field) -> bool:
    return f.default_factory is not MISSING


def _settings(config_class: type) -> Iterator[Field]:
    for f in fields(config_class):
        yield from _settings(f.default_factory) if _is_part(f) else (f,)


def _read(config_class: type, run_config: Mapping[str, object]) -> dict[str, object]:
    """The fields of ``config_class`` (not its parts) that ``run_config`` sets."""
    return {
        f.name: _coerce(run_config[f.metadata["key"]], f.default)
        for f in fields(config_class)
        if not _is_part(f) and f.metadata["key"] in run_config
    }


def _coerce(value: object, default: object) -> object:
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return str(value)
