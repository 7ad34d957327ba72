"""Agent RPC client: one anti-entropy exchange, a hand-over of fresh LWW entries, a pull.

Every step of a conversation runs under one deadline; any failure (refused,
timed out, bad reply) is a PeerError, and what was applied before it stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from gossamer.agent.sync.peer_link import (
    READ_CHUNK,
    Address,
    PeerError,
    Replicas,
    _close,
    _snapshots,
)
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.lww_sync import (
    Entries,
    LwwSyncError,
    offer,
    plan,
    push_part,
    receive_ok,
)
from gossamer.catalog.sync_protocol import (
    FrameDecoder,
    Message,
    ProtocolError,
    digest_request,
    encode,
    parse_records,
    parse_tombstones,
    pull_request,
    push_request,
)
from gossamer.catalog.wire import RecordError

log = logging.getLogger("gossamer.replication")


class _Connection:
    """One request/reply conversation with a peer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder()
        self._pending: list[Message] = []

    async def request(self, message: Message, expect: str) -> Message:
        self._writer.write(encode(message))
        await self._writer.drain()
        while not self._pending:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                raise PeerError("peer closed the connection")
            self._pending.extend(self._decoder.feed(data))
        reply = self._pending.pop(0)
        if reply["t"] == "error":
            raise PeerError(f"peer refused {message['t']}: {reply.get('msg')}")
        if reply["t"] != expect:
            raise PeerError(f"expected {expect!r} in reply to {message['t']!r}, got {reply['t']!r}")
        return reply


@contextlib.asynccontextmanager
async def _connect(addr: Address, timeout: float) -> AsyncIterator[_Connection]:
    """A connection to `addr` with every step under one deadline; errors become PeerError."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(addr[0], addr[1])
            yield _Connection(reader, writer)
    except TimeoutError:
        raise PeerError(f"{addr[0]}:{addr[1]}: timed out after {timeout}s") from None
    except (OSError, ProtocolError, RecordError, LwwSyncError) as exc:
        raise PeerError(f"{addr[0]}:{addr[1]}: {exc}") from exc
    finally:
        if writer is not None:
            await _close(writer)


async def exchange(
    addr: Address,
    catalog: LiveCatalog,
    *,
    self_origin: str,
    timeout: float = 5.0,
    replicas: Replicas | None = None,
) -> int:
    """One anti-entropy round with the peer at `addr`; returns how many things changed here.

    Sends our digest (with the LWW maps' hashes), applies the newer records
    the peer answers with, then pushes the records it said it lacks and the
    LWW entries it lacks, asking for the ones we lack in the same message.
    Raises PeerError when the round could not complete (what was applied
    before that stays applied).
    """
    dc = catalog.datacenter
    reps: Replicas = replicas or {}
    async with _connect(addr, timeout) as conn:
        request = digest_request(catalog.state, dc)
        if reps:
            request["lww"] = offer(_snapshots(reps))
        delta = await conn.request(request, "delta")
        changed = catalog.apply(parse_records(delta.get("records"), dc), self_origin=self_origin)
        tombstones = parse_tombstones(delta.get("tombstones"))
        changed += catalog.bury(tombstones, self_origin=self_origin)
        want = delta.get("want")
        if not isinstance(want, list) or not all(isinstance(n, str) for n in want):
            raise PeerError("delta: want is not a list of node names")
        push = push_request(catalog.state, dc, want)
        lww_part = plan(_snapshots(reps), delta.get("lww")) if reps else {}
        if lww_part:
            push["lww"] = lww_part
        if push["records"] or push["tombstones"] or lww_part:
            ok = await conn.request(push, "ok")
            for name, entries in receive_ok(_snapshots(reps), ok.get("lww")).items():
                changed += reps[name].absorb(entries)
    return len(changed)


async def hand_over(
    addr: Address, datacenter: str, name: str, entries: Entries, *, timeout: float = 5.0
) -> None:
    """Push fresh entries of LWW map `name` to one peer, without waiting for a round."""
    message: Message = {"t": "push", "dc": datacenter, "records": [], "tombstones": []}
    message["lww"] = push_part(name, entries)
    async with _connect(addr, timeout) as conn:
        await conn.request(message, "ok")


async def pull(
    addr: Address,
    catalog: LiveCatalog,
    nodes: list[str],
    *,
    self_origin: str,
    timeout: float = 5.0,
) -> int:
    """Fetch the records of `nodes` from the peer at `addr`; returns how many changed here."""
    dc = catalog.datacenter
    async with _connect(addr, timeout) as conn:
        reply = await conn.request(pull_request(dc, nodes), "records")
        changed = catalog.apply(parse_records(reply.get("records"), dc), self_origin=self_origin)
    return len(changed)
