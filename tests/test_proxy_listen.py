"""proxy/listen.py: IP literals are bound as create_server would bind them; names are resolved."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import subprocess
import sys

import pytest
import uvloop

from gossamer.proxy import listen
from gossamer.proxy.listen import BACKLOG, bound_socket, ip_family, serve
from tests.harness.binaries import cannot_run


@pytest.mark.parametrize(
    ("host", "family"),
    [
        ("127.0.0.1", socket.AF_INET), ("0.0.0.0", socket.AF_INET), ("::", socket.AF_INET6),
        ("::1", socket.AF_INET6), ("fd00::1", socket.AF_INET6), ("localhost", None),
        ("db.service.consul", None), ("", None), ("127.1", None), ("[::1]", None),
        ("1.2.3.4\x00", None),
    ],
)  # fmt: skip
def test_ip_literals_and_names(host: str, family: int | None) -> None:
    assert ip_family(host) == family


def test_a_literal_is_bound_listening_and_non_blocking() -> None:
    sock = bound_socket("127.0.0.1", 0)
    assert sock is not None
    with sock:
        assert not sock.getblocking()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        with socket.create_connection(sock.getsockname()[:2], timeout=5):
            pass


def test_ipv6_is_v6_only() -> None:
    try:
        sock = bound_socket("::1", 0)
    except OSError:  # pragma: no cover - a host without IPv6 loopback
        cannot_run("no IPv6 loopback here")
    assert sock is not None
    with sock:
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_a_name_is_left_to_the_loop() -> None:
    assert bound_socket("localhost", 0) is None


def test_a_taken_port_raises_and_leaks_no_socket() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = _open_fds()
        with pytest.raises(OSError):
            bound_socket("127.0.0.1", port)
        assert _open_fds() == before


def test_shared_sockets_join_one_group_and_a_plain_one_is_kept_out() -> None:
    first = bound_socket("127.0.0.1", 0, shared=True)
    assert first is not None
    port = first.getsockname()[1]
    try:
        second = bound_socket("127.0.0.1", port, shared=True)  # another worker's
        assert second is not None
        second.close()
        with pytest.raises(OSError):  # not a worker: the port is taken for it
            bound_socket("127.0.0.1", port)
    finally:
        first.close()


async def test_serve_answers_on_a_literal_and_on_a_name() -> None:
    for host in ("127.0.0.1", "localhost"):
        server = await serve(lambda: _Hello(), host, 0)
        (port,) = {s.getsockname()[1] for s in server.sockets if s.family == socket.AF_INET}
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.read() == b"hello"
        writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_listener_keeps_the_backlog_the_kernel_allows(host: str) -> None:
    """create_server listens again on a socket it is given, with its own default backlog of
    100 unless told: a burst of 1,000 connects then lost SYNs and waited a second each. The
    accept queue is net.core.somaxconn long, as `ss` shows (Send-Q of a listener)."""
    with open("/proc/sys/net/core/somaxconn") as f:
        allowed = int(f.read())
    assert allowed <= BACKLOG

    loop = uvloop.new_event_loop()  # the proxy's loop
    try:
        server = loop.run_until_complete(serve(lambda: _Hello(), host, 0))
        port = server.sockets[0].getsockname()[1]
        shown = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                               text=True, check=True).stdout.split()  # fmt: skip
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.close()
    assert int(shown[2]) == allowed


class _Hello(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"hello")
        transport.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if sys.platform == "linux" else 0


@pytest.mark.parametrize(
    ("first", "second"),
    [("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "0.0.0.0"), ("0.0.0.0", "127.0.0.1")],
)
def test_a_worker_never_shares_a_port_between_two_of_its_listeners(first: str, second: str) -> None:
    """With SO_REUSEPORT on every listener (a worker of `--workers N`), the kernel lets a
    second listener of the process join the first one's port, and each would get some of
    the other's clients (two `--node` sidecars given one port, each with its identity): the
    second is refused as an unshared bind would be; once the first closes, it may bind."""

    async def run() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        one = await serve(asyncio.Protocol, first, port)
        try:
            with pytest.raises(OSError) as taken:
                await serve(asyncio.Protocol, second, port)
            assert taken.value.errno == errno.EADDRINUSE
        finally:
            one.close()
        two = await serve(asyncio.Protocol, second, port)
        two.close()

    listen.share_ports()
    try:
        uvloop.run(run())
    finally:
        listen._shared = False
