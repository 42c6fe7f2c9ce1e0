"""Ledger: refuse over the cap, monotone spending, shared safely, survives restarts, report."""

import json
import math
import multiprocessing
import os
from pathlib import Path

import pytest
from fedseg.privacy.accounting import AccountingError, Release, epsilon_spent
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


# -- the edges a mutation run found unguarded (benchmarks/mutation.py) ------------------------


@pytest.mark.parametrize("cap", [-0.5, float("nan")])
def test_a_cap_below_zero_or_not_a_number_is_refused(cap):
    with pytest.raises(AccountingError, match="epsilon_cap must be >= 0"):
        PrivacyLedger(None, epsilon_cap=cap, delta=1e-6)


def test_a_zero_cap_is_allowed_and_refuses_every_release():
    ledger = PrivacyLedger(None, epsilon_cap=0.0, delta=1e-6)
    assert ledger.would_exceed(Release("x", 100.0))
    with pytest.raises(BudgetExceeded):
        ledger.charge(Release("x", 100.0))


def test_would_exceed_says_no_for_a_request_landing_exactly_on_the_cap():
    release = Release("g", 3.7306)
    cap = epsilon_spent([release], delta=1e-5)
    ledger = PrivacyLedger(None, epsilon_cap=cap, delta=1e-5)
    assert ledger.would_exceed(release) is False  # as charge() agrees: it is accepted
    assert ledger.would_exceed(Release("g", 3.7)) is True
    roomy = PrivacyLedger(None, epsilon_cap=10 * cap, delta=1e-5)
    assert roomy.would_exceed(release) is False


def test_the_ledger_file_states_its_version_cap_and_every_charge(tmp_path):
    """The file is the merchant's own record: an auditor reads the cap and the releases."""
    finite, unbounded = tmp_path / "finite.json", tmp_path / "unbounded.json"
    PrivacyLedger(finite, epsilon_cap=2.5, delta=1e-6).charge(Release("x", 5.0))
    PrivacyLedger(unbounded, epsilon_cap=math.inf, delta=1e-6).charge(Release("x", 5.0))
    data = json.loads(finite.read_text())
    assert (data["version"], data["epsilon_cap"], data["delta"]) == (2, 2.5, 1e-6)
    assert data["releases"][0]["name"] == "x" and data["releases"][0]["noise_multiplier"] == 5.0
    assert json.loads(unbounded.read_text())["epsilon_cap"] == "inf"  # JSON has no infinity


def test_reading_a_ledger_never_writes_it(tmp_path):
    path = tmp_path / "ledger.json"
    ledger = PrivacyLedger(path, epsilon_cap=1.0, delta=1e-6)
    ledger.spent(), ledger.report(), ledger.releases, ledger.would_exceed(Release("x", 9.0))
    assert not path.exists()  # nothing charged, nothing written
    ledger.charge(Release("x", 9.0))
    before = path.stat().st_mtime_ns, path.read_bytes()
    ledger.spent(), ledger.report(), ledger.releases
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before


def test_a_new_state_directory_is_created_with_its_parents(tmp_path):
    path = tmp_path / "merchants" / "m07" / "state" / "ledger.json"
    PrivacyLedger(path, epsilon_cap=1.0, delta=1e-6).charge(Release("x", 9.0))
    assert path.exists()


def test_a_charge_is_synced_to_disk_with_its_directory_before_it_returns(tmp_path, monkeypatch):
    """The file and the rename are fsynced (a crash after charge() cannot lose the charge);
    ``durable=False`` (throw-away simulation state) skips both."""
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    state = tmp_path / "state"
    PrivacyLedger(state / "ledger.json", epsilon_cap=1.0, delta=1e-6).charge(Release("x", 9.0))
    assert str(state) in synced  # the directory, after the rename
    assert any(Path(s).name.startswith("ledger.json") and s.endswith(".tmp") for s in synced)
    synced.clear()
    quick = tmp_path / "quick" / "ledger.json"
    PrivacyLedger(quick, epsilon_cap=1.0, delta=1e-6, durable=False).charge(Release("x", 9.0))
    assert synced == [] and quick.exists()


UNREADABLE, INVALID = "not a readable privacy ledger", "invalid release entry"
DAMAGED = {  # file text → how the refusal begins, after the file's name
    "not json": ("{not json", UNREADABLE),
    "not an object": ("[1, 2]", UNREADABLE),
    "no releases": ('{"version": 2}', UNREADABLE),
    "release not an object": ('{"version": 2, "releases": [3]}', UNREADABLE),
    "unknown version": ('{"version": 9, "releases": []}', "unknown ledger version 9"),
    "impossible release": (
        '{"version": 2, "releases": [{"name": "a", "noise_multiplier": -1}]}', INVALID),
    "count not a number": (
        '{"version": 2, "releases": [{"name": "a", "noise_multiplier": 1, "count": "x"}]}',
        INVALID),
    "streams not a number": ('{"version": 2, "releases": [], "streams": "x"}', UNREADABLE),
}  # fmt: skip


@pytest.mark.parametrize("damage", sorted(DAMAGED))
def test_a_damaged_ledger_file_is_refused_at_start_naming_the_file(tmp_path, damage):
    path = tmp_path / "ledger.json"
    text, words = DAMAGED[damage]
    path.write_text(text)
    with pytest.raises(LedgerFileError) as err:
        PrivacyLedger(path, epsilon_cap=1.0, delta=1e-6)
    assert str(err.value).startswith(f"{path}: {words}"), str(err.value)


def test_a_ledger_path_that_cannot_be_read_is_refused_naming_it(tmp_path):
    path = tmp_path / "ledger.json"
    path.mkdir()  # a directory where the file should be
    with pytest.raises(LedgerFileError, match=r"ledger\.json: not a readable privacy ledger"):
        PrivacyLedger(path, epsilon_cap=1.0, delta=1e-6)


def test_privacy_parameters_are_keyword_only(tmp_path):
    """A cap and a δ are both small floats: passing them by position invites a swap."""
    with pytest.raises(TypeError):
        PrivacyLedger(tmp_path / "ledger.json", 1.0, 1e-6)


def test_a_version_1_ledger_is_still_read_and_its_streams_start_afresh(tmp_path):
    """Ledgers written before noise streams were persisted (version 1) keep their charges."""
    path = tmp_path / "ledger.json"
    entry = {"name": "x", "noise_multiplier": 5.0, "count": 1, "sampling_rate": None}
    path.write_text(json.dumps({"version": 1, "releases": [entry]}))
    ledger = PrivacyLedger(path, epsilon_cap=1.0, delta=1e-6)
    assert [r.noise_multiplier for r in ledger.releases] == [5.0]
    assert ledger.next_stream() == 1
    assert json.loads(path.read_text())["version"] == 2  # rewritten in today's format
