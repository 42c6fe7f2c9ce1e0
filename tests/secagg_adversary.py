"""A test-only adversarial server for secure aggregation: real merchants, forged messages.

Each attack test drives the real :class:`SecAggClient` objects with messages a malicious
server could send, collects whatever the merchants reveal, and then tries to recover what
the protocol must hide. An attack fails when that recovery is impossible.
"""

from __future__ import annotations

import numpy as np
from fedseg.privacy.secagg import (
    SecAggClient,
    SecAggParams,
    SecAggProtocolError,
    SecAggServer,
    SecAggSession,
    crypto,
    request_digest,
    shamir,
    signing,
    simulation_roster,
    simulation_signing_key,
)
from fedseg.privacy.secagg.encoding import decode_sum
from fedseg.privacy.secagg.masking import self_mask

SPEC = (("sums", (4, 10)), ("counts", (4,)))
MAX_ABS = 1e4
REQUEST = {"release": "cluster_stats", "centres": np.arange(6.0).reshape(3, 2)}


class Federation:
    """n simulated merchants (ranks 0..n-1, node id 100 + rank) and their real clients."""

    def __init__(
        self, n: int, *, seed: int = 1, round_id: int = 7, params=None, requests=None, used=None
    ):
        self.n, self.seed, self.round_id = n, seed, round_id
        self.params = params or SecAggParams()
        self.names = [f"merchant-{i:03d}" for i in range(n)]
        self.roster = simulation_roster(seed, self.names)
        self.session = self.session_for(REQUEST)
        rng = np.random.default_rng(seed)
        self.inputs = {
            r: {"sums": rng.normal(0, 500, (4, 10)), "counts": rng.integers(0, 900, 4) * 1.0}
            for r in range(n)
        }
        requests = requests or {}
        self.used = used if used is not None else {r: set() for r in range(n)}
        self.clients = {
            r: SecAggClient(
                self.session_for(requests.get(r, REQUEST)),
                merchant=name,
                node_id=100 + r,
                signing_key=simulation_signing_key(seed, name),
                used_sessions=self.used[r],
            )  # fmt: skip
            for r, name in enumerate(self.names)
        }
        self.server = SecAggServer(self.session)
        self.refused: dict[int, str] = {}

    def session_for(self, request) -> SecAggSession:
        return SecAggSession.create(
            roster=self.roster, params=self.params, round_id=self.round_id,
            request_digest=request_digest(request), vector_spec=SPEC, max_abs_value=MAX_ABS,
        )  # fmt: skip

    @property
    def graph(self):
        return self.session.graph

    def ask(self, stage: str, messages: dict[int, object]) -> dict[int, dict]:
        """Send each rank its message; a refusal is recorded (rank -> error text)."""
        replies = {}
        for rank, message in messages.items():
            client = self.clients[rank]
            try:
                if stage == "advertise":
                    replies[rank] = client.advertise_keys()
                elif stage == "masked":
                    replies[rank] = client.masked_input(self.inputs[rank], message)
                else:
                    replies[rank] = getattr(client, stage)(message)
            except SecAggProtocolError as exc:
                self.refused[rank] = str(exc)
        return replies

    def honest_until_masked(self, inbox_filter=None) -> dict[int, dict]:
        """Stages 0-2 through the honest server; ``inbox_filter(rank, sender)`` may withhold
        shares. Returns the masked-input replies by rank."""
        adverts = self.ask("advertise", {r: None for r in range(self.n)})
        self.adverts = adverts
        lists = self.server.collect_keys({100 + r: a for r, a in adverts.items()})
        shares = self.ask("share_keys", {node - 100: m for node, m in lists.items()})
        inboxes = self.server.collect_shares({100 + r: s for r, s in shares.items()})
        if inbox_filter is not None:
            for node, message in inboxes.items():
                message["inbox"] = {
                    p: c for p, c in message["inbox"].items() if inbox_filter(node - 100, p)
                }
        return self.ask("masked", {node - 100: m for node, m in inboxes.items()})

    def sign(self, told: dict[int, np.ndarray]) -> dict[int, bytes]:
        """Tell each rank a survivor set; return the signatures of those that signed."""
        msgs = {
            r: {"round": self.round_id, "survivors": np.asarray(s, np.uint32)}
            for r, s in told.items()
        }
        return {r: p["signature"] for r, p in self.ask("sign_survivors", msgs).items()}

    def unmask(self, ranks, survivors, signatures: dict[int, bytes], masked) -> dict[int, dict]:
        """Send ranks the certificate made of ``signatures`` on ``survivors`` plus the partner
        statements of their partners in it (as a server would)."""
        signers = sorted(signatures)
        certificate = {
            "round": self.round_id,
            "signers": np.array(signers, np.uint32),
            "signatures": np.frombuffer(b"".join(signatures[s] for s in signers), np.uint8).reshape(
                -1, 64
            ),
        }
        in_s = set(np.asarray(survivors).tolist())
        messages = {}
        for r in ranks:
            owners = [p for p in self.partners(r, masked) if p in in_s and p in masked]
            lists = [np.asarray(masked[o]["partners"]) for o in owners]
            messages[r] = {
                **certificate,
                "owners": np.array(owners, np.uint32),
                "owner_partner_counts": np.array([x.size for x in lists], np.uint32),
                "owner_partners": np.concatenate(lists).astype(np.uint32)
                if lists
                else np.zeros(0, np.uint32),
                "owner_signatures": np.frombuffer(
                    b"".join(masked[o]["partners_signature"] for o in owners), np.uint8
                ).reshape(-1, 64),
            }
        return self.ask("unmask", messages)

    @staticmethod
    def partners(rank: int, masked: dict[int, dict]) -> list[int]:
        """The neighbours ``rank`` masked with, as its masked-input reply states."""
        return np.asarray(masked[rank]["partners"]).astype(int).tolist()

    # --- what the adversary does with what it collected -------------------------------

    def mask_pk(self, rank: int) -> bytes:
        return self.adverts[rank]["keys"][:32]

    def rebuild(self, owner: int, kind: str, replies: dict[int, dict]) -> bytes | None:
        """The owner's self-mask seed or mask key from revealed shares, if t of them exist."""
        field = "self_mask_shares" if kind == "self_mask" else "key_shares"
        points = [(h + 1, shamir.share_from_bytes(r[field][owner])) for h, r in sorted(replies.items())
                  if owner in r[field]]  # fmt: skip
        t = self.session.config.threshold
        if len(points) < t:
            return None
        chunks = shamir.reconstruct(
            tuple(p for p, _ in points[:t]), np.stack([s for _, s in points[:t]])
        )
        return shamir.chunks_to_secret(chunks)

    def pair_mask(self, a: int, b: int, secret_of_b: bytes, size: int) -> np.ndarray:
        """The mask of pair (a, b) as a adds it, from b's rebuilt mask key."""
        low, high = sorted((a, b))
        info = crypto.pair_info(b"mask", low, high)
        seed = crypto.agree_from_private(
            secret_of_b, self.mask_pk(a), self.session.session_id, info
        )
        mask = crypto.expand_mask(seed, size)
        return mask if a < b else np.uint64(0) - mask

    def recover_sum(self, group: set[int], masked, replies) -> dict[str, np.ndarray] | None:
        """Sum of ``group``'s inputs from their uploads, or None if the shares do not allow it.

        Needs every member's self-mask seed and, for every mask a member shares with a
        partner outside the group, that partner's mask key (or the member's own)."""
        size = self.session.config.vector_length
        total = np.zeros(size, np.uint64)
        for u in group:
            seed = self.rebuild(u, "self_mask", replies)
            if seed is None:
                return None
            total += masked[u]["masked"] - self_mask(seed, size)
            for w in np.asarray(masked[u]["partners"]).tolist():
                if w in group:
                    continue
                key_w, key_u = self.rebuild(w, "key", replies), self.rebuild(u, "key", replies)
                if key_w is not None:
                    total -= self.pair_mask(u, w, key_w, size)
                elif key_u is not None:
                    total += self.pair_mask(w, u, key_u, size)
                else:
                    return None
        return decode_sum(total, self.session.config, len(group))

    def true_sum(self, group) -> dict[str, np.ndarray]:
        return {name: sum(self.inputs[r][name] for r in group) for name, _ in SPEC}


def impostor_signature(fed: Federation, rank: int, message: bytes) -> bytes:
    """A signature 'of' merchant ``rank`` made with a key outside the pinned roster."""
    return signing.sign(simulation_signing_key(fed.seed + 1000, fed.names[rank]), message)


def close(recovered, expected, step: float, count: int = 1) -> bool:
    """True when ``recovered`` equals the sum of ``count`` inputs up to rounding."""
    return recovered is not None and all(
        np.abs(recovered[k] - expected[k]).max() <= count * step for k in expected
    )
