"""What a proxy trusts changes while connections are open: the default policy, revocations.

Three real agents (`lt1` holds `web`, `lt2` holds `db`, `lt3` holds
`cache` and `api`, an HTTP service), each service with a real sidecar
process; web's sidecar has the upstreams db, cache and api (HTTP, pooled
mTLS connections), so every byte goes client -> web's sidecar -> mTLS ->
the other's sidecar -> the app. No intention names them, so the
agents' default policy decides. The tests run in order: the default is
flipped by reloading `lt2`'s config (db's sidecar decides inbound); `lt3`,
which issued cache's leaf, is revoked (web's sidecar refuses it outbound);
then `lt1`, which issued web's leaf (db's sidecar refuses it inbound).
Convergence is polled with deadlines, never slept for.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    read_all,
    refused,
    roundtrip,
    sidecar,
    stop_mesh,
    wait_listening,
    web_body,
)


@dataclass
class Pair:
    web_agent: AgentProc
    db_agent: AgentProc
    cache_agent: AgentProc
    web_proxy: ProxyProc
    db_proxy: ProxyProc
    upstream: tuple[str, int]  # web's local port to db
    cache_upstream: tuple[str, int]  # web's local port to cache
    api_upstream: tuple[str, int]  # web's local HTTP port to api
    config: Path


def write_default(config: Path, policy: str) -> None:
    config.write_text(f"intentions: {{default_policy: {policy}}}\n")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("live-trust")
    c = Cluster(tmp)
    config = tmp / "agent.yaml"
    write_default(config, "allow")
    apps: list[App | HttpApp] = []
    proxies: list[ProxyProc] = []
    try:
        agents = c.start(3, prefix="lt", extra=("--config-file", str(config)))
        web_agent, db_agent, cache_agent = agents
        apps += [app := App("127.0.0.1").start(), http_app := HttpApp().start()]
        services = (("db", db_agent, app.port, "tcp"), ("cache", cache_agent, app.port, "tcp"),
                    ("api", cache_agent, http_app.port, "http"))  # fmt: skip
        ports = {name: free_port("127.0.0.1") for name, *_ in services}
        for name, agent, app_port, protocol in services:
            port, config_of = free_port(agent.ip), {"protocol": protocol}
            agent.put("/v1/agent/service/register", {
                "Name": name, "ID": name, "Port": app_port, "Address": "127.0.0.1",
                "Connect": {"SidecarService": {"Port": port, "Address": agent.ip,
                                               "Proxy": {"Config": config_of}}},
            })  # fmt: skip
            proxies.append(proxy := sidecar(agent, tmp, name))
            wait_listening(agent.ip, port, proxy)
        upstreams: list[dict[str, object]] = [
            {"DestinationName": name, "LocalBindPort": ports[name], "Config": {"protocol": proto}}
            for name, _, _, proto in services
        ]
        web_agent.put("/v1/agent/service/register",
                      web_body(web_agent, free_port(web_agent.ip), upstreams))  # fmt: skip
        proxies.append(web_proxy := sidecar(web_agent, tmp, "web"))
        for name, port in ports.items():
            wait_listening("127.0.0.1", port, web_proxy)
            eventually(lambda n=name: healthy_sidecars(web_agent, n) == 1, 30,
                       what=f"{name}'s sidecar passing, seen from web's agent")  # fmt: skip
        local = {name: ("127.0.0.1", port) for name, port in ports.items()}
        yield Pair(web_agent, db_agent, cache_agent, web_proxy, proxies[0], local["db"],
                   local["cache"], local["api"], config)  # fmt: skip
    finally:
        leftovers = stop_mesh(c, proxies, apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def through(pair: Pair, payload: bytes, upstream: tuple[str, int] | None = None) -> bytes:
    def attempt() -> bytes:
        got = roundtrip(upstream or pair.upstream, payload)
        assert got, "closed without an answer"
        return got

    return eventually(attempt, 20, what="a round trip through both sidecars")


def cut_within(conn: socket.socket, seconds: float) -> None:
    """The open connection is closed by the proxy (no answer) within `seconds`: a FIN, or a
    reset where the shared connection under it was aborted (a revoked client's, 532180a)."""
    started = time.monotonic()
    conn.settimeout(5)
    with contextlib.suppress(ConnectionResetError):
        assert read_all(conn) == b""
    assert time.monotonic() - started < seconds


def open_connection(upstream: tuple[str, int]) -> socket.socket:
    conn = socket.create_connection(upstream, timeout=10)
    conn.sendall(b"first")
    assert conn.recv(100) == b"first"
    return conn


def test_a_reloaded_default_policy_cuts_open_connections_and_refuses_new_ones(pair: Pair) -> None:
    assert through(pair, b"ping") == b"ping<eof>"  # no intention: the default (allow) lets it in
    with open_connection(pair.upstream) as conn:
        write_default(pair.config, "deny")
        pair.db_agent.put("/v1/agent/reload")
        cut_within(conn, 1.5)
    log = pair.db_proxy.log()
    assert "the agent's default intention policy is now deny" in log
    cut = "connection terminated due to policy change: web -> db (no intention matched; default"
    assert cut + " policy is deny)" in log
    eventually(
        lambda: refused(pair.upstream, b"x"),
        5,
        what="new connections refused under the new default",
    )
    write_default(pair.config, "allow")
    pair.db_agent.signal(signal.SIGHUP)  # the other way to reload
    assert through(pair, b"again") == b"again<eof>"


def counter(proxy: ProxyProc, name: str) -> int:
    """A counter from the proxy's SIGUSR1 log line (the last one logged)."""
    proxy.signal(signal.SIGUSR1)
    pattern = re.compile(rf"counters for \w+: .*\b{re.escape(name)}=(\d+)")

    def logged() -> int:
        found = pattern.findall(proxy.log())
        assert found, f"{name} not logged yet"
        return int(found[-1])

    return eventually(logged, 5, what=f"{name} in the counters line")


def get(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path)
    answer = conn.getresponse()
    answer.read()
    return answer.status


def test_a_server_whose_agent_is_revoked_is_cut_and_refused_outbound(pair: Pair) -> None:
    assert through(pair, b"c", pair.cache_upstream) == b"c<eof>"
    api = http.client.HTTPConnection(*pair.api_upstream, timeout=10)
    eventually(lambda: get(api, "/echo") == 200, 20, what="api through web's sidecar")
    # web's sidecar now holds an idle pooled mTLS connection to api's sidecar
    with closing(api), open_connection(pair.cache_upstream) as conn:
        # web's agent revokes lt3: cache's and api's leaves (issued by lt3) are refused
        pair.web_agent.put(f"/v1/connect/ca/revoke-agent/{pair.cache_agent.name}")
        cut_within(conn, 1.5)
        log = pair.web_proxy.log()
        for name in ("cache", "api"):  # an L4 relay and an idle pooled HTTP connection
            assert f"upstream {name}: 1 connection(s) terminated, the server is no longer" in log
        assert get(api, "/echo") == 503  # the same client connection: no trusted instance
    assert refused(pair.cache_upstream, b"x")
    assert counter(pair.web_proxy, "outbound.attempt_failed.revoked") >= 2
    assert counter(pair.web_proxy, "outbound.terminated") == 2
    assert through(pair, b"db still", pair.upstream) == b"db still<eof>"  # others untouched


def test_revoking_the_agent_that_issued_a_leaf_cuts_and_refuses_its_connections(
    pair: Pair,
) -> None:
    assert through(pair, b"before") == b"before<eof>"
    with open_connection(pair.upstream) as conn:
        # db's agent revokes web's agent: web's leaf (issued by lt1's intermediate) is refused
        pair.db_agent.put(f"/v1/connect/ca/revoke-agent/{pair.web_agent.name}",
                          {"Reason": "test"})  # fmt: skip
        rows = pair.db_agent.get("/v1/connect/ca/revoked")
        (row,) = [r for r in rows if r["Node"] == pair.web_agent.name]
        assert row["IntermediateKeyID"].count(":") == 31  # a SHA-256 key id in colon hex
        cut_within(conn, 1.5)
    log = pair.db_proxy.log()
    assert "connection terminated, its client is no longer trusted (revoked): web -> db" in log
    eventually(lambda: refused(pair.upstream, b"x"), 5, what="new connections from web refused")
    assert counter(pair.db_proxy, "inbound.refused.revoked") >= 1
    assert counter(pair.db_proxy, "inbound.terminated") >= 1
