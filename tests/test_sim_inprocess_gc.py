"""The in-process grid's garbage-collector tuning is undone after a run, even a failed one."""

from __future__ import annotations

import gc

import pytest
from fedseg.simulations.backends.inprocess import _fewer_collections


def test_collector_settings_come_back_after_the_run():
    before = gc.get_threshold()
    with _fewer_collections():
        assert gc.get_threshold()[0] > before[0]
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_collector_settings_come_back_after_a_failure():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), _fewer_collections():
        raise RuntimeError("server failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_garbage_cycles_made_during_the_run_are_still_collected():
    class Cycle:
        pass

    with _fewer_collections():
        cycle = Cycle()
        cycle.self = cycle
        alive = len([o for o in gc.get_objects() if isinstance(o, Cycle)])
        del cycle
        gc.collect()
        assert len([o for o in gc.get_objects() if isinstance(o, Cycle)]) == alive - 1
