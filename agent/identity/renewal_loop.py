"""The identity's background loop: bootstrap when needed, then keep certificates in step.

Rules this loop keeps:
- Bootstrap: with no join targets the agent creates the mesh's root at
  once; with join targets only once its first sync attempt is over (or
  BOOTSTRAP_WAIT_S passed with no peer to ask), so an agent joining a mesh
  learns its root instead of racing it (racing agents converge anyway).
- It wakes on every change of the CA map and at the next deadline (a
  renewal moment, a root's retirement), at most MAX_SLEEP_S apart, and
  reads the gossip keyring again every KEYRING_REFRESH_S for new seals.
- A failed pass (a store that refuses a write, a disk full, a root from
  config that expired since it loaded) is logged and retried on the next
  wake; it never ends the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.catalog.store import StoreError
from gossamer.proxy.ca import trust
from gossamer.proxy.ca.errors import CaError

log = logging.getLogger("gossamer.identity")

BOOTSTRAP_WAIT_S = 15.0  # with join targets but no peer answering: create the root after this
KEYRING_REFRESH_S = 60.0  # how often the gossip keyring is read again for new seals
MAX_SLEEP_S = 60.0
MIN_SLEEP_S = 0.2


class RenewalLoop:
    def __init__(
        self,
        identity: MeshIdentity,
        *,
        first_sync_done: Callable[[], bool],
        has_join_targets: bool,
    ) -> None:
        self._identity = identity
        self._first_sync_done = first_sync_done
        self._has_join_targets = has_join_targets
        self._wake = asyncio.Event()
        identity.ca.on_change(self._wake.set)

    async def run(self) -> None:
        """Bootstrap if needed, then keep everything in step until cancelled."""
        identity = self._identity
        loop = asyncio.get_running_loop()
        next_keyring, checked_config = 0.0, False
        while True:
            self._wake.clear()
            if loop.time() >= next_keyring:
                await identity.secrets.refresh()
                next_keyring = loop.time() + KEYRING_REFRESH_S
            try:
                if trust.active_root(identity.state) is None:
                    await self._bootstrap()
                if not checked_config:
                    checked_config = True
                    identity.warn_if_config_root_refused()
                identity.step()
            except (CaError, StoreError, OSError) as exc:
                log.warning("keeping certificates in step failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._sleep_s())

    async def _bootstrap(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BOOTSTRAP_WAIT_S
        while trust.active_root(self._identity.state) is None:
            if not self._has_join_targets or self._first_sync_done() or loop.time() >= deadline:
                self._identity.authority.bootstrap()
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), MIN_SLEEP_S)

    def _sleep_s(self) -> float:
        deadline = self._identity.next_deadline()
        if deadline is None:
            return MAX_SLEEP_S
        left = (deadline - self._identity.authority.now()).total_seconds()
        return max(MIN_SLEEP_S, min(MAX_SLEEP_S, left))
