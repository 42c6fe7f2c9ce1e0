"""Server half of DP-EASE: denoise the summed Gram, fit EASE, blend with DP popularity.

EASE (Steck 2019) needs only the item-item Gram G = XᵀX: P = (G + λI)⁻¹, B = I - P/diag(P).
The server sees the sum over merchants of noisy Grams (`gram_statistics`), i.e. G + E with
E a symmetric Gaussian matrix whose off-diagonal std is sigma/sqrt(2); its spectrum lies
within ±sigma·sqrt(2N) (Wigner semicircle edge). Eigen-components of G + E below that edge
are indistinguishable from noise and are dropped; λ adds the noise edge so the inverse never
amplifies what is left of the noise. The truncated Gram is V diag(w) Vᵀ, so

    P = (I - V diag(f) Vᵀ)/λ,   f = w / (w + λ),

and for an item j outside the customer's history the EASE score is
    s_j = (x V diag(f) V_jᵀ) / (1 - Σ_k V_jk² f_k):
the model is just (V, f) — small when few components survive — and scoring is two thin
matrix products. Everything here is post-processing of DP releases: no extra budget.
"""

from __future__ import annotations

import math

import numpy as np
from fedseg.privacy.published.content import ContentModel
from fedseg.privacy.published.lift import SegmentLift
from fedseg.privacy.published.prior import PopularityPrior
from fedseg.privacy.published.recommender import RecommenderModel, checked_array
from fedseg.server.recommender.content import attribute_weights


def noise_edge(n_items: int, *, sigma: float) -> float:
    """Largest |eigenvalue| of the summed symmetric noise (Wigner edge sigma·sqrt(2N))."""
    if sigma < 0 or n_items < 1:
        raise ValueError("sigma must be >= 0 and n_items >= 1")
    return sigma * math.sqrt(2.0 * n_items)


def choose_items(
    overall: np.ndarray, *, sigma: float, max_items: int, z_score: float = 3.0
) -> np.ndarray:
    """Catalogue indices for the Gram round: most popular first, above z_score·sigma.

    Items whose noisy popularity is within noise of zero carry no co-occurrence signal
    either; dropping them shrinks the noise edge (it grows with sqrt(N)). At least one item.
    """
    overall = np.asarray(overall, dtype=np.float64)
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    order = np.argsort(-overall, kind="stable")
    above = int((overall > z_score * sigma).sum())
    return order[: max(1, min(max_items, above))]


def fit_recommender(
    summed: dict[str, np.ndarray],
    *,
    item_index: np.ndarray,
    gram_sigma: float,
    n_segments: int = 0,
    segment_weight: float = 1.0,
    lam_scale: float = 5.0,
    popularity_weight: float = 0.3,
    attributes: tuple[tuple[str, ...], np.ndarray] | None = None,
    content_weight: float = 0.2,
) -> RecommenderModel:
    """Summed releases {"gram", "overall"[, "segments"]} -> RecommenderModel.

    `n_segments` / `segment_weight` must match the `gram_statistics` call. `gram_sigma` is
    the std of the noise in the summed Gram (sigma·sqrt(M) for local noise at M merchants,
    sigma for distributed noise); 0 = no noise. λ = lam_scale ×
    the mean diagonal of the Gram (Steck's λ=500 on MovieLens is ~8× it) + the noise edge.
    `attributes` (names, items x attributes indicators of the public catalogue) adds content
    scoring with weights from the popularity release.
    """
    gram = checked_array(summed, "gram", ndim=2)
    item_index = np.asarray(item_index, dtype=np.int64)
    size = len(item_index) + n_segments
    if gram.shape != (size, size):
        raise ValueError(f"'gram' has shape {gram.shape}, expected {size} square")
    edge = noise_edge(size, sigma=gram_sigma)
    weights, vectors = np.linalg.eigh((gram + gram.T) / 2.0)
    keep = weights > edge
    lam = lam_scale * max(float(np.mean(np.diag(gram))), 1e-12) + edge
    shrinkage = weights[keep] / (weights[keep] + lam)
    prior = PopularityPrior.from_release(summed)
    content = lift = None
    if attributes is not None and len(attributes[0]):
        names, indicators = attributes
        overall = checked_array(summed, "overall", ndim=1)
        content = ContentModel(tuple(names), indicators, attribute_weights(overall, indicators))
        if n_segments:
            n = len(item_index)
            lift = SegmentLift.from_gram_block(gram[n:, :n], item_index, overall)
    return RecommenderModel(
        item_index,
        vectors[:, keep],
        shrinkage,
        prior,
        popularity_weight,
        n_segments,
        segment_weight,
        content,
        content_weight if content is not None else 0.0,
        lift,
    )
