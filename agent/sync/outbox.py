"""Per-peer outboxes: news for a peer waits while a send to it is under way, and goes with the next.

Both kinds of news an agent pushes (LWW entries, replicator.py; catalog
records, record_push.py) follow the same rule: at most one send in flight
per peer, so a burst costs one connection per peer (the pooled one) and the
news of many changes travels in one message, and a slow or dead peer holds
up only its own box. What a box holds and how news merges into it is the
caller's; this keeps the boxes and the one task per peer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from gossamer.gossip.members import Member

B = TypeVar("B")


class Outboxes(Generic[B]):
    """One box per peer, drained by `send(peer, box)` one box at a time."""

    def __init__(
        self, send: Callable[[Member, B], Awaitable[None]], new_box: Callable[[], B], label: str
    ) -> None:
        self._send = send
        self._new_box = new_box
        self._label = label
        self._boxes: dict[str, B] = {}
        self._sending: dict[str, asyncio.Task[None]] = {}

    def box(self, peer: Member) -> B:
        """`peer`'s waiting box, for the caller to merge news into; then call `flush`."""
        found = self._boxes.get(peer.name)
        if found is None:
            found = self._boxes[peer.name] = self._new_box()
        return found

    def flush(self, peer: Member) -> None:
        """Start sending `peer`'s box unless a send to it is under way (on the loop)."""
        if peer.name not in self._sending:
            self._sending[peer.name] = asyncio.get_running_loop().create_task(
                self._drain(peer), name=f"{self._label}-{peer.name}"
            )

    async def _drain(self, peer: Member) -> None:
        try:
            while (box := self._boxes.pop(peer.name, None)) is not None:
                await self._send(peer, box)
        finally:
            self._sending.pop(peer.name, None)

    @property
    def busy(self) -> bool:
        """Whether a send is under way to any peer."""
        return bool(self._sending)

    def cancel(self) -> None:
        """Drop every waiting box and cancel the sends under way."""
        for task in list(self._sending.values()):
            task.cancel()
        self._boxes.clear()
