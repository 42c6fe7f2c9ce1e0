"""The recommender wired into the real Flower apps: one budget, honest metrics, nothing leaks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import assert_no_identifier_sent, assert_no_per_customer_array
from fedseg.client.features import customer_features
from fedseg.client.merchant import MerchantSettings, build_node
from fedseg.client.plan import AcceptedPlan
from fedseg.client.policy import MerchantPolicy
from fedseg.privacy import releases
from fedseg.privacy.accounting import Release
from fedseg.privacy.ledger import BudgetExceeded, PrivacyLedger
from fedseg.privacy.plan import RunPlan
from fedseg.privacy.protocol.builtin import ecommerce_schema
from fedseg.privacy.pseudonyms import Pseudonymizer
from fedseg.privacy.published.recommender import RecommenderModel
from fedseg.server.budget import noise_plan
from fedseg.server.config import (
    RecommenderConfig,
    SecureAggConfig,
    SegmentationConfig,
    StageShares,
)
from fedseg.server.model import SegmentModel
from fedseg.server.recommender.rounds import (
    SCORER_CANDIDATES,
    CatalogueError,
    read_catalogue,
)
from fedseg.simulations.data.federation import write_federation
from fedseg.simulations.data.synthetic import generate_federation
from fedseg.simulations.experiments.runner import merchant_files, simulate

RELEASES = {"recommender_item_popularity", "recommender_gram", "recommender_content_check"}
EPSILON = 8.0


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    fed = _federation_with_long_ids(root / "fed", users=1200, seed=5)
    config = {"k": 4, "epsilon": EPSILON, "rounds": 3, "seed": 5, "recommender": True}
    result = simulate(
        fed, config, out_dir=root / "out", trace_dir=root / "trace", state_dir=root / "state"
    )
    return fed, root, result


def _federation_with_long_ids(path, *, users, seed):
    """A 3-merchant synthetic federation whose user ids are long enough to search for."""
    generated = generate_federation(users=users, merchants=3, seed=seed)
    for merchant_id, table in generated.merchants.items():
        table["user_id"] = [f"customer-{merchant_id}-{u}" for u in table["user_id"]]
    truth = generated.truth
    truth["user_id"] = "customer-" + truth["merchant_id"] + "-" + truth["user_id"].astype(str)
    return write_federation(generated, path)


def _assert_nothing_of_a_customer_sent(fed, files, *, seed):
    """No id, pseudonym, e-mail, item history or per-customer array in the traced messages."""
    blob = b"".join(f.read_bytes() for f in files)
    sizes = []
    for path in merchant_files(fed):
        raw = pd.read_csv(path)
        pseudonymizer = Pseudonymizer.for_simulation(path.stem, seed)
        features, _, _ = customer_features(path, pseudonymizer=pseudonymizer)
        assert_no_identifier_sent(blob, raw, features.index)
        for _, items in list(raw.groupby("user_id")["item_id"])[:200]:
            history = pd.unique(items.to_numpy())
            if len(history) >= 3:  # a customer's item list, as int or float arrays would carry it
                assert history.astype(np.int64).tobytes() not in blob, "an item history was sent"
                assert history.astype(np.float64).tobytes() not in blob, "an item history was sent"
        sizes.append(len(features))
    assert_no_per_customer_array(files, sizes)


@pytest.mark.slow
def test_model_json_has_a_usable_recommender(traced_run):
    fed, root, _ = traced_run
    model = SegmentModel.load(root / "out" / "model.json")
    published = model.extras["recommender"]
    catalogue = pd.read_csv(fed / "items.csv")["item_id"].astype(str).tolist()
    assert published["item_ids"] == catalogue
    recommender = RecommenderModel.from_dict(published)
    assert recommender.n_items == len(catalogue) and recommender.n_segments == model.k
    top = recommender.recommend(np.array([0, 1, 2]), segment=0, n=10)
    assert len(set(top.tolist())) == 10 and not set(top.tolist()) & {0, 1, 2}


@pytest.mark.slow
def test_one_budget_covers_segmentation_and_recommender(traced_run):
    _, root, result = traced_run
    releases = {r["name"]: r for r in result.model.privacy["releases"]}
    assert RELEASES <= set(releases)
    assert {"feature_ranges", "cluster_displacements"} <= set(releases)
    assert result.model.privacy["epsilon"] <= EPSILON
    for ledger_file in (root / "state").glob("*/ledger.json"):  # each merchant's own ledger
        ledger = PrivacyLedger(ledger_file, epsilon_cap=math.inf, delta=1e-6)
        assert 0.9 * EPSILON < ledger.spent() <= EPSILON
    assert len(list((root / "state").glob("*/ledger.json"))) == 3


@pytest.mark.slow
def test_metrics_beat_random_ranking(traced_run):
    _, _, result = traced_run
    figures = result.metrics["recommender"]
    # Random scores: HR@10 = 0.1 and NDCG@10 ≈ 0.043 (sampled), 10/320 full; with ~1,100
    # tested customers their std is < 0.01, so these bounds are > 8σ above chance.
    assert figures["hr_at_10"] > 0.2
    assert figures["ndcg_at_10"] > 0.1
    assert figures["hr_at_10_full"] > 0.1
    assert figures["evaluated_customers"] > 1000
    baselines = figures["baselines"]  # same customers, segments and negatives, side by side
    assert set(baselines) == {
        "ease",
        "global_popularity",
        "segment_popularity",
        "segment_popularity_dp",
    }
    # The synthetic personas buy differently: knowing the segment beats global popularity.
    assert baselines["segment_popularity"]["hr_at_10"] > baselines["global_popularity"]["hr_at_10"]
    assert 0.1 < baselines["segment_popularity_dp"]["hr_at_10"] <= 1.0


@pytest.mark.slow
def test_recommender_messages_leak_no_customer_data(traced_run):
    fed, root, _ = traced_run
    files = sorted((root / "trace").iterdir())
    kinds = {f.name.split("-", 2)[2] for f in files}
    assert {"query.item_popularity.pb", "query.item_gram.pb", "query.content_check.pb"} <= kinds
    _assert_nothing_of_a_customer_sent(fed, files, seed=5)


@pytest.mark.slow
def test_assign_recommends_unseen_items_to_own_customers(traced_run):
    from fedseg.client.assign import assign_segments

    fed, root, _ = traced_run
    path = merchant_files(fed)[0]
    table = assign_segments(root / "out" / "model.json", path)
    raw = pd.read_csv(path)
    seen = raw.groupby(raw["user_id"].astype(str))["item_id"].agg(lambda s: set(map(str, s)))
    assert set(table["user_id"]) == set(seen.index)
    for user_id, line in zip(table["user_id"], table["recommendations"], strict=True):
        items = line.split(" ")
        assert len(items) == len(set(items)) == 10
        assert not set(items) & seen[user_id], "recommended an item the customer already has"


@pytest.mark.slow
def test_secure_aggregation_with_distributed_noise(tmp_path):
    fed = write_federation(generate_federation(users=900, merchants=3, seed=2), tmp_path / "fed")
    config = {
        "k": 3, "epsilon": 4.0, "rounds": 3, "seed": 2, "recommender": True,
        "secure-agg": True, "noise": "distributed",
    }  # fmt: skip
    result = simulate(fed, config, out_dir=tmp_path / "out")
    assert RELEASES <= {r["name"] for r in result.model.privacy["releases"]}
    assert result.model.privacy["epsilon"] <= 4.0
    tasks = [h["task"] for h in result.model.history]
    assert tasks[-3:] == [
        "recommender_item_popularity", "recommender_gram", "recommender_content_check"
    ]  # fmt: skip
    assert all(len(h["contributors"]) == 3 for h in result.model.history[-3:])
    assert result.metrics["recommender"]["hr_at_10"] > 0.2


def test_budget_split_gives_the_recommender_ninety_percent_in_three_releases():
    on = RecommenderConfig(enabled=True)
    cfg = SegmentationConfig(k=3, epsilon=2.0, rounds=4, recommender=on)
    z = noise_plan(cfg)
    counts = {"cluster_displacements": 4}
    precision = {name: counts.get(name, 1) / v**2 for name, v in z.items()}
    total = sum(precision.values())
    assert precision["recommender_item_popularity"] / total == pytest.approx(0.405, rel=1e-9)
    assert precision["recommender_gram"] / total == pytest.approx(0.405, rel=1e-9)
    assert precision["recommender_content_check"] / total == pytest.approx(0.09, rel=1e-9)
    assert precision["feature_ranges"] / total == pytest.approx(0.1 * 0.15, rel=1e-9)
    unchecked = noise_plan(
        SegmentationConfig(recommender=RecommenderConfig(enabled=True, content_share=0.0))
    )
    assert "recommender_content_check" not in unchecked
    plain = noise_plan(SegmentationConfig(k=3, epsilon=2.0, rounds=4))
    assert set(plain) == {"feature_ranges", "feature_moments", "init_displacements",
                          "cluster_displacements", "segment_profiles"}  # fmt: skip


def test_config_keeps_validating_shares():
    assert RecommenderConfig(enabled=True).share == 0.9
    half = SegmentationConfig(recommender=RecommenderConfig(enabled=True, share=0.5))
    assert half.lloyd_share == pytest.approx(0.5 * (1 - 0.15 - 0.10 - 0.25 - 0.10))
    with pytest.raises(ValueError, match="budget shares"):
        RecommenderConfig(enabled=True, share=1.0)
    with pytest.raises(ValueError, match="budget shares"):
        StageShares(ranges=0.5, init=0.5)


def test_catalogue_errors_name_the_file_and_row(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,category\na,x\nb,y\n")
    assert read_catalogue(path)["item_id"].tolist() == ["a", "b"]
    path.write_text("item_id\na\na\n")
    with pytest.raises(CatalogueError, match="'a' appears twice"):
        read_catalogue(path)
    path.write_text("sku\na\n")
    with pytest.raises(CatalogueError, match="no column 'item_id'"):
        read_catalogue(path)
    with pytest.raises(CatalogueError, match="run_config 'items'"):
        read_catalogue("")


def _tiny_node(tmp_path, *, epsilon_cap=math.inf, holdout=False):
    """Two customers: u1 saw items a, b (in that order); u2 saw c only."""
    (tmp_path / "merchants").mkdir(parents=True, exist_ok=True)
    events = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "timestamp": ["2024-01-01", "2024-01-02", "2024-01-01"],
            "event": ["purchase", "purchase", "purchase"],
            "item_id": ["a", "b", "c"],
            "price": [1.0, 2.0, 3.0],
        }
    )
    path = tmp_path / "merchants" / "m0.csv"
    events.to_csv(path, index=False)
    settings = MerchantSettings(
        data_path=str(path), merchant_id="m0", as_of="2024-02-01",
        policy=MerchantPolicy(epsilon_cap=epsilon_cap), simulation_seed=0, holdout_last=holdout,
    )  # fmt: skip
    node = build_node(settings, ecommerce_schema(()))  # the events have no categories
    d = len(node.names)
    payload = {
        "lower": np.zeros(d), "upper": np.full(d, 1e6), "mean": np.zeros(d), "scale": np.ones(d),
        "radius": 1e6, "centres": np.zeros((1, d)), "items": ["a", "b", "c", "d"],
        "release": releases.POPULARITY, "request_id": 7,
    }  # fmt: skip
    return node, payload


def _plan(z: float = 0.0) -> AcceptedPlan:
    kinds = (releases.POPULARITY, releases.GRAM)
    return AcceptedPlan(RunPlan(tuple(Release(kind, z) for kind in kinds)))


def test_node_releases_unit_norm_popularity_by_hand(tmp_path):
    node, payload = _tiny_node(tmp_path)
    plan = _plan()
    overall = node.answer("item_popularity", payload, plan)["overall"]
    root_half = 1 / math.sqrt(2)  # u1's row (1, 1, 0, 0) normalized; u2's row (0, 0, 1, 0)
    assert np.allclose(overall, [root_half, root_half, 1.0, 0.0])
    request = dict(payload, item_index=np.array([0, 2]), release=releases.GRAM)
    triangle = node.answer("item_gram", request, plan)["gram"]
    # Items (a, c) + one segment column of weight 1: u1 → (1, 0, 1), u2 → (0, 1, 1). Without
    # noise (ε = ∞) the rows are exact 0/1 counts; with noise they are unit-normalized.
    gram = releases.gram_from_triangle(triangle, 3)
    assert np.allclose(gram, [[1, 0, 1], [0, 1, 1], [1, 1, 2]])


def test_items_the_catalogue_lacks_are_ignored_not_an_error(tmp_path):
    """A catalogue without item 'b' is no membership probe: the answer comes as for any
    other catalogue (u1's row is (1, 0)), with no error that would tell the server."""
    node, payload = _tiny_node(tmp_path)
    overall = node.answer("item_popularity", dict(payload, items=["a", "c"]), _plan())["overall"]
    assert np.allclose(overall, [1.0, 1.0])


def test_holdout_hides_each_customers_last_item(tmp_path):
    node, payload = _tiny_node(tmp_path, holdout=True)
    overall = node.answer("item_popularity", payload, _plan())["overall"]
    assert np.allclose(overall, [1.0, 0.0, 1.0, 0.0])  # u1 keeps a only; u2 keeps its one item
    with pytest.raises(ValueError, match="simulations only"):
        MerchantSettings(data_path="x", merchant_id="m", policy=MerchantPolicy(),
                         key_file="k", state_dir="s", holdout_last=True)  # fmt: skip


def test_capped_merchant_refuses_before_releasing(tmp_path):
    node, payload = _tiny_node(tmp_path, epsilon_cap=0.5)
    with pytest.raises(BudgetExceeded):
        node.answer("item_popularity", payload, _plan(1.0))
    assert node.ledger.spent() == 0.0


@pytest.mark.slow
def test_catalogue_without_attributes_skips_the_content_check(tmp_path):
    fed = write_federation(generate_federation(users=400, merchants=2, seed=3), tmp_path / "fed")
    items = pd.read_csv(fed / "items.csv")[["item_id"]]
    items.to_csv(fed / "items.csv", index=False)
    config = {"k": 3, "epsilon": 4.0, "rounds": 2, "seed": 3, "recommender": True}
    result = simulate(fed, config, out_dir=tmp_path / "out")
    names = {r["name"] for r in result.model.privacy["releases"]}
    assert "recommender_content_check" not in names and "recommender_gram" in names
    assert 0.99 * 4.0 < result.model.privacy["epsilon"] <= 4.0  # its share went to the rest
    published = result.model.extras["recommender"]
    assert published["content"] is None and "content_check" not in published


@pytest.mark.slow
def test_content_check_offers_every_scorer_and_applies_its_choice(traced_run):
    _, root, _ = traced_run
    published = SegmentModel.load(root / "out" / "model.json").extras["recommender"]
    check = published["content_check"]
    assert check["candidates"] == SCORER_CANDIDATES.tolist()  # segments → lift rows too
    best = int(np.argmax(check["noisy_gain"]))
    chosen = check["candidates"][best] if check["noisy_gain"][best] > 0 else [0.0, 0.0]
    assert [published["content_weight"], published["lift_strength"]] == chosen


@pytest.mark.slow
def test_dpsgd_recommender_through_the_apps_plain_and_secure(tmp_path):
    from fedseg.client.assign import assign_segments

    fed = _federation_with_long_ids(tmp_path / "fed", users=3000, seed=6)
    base = {"k": 3, "epsilon": 6.0, "rounds": 2, "seed": 6, "recommender": True,
            "recommender-model": "dpsgd", "fedavg-rounds": 2}  # fmt: skip
    plain = simulate(fed, base, out_dir=tmp_path / "plain", state_dir=tmp_path / "state",
                     trace_dir=tmp_path / "trace")  # fmt: skip
    traced = sorted((tmp_path / "trace").iterdir())
    assert any(f.name.endswith("train.recommender_train.pb") for f in traced)
    _assert_nothing_of_a_customer_sent(fed, traced, seed=6)  # trained parameters only
    secure = simulate(fed, {**base, "secure-agg": True}, out_dir=tmp_path / "secure")
    steps = RecommenderConfig().dpsgd_steps
    for result in (plain, secure):
        published = result.model.extras["recommender"]
        assert published["kind"] == "dp-sgd"
        dpsgd = [r for r in result.model.privacy["releases"] if r["name"] == "recommender_dpsgd"]
        assert len(dpsgd) == 1 and dpsgd[0]["count"] == 2 * steps  # every local step
        assert dpsgd[0]["sampling_rate"] == pytest.approx(0.1)
        assert result.model.privacy["epsilon"] <= 6.0
        # Random ranking: 0.1, std 0.006 over ~2,800 tested customers.
        assert result.metrics["recommender"]["hr_at_10"] > 0.15
    # Secure aggregation sums the same updates as the plain sum, up to fixed-point precision.
    for name, value in plain.model.extras["recommender"]["parameters"].items():
        other = np.asarray(secure.model.extras["recommender"]["parameters"][name])
        np.testing.assert_allclose(other, np.asarray(value), atol=1e-5)
    for ledger_file in (tmp_path / "state").glob("*/ledger.json"):  # each merchant's own
        ledger = PrivacyLedger(ledger_file, epsilon_cap=math.inf, delta=1e-6)
        assert ledger.spent() <= 6.0
    table = assign_segments(tmp_path / "plain" / "model.json", merchant_files(fed)[0])
    assert all(len(line.split(" ")) == 10 for line in table["recommendations"])


def test_dpsgd_refuses_distributed_noise():
    with pytest.raises(ValueError, match="every local step"):
        SegmentationConfig(recommender=RecommenderConfig(enabled=True, model="dpsgd"),
                           secagg=SecureAggConfig(enabled=True), noise="distributed")  # fmt: skip
    with pytest.raises(ValueError, match="recommender-model"):
        RecommenderConfig(enabled=True, model="neural")
