"""Run configuration, parsed once from Flower's run_config into a frozen dataclass."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

NOISE_PLACEMENTS = ("local", "distributed")
RECOMMENDER_MODELS = ("ease", "dpsgd")
# DP-SGD training at each merchant per FedAvg round (client/recommender/dpsgd.py): one epoch
# in Poisson batches of rate DPSGD_SAMPLING_RATE, so round(1 / rate) steps per round.
DPSGD_SAMPLING_RATE, DPSGD_EPOCHS, DPSGD_LEARNING_RATE = 0.1, 1.0, 0.01
AGGREGATIONS = ("sum", "median", "trimmed")
DEFAULT_RECOMMENDER_SHARE = 0.9  # of the run's ε, as benchmarked (docs/recommender.md)
DEFAULT_LIFETIME_SHARE = 0.5  # of the run's ε, as benchmarked (docs/lifetime_value.md)


@dataclass(frozen=True)
class SegmentationConfig:
    """Everything the server needs to run one segmentation.

    Budget shares split the run's total ε (zCDP-style): ``recommender_share`` of it goes to
    the recommender (``content_share`` of that to the content check when the catalogue has
    item attributes, the rest to two releases in equal halves), ``lifetime_share`` to the
    lifetime value, the rest to the segmentation. The segmentation's stages (docs/
    segmentation.md) take ``range_share``, ``moments_share``, ``init_share``,
    ``profiles_share`` and ``square_norm_share`` of that part; the Lloyd rounds get the
    remainder. With ``recommender`` on, ``recommender_share`` 0 means
    ``DEFAULT_RECOMMENDER_SHARE``.
    """

    k: int = 5
    epsilon: float = 1.0
    delta: float = 1e-6
    rounds: int = 2  # DP Lloyd rounds (two are as good as three: docs/accuracy.md)
    init_rounds: int = 1
    range_bins: int = 96  # bins per feature of the range-finding histograms
    features: str = "ecommerce"  # the operator's feature schema: a TOML file or a built-in name
    noise: str = "local"
    secure_agg: bool = False
    aggregation: str = "sum"  # "sum", or "median" / "trimmed" to bound any merchant's influence
    dropout_tolerance: float = 0.3  # share of merchants that may drop from a secure round
    collusion: float = 0.0  # share of merchants assumed to collude with the server (γ)
    secagg_roster: str = ""  # the federation's pinned roster of merchants' signing keys
    min_clients: int = 1
    expected_nodes: int = 0  # wait for this many merchants before starting (0: until stable)
    round_timeout: float = 0.0  # seconds a round waits for replies; 0 = no deadline
    range_share: float = 0.15  # private range finding (feature histograms)
    moments_share: float = 0.10  # means, variances (and the projection's Gram when d > 16)
    init_share: float = 0.25  # the candidate cells of the initialization
    profiles_share: float = 0.10  # the published per-segment profiles in original units
    square_norm_share: float = 0.0  # > 0: also release Σ‖z‖² (the cost curve of choose_k)
    recommender_share: float = 0.0
    recommender: bool = False  # also fit the DP-EASE recommender (server/recommender/rounds.py)
    content_share: float = 0.1  # of the recommender's share: the DP check of content scoring
    recommender_model: str = "ease"  # or "dpsgd": the opacus neural model, FedAvg rounds
    fedavg_rounds: int = 5  # FedAvg rounds of the dpsgd model
    lifetime_value: bool = False  # also fit BG/NBD + Gamma-Gamma (server/lifetime_value.py)
    lifetime_share: float = 0.0  # of the run's ε; 0 with lifetime-value on = the default
    lifetime_horizon: float = 365.0  # days ahead the published expected purchases look
    items: str = ""  # path of the public item catalogue (CSV with item_id), for the recommender
    seed: int = -1  # -1: OS randomness (deployments); ≥ 0: reproducible simulation
    as_of: str = (
        ""  # public: the time every merchant measures recency from ("" = next UTC midnight)
    )
    warm_start: str = ""  # path of an earlier model.json: start from its centres and scaler
    statistics_from: str = ""  # path of an earlier model.json: reuse its scaler and marginals

    def __post_init__(self) -> None:
        if self.recommender and self.recommender_share == 0:
            object.__setattr__(self, "recommender_share", DEFAULT_RECOMMENDER_SHARE)
        if self.lifetime_value and self.lifetime_share == 0:
            share = DEFAULT_LIFETIME_SHARE * (1 - self.recommender_share)  # of what is left
            object.__setattr__(self, "lifetime_share", share)
        if self.lifetime_share < 0 or 0 < 1 - self.recommender_share <= self.lifetime_share:
            raise ValueError("lifetime-share must be ≥ 0 and leave a share for the segmentation")
        if not self.lifetime_horizon > 0:
            raise ValueError(f"lifetime-horizon must be positive, got {self.lifetime_horizon}")
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
        if self.aggregation != "sum" and self.secure_agg:
            raise ValueError(
                "robust aggregation must see each reply; it cannot run with secure-agg"
            )
        if self.noise == "distributed" and not self.secure_agg:
            raise ValueError("noise 'distributed' needs secure aggregation (--secure-agg)")
        if self.range_bins < 8:
            raise ValueError(f"range-bins must be at least 8, got {self.range_bins}")
        stages = self.stage_shares
        if min(*stages.values(), self.recommender_share) < 0 or sum(stages.values()) >= 1:
            raise ValueError(
                "budget shares must be ≥ 0 and leave a positive share for Lloyd rounds"
            )
        if self.recommender_share >= 1:
            raise ValueError(
                "budget shares: recommender-share must leave a share for the segmentation"
            )
        if self.recommender_model not in RECOMMENDER_MODELS:
            raise ValueError(
                f"recommender-model must be one of {RECOMMENDER_MODELS}, got {self.recommender_model!r}"
            )
        if self.recommender_model == "dpsgd" and self.noise == "distributed":
            raise ValueError(
                "the dpsgd recommender adds its noise at every local step: use "
                "--noise local (secure aggregation still hides each update)"
            )
        if self.fedavg_rounds < 1:
            raise ValueError(f"fedavg-rounds must be at least 1, got {self.fedavg_rounds}")
        if not 0 <= self.content_share < 1:
            raise ValueError(f"content-share must be in [0, 1), got {self.content_share}")
        if not 0 <= self.dropout_tolerance < 0.5:
            raise ValueError(f"dropout-tolerance must be in [0, 0.5), got {self.dropout_tolerance}")
        if not 0 <= self.collusion < 0.5:
            raise ValueError(f"collusion must be in [0, 0.5), got {self.collusion}")
        if self.min_clients < 1:
            raise ValueError("min-clients must be at least 1")

    @property
    def stage_shares(self) -> dict[str, float]:
        """The segmentation stages' fractions of the segmentation's part (Lloyd: the rest)."""
        return {"ranges": self.range_share, "moments": self.moments_share,
                "init": self.init_share, "profiles": self.profiles_share,
                "square_norm": self.square_norm_share}  # fmt: skip

    @property
    def lloyd_share(self) -> float:
        return self.segmentation_share * (1.0 - sum(self.stage_shares.values()))

    @property
    def segmentation_share(self) -> float:
        return 1.0 - self.recommender_share - self.lifetime_share

    @property
    def dpsgd_steps(self) -> int:
        """DP-SGD steps per merchant per FedAvg round."""
        return max(1, round(DPSGD_EPOCHS / DPSGD_SAMPLING_RATE))

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, object]) -> SegmentationConfig:
        """Read Flower's run_config (kebab-case keys); unknown keys are ignored."""
        values = {}
        for f in fields(cls):
            key = f.name.replace("_", "-")
            if key in run_config:
                values[f.name] = _coerce(run_config[key], f.default)
        return cls(**values)


def _coerce(value: object, default: object) -> object:
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return str(value)
