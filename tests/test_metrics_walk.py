"""Golden metrics walked as an operator reads them: known HTTP/1 traffic, then the figures.

Two sidecars run in this process, no agent: web's `http` upstream listener ->
db's `http` inbound (on the sidecars' mux, or a TLS connection of its own)
-> a real aiohttp app, under an L7 intention web -> db that denies
`/admin*` and allows the rest. The test sends 2xx, 4xx and 5xx answers and
denials, then reads both sidecars' Prometheus text: what each edge counts,
and `promtool check metrics` on it (no lint finding at all: naming advice
is a finding too).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import HTTPMatch, Intention, Permission
from gossamer.proxy import tally
from gossamer.proxy.config import ProxyConfig, Upstream
from gossamer.proxy.edge_metrics import EdgeMetrics
from gossamer.proxy.inbound import Inbound
from gossamer.proxy.metrics_families import families
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.policy import Policy
from gossamer.proxy.prom_text import render
from tests.harness.binaries import find_binary, needs
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async
from tests.http_app import HttpApp
from tests.proxy_pki import Pki
from tests.test_proxy_grpc import grpc_mesh
from tests.test_proxy_h2_timeouts import _unary

# answered 200 by the app, 404, 500 (a 502 or 503 would be tried again), 403 by intention
OK, MISSING, FAILING, DENIED = 5, 3, 2, 4
INTO = {"direction": "inbound", "source": "web", "destination": "db"}
OUT = {"direction": "outbound", "source": "web", "destination": "db"}


@dataclass
class Walk:
    db: Inbound
    web: UpstreamListener
    port: int  # web's upstream listener, where the "app" sends its requests


@contextlib.asynccontextmanager
async def _walk(mode: str, app_port: int = 0) -> AsyncIterator[Walk]:
    """The mesh; `app_port`: where db's app is said to be (0: a running HttpApp)."""
    app = HttpApp().start()
    pki = Pki()
    db_identity, web_identity = pki.identity("db"), pki.identity("web")
    if mode == "tls":
        db_identity = dataclasses.replace(db_identity, server_tunnel=db_identity.server)
    policy = Policy()
    policy.intentions = IntentionSet([Intention("web", "db", permissions=(
        Permission("deny", HTTPMatch(path_prefix="/admin")),
        Permission("allow", HTTPMatch(path_prefix="/")),
    ))])  # fmt: skip
    policy.known = True
    config = ProxyConfig(service="db", bind_address="127.0.0.1", bind_port=free_port("127.0.0.1"),
                         local_port=app_port or app.port, protocol="http")  # fmt: skip
    db = Inbound(config, lambda: db_identity, policy, tally.Tally())
    await db.start()
    upstream = Upstream("db", free_port("127.0.0.1"), connect_timeout_s=5.0, protocol="http")
    web = UpstreamListener(
        upstream, lambda: web_identity, tally.Tally(), metrics=EdgeMetrics("web")
    )
    web.set_instances([("127.0.0.1", config.bind_port)])
    await web.start()
    try:
        yield Walk(db, web, upstream.bind_port)
    finally:
        for side in (web, db):
            side.stop_listening()
            side.terminate_all()
        app.stop()


def _get(port: int, paths: list[str]) -> list[int]:
    """Each path asked in turn on one keep-alive connection; the statuses answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        statuses = []
        for path in paths:
            conn.request("GET", path)
            answer = conn.getresponse()
            answer.read()
            statuses.append(answer.status)
        return statuses
    finally:
        conn.close()


async def _send(walk: Walk) -> None:
    paths = ([f"/echo/{i}" for i in range(OK)] + ["/nosuch"] * MISSING
             + ["/early/500"] * FAILING + [f"/admin/{i}" for i in range(DENIED)])  # fmt: skip
    statuses = await asyncio.to_thread(_get, walk.port, paths)
    assert statuses == [200] * OK + [404] * MISSING + [500] * FAILING + [403] * DENIED

    def closed() -> bool:  # the client connection's end counted on web's side
        return walk.web.metrics.outbound("db").closed == 1

    await eventually_async(closed, 5)


def _text(metrics: EdgeMetrics, counts: tally.Tally) -> str:
    return render(families([(metrics, counts)], 1.0))


def _value(text: str, name: str, labels: dict[str, str]) -> float:
    """The one sample of `name` with exactly `labels` (in any order)."""
    found = []
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)\{(.*)\} (\S+)", line)
        if m and m[1] == name and dict(re.findall(r'(\w+)="([^"]*)"', m[2])) == labels:
            found.append(float(m[3]))
    assert len(found) == 1, (name, labels, found)
    return found[0]


@pytest.mark.parametrize("mode", ["mux", "tls"])
async def test_both_sides_of_an_edge_count_the_same_bytes_back(mode: str) -> None:
    """The bytes an edge carried towards its source include the answers its sidecars gave
    themselves: db's 403s to denied requests reach web's app as any answer does, and web's
    sidecar counts them. db's sidecar did not (its inbound edge counted only what its app
    wrote), so the two ends of one edge disagreed by the denials' bytes (found by the
    metrics walk: 91 bytes per denial)."""
    async with _walk(mode) as walk:
        await _send(walk)
        name = "gossamer_proxy_tcp_received_bytes_total"

        def same() -> bool:
            web = _value(_text(walk.web.metrics, walk.web.tally), name, OUT)
            db = _value(_text(walk.db.metrics, walk.db.tally), name, INTO)
            assert db == web, (db, web)
            return True

        await eventually_async(same, 5)
        sent = "gossamer_proxy_tcp_sent_bytes_total"
        assert _value(_text(walk.db.metrics, walk.db.tally), sent, INTO) == _value(
            _text(walk.web.metrics, walk.web.tally), sent, OUT)  # fmt: skip


@pytest.mark.parametrize("mode", ["mux", "tls"])
async def test_both_sides_of_a_grpc_edge_count_the_same_bytes_back(mode: str) -> None:
    """The same for gRPC: db's sidecar answers a denied call itself (`PERMISSION_DENIED`,
    HTTP/2 frames of its own), which web's sidecar counted and db's did not (128 bytes a
    denied call)."""
    async with grpc_mesh(mode) as mesh:
        mesh.db.policy.intentions = IntentionSet([Intention("web", "db", permissions=(
            Permission("deny", HTTPMatch(path_prefix="/t.T/No")),
            Permission("allow", HTTPMatch(path_prefix="/")),
        ))])  # fmt: skip
        codes = [(await asyncio.to_thread(_unary, mesh.target, path, 5))[0].name
                 for path in ("/t.T/Fine", "/t.T/No", "/t.T/No")]  # fmt: skip
        assert codes == ["OK", "PERMISSION_DENIED", "PERMISSION_DENIED"]

        def same() -> bool:
            db = mesh.db.metrics.inbound("web").bytes_each_way()
            web = mesh.web.metrics.outbound("db").bytes_each_way()
            assert db == web, (db, web)
            return True

        await eventually_async(same, 5)


async def test_a_websockets_bytes_count_on_both_ends_of_its_edge() -> None:
    """After an upgrade the two connections are joined byte for byte (a tunnel): what goes
    through it counts in the edge's bytes as any answer does. Only the upgrade's request
    and 101 were counted, on both sidecars: 5 KB of WebSocket messages each way showed as
    241 bytes sent and 202 back."""
    async with _walk("mux") as walk:
        url = f"http://127.0.0.1:{walk.port}/ws"
        async with aiohttp.ClientSession() as client, client.ws_connect(url) as ws:
            for _ in range(5):
                await ws.send_str("x" * 1000)
                assert (await ws.receive()).type is aiohttp.WSMsgType.TEXT
            for edge in (walk.db.metrics.inbound("web"), walk.web.metrics.outbound("db")):
                sent, back = edge.bytes_each_way()  # (open: read from the tunnel)
                assert sent > 5000 and back > 5000, (sent, back)

        def closed() -> bool:  # both ends' figures, once the tunnel closed
            db, web = walk.db.metrics.inbound("web"), walk.web.metrics.outbound("db")
            return db.closed == web.closed == 1 and not db.live and not web.live

        await eventually_async(closed, 5)
        db = walk.db.metrics.inbound("web").bytes_each_way()
        assert db == walk.web.metrics.outbound("db").bytes_each_way()
        assert min(db) > 5000, db


async def test_an_http_services_app_down_is_counted_as_a_tcp_ones() -> None:
    """A TCP service whose app refuses the connection counts (and logs) a refusal
    `local-unreachable`; an HTTP service's answered its clients 503 and said nothing else,
    so its figures could not tell an app that is down from one that answers 503."""
    async with _walk("mux", app_port=free_port("127.0.0.1")) as walk:
        assert await asyncio.to_thread(_get, walk.port, ["/echo/1"]) == [503]
        text = _text(walk.db.metrics, walk.db.tally)
        answered = {**INTO, "route": "/*", "status_class": "5xx"}
        tried = _value(text, "gossamer_proxy_response_total", answered)
    labels = {"service": "db", "direction": "inbound", "reason": "local-unreachable"}
    assert _value(text, "gossamer_proxy_refused_total", labels) == tried >= 1


@needs("promtool")
async def test_the_figures_match_the_traffic_and_promtool_finds_nothing() -> None:
    async with _walk("mux") as walk:
        await _send(walk)
        db = _text(walk.db.metrics, walk.db.tally)
        web = _text(walk.web.metrics, walk.web.tally)
    allowed = {**INTO, "route": "/*"}
    admin = {**INTO, "route": "/admin*"}
    expected = [
        (db, "gossamer_proxy_request_total", allowed, OK + MISSING + FAILING),
        (db, "gossamer_proxy_request_total", admin, DENIED),
        (db, "gossamer_proxy_response_total", {**allowed, "status_class": "2xx"}, OK),
        (db, "gossamer_proxy_response_total", {**allowed, "status_class": "4xx"}, MISSING),
        (db, "gossamer_proxy_response_total", {**allowed, "status_class": "5xx"}, FAILING),
        (db, "gossamer_proxy_response_total", {**admin, "status_class": "4xx"}, DENIED),
        (db, "gossamer_proxy_response_latency_seconds_count", allowed, OK + MISSING + FAILING),
        (db, "gossamer_proxy_response_latency_seconds_bucket", {**admin, "le": "+Inf"}, DENIED),
        (db, "gossamer_proxy_authz_total", {**INTO, "decision": "allow"}, OK + MISSING + FAILING),
        (db, "gossamer_proxy_authz_total", {**INTO, "decision": "deny"}, DENIED),
        (web, "gossamer_proxy_request_total", OUT, OK + MISSING + FAILING + DENIED),
        (web, "gossamer_proxy_response_total", {**OUT, "status_class": "4xx"}, MISSING + DENIED),
        (web, "gossamer_proxy_response_total", {**OUT, "status_class": "5xx"}, FAILING),
        (web, "gossamer_proxy_tcp_open_total", OUT, 1),
        (web, "gossamer_proxy_tcp_open_connections", OUT, 0),
    ]
    assert [_value(text, name, labels) for text, name, labels, _ in expected] == [
        n for *_, n in expected]  # fmt: skip
    for text in (db, web):
        assert _promtool(text) == (0, "")


def _promtool(text: str) -> tuple[int, str]:
    """`promtool check metrics` on `text`: its exit code and everything it said."""
    promtool = find_binary("promtool") or "promtool"
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    return done.returncode, done.stdout + done.stderr
