"""Golden metrics end to end: a real Prometheus scrapes a real agent and two real sidecars.

One agent holds `web` and `db` with sidecars whose registrations name their
metrics listeners (`Proxy.Config.gossamer_metrics_bind_addr` and Consul's
`envoy_prometheus_bind_addr`). The fixture sends known traffic: 7
connections web -> db allowed, one held open across a change to deny (cut:
a `terminate`), then (once db's proxy has seen the change) 2 denied; 3 DNS
answers NOERROR and 1 NXDOMAIN; 5 GETs of /v1/catalog/services. Debian's
`prometheus` scrapes all three every second and its query API must return
exactly those counts. `gossamer stat` and `top` read the same figures
through the agent.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import socket
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from gossamer.proxy.edge_metrics import EdgeMetrics, stats_json
from tests.harness.binaries import find_binary, needs
from tests.harness.cli import expect, gossamer
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.harness.prometheus import query, settles_at, value_of
from tests.harness.prometheus import start as start_prometheus
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    refused,
    roundtrip,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
)

pytestmark = needs("prometheus", "promtool", "serf")
PAYLOAD = b"x" * 1000
ALLOWED, DENIED = 7, 2  # round trips allowed, connections denied
HOLD = b"held open"  # one more connection, allowed, open across the deny: terminated


OUT = 'direction="outbound",source="web",destination="db"'
INTO = 'direction="inbound",source="web",destination="db"'
# (which proxy, series, what the traffic adds to it): read before, then from Prometheus
# Over a mux (proxy/mux.py) a denied connection is refused before it is established on
# web's side: counted failed there, and its payload never leaves web's sidecar.
PROXY_SERIES = [
    ("web", f"gossamer_proxy_tcp_close_total{{{OUT}}}", ALLOWED + 1),
    ("web", f"gossamer_proxy_tcp_failed_total{{{OUT}}}", DENIED),
    ("web", f"gossamer_proxy_tcp_sent_bytes_total{{{OUT}}}", ALLOWED * len(PAYLOAD) + len(HOLD)),
    ("db", f"gossamer_proxy_tcp_received_bytes_total{{{INTO}}}",
     ALLOWED * (len(PAYLOAD) + 5) + len(HOLD)),
    ("db", f'gossamer_proxy_authz_total{{{INTO},decision="allow"}}', ALLOWED + 1),
    ("db", f'gossamer_proxy_authz_total{{{INTO},decision="deny"}}', DENIED),
    ("db", f'gossamer_proxy_authz_total{{{INTO},decision="terminate"}}', 1),
    ("db", f"gossamer_proxy_tcp_open_total{{{INTO}}}", ALLOWED + 1),
    ("db", f"gossamer_proxy_tcp_connect_seconds_count{{{INTO}}}", ALLOWED + 1),
    ("db", OPEN_NOW := f"gossamer_proxy_tcp_open_connections{{{INTO}}}", 0),
    ("db", 'gossamer_proxy_tls_handshake_failures_total{service="db",direction="inbound",'
           'reason="unknown-issuer"}', 0),
]  # fmt: skip


@dataclass
class Scraped:
    agent: AgentProc
    prometheus: str  # base URL of its HTTP API
    before: dict[str, float]  # each of PROXY_SERIES before the traffic


def _register(agent: AgentProc, db_port: int, up_port: int, web_m: int, db_m: int) -> None:
    db_in, web_in = free_port(agent.ip), free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": db_port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip, "Proxy": {
            "Config": {"envoy_prometheus_bind_addr": f"127.0.0.1:{db_m}"}}}},
    })  # fmt: skip
    agent.put("/v1/agent/service/register", {
        "Name": "web", "ID": "web", "Port": 1, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": web_in, "Address": agent.ip, "Proxy": {
            "Upstreams": [{"DestinationName": "db", "LocalBindPort": up_port}],
            "Config": {"gossamer_metrics_bind_addr": f"127.0.0.1:{web_m}"}}}},
    })  # fmt: skip


def _proxy_metric(addr: str, line_start: str) -> float:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


def _dns(agent: AgentProc, name: str) -> int:
    q = dns.message.make_query(name, "A")
    return dns.query.udp(q, agent.ip, port=agent.dns_port, timeout=5).rcode()


def _send_traffic(agent: AgentProc, upstream: tuple[str, int], db_metrics: str) -> None:
    """What the test sends, once the path works (a first round trip, polled, came back)."""
    for _ in range(ALLOWED):
        assert roundtrip(upstream, PAYLOAD) == PAYLOAD + b"<eof>"
    updates = 'gossamer_proxy_events_total{service="db",event="intentions.updates"}'
    seen = _proxy_metric(db_metrics, updates)
    with socket.create_connection(upstream, timeout=10) as held:
        held.sendall(HOLD)
        echoed = b""
        while len(echoed) < len(HOLD):
            echoed += held.recv(100)
        set_intention(agent, "web", "db", "deny")
        eventually(lambda: _proxy_metric(db_metrics, updates) > seen, 20,
                   what="db's proxy to see the deny")  # fmt: skip
        with contextlib.suppress(ConnectionResetError):
            assert held.recv(100) == b"", "the held connection was not cut"
    for _ in range(DENIED):
        assert refused(upstream, PAYLOAD)
    assert [_dns(agent, "db.service.consul") for _ in range(3)] == [dns.rcode.NOERROR] * 3
    assert _dns(agent, "nosuch.service.consul") == dns.rcode.NXDOMAIN
    for _ in range(5):
        agent.get("/v1/catalog/services")


def _scrape_configs(agent: AgentProc, proxies: list[str]) -> list[dict[str, Any]]:
    return [
        {"job_name": "agent", "metrics_path": "/v1/agent/metrics",
         "params": {"format": ["prometheus"]},
         "static_configs": [{"targets": [f"{agent.ip}:{agent.http_port}"]}]},
        {"job_name": "proxies", "static_configs": [{"targets": proxies}]},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    tmp = tmp_path_factory.mktemp("metrics")
    c = Cluster(tmp)
    apps: list[App] = []
    proxies: list[ProxyProc] = []
    prom: subprocess.Popen[bytes] | None = None
    try:
        agent = c.new_agent("m1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        apps.append(db_app := App("127.0.0.1").start())
        up_port, web_m, db_m = (free_port("127.0.0.1") for _ in range(3))
        _register(agent, db_app.port, up_port, web_m, db_m)
        set_intention(agent, "web", "db", "allow")
        proxies += [db_proxy := sidecar(agent, tmp, "db"), web_proxy := sidecar(agent, tmp, "web")]
        wait_listening("127.0.0.1", db_m, db_proxy)
        wait_listening("127.0.0.1", up_port, web_proxy)
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        web_metrics, db_metrics = f"127.0.0.1:{web_m}", f"127.0.0.1:{db_m}"
        upstream = ("127.0.0.1", up_port)
        eventually(lambda: roundtrip(upstream, PAYLOAD) == PAYLOAD + b"<eof>", 20,
                   what="a first round trip through both proxies")  # fmt: skip
        at = {"web": web_metrics, "db": db_metrics}
        eventually(lambda: _proxy_metric(db_metrics, OPEN_NOW) == 0, 10,
                   what="the first round trip closed")  # fmt: skip
        before = {series: _proxy_metric(at[proxy], series) for proxy, series, _ in PROXY_SERIES}
        _send_traffic(agent, upstream, db_metrics)
        prom, base = start_prometheus(tmp, _scrape_configs(agent, [web_metrics, db_metrics]))
        yield Scraped(agent, base, before)
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(20)
        leftovers = stop_mesh(c, proxies, apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def test_prometheus_scrapes_the_agent_and_both_proxies(scraped: Scraped) -> None:
    eventually(lambda: len([r for r in query(scraped.prometheus, "up == 1")]) == 3, 30,
               what="three targets up")  # fmt: skip


def test_proxy_counts_match_the_traffic_sent(scraped: Scraped) -> None:
    for _, series, added in PROXY_SERIES:
        settles_at(scraped.prometheus, series, scraped.before[series] + added)


def test_agent_counts_match_the_queries_sent(scraped: Scraped) -> None:
    at = scraped.prometheus
    settles_at(at, 'gossamer_dns_answers_total{rcode="NOERROR"}', 3)
    settles_at(at, 'gossamer_dns_answers_total{rcode="NXDOMAIN"}', 1)
    settles_at(at, 'gossamer_http_requests_total{method="GET",path="v1_catalog_services",'
                   'code="200"}', 5)  # fmt: skip
    settles_at(at, 'gossamer_members{status="alive"}', 1)
    settles_at(at, "consul_state_nodes", 1)
    settles_at(at, "gossamer_connect_leaves", 2)
    left = value_of(at, 'gossamer_connect_leaf_expiry_seconds{service="db"}')
    assert left is not None and 0 < left <= 72 * 3600


def test_promtool_reads_the_agents_text(scraped: Scraped) -> None:
    url = f"{scraped.agent.http}/v1/agent/metrics?format=prometheus"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = resp.read().decode()
    checked = subprocess.run([find_binary("promtool") or "promtool", "check", "metrics"],
                             input=text, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert checked.returncode in (0, 3), checked.stderr  # 3: naming advice only, 1: unparsable
    assert "error while linting" not in checked.stderr


def test_format_other_than_prometheus_is_a_400_naming_it(scraped: Scraped) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{scraped.agent.http}/v1/agent/metrics?format=xml", timeout=10)
    assert refused.value.code == 400 and b"format" in refused.value.read()


def test_stat_reads_the_same_figures_through_the_agent(scraped: Scraped) -> None:
    rows = json.loads(expect("stat", "--json", "--http-addr", scraped.agent.http))
    by_edge = {(r["direction"], r["source"], r["destination"]): r for r in rows}
    inbound = by_edge[("inbound", "web", "db")]
    opened = scraped.before[f"gossamer_proxy_tcp_open_total{{{INTO}}}"] + ALLOWED + 1
    assert (inbound["protocol"], inbound["requests"], inbound["successes"]) == (
        "tcp", opened, opened)  # fmt: skip
    assert inbound["denied"] == DENIED + 1 and inbound["success_rate"] == 1.0  # + terminated
    assert inbound["p50"] is not None and 0 < inbound["p50"] <= inbound["p99"]
    assert by_edge[("outbound", "web", "db")]["successes"] >= ALLOWED + DENIED
    table = expect("stat", "--http-addr", scraped.agent.http)
    assert "DIRECTION" in table and "100.00%" in table and "web" in table


def test_a_bad_metrics_flag_exits_2_naming_it(scraped: Scraped) -> None:
    said = expect("connect", "proxy", "--sidecar-for", "web", "--metrics-addr", "nope",
                  "--http-addr", scraped.agent.http, code=2)  # fmt: skip
    assert "--metrics-addr" in said


def test_the_metrics_listener_answers_garbage_and_keeps_serving(scraped: Scraped) -> None:
    (db,) = scraped.agent.get("/v1/agent/metrics/proxies?service=db")
    host, port = db["Address"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"\x16\x03\x01 not http\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    with urllib.request.urlopen(f"http://{db['Address']}/metrics", timeout=5) as resp:
        assert b"gossamer_proxy_authz_total" in resp.read()


def test_top_redraws_the_table(scraped: Scraped) -> None:
    shown = expect("top", "--iterations", "2", "--interval", "0.2", "--http-addr",
                   scraped.agent.http)  # fmt: skip
    assert "SUCCESS" in shown and "inbound" in shown


def test_the_agent_gathers_its_sidecars_and_names_one_it_cannot_read(scraped: Scraped) -> None:
    answer = scraped.agent.get("/v1/agent/metrics/proxies?service=db")
    assert [p["ProxyID"] for p in answer] == ["db-sidecar-proxy"]
    assert answer[0]["Address"].startswith("127.0.0.1:") and "Stats" in answer[0]
    nobody = free_port("127.0.0.1")  # a sidecar registered, its proxy not running
    scraped.agent.put("/v1/agent/service/register", {
        "Name": "cache", "ID": "cache", "Port": 2, "Connect": {"SidecarService": {
            "Proxy": {"Config": {"gossamer_metrics_bind_addr": f"127.0.0.1:{nobody}"}}}},
    })  # fmt: skip
    try:
        (cache,) = scraped.agent.get("/v1/agent/metrics/proxies?service=cache")
        assert f"127.0.0.1:{nobody}" in cache["Error"] and "Stats" not in cache
        shown = expect("stat", "--http-addr", scraped.agent.http)
        assert f"not read: cache-sidecar-proxy: 127.0.0.1:{nobody}" in shown
    finally:
        scraped.agent.put("/v1/agent/service/deregister/cache")


@contextlib.contextmanager
def _stand_in_sidecar(
    agent: AgentProc, name: str, answers: Callable[[int], bytes | None]
) -> Iterator[None]:
    """A sidecar registration of `name` whose metrics address is a stand-in: its n-th GET
    (from 0) is answered `answers(n)` (a JSON body; None: held unanswered, as a proxy in a
    long GC pause or stopped, until the agent's read times out)."""
    release = threading.Event()
    asked = itertools.count()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers(next(asked))
            if body is None:
                release.wait(30)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": 3, "Connect": {"SidecarService": {"Proxy": {
            "Config": {"gossamer_metrics_bind_addr": f"127.0.0.1:{server.server_address[1]}"}}}},
    })  # fmt: skip
    try:
        yield
    finally:
        agent.put(f"/v1/agent/service/deregister/{name}")
        release.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "body",
    [b"[1, 2, 3]", b'{"Proxies": [{"Service": "junk", "UptimeSeconds": null, "Edges": []}]}'],
)
def test_stat_and_top_name_a_sidecar_answering_another_shape_and_show_the_rest(
    scraped: Scraped, body: bytes
) -> None:
    """A metrics address answering JSON of another shape than `/stats` costs that sidecar its
    rows, named under the table (to stderr with --json), never the others' (before: every
    command exited 1 with a traceback)."""
    addr = scraped.agent.http
    with _stand_in_sidecar(scraped.agent, "junk", lambda _: body):
        for args in (("stat",), ("top", "--iterations", "1", "--interval", "0.2")):
            shown = expect(*args, "--http-addr", addr)
            assert "inbound" in shown and "web" in shown, shown
            assert "not read: junk-sidecar-proxy: 127.0.0.1:" in shown, shown
            assert "answered figures of another shape" in shown, shown
        done = gossamer("stat", "--json", "--http-addr", addr)
    assert done.returncode == 0, done.stderr
    edges = {(r["direction"], r["source"], r["destination"]) for r in json.loads(done.stdout)}
    assert ("inbound", "web", "db") in edges
    assert "not read: junk-sidecar-proxy: " in done.stderr, done.stderr


def test_stat_window_leaves_out_a_sidecar_its_first_reading_missed(scraped: Scraped) -> None:
    """`stat --window`: a sidecar the first reading missed (the agent's read of it timed out)
    that has been up longer than the window is left out and named, not its whole lifetime's
    50 requests shown as the window's (before: 50 requests at ~50/s, nothing sent)."""
    late = EdgeMetrics("late")
    for _ in range(50):
        late.inbound("web").answered(200, 0.004, "/")
    body = json.dumps({"StartTime": 0.0, "Proxies": [stats_json(late, 1000.0)]}).encode()
    with _stand_in_sidecar(scraped.agent, "late", lambda n: None if n == 0 else body):
        done = gossamer("stat", "--window", "1", "--json", "--service", "late",
                        "--http-addr", scraped.agent.http)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert "left out: late-sidecar-proxy: not read at the start of the window" in done.stderr
