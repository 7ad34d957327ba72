"""Whose chain did OpenSSL just verify, and is it still good? The proxy's peer checks. Pure.

The proxy's TLS contexts verify every peer during the handshake
(`CERT_REQUIRED` against the trust bundle: signatures, validity, purpose,
basic and name constraints), and the shell takes the chain OpenSSL built
(leaf first, the root of the bundle last; tls_pipe.py). So no signature
is checked here, and no `cryptography` is imported (~11 MiB of RSS per
proxy). What OpenSSL does not know is checked on each connection, from
facts read once per certificate (cert_facts.py):
- the root the chain ends at is still in the trust bundle (the bundle may
  have changed since the handshake: a rotation, a re-check of open
  connections), and every certificate is inside its validity window now;
- the leaf's SPIFFE ID, purpose and trust domain, by the same core the
  agent's own verifier uses (spiffe_leaf.py).
A resumed TLS session carries no certificates: its leaf was verified by the
full handshake that made the session, under the same context (a new
identity makes new contexts and ticket keys), and `ChainMemory` gives the
chain that handshake verified. A lone leaf whose chain is not remembered is
refused (UnknownIssuer), never guessed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TypeVar

from gossamer.intentions.spiffe import AgentId, ServiceId
from gossamer.proxy.ca.cert_facts import CertFacts, cert_facts
from gossamer.proxy.ca.errors import CertificateExpired, CertificateNotYetValid, UnknownIssuer
from gossamer.proxy.ca.spiffe_leaf import (
    check_anchor,
    check_end_entity,
    check_purpose,
    leaf_identity,
    trust_domain_in,
)

CAPACITY = 1024
K = TypeVar("K")
V = TypeVar("V")


class ChainMemory:
    """Facts per certificate, and the verified chain of each leaf seen; both bounded.

    Facts are read once per certificate (~30 µs of DER reading), not once per
    connection; the oldest entry goes first when full (for chains, the one
    least recently used: a chain forgotten refuses its leaf's resumed sessions).
    A leaf that has expired is forgotten, its chain with it, when a new
    certificate's facts are read (`now` given): no handshake or check can pass
    with it again. Without that, every renewal of every peer's leaf stayed
    until 1,024 more came (in bench/soak.py, with leaves renewed every 5 s,
    ~150 KiB more per minute in each worker; at the bound, ~3 MiB per memory,
    and a `--node` worker has one per sidecar and per upstream).
    A chain seen again keeps the bytes it was first remembered with, and every
    chain shares one copy of each issuer's DER: each handshake hands over new
    bytes for the whole chain, and keeping those meant 1.2 KiB more per leaf,
    and new long-lived chunks all over the C heap on every connection.
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._facts: dict[bytes, CertFacts] = {}  # the least recently used first
        self._chains: dict[bytes, tuple[bytes, ...]] = {}  # the least recently used first
        self._issuers: dict[bytes, bytes] = {}  # one copy of each issuer's DER

    def facts(self, der: bytes, now: datetime | None = None) -> CertFacts:
        """The facts of one certificate; ValueError if it is not one. With `now`, a new one
        makes room by forgetting the leaves expired by then (the least used come first)."""
        found = self._facts.pop(der, None)
        if found is None:
            found = cert_facts(der)
            if now is not None:
                self._forget_expired(now)
            if len(self._facts) >= self._capacity:
                del self._facts[next(iter(self._facts))]
        self._facts[der] = found  # the last used goes last: expired ones drift to the front
        return found

    def chain(self, certificates: Sequence[bytes]) -> tuple[bytes, ...] | None:
        """A full verified chain (remembered for its leaf), or a lone leaf's remembered one."""
        if not certificates:
            return None
        found = self._chains.pop(certificates[0], None)
        if len(certificates) > 1 and (found is None or found != tuple(certificates)):
            found = (certificates[0], *(self._issuer(der) for der in certificates[1:]))
            if len(self._chains) >= self._capacity:
                del self._chains[next(iter(self._chains))]
        if found is not None:  # the last used goes last: a resumed leaf seen often stays
            self._chains[found[0]] = found
        return found

    def _issuer(self, der: bytes) -> bytes:
        found = self._issuers.get(der)
        if found is None:
            _bounded_put(self._issuers, der, der, self._capacity)
            found = der
        return found

    def _forget_expired(self, now: datetime) -> None:
        while self._facts:
            oldest = next(iter(self._facts))
            if self._facts[oldest].not_after >= now:
                return
            del self._facts[oldest]
            self._chains.pop(oldest, None)


def check_verified(
    chain: Sequence[bytes],
    facts: Sequence[CertFacts],
    roots: Collection[bytes],
    now: datetime,
    purpose: str,
) -> ServiceId | AgentId:
    """The leaf's SPIFFE ID, for a chain OpenSSL verified (`facts` read from `chain`).

    `roots`: the DER of each root of the current trust bundle. Raises the
    CertificateError subclass naming the first problem found.
    """
    leaf = facts[0]
    who = leaf.describe()
    if len(chain) < 2 or chain[-1] not in roots:
        raise UnknownIssuer(f"{who}: its chain does not end at a root of the trust bundle")
    for cert in facts:
        if now > cert.not_after:
            raise CertificateExpired(f"{cert.describe()} expired at {_stamp(cert.not_after)}")
        if now < cert.not_before:
            raise CertificateNotYetValid(
                f"{cert.describe()} is not valid before {_stamp(cert.not_before)}"
            )
    check_end_entity(who, is_ca=leaf.is_ca)
    identity = leaf_identity(who, leaf.uris, names_hosts=leaf.names_hosts)
    check_purpose(who, leaf.eku, purpose, signs=leaf.signs)
    root = facts[-1]
    check_anchor(who, identity, root.describe(), trust_domain_in(root.uris))
    return identity


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _bounded_put(table: dict[K, V], key: K, value: V, capacity: int) -> None:
    table.pop(key, None)
    if len(table) >= capacity:
        del table[next(iter(table))]
    table[key] = value
