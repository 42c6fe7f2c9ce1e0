"""Client half of the federated recommender: local DP-SGD on one merchant's customers.

One DP-SGD sample is one customer's whole history, so per-sample clipping bounds
what one customer can move the update: the guarantee is user-level at this
merchant. Batches are Poisson-sampled (rate q) from an injected generator and
each step adds Gaussian noise of std z * max_grad_norm (opacus ghost clipping),
so the whole local run is privacy/releases.py's `dpsgd_release(z, steps, q)`, which the
merchant's node charges before this code runs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from fedseg.client.recommender.histories import CustomerHistories
from fedseg.privacy.published.neural import (
    Parameters,
    collate_histories,
    get_parameters,
    model_from_parameters,
)
from fedseg.privacy.releases import DPSGD_CLIP_NORM
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping
from torch import nn

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


@dataclass(frozen=True)
class LocalTrainingConfig:
    """How a merchant trains locally in one FedAvg round.

    `holdout_fraction` of each customer's items become the targets (predicted
    from the rest, full softmax over the catalogue), mirroring "predict the item
    the customer has not interacted with yet" at serving time.
    """

    epochs: float = 1.0
    sampling_rate: float = 0.1
    learning_rate: float = 0.01
    holdout_fraction: float = 0.2
    optimizer: str = "adam"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if not (0 < self.sampling_rate <= 1):
            raise ValueError(f"sampling_rate must be in (0, 1], got {self.sampling_rate}")
        if not (self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not (0 < self.holdout_fraction < 1):
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")

    @property
    def steps(self) -> int:
        """DP-SGD steps per local run: epochs / q, at least one."""
        return max(1, round(self.epochs / self.sampling_rate))


def train_local(
    histories: CustomerHistories,
    broadcast: Parameters,
    config: LocalTrainingConfig,
    rng: np.random.Generator,
    *,
    noise_multiplier: float | None,
    max_grad_norm: float = DPSGD_CLIP_NORM,
) -> Parameters:
    """Train the broadcast model on this merchant's customers; return the new parameters.

    `noise_multiplier=None` trains without clipping or noise (the non-private reference).
    """
    model = model_from_parameters(broadcast)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    if noise_multiplier is None:
        step = _plain_step(model, config)
    else:
        step = _private_step(
            model, config, len(histories), noise_multiplier, max_grad_norm, generator
        )
    with warnings.catch_warnings():  # opacus' ghost clipping trips a torch hook notice
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(config.steps):
            batch = np.flatnonzero(rng.random(len(histories)) < config.sampling_rate)
            step(*_training_batch(histories.subset(batch), model.scores.out_features, config, rng))
    return get_parameters(model)


def _private_step(model, config, n_customers, noise_multiplier, max_grad_norm, generator):
    """One opacus ghost-clipping step per call (expected batch q * n customers)."""
    module = GradSampleModuleFastGradientClipping(
        model,
        batch_first=True,
        loss_reduction="mean",
        max_grad_norm=max_grad_norm,
        use_ghost_clipping=True,
    )
    optimizer = DPOptimizerFastGradientClipping(
        OPTIMIZERS[config.optimizer](module.parameters(), lr=config.learning_rate),
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        expected_batch_size=max(1.0, config.sampling_rate * n_customers),
        loss_reduction="mean",
        generator=generator,
    )
    criterion = DPLossFastGradientClipping(
        module, optimizer, nn.CrossEntropyLoss(reduction="mean"), "mean"
    )

    def step(flat, offsets, segments, targets) -> None:
        optimizer.zero_grad()
        if len(segments) == 0:
            # An empty Poisson batch still releases noise: the accounting assumes it.
            for tensor in module.parameters():
                tensor.grad = torch.zeros_like(tensor)
        else:
            criterion(module(flat, offsets, segments), targets).backward()
        optimizer.step()

    return step


def _plain_step(model, config):
    optimizer = OPTIMIZERS[config.optimizer](model.parameters(), lr=config.learning_rate)
    criterion = nn.CrossEntropyLoss()

    def step(flat, offsets, segments, targets) -> None:
        if len(segments) == 0:
            return
        optimizer.zero_grad()
        criterion(model(flat, offsets, segments), targets).backward()
        optimizer.step()

    return step


def _training_batch(batch: CustomerHistories, n_items: int, config, rng):
    """Split each customer's items into model input and soft targets (held-out items)."""
    inputs, targets = [], torch.zeros((len(batch), n_items))
    for row, history in enumerate(batch.items):
        held_out = rng.random(len(history)) < config.holdout_fraction
        if not held_out.any():
            held_out[rng.integers(len(history))] = True
        inputs.append(history[~held_out])
        targets[row, torch.as_tensor(history[held_out])] = 1.0 / held_out.sum()
    flat, offsets = collate_histories(inputs)
    return flat, offsets, torch.as_tensor(batch.segments, dtype=torch.long), targets
