"""A client whose handshake's last flight came alone gets the session ticket at once.

The inbound side keeps its TLS 1.3 ticket back until its first answer, so
a sidecar of ours, whose Finished comes with its first bytes, costs one
write fewer. But most TLS clients (Python's `ssl`, `openssl s_client`,
Java) leave Nagle's algorithm on: they send Finished, then hold their
first bytes until Finished is acknowledged, and with nothing to send the
sidecar's kernel delays that ACK by 40 ms. Every new connection of such a
client waited 40 ms before its first byte left (measured against a real
sidecar: 41-45 ms against 1-2 ms). In-process, real sockets and TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator

import pytest

from tests.inbound_served import served_db
from tests.proxy_pki import Pki, client_context


@pytest.fixture
async def served() -> AsyncIterator[tuple[Pki, int]]:
    async with served_db() as s:
        yield s.pki, s.port


def finished_alone(
    context: ssl.SSLContext, port: int, session: ssl.SSLSession | None = None
) -> ssl.SSLObject:
    """A client's handshake with its Finished sent alone, no data after it; then what the
    server sends within 2 s read (a ticket makes `session.has_ticket`)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=False, session=session)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        s.sendall(outgoing.read())
        while True:
            incoming.write(s.recv(65536))
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
        s.sendall(outgoing.read())  # the Finished, alone
        s.settimeout(2)
        with contextlib.suppress(TimeoutError):
            while not (tls.session is not None and tls.session.has_ticket):
                chunk = s.recv(65536)
                if not chunk:
                    break
                incoming.write(chunk)
                with contextlib.suppress(ssl.SSLWantReadError):
                    tls.read(1)
    return tls


async def test_a_finished_sent_alone_is_answered_with_the_ticket_at_once(
    served: tuple[Pki, int],
) -> None:
    pki, port = served
    context = client_context(pki, pki.leaf_json("web"))
    tls = await asyncio.to_thread(finished_alone, context, port)
    assert tls.session is not None and tls.session.has_ticket
    again = await asyncio.to_thread(finished_alone, context, port, tls.session)  # resumed, too
    assert again.session_reused
    assert again.session is not None and again.session.has_ticket
