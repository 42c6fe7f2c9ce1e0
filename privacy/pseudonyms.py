"""Keyed pseudonyms for customer identifiers (HMAC-SHA256).

A merchant replaces every ``user_id`` with ``HMAC-SHA256(subkey, user_id)`` before any
feature is computed. Without the merchant's secret key nobody can link a pseudonym to the
original id, not even by hashing a list of candidate ids (a plain SHA-256 would allow
exactly that). The key is split per purpose, ``subkey = HMAC-SHA256(key, label || purpose)``,
so one merchant secret yields unrelated pseudonyms for, say, ``user_id`` and ``item_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

MIN_KEY_BYTES = 32
_SUBKEY_LABEL = b"fedseg/pseudonym/v1/"
_SIMULATION_LABEL = b"fedseg/simulation-key/v1/"
_FINGERPRINT_LABEL = b"fedseg/key-fingerprint/v1"
_SHA256_BLOCK = 64
PSEUDONYM_CHARS = 64  # hex digits of one HMAC-SHA256


class PseudonymKeyError(ValueError):
    """The pseudonym key is missing, unreadable or too short."""


class Pseudonymizer:
    """Maps identifiers to hex HMAC-SHA256 pseudonyms under one merchant key and purpose."""

    def __init__(self, key: bytes, *, purpose: str = "user_id") -> None:
        if not isinstance(key, bytes | bytearray):
            raise TypeError(f"pseudonym key must be bytes, got {type(key).__name__}")
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(
                f"pseudonym key is {len(key)} bytes; at least {MIN_KEY_BYTES} are required"
            )
        if not purpose:
            raise ValueError("pseudonym purpose must be a non-empty string")
        self.purpose = purpose
        self._subkey = hmac.digest(bytes(key), _SUBKEY_LABEL + purpose.encode(), "sha256")
        # HMAC (RFC 2104) with its two keyed SHA-256 states computed once: per id only the
        # message and the inner digest are hashed, about 2.7x faster than hmac.digest,
        # which sets the key up again on every call (BENCHMARKS.md, "Engineering notes").
        block = self._subkey.ljust(_SHA256_BLOCK, b"\0")  # a 32-byte key is never pre-hashed
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def __repr__(self) -> str:  # never show key material
        return f"Pseudonymizer(purpose={self.purpose!r})"

    def fingerprint(self) -> str:
        """A keyed digest naming this key and purpose (e.g. in a cache key) that reveals
        nothing of the key: HMAC-SHA256(subkey, label), hex."""
        return hmac.digest(self._subkey, _FINGERPRINT_LABEL, "sha256").hex()

    def pseudonymize(self, ids: Iterable[str]) -> list[str]:
        """Return one 64-hex-character pseudonym per id, in order.

        Each distinct id is hashed once (a customer usually has many events)."""
        ids = list(ids)
        distinct = list(dict.fromkeys(ids))
        cache = dict(zip(distinct, self.pseudonymize_distinct(distinct), strict=True))
        return [cache[uid] for uid in ids]

    def pseudonymize_distinct(self, ids: Iterable[str]) -> list[str]:
        """``pseudonymize`` for ids known to be distinct (no look-up table)."""
        text = self.pseudonymize_encoded(str(uid).encode("utf-8") for uid in ids).decode("ascii")
        step = PSEUDONYM_CHARS
        return [text[start : start + step] for start in range(0, len(text), step)]

    def pseudonymize_encoded(self, ids: Iterable[bytes]) -> bytes:
        """The pseudonyms of UTF-8-encoded ids, as one ASCII string of 64 hex digits per id,
        in order: the data buffer of a text column, without a Python str per id."""
        inner, outer = self._inner.copy, self._outer.copy
        digests = []
        keep = digests.append
        for uid in ids:
            digest = inner()
            digest.update(uid)
            final = outer()
            final.update(digest.digest())
            keep(final.digest())
        return b"".join(digests).hex().encode("ascii")

    @classmethod
    def for_simulation(
        cls, merchant_id: str, seed: int, *, purpose: str = "user_id"
    ) -> Pseudonymizer:
        """A deterministic key derived from ``(merchant_id, seed)``: simulations only.

        Anyone who knows the merchant id and seed can recompute it, so it hides nothing;
        it exists so that simulated runs are reproducible."""
        material = _SIMULATION_LABEL + f"{merchant_id}\x00{int(seed)}".encode()
        return cls(hashlib.sha256(material).digest(), purpose=purpose)


def load_key_file(path: str | os.PathLike[str]) -> bytes:
    """Read a merchant's pseudonym key: hex text (64+ hex digits) or raw bytes (32+).

    Raises :class:`PseudonymKeyError` naming the file when it is missing or too short."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PseudonymKeyError(f"{path}: pseudonym key file not found") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PseudonymKeyError(f"{path}: cannot read pseudonym key file ({reason})") from None
    key = _decode_key(raw)
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"{path}: pseudonym key is {len(key)} bytes; at least {MIN_KEY_BYTES} are required "
            f"(create one with: python -c 'import secrets; print(secrets.token_hex(32))' > {path})"
        )
    return key


def _decode_key(raw: bytes) -> bytes:
    """Hex text if the stripped content is all hex digits (even length), else raw bytes."""
    text = raw.strip()
    if text and len(text) % 2 == 0:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    return raw


def write_key_file(path: str | os.PathLike[str], *, n_bytes: int = MIN_KEY_BYTES) -> bytes:
    """Create a fresh random key as hex text, readable by the owner only; return the key."""
    if n_bytes < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"key of {n_bytes} bytes; at least {MIN_KEY_BYTES} are required")
    key = secrets.token_bytes(n_bytes)
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    return key
