"""What agent RPC's server and client share: limits, the replica protocol, closing a stream.

The protocol itself (frames, requests, answers) is `catalog.sync_protocol`,
plus `catalog.lww_sync` for the last-writer-wins maps (intentions) that ride
on the same messages; neither does I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from gossamer.catalog.lww_sync import (
    Entries,
    Snapshot,
    Snapshots,
)

log = logging.getLogger("gossamer.replication")

IDLE_TIMEOUT = 30.0  # seconds a connection may wait between requests
MAX_CONNECTIONS = 256
READ_CHUNK = 64 * 1024
CLOSE_TIMEOUT = 1.0  # seconds to flush a reply before a close turns into an abort

Address = tuple[str, int]


class PeerError(Exception):
    """A sync with a peer did not complete: unreachable, timed out, or a bad reply."""


class Replica(Protocol):
    """The owner of one replicated LWW map (the intention store), as the sync sees it."""

    def snapshot(self) -> Snapshot: ...

    def absorb(self, entries: Entries) -> list[str]:
        """Merge a peer's entries; returns the keys that changed here."""
        ...


Replicas = Mapping[str, Replica]


def _snapshots(replicas: Replicas) -> Snapshots:
    return {name: r.snapshot() for name, r in replicas.items()}


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close, dropping unsent bytes if the peer will not read them (it may never)."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except (ConnectionError, OSError):
        pass
