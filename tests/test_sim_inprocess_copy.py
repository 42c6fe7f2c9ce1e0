"""The in-process Grid's message copy: independent of the original, same content."""

from __future__ import annotations

import numpy as np
from fedseg.simulations.backends.inprocess import copied
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity


def _message() -> Message:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    content = RecordDict(
        {
            "arrays": ArrayRecord(array_dict={"centres": Array(np.arange(6.0).reshape(2, 3))}),
            "config": ConfigRecord({"radius": 3.0, "release": "cluster_stats", "bins": [1, 2]}),
        }
    )
    return Message(content, 2, "train.cluster_stats", group_id="1")


def test_copy_has_the_same_content_and_metadata():
    original = _message()
    copy = copied(original)
    np.testing.assert_array_equal(
        copy.content["arrays"]["centres"].numpy(), np.arange(6.0).reshape(2, 3)
    )
    assert dict(copy.content["config"]) == dict(original.content["config"])
    assert copy.metadata.message_type == "train.cluster_stats"
    assert copy.metadata.dst_node_id == 2


def test_mutating_the_copy_leaves_the_original_alone():
    original = _message()
    copy = copied(original)
    copy.content["arrays"]["centres"] = Array(np.zeros(1))
    copy.content["config"]["radius"] = 9.0
    copy.content["config"]["bins"].append(3)
    copy.content["extra"] = ConfigRecord({"x": 1})
    copy.metadata.__dict__["_message_id"] = "new"
    assert original.content["arrays"]["centres"].numpy().shape == (2, 3)
    assert original.content["config"]["radius"] == 3.0
    assert original.content["config"]["bins"] == [1, 2]
    assert "extra" not in original.content
    assert original.metadata.message_id != "new"


def test_an_error_reply_is_copied():
    request = _message()
    reply = Message(Error(code=2, reason="boom"), reply_to=request)
    copy = copied(reply)
    assert copy.has_error() and copy.error.reason == "boom"


def test_grid_gives_every_message_and_reply_its_own_id():
    from fedseg.simulations.backends.inprocess import InProcessGrid
    from flwr.clientapp import ClientApp
    from flwr.supercore.run import Run

    grid = InProcessGrid(ClientApp(), 2, run=Run.create_empty(run_id=1))
    ids = [grid._new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(len(i) == 32 for i in ids)
