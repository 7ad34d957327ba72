"""Joining the cluster: at start, on reload, and again after serf restarted.

At start, `join` addresses are tried once (failing start-up if none
answers) and `retry_join` ones with backoff until one answers or
`retry_max` rounds pass. A reload tries newly listed `join` addresses once
and restarts the retry-join when its settings changed. After serf died and
was restarted, the peers known alive before plus the configured addresses
are rejoined in the background: serf's snapshot may not hold them yet. The
same goes at start for the peers an earlier run kept (known_peers.py): after
a crash, serf's snapshot may have lost them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from gossamer.agent.config import AgentConfig
from gossamer.agent.lifecycle import systemd
from gossamer.agent.lifecycle.known_peers import KnownPeers
from gossamer.agent.lifecycle.status import AgentStatus
from gossamer.agent.lifecycle.tasks import TaskSet
from gossamer.gossip.addresses import format_host_port
from gossamer.gossip.joining import JoinError, join_once, join_targets, retry_join
from gossamer.gossip.members import Member
from gossamer.gossip.process import SerfProcess

log = logging.getLogger("gossamer.agent")

REJOIN_ATTEMPTS = 8  # after a serf restart; then gossip from peers must find us


def added_joins(running: AgentConfig, new: AgentConfig) -> list[str]:
    """Addresses newly listed under `join`: tried once on reload."""
    return [a for a in new.join if a not in running.join]


class Joins:
    def __init__(
        self,
        serf: SerfProcess,
        status: AgentStatus,
        tasks: TaskSet,
        members: Callable[[], Iterable[Member]],
        known: KnownPeers | None = None,
    ) -> None:
        """`members`: the member table as last seen (read when serf restarts). `known`: the
        peers kept across runs (rejoined at start)."""
        self._serf = serf
        self._status = status
        self._tasks = tasks
        self._members = members
        self._known = known
        self._retry_task: asyncio.Task[Any] | None = None

    async def at_start(self) -> None:
        """JoinError when `join` finds nobody or `retry_join` gives up: start-up fails."""
        c = self._status.config
        if c.join:
            await join_once(self._serf.client, join_targets(c.join, c.serf_port))
            log.info("joined %s", ", ".join(c.join))
        if c.retry_join:
            systemd.notify(f"STATUS=joining {', '.join(c.retry_join)}")
            await self._retry_join()
        earlier = self._known.load() if self._known is not None else []
        if earlier:
            log.info("rejoining %d peer(s) known before this start", len(earlier))
            self._tasks.spawn(self._rejoin(earlier, "rejoin of the known peers"), "rejoin")

    def remember(self, members: Iterable[Member]) -> None:
        """The member table was read again: keep the alive peers for the next start."""
        if self._known is not None:
            self._known.remember(members, self._status.config.node)

    def forget_peers(self) -> None:
        """A graceful leave: the next start does not rejoin (unless rejoin_after_leave)."""
        if self._known is not None and not self._status.config.rejoin_after_leave:
            self._known.forget()

    def after_reload(self, old: AgentConfig) -> None:
        c = self._status.config
        if added := added_joins(old, c):
            self._tasks.spawn(self._join_in_background(added), "reload-join")
        retry = (c.retry_join, c.retry_interval, c.retry_max)
        if retry != (old.retry_join, old.retry_interval, old.retry_max) and c.retry_join:
            if self._retry_task is not None:
                self._retry_task.cancel()
            self._retry_task = self._tasks.spawn(self._retry_join(), "retry-join")

    def after_serf_restart(self) -> None:
        """Rejoin the peers known before serf died, plus the configured joins."""
        c = self._status.config
        peers = [
            format_host_port(m.addr, m.port)
            for m in self._members()
            if m.name != c.node and m.status == "alive"
        ]
        targets = list(dict.fromkeys(peers + join_targets([*c.join, *c.retry_join], c.serf_port)))
        if targets:
            self._tasks.spawn(self._rejoin(targets, "rejoin after serf restart"), "rejoin")

    async def _retry_join(self) -> None:
        c = self._status.config
        await retry_join(
            self._serf.client,
            join_targets(c.retry_join, c.serf_port),
            cap=c.retry_interval.total_seconds(),
            max_attempts=c.retry_max,
        )

    async def _join_in_background(self, addresses: list[str]) -> None:
        targets = join_targets(addresses, self._status.config.serf_port)
        try:
            await join_once(self._serf.client, targets)
        except JoinError as exc:
            log.warning("%s", exc)

    async def _rejoin(self, targets: list[str], what: str) -> None:
        try:
            await retry_join(
                self._serf.client,
                targets,
                cap=self._status.config.retry_interval.total_seconds(),
                max_attempts=REJOIN_ATTEMPTS,
            )
        except JoinError as exc:
            log.warning("%s failed: %s", what, exc)
