"""Agent RPC over TCP: the server peers sync with, and the client side of a sync.

The protocol itself (frames, requests, answers) is `catalog.sync_protocol`,
plus `catalog.lww_sync` for the last-writer-wins maps (intentions) that ride
on the same messages; neither does I/O, this module moves their frames over
sockets. A peer is
trusted with nothing: bad framing closes its connection, a bad request gets
an error reply, an idle connection is dropped, the number of connections is
capped, and whatever one connection does, the server keeps serving others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from gossamer.agent.live_catalog import LiveCatalog
from gossamer.catalog.lww_sync import (
    Entries,
    LwwSyncError,
    Snapshot,
    Snapshots,
    answer_offer,
    answer_push,
    offer,
    plan,
    push_part,
    receive_ok,
)
from gossamer.catalog.sync_protocol import (
    FrameDecoder,
    Message,
    ProtocolError,
    answer,
    digest_request,
    encode,
    parse_records,
    parse_tombstones,
    pull_request,
    push_request,
)
from gossamer.catalog.wire import RecordError

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


# -- server -----------------------------------------------------------------------------


class PeerRpcServer:
    """Answers peers' digest, pull and push requests from `catalog` (and `replicas`)."""

    def __init__(
        self,
        catalog: LiveCatalog,
        *,
        self_origin: str,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        replicas: Replicas | None = None,
    ) -> None:
        self._catalog = catalog
        self._replicas: Replicas = replicas or {}
        self._self_origin = self_origin
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.refused = 0  # connections turned away at the cap

    @property
    def connections(self) -> int:
        return len(self._writers)

    async def start(self, sock: socket.socket) -> None:
        """Serve on a listening socket the agent bound earlier."""
        self._server = await asyncio.start_server(self._handle, sock=sock)

    def close(self) -> None:
        """Stop accepting and drop every open connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()

    async def wait_closed(self) -> None:
        """After `close()`: until every connection handler has finished."""
        while self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._handle_one(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _handle_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if len(self._writers) >= self._max_connections:
            self.refused += 1
            log.debug("agent RPC: refusing %s, %d connections open", peer, len(self._writers))
            await _close(writer)
            return
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except ProtocolError as exc:
            log.debug("agent RPC: closing connection from %s: %s", peer, exc)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("agent RPC: connection from %s ended: %r", peer, exc)
        except Exception:  # one bad peer (or a bug) must never stop the server
            log.warning("agent RPC: error serving %s", peer, exc_info=True)
        finally:
            self._writers.discard(writer)
            await _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        while True:
            async with asyncio.timeout(self._idle_timeout):
                data = await reader.read(READ_CHUNK)
            if not data:
                return
            for message in decoder.feed(data):
                writer.write(encode(self._reply(message)))
                async with asyncio.timeout(self._idle_timeout):
                    await writer.drain()

    def _reply(self, message: Message) -> Message:
        catalog = self._catalog
        reply, records = answer(catalog.state, message, datacenter=catalog.datacenter)
        if records:
            changed = catalog.apply(records, self_origin=self._self_origin)
            if changed:
                log.debug("agent RPC: a push brought %s", ", ".join(changed))
        if message.get("t") == "push" and reply.get("t") == "ok":
            try:
                tombstones = parse_tombstones(message.get("tombstones"))
            except RecordError as exc:
                return {"t": "error", "msg": str(exc)}
            catalog.bury(tombstones, self_origin=self._self_origin)
        if self._replicas and reply.get("t") in ("delta", "ok"):
            try:
                return self._lww_reply(message, reply)
            except LwwSyncError as exc:
                return {"t": "error", "msg": str(exc)}
        return reply

    def _lww_reply(self, message: Message, reply: Message) -> Message:
        """Add the LWW maps' part: our digests to a digest, wanted entries to a push."""
        snaps = _snapshots(self._replicas)
        if reply["t"] == "delta":
            part: dict[str, object] = dict(answer_offer(snaps, message.get("lww")))
        else:
            wanted, incoming = answer_push(snaps, message.get("lww"))
            for name, entries in incoming.items():
                if entries:
                    self._replicas[name].absorb(entries)
            part = dict(wanted)
        return {**reply, "lww": part} if part else reply


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


# -- client -----------------------------------------------------------------------------


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
