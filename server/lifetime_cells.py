"""The BG/NBD probability of each public purchase cell, for the grouped-data fit.

A cell of the grid (privacy/published/lifetime.py) holds the customers with T in an age bin,
x in a frequency bin and t_x/T in a recency column. Fitting the per-customer likelihood at one
representative point per cell ignores how the customers spread inside it and biased the fitted
purchase rate (one-time buyers' segments +7 to +10% on CDNOW, BENCHMARKS.md); the grouped
likelihood Σ_cells n_c · log P(cell | T) does not. With T at its bin's midpoint:

    P(x = 0 | T) = (α / (α + T))^r
    P(x, u ≤ t_x < v | T) = B(a, b + x)/B(a, b) · Γ(r + x)/Γ(r) · α^r / (x − 1)!
        · [ (α + T)^-(r+x) (v^x − u^x)/x  +  a/(b + x − 1) · α^-r B(x, r) (I_s(v)(x, r) − I_s(u)(x, r)) ]

with s(t) = t/(α + t) and I the regularized incomplete beta function: the BG/NBD likelihood
(Fader, Hardie & Lee 2005, eq. 3) times the density t_x^(x−1)/(x−1)! of the x − 1 earlier
purchase times, integrated over the recency column (alive at T; or dropped out just after the
x-th purchase), summed over the x of the frequency bin. For every T the cells' probabilities
add up to 1 (less the mass beyond MAX_REPEATS).
"""

from __future__ import annotations

import numpy as np
from fedseg.privacy.published.lifetime import LifetimeGrid
from scipy.special import betainc, betaln, gammaln

MAX_REPEATS = 120  # the open top frequency bin sums x up to this (P(x > 120) is negligible)


def cell_points(grid: LifetimeGrid) -> tuple[np.ndarray, ...]:
    """(cell, x, u, v, T) for every integer x of every possible cell: the terms of its
    probability (u, v the recency column's bounds on t_x, in days)."""
    ages = (np.asarray(grid.age[:-1]) + np.asarray(grid.age[1:])) / 2
    columns, freq = grid.recency_bins + 1, list(grid.frequency)
    rows = []
    for ai, age in enumerate(ages):
        for fi, lowest in enumerate(freq):
            highest = freq[fi + 1] - 1 if fi + 1 < len(freq) else MAX_REPEATS
            first = (ai * len(freq) + fi) * columns
            if lowest == 0:  # x = 0 has t_x = 0: the 'no repeat' column only
                rows.append((first, 0, 0.0, 0.0, age))
                lowest = 1
                if highest < 1:
                    continue
            for column in range(1, columns):
                u, v = (column - 1) / grid.recency_bins * age, column / grid.recency_bins * age
                rows += [(first + column, x, u, v, age) for x in range(lowest, highest + 1)]
    cell, x, u, v, age = np.asarray(rows, dtype=np.float64).T
    return cell.astype(int), x, u, v, age


def cell_log_probabilities(params, grid: LifetimeGrid, points=None) -> np.ndarray:
    """log P(cell | T at its bin's midpoint) for every purchase cell; −inf where nobody can be."""
    r, alpha, a, b = params
    cell, x, u, v, age = cell_points(grid) if points is None else points
    n = np.maximum(x, 1)  # the x = 0 terms are replaced below
    common = betaln(a, b + n) - betaln(a, b) + gammaln(r + n) - gammaln(r) - gammaln(n)
    # log (v^x − u^x)/x, computed as x log v + log(1 − (u/v)^x) so large x cannot overflow
    ratio = np.divide(u, v, out=np.zeros_like(u), where=v > 0)
    spread = n * np.log(np.maximum(v, 1e-300)) + np.log1p(-(ratio**n)) - np.log(n)
    alive = r * np.log(alpha) - (r + n) * np.log(alpha + age) + spread
    below = betainc(n, r, v / (alpha + v)) - betainc(n, r, u / (alpha + u))
    dropped = np.log(a / (b + n - 1)) + betaln(n, r) + np.log(np.maximum(below, 1e-300))
    log_terms = np.where(
        x == 0, r * (np.log(alpha) - np.log(alpha + age)), common + np.logaddexp(alive, dropped)
    )
    out = np.full(grid.purchase_cells, -np.inf)
    top = np.full(grid.purchase_cells, -np.inf)
    np.maximum.at(top, cell, log_terms)
    total = np.zeros(grid.purchase_cells)
    np.add.at(total, cell, np.exp(log_terms - top[cell]))
    seen = np.isfinite(top)
    out[seen] = top[seen] + np.log(total[seen])
    return out
