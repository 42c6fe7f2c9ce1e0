"""The personalized recommender shared by all merchants.

A customer is represented by the mean embedding of the items in their history
plus an embedding of their segment; items are scored by a linear layer (item
output embeddings and item biases). Every parameter is shared and averaged
across merchants (FedAvg); nothing per customer exists, so a new customer is
served from their history and segment alone and no customer parameter ever
leaves the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

Parameters = dict[str, np.ndarray]


class HistoryRecommender(nn.Module):
    """EmbeddingBag user encoder + segment embedding, scored against all items.

    The forward takes the (flat, offsets) form because opacus computes
    per-sample gradients for `nn.EmbeddingBag` only in that form.
    """

    def __init__(self, n_items: int, n_segments: int, dim: int) -> None:
        super().__init__()
        if n_items < 1 or n_segments < 1 or dim < 1:
            raise ValueError("n_items, n_segments and dim must be positive")
        self.history = nn.EmbeddingBag(n_items, dim, mode="mean")
        self.segment = nn.Embedding(n_segments, dim)
        self.scores = nn.Linear(dim, n_items)

    def forward(
        self, flat: torch.Tensor, offsets: torch.Tensor, segments: torch.Tensor
    ) -> torch.Tensor:
        """Item logits, one row per customer."""
        return self.scores(self.history(flat, offsets) + self.segment(segments))


def init_parameters(
    n_items: int, n_segments: int, dim: int, generator: torch.Generator
) -> Parameters:
    """Fresh shared parameters, drawn from an injected generator (server side)."""
    model = HistoryRecommender(n_items, n_segments, dim)
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.normal_(0.0, 0.1 / np.sqrt(dim), generator=generator)
        model.scores.bias.zero_()
    return get_parameters(model)


def get_parameters(model: nn.Module) -> Parameters:
    """The model's parameters as a name -> float32 numpy array dict (what travels)."""
    return {
        _plain_name(name): tensor.detach().cpu().numpy().astype(np.float32, copy=True)
        for name, tensor in model.named_parameters()
    }


def set_parameters(model: nn.Module, parameters: Parameters) -> None:
    """Load a parameter dict into the model; a missing or misshapen array raises."""
    for name, tensor in model.named_parameters():
        key = _plain_name(name)
        if key not in parameters:
            raise ValueError(f"parameter {key!r} missing from the broadcast")
        value = torch.as_tensor(np.asarray(parameters[key], dtype=np.float32))
        if value.shape != tensor.shape:
            raise ValueError(
                f"parameter {key!r} has shape {tuple(value.shape)}, expected {tuple(tensor.shape)}"
            )
        with torch.no_grad():
            tensor.copy_(value)


def model_from_parameters(parameters: Parameters) -> HistoryRecommender:
    """Rebuild the model from its parameter dict (shapes give the sizes)."""
    n_items, dim = parameters["history.weight"].shape
    n_segments = parameters["segment.weight"].shape[0]
    model = HistoryRecommender(n_items, n_segments, dim)
    set_parameters(model, parameters)
    return model


def _plain_name(name: str) -> str:
    # opacus wraps the model as `_module.`; the wire format never carries it.
    return name.removeprefix("_module.")


def score_customers(
    model: HistoryRecommender, histories: list[np.ndarray], segments: np.ndarray
) -> np.ndarray:
    """Item scores (customers x items) for local serving and evaluation."""
    flat, offsets = collate_histories(list(histories))
    model.eval()
    with torch.no_grad():
        logits = model(flat, offsets, torch.as_tensor(np.asarray(segments), dtype=torch.long))
    return logits.numpy()


def collate_histories(
    histories: list[np.ndarray],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack variable-length histories into EmbeddingBag's (flat, offsets) form.

    opacus computes per-sample gradients of `nn.EmbeddingBag` only for this
    1-D input form, so every batch goes through here.
    """
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else lengths
    flat = np.concatenate(histories) if histories else np.zeros(0, dtype=np.int64)
    return torch.as_tensor(flat, dtype=torch.long), torch.as_tensor(offsets, dtype=torch.long)


WIRE_PREFIX = "param__"


def to_wire(parameters: Parameters) -> dict[str, np.ndarray]:
    """Parameters as message fields ("history.weight" → "param__history__weight")."""
    return {WIRE_PREFIX + name.replace(".", "__"): value for name, value in parameters.items()}


def from_wire(fields: dict) -> Parameters:
    """The parameters among a message's fields (inverse of ``to_wire``)."""
    return {
        key.removeprefix(WIRE_PREFIX).replace("__", "."): np.asarray(value, dtype=np.float32)
        for key, value in fields.items()
        if key.startswith(WIRE_PREFIX)
    }


@dataclass(frozen=True)
class NeuralRecommender:
    """The averaged parameters; scores a customer from their history and segment."""

    parameters: dict[str, np.ndarray]

    @property
    def n_items(self) -> int:
        return int(self.parameters["scores.bias"].shape[0])

    def scores(self, histories: Sequence[np.ndarray], segments: np.ndarray) -> np.ndarray:
        """(customers x items) logits; items in a customer's history are not masked here."""
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
