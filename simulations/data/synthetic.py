"""`fedseg generate`: a synthetic federation with planted customer personas.

Customers are drawn from k personas (personas.py); M merchants get heavy-tailed sizes
(lognormal weights) and a Dirichlet(alpha) mix of personas, so a small alpha makes
merchants strongly non-IID. Everything comes from one `np.random.default_rng(seed)`
passed down, so a seed fixes every byte of the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from fedseg.simulations.data.catalogue import make_catalogue, persona_item_cdf
from fedseg.simulations.data.customers import draw_customers
from fedseg.simulations.data.events import AS_OF, draw_views, event_log, expand_events
from fedseg.simulations.data.federation import Federation
from fedseg.simulations.data.personas import make_personas
from fedseg.simulations.data.synthetic_features import feature_table

# Merchant size weights are lognormal(0, MERCHANT_SIZE_SIGMA): a few large, many small.
MERCHANT_SIZE_SIGMA = 1.0


@dataclass(frozen=True)
class GeneratorConfig:
    """Validated `fedseg generate` options."""

    users: int = 20_000
    merchants: int = 10
    segments: int = 5
    alpha: float = 1.0
    kind: str = "events"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.merchants < 1 or self.users < self.merchants:
            raise ValueError(
                f"need merchants >= 1 and users >= merchants, got users={self.users}, "
                f"merchants={self.merchants}"
            )
        if self.segments < 1:
            raise ValueError(f"segments must be >= 1, got {self.segments}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.kind not in ("events", "features"):
            raise ValueError(f"kind must be 'events' or 'features', got {self.kind!r}")


def generate_federation(
    *,
    users: int = 20_000,
    merchants: int = 10,
    segments: int = 5,
    alpha: float = 1.0,
    kind: str = "events",
    seed: int = 0,
) -> Federation:
    """Generate a synthetic federation; same arguments, same tables."""
    config = GeneratorConfig(users, merchants, segments, alpha, kind, seed)
    rng = np.random.default_rng(seed)
    personas = make_personas(segments)
    sizes = merchant_sizes(users, merchants, rng)
    persona = assign_personas(sizes, segments, alpha, rng)
    catalogue = make_catalogue(rng)
    item_cdf = persona_item_cdf(catalogue, personas, rng)
    customers = draw_customers(persona, personas, rng)
    if config.kind == "events":
        views = draw_views(customers, personas, catalogue, item_cdf, rng)
        table = event_log(expand_events(views, customers, personas, rng), catalogue)
    else:
        table = feature_table(customers, personas, catalogue, item_cdf, rng)
    ids = merchant_ids(merchants)
    return Federation(
        merchants=split_by_customer(table, sizes, ids),
        items=catalogue.items,
        truth=pd.DataFrame(
            {
                "merchant_id": np.repeat(ids, sizes),
                "user_id": np.arange(users),
                "segment": persona,
                "persona": np.array([p.name for p in personas])[persona],
            }
        ),
        kind=config.kind,
        as_of=f"{AS_OF}Z",
    )


def merchant_ids(merchants: int) -> list[str]:
    """Zero-padded ids m0..m{M-1} that sort in merchant order."""
    width = len(str(merchants - 1))
    return [f"m{m:0{width}d}" for m in range(merchants)]


def merchant_sizes(users: int, merchants: int, rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed customer counts summing to `users`, each at least 1."""
    weights = rng.lognormal(0.0, MERCHANT_SIZE_SIGMA, merchants)
    return 1 + rng.multinomial(users - merchants, weights / weights.sum())


def assign_personas(
    sizes: np.ndarray, segments: int, alpha: float, rng: np.random.Generator
) -> np.ndarray:
    """Persona of every customer, merchants contiguous; merchant m's mix ~ Dirichlet(alpha)."""
    mixes = rng.dirichlet(np.full(segments, alpha), size=sizes.size)
    counts = rng.multinomial(sizes, mixes)
    persona = np.repeat(np.tile(np.arange(segments), sizes.size), counts.ravel())
    merchant = np.repeat(np.arange(sizes.size), sizes)
    return persona[np.lexsort((rng.random(persona.size), merchant))]


def split_by_customer(
    table: pd.DataFrame, sizes: np.ndarray, ids: list[str]
) -> dict[str, pd.DataFrame]:
    """Cut a table sorted by `user_id` (0..N-1) into merchants of consecutive customers."""
    bounds = np.searchsorted(table["user_id"].to_numpy(), np.cumsum(sizes)[:-1])
    starts, stops = np.r_[0, bounds], np.r_[bounds, len(table)]
    return {
        merchant_id: _drop_unused_emails(table.iloc[start:stop].reset_index(drop=True))
        for merchant_id, start, stop in zip(ids, starts, stops, strict=True)
    }


def _drop_unused_emails(table: pd.DataFrame) -> pd.DataFrame:
    """Keep a merchant's email dictionary to its own customers (Parquet stores it whole)."""
    if "email" not in table.columns:
        return table
    return table.assign(email=table["email"].cat.remove_unused_categories())
