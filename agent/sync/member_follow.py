"""Following Serf's view of this datacenter's members into the catalog, at once.

A failed member's serfHealth turns critical, a member that came back turns
passing, a member that left or was reaped is removed, and a member whose
`cv` tag (its catalog record version) is newer than the record held here is
pulled from that member directly (replicator.py's docstring says how this
sits beside anti-entropy and pushes). One pull task per node: it pulls again,
up to MAX_PULLS_PER_NODE times, while the owner keeps announcing newer
versions. A pull that fails is counted (`failed`) and logged at debug; the
next anti-entropy round heals it. Call everything from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from gossamer.agent.sync.client import pull
from gossamer.agent.sync.peer_link import PeerError, rpc_address
from gossamer.agent.sync.record_push import RecordPusher
from gossamer.agent.sync.tls import AgentTls
from gossamer.catalog.live import LiveCatalog
from gossamer.gossip import tags
from gossamer.gossip.members import Member
from gossamer.gossip.rpc_records import MemberEvent

log = logging.getLogger("gossamer.replication")

MAX_PULLS_PER_NODE = 5  # rounds of one pull task while the owner keeps publishing


class MemberFollower:
    """Serf member events and member lists -> catalog flags, removals and owner pulls."""

    def __init__(
        self,
        catalog: LiveCatalog,
        *,
        self_origin: str,
        tls: AgentTls,
        timeout: float,
        records: RecordPusher,
        failed: Callable[[], None],
    ) -> None:
        self._catalog = catalog
        self._self = self_origin
        self._tls = tls
        self._timeout = timeout
        self._records = records  # counts what a pull brought before any push (`pulled`)
        self._failed = failed
        self._pulls: dict[str, asyncio.Task[None]] = {}
        self._wanted: dict[str, tuple[Member, int]] = {}  # node -> (owner, cv it announced)

    def on_member_event(self, event: MemberEvent) -> None:
        """Follow one Serf member event (call from the event loop's thread)."""
        for member in event.members:
            if not self._ours(member):
                continue
            if event.event == "member-failed":
                self._catalog.set_failed(member.name, True)
            elif event.event in ("member-join", "member-update") and member.status == "alive":
                self._alive(member)
            elif event.event == "member-leave":
                self._catalog.remove(member.name, "left", version=tags.record_version(member))
            elif event.event == "member-reap":
                self._catalog.remove(member.name, "reaped", version=tags.record_version(member))

    def reconcile(self, members: Iterable[Member]) -> None:
        """Catch up from a full member list (events are lost while serf's RPC is down)."""
        for member in members:
            if not self._ours(member):
                continue
            if member.status == "failed":
                self._catalog.set_failed(member.name, True)
            elif member.status == "alive":
                self._alive(member)
            elif member.status == "left" and self._catalog.record(member.name) is not None:
                self._catalog.remove(member.name, "left", version=tags.record_version(member))

    def _ours(self, member: Member) -> bool:
        return member.name != self._self and (tags.datacenter(member) == self._catalog.datacenter)

    def _alive(self, member: Member) -> None:
        self._catalog.set_failed(member.name, False)
        announced = tags.record_version(member)
        if (
            announced > self._catalog.held_version(member.name)
            and tags.rpc_port(member) is not None
        ):
            self._wanted[member.name] = (member, announced)
            task = self._pulls.get(member.name)
            if task is None or task.done():
                self._pulls[member.name] = asyncio.get_running_loop().create_task(
                    self._pull_from_owner(member.name), name=f"pull-{member.name}"
                )

    async def _pull_from_owner(self, node: str) -> None:
        try:
            for _ in range(MAX_PULLS_PER_NODE):
                owner, announced = self._wanted[node]
                if announced <= self._catalog.held_version(node):
                    return
                try:
                    news = await pull(
                        rpc_address(owner),
                        self._catalog,
                        [node],
                        self_origin=self._self,
                        tls=self._tls,
                        timeout=self._timeout,
                        peer_name=owner.name,
                    )
                except PeerError as exc:
                    self._failed()
                    log.debug("pull of %s from its owner failed: %s", node, exc)
                    return  # the next anti-entropy round heals it
                self._records.pulled += news  # a push missed it (or was slower)
        finally:
            self._wanted.pop(node, None)
            if self._pulls.get(node) is asyncio.current_task():
                del self._pulls[node]

    def cancel(self) -> None:
        """Cancel every pull under way (the replicator stops)."""
        for task in self._pulls.values():
            task.cancel()
        self._pulls.clear()
        self._wanted.clear()

    @property
    def pulls_in_flight(self) -> int:
        return sum(1 for t in self._pulls.values() if not t.done())
