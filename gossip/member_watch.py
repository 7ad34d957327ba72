"""Keeps the agent's member table current: serf events plus a periodic resync."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from gossamer.gossip.member_table import MemberMap, apply_event, describe, from_members
from gossamer.gossip.members import Member
from gossamer.gossip.rpc import MemberEvent, SerfError, SerfRpcClient

log = logging.getLogger("gossamer.members")

# Seconds between full refreshes. serf delivers member events after a short
# quiet period (about a second) and drops them while the RPC link is down;
# a local `members` call bounds how stale the table can be. Small clusters
# refresh every 0.5 s (the call is cheap, and joins, tag changes and the
# catalog pulls they trigger show up sooner than serf's events would); the
# interval grows with the member count to 2 s at 500 members, where one call
# returns ~100 KB to decode.
RESYNC_MIN, RESYNC_MAX, RESYNC_MEMBERS_PER_SECOND = 0.5, 2.0, 250


def resync_interval(members: int) -> float:
    return max(RESYNC_MIN, min(RESYNC_MAX, members / RESYNC_MEMBERS_PER_SECOND))


EVENTS = "member-join,member-leave,member-failed,member-update,member-reap"


class MemberWatch:
    """`on_event` sees every member event; `on_resync` every full member list."""

    def __init__(
        self,
        serf: SerfRpcClient,
        *,
        on_event: Callable[[MemberEvent], None] | None = None,
        on_resync: Callable[[Iterable[Member]], None] | None = None,
    ) -> None:
        self._serf = serf
        self._on_event = on_event
        self._on_resync = on_resync
        self.table: MemberMap = {}

    async def run(self) -> None:
        resync = asyncio.create_task(self._resync_forever(), name="member-resync")
        try:
            while True:
                try:
                    await self._follow_events()
                except SerfError as exc:
                    log.debug("member event stream interrupted: %s", exc)
                await asyncio.sleep(1.0)
        finally:
            resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resync

    async def _follow_events(self) -> None:
        async with self._serf.stream(EVENTS) as events:
            await self.resync()
            async for event in events:
                if isinstance(event, MemberEvent):
                    self.table = apply_event(self.table, event)
                    for line in describe(event):
                        log.info("%s", line)
                    if self._on_event is not None:
                        self._on_event(event)

    async def resync(self) -> None:
        self.table = from_members(await self._serf.members())
        if self._on_resync is not None:
            self._on_resync(self.table.values())

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(resync_interval(len(self.table)))
            try:
                await self.resync()
            except SerfError as exc:
                log.debug("member resync failed: %s", exc)
