"""Mutation check of the secure-aggregation defences: remove one at a time, run its test.

Each entry removes one defence by a textual edit, runs the test named for it and
restores the file. Every mutant must be KILLED (the test fails); the attack tests fail by
recovering what the defence protects. Usage: python tests/secagg_mutants.py [index ...]
"""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
T = "tests/test_secagg_attacks.py"
MUTANTS = [
    (
        "a session can be joined twice",
        "privacy/secagg/client.py",
        "        if session.session_id in used_sessions:",
        "        if False:",
        f"{T}::test_a_replayed_session_cannot_reuse_old_survivor_signatures",
    ),
    (
        "certificate threshold t instead of m_min",
        "privacy/secagg/client_checks.py",
        "if others + 1 < session.config.min_survivors:",
        "if others + 1 < session.config.threshold:",
        f"{T}::test_split_survivor_view_cannot_certify_both_halves",
    ),
    (
        "no certificate check at all",
        "privacy/secagg/client.py",
        "        check_certificate(self.session, self.rank, survivors, message)\n",
        "",
        f"{T}::test_certificate_needs_m_min_signatures_of_the_same_set",
    ),
    (
        "every certificate entry counted valid",
        "privacy/secagg/survivors.py",
        "        valid.flags.writeable = False",
        "        valid[:] = True\n        valid.flags.writeable = False",
        f"{T}::test_forged_and_replayed_certificate_entries_do_not_count",
    ),
    (
        "no m_min check before signing",
        "privacy/secagg/client_checks.py",
        "    if survivors.size < config.min_survivors:",
        "    if False:",
        f"{T}::test_fewer_than_m_min_survivors_are_refused_before_signing",
    ),
    (
        "no ring-side guard",
        "privacy/secagg/survivors.py",
        "    guard[graph.ring] = (clockwise > floor) & (counter > floor)",
        "    guard[:] = True",
        f"{T}::test_ring_cut_around_a_segment_is_refused",
    ),
    (
        "partner statements not verified",
        "privacy/secagg/survivors.py",
        "            if not signing.verify(self.session.roster.public_keys[owner], signature, statement):",
        "            if False:",
        "tests/test_secagg_attacks.py::test_asymmetric_share_delivery_cannot_isolate_a_merchant",
    ),
    (
        "holders skip the owner's completeness",
        "privacy/secagg/survivors.py",
        "            elif not self.safe(owner, partners):",
        "            elif not self.guard[owner]:",
        "tests/test_secagg_attacks.py::test_asymmetric_share_delivery_cannot_isolate_a_merchant",
    ),
    (
        "no partner completeness check",
        "privacy/secagg/survivors.py",
        "        return bool(np.all(at < partners.size) and np.array_equal(partners[at], needed))",
        "        return True",
        f"{T}::test_withheld_shares_cannot_split_the_sum_into_interleaved_groups",
    ),
    (
        "advert signatures not verified",
        "privacy/secagg/client_checks.py",
        "        if not signing.verify(session.roster.public_keys[peer], signatures[i].tobytes(), statement):",
        "        if False:",
        f"{T}::test_substituted_keys_are_refused_so_shares_never_reach_the_server",
    ),
    (
        "request digest not compared (client)",
        "privacy/secagg/client_checks.py",
        "    if np.any(digests != np.frombuffer(session.request_digest, np.uint8)):",
        "    if False:",
        f"{T}::test_tailored_request_to_one_merchant_is_detected",
    ),
    (
        "ranks outside the roster accepted",
        "privacy/secagg/messages.py",
        "ranks[0] < 0 or ranks[-1] >= n or ",
        "ranks[0] < 0 or ",
        f"{T}::test_entries_for_merchants_outside_the_roster_cannot_be_sent",
    ),
    (
        "no stage machine",
        "privacy/secagg/client.py",
        "        if self._stage != stage:\n",
        "        if False:\n",
        f"{T}::test_a_second_unmask_request_is_refused",
    ),
    (
        "no range check on the unmasked sum",
        "privacy/secagg/encoding.py",
        "    if np.any((signed > limit) | (signed < -limit)):",
        "    if False:",
        f"{T}::test_one_merchant_adding_junk_to_its_masked_words_aborts_the_round",
    ),
    (
        "no clipping (values pass through)",
        "privacy/secagg/encoding.py",
        "bounded = np.clip(np.nan_to_num(flat, nan=0.0), -config.max_abs_value, config.max_abs_value)",
        "bounded = flat",
        "tests/test_secagg_parts.py::test_encoding_clips_and_counts_nan_inf_and_large_values",
    ),
    (
        "reply keys not checked",
        "privacy/secagg/messages.py",
        '        and set(payload) == {"round", *REPLY_KEYS[stage]}',
        '        and set(payload) >= {"round", *REPLY_KEYS[stage]}',
        "tests/test_secagg_protocol.py::test_malformed_stale_and_oversized_replies_count_as_dropouts",
    ),
    (
        "server does not look for unsafe survivors",
        "privacy/secagg/server.py",
        "        if unsafe:\n",
        "        if False:\n",
        "tests/test_secagg_protocol.py::test_a_run_of_k_over_2_dropped_ring_neighbours_aborts_before_anything_leaves",
    ),
]
only = sys.argv[1:]
for i, (name, path, old, new, test) in enumerate(MUTANTS):
    if only and str(i) not in only:
        continue
    file = ROOT / path
    text = file.read_text()
    assert text.count(old) == 1, (name, text.count(old))
    file.write_text(text.replace(old, new))
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        verdict = "KILLED (test fails)" if r.returncode != 0 else "SURVIVED (test passes!)"
        if only:
            print([line for line in r.stdout.splitlines() if line.startswith("E ")][:2])
    finally:
        file.write_text(text)
    print(f"{i:2d} {name:45s} -> {verdict}", flush=True)
