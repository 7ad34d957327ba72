"""The DNS listeners: UDP and TCP on the client address, answering via answer.py.

UDP replies respect the client's size (512 bytes, or its EDNS payload size)
and set TC when the answer does not fit, so resolvers retry over TCP. A
datagram that does not parse gets FORMERR when it has a header, else it is
dropped; a TCP stream that breaks framing is closed. Nothing a client sends
stops the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import cast

import dns.exception
import dns.flags
import dns.message

from gossamer.agent.dns.answer import DnsView, handle

log = logging.getLogger("gossamer.dns")

UDP_DEFAULT_SIZE = 512
TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP client may stay silent between queries
ViewSource = Callable[[], DnsView]


def render(response: dns.message.Message, max_size: int) -> bytes:
    """Wire bytes no larger than `max_size`; truncated (TC) when they would be."""
    try:
        return response.to_wire(max_size=max_size)
    except dns.exception.TooBig:
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=max_size)


def udp_limit(query_wire: bytes, response: dns.message.Message) -> int:
    if response.edns >= 0 and response.payload:
        return max(UDP_DEFAULT_SIZE, min(response.payload, 65535))
    return UDP_DEFAULT_SIZE


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, view: ViewSource) -> None:
        self._view = view
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            response = handle(data, self._view())
            if response is not None and self._transport is not None:
                self._transport.sendto(render(response, udp_limit(data, response)), addr)
        except Exception:  # a bad datagram must never stop the listener
            log.exception("DNS query from %s failed", addr[0])


async def _serve_tcp(
    view: ViewSource, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                size = int.from_bytes(await reader.readexactly(2), "big")
                wire = await reader.readexactly(size)
            response = handle(wire, view())
            if response is None:
                return
            out = render(response, 65535)
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


class DnsServer:
    def __init__(self, view: ViewSource) -> None:
        self._view = view
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self, udp_sock: socket.socket, tcp_sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self._view), sock=udp_sock
        )
        self._udp = transport
        self._tcp = await asyncio.start_server(
            lambda r, w: _serve_tcp(self._view, r, w), sock=tcp_sock
        )

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
