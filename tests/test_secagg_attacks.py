"""Attacks of a malicious server (and colluding merchants) on secure aggregation.

Each test carries out one attack against the real merchants (issue #14, docs/secagg.md
"threat model") and asserts both that a merchant refused with the promised reason and
that the adversary cannot recover what the protocol hides. The defence each test is
named for is the one that stops that attack alone: without it, the recovery succeeds
(checked by mutation, see docs/secagg.md).
"""

import pickle

import numpy as np
import pytest
from fedseg.privacy.secagg import (
    SecAggAborted,
    SecAggProtocolError,
    signing,
    simulation_signing_key,
)
from secagg_adversary import REQUEST, Federation, close, impostor_signature

N_COMPLETE, N_SPARSE = 20, 100  # n = 20: k = 14, t = 8;  n = 100: k = 28, t = 8, m_min = 70


def test_sparse_threshold_is_small_enough_that_a_split_view_would_break_it():
    """Guards the premise of the consistency tests: at n = 100 a server that could show
    two survivor sets would get t shares of both secrets of a merchant (2t <= k)."""
    config = Federation(N_SPARSE).session.config
    assert 2 * config.threshold <= config.neighbours and config.min_survivors == 70


@pytest.mark.parametrize("n", [5, N_COMPLETE])
def test_isolation_attack_of_issue_14_gets_nothing(n):
    """'C survived, everyone else dropped' to every other merchant, 'everyone else
    dropped' to C, lists padded with ids of nobody: every merchant refuses to sign."""
    fed, target = Federation(n), 0
    masked = fed.honest_until_masked()
    nobody = list(range(n, n + fed.session.config.threshold))
    told = {r: sorted({r, target}) + nobody if r != target else [target] + nobody for r in masked}
    signatures = fed.sign(told)
    assert signatures == {}
    assert all("malformed survivor set" in fed.refused[r] for r in masked)
    # Without padding the sets are small, and still refused: fewer than m_min.
    fed = Federation(n)
    masked = fed.honest_until_masked()
    fed.sign({r: sorted({r, target}) for r in masked})
    assert all("fewer than m_min" in fed.refused[r] for r in masked)
    replies = fed.unmask(list(masked), [target], {}, masked)
    assert replies == {} and fed.recover_sum({target}, masked, replies) is None


def test_fewer_than_m_min_survivors_are_refused_before_signing():
    fed = Federation(N_COMPLETE)
    masked = fed.honest_until_masked()
    small = sorted(masked)[: fed.session.config.min_survivors - 1]
    assert fed.sign({r: small for r in small}) == {}
    assert all("fewer than m_min = 14" in fed.refused[r] for r in small)


def test_certificate_needs_m_min_signatures_of_the_same_set():
    """The consistency round alone: the server shows the same S to everyone but forwards
    only m_min - 2 signatures (as if the others had signed something else); with its own,
    each merchant counts at most m_min - 1."""
    fed = Federation(N_COMPLETE)
    masked = fed.honest_until_masked()
    survivors = sorted(masked)
    signatures = fed.sign({r: survivors for r in survivors})
    few = dict(list(signatures.items())[: fed.session.config.min_survivors - 2])
    assert fed.unmask(survivors, survivors, few, masked) == {}
    assert all("valid signatures on the survivor set" in fed.refused[r] for r in survivors)


def test_split_survivor_view_cannot_certify_both_halves():
    """Half of a merchant's neighbours are told it survived, half that it dropped; every
    merchant far away backs the first set. Only the first set can collect m_min
    signatures, so its mask key is never revealed and its input stays hidden."""
    fed, target = Federation(N_SPARSE), 0
    masked = fed.honest_until_masked()
    everyone = sorted(masked)
    without = [r for r in everyone if r != target]
    holders = fed.partners(target, masked)
    second = set(holders[len(holders) // 2 :])
    told = {r: (without if r in second else everyone) for r in everyone}
    signatures = fed.sign(told)
    first_sigs = {r: s for r, s in signatures.items() if r not in second}
    second_sigs = {r: s for r, s in signatures.items() if r in second}
    replies = fed.unmask([r for r in everyone if r not in second], everyone, first_sigs, masked)
    replies |= fed.unmask(sorted(second), without, second_sigs, masked)
    # what it would take: both secrets of the target, from t holders each
    recovered = fed.recover_sum({target}, masked, replies)
    assert not close(recovered, fed.true_sum({target}), fed.session.config.quantization_step)
    assert fed.rebuild(target, "key", replies) is None
    assert all("valid signatures" in fed.refused[r] for r in second)


def test_forged_and_replayed_certificate_entries_do_not_count():
    """Entries made with keys outside the roster, or signatures of another set, are
    rejected one by one: five genuine signatures stay five."""
    fed = Federation(N_COMPLETE)
    masked = fed.honest_until_masked()
    survivors = sorted(masked)
    genuine = fed.sign({r: survivors for r in survivors[:5]})
    message = signing.survivors_message(fed.session.session_id, np.array(survivors))
    forged = {r: impostor_signature(fed, r, message) for r in survivors[5:12]}
    other = signing.survivors_message(fed.session.session_id, np.array(survivors[:-1]))
    # genuine signatures of the same merchants, but of a different survivor set
    replayed = {r: signing.sign(simulation_signing_key(fed.seed, fed.names[r]), other)
                for r in survivors[12:]}  # fmt: skip
    assert fed.unmask(survivors[:5], survivors, genuine | forged | replayed, masked) == {}
    assert all("only 5 valid signatures" in fed.refused[r] for r in survivors[:5])


def test_ring_cut_around_a_segment_is_refused():
    """Sparse graph: the server declares the k/2 ring neighbours on each side of a short
    segment dropped (n = 200: 2 x 16 <= D = 60), so the segment's masks could be stripped
    and its sum read. The merchants at the cut edges refuse to sign; the others certify S,
    and the holders then refuse to reveal the seeds of the merchants at the edges."""
    fed = Federation(200)
    graph, half = fed.graph, fed.session.config.neighbours // 2
    ring = graph.ring
    segment = {int(r) for r in ring[:10]}
    cut = {int(r) for r in np.concatenate([ring[10 : 10 + half], ring[-half:]])}
    masked = fed.honest_until_masked()
    survivors = sorted(set(masked) - cut)
    assert len(survivors) >= fed.session.config.min_survivors
    signatures = fed.sign({r: survivors for r in survivors})
    assert len(signatures) >= fed.session.config.min_survivors  # S is certified
    replies = fed.unmask(sorted(signatures), survivors, signatures, masked)
    recovered = fed.recover_sum(segment, masked, replies)
    assert not close(recovered, fed.true_sum(segment), fed.session.config.quantization_step, 10)
    refusals = [fed.refused.get(r, "") for r in segment]
    assert sum("leaves this merchant cut off" in x for x in refusals) == 2  # the two edges
    assert all("would be cut off" in x for x in refusals if "leaves" not in x)


def test_withheld_shares_cannot_split_the_sum_into_interleaved_groups():
    """The server delivers shares only within two interleaved halves of the ring, so each
    half masks only with itself and its sum alone would come out. Nobody signs S, and no
    holder reveals a seed of a merchant that did not mask with all its neighbours in S."""
    fed = Federation(N_SPARSE)
    position = {int(r): p for p, r in enumerate(fed.graph.ring)}
    half = {r for r in range(N_SPARSE) if position[r] % 2 == 0}
    masked = fed.honest_until_masked(inbox_filter=lambda r, s: (r in half) == (s in half))
    everyone = sorted(masked)
    signatures = fed.sign({r: everyone for r in everyone})
    refusals = dict(fed.refused)
    replies = fed.unmask(everyone, everyone, signatures, masked)
    recovered = fed.recover_sum(half, masked, replies)
    assert not close(recovered, fed.true_sum(half), fed.session.config.quantization_step, len(half))
    assert signatures == {} and all("cut off" in refusals[r] for r in everyone)


def test_substituted_keys_are_refused_so_shares_never_reach_the_server():
    """Man in the middle: the server replaces the neighbours' round keys by keys it holds
    and signs their advertisements with keys outside the pinned roster."""
    fed, victim = Federation(N_COMPLETE), 0
    adverts = fed.ask("advertise", {r: None for r in range(fed.n)})
    message = fed.server.collect_keys({100 + r: a for r, a in adverts.items()})[100 + victim]
    for i, peer in enumerate(message["ranks"].tolist()):
        message["keys"][i] = np.roll(message["keys"][i], 7)
        statement = signing.advert_message(
            fed.session.session_id, peer, int(message["node_ids"][i]), fed.names[peer],
            message["keys"][i].tobytes(), fed.session.request_digest,
        )  # fmt: skip
        message["signatures"][i] = np.frombuffer(impostor_signature(fed, peer, statement), np.uint8)
    assert fed.ask("share_keys", {victim: message}) == {}
    assert "not signed by the pinned roster key" in fed.refused[victim]


def test_entries_for_merchants_outside_the_roster_cannot_be_sent():
    fed = Federation(N_COMPLETE)
    adverts = fed.ask("advertise", {r: None for r in range(fed.n)})
    lists = fed.server.collect_keys({100 + r: a for r, a in adverts.items()})
    message = dict(lists[100])
    message["ranks"] = message["ranks"].copy()
    message["ranks"][-1] = N_COMPLETE  # rank of nobody
    assert fed.ask("share_keys", {0: message}) == {}
    assert "malformed advertisement list" in fed.refused[0]


def test_tailored_request_to_one_merchant_is_detected():
    """Model inconsistency (Pasquini et al. 2022): merchant 3 alone gets other centres."""
    tailored = {**REQUEST, "centres": REQUEST["centres"] + 1e-9}
    fed = Federation(N_COMPLETE, requests={3: tailored})
    adverts = fed.ask("advertise", {r: None for r in range(fed.n)})
    assert 103 not in fed.server.collect_keys({100 + r: a for r, a in adverts.items()})
    # A server forwarding merchant 3's advertisement anyway: its neighbours refuse, and
    # merchant 3 refuses its neighbours' (signed over the common request).
    lists = _lists_with(fed, adverts, odd=3)
    neighbours = [int(r) for r in fed.graph.neighbours_of(3)]
    fed.ask("share_keys", {r: lists[r] for r in [*neighbours, 3]})
    assert all("different request digest" in fed.refused[r] for r in [*neighbours, 3])


def _lists_with(fed, adverts, odd):
    """Advertisement lists as the honest server builds them, plus ``odd``'s own entry."""
    from fedseg.privacy.secagg.server_keys import Advert, advert_lists

    by_node = {100 + r: Advert(r, 100 + r, a["keys"], a["signature"]) for r, a in adverts.items()}
    lists = advert_lists(fed.session, by_node, {r: 100 + r for r in adverts})
    digest = np.frombuffer(adverts[odd]["request_digest"], np.uint8)
    for message in lists.values():
        ranks = message["ranks"].tolist()
        if odd in ranks:
            message["digests"][ranks.index(odd)] = digest
    return {node - 100: m for node, m in lists.items()}


def test_a_second_unmask_request_is_refused():
    """Both shares of one owner from one merchant: after revealing for S it answers no
    more requests, and its saved state (pickled between messages) remembers that."""
    fed = Federation(N_COMPLETE)
    masked = fed.honest_until_masked()
    survivors = sorted(masked)
    signatures = fed.sign({r: survivors for r in survivors})
    first = fed.unmask([1], survivors, signatures, masked)
    assert first[1]["self_mask_shares"] and not first[1]["key_shares"]
    fed.clients[1] = pickle.loads(pickle.dumps(fed.clients[1]))
    assert fed.unmask([1], survivors[1:], signatures, masked) == {}
    assert "unmask called during done" in fed.refused[1]
    assert fed.clients[1]._revealed == {p: "self_mask" for p in first[1]["self_mask_shares"]}


def test_one_merchant_adding_junk_to_its_masked_words_aborts_the_round():
    """Issue #15: 2^61 added to one upload made a run 'ok' with segment sizes of 1e9."""
    fed = Federation(N_COMPLETE)
    replies = fed.ask("advertise", {r: None for r in range(fed.n)})
    fed.adverts = replies
    server = fed.server
    lists = server.collect_keys({100 + r: a for r, a in replies.items()})
    shares = fed.ask("share_keys", {n - 100: m for n, m in lists.items()})
    inboxes = server.collect_shares({100 + r: s for r, s in shares.items()})
    masked = fed.ask("masked", {n - 100: m for n, m in inboxes.items()})
    masked[4]["masked"] = masked[4]["masked"] + np.uint64(2**61)
    survivors = server.collect_masked({100 + r: m for r, m in masked.items()})
    sigs = fed.ask("sign_survivors", {n - 100: m for n, m in survivors.items()})
    certificates = server.collect_signatures({100 + r: s for r, s in sigs.items()})
    answers = fed.ask("unmask", {n - 100: m for n, m in certificates.items()})
    with pytest.raises(SecAggAborted, match="outside the range 20 merchants can produce"):
        server.collect_unmask({100 + r: a for r, a in answers.items()})
    assert server.contributors_ == []


def _asymmetric_delivery(fed, target):
    """Deliver to ``target`` only the shares of half its neighbours (W), but its own share
    to all of them: the other half (H) hold its self-mask seed shares without being mask
    partners of it. Declaring W dropped would strip every mask of the target."""
    holders = sorted(int(r) for r in fed.graph.neighbours_of(target))
    withheld = set(holders[1::2])  # H: hold the target's share, the target never masks with them
    masked = fed.honest_until_masked(inbox_filter=lambda r, s: r != target or s not in withheld)
    dropped = set(holders) - withheld  # W: the target's only mask partners
    survivors = sorted(set(masked) - dropped)
    return masked, survivors, withheld, dropped


@pytest.mark.parametrize("forge", [False, True])
def test_asymmetric_share_delivery_cannot_isolate_a_merchant(forge):
    """The holders check the target's signed partner statement: it masked with W only,
    while H are its neighbours in S. A forged statement claiming H fails its signature."""
    fed, target = Federation(N_SPARSE), 0
    masked, survivors, withheld, _ = _asymmetric_delivery(fed, target)
    assert len(survivors) >= fed.session.config.min_survivors
    real_partners = masked[target]["partners"]
    if forge:  # the server claims the target masked with all its neighbours in S
        claimed = np.array(sorted(set(fed.partners(target, masked)) | withheld), np.int64)
        statement = signing.partners_message(
            fed.session.session_id, target, fed.mask_pk(target), claimed
        )
        masked[target] = {**masked[target], "partners": claimed.astype(np.uint32),
                          "partners_signature": impostor_signature(fed, target, statement)}  # fmt: skip
    signatures = fed.sign({r: survivors for r in survivors})
    assert target not in signatures and len(signatures) >= fed.session.config.min_survivors
    replies = fed.unmask(sorted(signatures), survivors, signatures, masked)
    if forge:  # what the target really masked with, for the recovery
        masked[target] = {**masked[target], "partners": real_partners}
    recovered = fed.recover_sum({target}, masked, replies)
    assert not close(recovered, fed.true_sum({target}), fed.session.config.quantization_step)
    reason = "has no valid partner statement" if forge else "would be cut off"
    assert all(f"survivor rank {target} {reason}" in fed.refused[h] for h in withheld)


def test_a_replayed_session_cannot_reuse_old_survivor_signatures():
    """The server repeats a round id and request, so the session (and every statement it
    binds) is the same: round A's certificate on S would then certify S in round B too,
    beside a second set signed in round B. Each merchant refuses a session it has
    already taken part in. (Without that memory, round B splits the target's holders.)"""
    first = Federation(N_SPARSE)
    masked = first.honest_until_masked()
    everyone = sorted(masked)
    old = first.sign({r: everyone for r in everyone})  # round A's certificate on S
    with pytest.raises(SecAggProtocolError, match="already took part in this session"):
        Federation(N_SPARSE, used=first.used)
    fed, target = Federation(N_SPARSE, used={r: set() for r in range(N_SPARSE)}), 0  # no memory
    masked = fed.honest_until_masked()
    holders = fed.partners(target, masked)
    second = set(holders[len(holders) // 2 :])
    first_half = set(holders) - second
    without = [r for r in everyone if r != target]
    told = {r: (everyone if r in first_half else without) for r in everyone}
    fresh = fed.sign(told)
    replies = fed.unmask(
        sorted(first_half), everyone, old | {r: fresh[r] for r in first_half}, masked
    )
    others = {r: s for r, s in fresh.items() if r not in first_half}
    replies |= fed.unmask(sorted(others), without, others, masked)
    recovered = fed.recover_sum({target}, masked, replies)
    assert close(recovered, fed.true_sum({target}), fed.session.config.quantization_step)
