"""What a proxy trusts changes while connections are open: the default policy, revocations.

Two real agents (`lt1` holds `web`, `lt2` holds `db`), each with a real
sidecar process; every byte goes client -> web's sidecar -> mTLS -> db's
sidecar -> db's app. No intention names web and db, so the agents' default
policy decides. The tests run in order: the default is flipped by reloading
`lt2`'s config (db's sidecar decides inbound), then `lt1`, which issued
web's leaf, is revoked. Convergence is polled with deadlines, never slept for.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    read_all,
    roundtrip,
    sidecar,
    wait_listening,
    web_body,
)


@dataclass
class Pair:
    web_agent: AgentProc
    db_agent: AgentProc
    web_proxy: ProxyProc
    db_proxy: ProxyProc
    upstream: tuple[str, int]
    config: Path


def write_default(config: Path, policy: str) -> None:
    config.write_text(f"intentions: {{default_policy: {policy}}}\n")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("live-trust")
    c = Cluster(tmp)
    config = tmp / "agent.yaml"
    write_default(config, "allow")
    apps: list[App] = []
    proxies: list[ProxyProc] = []
    try:
        web_agent, db_agent = c.start(2, prefix="lt", extra=("--config-file", str(config)))
        apps.append(db_app := App("127.0.0.1").start())
        db_in, web_in, up_port = (free_port(db_agent.ip), free_port(web_agent.ip),
                                  free_port("127.0.0.1"))  # fmt: skip
        db_agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": db_app.port, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": db_in, "Address": db_agent.ip}},
        })  # fmt: skip
        upstreams: list[dict[str, object]] = [{"DestinationName": "db", "LocalBindPort": up_port}]
        web_agent.put("/v1/agent/service/register", web_body(web_agent, web_in, upstreams))
        proxies += [db_proxy := sidecar(db_agent, tmp, "db"),
                    web_proxy := sidecar(web_agent, tmp, "web")]  # fmt: skip
        wait_listening(db_agent.ip, db_in, db_proxy)
        wait_listening("127.0.0.1", up_port, web_proxy)
        eventually(lambda: healthy_sidecars(web_agent, "db") == 1, 30,
                   what="db's sidecar passing, seen from web's agent")  # fmt: skip
        yield Pair(web_agent, db_agent, web_proxy, db_proxy, ("127.0.0.1", up_port), config)
    finally:
        for proxy in proxies:
            proxy.stop()
        for app in apps:
            app.stop()
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def through(pair: Pair, payload: bytes) -> bytes:
    def attempt() -> bytes:
        got = roundtrip(pair.upstream, payload)
        assert got, "closed without an answer"
        return got

    return eventually(attempt, 20, what="a round trip through both sidecars")


def refused(pair: Pair) -> bool:
    return roundtrip(pair.upstream, b"x") == b""


def cut_within(conn: socket.socket, seconds: float) -> None:
    """The open connection is closed by the proxy (no answer) within `seconds`."""
    started = time.monotonic()
    conn.settimeout(5)
    assert read_all(conn) == b""
    assert time.monotonic() - started < seconds


def open_connection(pair: Pair) -> socket.socket:
    conn = socket.create_connection(pair.upstream, timeout=10)
    conn.sendall(b"first")
    assert conn.recv(100) == b"first"
    return conn


def test_a_reloaded_default_policy_cuts_open_connections_and_refuses_new_ones(pair: Pair) -> None:
    assert through(pair, b"ping") == b"ping<eof>"  # no intention: the default (allow) lets it in
    with open_connection(pair) as conn:
        write_default(pair.config, "deny")
        pair.db_agent.put("/v1/agent/reload")
        cut_within(conn, 1.5)
    log = pair.db_proxy.log()
    assert "the agent's default intention policy is now deny" in log
    cut = "connection terminated due to policy change: web -> db (no intention matched; default"
    assert cut + " policy is deny)" in log
    eventually(lambda: refused(pair), 5, what="new connections refused under the new default")
    write_default(pair.config, "allow")
    pair.db_agent.signal(signal.SIGHUP)  # the other way to reload
    assert through(pair, b"again") == b"again<eof>"
