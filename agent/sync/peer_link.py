"""What agent RPC's server and client share: limits, the replica protocol, applying effects.

The protocol itself is pure and lives in `catalog/`: frames and messages in
`sync_protocol`, the asking side in `sync_exchange`, the answering side in
`sync_answer`, plus `lww_sync` for the last-writer-wins maps (intentions)
that ride on the same messages. This package moves their frames over
sockets and applies the `Effects` they hand back, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from gossamer.agent.sync import refusals
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.lww_sync import (
    MAX_CLOCK_OFFSET_MS,
    Entries,
    Snapshot,
    Snapshots,
    split_ahead,
)
from gossamer.catalog.sync_protocol import Effects
from gossamer.gossip import tags
from gossamer.gossip.members import Member

if TYPE_CHECKING:  # tls.py imports this module (through pool.py)
    from gossamer.agent.sync.tls import AgentTls

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


def snapshots(replicas: Replicas) -> Snapshots:
    """Each replicated map as it is now, for the pure exchange and answer."""
    return {name: r.snapshot() for name, r in replicas.items()}


def apply_effects(
    catalog: LiveCatalog,
    replicas: Replicas,
    effects: Effects,
    *,
    self_origin: str,
    tls: AgentTls,
    peer: object,
    peer_node: str,
) -> list[str]:
    """Apply what a message from `peer` (verified as agent `peer_node`) brought: records,
    then tombstones, then LWW entries.

    Returns what changed here (node names and LWW keys). What the peer
    relays for other owners passes the relay rules first (relay_check.py);
    the catalog keeps the absorb rules (`catalog.absorb`); a map this agent
    does not hold is never in `effects` (the pure side only reads maps it
    was given). LWW
    entries stamped beyond the HLC bound (`lww_sync.split_ahead`) are
    refused, counted and logged; later rounds offer them again.
    """
    effects = tls.relays.admit(effects, catalog.state, catalog.datacenter, peer_node, peer)
    changed = catalog.apply(effects.records, self_origin=self_origin)
    changed += catalog.bury(effects.tombstones, self_origin=self_origin)
    now_ms = tls.wall_ms()
    for name, entries in effects.lww.items():
        kept, ahead = split_ahead(entries, now_ms)
        if ahead:
            worst = max(e.stamp.wall_ms for _, e in ahead) - now_ms
            tls.refuse(
                refusals.CLOCK_AHEAD,
                peer,
                f"{len(ahead)} {name} entr{'y' if len(ahead) == 1 else 'ies'} stamped up to "
                f"{worst} ms ahead of this clock (limit {MAX_CLOCK_OFFSET_MS} ms)",
            )
        if kept:
            changed += replicas[name].absorb(kept)
    return changed


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


def rpc_address(member: Member) -> Address:
    """Where `member` answers agent RPC; only for members that advertise an RPC port."""
    port = tags.rpc_port(member)
    assert port is not None  # callers check eligibility first
    return member.addr, port
