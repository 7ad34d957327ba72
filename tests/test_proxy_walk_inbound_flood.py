"""One source opening connections it never finishes: it cannot take the inbound port's memory.

Each connection accepted and still in its handshake holds a task, a TLS
object and its buffers (~50 KiB: 3,000 stalled ClientHellos grew a real
sidecar from 29 to 186 MiB), for up to the 10 s handshake timeout. One
host with no certificate could hold as many as the process has file
descriptors. In-process, real sockets and TLS; the per-source limit is
lowered so the test opens few connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest

from gossamer.proxy import inbound as inbound_module
from gossamer.proxy.config import Timeouts
from gossamer.proxy.inbound import Inbound
from tests.harness.poll import eventually_async
from tests.inbound_served import served_db
from tests.proxy_pki import Pki, client_context

LIMIT = 8
REASON = "inbound.refused.too-many-handshakes"


@pytest.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Inbound, Pki, int]]:
    monkeypatch.setattr(inbound_module, "MAX_HANDSHAKES_PER_SOURCE", LIMIT, raising=False)
    async with served_db(Timeouts(handshake_s=10)) as s:
        yield s.inbound, s.pki, s.port


async def stalled(port: int, source: str) -> socket.socket:
    """A connection from `source` that says nothing: its handshake never ends by itself."""
    s = socket.socket()
    s.setblocking(False)
    s.bind((source, 0))
    await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port))
    return s


async def echoed(pki: Pki, port: int, source: str) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(pki, pki.leaf_json("web")), local_addr=(source, 0)
    )
    try:
        writer.write(b"hi")
        return await asyncio.wait_for(reader.readexactly(2), 5)
    finally:
        writer.close()


async def test_one_source_holds_at_most_its_share_of_handshakes(
    served: tuple[Inbound, Pki, int],
) -> None:
    inbound, pki, port = served
    held = [await stalled(port, "127.0.0.1") for _ in range(LIMIT + 5)]
    try:

        async def refused_beyond() -> bool:
            return inbound.tally.snapshot().get(REASON, 0) == 5

        await eventually_async(refused_beyond, 5)
        assert inbound.open_count() == LIMIT  # those let in wait for their handshake
        assert await echoed(pki, port, "127.0.0.2") == b"hi"  # another source is served
        for s in held[:2]:
            s.close()

        async def room() -> bool:
            return inbound.open_count() <= LIMIT - 2

        await eventually_async(room, 5)
        assert await echoed(pki, port, "127.0.0.1") == b"hi"  # freed slots are taken again
    finally:
        for s in held:
            with contextlib.suppress(OSError):
                s.close()


async def test_a_handshake_that_ends_frees_its_slot_whatever_its_end(
    served: tuple[Inbound, Pki, int],
) -> None:
    """Served, refused, timed out or cancelled by the listener's end: each gives its slot
    back, so a source that was ever refused is not refused for good."""
    inbound, pki, port = served
    for _ in range(LIMIT * 2):
        assert await echoed(pki, port, "127.0.0.3") == b"hi"
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.3", 0))
            w.write(b"GET / HTTP/1.0\r\n\r\n")
            await r.read()
            w.close()

    async def settled() -> bool:
        return not inbound.handshaking  # type: ignore[attr-defined]

    await eventually_async(settled, 5)
    assert inbound.tally.snapshot().get(REASON, 0) == 0
