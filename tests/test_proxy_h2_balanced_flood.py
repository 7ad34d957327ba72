"""An instance that floods PINGs and never reads, on a balanced connection (h2_balanced.py).

Web's sidecar reads an instance's connection on while what it sends there
waits (its answers are what free the far side: test_proxy_h2_balanced.py's
many large calls). What waits is then bounded by the instance's window plus
a slack: each PING it sends is owed an ACK, and one that never reads would
have the sidecar queue ACKs without end. Past the bound its connection is
not read, so the flood stops at the sockets' buffers.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection

from gossamer.proxy.h2_frames import PING, SETTINGS, frame
from tests.test_proxy_grpc import grpc_mesh

LIMIT = 64 << 20  # what the flood sends at most: past this, nothing held it back
BLOCKED_S = 2.0  # a write that waits this long: the flood is held back


class Flood:
    """An h2c app that sends its SETTINGS, then PINGs for as long as it can write, and never
    reads; `sent` says how many bytes went before writing blocked (or LIMIT)."""

    def __init__(self) -> None:
        self.sent: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        writer.write(frame(SETTINGS, 0, 0))
        batch = frame(PING, 0, 0, bytes(8)) * 4096
        sent = 0
        while sent < LIMIT:
            writer.write(batch)
            sent += len(batch)
            try:
                await asyncio.wait_for(writer.drain(), BLOCKED_S)
            except (TimeoutError, ConnectionError):
                break
        if not self.sent.done():
            self.sent.set_result(sent)
        await reader.read()  # (read at the end only: the connection stays until the test's)


@pytest.mark.parametrize("mode", ["mux", "tls"])
async def test_an_instance_that_floods_pings_and_never_reads_is_held_back(mode: str) -> None:
    """Before the bound, web's sidecar read such an instance for as long as it sent, queueing
    an ACK for each PING: the flood reached LIMIT. It now stops at about the instance's window,
    the slack (1 MiB) and the sockets' buffers."""
    flood = Flood()
    async with grpc_mesh(mode, serve=flood.serve, balance=True) as mesh:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", mesh.web.upstream.bind_port))
        client = H2Connection(H2Configuration(client_side=True))
        client.initiate_connection()
        client.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/t.T/Echo"),
                                (":authority", "db"), ("content-type", "application/grpc"),
                                ("te", "trailers")])  # fmt: skip
        try:
            await loop.sock_sendall(sock, client.data_to_send())
            sent = await asyncio.wait_for(flood.sent, 120)
            assert sent < 32 << 20, f"the flood went on: {sent >> 20} MiB"  # (sockets: ~18)
        finally:
            sock.close()
