"""Retries of an HTTP upstream wait a back-off between tries, as Envoy's do (retry_backoff.py).

One agent, one `connect proxy --node` for every sidecar. `api` has one
instance (an HTTP app that notes when each request reached it) behind a
`protocol: http` sidecar; `web` has an HTTP upstream of api, with its
sidecar's metrics on a port of its own. A service-router route on
`/early/` sends a POST answered 500 again (`RetryOnStatusCodes`), so its
tries are timed where they land: at the app. Each retry waits a draw in
[0, (2^n - 1) x 25 ms], at most 250 ms; a wait that would pass the
request's deadline is not made; a client that goes away mid-wait leaves
nothing pending.
"""

from __future__ import annotations

import http.client
import itertools
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from gossamer.proxy.retry_backoff import interval_s
from tests.harness.cluster import AgentProc, Cluster, free_port, http_json
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    http_instance,
    series,
    set_intention,
    stop_mesh,
    timed_request,
    wait_listening,
    web_body,
)

SLACK_S = 0.3  # a try's own round trip through both sidecars, on a busy machine, at most


@dataclass
class TimedApp(HttpApp):
    """An HttpApp that also notes when each request reached it (the clock the sidecars use)."""

    at: list[tuple[str, float]] = field(default_factory=list)

    def _note(self, request: web.Request) -> None:
        super()._note(request)
        self.at.append((f"{request.method} {request.path_qs}", time.monotonic()))

    def times(self, line: str) -> list[float]:
        return [t for seen, t in self.at if seen == line]


@dataclass
class Mesh:
    agent: AgentProc
    app: TimedApp
    up: int  # web's HTTP upstream of api, on 127.0.0.1
    metrics: str  # web's sidecar's /metrics listener
    db_up: int  # web's HTTP upstream of db: a slow instance, and one whose app is down
    solo_up: int  # web's HTTP upstream of solo: one instance, its app down


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("backoff")
    c = Cluster(tmp)
    # db's slow instance is priced above an instance never tried (peak_ewma.py: 30 ms), so
    # requests go to its instance whose app is down until that one fails
    app, slow = TimedApp().start(), TimedApp(delay_s=0.05).start()
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("b1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        agent.put("/v1/config", {"Kind": "service-defaults", "Name": "api", "Protocol": "http"})
        down = free_port(agent.ip)  # nothing listens there
        inbound = [http_instance(agent, "api", "api-1", app.port),
                   http_instance(agent, "db", "db-slow", slow.port),
                   http_instance(agent, "db", "db-down", down),
                   http_instance(agent, "solo", "solo-down", down)]  # fmt: skip
        ups = {name: free_port("127.0.0.1") for name in ("api", "db", "solo")}
        body = web_body(agent, free_port(agent.ip), [
            {"DestinationName": name, "LocalBindPort": port, "Config": {"protocol": "http"}}
            for name, port in ups.items()
        ])  # fmt: skip
        metrics = f"127.0.0.1:{free_port('127.0.0.1')}"
        body["Connect"]["SidecarService"]["Proxy"]["Config"] = {  # type: ignore[index]
            "gossamer_metrics_bind_addr": metrics
        }
        agent.put("/v1/agent/service/register", body)
        for name in ups:
            set_intention(agent, "web", name, "allow")
        argv = ["--node", "--drain-timeout", "1", "--http-addr", agent.http]
        proxies.append(proxy := ProxyProc(argv, tmp / "proxy.log").start())
        for port in inbound:
            wait_listening(agent.ip, port, proxy)
        for port in ups.values():
            wait_listening("127.0.0.1", port, proxy)
        for name, count in (("api", 1), ("db", 2), ("solo", 1)):
            eventually(lambda n=name, k=count: healthy_sidecars(agent, n) == k, 30,
                       what=f"{name}'s sidecars")  # fmt: skip
        found = Mesh(agent, app, ups["api"], metrics, ups["db"], ups["solo"])
        eventually(lambda: post(found, "/echo/warm")[0] == 200, 20, what="a first request")
        yield found
    finally:
        leftovers = stop_mesh(c, proxies, [app, slow])
    assert not leftovers, f"processes left behind: {leftovers}"


def post(mesh: Mesh, path: str, method: str = "POST", port: int = 0) -> tuple[int, float]:
    """One request on a new connection (to api, else to web's upstream at `port`): its status
    and the seconds it took."""
    return timed_request(port or mesh.up, method, path)


def event(mesh: Mesh, name: str) -> float:
    return series(mesh.metrics, "gossamer_proxy_events_total", service="web",
                  event=f"outbound.http.{name}")  # fmt: skip


def route(mesh: Mesh, prefix: str, **destination: object) -> None:
    """A router on api whose one route takes `prefix` (to api) with `destination`'s fields,
    in force once an answer through it carries this route's own mark (an answer header)."""
    mark = str(time.monotonic_ns())
    mesh.agent.put("/v1/config", {"Kind": "service-router", "Name": "api", "Routes": [
        {"Match": {"HTTP": {"PathPrefix": prefix}},
         "Destination": {**destination, "ResponseHeaders": {"Set": {"X-Route": mark}}}},
    ]})  # fmt: skip

    def marked() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", mesh.up, timeout=10)
        try:
            conn.request("GET", f"{prefix}404")
            response = conn.getresponse()
            response.read()
            return response.getheader("X-Route") == mark
        finally:
            conn.close()

    eventually(marked, 20, what="the route in force")


@pytest.fixture(autouse=True)
def no_router(mesh: Mesh) -> Iterator[None]:
    yield
    agent = mesh.agent
    http_json(f"{agent.http}/v1/config/service-router/api", "DELETE", token=agent.token,
              cafile=agent.cafile)  # fmt: skip


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_a_route_s_retries_to_one_instance_are_spaced_out(mesh: Mesh) -> None:
    """NumRetries 8 to a single instance whose app answers 500: nine tries, spaced by Envoy's
    back-off (they all came within a few ms: no wait at all), each gap at most its
    interval plus a try's round trip, and their sum within the sum of the intervals."""
    route(mesh, "/early/", NumRetries=8, RetryOnStatusCodes=[500])
    waited = event(mesh, "retry_backoff")
    status, _ = post(mesh, "/early/500")
    times = mesh.app.times("POST /early/500")
    assert status == 500 and len(times) == 9, (status, times)
    spaced = gaps(times)
    assert all(g >= 0 for g in spaced), spaced
    longest = [interval_s(n) for n in range(1, 9)]  # 25, 75, 175, 250 x 5 ms
    assert all(g <= most + SLACK_S for g, most in zip(spaced, longest, strict=True)), spaced
    # the last five each wait a draw of [0, 250 ms]: all five within 100 ms is a 1e-4 chance
    assert 0.1 < sum(spaced) <= sum(longest) + SLACK_S, spaced
    assert event(mesh, "retry_backoff") == waited + 8


def test_the_sidecar_s_own_retries_wait_too(mesh: Mesh) -> None:
    """No router: a GET answered 503 is the sidecar's own to retry (twice); each retry waits
    its back-off, counted as `outbound.http.retry_backoff`."""
    waited = event(mesh, "retry_backoff")
    mesh.app.status = 503
    try:
        status, took = post(mesh, "/echo/own", "GET")
    finally:
        mesh.app.status = 200
    times = mesh.app.times("GET /echo/own")
    assert status == 503 and len(times) == 3, (status, times)
    assert all(g >= 0 for g in gaps(times)) and took <= 0.1 + SLACK_S, (times, took)
    assert event(mesh, "retry_backoff") == waited + 2


def test_the_deadline_cuts_the_retries_short(mesh: Mesh) -> None:
    """NumRetries 1000 and a 300 ms RequestTimeout: the retries stop at the first wait that
    would pass the deadline (counted as `outbound.http.retry_past_deadline`), and the client
    has the last answer by then; not some 100 tries in 0.26 s, until the retry budget."""
    route(mesh, "/early/", NumRetries=1000, RetryOnStatusCodes=[500], RequestTimeout="300ms")
    cut, late = event(mesh, "retry_past_deadline"), event(mesh, "request_timeout")
    status, took = post(mesh, "/early/500?cut")
    tries = len(mesh.app.times("POST /early/500?cut"))
    assert took < 0.3 + SLACK_S, (status, took)
    # 0.3 s of waits of up to 25, 75, 175, 250 ... ms: 20 tries is a freak draw of tiny waits
    assert 2 <= tries <= 20, tries
    # a wait that ends just before the deadline leaves its try to run past it: a 504, as
    # for any try out of time
    counted = (event(mesh, "retry_past_deadline") - cut, event(mesh, "request_timeout") - late)
    assert (status, counted) in ((500, (1, 0)), (504, (0, 1))), (status, counted)


def test_a_try_that_reached_no_app_goes_at_once_to_another_instance(mesh: Mesh) -> None:
    """db's instance whose app is down: its sidecar says the request reached no app, so web's
    sends it (a POST too) on to the other instance with no back-off, as before: that costs
    the app nothing. Counted as a retry, not as a wait."""
    retried, waited = event(mesh, "retries"), event(mesh, "retry_backoff")
    statuses = [post(mesh, f"/echo/d{i}", port=mesh.db_up)[0] for i in range(4)]
    assert statuses == [200] * 4
    assert event(mesh, "retries") > retried  # (a first try went to the instance that is down)
    assert event(mesh, "retry_backoff") == waited


def test_a_try_that_reached_no_app_waits_to_go_to_the_same_instance(mesh: Mesh) -> None:
    """solo's one instance has its app down: each retry goes back to it, so each waits its
    back-off (the sidecar's own two), and the client gets a 503."""
    waited = event(mesh, "retry_backoff")
    assert post(mesh, "/echo/solo", port=mesh.solo_up)[0] == 503
    assert event(mesh, "retry_backoff") == waited + 2


def test_a_client_that_ended_its_side_gets_the_answer_with_no_wait(mesh: Mesh) -> None:
    """The client sends its request and ends its side at once (a FIN, as a client that gives
    up or a half-closing one sends): a retry would wait for a client that has gone, so none
    is made (counted as `outbound.http.retry_dropped`); one still reading has the answer.
    The retries went on for it, nine tries in all. (The app answers 500 after 50 ms: the
    FIN is read before the answer.)"""
    route(mesh, "/echo/", NumRetries=8, RetryOnStatusCodes=[500])
    dropped = event(mesh, "retry_dropped")
    mesh.app.status, mesh.app.delay_s = 500, 0.05
    try:
        with socket.create_connection(("127.0.0.1", mesh.up), timeout=10) as client:
            client.sendall(b"POST /echo/ended HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n"
                           b"\r\nhi")  # fmt: skip
            client.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
    finally:
        mesh.app.status, mesh.app.delay_s = 200, 0.0
    assert answer.startswith(b"HTTP/1.1 500 "), answer[:100]
    assert len(mesh.app.times("POST /echo/ended")) == 1
    assert event(mesh, "retry_dropped") == dropped + 1


def _open_connections(mesh: Mesh) -> float:
    return series(mesh.metrics, "gossamer_proxy_tcp_open_connections", service="web",
                  direction="outbound")  # fmt: skip


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "reset"])
def test_a_client_gone_mid_backoff_leaves_nothing_pending(mesh: Mesh, reset: bool) -> None:
    """The client hangs up (a close, or a reset) while its request waits for a retry: the
    retry is dropped (counted as `outbound.http.retry_dropped`), no try reaches the app
    after that, and web's sidecar has no connection open. A close (a FIN) is taken for the
    client's going, as Envoy takes it: read as a half-close, it left the session trying on
    for nobody, until NumRetries or the budget. The hang-up is sent once the waits reach
    175 ms and one is under way (every retry scheduled has been counted, and none has
    reached the app yet); should that wait end before the hang-up lands, the round is run
    again."""
    route(mesh, "/early/", NumRetries=1000, RetryOnStatusCodes=[500])
    for round_ in range(5):
        dropped, waited = event(mesh, "retry_dropped"), event(mesh, "retry_backoff")
        line = f"POST /early/500?gone={round_}{'r' if reset else 'f'}"

        def waiting(line: str = line, waited: float = waited) -> bool:
            tries = len(mesh.app.times(line))
            return tries >= 3 and event(mesh, "retry_backoff") - waited == tries

        with socket.create_connection(("127.0.0.1", mesh.up), timeout=10) as client:
            client.sendall(f"{line} HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n\r\nhi"
                           .encode())  # fmt: skip
            eventually(waiting, 10, interval=0.002, what="a retry waiting its back-off")
            if reset:  # a close with SO_LINGER 0 sends a RST
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        eventually(lambda: _open_connections(mesh) == 0, 10, what="no connection open at web")
        if event(mesh, "retry_dropped") == dropped + 1:
            break
    else:
        pytest.fail("no hang-up landed in a back-off in 5 rounds")
    tries = len(mesh.app.times(line))
    assert event(mesh, "retry_backoff") - waited == tries  # nothing went after the hang-up
