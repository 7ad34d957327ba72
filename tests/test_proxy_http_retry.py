"""Retries of an HTTP upstream, with a real agent, proxies and two instances, one failing.

`db` has two instances with `protocol: http` sidecars: a good (slow) app and a
broken one (it closes every `/echo` connection without answering, so its
sidecar answers 502). `web`'s upstream is `protocol: http`: a GET that
fails on the broken instance is sent again on the other one; a POST (not
idempotent) is never sent twice; either failure prices the broken instance
as slow, so the requests that follow go to the other. A failed answer that arrives together with its
connection's end is retried once, on the other instance. The retry budget is
tested as a pure core.
"""

from __future__ import annotations

import http.client
import math
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gossamer.proxy.balance import choose
from gossamer.proxy.peak_ewma import PeakEwma
from gossamer.proxy.retry_budget import RetryBudget
from tests.harness.cluster import Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import ProxyProc, set_intention, sidecar, wait_listening, web_body


def send(port: int, method: str, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=b"x" if method == "POST" else None)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@dataclass
class Mesh:
    pooled: int  # web's upstream listener for db
    good: HttpApp
    bad: HttpApp
    web: ProxyProc
    bad_sidecar: tuple[str, int]  # where web's pooled connections to the broken instance go


@pytest.fixture
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Mesh]:  # fmt: skip
    """A fresh mesh per test: what one test teaches the balancer (peak_ewma.py) about the
    broken instance would steer the next test's requests away from it. A test may give
    more keys of web's upstream `Config` (indirect parametrization)."""
    tmp = tmp_path_factory.mktemp("proxy-retry")
    c = Cluster(tmp)
    # the good instance is slower than a new instance's assumed 30 ms (peak_ewma.py) and than
    # the broken one's fast 502s to POSTs, so the balancer goes on trying the broken one
    good, bad = HttpApp(delay_s=0.05).start(), HttpApp(broken=True).start()
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("pr1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        pooled, sidecar_ports = free_port("127.0.0.1"), {}
        for sid, app in (("db-good", good), ("db-bad", bad)):
            sidecar_ports[sid] = free_port(agent.ip)
            agent.put("/v1/agent/service/register", {
                "Name": "db", "ID": sid, "Port": app.port, "Address": agent.ip,
                "Connect": {"SidecarService": {"Port": sidecar_ports[sid], "Address": agent.ip,
                            "Proxy": {"Config": {"protocol": "http"}}}},
            })  # fmt: skip
        upstream = {
            "DestinationName": "db",
            "LocalBindPort": pooled,
            "Config": {"protocol": "http", **getattr(request, "param", {})},
        }
        agent.put("/v1/agent/service/register", web_body(agent, free_port(agent.ip), [upstream]))
        set_intention(agent, "web", "db", "allow")
        proxies += [sidecar(agent, tmp, "db-good"), sidecar(agent, tmp, "db-bad")]
        eventually(lambda: len(agent.get("/v1/health/connect/db?passing")) == 2, 30,
                   what="both db sidecars passing")  # fmt: skip
        proxies.append(web := sidecar(agent, tmp, "web"))  # (its first answer holds both)
        wait_listening("127.0.0.1", pooled, web)
        # warm with a request both instances answer: a failure on the broken one would price
        # it as a slow instance (peak_ewma.py), and the test's requests would not reach it;
        # the good one's 50 ms answers to `/echo` price it above a new instance's 30 ms, so
        # one of a test's first requests goes to the broken one
        eventually(lambda: send(pooled, "GET", "/sleep/0") == 200, 20,
                   what="a request answered by either instance")  # fmt: skip
        yield Mesh(pooled, good, bad, web, (agent.ip, sidecar_ports["db-bad"]))
    finally:
        for proxy in proxies:
            proxy.stop()
        good.stop()
        bad.stop()
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def test_a_post_that_reached_the_app_is_never_sent_again(mesh: Mesh) -> None:
    statuses: list[int] = []
    deadline = time.monotonic() + 20
    while 502 not in statuses and time.monotonic() < deadline:  # until one lands on the broken
        statuses.append(send(mesh.pooled, "POST", f"/echo/p{len(statuses)}"))
    assert statuses[-1] == 502 and statuses[:-1] == [200] * (len(statuses) - 1)
    failed = f"POST /echo/p{len(statuses) - 1}"
    assert mesh.bad.seen.count(failed) == 1  # it reached the app once: not sent again
    assert mesh.good.seen.count(failed) == 0
    # the broken instance is priced as slow now: the next POSTs go to the good one
    assert [send(mesh.pooled, "POST", f"/echo/q{i}") for i in range(10)] == [200] * 10


def test_a_failed_get_is_retried_on_the_other_instance(mesh: Mesh) -> None:
    assert [send(mesh.pooled, "GET", f"/echo/g{i}") for i in range(10)] == [200] * 10
    tried = [p for p in mesh.bad.seen if p.startswith("GET /echo/g")]
    assert len(tried) == 1  # tried there once, then retried; then it is priced as slow
    assert mesh.good.seen.count(tried[0]) == 1


@pytest.mark.parametrize(
    "mesh", [{"retry_ratio": 0, "retry_min_per_second": "0"}], indirect=True, ids=["no-budget"]
)
def test_an_upstream_given_no_retry_budget_sends_a_failed_get_once(mesh: Mesh) -> None:
    """`retry_ratio` and `retry_min_per_second` (Linkerd's retryRatio and
    minRetriesPerSecond) set the budget; at 0 and 0 a GET that fails is not retried."""
    statuses: list[int] = []
    deadline = time.monotonic() + 20
    while 502 not in statuses and time.monotonic() < deadline:  # until one lands on the broken
        statuses.append(send(mesh.pooled, "GET", f"/echo/n{len(statuses)}"))
    assert statuses[-1] == 502, statuses
    failed = f"GET /echo/n{len(statuses) - 1}"
    assert (mesh.bad.seen.count(failed), mesh.good.seen.count(failed)) == (1, 0)


def test_a_retried_chunked_request_with_no_body_is_sent_whole(mesh: Mesh) -> None:
    """A PUT framed as chunked with no chunk (Go's client sends one for an empty body of
    unknown length) is retried when it fails: the retry must carry the end of the chunks too,
    or the next instance waits for a body that never comes and the client gets a 504."""
    on_bad = len([p for p in mesh.bad.seen if p.startswith("PUT")])
    for i in range(30):
        conn = http.client.HTTPConnection("127.0.0.1", mesh.pooled, timeout=10)
        try:
            conn.putrequest("PUT", f"/echo/c{i}")
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders(b"0\r\n\r\n")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, f"PUT /echo/c{i} ".encode())
        finally:
            conn.close()
    assert len([p for p in mesh.bad.seen if p.startswith("PUT")]) > on_bad  # some retried


def _answered_unread(address: tuple[str, int]) -> bool:
    """A connection to `address` with bytes this side has not read (the answer and the end
    of its stream, one record of the connection shared between the sidecars), or that the
    peer closed (a connection of its own)."""
    out = subprocess.run(["ss", "-Htn", "dst", f"{address[0]}:{address[1]}"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.strip()]
    return any(row[0] == "CLOSE-WAIT" or int(row[1]) > 0 for row in rows)


class Call:
    """One GET on its own thread, so the test can act while it is in flight."""

    def __init__(self, port: int, path: str) -> None:
        self.path, self.answer = path, list[int]()
        self.thread = threading.Thread(target=lambda: self.answer.append(send(port, "GET", path)))
        self.thread.start()

    def seen_by(self, app: HttpApp) -> int:
        return app.seen.count(f"GET {self.path}")


def test_a_failure_read_with_its_connections_end_is_retried_once_elsewhere(mesh: Mesh) -> None:
    """The broken instance's 502 and the end of its connection (a stream's END, or
    close_notify and FIN) reach web's proxy in one read (the proxy is stopped while they
    arrive): the retry goes to the good instance, and the end of the failed connection must
    not be taken for the end of the one the retry borrowed."""
    mesh.bad.delay_s = 1.0  # it hangs up a second after the request: time to stop web
    for i in range(40):  # until a request's first attempt lands on the broken instance
        call = Call(mesh.pooled, f"/echo/b{i}")
        eventually(lambda c=call: c.answer or c.seen_by(mesh.bad), 10, interval=0.005,
                   what=f"{call.path} answered or on the broken instance")  # fmt: skip
        if call.answer or not call.seen_by(mesh.bad):
            call.thread.join(10)
            continue
        mesh.web.signal(signal.SIGSTOP)
        try:
            eventually(lambda: _answered_unread(mesh.bad_sidecar), 10,
                       what="the broken instance's sidecar answered and closed")  # fmt: skip
        finally:
            mesh.web.signal(signal.SIGCONT)
        call.thread.join(10)
        assert call.answer == [200]
        assert call.seen_by(mesh.good) == 1  # retried once, there
        assert call.seen_by(mesh.bad) == 1
        return
    pytest.fail("no request's first attempt reached the broken instance in 40 tries")


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


def test_peak_ewma_a_faster_answer_never_raises_a_cost_a_slower_one_is_the_peak() -> None:
    """Against the estimate as priced (decayed toward zero since the last sample): a faster
    answer pulls it down, never up; a slower one is the new peak, at once."""
    ewma: PeakEwma[str] = PeakEwma(tau_s=10.0)
    ewma.observe("a", 10.0, 0.0)  # a 10 s answer at t=0
    before = ewma.costs(["a"], {}, 30.0)["a"]  # ~0.5 by t=30
    ewma.observe("a", 0.030, 30.0)
    assert ewma.costs(["a"], {}, 30.0)["a"] < before
    ewma.observe("b", 1.0, 0.0)
    assert ewma.costs(["b"], {}, 10.0)["b"] == pytest.approx(math.exp(-1.0))  # ~0.37
    ewma.observe("b", 0.5, 10.0)  # above what it is priced at: the peak
    assert ewma.costs(["b"], {}, 10.0)["b"] == 0.5
