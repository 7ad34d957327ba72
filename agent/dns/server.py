"""The DNS listeners: UDP and TCP (tcp.py) on the client address, answering via prepared.py.

UDP datagrams are read straight off the socket, a batch per wake-up, and
answered at once. UDP replies respect the client's size (512 bytes, or its EDNS payload size)
and set TC when records had to be cut, so resolvers retry over TCP. A
datagram that does not parse gets FORMERR when it has a header, else it is
dropped; a TCP stream that breaks framing is closed (tcp.py). Names outside our
domains are forwarded to the recursors in a task of their own, so a slow
upstream never holds up the listener. Nothing a client sends stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Coroutine
from typing import Any

from gossamer.agent.dns.answer import Forward
from gossamer.agent.dns.prepared import Responder
from gossamer.agent.dns.recursor import Recursor
from gossamer.agent.dns.tcp import TcpConnection

log = logging.getLogger("gossamer.dns")

MAX_FORWARDS = 1000  # forwarded queries in flight; beyond that, new ones are dropped
READ_BATCH = 64  # datagrams read per wake-up before other callbacks get a turn
MAX_DATAGRAM = 65535


class _UdpListener:
    """Reads datagrams straight off the socket, a batch per wake-up, and answers each at once.

    A datagram transport would cost a context switch, address conversions and
    a buffer per query (about a tenth of the CPU of a prepared answer); a
    reply the socket cannot take right now is dropped, as a DNS server does
    (the client asks again).
    """

    def __init__(self, server: DnsServer, sock: socket.socket) -> None:
        self._server = server
        self._sock = sock
        self._respond = server.responder.respond
        self._closed = False
        sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        recvfrom, sendto, respond = self._sock.recvfrom, self._sock.sendto, self._respond
        rcodes = self._server.responder.rcodes
        for _ in range(READ_BATCH):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except OSError:  # nothing more to read (BlockingIOError), or an error to skip
                return
            try:
                out = respond(data)
            except Exception:  # a bad datagram must never stop the listener
                log.exception("DNS query from %s failed", addr[0])
                continue
            if type(out) is bytes:
                rcodes[out[3] & 15] += 1
                try:  # noqa: SIM105 (a suppress() context per query costs more than the send)
                    sendto(out, addr)
                except OSError:  # the send buffer is full: dropped
                    pass
            elif isinstance(out, Forward):
                self._server.spawn(self._forward(data, addr))

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self._server.forward(data, tcp=False)
        if reply is not None and not self._closed:
            with contextlib.suppress(OSError):
                self._sock.sendto(reply, addr)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()


class DnsServer:
    def __init__(self, responder: Responder, recursor: Recursor | None = None) -> None:
        self.responder = responder
        self._recursor = recursor
        self._udp: _UdpListener | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, udp_sock: socket.socket, tcp_sock: socket.socket,
                    backlog: int = 100) -> None:  # fmt: skip
        loop = asyncio.get_running_loop()
        self._udp = _UdpListener(self, udp_sock)
        self._tcp = await loop.create_server(
            lambda: TcpConnection(self.responder, self.spawn, self._forward_tcp),
            sock=tcp_sock,
            backlog=backlog,
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
            reply = await self._recursor.forward(data, tcp=tcp)
        except Exception:
            log.exception("forwarding a DNS query failed")
            return None
        if reply is not None and len(reply) > 3:
            self.responder.rcodes[reply[3] & 15] += 1
        return reply

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in self._tasks:
            task.cancel()
