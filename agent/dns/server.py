"""The DNS listeners: UDP and TCP (tcp.py) on the client address, answering via prepared.py.

UDP replies respect the client's size (512 bytes, or its EDNS payload size)
and set TC when records had to be cut, so resolvers retry over TCP. A
datagram that does not parse gets FORMERR when it has a header, else it is
dropped; a TCP stream that breaks framing is closed (tcp.py). Names outside our
domains are forwarded to the recursors in a task of their own, so a slow
upstream never holds up the listener. Nothing a client sends stops it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Coroutine
from typing import Any, cast

from gossamer.agent.dns.answer import Forward
from gossamer.agent.dns.prepared import Responder
from gossamer.agent.dns.recursor import Recursor
from gossamer.agent.dns.tcp import TcpConnection

log = logging.getLogger("gossamer.dns")

MAX_FORWARDS = 1000  # forwarded queries in flight; beyond that, new ones are dropped


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._respond = server.responder.respond
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._sendto = self._transport.sendto  # bound once: this runs for every query

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = self._respond(data)
        except Exception:  # a bad datagram must never stop the listener
            log.exception("DNS query from %s failed", addr[0])
            return
        if type(out) is bytes:
            self._sendto(out, addr)
        elif isinstance(out, Forward):
            self._server.spawn(self._forward(data, addr))

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
        self._tcp = await loop.create_server(
            lambda: TcpConnection(self.responder, self.spawn, self._forward_tcp), sock=tcp_sock
        )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if len(self._tasks) >= MAX_FORWARDS:
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward_tcp(self, data: bytes) -> bytes | None:
        return await self.forward(data, tcp=True)

    async def forward(self, data: bytes, *, tcp: bool) -> bytes | None:
        if self._recursor is None:
            return None
        try:
            return await self._recursor.forward(data, tcp=tcp)
        except Exception:
            log.exception("forwarding a DNS query failed")
            return None

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in self._tasks:
            task.cancel()
