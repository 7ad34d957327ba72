"""Agent RPC over TCP: the server peers sync with, and the client side of a sync.

The protocol itself (frames, requests, answers) is `catalog.sync_protocol`,
which does no I/O; this module moves its frames over sockets. A peer is
trusted with nothing: bad framing closes its connection, a bad request gets
an error reply, an idle connection is dropped, the number of connections is
capped, and whatever one connection does, the server keeps serving others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator

from gossamer.agent.live_catalog import LiveCatalog
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


# -- server -----------------------------------------------------------------------------


class PeerRpcServer:
    """Answers peers' digest, pull and push requests from `catalog`."""

    def __init__(
        self,
        catalog: LiveCatalog,
        *,
        self_origin: str,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._catalog = catalog
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
        return reply


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
    except (OSError, ProtocolError, RecordError) as exc:
        raise PeerError(f"{addr[0]}:{addr[1]}: {exc}") from exc
    finally:
        if writer is not None:
            await _close(writer)


async def exchange(
    addr: Address, catalog: LiveCatalog, *, self_origin: str, timeout: float = 5.0
) -> int:
    """One anti-entropy round with the peer at `addr`; returns how many local nodes changed.

    Sends our digest, applies the newer records the peer answers with, then
    pushes the records it said it lacks. Raises PeerError when the round
    could not complete (what was applied before that stays applied).
    """
    dc = catalog.datacenter
    async with _connect(addr, timeout) as conn:
        delta = await conn.request(digest_request(catalog.state, dc), "delta")
        changed = catalog.apply(parse_records(delta.get("records"), dc), self_origin=self_origin)
        tombstones = parse_tombstones(delta.get("tombstones"))
        changed += catalog.bury(tombstones, self_origin=self_origin)
        want = delta.get("want")
        if not isinstance(want, list) or not all(isinstance(n, str) for n in want):
            raise PeerError("delta: want is not a list of node names")
        if want:
            push = push_request(catalog.state, dc, want)
            if push["records"] or push["tombstones"]:
                await conn.request(push, "ok")
    return len(changed)


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
