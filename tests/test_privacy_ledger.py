"""Ledger: refuse over the cap, monotone spending, shared safely, survives restarts, report."""

import json
import math
import multiprocessing

import pytest
from fedseg.privacy.accounting import Release, epsilon_spent
from fedseg.privacy.ledger import BudgetExceeded, LedgerFileError, PrivacyLedger, reset_ledger
from fedseg.privacy.mechanisms import GaussianMechanism
from fedseg.privacy.releases import displacement_mechanism
from hypothesis import given, settings
from hypothesis import strategies as st


def test_request_over_cap_is_refused_and_nothing_is_recorded(tmp_path):
    path = tmp_path / "ledger.json"
    ledger = PrivacyLedger(path, epsilon_cap=1.0, delta=1e-6)
    ledger.charge(displacement_mechanism(5.0, radius=1.0, dim=3).as_release("round"))
    before_file = path.read_bytes()
    greedy = displacement_mechanism(1.0, radius=1.0, dim=3).as_release("round")
    with pytest.raises(BudgetExceeded) as err:
        ledger.charge(greedy)
    assert path.read_bytes() == before_file  # nothing recorded
    assert [r.noise_multiplier for r in ledger.releases] == [5.0]
    message = str(err.value)
    assert "cap epsilon=1" in message and "spent" in message and "'round'" in message
    assert f"{ledger.cost_if(greedy):.4f}" in message


def test_two_ledgers_on_one_file_never_lose_each_others_charges(tmp_path):
    path = tmp_path / "ledger.json"
    first = PrivacyLedger(path, epsilon_cap=10.0, delta=1e-6)
    second = PrivacyLedger(path, epsilon_cap=10.0, delta=1e-6)
    first.charge(Release("a", 2.0))
    second.charge(Release("b", 2.0))  # re-reads under the lock: sees "a"
    first.charge(Release("c", 2.0))
    assert [r.name for r in PrivacyLedger(path, epsilon_cap=10, delta=1e-6).releases] == list("abc")
    assert first.spent() == second.spent()


def test_concurrent_processes_cannot_overspend_a_shared_cap(tmp_path):
    """Four processes race to charge one ledger file: every accepted charge is on disk, and
    together they never pass the cap (the read-check-write runs under one lock)."""
    path = tmp_path / "ledger.json"
    one = epsilon_spent([Release("x", 3.0)], delta=1e-6)
    cap = epsilon_spent([Release("x", 3.0, count=10)], delta=1e-6) + 1e-9  # room for 10
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        accepted = sum(pool.starmap(_charge_many, [(str(path), cap, 8)] * 4))
    final = PrivacyLedger(path, epsilon_cap=cap, delta=1e-6)
    assert accepted == len(final.releases) == 10
    assert final.spent() <= cap and one > 0


def _charge_many(path: str, cap: float, times: int) -> int:
    ledger = PrivacyLedger(path, epsilon_cap=cap, delta=1e-6, durable=False)
    accepted = 0
    for _ in range(times):
        try:
            ledger.charge(Release("x", 3.0))
            accepted += 1
        except BudgetExceeded:
            pass
    return accepted


def test_noise_streams_are_never_handed_out_twice(tmp_path):
    path = tmp_path / "ledger.json"
    streams = [PrivacyLedger(path, epsilon_cap=1.0, delta=1e-6).next_stream() for _ in range(3)]
    assert streams == [1, 2, 3]  # a restart continues the count


def test_a_served_state_directory_refuses_to_start_without_its_ledger(tmp_path):
    path = tmp_path / "state" / "ledger.json"
    PrivacyLedger(path, epsilon_cap=1.0, delta=1e-6).charge(Release("x", 5.0))
    path.unlink()  # someone deleted the ledger: the spent budget must not silently reset
    with pytest.raises(LedgerFileError, match="fedseg ledger reset"):
        PrivacyLedger(path, epsilon_cap=1.0, delta=1e-6)
    assert reset_ledger(path) is False  # nothing left to forget but the mark
    assert PrivacyLedger(path, epsilon_cap=1.0, delta=1e-6).spent() == 0.0


def test_would_exceed_and_cost_if_agree_with_accounting():
    ledger = PrivacyLedger(None, epsilon_cap=2.0, delta=1e-5)
    ledger.charge(Release("init", 4.0))
    request = Release("round", 3.0, count=4)
    expected = epsilon_spent([Release("init", 4.0), request], delta=1e-5)
    assert ledger.cost_if(request) == pytest.approx(expected)
    assert ledger.would_exceed(request) == (expected > 2.0)


def test_charging_exactly_the_cap_is_allowed():
    release = Release("g", 3.7306)
    cap = epsilon_spent([release], delta=1e-5)
    ledger = PrivacyLedger(None, epsilon_cap=cap, delta=1e-5)
    ledger.charge(release)
    assert ledger.spent() == cap
    with pytest.raises(BudgetExceeded):
        ledger.charge(Release("g", 1000.0))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.floats(1.0, 50.0), st.integers(1, 20)), min_size=1, max_size=8))
def test_epsilon_spent_never_decreases(requests):
    ledger = PrivacyLedger(None, epsilon_cap=5.0, delta=1e-6)
    history = [ledger.spent()]
    for z, count in requests:
        try:
            ledger.charge(Release("round", z, count=count))
        except BudgetExceeded:
            pass
        history.append(ledger.spent())
    assert all(b >= a for a, b in zip(history, history[1:], strict=False))
    assert history[-1] <= 5.0


def test_ledger_survives_restart(tmp_path):
    path = tmp_path / "state" / "ledger.json"
    first = PrivacyLedger(path, epsilon_cap=3.0, delta=1e-6)
    first.charge(Release("init", 6.0, l2_sensitivity=1.0, sigma=6.0))
    first.charge(Release("sgd", 1.2, count=50, sampling_rate=0.05))
    spent = first.spent()
    del first
    second = PrivacyLedger(path, epsilon_cap=3.0, delta=1e-6)
    assert second.spent() == spent > 0
    assert [r.name for r in second.releases] == ["init", "sgd"]
    assert second.releases[1].sampling_rate == 0.05
    assert not list(path.parent.glob("*.tmp"))  # atomic write left no temporaries


def test_corrupt_ledger_file_is_a_clear_error(tmp_path):
    path = tmp_path / "ledger.json"
    path.write_text("{not json")
    with pytest.raises(LedgerFileError, match="ledger.json"):
        PrivacyLedger(path, epsilon_cap=1.0, delta=1e-6)
    path.write_text(json.dumps({"version": 1, "releases": [{"name": "a", "noise_multiplier": -1}]}))
    with pytest.raises(LedgerFileError, match="ledger.json"):
        PrivacyLedger(path, epsilon_cap=1.0, delta=1e-6)


def test_report_merges_kinds_and_lists_everything_needed_to_recompute():
    ledger = PrivacyLedger(None, epsilon_cap=math.inf, delta=1e-6)
    mech = GaussianMechanism(8.0, {"counts": 1.0})
    for _ in range(3):
        ledger.charge(mech.as_release("sizes"))
    ledger.charge(Release("sgd", 1.1, count=100, sampling_rate=0.02))
    ledger.charge(Release("sgd", 1.1, count=20, sampling_rate=0.02))
    report = ledger.report()
    assert report["accountant"] == "pld" and report["delta"] == 1e-6
    sizes, sgd = report["releases"]
    assert (sizes["name"], sizes["mechanism"], sizes["count"]) == ("sizes", "gaussian", 3)
    assert sizes["l2_sensitivity"] == 1.0 and sizes["sigma"] == 8.0
    assert "sampling_rate" not in sizes
    assert (sgd["mechanism"], sgd["count"], sgd["sampling_rate"]) == (
        "subsampled_gaussian",
        120,
        0.02,
    )
    recomputed = epsilon_spent(
        [
            Release(e["name"], e["noise_multiplier"], e["count"], e.get("sampling_rate"))
            for e in report["releases"]
        ],
        delta=report["delta"],
    )
    assert report["epsilon"] == pytest.approx(recomputed)
    assert sizes["epsilon_alone"] == pytest.approx(
        epsilon_spent([Release("s", 8.0, count=3)], delta=1e-6)
    )


def test_calibrated_plan_charged_one_release_at_a_time_fits_its_own_cap():
    from fedseg.privacy.accounting import PlannedRelease, calibrate

    plan = [
        PlannedRelease("init", 0.13),
        PlannedRelease("round", 0.57, count=7),
        PlannedRelease("sgd", 0.3, count=120, sampling_rate=0.03),
    ]
    for epsilon in (0.37, 1.0, 4.2):
        z = calibrate(plan, epsilon=epsilon, delta=1e-6)
        ledger = PrivacyLedger(None, epsilon_cap=epsilon, delta=1e-6)
        ledger.charge(Release("init", z["init"]))
        for _ in range(7):
            ledger.charge(Release("round", z["round"]))
            ledger.charge(Release("sgd", z["sgd"], count=17, sampling_rate=0.03))
        ledger.charge(Release("sgd", z["sgd"], count=1, sampling_rate=0.03))  # 7 x 17 + 1 = 120
        assert 0.99 * epsilon <= ledger.spent() <= epsilon
