"""fedseg: privacy-preserving federated customer segmentation on Flower.

The commands (``fedseg --help``, docs/contract.md) are the main interface; for data
scientists, ``fedseg.DPKMeans`` is the federated DP k-means as a scikit-learn estimator.
Imported on first use, so ``import fedseg.client`` stays light.
"""

from __future__ import annotations

__all__ = ["DPKMeans", "__version__"]


def __getattr__(name: str):
    if name == "DPKMeans":
        from fedseg.simulations.estimator import DPKMeans

        return DPKMeans
    if name == "__version__":
        from fedseg.privacy.published.identity import fedseg_version

        return fedseg_version()
    raise AttributeError(f"module 'fedseg' has no attribute {name!r}")
