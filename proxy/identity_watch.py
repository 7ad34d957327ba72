"""A proxy's identity as the agent's answers change it: leaf, roots, revoked agents. Shell.

The leaf and roots watches each bring half of an identity (identity.py
`build_identity`); once both came, every later answer builds the whole
again, so new handshakes use a renewed leaf or a rotated root at once and
no open connection is touched. An answer that brings nothing new (SIGHUP
asks for everything again; an agent back from a restart answers afresh)
builds nothing: new contexts would void every session ticket issued under
the old ones and retire the outbound side's tickets and shared
connections. Two changes take trust away, and those also check the open
connections again (`recheck`, the runtime's: every
listener, retired ones too): a revoked agent (its intermediates' key ids
go into the trust), and a root that left the bundle (rotated out, perhaps
for being compromised). An answer that cannot be used is logged and the
previous identity kept.
A leaf the agent has not renewed by 75 % of its life (the agent renews it
between 45 and 60 %: the agent is away or cannot sign) is logged as a
warning, and once more, as an error, when it expires with no new one:
peers then refuse new connections (open ones go on) until the agent sends
a new leaf, which applies at once. Nothing else said so but a peer's
handshake error on the other side.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from gossamer.proxy.authorize import revoked_key_ids
from gossamer.proxy.ca.cert_facts import cert_facts, pem_certificates
from gossamer.proxy.identity import Identity, IdentityError, build_identity, with_revoked

log = logging.getLogger("gossamer.proxy")
OVERDUE = 0.75  # of a leaf's life: the agent renews it by 60 % (proxy/ca/renewal.py)
SET_BACK = timedelta(minutes=1)  # the agent's NotBefore is this far before the signing
# (proxy/ca/profile.py CLOCK_SKEW, not imported: it brings `cryptography` into the sidecar)


class IdentityWatch:
    """The current `identity` of one service's proxy (None until a leaf and roots came)."""

    def __init__(self, service: str, recheck: Callable[[], int]) -> None:
        self.service = service
        self.identity: Identity | None = None
        self.ready = asyncio.Event()  # a leaf and roots made an identity
        self._recheck = recheck  # open connections checked again: how many were cut
        self._leaf: dict[str, Any] | None = None
        self._roots: dict[str, Any] | None = None
        self._revoked: frozenset[bytes] = frozenset()
        self._built: tuple[dict[str, Any], dict[str, Any]] | None = None  # what made `identity`
        self._expiry: list[asyncio.TimerHandle] = []  # the current leaf's overdue and expiry logs

    def on_leaf(self, body: dict[str, Any]) -> None:
        self._leaf = body
        self._rebuild()

    def on_roots(self, body: dict[str, Any]) -> None:
        self._roots = body
        self._rebuild()

    def on_revoked(self, rows: object) -> None:
        try:
            revoked = revoked_key_ids(rows)
        except ValueError as exc:
            log.error("proxy: revoked agents answer unusable, keeping the previous one: %s", exc)
            return
        if revoked == self._revoked:
            return
        self._revoked = revoked
        if self.identity is not None:
            self.identity = with_revoked(self.identity, revoked)
        cut = self._recheck()
        log.info("proxy: %d revoked agent intermediate(s); %d open connection(s) cut",
                 len(revoked), cut)  # fmt: skip

    def _rebuild(self) -> None:
        if self._leaf is None or self._roots is None:
            return
        if self._built == (self._leaf, self._roots):
            return  # the same answers again: the same identity
        before = self.identity
        try:
            self.identity = with_revoked(build_identity(self._leaf, self._roots), self._revoked)
        except IdentityError as exc:
            log.error("proxy: cannot use the agent's certificate: %s", exc)
            return
        self._built = (self._leaf, self._roots)
        log.info("proxy: identity for %s, leaf serial %s", self.service,
                 self.identity.serial)  # fmt: skip
        self._watch_expiry(str(self._leaf.get("CertPEM", "")))
        self.ready.set()
        if before is not None and before.trust.roots - self.identity.trust.roots:
            cut = self._recheck()
            log.info("proxy: a root left the trust bundle; %d open connection(s) cut", cut)

    def stop(self) -> None:
        """The sidecar is gone (drained, or it never started): nothing more is said of its
        leaf. Left armed, these lines outlived a --node sidecar deregistered (bench/soak.py),
        saying up to the leaf's life later (72 h) that it had expired and peers refused it."""
        for handle in self._expiry:
            handle.cancel()
        self._expiry = []

    def _watch_expiry(self, cert_pem: str) -> None:
        """Say when the leaf just taken is overdue for renewal, and when it expires."""
        for handle in self._expiry:
            handle.cancel()
        self._expiry = []
        try:
            facts = cert_facts(pem_certificates(cert_pem)[0])
            loop = asyncio.get_running_loop()
        except (ValueError, IndexError, RuntimeError):  # (no loop: a test's bare watch)
            return
        now = datetime.now(UTC)
        end = facts.not_after
        start = min(facts.not_before + SET_BACK, end)
        overdue = start + (end - start) * OVERDUE
        serial = self.identity.serial if self.identity else ""
        when = end.strftime("%Y-%m-%dT%H:%M:%SZ")
        self._expiry = [
            loop.call_later(max(0.0, (overdue - now).total_seconds()), log.warning,
                            "proxy: the leaf for %s (serial %s) is overdue for renewal: it "
                            "expires at %s; is the agent away?", self.service, serial, when),
            loop.call_later(max(0.0, (end - now).total_seconds()), log.error,
                            "proxy: the leaf for %s (serial %s) expired at %s and the agent "
                            "sent no new one: peers refuse new connections until it does "
                            "(open ones go on)", self.service, serial, when),
        ]  # fmt: skip
