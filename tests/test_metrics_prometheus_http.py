"""HTTP golden metrics end to end: a real Prometheus scrapes two real sidecars on the L7 path.

`db` is `protocol: http` behind an L7 intention web -> db: deny `PathPrefix
/admin`, allow `PathPrefix /` (routes `/admin*` and `/*`, named by
rules.py `route_name`); `web` reaches it over an `http` upstream. The test
sends known traffic: OK 200s, DENIED 403s by intention, MISSING 404s from
the app; Debian's `prometheus` scrapes both sidecars every second, and its
query API must give exactly those counts by edge, route and status class.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from textual.widgets import DataTable

from gossamer.intentions.model import HTTPMatch
from gossamer.intentions.rules import route_name
from gossamer.intentions.tui.app import IntentionsApp
from gossamer.intentions.tui.denials_screen import DenialsScreen
from gossamer.intentions.tui.main_screen import MainScreen
from tests.harness.binaries import needs
from tests.harness.cluster import AgentProc, Cluster, free_port, put_exact
from tests.harness.poll import eventually
from tests.harness.prometheus import query, settles_at
from tests.harness.prometheus import start as start_prometheus
from tests.harness.tui import until
from tests.http_app import HttpApp
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    sidecar,
    status_of,
    stop_mesh,
    wait_listening,
    web_body,
)

pytestmark = needs("prometheus", "serf")
OK, DENIED, MISSING = 6, 3, 4
INTO = 'direction="inbound",source="web",destination="db"'
OUT = 'direction="outbound",source="web",destination="db"'
ALL, ADMIN = 'route="/*"', 'route="/admin*"'
P = "gossamer_proxy_"
# (which proxy, series as rendered, what the traffic adds to it)
SERIES = [
    ("db", f'{P}response_total{{{INTO},{ALL},status_class="2xx"}}', OK),
    ("db", f'{P}response_total{{{INTO},{ALL},status_class="4xx"}}', MISSING),
    ("db", f'{P}response_total{{{INTO},{ADMIN},status_class="4xx"}}', DENIED),
    ("db", f"{P}request_total{{{INTO},{ADMIN}}}", DENIED),
    ("db", f"{P}request_total{{{INTO},{ALL}}}", OK + MISSING),
    ("db", f"{P}response_latency_seconds_count{{{INTO},{ALL}}}", OK + MISSING),
    ("db", f'{P}authz_total{{{INTO},decision="deny"}}', DENIED),
    ("web", f'{P}response_total{{{OUT},status_class="2xx"}}', OK),
    ("web", f'{P}response_total{{{OUT},status_class="4xx"}}', DENIED + MISSING),
]


@dataclass
class Sent:
    agent: AgentProc
    prometheus: str  # base URL of its HTTP API
    before: dict[str, float]


def rendered(addr: str, series: str) -> float:
    """A series' value as the proxy renders it (0 before it exists)."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sent]:
    tmp = tmp_path_factory.mktemp("metrics-http")
    c = Cluster(tmp)
    app = HttpApp().start()
    proxies: list[ProxyProc] = []
    prom: subprocess.Popen[bytes] | None = None
    try:
        agent = c.new_agent("mh1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        up, db_m, web_m = (free_port("127.0.0.1") for _ in range(3))
        at = {"db": f"127.0.0.1:{db_m}", "web": f"127.0.0.1:{web_m}"}
        agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": app.port, "Address": agent.ip,
            "Connect": {"SidecarService": {"Port": free_port(agent.ip), "Address": agent.ip,
                        "Proxy": {"Config": {"protocol": "http",
                                             "gossamer_metrics_bind_addr": at["db"]}}}},
        })  # fmt: skip
        web = web_body(
            agent,
            free_port(agent.ip),
            [{"DestinationName": "db", "LocalBindPort": up, "Config": {"protocol": "http"}}],
        )
        web["Connect"]["SidecarService"]["Proxy"]["Config"] = {  # type: ignore[index]
            "gossamer_metrics_bind_addr": at["web"]}  # fmt: skip
        agent.put("/v1/agent/service/register", web)
        put_exact(agent, "web", "db", {"Permissions": [
            {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
            {"Action": "allow", "HTTP": {"PathPrefix": "/"}},
        ]})  # fmt: skip
        proxies += [db := sidecar(agent, tmp, "db"), web_p := sidecar(agent, tmp, "web")]
        wait_listening("127.0.0.1", db_m, db)
        wait_listening("127.0.0.1", up, web_p)
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        eventually(lambda: status_of(up, "GET", "/echo/warm") == 200, 20,
                   what="a first request through")  # fmt: skip
        before = {series: rendered(at[proxy], series) for proxy, series, _ in SERIES}
        assert [status_of(up, "GET", f"/echo/{i}") for i in range(OK)] == [200] * OK
        assert [status_of(up, "GET", f"/admin/{i}") for i in range(DENIED)] == [403] * DENIED
        assert [status_of(up, "GET", f"/nosuch/{i}") for i in range(MISSING)] == [404] * MISSING
        jobs = [{"job_name": "proxies", "static_configs": [{"targets": list(at.values())}]}]
        prom, base = start_prometheus(tmp, jobs)
        yield Sent(agent, base, before)
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(20)
        leftovers = stop_mesh(c, proxies, [app])
    assert not leftovers, f"processes left behind: {leftovers}"


def test_http_counts_by_route_and_status_class_match_the_traffic_sent(sent: Sent) -> None:
    for _, series, added in SERIES:
        settles_at(sent.prometheus, series, sent.before[series] + added)


def test_routes_are_the_permissions_never_the_paths(sent: Sent) -> None:
    promql = P + "request_total"
    eventually(lambda: len(query(sent.prometheus, promql)) == 3, 30, what=f"{promql} scraped")
    routes = {r["metric"].get("route") for r in query(sent.prometheus, promql)}
    assert routes == {"/*", "/admin*", None}  # None: the outbound edge, which decides nothing


@pytest.mark.parametrize(("http", "route"), [
    (HTTPMatch(path_prefix="/api", methods=("get", "HEAD")), "GET,HEAD /api*"),
    (HTTPMatch(path_exact="/health"), "/health"),
    (HTTPMatch(path_regex="^/u/[0-9]+$"), "~^/u/[0-9]+$"),
    (HTTPMatch(), "*"),
])  # fmt: skip
def test_a_route_is_named_by_its_permission(http: HTTPMatch, route: str) -> None:
    assert route_name(http) == route


async def test_the_tui_denials_pane_shows_the_edge_figures(sent: Sent) -> None:
    app = IntentionsApp(sent.agent.http)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.loaded and isinstance(app.screen, MainScreen), "the list")
        await pilot.press("x")
        screen = await until(pilot, lambda: isinstance(app.screen, DenialsScreen) and app.screen,
                             "the denials pane")  # fmt: skip
        denied = sent.before[f'{P}authz_total{{{INTO},decision="deny"}}'] + DENIED
        shown = lambda: [(e.source, e.destination, e.denied) for e in screen.edges]  # noqa: E731
        await until(pilot, lambda: shown() == [("web", "db", denied)], "db's figures shown")
        table = screen.query_one("#edge-denials", DataTable)
        assert [str(c) for c in table.get_row_at(0)] == ["web", "db", str(int(denied)), "0",
                                                        "db-sidecar-proxy"]  # fmt: skip
