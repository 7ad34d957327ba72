"""`connect proxy --node` walked through as an operator would, against a real agent.

Two sidecars of one node proxy given the same port (two upstreams with one
`LocalBindPort`): the one served first keeps it and serves on; the other is
refused with one line naming both, and is served once the port is free. With
`--workers 2` every worker makes the same choice, so the port goes out as one
identity only (before, each worker gave it to whichever sidecar warmed first,
and some of web's clients went out as x, whom db denies). The pure check
(node_ports.py) has a table test.
"""

from __future__ import annotations

import signal
import socket
import urllib.error
from pathlib import Path

import pytest

from gossamer.proxy.config import ProxyConfig, Upstream
from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_registration import check_keys
from gossamer.proxy.node_ports import clash
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    listening,
    refused,
    roundtrip,
    series,
    set_intention,
    wait_listening,
)


def register(agent: AgentProc, name: str, app_port: int, inbound: int,
             upstreams: list[dict[str, object]]) -> None:  # fmt: skip
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": app_port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Upstreams": upstreams}}},
    })  # fmt: skip


def _config(*upstreams: tuple[str, str, int], port: int = 0, metrics: str = "") -> ProxyConfig:
    return ProxyConfig(service="s", bind_address="10.0.0.1", bind_port=port,
                       local_port=1 if port else 0, metrics_addr=metrics,
                       upstreams=tuple(Upstream(name=n, bind_address=a, bind_port=p)
                                       for n, a, p in upstreams))  # fmt: skip


@pytest.mark.parametrize(("mine", "theirs", "words"), [
    (_config(("db", "127.0.0.1", 9191)), _config(("db", "127.0.0.1", 9191)),
     "its upstream 'db' on 127.0.0.1:9191 clashes with sidecar web-sidecar-proxy's "
     "upstream 'db' on 127.0.0.1:9191"),
    (_config(("db", "127.0.0.2", 9191)), _config(("db", "127.0.0.1", 9191)), None),
    (_config(("db", "0.0.0.0", 9191)), _config(("cache", "127.0.0.1", 9191)),
     "its upstream 'db' on 0.0.0.0:9191 clashes with sidecar web-sidecar-proxy's upstream "
     "'cache'"),
    (_config(("db", "10.0.0.1", 21000)), _config(port=21000),
     "clashes with sidecar web-sidecar-proxy's inbound listener on 10.0.0.1:21000"),
    (_config(port=21000), _config(("db", "127.0.0.1", 21000)), None),  # (not 10.0.0.1)
    (_config(metrics="[::1]:9102"), _config(("db", "::", 9102)),
     "its metrics listener on [::1]:9102 clashes"),
    (_config(("db", "127.0.0.1", 9102)), _config(metrics="127.0.0.1:9102"),
     "sidecar web-sidecar-proxy's metrics listener on 127.0.0.1:9102"),
])  # fmt: skip
def test_a_port_another_sidecar_serves_is_named_with_both(
    mine: ProxyConfig, theirs: ProxyConfig, words: str | None
) -> None:
    found = clash(mine, [("web-sidecar-proxy", theirs)])
    assert (found is None) if words is None else (found is not None and words in found)


def test_two_sidecars_given_one_upstream_port(cluster: Cluster, tmp_path: Path) -> None:
    (agent,) = cluster.start(1, prefix="wp")
    app = App("127.0.0.1").start()
    db_in, web_in, x_in = (free_port(agent.ip) for _ in range(3))
    up = free_port("127.0.0.1")
    register(agent, "db", app.port, db_in, [])
    register(agent, "web", app.port, web_in, [{"DestinationName": "db", "LocalBindPort": up}])
    set_intention(agent, "web", "db", "allow")
    node = ProxyProc(["--node", "--http-addr", agent.http], tmp_path / "node.log").start()
    try:
        wait_listening("127.0.0.1", up, node)
        eventually(lambda: roundtrip(("127.0.0.1", up), b"a") == b"a<eof>", 20,
                   what="web -> db")  # fmt: skip
        register(agent, "x", app.port, x_in, [{"DestinationName": "db", "LocalBindPort": up}])
        said = (
            f"sidecar x-sidecar-proxy cannot be served: its upstream 'db' on 127.0.0.1:{up} "
            f"clashes with sidecar web-sidecar-proxy's upstream 'db' on 127.0.0.1:{up}"
        )
        eventually(lambda: said in node.log(), 10,
                   what=f"the clash named; log:\n{node.log()[-2000:]}")  # fmt: skip
        assert roundtrip(("127.0.0.1", up), b"b") == b"b<eof>"  # web keeps it
        assert not listening(agent.ip, x_in)  # x is not half served
        agent.put("/v1/agent/service/deregister/web")
        wait_listening(agent.ip, x_in, node)  # the port free, x is served
        set_intention(agent, "x", "db", "allow")
        eventually(lambda: roundtrip(("127.0.0.1", up), b"c") == b"c<eof>", 20,
                   what="x -> db on the port web had")  # fmt: skip
        assert node.log().count(said) == 1  # logged once
    finally:
        node.stop()
        app.stop()


def test_workers_give_a_contested_port_to_the_same_sidecar(
    cluster: Cluster, tmp_path: Path
) -> None:
    (agent,) = cluster.start(1, prefix="wq")
    app = App("127.0.0.1").start()
    db_in, web_in, x_in = (free_port(agent.ip) for _ in range(3))
    up = free_port("127.0.0.1")
    register(agent, "db", app.port, db_in, [])
    register(agent, "x", app.port, x_in, [{"DestinationName": "db", "LocalBindPort": up}])
    register(agent, "web", app.port, web_in, [{"DestinationName": "db", "LocalBindPort": up}])
    set_intention(agent, "web", "db", "allow")
    set_intention(agent, "x", "db", "deny")
    node = ProxyProc(["--node", "--http-addr", agent.http, "--workers", "2"],
                     tmp_path / "node.log").start()  # fmt: skip
    try:
        wait_listening(agent.ip, db_in, node)
        eventually(lambda: all(f"[worker {w}] proxy: serving sidecar web" in node.log()
                               for w in (0, 1)), 20, what="both workers serving web")  # fmt: skip
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        # (each worker hears of db's instance by a watch of its own: 8 in a row reach both)
        eventually(lambda: all(roundtrip(("127.0.0.1", up), b"a") == b"a<eof>" for _ in range(8)),
                   20, what="web -> db through both workers")  # fmt: skip
        for i in range(40):  # spread over both workers: each one's listener is web's
            assert roundtrip(("127.0.0.1", up), b"%d" % i) == b"%d<eof>" % i
        assert "[worker 1] proxy: sidecar x-sidecar-proxy cannot be served" in node.log()
    finally:
        node.stop()
        app.stop()


def test_each_sidecars_lines_name_it_and_intentions_are_its_own(
    cluster: Cluster, tmp_path: Path
) -> None:
    """web and api both call db, web is denied cache, all through one node proxy: each line
    of a sidecar's work says whose it is (before, "upstream db listening on ...", "draining 1
    open connection(s)" and one "SIGHUP: ..." per sidecar named none); api deregistered with
    a connection open has it cut after the drain timeout, web's stays; each destination's
    metrics count its own callers."""
    (agent,) = cluster.start(1, prefix="wl")
    app = App("127.0.0.1").start()
    db_in, cache_in, web_in, api_in = (free_port(agent.ip) for _ in range(4))
    web_db, web_cache, api_db, metrics = (free_port("127.0.0.1") for _ in range(4))
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": app.port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip, "Proxy": {
            "Config": {"gossamer_metrics_bind_addr": f"127.0.0.1:{metrics}"}}}},
    })  # fmt: skip
    register(agent, "cache", app.port, cache_in, [])
    register(agent, "web", app.port, web_in, [{"DestinationName": "db", "LocalBindPort": web_db},
                                              {"DestinationName": "cache",
                                               "LocalBindPort": web_cache}])  # fmt: skip
    register(agent, "api", app.port, api_in, [{"DestinationName": "db", "LocalBindPort": api_db}])
    set_intention(agent, "web", "db", "allow")
    set_intention(agent, "api", "db", "allow")
    set_intention(agent, "web", "cache", "deny")
    node = ProxyProc(["--node", "--http-addr", agent.http, "--drain-timeout", "1"],
                     tmp_path / "node.log").start()  # fmt: skip
    try:
        for port in (web_db, web_cache, api_db):
            wait_listening("127.0.0.1", port, node)
        eventually(lambda: healthy_sidecars(agent, "cache") == 1, 30, what="cache passing")
        for port in (web_db, api_db):
            eventually(lambda p=port: roundtrip(("127.0.0.1", p), b"a") == b"a<eof>", 20,
                       what=f"a round trip through 127.0.0.1:{port}")  # fmt: skip
        assert refused(("127.0.0.1", web_cache), b"x")  # web -> cache denied, db allowed
        log = node.log()
        assert f"[web-sidecar-proxy] proxy: upstream db listening on 127.0.0.1:{web_db}" in log
        assert f"[api-sidecar-proxy] proxy: upstream db listening on 127.0.0.1:{api_db}" in log
        assert series(f"127.0.0.1:{metrics}", "gossamer_proxy_tcp_open_total",
                      source="web", destination="db") >= 1  # fmt: skip
        assert series(f"127.0.0.1:{metrics}", "gossamer_proxy_tcp_open_total",
                      source="api", destination="db") >= 1  # fmt: skip
        with socket.create_connection(("127.0.0.1", web_db), 10) as kept, \
             socket.create_connection(("127.0.0.1", api_db), 10) as cut:  # fmt: skip
            for conn in (kept, cut):
                conn.sendall(b"1")
                assert conn.recv(10) == b"1"
            agent.put("/v1/agent/service/deregister/api")
            assert cut.recv(10) == b""  # cut once api's drain timeout (1 s) is out
            kept.sendall(b"2")
            assert kept.recv(10) == b"2"  # web's untouched
        eventually(lambda: "[api-sidecar-proxy] proxy: drain timeout: cutting" in node.log(), 10,
                   what="api's drain logged as api's")  # fmt: skip
        assert not listening("127.0.0.1", api_db)
        node.signal(signal.SIGHUP)
        for name in ("db", "web", "cache"):
            line = f"[{name}-sidecar-proxy] proxy: SIGHUP: reading"
            eventually(lambda line=line: line in node.log(), 10, what=line)
        node.signal(signal.SIGTERM)
        assert node.proc is not None and node.proc.wait(20) == 0
        assert "[web-sidecar-proxy] proxy: counters for web" in node.log()
    finally:
        node.stop()
        app.stop()


@pytest.mark.parametrize(("proxy", "words"), [
    ({"Config": "nope"}, "Proxy.Config: must be an object, got str"),
    ({"Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191, "Config": ["x"]}]},
     "Proxy.Upstreams[0].Config: must be an object, got list"),
])  # fmt: skip
def test_a_proxy_config_that_is_not_an_object_is_refused_at_registration(
    proxy: dict[str, object], words: str
) -> None:
    """As Consul refuses it (its Config is a map): accepted, the sidecar was refused later by
    its proxy ("cannot be served", or exit 2), far from whoever registered it."""
    with pytest.raises(ConfigError) as refusal:
        check_keys(proxy, "Proxy")
    assert str(refusal.value) == words
    check_keys({"Config": {}, "Upstreams": [{"Config": {}}]}, "Proxy")  # (empty: fine)


def test_a_sidecar_that_cannot_be_served_is_named_with_why(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A sidecar whose inbound port another program holds: the node's line says which port
    and why (before: "[Errno 98] Address already in use", no address), the others serve on,
    and it is served once the port is free. One whose Proxy.Config is not an object is
    refused by the agent, naming the key."""
    (agent,) = cluster.start(1, prefix="wc")
    app = App("127.0.0.1").start()
    db_in, x_in, y_in = (free_port(agent.ip) for _ in range(3))
    register(agent, "db", app.port, db_in, [])
    node = ProxyProc(["--node", "--http-addr", agent.http], tmp_path / "node.log").start()
    try:
        wait_listening(agent.ip, db_in, node)
        with socket.create_server((agent.ip, x_in)):
            register(agent, "x", app.port, x_in, [])
            said = (f"sidecar x-sidecar-proxy cannot be served: inbound {agent.ip}:{x_in}: "
                    "address already in use; trying again in 5 s")  # fmt: skip
            eventually(lambda: said in node.log(), 10, what=f"{said}; {node.log()[-2000:]}")
        wait_listening(agent.ip, x_in, node, timeout=20)
        with pytest.raises(urllib.error.HTTPError) as refusal:
            agent.put("/v1/agent/service/register", {
                "Name": "y", "ID": "y", "Port": app.port, "Address": agent.ip,
                "Connect": {"SidecarService": {"Port": y_in, "Proxy": {"Config": "nope"}}},
            })  # fmt: skip
        assert refusal.value.code == 400
        assert b"Connect.SidecarService.Proxy.Config: must be an object" in refusal.value.read()
        # one the agent takes but the proxy cannot serve: said each time it is registered
        elsewhere = [{"DestinationName": "db", "LocalBindPort": free_port("127.0.0.1"),
                      "Datacenter": "dc9"}]  # fmt: skip
        refused_y = "sidecar y-sidecar-proxy cannot be served: Proxy.Upstreams[0].Datacenter"
        register(agent, "y", app.port, y_in, elsewhere)
        eventually(lambda: refused_y in node.log(), 10, what="y refused")
        agent.put("/v1/agent/service/deregister/y")
        register(agent, "z", app.port, free_port(agent.ip), [])  # (seen: so is y's going)
        eventually(lambda: "serving sidecar z-sidecar-proxy" in node.log(), 20, what="z served")
        register(agent, "y", app.port, y_in, elsewhere)  # (before: not said again)
        eventually(lambda: node.log().count(refused_y) == 2, 10, what="y refused once more")
        assert listening(agent.ip, db_in)
    finally:
        node.stop()
        app.stop()


def test_the_agent_restarted_under_a_node_proxy(cluster: Cluster, tmp_path: Path) -> None:
    """The agent restarts (same data dir): the node proxy keeps its sidecars and their open
    connections (none drained as if deregistered), hears the agent again, and serves a
    sidecar registered after the restart."""
    (agent,) = cluster.start(1, prefix="wr")
    app = App("127.0.0.1").start()
    db_in, web_in, api_in = (free_port(agent.ip) for _ in range(3))
    web_db, api_db = free_port("127.0.0.1"), free_port("127.0.0.1")
    register(agent, "db", app.port, db_in, [])
    register(agent, "web", app.port, web_in, [{"DestinationName": "db", "LocalBindPort": web_db}])
    set_intention(agent, "web", "db", "allow")
    set_intention(agent, "api", "db", "allow")
    node = ProxyProc(["--node", "--http-addr", agent.http], tmp_path / "node.log").start()
    try:
        wait_listening("127.0.0.1", web_db, node)
        eventually(lambda: roundtrip(("127.0.0.1", web_db), b"a") == b"a<eof>", 20,
                   what="web -> db")  # fmt: skip
        with socket.create_connection(("127.0.0.1", web_db), 10) as kept:
            kept.sendall(b"1")
            assert kept.recv(10) == b"1"
            agent.stop()
            agent.start()
            kept.sendall(b"2")
            assert kept.recv(10) == b"2"
        register(
            agent, "api", app.port, api_in, [{"DestinationName": "db", "LocalBindPort": api_db}]
        )
        wait_listening("127.0.0.1", api_db, node)
        eventually(lambda: roundtrip(("127.0.0.1", api_db), b"b") == b"b<eof>", 20,
                   what="api -> db, registered after the restart")  # fmt: skip
        assert roundtrip(("127.0.0.1", web_db), b"c") == b"c<eof>"
        assert "deregistered" not in node.log()
        assert node.log().count("serving sidecar web-sidecar-proxy") == 1
    finally:
        node.stop()
        app.stop()
