"""Long bodies both ways through the HTTP path, with real proxies.

Answers: one with a Content-Length and more than 64 KiB of body left once
its head is parsed goes on read by read, counted off by the proxy rather
than by llhttp (http_reply.PAST_PARSER); at its end a fresh parser takes the
connection's next answer. Uploads: a body written with its head while the
request's connection is still being made (held within HELD_BODY, sent as
frames a peer takes), and an app that answers before the body's end. Both
paths through db's HTTP sidecar: a client of web's L4 upstream (db's sidecar
parses), and of an HTTP upstream (both sidecars parse, over a pooled mTLS
connection). The mesh is test_proxy_http.py's.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import select
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness.cluster import free_port
from tests.harness.poll import eventually
from tests.http_app import OVERRUN, pattern
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    read_until,
    set_intention,
    sidecar,
    wait_listening,
    web_body,
)
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


@contextlib.contextmanager
def own_upstream(
    mesh: Mesh, tmp: Path, name: str, to: str = "db", **config: object
) -> Iterator[tuple[tuple[str, int], ProxyProc]]:
    """A service `name` with an HTTP upstream of `to` and a sidecar of its own (nothing pooled
    yet); its upstream's address and the sidecar. Deregistered after, its sidecar stopped
    cleanly."""
    port = free_port("127.0.0.1")
    up = {"DestinationName": to, "LocalBindPort": port, "Config": {"protocol": "http", **config}}
    body = web_body(mesh.agent, free_port(mesh.agent.ip), [up])
    mesh.agent.put("/v1/agent/service/register", body | {"Name": name, "ID": name})
    set_intention(mesh.agent, name, to, "allow")
    proxy = sidecar(mesh.agent, tmp, name)
    try:
        wait_listening("127.0.0.1", port, proxy)
        yield ("127.0.0.1", port), proxy
    finally:
        assert proxy.stop() == 0
        mesh.agent.put(f"/v1/agent/service/deregister/{name}", None)


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("pooled", [False, True], ids=["l4-upstream", "http-upstream"])
def test_an_upload_sent_with_its_head_while_its_connection_opens_arrives_whole(
    mesh: Mesh, pooled: bool, chunked: bool, tmp_path: Path
) -> None:
    """A client writes its head and a 3 MiB body (one length, or chunks of 100,000) at once,
    while the connection its request needs is still being made: on the HTTP upstream a new
    stream of the mTLS connection to db (another request holds the only one open), on the
    L4 upstream db's sidecar's connection to the app. The body goes on as frames the far
    sidecar takes: the app reads it whole, and the request in flight beside it on the same
    mTLS connection is answered too (one frame of the whole held body, over the peer's
    limit, closed that connection under both)."""
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(1) as pool:
        address, beside = mesh.upstream, None
        if pooled:  # the one stream open is held for 1.5 s
            address, _ = stack.enter_context(own_upstream(mesh, tmp_path, "web3"))
            beside = pool.submit(_request, address, b"GET /sleep/1500 HTTP/1.1\r\nHost: db\r\n\r\n")
            eventually(lambda: "GET /sleep/1500" in mesh.app.seen, 10, what="the first request")
        payload = os.urandom(3 << 20)
        if chunked:
            pieces = [payload[at : at + 100_000] for at in range(0, len(payload), 100_000)]
            framing, body = (
                "Transfer-Encoding: chunked",
                b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in [*pieces, b""]),
            )
        else:
            framing, body = f"Content-Length: {len(payload)}", payload
        head = f"POST /sink HTTP/1.1\r\nHost: db\r\n{framing}\r\n\r\n"
        answer = _request(address, head.encode() + body)
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode())
        if beside is not None:
            assert beside.result(20).endswith(b"slept")
    assert "not a mux frame" not in mesh.db_proxy.log()


@pytest.mark.parametrize("tiny_chunks", [False, True], ids=["length", "1-byte-chunks"])
def test_a_body_waiting_for_its_connection_is_not_read_without_bound(
    mesh: Mesh, tmp_path: Path, tiny_chunks: bool
) -> None:
    """The upstream's only instance takes TCP connections and never says a word, so the
    mTLS connection a request needs is not made until the connect timeout: meanwhile the
    sidecar keeps at most HELD_BODY (256 KiB) of the body and stops reading the client,
    whose writes stall once the sockets' buffers are full (a few MiB on loopback), not
    after the whole 64 MiB went into the proxy. Then the client gets its 503. In chunks of
    one byte each, ~43,000 pieces are held: counting them costs the sidecar no more than
    linear time (it summed them on every piece, tens of CPU seconds)."""
    with contextlib.ExitStack() as stack:
        mute = stack.enter_context(socket.create_server((mesh.agent.ip, 0), backlog=16))
        mesh.agent.put("/v1/agent/service/register", {
            "Name": "mute", "ID": "mute", "Port": 1, "Address": mesh.agent.ip,
            "Connect": {"SidecarService": {"Port": mute.getsockname()[1],
                                           "Address": mesh.agent.ip}}})  # fmt: skip
        stack.callback(mesh.agent.put, "/v1/agent/service/deregister/mute", None)
        eventually(lambda: healthy_sidecars(mesh.agent, "mute") == 1, 30, what="mute passing")
        address, proxy = stack.enter_context(
            own_upstream(mesh, tmp_path, "web4", to="mute", connect_timeout_ms=4000)
        )
        assert proxy.proc is not None
        cpu_before = _cpu_s(proxy.proc.pid)
        client = stack.enter_context(socket.create_connection(address, timeout=10))
        size = 64 << 20
        framing = "Transfer-Encoding: chunked" if tiny_chunks else f"Content-Length: {size}"
        client.sendall(f"POST /sink HTTP/1.1\r\nHost: mute\r\n{framing}\r\n\r\n".encode())
        client.setblocking(False)
        chunk = b"1\r\nx\r\n" * (1 << 17) if tiny_chunks else bytes(1 << 20)
        taken, until = 0, time.monotonic() + 2
        while taken < size and time.monotonic() < until:
            select.select([], [client], [], 0.05)
            with contextlib.suppress(BlockingIOError):
                taken += client.send(chunk[: size - taken])
        assert taken < 24 << 20, f"{taken} bytes of the body taken before any connection"
        client.settimeout(40)  # every attempt at the instance runs to the connect timeout
        assert read_until(client, lambda got: b"\r\n\r\n" in got).startswith(b"HTTP/1.1 503")
        assert _cpu_s(proxy.proc.pid) - cpu_before < 5


def _cpu_s(pid: int) -> float:
    """A process's user and system CPU seconds so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _request(address: tuple[str, int], raw: bytes) -> bytes:
    """One request in one write; its answer, read to the end of its Content-Length."""
    with socket.create_connection(address, timeout=20) as s:
        s.sendall(raw)
        got = read_until(s, lambda got: b"\r\n\r\n" in got)
        head, rest = got.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))  # fmt: skip
        while len(rest) < length:
            chunk = s.recv(65536)
            assert chunk, f"closed after {len(rest)} of {length} body bytes"
            rest += chunk
        return head + b"\r\n\r\n" + rest


@pytest.mark.parametrize("pooled", [False, True], ids=["l4-upstream", "http-upstream"])
def test_an_answer_before_the_end_of_its_request_and_the_connection_serves_on(
    mesh: Mesh, pooled: bool
) -> None:
    """The app answers a 1 MiB upload before reading it (as a 401, a 413 or nginx's `return`
    do), then reads the rest and keeps the connection: the rest of the body still goes to
    it, and the next request on the connection is answered. Before, the body's rest found
    its request finished and the client got `400`."""
    body = os.urandom(1 << 20)
    head = f"POST /early/201 HTTP/1.1\r\nHost: db\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(mesh.pooled if pooled else mesh.upstream, timeout=20) as s:
        for i in range(3):
            s.sendall(head.encode() + body)
            early = read_until(s, lambda got: b"\r\n\r\n" in got)
            assert early.startswith(b"HTTP/1.1 201") and early.endswith(b"\r\n\r\n")
            s.sendall(f"GET /echo/next-{i} HTTP/1.1\r\nHost: db\r\n\r\n".encode())
            tail = f"GET /echo/next-{i} ".encode()
            after = read_until(s, lambda got, tail=tail: got.endswith(tail))  # type: ignore[misc]
            assert after.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("pooled", [False, True], ids=["l4-upstream", "http-upstream"])
def test_an_early_answer_that_closes_ends_the_client_connection_after_it(
    mesh: Mesh, pooled: bool
) -> None:
    """The app answers `413` with `Connection: close` before reading a 1 MiB upload: the
    client gets that answer whole, then its connection ends (the body's rest has nowhere to
    go), and the next connection is served."""
    body = os.urandom(1 << 20)
    address = mesh.pooled if pooled else mesh.upstream
    head = f"POST /early/413?close=1 HTTP/1.1\r\nHost: db\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(address, timeout=20) as s:
        with contextlib.suppress(OSError):  # the proxy may stop reading before all of it
            s.sendall(head.encode() + body)
        answer = read_until(s, lambda got: b"\r\n\r\n" in got)
        assert answer.startswith(b"HTTP/1.1 413")
    assert _request(address, b"GET /echo/then HTTP/1.1\r\nHost: db\r\n\r\n").endswith(
        b"GET /echo/then "
    )
