"""What a client that pipelines tiny requests without end costs a sidecar on the HTTP path.

Against the raw app of tests/raw_app.py behind an HTTP sidecar (`flood`),
through two clients of it, as test_proxy_http_raw.py's `switching`:
`fl-l4` (an L4 upstream: the app's sidecar parses) and `fl-http` (an HTTP
upstream: the client's sidecar parses too). A read of tiny requests holds
thousands of them; each parsed is an exchange kept until its answer, so
the sidecar parses no further than a bound ahead of the request in flight,
and keeps the rest of the read until the ones before are answered.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cluster import free_port, put_exact
from tests.harness.poll import eventually
from tests.proxy_support import ProxyProc, healthy_sidecars, sidecar, wait_listening, web_body
from tests.raw_app import RawApp
from tests.test_proxy_http import Mesh, mesh
from tests.test_proxy_http_raw import _ask, _whole

__all__ = ["mesh"]  # the fixture, imported for pytest

CONNECTIONS = 20
# Per flooding connection, a sidecar's RSS grew by 2-8 MB before the bound; with it, by
# 450-600 KB on the app's sidecar (of which the stream's credit, 256 KiB, arrives whatever
# the sidecar reads: held as it came) and ~200 KB on an HTTP upstream's.
BOUND_PER_CONNECTION = 1024 * 1024
CLIENTS = pytest.mark.parametrize("client", ["fl-l4", "fl-http"])
Flood = tuple[RawApp, dict[str, tuple[str, int]], dict[str, ProxyProc]]


@pytest.fixture(scope="module")
def flood(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flood]:
    """The raw app behind an HTTP sidecar, two clients of it allowed only under /public,
    and each sidecar by name (`flood`, `fl-l4`, `fl-http`)."""
    tmp: Path = tmp_path_factory.mktemp("flood")
    app, agent = RawApp(), mesh.agent
    inbound = free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": "flood", "ID": "flood", "Port": app.port, "Address": "127.0.0.1",
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Config": {"protocol": "http"}}}}})  # fmt: skip
    addresses: dict[str, tuple[str, int]] = {}
    proxies = {"flood": sidecar(agent, tmp, "flood")}
    for name, config in (("fl-l4", {}), ("fl-http", {"protocol": "http"})):
        port = free_port("127.0.0.1")
        up = {"DestinationName": "flood", "LocalBindPort": port, "Config": config}
        agent.put(
            "/v1/agent/service/register",
            web_body(agent, free_port(agent.ip), [up]) | {"Name": name, "ID": name},
        )
        put_exact(agent, name, "flood", {"Permissions": [
            {"Action": "allow", "HTTP": {"PathPrefix": "/public"}}]})  # fmt: skip
        proxies[name] = proxy = sidecar(agent, tmp, name)
        wait_listening("127.0.0.1", port, proxy)
        addresses[name] = ("127.0.0.1", port)
    try:
        wait_listening(agent.ip, inbound, proxies["flood"])
        eventually(lambda: healthy_sidecars(agent, "flood") == 1, 30, what="flood passing")
        for address in addresses.values():
            eventually(lambda a=address: _ask(a, b"GET /admin HTTP/1.1\r\nHost: s\r\n\r\n")
                       .startswith(b"HTTP/1.1 403"), 20, what="the L7 permissions")  # fmt: skip
        yield app, addresses, proxies
    finally:
        for proxy in proxies.values():
            assert proxy.stop() == 0
        for name in ("flood", "fl-l4", "fl-http"):
            agent.put(f"/v1/agent/service/deregister/{name}", None)
        app.stop()


def _rss(proxy: ProxyProc) -> int:
    assert proxy.proc is not None
    status = Path(f"/proc/{proxy.proc.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def _flood(sockets: list[socket.socket], request: bytes) -> int:
    """Write tiny requests on every connection, reading nothing, until none of them takes
    more for a second; the bytes taken."""
    batch, sent = request * 4000, 0
    for s in sockets:
        s.setblocking(False)
    while True:
        writable = select.select([], sockets, [], 1.0)[1]
        if not writable:
            return sent
        for s in writable:
            with contextlib.suppress(BlockingIOError):
                sent += s.send(batch)


@CLIENTS
@pytest.mark.parametrize("path", [b"/admin", b"/public/x"], ids=["denied", "allowed"])
def test_a_pipelining_flood_costs_each_sidecar_a_bounded_memory(
    flood: Flood, client: str, path: bytes
) -> None:
    """`CONNECTIONS` clients pipeline tiny requests and read no answer: the sidecars that
    parse them (the app's; with an HTTP upstream, the client's too) grow by at most
    `BOUND_PER_CONNECTION` each (once, a 256 KiB read was parsed whole, every request in
    it kept as an exchange: megabytes a connection), and serve another client on."""
    _, addresses, proxies = flood
    request = b"GET " + path + b" HTTP/1.1\r\nHost: db\r\n\r\n"
    watched = [proxies["flood"]] + ([proxies[client]] if client == "fl-http" else [])
    assert _ask(addresses[client], request).startswith(b"HTTP/1.1 ")  # warm: the pools made
    before = [_rss(proxy) for proxy in watched]
    sockets = [socket.create_connection(addresses[client], timeout=10)
               for _ in range(CONNECTIONS)]  # fmt: skip
    try:
        sent = _flood(sockets, request)
        assert sent > CONNECTIONS * 256 * 1024, f"only {sent} bytes taken"
        grown = [_rss(proxy) - was for proxy, was in zip(watched, before, strict=True)]
        other = _ask(addresses[client], b"GET /public/other HTTP/1.1\r\nHost: s\r\n\r\n")
        assert other.startswith(b"HTTP/1.1 200 "), other
    finally:
        for s in sockets:
            s.close()
    for proxy, growth in zip(watched, grown, strict=True):
        assert growth < CONNECTIONS * BOUND_PER_CONNECTION, (
            f"{proxy.args[1]} grew by {growth / 1e6:.1f} MB for {CONNECTIONS} connections"
        )


@CLIENTS
def test_thousands_of_pipelined_requests_are_all_answered_in_order(
    flood: Flood, client: str
) -> None:
    """An honest pipelining client, which reads its answers while it writes: every request is
    answered, in order, however far ahead of the answers it writes."""
    count = 3000
    requests = b"".join(b"GET /public/p%d HTTP/1.1\r\nHost: s\r\n\r\n" % i for i in range(count))
    with socket.create_connection(flood[1][client], timeout=30) as s:
        writer = threading.Thread(target=s.sendall, args=(requests,), daemon=True)
        writer.start()
        got = b""
        while _whole(got) < count:
            chunk = s.recv(1 << 20)
            assert chunk, f"closed after {_whole(got)} answers"
            got += chunk
        writer.join(10)
    lines = [answer.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[0]
             for answer in got.split(b"HTTP/1.1 ")[1:]]  # fmt: skip
    assert lines == [b"GET /public/p%d HTTP/1.1" % i for i in range(count)]
