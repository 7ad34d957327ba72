"""A local view of the ring, kept current from serf's member events.

Readers (DNS answers, /v1/status/peers) take a snapshot without a round
trip to serf. Events can be missed while the RPC connection is down, so the
owner also replaces the whole table from `members` now and then; applying
an event is a pure function so both paths are tested without serf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gossamer.gossip.members import Member
from gossamer.gossip.rpc_records import MemberEvent

MemberMap = Mapping[str, Member]


def from_members(members: Iterable[Member]) -> dict[str, Member]:
    return {m.name: m for m in members}


def apply_event(table: MemberMap, event: MemberEvent) -> dict[str, Member]:
    """The table after `event`; a reaped member is dropped, others replaced."""
    updated = dict(table)
    for member in event.members:
        if event.event == "member-reap":
            updated.pop(member.name, None)
        else:
            updated[member.name] = member
    return updated


def describe(event: MemberEvent) -> list[str]:
    verb = {
        "member-join": "joined",
        "member-leave": "left",
        "member-failed": "failed",
        "member-update": "updated",
        "member-reap": "reaped",
    }.get(event.event, event.event)
    return [f"member {m.name} ({m.addr}) {verb}" for m in event.members]
