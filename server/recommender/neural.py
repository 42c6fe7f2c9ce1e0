"""The opacus DP-SGD recommender through the apps (run config recommender-model = "dpsgd").

FedAvg rounds: the server broadcasts the shared parameters of the history + segment model
(client/recommender/model.py); every merchant trains them on its own customers with opacus
DP-SGD, one sample = one customer's whole history (client/recommender/dpsgd.py), and sends
the new parameters back; the server averages the sum (plain or secure aggregation). Each
round is one release of `dpsgd_steps` subsampled Gaussian steps (privacy/releases.py
dpsgd_release), charged on the server's ledger and on every merchant's; the merchants train
at their own sampling rate, which the plan they accepted had to match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from fedseg.privacy import releases
from fedseg.server.aggregation import ReplySpec
from fedseg.server.config import DPSGD_LEARNING_RATE, DPSGD_SAMPLING_RATE
from fedseg.server.recommender.fedavg import fedavg
from fedseg.server.segmentation import Rounds

EMBEDDING_DIM = 32


@dataclass
class DpsgdRun:
    """The FedAvg rounds over the merchants that took part in the segmentation."""

    rounds: Rounds

    def fit(self, segmentation: dict, n_items: int, rng: np.random.Generator) -> NeuralRecommender:
        """cfg.fedavg_rounds rounds from parameters drawn with ``rng``."""
        import torch
        from fedseg.client.recommender.model import from_wire, init_parameters, to_wire

        k = len(segmentation["centres"])
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        parameters = init_parameters(n_items, k, EMBEDDING_DIM, generator)
        cfg, z = self.rounds.cfg, self.rounds.noise[releases.DPSGD]
        for _ in range(cfg.fedavg_rounds):
            wire = to_wire(parameters)
            request = dict(segmentation, **wire, learning_rate=DPSGD_LEARNING_RATE)
            spec = ReplySpec(shapes={name: value.shape for name, value in wire.items()}, sigmas={})
            release = releases.dpsgd_release(
                z, steps=cfg.dpsgd_steps, sampling_rate=DPSGD_SAMPLING_RATE
            )
            # The noise is added at every local step: the sum carries no noise of its own.
            agg = self.rounds.noisy_round("recommender_train", request, spec, release=release)
            averaged = fedavg(agg.sums, n_clients=max(len(agg.log.contributors), 1))
            parameters = from_wire(averaged)
        return NeuralRecommender(parameters)


@dataclass(frozen=True)
class NeuralRecommender:
    """The averaged parameters; scores a customer from their history and segment."""

    parameters: dict[str, np.ndarray]

    @property
    def n_items(self) -> int:
        return int(self.parameters["scores.bias"].shape[0])

    def scores(self, histories: Sequence[np.ndarray], segments: np.ndarray) -> np.ndarray:
        """(customers x items) logits; items in a customer's history are not masked here."""
        from fedseg.client.recommender.model import model_from_parameters, score_customers

        model = model_from_parameters(self.parameters)
        histories = [np.asarray(h, dtype=np.int64) for h in histories]
        return score_customers(model, histories, np.asarray(segments, dtype=np.int64))

    def to_dict(self) -> dict:
        return {
            "kind": "dp-sgd",
            "parameters": {name: value.tolist() for name, value in self.parameters.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> NeuralRecommender:
        if "parameters" not in data:
            raise ValueError("the dp-sgd recommender has no field 'parameters'")
        return cls({k: np.asarray(v, dtype=np.float32) for k, v in data["parameters"].items()})


def load_recommender(published: dict):
    """The published recommender of model.json, whichever kind it is."""
    from fedseg.server.recommender.model import RecommenderModel

    if published.get("kind") == "dp-sgd":
        return NeuralRecommender.from_dict(published)
    return RecommenderModel.from_dict(published)
