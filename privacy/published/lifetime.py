"""Customer lifetime value: the public cell grid and the BG/NBD and Gamma-Gamma formulas.

Both sides read this module: a merchant puts each customer's (x, t_x, T, m) summary into a
cell of the public grid (the `lifetime_histograms` release) and, given the published model
parameters, computes each customer's expected purchases, P(alive) and expected value (the
`lifetime_sums` release); the server fits the models on the summed cells and publishes the
per-segment figures. The formulas are those of Fader, Hardie & Lee (2005, BG/NBD) and Fader,
Hardie & Lee (2005, Gamma-Gamma) as the `lifetimes` package implements them (x repeat
purchase days, t_x days from the first to the last purchase day, T days from the first
purchase day to the run's as-of, m the mean spend of the repeat purchase days).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, gammaln, hyp2f1

# The grid is schema-level and public: it never depends on any merchant's data.
# Few cells: every empty cell adds noise and each heavy buyer's cell must stand clear of it
# (chosen on CDNOW at ε = 1 among seven grids, docs/lifetime_value.md).
FREQUENCY_EDGES = (0, 1, 2, 3, 4, 6, 9, 14, 21)  # repeat purchase days
FREQUENCY_CAP = 30  # a customer with more repeat days counts in the top cell
AGE_EDGES = tuple(float(v) for v in np.linspace(0.0, 730.0, 6))  # T in days; ≥ 730 in the top
RECENCY_BINS = 6  # t_x / T in equal sixths (customers with x = 0 have t_x = 0: one cell)
SPEND_EDGES = (0, 5, 10, 15, 20, 30, 40, 60, 90, 140, 250, 500)  # mean repeat spend (currency)
# Per segment, customers per bin of their activity: expected purchases in the next 365 days
# under a public prior BG/NBD model, log-spaced to an open top bin. The server sets each
# segment's bound on expected purchases from where its buyers are (server/lifetime_value.py).
# The prior is Fader, Hardie & Lee's (2005) published CDNOW fit, α in days (4.414 weeks): a
# fixed public constant, so the bin depends on the customer's own (x, t_x, T) alone.
ACTIVITY_EDGES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
ACTIVITY_PRIOR = (0.243, 4.414 * 7, 0.793, 2.426)  # (r, α, a, b)


@dataclass(frozen=True)
class LifetimeGrid:
    """Public cells of the two histograms: (T, x, t_x/T) for BG/NBD, (x, m) for Gamma-Gamma."""

    frequency: tuple[int, ...] = FREQUENCY_EDGES
    frequency_cap: int = FREQUENCY_CAP
    age: tuple[float, ...] = AGE_EDGES
    recency_bins: int = RECENCY_BINS
    spend: tuple[float, ...] = SPEND_EDGES
    activity: tuple[float, ...] = ACTIVITY_EDGES

    @property
    def purchase_cells(self) -> int:
        return (len(self.age) - 1) * len(self.frequency) * (self.recency_bins + 1)

    @property
    def spend_cells(self) -> int:
        return len(self.frequency) * len(self.spend)

    @property
    def activity_bins(self) -> int:
        return len(self.activity)

    def activity_bin(self, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> np.ndarray:
        """The bin of each buyer's expected purchases in 365 days under ACTIVITY_PRIOR."""
        x, t_x, age = (np.asarray(v, dtype=np.float64) for v in (x, t_x, age))
        activity = np.nan_to_num(expected_purchases(365.0, ACTIVITY_PRIOR, x, t_x, age))
        return np.searchsorted(self.activity, activity, side="right") - 1

    def purchase_cell(self, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> np.ndarray:
        """The (T, x, t_x/T) cell of each customer."""
        fi = np.searchsorted(self.frequency, np.minimum(x, self.frequency_cap), side="right") - 1
        ai = np.clip(np.searchsorted(self.age, age, side="right") - 1, 0, len(self.age) - 2)
        share = np.divide(t_x, age, out=np.zeros(len(age)), where=age > 0)
        ri = np.where(
            x > 0, 1 + np.minimum((share * self.recency_bins).astype(int), self.recency_bins - 1), 0
        )
        return (ai * len(self.frequency) + fi) * (self.recency_bins + 1) + ri

    def spend_cell(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """The (x, m) cell of each customer with a repeat purchase (x ≥ 1)."""
        fi = np.searchsorted(self.frequency, np.minimum(x, self.frequency_cap), side="right") - 1
        mi = np.clip(np.searchsorted(self.spend, m, side="right") - 1, 0, len(self.spend) - 1)
        return fi * len(self.spend) + mi

    def purchase_representatives(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x, t_x, T) standing for each purchase cell, and which cells can hold anyone
        (x = 0 exactly when t_x/T is in the 'no repeat' column)."""
        freq = _centres(self.frequency, self.frequency_cap)
        ages = (np.asarray(self.age[:-1]) + np.asarray(self.age[1:])) / 2  # T ≥ top: last bin
        a, f, r = np.meshgrid(
            np.arange(len(ages)), np.arange(len(freq)), np.arange(self.recency_bins + 1),
            indexing="ij",
        )  # fmt: skip
        age, x = ages[a.ravel()], freq[f.ravel()]
        r = r.ravel()
        t_x = np.where(r == 0, 0.0, (r - 0.5) / self.recency_bins * age)
        return x, t_x, age, (x == 0) == (r == 0)

    def spend_representatives(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, m) standing for each spend cell, and which can hold anyone (x ≥ 1)."""
        freq, spend = _centres(self.frequency, self.frequency_cap), _centres(self.spend, None)
        f, s = np.meshgrid(np.arange(len(freq)), np.arange(len(spend)), indexing="ij")
        x, m = freq[f.ravel()], spend[s.ravel()]
        return x, m, x >= 1


def _centres(edges: tuple[float, ...], cap: int | None) -> np.ndarray:
    """Cell centres; integer bins use their integers' mean, the open top cell 1.5× its edge
    (or the cap)."""
    lower = np.asarray(edges, dtype=np.float64)
    top = float(cap) if cap is not None else 1.5 * lower[-1]
    if cap is not None:  # integer bins [lo, next lo - 1]
        upper = np.append(lower[1:] - 1, top)
    else:
        upper = np.append(lower[1:], top)
    return (lower + upper) / 2


def bgnbd_log_likelihood(params, x, t_x, age) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood; params = (r, α, a, b)."""
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + age)
    a4 = np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(t_x + alpha)
    return a1 + a2 + np.logaddexp(a3, np.where(x > 0, a4, -np.inf))


def expected_purchases(horizon: float, params, x, t_x, age) -> np.ndarray:
    """E[purchases in the next ``horizon`` days | x, t_x, T] (lifetimes'
    ``conditional_expected_number_of_purchases_up_to_time``)."""
    r, alpha, a, b = params
    z = horizon / (alpha + age + horizon)
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
    first = (a + b + x - 1) / (a - 1)
    second = 1 - hyp * ((alpha + age) / (alpha + horizon + age)) ** (r + x)
    odds = (a / (b + np.maximum(x, 1) - 1)) * ((alpha + age) / (alpha + t_x)) ** (r + x)
    return first * second / (1 + (x > 0) * odds)


def probability_alive(params, x, t_x, age) -> np.ndarray:
    """P(the customer has not dropped out | x, t_x, T); 1 for x = 0, as in BG/NBD."""
    r, alpha, a, b = params
    log_odds = (r + x) * np.log((alpha + age) / (alpha + t_x)) + np.log(
        a / (b + np.maximum(x, 1) - 1)
    )
    return np.where(x == 0, 1.0, expit(-log_odds))


def gamma_gamma_log_likelihood(params, x, m) -> np.ndarray:
    """Per-customer Gamma-Gamma log-likelihood of the mean repeat spend m over x ≥ 1 days;
    params = (p, q, v)."""
    p, q, v = params
    px = p * x
    return (
        gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v)
        + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(x * m + v)
    )  # fmt: skip


def expected_order_value(params, x, m) -> np.ndarray:
    """E[spend per purchase day | x, m]: the population mean p·v/(q − 1) shrunk towards the
    customer's own mean by p·x/(p·x + q − 1) (lifetimes' ``conditional_expected_average_profit``)."""
    p, q, v = params
    weight = p * x / (p * x + q - 1)
    return (1 - weight) * (p * v / (q - 1)) + weight * np.where(x > 0, m, 0.0)
