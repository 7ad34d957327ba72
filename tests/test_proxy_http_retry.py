"""Retries of an HTTP upstream, with a real agent, proxies and two instances, one failing.

`db` has two instances with `protocol: http` sidecars: a good (slow) app and a
broken one (it closes every `/echo` connection without answering, so its
sidecar answers 502). `web`'s upstream is `protocol: http`: a GET that
fails on the broken instance is sent again on the other one; a POST (not
idempotent) is never sent twice. The retry budget is tested as a pure core.
"""

from __future__ import annotations

import http.client
import random
import time
from collections.abc import Iterator

import pytest

from gossamer.proxy.balance import choose
from gossamer.proxy.peak_ewma import PeakEwma
from gossamer.proxy.retry_budget import RetryBudget
from tests.harness.cluster import Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import ProxyProc, set_intention, sidecar, wait_listening, web_body


def request(port: int, method: str, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=b"x" if method == "POST" else None)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, HttpApp, HttpApp]]:
    tmp = tmp_path_factory.mktemp("proxy-retry")
    c = Cluster(tmp)
    # the good instance is slower than a new instance's assumed 30 ms (peak_ewma.py) and than
    # the broken one's fast 502s to POSTs, so the balancer goes on trying the broken one
    good, bad = HttpApp(delay_s=0.05).start(), HttpApp(broken=True).start()
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("pr1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        pooled = free_port("127.0.0.1")
        for sid, app in (("db-good", good), ("db-bad", bad)):
            agent.put("/v1/agent/service/register", {
                "Name": "db", "ID": sid, "Port": app.port, "Address": agent.ip,
                "Connect": {"SidecarService": {"Port": free_port(agent.ip), "Address": agent.ip,
                            "Proxy": {"Config": {"protocol": "http"}}}},
            })  # fmt: skip
        upstream = {
            "DestinationName": "db",
            "LocalBindPort": pooled,
            "Config": {"protocol": "http"},
        }
        agent.put("/v1/agent/service/register", web_body(agent, free_port(agent.ip), [upstream]))
        set_intention(agent, "web", "db", "allow")
        proxies += [sidecar(agent, tmp, "db-good"), sidecar(agent, tmp, "db-bad"),
                    web := sidecar(agent, tmp, "web")]  # fmt: skip
        wait_listening("127.0.0.1", pooled, web)
        eventually(lambda: len(agent.get("/v1/health/connect/db?passing")) == 2, 30,
                   what="both db sidecars passing")  # fmt: skip
        # warm with POSTs: the broken instance answers them fast (502, not retried), so it
        # looks cheap to the balancer and the test's requests keep reaching it
        eventually(lambda: request(pooled, "POST", "/echo/warm") in (200, 502), 20,
                   what="a POST answered by either instance")  # fmt: skip
        yield pooled, good, bad
    finally:
        for proxy in proxies:
            proxy.stop()
        good.stop()
        bad.stop()
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def test_a_failed_get_is_retried_on_the_other_instance_a_post_never(
    mesh: tuple[int, HttpApp, HttpApp],
) -> None:
    pooled, _, bad = mesh
    statuses: list[int] = []
    deadline = time.monotonic() + 20
    while statuses.count(502) < 3 and time.monotonic() < deadline:
        statuses.append(request(pooled, "POST", f"/echo/p{len(statuses)}"))
    posts_on_bad = [p for p in bad.seen if p.startswith("POST /echo/p")]
    assert len(posts_on_bad) == statuses.count(502) == 3  # each reached the app once: no retry
    assert len(set(posts_on_bad)) == len(posts_on_bad)
    assert statuses.count(200) == len(statuses) - 3
    before = len(bad.seen)
    assert [request(pooled, "GET", f"/echo/g{i}") for i in range(30)] == [200] * 30
    assert any(p.startswith("GET") for p in bad.seen[before:])  # tried there, then retried


def test_the_retry_budget_caps_retries_at_a_ratio_of_requests_plus_a_floor() -> None:
    budget = RetryBudget(ratio=0.2, min_per_s=1, window_s=10)
    for _ in range(100):
        budget.request(1000.0)
    granted = sum(budget.try_retry(1000.5) for _ in range(100))
    assert granted == 10 + 20  # the floor (1/s over 10 s) plus 20 % of 100 requests
    assert not budget.try_retry(1001.0)
    assert budget.try_retry(1011.0)  # a window later the old requests and retries are gone


def test_peak_ewma_steers_requests_away_from_a_slow_instance_and_back() -> None:
    ewma: PeakEwma[str] = PeakEwma(tau_s=10.0)
    rng = random.Random(7)
    for t in range(20):
        ewma.observe("fast", 0.002, float(t))
        ewma.observe("slow", 0.002, float(t))
    ewma.observe("slow", 0.200, 20.0)  # one slow answer: its estimate jumps to it at once
    costs = ewma.costs(["fast", "slow"], {}, 20.0)
    picks = [choose(["fast", "slow"], costs, rng) for _ in range(200)]
    assert picks.count("slow") == 0  # of two instances both are drawn: the cheaper wins
    assert ewma.costs(["new"], {}, 20.0)["new"] == 0.030  # never measured: Linkerd's default
    assert ewma.costs(["slow"], {}, 50.0)["slow"] < 0.2 * 0.06  # decays without samples too
    for t in range(21, 120):  # fast answers again: it earns its way back
        ewma.observe("slow", 0.002, float(t))
    assert ewma.costs(["slow"], {}, 119.0)["slow"] < 0.004
    ewma.observe("fast", 0.002, 119.0)
    busy = ewma.costs(["fast", "slow"], {"fast": 9}, 119.0)  # in-flight requests weigh too
    assert busy["fast"] > busy["slow"]
