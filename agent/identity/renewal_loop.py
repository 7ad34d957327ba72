"""The identity's background loop: bootstrap when needed, then keep certificates in step.

Rules this loop keeps:
- Bootstrap: with no join targets the agent creates the mesh's root at
  once; with join targets only once a peer answered its "ca-bundle" pull
  with no root it can open (or BOOTSTRAP_WAIT_S passed with no peer
  answering), so an agent joining a mesh learns its root instead of racing
  it (racing agents converge anyway).
- Until it holds an agent certificate it pulls bundles from several peers
  on every wake; after that from one peer every PULL_EVERY_S, which heals a
  bootstrap race that mutual TLS would otherwise freeze (enrolment.py).
- It wakes on every change of the CA map and at the next deadline (a
  renewal moment, a root's retirement), at most PULL_CHECK_S apart, and
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

from gossamer.agent.identity.enrolment import PEERS_PER_PULL, PULL_EVERY_S, Enrolment
from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.catalog.store import StoreError
from gossamer.proxy.ca import trust
from gossamer.proxy.ca.errors import CaError

log = logging.getLogger("gossamer.identity")

BOOTSTRAP_WAIT_S = 15.0  # with join targets but no peer answering: create the root after this
KEYRING_REFRESH_S = 60.0  # how often the gossip keyring is read again for new seals
PULL_CHECK_S = 2.0  # the loop looks at least this often whether a pull is due (refusals)
MIN_SLEEP_S = 0.2


class RenewalLoop:
    def __init__(
        self,
        identity: MeshIdentity,
        *,
        enrolment: Enrolment,
        has_join_targets: bool,
        refusals: Callable[[], int] = lambda: 0,
    ) -> None:
        self._identity = identity
        self._enrolment = enrolment
        self._refusals = refusals
        self._refusals_seen = 0
        self._next_pull = 0.0
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
            await self._pull_if_due(loop.time())
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

    async def _pull_if_due(self, now: float) -> int:
        """Pull peers' bundles: on every wake until enrolled, then every PULL_EVERY_S.

        A peer refused by agent RPC since the last look (another root after a
        bootstrap race, say) makes the pull due at once.
        """
        enrolled = self._identity.agent_tls() is not None
        refused, self._refusals_seen = self._refusals() != self._refusals_seen, self._refusals()
        if enrolled and now < self._next_pull and not refused:
            return 0
        self._next_pull = now + PULL_EVERY_S
        return await self._enrolment.pull(1 if enrolled else PEERS_PER_PULL)

    async def _bootstrap(self) -> None:
        """Learn the mesh's root from peers, or make one when there is no mesh to learn from.

        Peers that offer roots no secret of ours opens (a wrong keyring or join
        token) stop it: the agent keeps asking (once per wake) and never makes
        a second CA beside theirs.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BOOTSTRAP_WAIT_S
        while trust.active_root(self._identity.state) is None:
            await self._enrolment.pull(PEERS_PER_PULL)
            if trust.active_root(self._identity.state) is not None or self._enrolment.unopened:
                return
            if not self._has_join_targets or self._enrolment.answered or loop.time() >= deadline:
                self._identity.authority.bootstrap()
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), MIN_SLEEP_S)

    def _sleep_s(self) -> float:
        deadline = self._identity.next_deadline()
        if deadline is None:
            return PULL_CHECK_S
        left = (deadline - self._identity.authority.now()).total_seconds()
        return max(MIN_SLEEP_S, min(PULL_CHECK_S, left))
