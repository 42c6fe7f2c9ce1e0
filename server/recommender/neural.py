"""The opacus DP-SGD recommender through the apps (run config recommender-model = "dpsgd").

FedAvg rounds: the server broadcasts the shared parameters of the history + segment model
(privacy/published/neural.py); every merchant trains them on its own customers with opacus
DP-SGD, one sample = one customer's whole history (client/recommender/dpsgd.py), and sends
the new parameters back; the server averages the sum (plain or secure aggregation). Each
round is one release of `dpsgd_steps` subsampled Gaussian steps (privacy/releases.py
dpsgd_release), charged on the server's ledger and on every merchant's; the merchants train
at their own sampling rate, which the plan they accepted had to match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from fedseg.privacy import releases
from fedseg.server.aggregation import ReplySpec
from fedseg.server.config import DPSGD_LEARNING_RATE, DPSGD_SAMPLING_RATE
from fedseg.server.recommender.fedavg import fedavg
from fedseg.server.rounds import Rounds

if TYPE_CHECKING:
    from fedseg.privacy.published.neural import NeuralRecommender

EMBEDDING_DIM = 32


@dataclass
class DpsgdRun:
    """The FedAvg rounds over the merchants that took part in the segmentation."""

    rounds: Rounds

    def fit(self, segmentation: dict, n_items: int, rng: np.random.Generator) -> NeuralRecommender:
        """cfg.recommender.fedavg_rounds rounds from parameters drawn with ``rng``."""
        import torch
        from fedseg.privacy.published.neural import (
            NeuralRecommender,
            from_wire,
            init_parameters,
            to_wire,
        )

        k = len(segmentation["centres"])
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        parameters = init_parameters(n_items, k, EMBEDDING_DIM, generator)
        recommender, z = self.rounds.cfg.recommender, self.rounds.noise[releases.DPSGD]
        for _ in range(recommender.fedavg_rounds):
            wire = to_wire(parameters)
            request = dict(segmentation, **wire, learning_rate=DPSGD_LEARNING_RATE)
            spec = ReplySpec(shapes={name: value.shape for name, value in wire.items()}, sigmas={})
            release = releases.dpsgd_release(
                z, steps=recommender.dpsgd_steps, sampling_rate=DPSGD_SAMPLING_RATE
            )
            # The noise is added at every local step: the sum carries no noise of its own.
            agg = self.rounds.noisy_round("recommender_train", request, spec, release=release)
            averaged = fedavg(agg.sums, n_clients=max(len(agg.log.contributors), 1))
            parameters = from_wire(averaged)
        return NeuralRecommender(parameters)
