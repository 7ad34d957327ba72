"""The DNS listeners: UDP and TCP on the client address, answering via prepared.py.

UDP replies respect the client's size (512 bytes, or its EDNS payload size)
and set TC when records had to be cut, so resolvers retry over TCP. A
datagram that does not parse gets FORMERR when it has a header, else it is
dropped; a TCP stream that breaks framing is closed. Names outside our
domains are forwarded to the recursors in a task of their own, so a slow
upstream never holds up the listener. Nothing a client sends stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Coroutine
from typing import Any, cast

from gossamer.agent.dns.answer import Forward
from gossamer.agent.dns.prepared import Responder
from gossamer.agent.dns.recursor import Recursor

log = logging.getLogger("gossamer.dns")

TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP client may stay silent between queries
MAX_FORWARDS = 1000  # forwarded queries in flight; beyond that, new ones are dropped


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._respond = server.responder.respond
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = self._respond(data)
        except Exception:  # a bad datagram must never stop the listener
            log.exception("DNS query from %s failed", addr[0])
            return
        if out is None or self._transport is None:
            return
        if isinstance(out, Forward):
            self._server.spawn(self._forward(data, addr))
        else:
            self._transport.sendto(out, addr)

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self._server.forward(data, tcp=False)
        if reply is not None and self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, addr)


class DnsServer:
    def __init__(self, responder: Responder, recursor: Recursor | None = None) -> None:
        self.responder = responder
        self._recursor = recursor
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, udp_sock: socket.socket, tcp_sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), sock=udp_sock
        )
        self._udp = transport
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp_sock)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if len(self._tasks) >= MAX_FORWARDS:
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def forward(self, data: bytes, *, tcp: bool) -> bytes | None:
        if self._recursor is None:
            return None
        try:
            return await self._recursor.forward(data, tcp=tcp)
        except Exception:
            log.exception("forwarding a DNS query failed")
            return None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    wire = await reader.readexactly(size)
                out = self.responder.respond(wire, tcp=True)
                if isinstance(out, Forward):
                    out = await self.forward(wire, tcp=True)
                if out is None:
                    return
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("DNS over TCP failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in self._tasks:
            task.cancel()
