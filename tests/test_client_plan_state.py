"""The accepted plan's state, written after every message: the same bytes as a plain
json.dumps of it, read back to an equal plan (both are memoized per plan)."""

import json

from fedseg.client.plan import AcceptedPlan
from fedseg.privacy.accounting import Release
from fedseg.privacy.plan import RunPlan


def test_state_is_json_dumps_of_plan_and_use_and_round_trips():
    plan = RunPlan(
        (
            Release("feature_ranges", 9.5, count=1),
            Release("cluster_displacements", 4.25, count=3),
        )
    )
    accepted = AcceptedPlan(plan)
    for used in (
        {},
        {"cluster_displacements": 2},
        {"feature_ranges": 1, "cluster_displacements": 3},
    ):
        accepted.used = dict(used)
        text = accepted.to_state()
        assert text == json.dumps({"plan": plan.to_json(), "used": used})
        again = AcceptedPlan.from_state(text)
        assert again.plan == plan and again.used == used
        again.used["x"] = 1  # each read gets its own counts
        assert AcceptedPlan.from_state(text).used == used
