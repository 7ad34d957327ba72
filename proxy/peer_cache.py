"""What the proxy remembers of peers it verified: intermediates, and whole leaves. Pure.

Verifying a chain costs ~0.5 ms of CPU here (two ECDSA signatures in
`verify_chain`), on each side of every new connection. Its result depends
only on the leaf, the `Trust` (roots and revoked intermediates) and the time, so:
- `verified(leaf_der, trust, purpose, now)` gives the identity of a leaf
  already verified against the same `Trust` object (new roots or a new
  revocation make a new one, which empties the cache), while `now` is inside the
  validity window of every certificate of the chain that proved it;
  outside it, the caller verifies again and gets the precise refusal;
- `certificates()` are the intermediates seen in verified chains, to verify
  a resumed TLS session's lone leaf (a resumed session carries no
  certificates).
Refusals are never cached. Both maps are bounded; the oldest entry goes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gossamer.intentions.spiffe import ServiceId

CAPACITY = 1024
_SHA256 = hashes.SHA256()
_Key = tuple[bytes, str]
K = TypeVar("K")
V = TypeVar("V")


class PeerCache:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._trust: object = None
        self._leaves: dict[_Key, tuple[ServiceId, datetime, datetime]] = {}
        self._intermediates: dict[bytes, x509.Certificate] = {}

    def verified(
        self, leaf_der: bytes, trust: object, purpose: str, now: datetime
    ) -> ServiceId | None:
        """The identity of a leaf verified before against `trust`, if still valid at `now`."""
        if trust is not self._trust:
            self._trust = trust
            self._leaves.clear()
            return None
        found = self._leaves.get((leaf_der, purpose))
        if found is None:
            return None
        identity, not_before, not_after = found
        if not not_before <= now <= not_after:
            del self._leaves[(leaf_der, purpose)]
            return None
        return identity

    def remember(
        self,
        leaf_der: bytes,
        trust: object,
        purpose: str,
        identity: ServiceId,
        chain: Sequence[x509.Certificate],
    ) -> None:
        """Note a leaf verified against `trust` through `chain` (leaf first, root last)."""
        if trust is not self._trust:
            self._trust = trust
            self._leaves.clear()
        window = (
            max(c.not_valid_before_utc for c in chain),
            min(c.not_valid_after_utc for c in chain),
        )
        _bounded_put(self._leaves, (leaf_der, purpose), (identity, *window), self._capacity)
        for ca in chain[1:-1]:
            _bounded_put(self._intermediates, ca.fingerprint(_SHA256), ca, self._capacity)

    def certificates(self) -> list[x509.Certificate]:
        return list(self._intermediates.values())


def _bounded_put(table: dict[K, V], key: K, value: V, capacity: int) -> None:
    table.pop(key, None)
    if len(table) >= capacity:
        del table[next(iter(table))]
    table[key] = value
