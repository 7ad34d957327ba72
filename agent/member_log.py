"""Logging membership changes as serf reports them."""

from __future__ import annotations

import logging

from gossamer.gossip.rpc import MemberEvent, SerfRpcClient

log = logging.getLogger("gossamer.members")

_VERBS = {
    "member-join": "joined",
    "member-leave": "left",
    "member-failed": "failed",
    "member-update": "updated",
    "member-reap": "reaped",
}


async def log_member_events(serf: SerfRpcClient) -> None:
    async with serf.stream(",".join(_VERBS)) as events:
        async for event in events:
            if isinstance(event, MemberEvent):
                verb = _VERBS.get(event.event, event.event)
                for m in event.members:
                    log.info("member %s (%s) %s", m.name, m.addr, verb)
