"""The pinned federation roster: merchant name -> long-term Ed25519 public key.

Every merchant receives the roster out of band (a JSON file) before any round. Its size
is n for every secure round, so the server can neither invent members nor change n; its
order (sorted names) gives each merchant a rank, the protocol's identity for it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fedseg.privacy.secagg.errors import SecAggConfigError

ROSTER_FORMAT = "fedseg-secagg-roster/1"
PUBLIC_KEY_BYTES = 32


@dataclass(frozen=True, eq=False)
class FederationRoster:
    """Sorted merchant names and their raw 32-byte Ed25519 public keys."""

    names: tuple[str, ...]
    public_keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.public_keys) or list(self.names) != sorted(set(self.names)):
            raise SecAggConfigError("roster names must be distinct, sorted, one key each")
        if not all(isinstance(n, str) and n and len(n.encode()) <= 255 for n in self.names):
            raise SecAggConfigError("roster names must be non-empty strings of <= 255 bytes")
        if not all(isinstance(k, bytes) and len(k) == PUBLIC_KEY_BYTES for k in self.public_keys):
            raise SecAggConfigError("roster keys must be raw 32-byte Ed25519 public keys")
        if len(set(self.public_keys)) != len(self.public_keys):
            raise SecAggConfigError("two roster merchants share one signing key")

    @classmethod
    def from_keys(cls, keys: Mapping[str, bytes]) -> FederationRoster:
        names = tuple(sorted(keys))
        return cls(names, tuple(bytes(keys[name]) for name in names))

    def __len__(self) -> int:
        return len(self.names)

    @cached_property
    def _ranks(self) -> dict[str, int]:
        return {name: rank for rank, name in enumerate(self.names)}

    def rank(self, name: str) -> int | None:
        """Rank of a merchant in the roster, ``None`` if it is not a member."""
        return self._ranks.get(name)

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 over the whole roster; every signed statement binds it."""
        h = hashlib.sha256(ROSTER_FORMAT.encode())
        for name, key in zip(self.names, self.public_keys, strict=True):
            raw = name.encode()
            h.update(len(raw).to_bytes(1, "big") + raw + key)
        return h.digest()

    def to_json(self) -> str:
        merchants = {n: k.hex() for n, k in zip(self.names, self.public_keys, strict=True)}
        return json.dumps({"format": ROSTER_FORMAT, "merchants": merchants}, indent=2)


def load_roster(path: str | Path) -> FederationRoster:
    """Read a roster file; any malformed entry is an error naming the merchant."""
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, dict) or raw.get("format") != ROSTER_FORMAT:
        raise SecAggConfigError(f"{path}: not a {ROSTER_FORMAT} file")
    merchants = raw.get("merchants")
    if not isinstance(merchants, dict):
        raise SecAggConfigError(f"{path}: 'merchants' must map names to hex keys")
    keys = {}
    for name, hex_key in merchants.items():
        try:
            keys[name] = bytes.fromhex(hex_key)
        except (TypeError, ValueError):
            raise SecAggConfigError(f"{path}: key of merchant {name!r} is not hex") from None
    return FederationRoster.from_keys(keys)


def save_roster(path: str | Path, roster: FederationRoster) -> None:
    Path(path).write_text(roster.to_json() + "\n")


def generate_signing_key(path: str | Path) -> bytes:
    """Create a merchant's long-term signing key (PKCS#8 PEM, mode 0600); returns its public key.

    The merchant keeps the file; the public key goes to the operator for the roster.
    """
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key.public_key().public_bytes_raw()


def load_signing_key(path: str | Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SecAggConfigError(f"{path}: not an Ed25519 private key")
    return key


def simulation_signing_key(seed: int, merchant: str) -> Ed25519PrivateKey:
    """Deterministic key for simulations and tests only: HKDF(seed) bound to the name.

    Anyone who knows the seed can sign for every merchant, so a deployment never uses it.
    """
    material = HKDF(
        hashes.SHA256(), 32, salt=b"fedseg-secagg/simulation-signing-key/v1",
        info=merchant.encode(),
    ).derive(int(seed).to_bytes(16, "big", signed=True))  # fmt: skip
    return Ed25519PrivateKey.from_private_bytes(material)


def simulation_roster(seed: int, merchants: Iterable[str]) -> FederationRoster:
    """Roster of :func:`simulation_signing_key` keys for ``merchants``."""
    return FederationRoster.from_keys(
        {m: simulation_signing_key(seed, m).public_key().public_bytes_raw() for m in merchants}
    )
