"""Mutual TLS 1.3 for agent RPC: the contexts, the peer check after the handshake, refusals.

There is no plaintext mode. Both sides present their agent certificate
(agent certificate + intermediate) and verify the other's against the trust
bundle; the one exception is the "ca-bundle" request, which the server
answers to a peer without a certificate (how a new agent enrols), and which
`enrolment_context` asks without verifying the server (the answer is
sealed and public; the caller verifies what it unseals).

Who verifies what, and why both OpenSSL and gossamer:
- The server must *request* a client certificate yet accept a peer without
  one (enrolment), so its context is CERT_OPTIONAL. Python's ssl has no
  verify callback, so a requested certificate is always verified by
  OpenSSL against the context's CA store: the store is the bundle's roots
  (`cadata`). OpenSSL checks signatures, validity, the EKU purpose and the
  URI name constraints of the roots and intermediates, and fails the
  handshake otherwise — a rogue, expired or foreign certificate is refused
  in the handshake, as the issue asks. Its verify code says why
  (`peer_check.reason_of_verify_code`).
- OpenSSL knows nothing of SPIFFE, agents or revocation, so after the
  handshake `peer_check.check_peer` runs gossamer's own `verify_chain` on
  the chain the peer sent (purpose client auth on the server, server auth
  on the client), requires an agent ID of our trust domain and asks the
  identity whether the agent or its intermediate is revoked. A peer that
  fails it is closed before a byte of the catalog is read.
- The chain the peer sent is read with `get_unverified_chain`: public on
  `SSLObject` from Python 3.13, present (undocumented) on the underlying
  `_ssl._SSLSocket` since 3.10; `peer_chain` uses whichever exists. With
  only `getpeercert(binary_form=True)` (the leaf) the intermediate could not
  be named, and revocation is by intermediate.
- The client turns hostname checking off (peers are dialled by address, and
  an agent certificate names a node id, not a host) and checks the server's
  SPIFFE ID with the same `check_peer` instead.

The server sends no TLS 1.3 session tickets: asyncio's client cannot pass a
session back, so they would buy nothing, and a ticket sent after the
handshake held the first reply back by ~40 ms (bench/rpc_tls.py: 45 ms ->
2 ms per request).

Contexts are built once per identity `generation` (a key load each), not per
connection: the server upgrades each accepted TCP connection itself
(`StreamWriter.start_tls`), so a rebuilt context applies to the next
connection, and a failed handshake reaches the server's code to be counted
and logged (asyncio's own TLS server would swallow it).
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gossamer.agent.sync import refusals
from gossamer.agent.sync.identity import AgentChain, RpcIdentity
from gossamer.agent.sync.peer_check import (
    PeerAgent,
    PeerRefused,
    Trust,
    check_peer,
    reason_of_verify_code,
)
from gossamer.agent.sync.pool import ConnectionPool
from gossamer.agent.sync.refusals import Refusals
from gossamer.agent.sync.relay_check import RelayCheck, nobody_alive
from gossamer.agent.sync.verified_memory import ExpiringMemory
from gossamer.gossip.addresses import format_host_port

log = logging.getLogger("gossamer.replication")

MAX_REMEMBERED = 4096  # peers and chains remembered (last verified, verified chains): far more
# than a cluster has agents; expired chains go first (verified_memory.py), and when full of
# unexpired ones, the verified chains are forgotten at once
HANDSHAKE_TIMEOUT = 10.0  # seconds a TLS handshake may take before the connection is dropped
_DER = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]  # Certificate.public_bytes format
_ChainKey = tuple[tuple[bytes, ...], x509.ObjectIdentifier]  # a peer's chain (DER), the purpose


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class AgentTls:
    """Everything agent RPC needs to speak mutual TLS: the identity, the contexts, the refusals,
    and the verified connections kept for reuse (pool.py).

    One instance is shared by the server, the replicator and the client calls
    of an agent; `wall_ms` is the clock for certificate validity and for the
    HLC bound on replicated entries.
    """

    def __init__(
        self,
        identity: RpcIdentity,
        *,
        wall_ms: Callable[[], int] = _wall_ms,
        refused: Refusals | None = None,
        alive: Callable[[str], bool] = nobody_alive,
    ) -> None:
        """`alive`: whether Serf shows a node alive here (for the relay rules, relay_check.py)."""
        self.identity = identity
        self.wall_ms = wall_ms
        self.refusals = refused or Refusals()
        self.pool = ConnectionPool()
        self.relays = RelayCheck(self, alive)
        self.last_verified: dict[str, int] = {}  # node -> wall ms its agent certificate last passed
        self._verified: ExpiringMemory[_ChainKey, tuple[int, PeerAgent]]
        self._verified = ExpiringMemory(MAX_REMEMBERED)
        self._built: tuple[int, ssl.SSLContext | None, ssl.SSLContext | None] | None = None

    def server_context(self) -> ssl.SSLContext | None:
        """The server's context for the current identity; None before it has enrolled."""
        return self._contexts()[1]

    def client_context(self) -> ssl.SSLContext | None:
        """The dialling context for the current identity; None before it has enrolled."""
        return self._contexts()[2]

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall_ms() / 1000, UTC)

    def check(self, ssl_object: ssl.SSLObject | None, purpose: x509.ObjectIdentifier) -> PeerAgent:
        """The verified agent at the other end of a connection; PeerRefused saying why not."""
        chain = peer_chain(ssl_object) if ssl_object is not None else []
        peer = self.verified_peer(tuple(chain), purpose)
        if peer.node in self.last_verified or len(self.last_verified) < MAX_REMEMBERED:
            self.last_verified[peer.node] = self.wall_ms()
        return peer

    def verified_peer(self, chain: tuple[bytes, ...], purpose: x509.ObjectIdentifier) -> PeerAgent:
        """`check_peer` of `chain` (DER, leaf first), its success remembered while trust has
        not shrunk and the chain is inside its validity (peers present the same chain on
        every connection, and a full check is most of a handshake's Python time)."""
        now = self.now()
        epoch = self.identity.trust_epoch
        cached = self._verified.get((chain, purpose))
        if cached is not None and cached[0] == epoch and _within(cached[1], now):
            return cached[1]
        identity = self.identity
        trust = Trust(identity.trust_domain, identity.bundle(), identity.is_revoked)
        peer = check_peer(chain, trust, now, purpose=purpose)
        expires = min(c.not_valid_after_utc for c in peer.chain)
        self._verified.put((chain, purpose), (epoch, peer), expires, now)
        return peer

    def refuse(self, reason: str, address: object, message: str) -> None:
        """Count a refusal; log it unless this address was logged within the last minute."""
        host, shown = _address(address)
        if self.refusals.note(reason, host, self.wall_ms()):
            log.warning("agent RPC: refused %s (%s): %s", shown, reason, message)

    def _contexts(self) -> tuple[int, ssl.SSLContext | None, ssl.SSLContext | None]:
        generation = self.identity.generation
        if self._built is None or self._built[0] != generation:
            chain = self.identity.chain()
            roots = self.identity.bundle()
            if chain is None:
                self._built = (generation, None, None)
            else:
                self._built = (
                    generation,
                    _context(ssl.PROTOCOL_TLS_SERVER, chain, roots),
                    _context(ssl.PROTOCOL_TLS_CLIENT, chain, roots),
                )
        return self._built


def _within(peer: PeerAgent, now: datetime) -> bool:
    """Whether every certificate of a verified chain is still inside its validity at `now`."""
    return all(c.not_valid_before_utc <= now <= c.not_valid_after_utc for c in peer.chain)


def enrolment_context() -> ssl.SSLContext:
    """TLS 1.3 with no client certificate and no server verification: for "ca-bundle" only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def handshake_reason(exc: BaseException) -> str:
    """The refusal reason for a failed server-side handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return reason_of_verify_code(exc.verify_code)
    if isinstance(exc, TimeoutError):
        return refusals.HANDSHAKE_TIMEOUT
    if isinstance(exc, ssl.SSLError) and exc.reason == "CERTIFICATE_VERIFY_FAILED":
        return refusals.BAD_CERTIFICATE
    return refusals.NOT_TLS


def peer_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    """The certificates the peer sent (leaf first) as DER; empty when it sent none."""
    getter = getattr(ssl_object, "get_unverified_chain", None)  # Python 3.13+
    if getter is None:
        getter = ssl_object._sslobj.get_unverified_chain  # type: ignore[attr-defined]
    found = [c for c in getter() or [] if c is not None]  # no certificate: [] or [None]
    return [c if isinstance(c, bytes) else c.public_bytes(_DER) for c in found]


def _context(
    protocol: ssl._SSLMethod, chain: AgentChain, roots: list[x509.Certificate]
) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if protocol == ssl.PROTOCOL_TLS_CLIENT:
        context.check_hostname = False  # our SPIFFE check instead, see the module docstring
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_OPTIONAL  # a peer without one may ask for "ca-bundle"
        context.num_tickets = 0  # no resumption (asyncio cannot offer a session); see below
    if roots:
        pem = b"".join(r.public_bytes(serialization.Encoding.PEM) for r in roots)
        context.load_verify_locations(cadata=pem.decode("ascii"))
    _load_chain(context, chain)
    return context


def _load_chain(context: ssl.SSLContext, chain: AgentChain) -> None:
    """`load_cert_chain` reads files only: write both to a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="gossamer-tls-") as tmp:
        cert, key = Path(tmp, "chain.pem"), Path(tmp, "key.pem")
        for path, data in ((cert, chain.certificate_pem), (key, chain.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        context.load_cert_chain(cert, key)


def _address(address: object) -> tuple[str, str]:
    """The host (the log limiter's key: a peer's port changes per connection), and host:port."""
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), format_host_port(str(address[0]), int(address[1]))
    return str(address), str(address)


__all__ = ["AgentTls", "PeerRefused", "enrolment_context", "handshake_reason", "peer_chain"]
