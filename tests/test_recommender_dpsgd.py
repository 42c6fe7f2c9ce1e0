"""DP-SGD client half: user-level clipping, accounting vs opacus, budget cap, learning."""

import numpy as np
import pytest
import torch
from fedseg.client.recommender.dpsgd import LocalTrainingConfig, train_local
from fedseg.client.recommender.histories import CustomerHistories
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.published.neural import init_parameters, model_from_parameters, score_customers
from fedseg.privacy.releases import dpsgd_release
from opacus.accountants import PRVAccountant, RDPAccountant

N_ITEMS, N_SEGMENTS, DIM = 1200, 2, 8


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Tiny models: intra-op threads only add contention on a shared 2-core runner.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _customers(histories, segments=None):
    segments = np.zeros(len(histories), dtype=np.int64) if segments is None else segments
    return CustomerHistories(
        np.arange(len(histories)), tuple(np.asarray(h) for h in histories), np.asarray(segments)
    )


def _update_norm(histories, noise_multiplier, max_grad_norm=1e-3, lr=1.0):
    start = init_parameters(N_ITEMS, N_SEGMENTS, DIM, torch.Generator().manual_seed(1))
    config = LocalTrainingConfig(epochs=1, sampling_rate=1.0, learning_rate=lr, optimizer="sgd")
    end = train_local(
        histories,
        start,
        config,
        np.random.default_rng(2),
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
    )
    return np.sqrt(sum(np.sum((end[k].astype(float) - start[k]) ** 2) for k in start))


def test_heavy_customer_moves_update_no_more_than_light_one():
    heavy = _customers([np.arange(1000)])
    light = _customers([np.array([7])])
    bound = 1.0 * 1e-3  # lr x max_grad_norm, one customer, expected batch 1, no noise
    assert _update_norm(heavy, None) > 2 * bound  # clipping is really active for this one
    assert _update_norm(heavy, 0.0) <= bound * (1 + 1e-4)
    assert _update_norm(light, 0.0) <= bound * (1 + 1e-4)


def test_one_sample_is_one_customer_not_one_interaction():
    # Two customers, one with 1,000 items: the mean of clipped per-customer gradients has
    # norm <= max_grad_norm; a per-interaction sample would let the heavy one dominate.
    both = _customers([np.arange(1000), np.array([7])])
    assert _update_norm(both, None) > 2e-3
    assert _update_norm(both, 0.0) <= 1e-3 * (1 + 1e-4)


@pytest.mark.parametrize(("z", "q", "epochs"), [(1.1, 0.25, 3), (0.8, 0.5, 5)])
def test_ledger_epsilon_matches_opacus_accountant(z, q, epochs):
    config = LocalTrainingConfig(epochs=epochs, sampling_rate=q)
    ledger = PrivacyLedger(None, epsilon_cap=float("inf"), delta=1e-5)
    ledger.charge(dpsgd_release(z, steps=config.steps, sampling_rate=q))
    prv, rdp = PRVAccountant(), RDPAccountant()
    for accountant in (prv, rdp):
        accountant.history = [(z, q, config.steps)]
    ours = ledger.spent()
    assert ours == pytest.approx(prv.get_epsilon(delta=1e-5), rel=0.02)
    assert ours <= rdp.get_epsilon(delta=1e-5)  # RDP is a looser upper bound


def test_private_training_learns_segment_tastes():
    rng = np.random.default_rng(3)
    tastes = [np.arange(0, 5), np.arange(5, 10)]
    segments = rng.integers(0, 2, size=400)
    histories = _customers(
        [rng.choice(tastes[s], size=3, replace=False) for s in segments], segments
    )
    start = init_parameters(N_ITEMS, N_SEGMENTS, DIM, torch.Generator().manual_seed(0))
    config = LocalTrainingConfig(epochs=4, sampling_rate=0.25, learning_rate=0.05)
    trained = train_local(histories, start, config, rng, noise_multiplier=0.7)
    model = model_from_parameters(trained)
    scores = score_customers(model, [np.array([0]), np.array([5])], np.array([0, 1]))
    assert set(np.argsort(-scores[0])[:5]) <= set(range(5))
    assert set(np.argsort(-scores[1])[:5]) <= set(range(5, 10))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="sampling_rate"):
        LocalTrainingConfig(sampling_rate=0.0)
    with pytest.raises(ValueError, match="optimizer"):
        LocalTrainingConfig(optimizer="rmsprop")
