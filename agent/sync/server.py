"""Agent RPC server: answers peers' digest, pull and push requests over TCP.

What each request gets is `catalog.sync_answer.respond` (pure): the reply
frame and the effects to apply here. This module moves frames and applies
effects; it decides nothing about the protocol.

A peer is trusted with nothing: bad framing closes its connection, a bad
request gets an error reply, an idle connection is dropped, the number of
connections is capped, and whatever one connection does, the server keeps
serving others.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from gossamer.agent.sync.peer_link import (
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    READ_CHUNK,
    Replicas,
    _close,
    apply_effects,
    snapshots,
)
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.sync_answer import Served, respond
from gossamer.catalog.sync_protocol import FrameDecoder, Message, ProtocolError

log = logging.getLogger("gossamer.replication")


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
                writer.write(self._reply(message))
                async with asyncio.timeout(self._idle_timeout):
                    await writer.drain()

    def _reply(self, message: Message) -> bytes:
        """The reply frame to one request, after applying what the request brought."""
        catalog = self._catalog
        served = Served(catalog.state, catalog.datacenter, snapshots(self._replicas))
        frame, effects = respond(message, served)
        changed = apply_effects(catalog, self._replicas, effects, self_origin=self._self_origin)
        if changed:
            log.debug("agent RPC: a push brought %s", ", ".join(changed))
        return frame
