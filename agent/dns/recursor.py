"""Forwarding names outside our domains to the configured recursors.

The query's bytes go upstream unchanged and the upstream's reply comes back
unchanged, so its rcode, flags and records (and its own EDNS and TC
handling) reach the client as the upstream gave them. Recursors are tried
in order (or in a random order), each given `timeout` seconds; when none
answers, the client gets SERVFAIL. UDP queries go upstream over UDP, TCP
queries over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence

import dns.flags
import dns.message
import dns.rcode

from gossamer.gossip.addresses import format_host_port

log = logging.getLogger("gossamer.dns")


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, query_id: bytes) -> None:
        self.query_id = query_id
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data[:2] == self.query_id and len(data) >= 12 and not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class Recursor:
    def __init__(
        self, servers: Sequence[tuple[str, int]], *, randomize: bool = False, timeout: float = 2.0
    ) -> None:
        self.servers = list(servers)
        self.randomize = randomize
        self.timeout = timeout

    async def forward(self, wire: bytes, tcp: bool = False) -> bytes | None:
        """The upstream's reply, SERVFAIL when no recursor answered, None for a headerless query."""
        if len(wire) < 12:
            return None
        order = list(self.servers)
        if self.randomize:
            random.shuffle(order)
        for host, port in order:
            try:
                async with asyncio.timeout(self.timeout):
                    if tcp:
                        return await _over_tcp(wire, host, port)
                    return await _over_udp(wire, host, port)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                where = format_host_port(host, port)
                log.debug("recursor %s failed: %s", where, exc or type(exc).__name__)
        return servfail(wire)


async def _over_udp(wire: bytes, host: str, port: int) -> bytes:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Reply(wire[:2]), remote_addr=(host, port)
    )
    try:
        transport.sendto(wire)
        return await protocol.done
    finally:
        transport.close()


async def _over_tcp(wire: bytes, host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(2), "big")
        return await reader.readexactly(size)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def servfail(wire: bytes) -> bytes:
    """SERVFAIL echoing the question when it parses, a bare header otherwise."""
    try:
        response = dns.message.make_response(dns.message.from_wire(wire))
        response.set_rcode(dns.rcode.SERVFAIL)
        response.flags |= dns.flags.RA
        return response.to_wire()
    except Exception:  # unparsable question: answer with the header alone
        flags = 0x80 | (wire[2] & 0x01), 0x80 | dns.rcode.SERVFAIL
        return wire[:2] + bytes(flags) + b"\x00" * 8
