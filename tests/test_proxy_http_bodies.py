"""Long answer bodies, passed on past the parser (http_reply.PAST_PARSER), with real proxies.

An answer with a Content-Length and more than 64 KiB of body left once its
head is parsed goes on read by read, counted off by the proxy rather than by
llhttp; at its end a fresh parser takes the connection's next answer. Both
paths through db's HTTP sidecar: a client of web's L4 upstream (db's sidecar
parses), and of web2's HTTP upstream (both sidecars parse, over a pooled
mTLS connection). The mesh is test_proxy_http.py's.
"""

from __future__ import annotations

import http.client
import os
import socket
from collections.abc import Callable

import pytest

from tests.http_app import OVERRUN, pattern
from tests.test_proxy_http import Mesh, mesh

__all__ = ["mesh"]  # the fixture, imported for pytest


@pytest.mark.parametrize("pooled", [False, True], ids=["l4-upstream", "http-upstream"])
def test_long_bodies_arrive_whole_and_the_connection_serves_on(mesh: Mesh, pooled: bool) -> None:
    conn = http.client.HTTPConnection(*(mesh.pooled if pooled else mesh.upstream), timeout=20)
    try:
        # around the threshold, then across many reads (the app takes up to 1 MiB of request);
        # a small answer after each
        for i, size in enumerate((65_530, 65_536 + 7, 200_003, 1_000_003)):
            body = os.urandom(size)
            conn.request("POST", f"/echo/{i}", body=body)
            response = conn.getresponse()
            got = response.read()
            assert response.status == 200 and len(got) == len(f"POST /echo/{i} ") + size
            assert got == f"POST /echo/{i} ".encode() + body
            conn.request("GET", f"/echo/after-{i}")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, f"GET /echo/after-{i} ".encode())
    finally:
        conn.close()


def test_what_follows_a_long_body_unasked_is_not_passed_on(mesh: Mesh) -> None:
    """The app writes a second answer right after the long one, in the same write: the client
    gets the long one exactly, then the answer to its next request and nothing else (the app
    connection was dropped). A raw socket: http.client would drop stray bytes it read ahead."""
    with socket.create_connection(mesh.upstream, timeout=20) as s:
        s.sendall(b"GET /overrun/300000 HTTP/1.1\r\nHost: db\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\n"
        first = read_until(
            s, lambda got: b"\r\n\r\n" in got and len(got.split(b"\r\n\r\n", 1)[1]) >= 300_000
        )
        assert first.startswith(head)
        assert first.split(b"\r\n\r\n", 1)[1] == pattern(300_000)  # and nothing after it
        s.sendall(b"GET /echo/next HTTP/1.1\r\nHost: db\r\n\r\n")
        second = read_until(s, lambda got: got.endswith(b"GET /echo/next "))
        assert second.startswith(head) and OVERRUN not in second


def read_until(s: socket.socket, done: Callable[[bytes], bool]) -> bytes:
    got = b""
    while not done(got):
        chunk = s.recv(65536)
        assert chunk, f"closed after {len(got)} bytes"
        got += chunk
    return got
