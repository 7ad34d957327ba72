"""The proxy's golden metrics cores: list-bucket histograms, edges, the Prometheus text.

Pure tables, plus `promtool check metrics` (Debian's prometheus package)
reading what a proxy with traffic on every family renders, so the text is
checked by Prometheus's own parser, not ours.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import subprocess
import time
from bisect import bisect_left
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.proxy import metrics_server, tally
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.ca.keys import key_id
from gossamer.proxy.config import ConfigError, ProxyConfig, Upstream
from gossamer.proxy.config_flags import keep_pinned
from gossamer.proxy.config_metrics import with_metrics
from gossamer.proxy.config_registration import config_from_registration
from gossamer.proxy.dial import dial
from gossamer.proxy.edge_metrics import (
    INBOUND,
    MAX_EDGES,
    MAX_ROUTES,
    OTHER,
    EdgeMetrics,
    Histogram,
    quantile,
    stats_json,
)
from gossamer.proxy.fleet_sum import Snapshot, snapshot
from gossamer.proxy.identity import with_revoked
from gossamer.proxy.metrics_families import families
from gossamer.proxy.metrics_server import answer
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.prom_text import Family, render
from gossamer.proxy.runtime import ProxyRuntime
from gossamer.proxy.stat_rows import edges_of, notes, rows
from gossamer.proxy.stat_table import cells
from gossamer.proxy.stats_shape import Malformed, check_stats
from tests.harness.binaries import find_binary, require
from tests.harness.cluster import free_port
from tests.harness.served_agent import Served
from tests.proxy_pki import Pki, client_context


class Conn:
    def __init__(self, sent: int, received: int) -> None:
        self.sent, self.received = sent, received

    def bytes_each_way(self) -> tuple[int, int]:
        return self.sent, self.received


def test_histogram_buckets_are_upper_bounds_inclusive() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    assert h.counts == [2, 2, 1]
    assert h.cumulative() == [2, 4, 5]
    assert h.total == pytest.approx(8.65)


@pytest.mark.parametrize(("q", "expected"), [(0.25, 0.5), (0.5, 1.0), (0.9, 8.2), (1.0, 10.0)])
def test_quantile_interpolates_within_the_bucket(q: float, expected: float) -> None:
    # 10 observations: 5 in (0, 1], 5 in (1, 10], as Prometheus's histogram_quantile reads them
    assert quantile(q, (1.0, 10.0), [5, 5, 0]) == pytest.approx(expected)


def test_quantile_of_nothing_and_of_the_inf_bucket() -> None:
    assert quantile(0.5, (1.0,), [0, 0]) is None
    assert quantile(0.99, (1.0,), [0, 3]) == 1.0


@given(st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), min_size=1, max_size=200))
def test_quantile_lies_in_the_bucket_of_the_true_quantile(values: list[float]) -> None:
    bounds = (0.5, 1.0, 2.0, 5.0, 10.0)
    h = Histogram(bounds)
    for v in values:
        h.observe(v)
    got = quantile(0.5, bounds, h.counts)
    assert got is not None
    true = sorted(values)[math.ceil(0.5 * len(values)) - 1]
    j = bisect_left(bounds, true)
    low = bounds[j - 1] if j else 0.0
    high = bounds[j] if j < len(bounds) else bounds[-1]
    assert low <= got <= high


def test_edge_counts_connections_bytes_and_responses() -> None:
    m = EdgeMetrics("db")
    e = m.inbound("web")
    a, b = Conn(10, 100), Conn(1, 2)
    e.connected(a, 0.002)
    e.connected(b, 0.003)
    a.sent, a.received = 20, 200
    assert e.bytes_each_way() == (21, 202)  # open connections are read on scrape
    e.disconnected(a, 1.5)
    e.disconnected(a, 1.5)  # a second close of the same connection is not counted
    assert (e.opened, e.closed, len(e.live)) == (2, 1, 1)
    assert e.bytes_each_way() == (21, 202)
    e.answered(200, 0.01, "/api")
    e.answered(503, 0.02, "/api")
    e.answered(0, 0.5, "/api")
    r = e.routes["/api"]
    assert (r.requests, r.by_class()) == (3, {"none": 1, "2xx": 1, "5xx": 1})
    assert m.edges[(INBOUND, "web", "db")] is e


def test_edges_and_routes_are_bounded() -> None:
    m = EdgeMetrics("db")
    for i in range(MAX_EDGES + 10):
        m.inbound(f"svc{i}").allowed += 1
    assert len(m.edges) == MAX_EDGES + 1
    assert m.edges[(INBOUND, OTHER, OTHER)].allowed == 10
    e = m.inbound("svc0")
    for i in range(MAX_ROUTES + 5):
        e.answered(200, 0.001, f"/r{i}")
    assert len(e.routes) == MAX_ROUTES + 1 and e.routes["other"].requests == 5


def test_metrics_off_count_nothing() -> None:
    m = EdgeMetrics("db", enabled=False)
    e = m.inbound("web")
    e.connected(Conn(1, 1), 0.1)
    e.answered(200, 0.1, "/")
    assert m.edges == {} and e.opened == 0 and not e.routes


def test_render_escapes_labels_and_writes_histograms() -> None:
    f = Family("x_seconds", "histogram", "help")
    f.histogram((("a", 'q"\\\n'),), (0.5, 1.0), [1, 0, 2], 4.5)
    text = render([f])
    assert 'x_seconds_bucket{a="q\\"\\\\\\n",le="0.5"} 1' in text
    assert 'x_seconds_bucket{a="q\\"\\\\\\n",le="+Inf"} 3' in text
    assert 'x_seconds_count{a="q\\"\\\\\\n"} 3' in text
    with pytest.raises(ValueError, match="not a metric family"):
        render([Family("bad name", "counter", "")])


def busy_proxy() -> tuple[EdgeMetrics, tally.Tally]:
    m, t = EdgeMetrics("db", started_s=100.0), tally.Tally()
    e = m.inbound("web")
    e.allowed, e.denied, e.terminated = 3, 2, 1
    e.connected(Conn(5, 7), 0.004)
    e.answered(200, 0.003, "/users")
    m.outbound("cache").failed += 1
    t.refuse("inbound", tally.EXPIRED, "10.0.0.1", 0)
    t.add("inbound.probes")
    return m, t


def test_families_name_every_edge_and_reason() -> None:
    text = render(families([busy_proxy()], 1700000000.0))
    assert ('gossamer_proxy_authz_total{direction="inbound",source="web",destination="db",'
            'decision="deny"} 2') in text  # fmt: skip
    assert 'gossamer_proxy_tcp_sent_bytes_total{direction="inbound",source="web",' in text
    assert ('gossamer_proxy_tls_handshake_failures_total{service="db",direction="inbound",'
            'reason="expired"} 1') in text  # fmt: skip
    assert ('gossamer_proxy_response_total{direction="inbound",source="web",destination="db",'
            'route="/users",status_class="2xx"} 1') in text  # fmt: skip
    assert ('gossamer_proxy_tcp_failed_total{direction="outbound",source="db",'
            'destination="cache"} 1') in text  # fmt: skip
    assert 'gossamer_proxy_events_total{service="db",event="inbound.probes"} 1' in text


def test_promtool_accepts_the_text() -> None:
    require("promtool")
    text = render(families([busy_proxy()], 1700000000.0))
    done = subprocess.run([find_binary("promtool") or "promtool", "check", "metrics"],
                          input=text, capture_output=True, text=True, timeout=30)  # fmt: skip
    # promtool lints too (naming advice) and exits 3 for lint-only findings; 1 is a parse error
    assert done.returncode in (0, 3), done.stderr + done.stdout
    assert "error while linting" not in done.stderr, done.stderr


def test_the_listener_answers_metrics_stats_and_errors() -> None:
    proxy = busy_proxy()
    ok = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", [proxy], 160.0)
    assert ok.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4")
    assert b"gossamer_proxy_start_time_seconds 100" in ok  # the proxy's start (started_s)
    stats = answer(b"GET /stats HTTP/1.1\r\n\r\n", [proxy], 160.0)
    assert b'"UptimeSeconds": 60.0' in stats and b'"Denied": 2' in stats
    assert answer(b"GET /nope HTTP/1.1\r\n\r\n", [proxy], 0).startswith(b"HTTP/1.1 404")
    assert answer(b"POST /metrics HTTP/1.1\r\n\r\n", [proxy], 0).startswith(b"HTTP/1.1 405")
    assert answer(b"\x16\x03\x01garbage\r\n\r\n", [proxy], 0).startswith(b"HTTP/1.1 400")


def test_stats_json_carries_buckets() -> None:
    m, _ = busy_proxy()
    edge = stats_json(m, 5.0)["Edges"][0]
    assert edge["Routes"]["/users"]["Latency"]["Counts"][3] == 1  # 3 ms: the (2.5, 5] ms bucket
    assert edge["BytesSent"] == 5 and edge["Open"] == 1


def _gathered(m: EdgeMetrics, uptime: float, proxy: str = "db-sidecar-proxy"
              ) -> list[dict[str, object]]:  # fmt: skip
    """What /v1/agent/metrics/proxies answers for one proxy (through JSON, as on the wire)."""
    stats = json.loads(json.dumps(stats_json(m, uptime)))
    return [{"ProxyID": proxy, "Stats": {"Proxies": [stats]}}]


def test_stat_rows_over_an_interval_and_since_start() -> None:
    m = EdgeMetrics("db")
    e = m.inbound("web")
    for _ in range(8):
        e.answered(200, 0.004, "/a")
    e.answered(503, 0.2, "/b")
    e.denied = 1
    before = edges_of(_gathered(m, 10.0))
    e.answered(200, 0.004, "/a")
    e.answered(0, 1.0, "/a")
    e.denied = 3
    m.outbound("cache").failed = 1
    after = edges_of(_gathered(m, 12.0))
    (since_start, tcp) = rows(after, None, 0.0)
    assert (since_start.protocol, since_start.requests, since_start.successes) == ("http", 11, 9)
    assert since_start.per_second == pytest.approx(11 / 12.0)
    (interval, _) = rows(after, before, 2.0)
    assert (interval.requests, interval.successes, interval.denied) == (2, 1, 2)
    assert interval.success_rate == 0.5 and interval.per_second == 1.0
    assert interval.p50 is not None and 0.0025 < interval.p50 <= 0.005  # the 4 ms answer
    assert interval.p99 is not None and interval.p99 > 0.5  # the 1 s one
    assert (tcp.protocol, tcp.requests, tcp.successes, tcp.success_rate) == ("tcp", 1, 0, 0.0)
    assert cells(interval)[4:6] == ["50.00%", "1.0"]
    read = edges_of([{"ProxyID": "x", "Error": "down"}, *_gathered(m, 12.0)])
    assert notes(read, None, 0.0) == ["not read: x: down"]


def _served(n: int, status: int = 200) -> EdgeMetrics:
    m = EdgeMetrics("web")
    for _ in range(n):
        m.inbound("client").answered(status, 0.004, "/")
    return m


def test_stat_rows_sum_the_sidecars_of_a_service_each_over_its_own_uptime() -> None:
    """Two sidecars of `web` on one agent: the edge's row holds both; since start, each is
    counted over its own uptime (not the oldest proxy's)."""
    both = [*_gathered(_served(100), 10.0, "web-1"), *_gathered(_served(100), 100.0, "web-2")]
    (row,) = rows(edges_of(both), None, 0.0)
    assert (row.requests, row.successes) == (200, 200)
    assert row.per_second == pytest.approx(100 / 10.0 + 100 / 100.0)


def test_stat_rows_never_go_negative_across_a_restart() -> None:
    """A proxy that restarted between two gatherings counts from its start: its counters (or
    its uptime) went back, so the interval holds what it served since."""
    before = edges_of(_gathered(_served(1000), 500.0))
    for after in (_gathered(_served(10), 1.5), _gathered(_served(10), 600.0)):
        (row,) = rows(edges_of(after), before, 2.0)
        assert (row.requests, row.successes, row.per_second) == (10, 10, 5.0)
        assert row.p50 is not None


def _stats(m: EdgeMetrics, uptime: float) -> dict[str, Any]:
    """A proxy's `/stats` figures, through JSON as on the wire."""
    loaded: dict[str, Any] = json.loads(json.dumps({"Proxies": [stats_json(m, uptime)]}))
    return loaded


def _junk(change: str) -> object:
    """Figures of another shape than `/stats` (a foreign program on the metrics port, another
    version): what a metrics port might answer."""
    if change == "a list":
        return [1, 2, 3]
    if change == "an edge missing keys":
        return {"Proxies": [{"Service": "junk", "UptimeSeconds": 5.0,
                             "Edges": [{"Direction": "inbound"}]}]}  # fmt: skip
    if change == "a null uptime":
        return {"Proxies": [{"Service": "junk", "UptimeSeconds": None, "Edges": []}]}
    stats = _stats(busy_proxy()[0], 5.0)
    proxy, edge = stats["Proxies"][0], stats["Proxies"][0]["Edges"][0]
    if change == "an infinite uptime":
        proxy["UptimeSeconds"] = math.inf
    elif change == "a count as text":
        edge["Opened"] = "3"
    elif change == "a true count":
        edge["Routes"]["/users"]["Requests"] = True
    elif change == "buckets of another length":
        edge["Routes"]["/users"]["Latency"]["Counts"].pop()
    elif change == "a null histogram":
        edge["Setup"] = None
    elif change == "a route that is a number":
        edge["Routes"]["/users"] = 5
    elif change == "a negative count":
        edge["Denied"] = -1
    return stats


JUNK = ["a list", "an edge missing keys", "a null uptime", "an infinite uptime", "a count as text",
        "a true count", "buckets of another length", "a null histogram", "a route that is a number",
        "a negative count"]  # fmt: skip


def test_check_stats_takes_what_a_proxy_serves() -> None:
    check_stats(_stats(busy_proxy()[0], 5.0))
    check_stats(_stats(EdgeMetrics("db"), 0))


@pytest.mark.parametrize("change", JUNK)
def test_stat_rows_name_and_skip_a_proxy_of_another_shape(change: str) -> None:
    """One proxy whose metrics port answers figures of another shape costs nothing but its
    own rows: it is named under the table, the others are counted (before: a traceback)."""
    with pytest.raises(Malformed):
        check_stats(_junk(change))
    answer = [*_gathered(_served(10), 5.0, "web-1"), {"ProxyID": "junk", "Stats": _junk(change)}]
    read = edges_of(answer)
    (row,) = rows(read, None, 0.0)
    assert (row.requests, row.per_second) == (10, 2.0)
    (line,) = notes(read, None, 0.0)
    assert line.startswith("not read: junk: figures of another shape: "), line
    (again,) = rows(edges_of(answer), read, 1.0)  # an interval too
    assert again.requests == 0


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


def _paths(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every place in a JSON value (the value itself too)."""
    inner: list[tuple[object, object]] = []
    if isinstance(value, dict):
        inner = list(value.items())
    elif isinstance(value, list):
        inner = list(enumerate(value))
    return [path, *(p for k, v in inner for p in _paths(v, (*path, k)))]


@given(st.data(), JSON)
def test_stat_rows_never_raise_whatever_one_place_of_the_figures_holds(
    data: st.DataObject, junk: object
) -> None:
    """Any one place of a proxy's figures replaced by any JSON: the rows either count it
    (still the shape of `/stats`) or name it, never raise."""
    stats: Any = _stats(busy_proxy()[0], 5.0)
    path = data.draw(st.sampled_from(_paths(stats)))
    if path:
        *parents, last = path
        holder = stats
        for key in parents:
            holder = holder[key]
        holder[last] = junk
    else:
        stats = junk
    read = edges_of([{"ProxyID": "p", "Stats": stats}, *_gathered(_served(3), 1.0)])
    try:
        check_stats(stats)
    except Malformed:
        assert [line.split(":")[0] for line in read.unread] == ["p"]
    else:
        assert read.unread == []
    for before, seconds in ((None, 0.0), (read, 1.0), (edges_of([]), 1.0)):
        rows(read, before, seconds)
        notes(read, before, seconds)


def test_stat_rows_name_an_entry_that_is_no_proxy() -> None:
    read = edges_of([7, {"ProxyID": "x"}, *_gathered(_served(1), 1.0)])
    assert notes(read, None, 0.0) == [
        "not read: ?: not a proxy's entry: 7",
        "not read: x: figures of another shape: the answer is missing or null, not an object",
    ]
    assert len(rows(read, None, 0.0)) == 1


def test_stat_rows_leave_out_a_proxy_the_first_reading_missed() -> None:
    """`stat --window` / `top`: a proxy missing from the first reading (the agent's read of it
    timed out once) that ran before the window is left out and named: its counts since it
    started are not the window's (before: its whole lifetime divided by the window). One
    that started within the window counts from its start."""
    steady = _served(10)
    before = edges_of([*_gathered(steady, 500.0, "web-1"),
                       {"ProxyID": "web-2", "Error": "127.0.0.1:9102: TimeoutError"}])  # fmt: skip
    steady.inbound("client").answered(200, 0.004, "/")  # the window's one request, on web-1
    after = edges_of(
        [*_gathered(steady, 502.0, "web-1"), *_gathered(_served(1000), 502.0, "web-2")]
    )
    (row,) = rows(after, before, 2.0)
    assert (row.requests, row.per_second) == (1, 0.5)
    assert notes(after, before, 2.0) == ["left out: web-2: not read at the start of the window"]
    assert notes(after, None, 0.0) == []  # since start: nothing to split
    young = edges_of([*_gathered(steady, 502.0, "web-1"), *_gathered(_served(4), 1.5, "web-2")])
    (row,) = rows(young, before, 2.0)
    assert (row.requests, row.per_second) == (5, 2.5) and notes(young, before, 2.0) == []


def test_stat_rows_count_an_edge_new_in_the_window_of_a_proxy_read_at_its_start() -> None:
    """Missing from the first reading is the proxy's absence, not an edge's: a proxy read with
    no edges yet whose first edge comes in the window counts it whole."""
    quiet = edges_of(_gathered(EdgeMetrics("web"), 500.0, "web-3"))
    busy = edges_of(_gathered(_served(6), 502.0, "web-3"))
    (row,) = rows(busy, quiet, 2.0)
    assert (row.requests, row.per_second) == (6, 3.0) and notes(busy, quiet, 2.0) == []


async def test_the_agent_turns_figures_of_another_shape_into_that_proxys_error(
    served: Served,
) -> None:
    """`GET /v1/agent/metrics/proxies` checks what a metrics port answers: figures of another
    shape are that proxy's `Error` (before: passed on, for `stat` to trip over); a real
    proxy's listener next to it is read as ever."""
    junk = json.dumps(_junk("an edge missing keys")).encode()

    async def foreign(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(junk), junk)
        )
        await writer.drain()
        writer.close()

    other = await asyncio.start_server(foreign, "127.0.0.1", 0)
    junk_addr = f"127.0.0.1:{other.sockets[0].getsockname()[1]}"
    good = metrics_server.MetricsServer(f"127.0.0.1:{free_port('127.0.0.1')}",
                                        lambda: [busy_proxy()])  # fmt: skip
    await good.start()
    for name, addr in (("db", good.addr), ("junk", junk_addr)):
        served.local.register_service({
            "Kind": "connect-proxy", "ID": f"{name}-sidecar-proxy", "Name": f"{name}-sidecar-proxy",
            "Port": 21000, "Proxy": {"DestinationServiceName": name,
                                     "Config": {"gossamer_metrics_bind_addr": addr}},
        })  # fmt: skip
    try:
        status, body = await served.call("GET", "/v1/agent/metrics/proxies")
    finally:
        good.close()
        other.close()
    assert status == 200, body
    by_id = {p["ProxyID"]: p for p in json.loads(body)}
    assert "Stats" not in by_id["junk-sidecar-proxy"]
    assert by_id["junk-sidecar-proxy"]["Error"] == (
        f"{junk_addr} answered figures of another shape: Proxies[0].Edges[0].Source is "
        "missing or null")  # fmt: skip
    check_stats(by_id["db-sidecar-proxy"]["Stats"])


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"gossamer_metrics_bind_addr": "nope"}, "Proxy.Config.gossamer_metrics_bind_addr"),
        (
            {"envoy_prometheus_bind_addr": "127.0.0.1:99999"},
            "Proxy.Config.envoy_prometheus_bind_addr",
        ),
        ({"gossamer_metrics_bind_addr": 9102}, "Proxy.Config.gossamer_metrics_bind_addr"),
        ({"gossamer_metrics": "yes"}, "Proxy.Config.gossamer_metrics"),
    ],
)
def test_a_bad_metrics_key_is_an_error_naming_it(config: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError) as bad:
        config_from_registration(_sidecar(config), "web-sidecar-proxy")
    assert bad.value.where == names


def test_metrics_keys_flags_and_pinning() -> None:
    both = {"gossamer_metrics_bind_addr": ":9102", "envoy_prometheus_bind_addr": "0.0.0.0:9"}
    config = config_from_registration(_sidecar(both), "web-sidecar-proxy")
    assert config.metrics_addr == "127.0.0.1:9102" and config.metrics  # ours wins; :PORT local
    flagged = with_metrics(config, "[::1]:9200", enabled=False)
    assert (flagged.metrics_addr, flagged.metrics, flagged.metrics_pinned) == (
        "[::1]:9200", False, True)  # fmt: skip
    changed = config_from_registration(_sidecar({}), "web-sidecar-proxy")
    assert keep_pinned(changed, flagged).metrics_addr == "[::1]:9200"
    assert keep_pinned(changed, config).metrics_addr == ""
    with pytest.raises(ConfigError, match="--metrics-addr"):
        with_metrics(config, "no-port")


def _sidecar(config: dict[str, object]) -> dict[str, object]:
    return {"Kind": "connect-proxy", "Port": 21000, "Proxy": {
        "DestinationServiceName": "web", "LocalServicePort": 8080, "Config": config}}  # fmt: skip


async def test_an_outbound_attempt_is_counted_by_what_failed_connect_or_tls() -> None:
    """Reaching the instance and its TLS fail differently: a closed port is `connect-failed`,
    a server that takes the connection and says nothing is `handshake-timeout`, one that
    answers something other than TLS `not-tls`; the TLS ones are handshake failures too."""
    kept: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kept.append(writer)

    async def plain(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        kept.append(writer)

    servers = [await asyncio.start_server(h, "127.0.0.1", 0) for h in (silent, plain)]
    pki = Pki()
    identity = pki.identity("web")
    web = UpstreamListener(Upstream("db", free_port("127.0.0.1"), connect_timeout_s=0.5),
                           lambda: identity, tally.Tally())  # fmt: skip
    try:
        for server in servers:
            assert await dial(web, server.sockets[0].getsockname()[:2]) is None
        assert await dial(web, ("127.0.0.1", free_port("127.0.0.1"))) is None
    finally:
        for server in servers:
            server.close()
        for writer in kept:
            writer.close()
    snapshot = web.tally.snapshot()
    assert [
        snapshot.get(f"outbound.attempt_failed.{r}", 0)
        for r in (tally.HANDSHAKE_TIMEOUT, tally.NOT_TLS, tally.CONNECT_FAILED)
    ] == [1, 1, 1]
    text = render(families([(web.metrics, web.tally)], 0.0))
    for reason, n in ((tally.HANDSHAKE_TIMEOUT, 1), (tally.NOT_TLS, 1), (tally.EXPIRED, 0)):
        assert (
            f'gossamer_proxy_tls_handshake_failures_total{{service="",direction="outbound",'
            f'reason="{reason}"}} {n}'
        ) in text, text


async def _scrape(
    port: int, ssl_context: ssl.SSLContext | None = None, path: str = "/metrics"
) -> bytes:
    """One GET of `path`; what came back before the close (b"" when refused)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl_context)
    except (ssl.SSLError, ConnectionError):
        return b""
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(), 5)
    except (ssl.SSLError, ConnectionError):
        return b""
    finally:
        writer.close()


async def test_a_peer_from_elsewhere_needs_a_service_leaf_whose_issuer_is_not_revoked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The metrics listener checks a peer from another host as the inbound port checks a
    client. (Every peer here is on this host; the listener is told otherwise, as
    tests/test_metrics_tls.py's network namespaces make it so for real.)"""
    monkeypatch.setattr(metrics_server, "from_this_host", lambda *_: False)
    pki = Pki()
    identity = pki.identity("db")
    server = metrics_server.MetricsServer(f"127.0.0.1:{free_port('127.0.0.1')}",
                                          lambda: [], tls=lambda: identity)  # fmt: skip
    await server.start()
    try:
        web = client_context(pki, pki.leaf_json("web"))
        assert (await _scrape(server.port, web)).startswith(b"HTTP/1.1 200 OK")
        issuer = key_id(pki.mesh.intermediate.certificate.public_key())
        identity = with_revoked(identity, frozenset({issuer}))
        assert await _scrape(server.port, web) == b""
    finally:
        server.close()


async def test_a_connection_that_asks_nothing_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer that connects and never sends a whole request head holds a descriptor shared
    with the data path: after REQUEST_S it is cut, from this host too."""
    monkeypatch.setattr(metrics_server, "REQUEST_S", 0.2)
    server = metrics_server.MetricsServer(f"127.0.0.1:{free_port('127.0.0.1')}", lambda: [])
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metr")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, not answered
        writer.close()
        assert (await _scrape(server.port)).startswith(b"HTTP/1.1 200 OK")
    finally:
        server.close()


async def test_uptime_runs_from_the_proxys_start_across_its_metrics_listeners(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runtime opens a new metrics listener for a changed address (and for a port that was
    taken, tried again): its counters run on from the proxy's start, so its uptime must too,
    or `gossamer stat` reads a restart and takes the whole count for the last interval's
    (before: the uptime ran from each listener's own start)."""
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    runtime = ProxyRuntime(ProxyConfig(service="db"), AgentHttp("http://127.0.0.1:1"))
    runtime.metrics.inbound("web").answered(200, 0.004, "/")
    try:
        for now, uptime in ((1600.0, 600.0), (1700.0, 700.0)):
            clock[0] = now
            port = free_port("127.0.0.1")
            await runtime._serve_metrics(f"127.0.0.1:{port}")
            reply = await _scrape(port, path="/stats")
            got = json.loads(reply.split(b"\r\n\r\n", 1)[1])
            assert (got["StartTime"], got["Proxies"][0]["UptimeSeconds"]) == (1000.0, uptime)
            assert b"gossamer_proxy_start_time_seconds 1000" in await _scrape(port)
    finally:
        if runtime.metrics_server is not None:
            runtime.metrics_server.close()


async def test_worker_zeros_sum_keeps_the_proxys_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """With worker processes the listener serves a sum built afresh on each scrape: its
    uptime is still the proxy's, not the sum's or the listener's."""
    monkeypatch.setattr(time, "time", lambda: 160.0)
    proxy = busy_proxy()  # started at 100
    theirs = snapshot(busy_proxy())

    async def others(_: str) -> list[list[Snapshot]]:
        return [[theirs]]

    server = metrics_server.MetricsServer("127.0.0.1:1", lambda: [proxy], others=others)
    reply = await server.reply_summed(b"GET /stats HTTP/1.1\r\n\r\n")
    got = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert (got["StartTime"], got["Proxies"][0]["UptimeSeconds"]) == (100.0, 60.0)
    assert got["Proxies"][0]["Edges"][0]["Denied"] == 4  # both workers' 2
