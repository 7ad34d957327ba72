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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gossamer.proxy.authorize import revoked_key_ids
from gossamer.proxy.identity import Identity, IdentityError, build_identity, with_revoked

log = logging.getLogger("gossamer.proxy")


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
        self.ready.set()
        if before is not None and before.trust.roots - self.identity.trust.roots:
            cut = self._recheck()
            log.info("proxy: a root left the trust bundle; %d open connection(s) cut", cut)
