"""The sidecar proxy with a real agent, real proxy processes, real TLS and real apps.

One agent (default policy deny) holds `web` and `db`, each with a sidecar
registration; `web`'s sidecar has the upstream `db` on a local port. Every
byte goes app client -> web's proxy (plain) -> mTLS -> db's proxy -> db's
app and back. Convergence is polled with deadlines, never slept for.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import App, ProxyProc, read_all, roundtrip, sidecar, wait_listening


@dataclass
class Mesh:
    agent: AgentProc
    db_app: App
    web_proxy: ProxyProc
    db_proxy: ProxyProc
    upstream: tuple[str, int]
    tmp: Path


def set_intention(agent: AgentProc, source: str, destination: str, action: str) -> None:
    agent.put(f"/v1/connect/intentions/exact?source={source}&destination={destination}",
              {"Action": action})  # fmt: skip


def register_pair(agent: AgentProc, db_port: int, up_port: int) -> tuple[int, int]:
    db_in, web_in = free_port(agent.ip), free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": db_port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip}},
    })  # fmt: skip
    agent.put("/v1/agent/service/register", {
        "Name": "web", "ID": "web", "Port": 1, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": web_in, "Address": agent.ip, "Proxy": {
            "Upstreams": [{"DestinationName": "db", "LocalBindPort": up_port}]}}},
    })  # fmt: skip
    return db_in, web_in


def healthy_sidecars(agent: AgentProc, name: str) -> int:
    return len(agent.get(f"/v1/health/connect/{name}?passing"))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("proxy")
    c = Cluster(tmp)
    apps: list[App] = []
    proxies: list[ProxyProc] = []
    try:
        (agent,) = c.start(1, prefix="px")
        apps.append(db_app := App("127.0.0.1").start())  # the sidecar's default local address
        up_port = free_port("127.0.0.1")
        db_in, _ = register_pair(agent, db_app.port, up_port)
        set_intention(agent, "web", "db", "allow")
        proxies += [db_proxy := sidecar(agent, tmp, "db"), web_proxy := sidecar(agent, tmp, "web")]
        wait_listening(agent.ip, db_in, db_proxy)
        wait_listening("127.0.0.1", up_port, web_proxy)
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        yield Mesh(agent, db_app, web_proxy, db_proxy, ("127.0.0.1", up_port), tmp)
    finally:
        for proxy in proxies:
            proxy.stop()
        for app in apps:
            app.stop()
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def through(mesh: Mesh, payload: bytes) -> bytes:
    def attempt() -> bytes:
        got = roundtrip(mesh.upstream, payload)
        assert got, "closed without an answer"
        return got

    return eventually(attempt, 20, what="a round trip through both proxies")


def test_small_and_large_payloads_round_trip_intact_with_half_close(mesh: Mesh) -> None:
    assert through(mesh, b"ping") == b"ping<eof>"
    big = os.urandom(8 * 1024 * 1024 + 17)
    assert roundtrip(mesh.upstream, big, timeout=30) == big + b"<eof>"


def test_a_denied_pair_is_refused_then_allowed_then_cut_while_open(mesh: Mesh) -> None:
    through(mesh, b"warm")
    with socket.create_connection(mesh.upstream, timeout=10) as open_conn:
        open_conn.sendall(b"first")
        assert open_conn.recv(100) == b"first"
        set_intention(mesh.agent, "web", "db", "deny")
        started = time.monotonic()
        open_conn.settimeout(5)
        assert read_all(open_conn) == b""  # cut by the proxy, not answered
        assert time.monotonic() - started < 1.5
    assert "connection terminated due to policy change" in mesh.db_proxy.log()

    def refused() -> bool:
        return roundtrip(mesh.upstream, b"x") == b""

    eventually(refused, 5, what="new connections refused under deny")
    assert "denied by web => db (deny" in mesh.db_proxy.log()
    set_intention(mesh.agent, "web", "db", "allow")
    assert through(mesh, b"again") == b"again<eof>"
