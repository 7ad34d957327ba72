"""The DNS listeners (server.py, tcp.py) on real loopback sockets, UDP and TCP.

UDP: answers, FORMERR for bad bytes and no answer to a response, and the
listener still serving after them. TCP: pipelined queries in one write, a
query split over several writes, and what closes a connection: a message
that gets no answer, and silence beyond the idle timeout.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import dns.message
import dns.rcode
import pytest

from gossamer.agent.dns import tcp
from gossamer.agent.dns.prepared import Responder
from gossamer.agent.dns.records import Context
from gossamer.agent.dns.server import DnsServer
from tests.dns_support import SERIAL, SETTINGS, ZONE, make_query

QUESTIONS = [("web.service.consul.", "SRV"), ("nope.service.consul.", "A"),
             ("a.node.consul.", "A"), ("1.0.0.10.in-addr.arpa.", "PTR")]  # fmt: skip


def framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


async def read_answer(reader: asyncio.StreamReader) -> dns.message.Message:
    size = int.from_bytes(await reader.readexactly(2), "big")
    return dns.message.from_wire(await reader.readexactly(size))


def _udp_and_tcp_on_one_port() -> tuple[socket.socket, socket.socket]:
    """A UDP port the kernel picked and TCP on the same number; that TCP port may be taken
    (an outgoing connection of another process holds it), so another pick is tried."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(udp.getsockname())
        except OSError:
            udp.close()
            listener.close()
            continue
        return udp, listener
    raise OSError("no port free for both UDP and TCP in 50 picks")


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, int]]:
    """The listeners on one address and port: UDP and TCP."""
    udp, listener = _udp_and_tcp_on_one_port()
    listener.listen(16)
    dns_server = DnsServer(Responder(Context(ZONE, SETTINGS, SERIAL)))
    await dns_server.start(udp, listener)
    yield listener.getsockname()
    dns_server.close()


async def test_pipelined_queries_all_answered(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    queries = [make_query(name, rdtype) for name, rdtype in QUESTIONS * 3]
    for i, query in enumerate(queries):
        query.id = 100 + i
    writer.write(b"".join(framed(q.to_wire()) for q in queries))  # one write, twelve queries
    answers = [await read_answer(reader) for _ in queries]
    assert [a.id for a in answers] == [q.id for q in queries]
    assert [a.rcode() for a in answers[:4]] == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN,
                                                dns.rcode.NOERROR, dns.rcode.NOERROR]  # fmt: skip
    assert sorted(rd.port for rd in answers[0].answer[0]) == [80, 81, 86]
    writer.close()


async def test_query_split_over_writes(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    data = framed(make_query("web.service.consul.", "A").to_wire())
    for byte in data:  # one byte per write: the frame is put together
        writer.write(bytes([byte]))
        await writer.drain()
    answer = await read_answer(reader)
    assert answer.id == 0x4242
    assert {rd.address for rd in answer.answer[0]} == {"10.0.0.1", "10.0.0.2"}
    writer.close()


async def test_message_without_answer_closes(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    reply = dns.message.make_response(make_query("web.service.consul."))
    good = make_query("a.node.consul.")
    writer.write(framed(good.to_wire()) + framed(reply.to_wire()) + framed(good.to_wire()))
    assert (await read_answer(reader)).id == good.id  # answered before the response came
    assert await asyncio.wait_for(reader.read(), 5) == b""  # then closed, nothing more
    writer.close()


async def test_idle_connection_closed(
    server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tcp, "TCP_IDLE_TIMEOUT", 0.2)
    reader, writer = await asyncio.open_connection(*server)
    writer.write(framed(make_query("a.node.consul.").to_wire()) + b"\x00\x30half")
    assert (await read_answer(reader)).rcode() == dns.rcode.NOERROR
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the half query never completed
    writer.close()


def udp_exchange(address: tuple[str, int], data: bytes, *, expect: bool = True) -> bytes | None:
    """Send one datagram and wait for the reply (blocking: run in a thread)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5 if expect else 0.5)
        sock.sendto(data, address)
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


async def test_udp_answers_and_keeps_serving(server: tuple[str, int]) -> None:
    query = make_query("web.service.consul.", "SRV")
    for i in range(3):
        query.id = 7 + i
        reply = await asyncio.to_thread(udp_exchange, server, query.to_wire())
        assert reply is not None and dns.message.from_wire(reply).id == 7 + i
    formerr = await asyncio.to_thread(
        udp_exchange, server, b"\xab\xcd\x01\x00\x00\x01" + b"\x00" * 6
    )
    assert formerr is not None and dns.message.from_wire(formerr).rcode() == dns.rcode.FORMERR
    response = dns.message.make_response(make_query("a.node.consul.")).to_wire()
    assert await asyncio.to_thread(udp_exchange, server, response, expect=False) is None
    assert await asyncio.to_thread(udp_exchange, server, b"", expect=False) is None
    reply = await asyncio.to_thread(udp_exchange, server, make_query("a.node.consul.").to_wire())
    assert reply is not None and dns.message.from_wire(reply).answer[0][0].address == "10.0.0.1"
