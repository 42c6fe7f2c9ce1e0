"""Accounting: known values against dp-accounting and opacus, exact merging, calibration."""

import math
import warnings

import dp_accounting
import pytest
from dp_accounting import pld, rdp
from fedseg.privacy.accounting import (
    AccountingError,
    PlannedRelease,
    Release,
    calibrate,
    epsilon_spent,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def _opacus(accountant_cls, history, delta, **kwargs):
    from opacus.accountants import PRVAccountant, RDPAccountant  # noqa: F401

    acc = accountant_cls()
    acc.history = list(history)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return acc.get_epsilon(delta, **kwargs)


def _raw_dp_accounting(event, delta, accountant):
    """dp-accounting used directly, with a fine PLD grid (the reference)."""
    acc = (
        pld.PLDAccountant(value_discretization_interval=1e-4)
        if accountant == "pld"
        else rdp.RdpAccountant()
    )
    acc.compose(event)
    return acc.get_epsilon(delta)


KNOWN = [  # (releases, delta, accountant, epsilon) from the tracker issue
    ([Release("g", 3.7306)], 1e-5, "pld", 1.000),
    ([Release("g", 4.530877117)], 1e-6, "rdp", 1.000),
    ([Release("sgd", 1.5, count=2250, sampling_rate=0.04)], 1e-5, "rdp", 7.329),
    ([Release("sgd", 1.5, count=2250, sampling_rate=0.04)], 1e-5, "pld", 6.769),
    ([Release("round", 10.0, count=10)], 1e-6, "pld", 1.368),
]


@pytest.mark.parametrize(("releases", "delta", "accountant", "expected"), KNOWN)
def test_known_values(releases, delta, accountant, expected):
    ours = epsilon_spent(releases, delta=delta, accountant=accountant)
    assert ours == pytest.approx(expected, abs=1e-3)
    reference = _raw_dp_accounting(releases[0].event(), delta, accountant)
    assert ours == pytest.approx(reference, abs=1e-3)
    if accountant == "pld":
        # Plain Gaussians are exact (closed form); a pessimistic grid rounds up by ~1e-8.
        assert ours >= reference - 1e-7


def test_known_values_cross_checked_with_opacus_rdp():
    from opacus.accountants import RDPAccountant

    assert _opacus(RDPAccountant, [(1.5, 0.04, 2250)], 1e-5) == pytest.approx(7.329, abs=1e-3)
    assert _opacus(RDPAccountant, [(4.530877117, 1.0, 1)], 1e-6) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("history", "delta", "release", "eps_error"),
    [
        ((3.7306, 1.0, 1), 1e-5, Release("g", 3.7306), 1e-3),
        ((10.0, 1.0, 10), 1e-6, Release("r", 10.0, count=10), 1e-3),
        ((1.5, 0.04, 2250), 1e-5, Release("s", 1.5, count=2250, sampling_rate=0.04), 1e-2),
    ],
)
def test_pld_cross_checked_with_opacus_prv(history, delta, release, eps_error):
    """opacus's PRV accountant returns an upper estimate within eps_error of the true epsilon."""
    from opacus.accountants import PRVAccountant

    prv = _opacus(PRVAccountant, [history], delta, eps_error=eps_error)
    ours = epsilon_spent([release], delta=delta)
    assert ours - 1e-3 <= prv <= ours + eps_error + 1e-3


def test_plain_gaussians_are_merged_exactly():
    releases = [Release("init", 2.0), Release("round", 5.0, count=7), Release("size", 9.0)]
    composed = dp_accounting.ComposedDpEvent([r.event() for r in releases])
    for accountant in ("pld", "rdp"):
        ours = epsilon_spent(releases, delta=1e-6, accountant=accountant)
        assert ours == pytest.approx(_raw_dp_accounting(composed, 1e-6, accountant), abs=1e-3)


def test_mixed_gaussian_and_subsampled_in_one_report():
    releases = [Release("round", 8.0, count=5), Release("sgd", 1.1, count=300, sampling_rate=0.02)]
    composed = dp_accounting.ComposedDpEvent([r.event() for r in releases])
    ours = epsilon_spent(releases, delta=1e-5)
    assert ours == pytest.approx(_raw_dp_accounting(composed, 1e-5, "pld"), abs=2e-3)
    assert ours > max(epsilon_spent([r], delta=1e-5) for r in releases)


def test_empty_noiseless_and_mechanism_names():
    assert epsilon_spent([], delta=1e-6) == 0.0
    assert epsilon_spent([Release("a", 3.0), Release("b", 0.0)], delta=1e-6) == math.inf
    assert Release("a", 1.0).mechanism == "gaussian"
    assert Release("a", 1.0, sampling_rate=0.1).mechanism == "subsampled_gaussian"


def test_rdp_is_never_below_pld():
    releases = [Release("round", 6.0, count=12)]
    assert epsilon_spent(releases, delta=1e-6, accountant="rdp") >= epsilon_spent(
        releases, delta=1e-6, accountant="pld"
    )


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Release("", 1.0),
        lambda: Release("a", -1.0),
        lambda: Release("a", math.nan),
        lambda: Release("a", 1.0, count=0),
        lambda: Release("a", 1.0, sampling_rate=0.0),
        lambda: epsilon_spent([Release("a", 1.0)], delta=0.0),
        lambda: epsilon_spent([Release("a", 1.0)], delta=1e-6, accountant="moments"),
        lambda: calibrate([PlannedRelease("a", 0.5)], epsilon=1.0, delta=1e-6),
        lambda: calibrate([PlannedRelease("a", 0.5)] * 2, epsilon=1.0, delta=1e-6),
        lambda: calibrate([PlannedRelease("a", 1.0)], epsilon=0.0, delta=1e-6),
    ],
)
def test_bad_input_is_one_clear_value_error(bad):
    with pytest.raises(AccountingError):
        bad()


def test_calibrate_infinite_epsilon_means_no_noise():
    plan = [PlannedRelease("a", 0.5), PlannedRelease("b", 0.5, count=3)]
    assert calibrate(plan, epsilon=math.inf, delta=1e-6) == {"a": 0.0, "b": 0.0}


def test_calibrate_shares_follow_zcdp_split():
    plan = [PlannedRelease("init", 0.25), PlannedRelease("rounds", 0.75, count=6)]
    z = calibrate(plan, epsilon=1.0, delta=1e-6)
    assert z["init"] / z["rounds"] == pytest.approx(math.sqrt(0.75 / 0.25))


def test_calibrate_single_release_recovers_known_multiplier():
    z = calibrate([PlannedRelease("g", 1.0)], epsilon=1.0, delta=1e-5)["g"]
    assert 3.7306 <= z <= 3.7306 * 1.01  # never less noise than the exact answer


def _spent(plan, z, delta, accountant="pld"):
    releases = [
        Release(p.name, z[p.name], count=p.count, sampling_rate=p.sampling_rate) for p in plan
    ]
    return epsilon_spent(releases, delta=delta, accountant=accountant)


@st.composite
def plans(draw):
    n_kinds = draw(st.integers(1, 4))
    counts = [draw(st.integers(1, 40)) for _ in range(n_kinds)]
    while sum(counts) > 100:
        counts[counts.index(max(counts))] //= 2
    weights = [draw(st.floats(0.05, 1.0)) for _ in range(n_kinds)]
    shares = [w / sum(weights) for w in weights]
    return [
        PlannedRelease(f"r{i}", s, count=c)
        for i, (s, c) in enumerate(zip(shares, counts, strict=True))
    ]


@settings(max_examples=25, deadline=None)
@given(
    plan=plans(),
    epsilon=st.floats(0.1, 10.0),
    delta=st.floats(1e-10, 1e-5),
    accountant=st.sampled_from(["pld", "rdp"]),
)
def test_calibrated_runs_never_overshoot_and_stay_within_one_percent(
    plan, epsilon, delta, accountant
):
    z = calibrate(plan, epsilon=epsilon, delta=delta, accountant=accountant)
    spent = _spent(plan, z, delta, accountant)
    assert spent <= epsilon
    assert spent >= 0.99 * epsilon


@settings(max_examples=5, deadline=None)
@given(epsilon=st.floats(0.5, 8.0), rate=st.floats(0.005, 0.1), steps=st.integers(10, 500))
def test_calibration_with_dp_sgd_steps_in_the_same_plan(epsilon, rate, steps):
    plan = [
        PlannedRelease("kmeans", 0.6, count=6),
        PlannedRelease("sgd", 0.4, count=steps, sampling_rate=rate),
    ]
    z = calibrate(plan, epsilon=epsilon, delta=1e-6)
    assert 0.99 * epsilon <= _spent(plan, z, 1e-6) <= epsilon
