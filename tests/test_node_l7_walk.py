"""L7 through `connect proxy --node --workers 2`: one node proxy, two worker processes,
serving every sidecar of a real agent, each as its own process would.

The node's sidecars: `db` and `api` (http), `rpc` (grpc), `raw` (tcp),
`bad` (http, its app answers every request `503`), and two callers, `web`
(an upstream to each of them) and `ops` (an upstream to `bad`). Real apps
(aiohttp, grpcio, a TCP echo), real clients. What is walked:
- each service's requests are decided by its own L7 intentions, and a
  change to one service's applies to the next request on an open
  connection of that service only; each is timed by its own limits;
- each service's edges are counted under their own labels, summed over
  both workers on its own metrics port and by `gossamer stat`, and never
  go back while scraped under load;
- the retry budget is each caller sidecar's own (per upstream, per worker):
  `web` spending all of its on `bad` leaves `ops`'s whole;
- a service added to the node with protocol http is served by both
  workers while the others serve on, no request failing.
"""

from __future__ import annotations

import http.client
import json
import queue
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.harness.cli import cli_env
from tests.harness.cluster import AgentProc, Cluster, free_port, put_exact
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    read_all,
    refused,
    roundtrip,
    series,
    set_intention,
    wait_listening,
)

HTTP = ("db", "api", "bad")


@dataclass
class Node:
    agent: AgentProc
    proxy: ProxyProc
    up: dict[str, int]  # web's upstream ports (and "ops->bad": ops's)
    metrics: dict[str, str]  # each sidecar's metrics address
    apps: dict[str, HttpApp]
    tmp: Path
    stopped: list[Any] = field(default_factory=list)


def _register(agent: AgentProc, name: str, port: int, protocol: str, metrics: str,
              upstreams: list[dict[str, object]] | None = None,
              **config: object) -> None:  # fmt: skip
    proxy: dict[str, object] = {
        "Config": {"protocol": protocol, "gossamer_metrics_bind_addr": metrics, **config},
        "Upstreams": upstreams or [],
    }
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": free_port(agent.ip), "Address": agent.ip,
                                       "Proxy": proxy}},
    })  # fmt: skip


def _unary(request: bytes, context: Any) -> bytes:
    return b"unary:" + request


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("node-l7")
    cluster = Cluster(tmp)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("echo.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
    })])  # fmt: skip
    rpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    apps = {"db": HttpApp().start(), "api": HttpApp().start(), "bad": HttpApp(status=503).start()}
    raw = App("127.0.0.1").start()
    proxy = None
    try:
        (agent,) = cluster.start(1, prefix="nl7")
        eventually(agent.enrolled, 20, what="the agent's certificate")
        ports = {**{n: a.port for n, a in apps.items()}, "rpc": rpc_port, "raw": raw.port}
        protocols = {"db": "http", "api": "http", "bad": "http", "rpc": "grpc", "raw": "tcp"}
        metrics = {n: f"127.0.0.1:{free_port('127.0.0.1')}" for n in (*ports, "web", "ops")}
        up = {n: free_port("127.0.0.1") for n in ports}
        for name, protocol in protocols.items():
            timeout = {"local_request_timeout_ms": 600} if name == "db" else {}
            _register(agent, name, ports[name], protocol, metrics[name], **timeout)
            set_intention(agent, "web", name, "allow")
        _register(agent, "web", 1, "tcp", metrics["web"], [
            {"DestinationName": n, "LocalBindPort": up[n], "Config": {"protocol": p}}
            for n, p in protocols.items()])  # fmt: skip
        up["ops->bad"] = free_port("127.0.0.1")
        _register(agent, "ops", 1, "tcp", metrics["ops"], [
            {"DestinationName": "bad", "LocalBindPort": up["ops->bad"],
             "Config": {"protocol": "http"}}])  # fmt: skip
        set_intention(agent, "ops", "bad", "allow")
        proxy = ProxyProc(["--node", "--http-addr", agent.http, "--workers", "2"],
                          tmp / "node.log").start()  # fmt: skip
        for port in up.values():
            wait_listening("127.0.0.1", port, proxy)
        eventually(lambda: all(f"[worker {w}] proxy: serving sidecar ops-sidecar-proxy"
                               in proxy.log() for w in (0, 1)), 20,
                   what="both workers serving every sidecar")  # fmt: skip
        for name in protocols:
            eventually(lambda n=name: healthy_sidecars(agent, n) == 1, 30,
                       what=f"{name}'s sidecar passing")  # fmt: skip
        # Each worker learns each upstream's instances on its own: warm until a run of new
        # connections (spread over both) all get through, so that the tests count from here.
        for name, through in _probes(up, apps, rpc_port).items():
            eventually(lambda t=through: all(t() for _ in range(8)), 30,
                       what=f"{name} through both workers")  # fmt: skip
        n = Node(agent, proxy, up, metrics, apps, tmp)
        yield n
        for s in n.stopped:
            s.stop()
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop(0)
        raw.stop()
        for app in apps.values():
            app.stop()
        leftovers = cluster.close()
    assert not leftovers, f"processes left behind: {leftovers}"
    log = proxy.log()
    assert "Traceback" not in log, log[-3000:]


def _probes(up: dict[str, int], apps: dict[str, HttpApp], rpc_port: int) -> dict[str, Any]:
    """One request through each upstream on a new connection: whether it reached the app."""

    def reached(port: int, app: HttpApp, status: int) -> bool:
        seen = len(app.seen)
        return _status(port, "/echo/probe") == status and len(app.seen) > seen

    def rpc() -> bool:
        with grpc.insecure_channel(f"127.0.0.1:{up['rpc']}") as channel:
            return _unary_call(channel, b"probe") == b"unary:probe"

    return {
        "db": lambda: reached(up["db"], apps["db"], 200),
        "api": lambda: reached(up["api"], apps["api"], 200),
        "bad": lambda: reached(up["bad"], apps["bad"], 503),
        "ops->bad": lambda: reached(up["ops->bad"], apps["bad"], 503),
        "raw": lambda: roundtrip(("127.0.0.1", up["raw"]), b"p") == b"p<eof>",
        "rpc": rpc,
    }


def _get(conn: http.client.HTTPConnection, path: str) -> int:
    """GET `path` on `conn` (kept open): the answer's status."""
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status


def _status(port: int, path: str) -> int:
    """GET `path` on a connection of its own."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return _get(conn, path)
    finally:
        conn.close()


def _rules(*perms: tuple[str, str, str]) -> dict[str, object]:
    return {"Permissions": [{"Action": a, "HTTP": {k: v}} for a, k, v in perms]}


def _unary_call(channel: grpc.Channel, message: bytes) -> object:
    """The answer, or the status code of a failed call."""
    try:
        return channel.unary_unary("/echo.Echo/Unary")(message, timeout=5)
    except grpc.RpcError as error:
        return error.code()


def test_each_service_is_decided_by_its_own_rules_on_open_connections(node: Node) -> None:
    up, agent = node.up, node.agent
    put_exact(agent, "web", "db", _rules(("allow", "PathPrefix", "/echo/db"),
                                         ("deny", "PathPrefix", "/")))  # fmt: skip
    put_exact(agent, "web", "api", _rules(("allow", "PathPrefix", "/echo/api"),
                                          ("deny", "PathPrefix", "/")))  # fmt: skip
    put_exact(agent, "web", "rpc", _rules(("allow", "PathExact", "/echo.Echo/Unary"),
                                          ("deny", "PathPrefix", "/")))  # fmt: skip
    set_intention(agent, "web", "raw", "allow")
    eventually(lambda: _status(up["db"], "/echo/api") == 403 == _status(up["api"], "/echo/db"),
               10, what="both rules applied")  # fmt: skip
    # Keep-alive connections, the kernel placing each on one worker or the other.
    db = [http.client.HTTPConnection("127.0.0.1", up["db"], timeout=10) for _ in range(4)]
    api = [http.client.HTTPConnection("127.0.0.1", up["api"], timeout=10) for _ in range(4)]
    with grpc.insecure_channel(f"127.0.0.1:{up['rpc']}") as channel, \
         socket.create_connection(("127.0.0.1", up["raw"]), 10) as raw:  # fmt: skip
        for c in db:
            assert (_get(c, "/echo/db/1"), _get(c, "/echo/api/1")) == (200, 403)
        for c in api:
            assert (_get(c, "/echo/api/1"), _get(c, "/echo/db/1")) == (200, 403)
        assert _unary_call(channel, b"a") == b"unary:a"
        raw.sendall(b"r1")
        assert raw.recv(10) == b"r1"

        # db's rule turned around: the next request on each open db connection is judged
        # by it, in both workers; api, rpc and raw go on as they were.
        put_exact(agent, "web", "db", _rules(("deny", "PathPrefix", "/echo/db"),
                                             ("allow", "PathPrefix", "/")))  # fmt: skip
        for c in db:
            eventually(lambda c=c: _get(c, "/echo/db/2") == 403, 10,
                       what="db's new rule on an open connection")  # fmt: skip
            assert _get(c, "/echo/api/2") == 200
        for c in api:
            assert (_get(c, "/echo/api/2"), _get(c, "/echo/db/2")) == (200, 403)
        assert _unary_call(channel, b"b") == b"unary:b"
        raw.sendall(b"r2")
        assert raw.recv(10) == b"r2"

        # rpc's: its next call on the open channel is denied; db's stay as just set.
        put_exact(agent, "web", "rpc", _rules(("deny", "PathExact", "/echo.Echo/Unary"),
                                              ("allow", "PathPrefix", "/")))  # fmt: skip
        eventually(lambda: _unary_call(channel, b"c") == grpc.StatusCode.PERMISSION_DENIED, 10,
                   what="rpc's new rule on the open channel")  # fmt: skip
        for c in db:
            assert (_get(c, "/echo/db/3"), _get(c, "/echo/api/3")) == (403, 200)
        for c in api:
            assert _get(c, "/echo/api/3") == 200
        raw.sendall(b"r3")
        assert raw.recv(10) == b"r3"
    # raw speaks tcp: L7 permissions cannot be judged there, so they deny it (as Consul's
    # Envoy does); the http services go on
    put_exact(agent, "web", "raw", _rules(("allow", "PathPrefix", "/")))
    eventually(lambda: refused(("127.0.0.1", up["raw"]), b"x"), 10, what="raw denied")
    for c in db:
        assert _get(c, "/echo/api/4") == 200
    for c in (*db, *api):
        c.close()
    for name in ("db", "api", "rpc", "raw"):
        set_intention(agent, "web", name, "allow")


def test_each_service_is_timed_by_its_own_limits(node: Node) -> None:
    """db's sidecar gives its app 600 ms (`local_request_timeout_ms`), api's the default 15 s:
    the same slow request is cut on db alone."""
    for name in ("db", "api"):
        set_intention(node.agent, "web", name, "allow")
    eventually(lambda: _status(node.up["api"], "/echo/x") == 200, 10, what="allowed")
    assert _status(node.up["db"], "/sleep/1200") == 504
    assert _status(node.up["api"], "/sleep/1200") == 200


def _scrape(addr: str) -> dict[str, float]:
    """Every counter sample (totals, histogram counts, buckets, sums) at `addr`."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {name: float(value) for name, value in
            (line.rsplit(" ", 1) for line in text.splitlines() if line and line[0] != "#")
            if re.search(r"_(total|count|sum|bucket)\{", name)}  # fmt: skip


def _stat(agent: AgentProc) -> dict[tuple[str, str, str], Any]:
    argv = [sys.executable, "-m", "gossamer.agent", "stat", "--json", "--http-addr", agent.http]
    done = subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=30)
    assert done.returncode == 0, done.stderr
    return {(r["direction"], r["source"], r["destination"]): r for r in json.loads(done.stdout)}


def test_each_services_edges_are_its_own_summed_over_both_workers(node: Node) -> None:
    up, agent, metrics = node.up, node.agent, node.metrics
    for name in ("db", "api", "rpc", "raw"):
        set_intention(agent, "web", name, "allow")
    eventually(lambda: _status(up["api"], "/echo/x") == 200 == _status(up["db"], "/echo/x"), 10,
               what="allowed")  # fmt: skip
    eventually(lambda: roundtrip(("127.0.0.1", up["raw"]), b"w") == b"w<eof>", 10,
               what="raw allowed")  # fmt: skip

    def requests(addr: str, destination: str, direction: str) -> float:
        return series(addr, "gossamer_proxy_request_total", direction=direction,
                      source="web", destination=destination)  # fmt: skip

    watched = ("db", "api", "rpc", "web")
    before = {n: _scrape(metrics[n]) for n in watched}
    rows = _stat(agent)
    counted = {(d, n): requests(metrics[n if d == "inbound" else "web"], n, d)
               for n in ("db", "api", "rpc") for d in ("inbound", "outbound")}  # fmt: skip
    stat_before = {k: rows.get((k[0], "web", k[1]), {}).get("requests", 0) for k in counted}
    sent = {"db": 30, "api": 20, "rpc": 10}
    wrong: list[str] = []
    stop = threading.Event()

    def scrape_on() -> None:  # as Prometheus would, while the load runs: nothing goes back
        last = before
        while not stop.is_set():
            now = {n: _scrape(metrics[n]) for n in watched}
            wrong.extend(f"{n} {k}: {last[n][k]} -> {v}" for n in watched
                         for k, v in now[n].items() if v < last[n].get(k, 0))  # fmt: skip
            last = now

    scraper = threading.Thread(target=scrape_on)
    scraper.start()
    try:
        for i in range(sent["db"]):  # a connection each: spread over both workers
            assert _status(up["db"], f"/echo/{i}") == 200
        for i in range(sent["api"]):
            assert _status(up["api"], f"/echo/{i}") == 200
        for i in range(sent["rpc"]):
            with grpc.insecure_channel(f"127.0.0.1:{up['rpc']}") as channel:
                assert _unary_call(channel, b"%d" % i) == b"unary:%d" % i
        for i in range(10):
            assert roundtrip(("127.0.0.1", up["raw"]), b"%d" % i) == b"%d<eof>" % i
    finally:
        stop.set()
        scraper.join()
    assert not wrong, wrong[:5]
    for (direction, name), was in counted.items():  # (a call is counted as its end is passed)
        eventually(lambda d=direction, n=name, w=was: requests(
            metrics[n if d == "inbound" else "web"], n, d) - w == sent[n], 5,
            what=f"{direction} {name} counted")  # fmt: skip
    # each sidecar's port shows its own edges only
    for name in ("db", "api", "rpc"):
        others = [o for o in ("db", "api", "rpc") if o != name]
        assert all(series(metrics[name], "gossamer_proxy_request_total", destination=o) == 0
                   for o in others), name  # fmt: skip
    rows = _stat(agent)
    for (direction, name), was in stat_before.items():  # (all counted by now: just above)
        assert rows[(direction, "web", name)]["requests"] - was == sent[name], (direction, name)
    assert rows[("inbound", "web", "raw")]["protocol"] == "tcp"
    assert series(metrics["raw"], "gossamer_proxy_request_total") == 0


def _no_budget(addr: str, service: str) -> float:
    return series(addr, "gossamer_proxy_events_total", service=service,
                  event="outbound.http.no_budget")  # fmt: skip


def test_the_retry_budget_is_each_callers_own(node: Node) -> None:
    """web and ops both call bad (every answer 503: each GET is retried twice while the
    budget allows). web spends all of its budget for bad; ops, served by the same process,
    still retries every one of its requests (Linkerd's budget: 20 % of the requests of the
    last 10 s plus 10 a second, kept per upstream of each sidecar, in each worker)."""
    up, metrics = node.up, node.metrics
    web_conn = http.client.HTTPConnection("127.0.0.1", up["bad"], timeout=10)
    try:  # one keep-alive connection: one worker, one budget
        for i in range(150):
            assert _get(web_conn, f"/echo/w{i}") == 503
    finally:
        web_conn.close()
    assert _no_budget(metrics["web"], "web") > 0
    seen = len(node.apps["bad"].seen)
    ops_conn = http.client.HTTPConnection("127.0.0.1", up["ops->bad"], timeout=10)
    try:
        for i in range(20):
            assert _get(ops_conn, f"/echo/o{i}") == 503
    finally:
        ops_conn.close()
    assert _no_budget(metrics["ops"], "ops") == 0
    assert len(node.apps["bad"].seen) - seen == 60  # each of ops's 20 tried three times


def test_an_http_service_added_to_the_node_serves_while_the_others_go_on(node: Node) -> None:
    agent, up = node.agent, node.up
    set_intention(agent, "web", "db", "allow")
    set_intention(agent, "batch", "cache", "allow")
    eventually(lambda: _status(up["db"], "/echo/x") == 200, 10, what="web -> db allowed")
    failures: list[object] = []
    done = queue.Queue[int]()
    stop = threading.Event()

    def load() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", up["db"], timeout=10)
        n = 0
        while not stop.is_set():
            try:
                if (status := _get(conn, "/echo/load")) != 200:
                    failures.append(status)
            except OSError as exc:
                failures.append(exc)
                conn = http.client.HTTPConnection("127.0.0.1", up["db"], timeout=10)
            n += 1
        conn.close()
        done.put(n)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    cache = HttpApp().start()
    node.stopped.append(cache)
    try:
        cache_up, cache_metrics = free_port("127.0.0.1"), f"127.0.0.1:{free_port('127.0.0.1')}"
        _register(agent, "cache", cache.port, "http", cache_metrics)
        _register(agent, "batch", 1, "tcp", f"127.0.0.1:{free_port('127.0.0.1')}", [
            {"DestinationName": "cache", "LocalBindPort": cache_up,
             "Config": {"protocol": "http"}}])  # fmt: skip
        eventually(lambda: all(f"[worker {w}] proxy: serving sidecar {s}" in node.proxy.log()
                               for w in (0, 1)
                               for s in ("cache-sidecar-proxy", "batch-sidecar-proxy")), 20,
                   what="both workers serving cache and batch")  # fmt: skip
        eventually(lambda: healthy_sidecars(agent, "cache") == 1, 30, what="cache passing")
        eventually(lambda: _status(cache_up, "/echo/first") == 200, 20, what="batch -> cache")
        for i in range(20):  # new connections: both workers' listeners
            assert _status(cache_up, f"/echo/{i}") == 200
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert sum(done.get() for _ in threads) > 0
    assert not failures, failures[:5]
    assert series(cache_metrics, "gossamer_proxy_request_total", source="batch") == 21
    set_intention(agent, "web", "raw", "allow")
    eventually(lambda: roundtrip(("127.0.0.1", up["raw"]), b"w") == b"w<eof>", 10,
               what="raw allowed")  # fmt: skip
    with socket.create_connection(("127.0.0.1", up["raw"]), 10) as raw:
        raw.sendall(b"still")
        raw.shutdown(1)
        assert read_all(raw) == b"still<eof>"
