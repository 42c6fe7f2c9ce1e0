"""A merchant's own privacy policy: what it lets any run spend, whatever the server asks.

Read once from the merchant's node config (or a TOML policy file it names), never from the
run config the server sends: the server cannot pick a merchant's δ, cap, smallest noise
multiplier, DP-SGD sampling or the release kinds it answers.

Node config keys (all optional): ``epsilon-cap`` (lifetime ε, default 1.0), ``delta``
(default 1e-6), ``min-noise-multiplier`` (default 0), ``allowed-releases`` (comma list,
default all), ``dpsgd-sampling-rate`` (0.1), ``dpsgd-epochs`` (1.0), ``collusion`` (the
share of merchants this one assumes may collude with the server, default 0; a secure plan
must assume at least as much), ``max-dropout-tolerance`` (0.45: the most dropouts a secure
round may plan for, which sets how much noise each merchant adds), and
``policy-file`` (a TOML file with the same keys, which the node config overrides).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from fedseg.client.errors import DataError
from fedseg.privacy.releases import KINDS

DEFAULT_EPSILON_CAP = 1.0
DEFAULT_DELTA = 1e-6


class PolicyError(DataError):
    """A merchant's policy setting is missing or invalid (one line naming the key)."""


@dataclass(frozen=True)
class MerchantPolicy:
    epsilon_cap: float = DEFAULT_EPSILON_CAP
    delta: float = DEFAULT_DELTA
    min_noise_multiplier: float = 0.0
    allowed_releases: tuple[str, ...] = KINDS
    dpsgd_sampling_rate: float = 0.1
    dpsgd_epochs: float = 1.0
    collusion: float = 0.0
    max_dropout_tolerance: float = 0.45

    def __post_init__(self) -> None:
        if not self.epsilon_cap > 0:
            raise PolicyError(f"merchant policy: 'epsilon-cap' must be > 0, got {self.epsilon_cap}")
        if not 0 < self.delta < 1:
            raise PolicyError(f"merchant policy: 'delta' must be in (0, 1), got {self.delta}")
        if not (math.isfinite(self.min_noise_multiplier) and self.min_noise_multiplier >= 0):
            raise PolicyError("merchant policy: 'min-noise-multiplier' must be finite and >= 0")
        unknown = sorted(set(self.allowed_releases) - set(KINDS))
        if unknown:
            raise PolicyError(f"merchant policy: 'allowed-releases' names unknown kinds {unknown}")
        if not 0 < self.dpsgd_sampling_rate <= 1:
            raise PolicyError("merchant policy: 'dpsgd-sampling-rate' must be in (0, 1]")
        if not (math.isfinite(self.dpsgd_epochs) and self.dpsgd_epochs > 0):
            raise PolicyError("merchant policy: 'dpsgd-epochs' must be > 0")
        if not 0 <= self.collusion < 0.5:
            raise PolicyError("merchant policy: 'collusion' must be in [0, 0.5)")
        if not 0 <= self.max_dropout_tolerance < 0.5:
            raise PolicyError("merchant policy: 'max-dropout-tolerance' must be in [0, 0.5)")

    @property
    def dpsgd_steps(self) -> int:
        """DP-SGD steps of one local run: epochs / sampling rate, at least one."""
        return max(1, round(self.dpsgd_epochs / self.dpsgd_sampling_rate))

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, object]) -> MerchantPolicy:
        """The policy from a node config, over the policy file it may name."""
        values: dict[str, object] = {}
        policy_file = str(node_config.get("policy-file", ""))
        if policy_file:
            values.update(_read_policy_file(Path(policy_file)))
        values.update({k: v for k, v in node_config.items() if k in _KEYS})
        return cls.from_mapping(values, where="node config")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object], *, where: str) -> MerchantPolicy:
        """Parse kebab-case keys (unknown keys ignored); a bad value names its key."""
        parsed: dict[str, object] = {}
        for key, name in _KEYS.items():
            if key not in values:
                continue
            try:
                parsed[name] = _parse(name, values[key])
            except (TypeError, ValueError):
                raise PolicyError(f"{where}: policy key {key!r} has an unreadable value") from None
        return cls(**parsed)


_KEYS = {f.name.replace("_", "-"): f.name for f in fields(MerchantPolicy)}


def _parse(name: str, value: object) -> object:
    if name == "allowed_releases":
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        return tuple(str(v).strip() for v in items if str(v).strip())
    return float(value)


def _read_policy_file(path: Path) -> dict[str, object]:
    try:
        return dict(tomllib.loads(path.read_text()))
    except OSError:
        raise PolicyError(f"{path}: cannot read the merchant policy file") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not a TOML policy file ({exc})") from None
