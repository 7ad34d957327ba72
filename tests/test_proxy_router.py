"""service-router entries obeyed by real sidecars: routes by path, header and method, to
another service or a subset, PrefixRewrite and header edits as the app sees them, a route's
own RequestTimeout, a live change on a kept connection, and the agent's 400s.

Two agents. On s1, `api` has two instances, `api-1` (Meta version=v1) and `api-2`
(version=v2), and `api-next` one; each an HTTP app behind a sidecar, all served by one
`connect proxy --node`. On s2, `web` has an HTTP upstream of api (its own `--node` proxy).
`service-defaults` give api and api-next `Protocol: http`, which a router needs (Consul's
rule). Which app took a request, and what it saw, is read from the apps.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.harness.cli import expect, gossamer
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    http_instance,
    series,
    set_intention,
    stop_mesh,
    wait_listening,
    web_body,
)

SUBSETS = {"v1": {"Filter": "Service.Meta.version == v1"},
           "v2": {"Filter": "Service.Meta.version == v2"}}  # fmt: skip


@dataclass
class HeaderApp(HttpApp):
    """An HttpApp that also keeps each request's headers."""

    headers: list[dict[str, str]] = field(default_factory=list)

    def _note(self, request: web.Request) -> None:
        super()._note(request)
        self.headers.append(dict(request.headers))


@dataclass
class Mesh:
    s1: AgentProc
    apps: dict[str, HeaderApp]  # "v1", "v2", "next"
    up: tuple[str, int]  # web's HTTP upstream of api
    web_metrics: str  # web's sidecar's /metrics listener
    s2: AgentProc  # web's agent


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("router")
    c = Cluster(tmp)
    apps = {k: HeaderApp().start() for k in ("v1", "v2", "next")}
    proxies: list[ProxyProc] = []
    try:
        s1 = c.new_agent("s1").start()
        s2 = c.new_agent("s2", "--join", s1.serf_addr).start()
        for agent in (s1, s2):
            eventually(agent.enrolled, 20, what=f"{agent.name}'s certificate")
        for name in ("api", "api-next"):
            s1.put("/v1/config", {"Kind": "service-defaults", "Name": name, "Protocol": "http"})
        ins = [http_instance(s1, "api", "api-1", apps["v1"].port, {"version": "v1"}),
               http_instance(s1, "api", "api-2", apps["v2"].port, {"version": "v2"}),
               http_instance(s1, "api-next", "api-next", apps["next"].port,
                             {"tier": "next"})]  # fmt: skip
        port = free_port("127.0.0.1")
        up = {"DestinationName": "api", "LocalBindPort": port, "Config": {"protocol": "http"}}
        web = web_body(s2, free_port(s2.ip), [up])
        web_metrics = f"127.0.0.1:{free_port('127.0.0.1')}"
        web["Connect"]["SidecarService"]["Proxy"]["Config"] = {  # type: ignore[index]
            "gossamer_metrics_bind_addr": web_metrics
        }
        s2.put("/v1/agent/service/register", web)
        for destination in ("api", "api-next"):
            set_intention(s1, "web", destination, "allow")
        for agent in (s1, s2):
            argv = ["--node", "--drain-timeout", "1", "--http-addr", agent.http]
            proxies.append(ProxyProc(argv, tmp / f"proxy-{agent.name}.log").start())
        for inbound in ins:
            wait_listening(s1.ip, inbound, proxies[0])
        wait_listening("127.0.0.1", port, proxies[1])
        eventually(lambda: healthy_sidecars(s2, "api") == 2, 30, what="both api instances")
        eventually(lambda: healthy_sidecars(s2, "api-next") == 1, 30, what="api-next")
        found = Mesh(s1, apps, ("127.0.0.1", port), web_metrics, s2)
        eventually(lambda: served(found)[0] in ("v1", "v2"), 20, what="a first request")
        yield found
    finally:
        leftovers = stop_mesh(c, proxies, apps.values())
    assert not leftovers, f"processes left behind: {leftovers}"


def config(mesh: Mesh, method: str, path: str, body: object = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection(mesh.s1.ip, mesh.s1.http_port, timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body))
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def write(mesh: Mesh, kind: str, name: str, **fields: Any) -> None:
    status, text = config(mesh, "PUT", "/v1/config", {"Kind": kind, "Name": name, **fields})
    assert (status, text) == (200, "true"), text


@pytest.fixture(autouse=True)
def clean(mesh: Mesh) -> Iterator[None]:
    """Each test ends with no router or resolver, and requests to api going to api again."""
    yield
    for kind in ("service-router", "service-resolver"):
        config(mesh, "DELETE", f"/v1/config/{kind}/api")
    eventually(lambda: {served(mesh, "/echo/next")[0] for _ in range(6)} <= {"v1", "v2"}, 20,
               what="requests to api only")  # fmt: skip


def served(mesh: Mesh, path: str = "/echo/r", method: str = "GET",
           headers: dict[str, str] | None = None,
           conn: http.client.HTTPConnection | None = None) -> tuple[str, int, str]:  # fmt: skip
    """(the app that took one request, the status, what that app saw: `METHOD PATH`)."""
    before = {k: len(app.seen) for k, app in mesh.apps.items()}
    c = conn or http.client.HTTPConnection(*mesh.up, timeout=10)
    try:
        c.request(method, path, headers=headers or {})
        response = c.getresponse()
        response.read()
    finally:
        if conn is None:
            c.close()
    grown = [k for k, app in mesh.apps.items() if len(app.seen) > before[k]]
    assert len(grown) <= 1, f"one request should reach one app at most, got {grown}"
    if not grown:
        return "", response.status, ""
    return grown[0], response.status, mesh.apps[grown[0]].seen[-1]


def routed(mesh: Mesh, want: str, **kwargs: Any) -> None:
    """Poll until requests made as `kwargs` say go to `want` (a change takes a moment)."""
    eventually(lambda: {served(mesh, **kwargs)[0] for _ in range(4)} == {want}, 20,
               what=f"{kwargs} to {want}")  # fmt: skip


def test_a_path_prefix_to_another_service_with_its_prefix_rewritten(mesh: Mesh) -> None:
    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"PathPrefix": "/next/"}},
         "Destination": {"Service": "api-next", "PrefixRewrite": "/echo/",
                         "RequestHeaders": {"Set": {"X-Routed": "next"},
                                            "Remove": ["X-Secret"]}}},
    ])  # fmt: skip
    routed(mesh, "next", path="/next/a?b=1")
    app, status, saw = served(mesh, "/next/users/7?b=1", headers={"X-Secret": "s"})
    assert (app, status, saw) == ("next", 200, "GET /echo/users/7?b=1")
    seen = mesh.apps["next"].headers[-1]
    assert seen.get("X-Routed") == "next" and "X-Secret" not in seen
    assert served(mesh, "/echo/plain")[0] in ("v1", "v2")  # no route fits: api itself
    assert "X-Routed" not in mesh.apps["v1"].headers[-1:] and all(
        "X-Routed" not in h for app in ("v1", "v2") for h in mesh.apps[app].headers
    )


def test_a_header_routes_to_a_canary_subset(mesh: Mesh) -> None:
    write(mesh, "service-resolver", "api", DefaultSubset="v1", Subsets=SUBSETS)
    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"Header": [{"Name": "x-canary", "Exact": "1"}]}},
         "Destination": {"ServiceSubset": "v2"}},
    ])  # fmt: skip
    routed(mesh, "v2", headers={"X-Canary": "1"})
    routed(mesh, "v1")
    assert {served(mesh, headers={"x-canary": "2"})[0] for _ in range(6)} == {"v1"}


def test_a_route_to_a_subset_of_another_service_whose_own_has_no_resolver(mesh: Mesh) -> None:
    """api has no resolver, so its listener has no resolver routing; the route's target key
    `api-next/all` must still be dialled as api-next (its SPIFFE ID), not as `api-next/all`."""
    write(mesh, "service-resolver", "api-next",
          Subsets={"all": {"Filter": "Service.Meta.tier == next"}})  # fmt: skip
    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"PathPrefix": "/echo/sub"}},
         "Destination": {"Service": "api-next", "ServiceSubset": "all"}},
    ])  # fmt: skip
    try:
        routed(mesh, "next", path="/echo/sub")
        assert served(mesh, "/echo/sub/x")[1:] == (200, "GET /echo/sub/x")
    finally:
        config(mesh, "DELETE", "/v1/config/service-router/api")
        config(mesh, "DELETE", "/v1/config/service-resolver/api-next")


def test_a_method_match(mesh: Mesh) -> None:
    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"Methods": ["POST", "PUT"]}}, "Destination": {"Service": "api-next"}},
    ])  # fmt: skip
    routed(mesh, "next", method="POST")
    assert served(mesh, method="PUT")[0] == "next"
    assert served(mesh, method="GET")[0] in ("v1", "v2")


def test_a_route_s_request_timeout_answers_504(mesh: Mesh) -> None:
    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"PathPrefix": "/sleep/"}},
         "Destination": {"RequestTimeout": "300ms"}},
    ])  # fmt: skip

    def timed_out() -> bool:
        started = time.monotonic()
        _, status, _ = served(mesh, "/sleep/3000")
        return status == 504 and time.monotonic() - started < 2.5

    eventually(timed_out, 20, what="a 504 after the route's 300 ms")
    assert served(mesh, "/sleep/500")[1] == 504
    assert served(mesh, "/echo/fast")[1] == 200  # another route's (none's) timeout: the upstream's


def test_a_route_s_idle_timeout_answers_504_for_a_silent_try(mesh: Mesh) -> None:
    """IdleTimeout 300ms in place of the upstream's 300 s: a POST (not resent) whose app
    says nothing for 3 s is answered 504 well before; a request no route takes waits."""
    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"PathPrefix": "/sleep/3"}},
         "Destination": {"Service": "api-next", "IdleTimeout": "300ms"}},
    ])  # fmt: skip

    def cut() -> bool:
        started = time.monotonic()
        status, tries = _tries(mesh, "next", "/sleep/3000")
        return (status, tries) == (504, 1) and time.monotonic() - started < 2.0

    eventually(cut, 20, what="a 504 after the route's 300 ms of silence")
    assert served(mesh, "/sleep/600")[:2] in (("v1", 200), ("v2", 200))


def test_a_live_change_applies_to_the_next_request_on_a_kept_connection(mesh: Mesh) -> None:
    kept = http.client.HTTPConnection(*mesh.up, timeout=10)
    try:
        assert served(mesh, "/echo/k", conn=kept)[0] in ("v1", "v2")
        write(mesh, "service-router", "api", Routes=[
            {"Match": {"HTTP": {"PathPrefix": "/echo"}}, "Destination": {"Service": "api-next"}},
        ])  # fmt: skip
        eventually(lambda: served(mesh, "/echo/k", conn=kept)[0] == "next", 20,
                   what="the kept connection's next request to api-next")  # fmt: skip
        write(mesh, "service-router", "api", Routes=[
            {"Match": {"HTTP": {"PathPrefix": "/other"}}, "Destination": {"Service": "api-next"}},
        ])  # fmt: skip
        eventually(lambda: served(mesh, "/echo/k", conn=kept)[0] in ("v1", "v2"), 20,
                   what="the kept connection's next request back to api")  # fmt: skip
    finally:
        kept.close()


def test_outbound_metrics_name_the_route_a_request_took(mesh: Mesh) -> None:
    """Each route's requests count under `route="route <index> -> <destination>"` on web's
    outbound edge (responses by class and latency too); a request no route took counts with
    no route label, as with no router."""
    write(mesh, "service-resolver", "api", Subsets=SUBSETS)
    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"PathPrefix": "/next/"}},
         "Destination": {"Service": "api-next", "PrefixRewrite": "/echo/"}},
        {"Match": {"HTTP": {"Header": [{"Name": "x-canary", "Present": True}]}},
         "Destination": {"ServiceSubset": "v2"}},
    ])  # fmt: skip
    routed(mesh, "next", path="/next/warm")
    routed(mesh, "v2", headers={"x-canary": "1"})
    edge = {"direction": "outbound", "source": "web", "destination": "api"}
    first, second = "route 0 -> api-next", "route 1 -> api/v2"

    def count(name: str, **labels: str) -> float:
        return series(mesh.web_metrics, f"gossamer_proxy_{name}", **edge, **labels)

    before = {r: count("request_total", route=r) for r in (first, second)}
    plain = count("request_total") - sum(before.values())  # the unlabelled series
    for _ in range(3):
        assert served(mesh, "/next/x")[:2] == ("next", 200)
    assert served(mesh, "/echo/y", headers={"x-canary": "1"})[:2] == ("v2", 200)
    assert served(mesh, "/echo/z")[1] == 200  # no route: api as with no router
    assert count("request_total", route=first) == before[first] + 3
    assert count("request_total", route=second) == before[second] + 1
    assert count("request_total") - count("request_total", route=first) - count(
        "request_total", route=second) == plain + 1  # fmt: skip
    assert count("response_total", route=first, status_class="2xx") >= 3
    assert count("response_latency_seconds_count", route=second) >= 1
    with urllib.request.urlopen(f"http://{mesh.web_metrics}/metrics", timeout=10) as answer:
        routes = set(re.findall(r'route="([^"]*)"', answer.read().decode()))
    assert {first, second} <= routes and all(r.startswith("route ") for r in routes), routes
    # `gossamer stat --routes` shows them (and the requests no route took) per edge
    said = json.loads(gossamer("stat", "--routes", "--json", "--http-addr", mesh.s2.http).stdout)
    mine = {r["route"]: r for r in said if r["direction"] == "outbound" and r["source"] == "web"}
    assert {first, second, "[default]"} <= set(mine), said
    # (other tests' routes share these labels: counts since the proxy started)
    assert mine[first]["requests"] >= 3 and mine[first]["success_rate"] > 0


def test_response_headers_are_edited_on_the_route_s_answers_only(mesh: Mesh) -> None:
    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"PathPrefix": "/next/"}},
         "Destination": {"Service": "api-next", "PrefixRewrite": "/echo/",
                         "ResponseHeaders": {"Remove": ["Server"], "Set": {"X-Route": "next"},
                                             "Add": {"Vary": "x-canary"}}}},
    ])  # fmt: skip
    routed(mesh, "next", path="/next/warm")

    def answer(path: str) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(*mesh.up, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            return response
        finally:
            conn.close()

    routed_answer = answer("/next/a")
    assert routed_answer.status == 200 and routed_answer.getheader("X-Route") == "next"
    assert routed_answer.getheader("Server") is None
    assert routed_answer.getheader("Vary") == "x-canary"
    assert routed_answer.getheader("Content-Length") == str(len(b"GET /echo/a "))
    plain = answer("/echo/b")  # no route took it: the app's head as it was
    assert plain.getheader("Server") and plain.getheader("X-Route") is None


def _tries(mesh: Mesh, app: str, path: str, method: str = "POST") -> tuple[int, int]:
    """(the status a client got for one request, how many times `app` saw it)."""
    before = len(mesh.apps[app].seen)
    conn = http.client.HTTPConnection(*mesh.up, timeout=10)
    try:
        conn.request(method, path, body=b"hi")
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    return response.status, mesh.apps[app].seen[before:].count(f"{method} {path}")


def test_a_route_s_retries_send_a_post_again_on_its_status_codes(mesh: Mesh) -> None:
    """NumRetries and RetryOnStatusCodes as Envoy reads them: a POST answered 500 is sent
    again up to NumRetries times (the sidecar alone never resends a POST after an answer),
    each retry counted against the upstream's retry budget; other statuses go back as
    they came."""
    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"PathPrefix": "/early/"}},
         "Destination": {"Service": "api-next", "NumRetries": 3,
                         "RetryOnStatusCodes": [500]}},
    ])  # fmt: skip
    eventually(lambda: _tries(mesh, "next", "/early/404") == (404, 1), 20,
               what="the route to api-next")  # fmt: skip
    event = {"service": "web", "event": "outbound.http.retries"}
    retries = series(mesh.web_metrics, "gossamer_proxy_events_total", **event)
    assert _tries(mesh, "next", "/early/500") == (500, 4)
    assert series(mesh.web_metrics, "gossamer_proxy_events_total", **event) == retries + 3
    assert _tries(mesh, "next", "/early/404") == (404, 1)
    assert _tries(mesh, "next", "/early/503") == (503, 1)  # a POST: not the sidecar's to resend


def test_retry_on_gateway_error_resends_a_post_whose_app_hung_up(mesh: Mesh) -> None:
    """The far sidecar answers 502 for an app that closed without answering; `RetryOn:
    gateway-error` sends a POST again on it (NumRetries unset: the sidecar's own 2)."""
    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"PathExact": "/echo/hang"}},
         "Destination": {"Service": "api-next", "RetryOn": ["gateway-error"]}},
    ])  # fmt: skip
    eventually(lambda: _tries(mesh, "next", "/echo/hang") == (200, 1), 20,
               what="the route to api-next")  # fmt: skip
    mesh.apps["next"].broken = True
    try:
        assert _tries(mesh, "next", "/echo/hang") == (502, 3)
        write(mesh, "service-router", "api", Routes=[
            {"Match": {"HTTP": {"PathExact": "/echo/hang"}},
             "Destination": {"Service": "api-next"}},
        ])  # fmt: skip
        eventually(lambda: _tries(mesh, "next", "/echo/hang") == (502, 1), 20,
                   what="no retry of a POST once the route says none")  # fmt: skip
    finally:
        mesh.apps["next"].broken = False


BAD = [
    ({"Routes": [{"Match": {"HTTP": {"PathPrefix": "v2"}}}]}, "Routes[0].Match.HTTP.PathPrefix"),
    ({"Routes": [{"Destination": {"NumRetries": -2}}]}, "Routes[0].Destination.NumRetries"),
    ({"Routes": [{"Destination": {"RetryOn": ["unavailable"]}}]},
     "Routes[0].Destination.RetryOn[0]"),
    ({"Routes": [{"Destination": {"ResponseHeaders": {"Set": {"Content-Length": "1"}}}}]},
     'Routes[0].Destination.ResponseHeaders.Set["Content-Length"]'),
    ({"Routes": [{"Destination": {"ServiceSubset": "v9"}}]},
     "Routes[0].Destination.ServiceSubset"),
    ({"Routes": [{"Destination": {"Service": "web"}}]}, "Routes[0].Destination.Service"),
    ({"Name": "web", "Routes": []}, "Name"),  # web's protocol is tcp (no service-defaults)
]  # fmt: skip


@pytest.mark.parametrize(("body", "field"), BAD)
def test_each_bad_entry_is_a_400_naming_the_field(mesh: Mesh, body: dict[str, Any],
                                                   field: str) -> None:  # fmt: skip
    status, text = config(mesh, "PUT", "/v1/config",
                          {"Kind": "service-router", "Name": "api", **body})  # fmt: skip
    assert status == 400 and field in text, text


def test_a_service_defaults_change_that_would_break_a_router_is_a_400(mesh: Mesh) -> None:
    write(mesh, "service-router", "api", Routes=[{"Destination": {"Service": "api-next"}}])
    tcp = {"Kind": "service-defaults", "Name": "api-next", "Protocol": "tcp"}
    status, text = config(mesh, "PUT", "/v1/config", tcp)
    assert status == 400 and "service-router/api" in text, text
    status, text = config(mesh, "GET", "/v1/config/service-router/api")
    assert status == 200 and json.loads(text)["Routes"][0]["Destination"]["Service"] == "api-next"


def test_pipelined_requests_each_take_their_own_route_and_a_body_goes_through(
    mesh: Mesh,
) -> None:
    import socket

    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"PathPrefix": "/n/"}},
         "Destination": {"Service": "api-next", "PrefixRewrite": "/echo/"}},
    ])  # fmt: skip
    routed(mesh, "next", path="/n/warm")
    before = {k: len(app.seen) for k, app in mesh.apps.items()}
    with socket.create_connection(mesh.up, timeout=10) as s:
        s.sendall(b"POST /n/a HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\n\r\nhello"
                  b"GET /echo/b HTTP/1.1\r\nHost: api\r\n\r\n"
                  b"GET /n/c HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")  # fmt: skip
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.count(b"HTTP/1.1 200") == 3, got
    assert b"POST /echo/a hello" in got and b"GET /echo/b " in got and b"GET /echo/c " in got
    assert mesh.apps["next"].seen[before["next"] :] == ["POST /echo/a", "GET /echo/c"]
    assert sum(len(mesh.apps[k].seen) - before[k] for k in ("v1", "v2")) == 1


def test_a_route_to_a_service_with_no_healthy_instance_fails_its_requests_only(
    mesh: Mesh,
) -> None:
    write(mesh, "service-defaults", "api-gone", Protocol="http")
    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"PathPrefix": "/gone"}}, "Destination": {"Service": "api-gone"}},
    ])  # fmt: skip
    try:
        eventually(lambda: served(mesh, "/gone/x")[:2] == ("", 503), 20,
                   what="a 503 for the route with no instance")  # fmt: skip
        assert served(mesh, "/echo/ok")[1] == 200
    finally:
        config(mesh, "DELETE", "/v1/config/service-router/api")
        config(mesh, "DELETE", "/v1/config/service-defaults/api-gone")


ROUTER_HCL = """
Kind = "service-router"
Name = "api"
Routes = [
  {
    Match { HTTP { PathPrefix = "/cli/" } }
    Destination {
      Service       = "api-next"
      PrefixRewrite = "/echo/"
    }
  },
]
"""


def test_the_cli_writes_an_hcl_router_then_reads_lists_and_deletes_it(
    mesh: Mesh, tmp_path: Path
) -> None:
    """`gossamer config write` of Consul's HCL: obeyed by the sidecar; read, listed and
    deleted with the CLI; a refused field named before anything is sent (exit 2)."""
    (tmp_path / "router.hcl").write_text(ROUTER_HCL)
    said = expect("config", "write", str(tmp_path / "router.hcl"), "--http-addr", mesh.s1.http)
    assert "Config entry written: service-router/api" in said
    routed(mesh, "next", path="/cli/x")
    assert served(mesh, "/cli/y")[2] == "GET /echo/y"
    text = expect("config", "read", "-kind", "service-router", "-name", "api",
                  "--http-addr", mesh.s1.http)  # fmt: skip
    assert json.loads(text)["Routes"][0]["Destination"]["PrefixRewrite"] == "/echo/"
    listed = expect("config", "list", "-kind", "service-router", "--http-addr", mesh.s1.http)
    assert listed.split() == ["api"]
    (tmp_path / "bad.hcl").write_text(
        ROUTER_HCL.replace('"/echo/"', '"/echo/"\nRetryOn = ["unavailable"]')
    )
    said = expect("config", "write", str(tmp_path / "bad.hcl"), "--http-addr", mesh.s1.http,
                  code=2)  # fmt: skip
    assert "Routes[0].Destination.RetryOn[0]" in said
    expect("config", "delete", "-kind", "service-router", "-name", "api",
           "--http-addr", mesh.s1.http)  # fmt: skip
    assert config(mesh, "GET", "/v1/config/service-router/api")[0] == 404


def test_gossamer_check_counts_each_route_s_destination(mesh: Mesh) -> None:
    """`gossamer check` counted an upstream's own instances only: a route sending to a
    service with none passed the line while its requests got 503s. It names each route's
    target now, and one with no passing instance fails the line."""

    def line() -> str:
        out = gossamer("check", "--http-addr", mesh.s2.http).stdout
        return next(x for x in out.splitlines() if "upstreams of web-sidecar-proxy" in x)

    write(mesh, "service-defaults", "api-gone", Protocol="http")
    try:
        write(mesh, "service-router", "api", Routes=[
            {"Match": {"HTTP": {"PathPrefix": "/next"}}, "Destination": {"Service": "api-next"}},
            {"Match": {"HTTP": {"PathPrefix": "/gone"}}, "Destination": {"Service": "api-gone"}},
        ])  # fmt: skip
        said = line()
        assert said.startswith(
            "✘ upstreams of web-sidecar-proxy: api (2 healthy; routes: "
            "0 -> api-next (1 healthy), 1 -> api-gone (0 healthy))"
        ), said
        write(mesh, "service-router", "api", Routes=[
            {"Match": {"HTTP": {"PathPrefix": "/next"}}, "Destination": {"Service": "api-next"}},
        ])  # fmt: skip
        said = line()
        assert said.startswith(
            "✔ upstreams of web-sidecar-proxy: api (2 healthy; routes: 0 -> api-next (1 healthy))"
        ), said
    finally:
        config(mesh, "DELETE", "/v1/config/service-router/api")
        config(mesh, "DELETE", "/v1/config/service-defaults/api-gone")


def test_a_route_s_retries_stop_at_the_retry_budget(mesh: Mesh) -> None:
    """NumRetries far past the budget (Linkerd's: 20% of requests plus 10/s over 10 s): the
    retries stop where the budget does, counted as `outbound.http.no_budget`, once per
    request. Thirty requests at once: one alone would take some 100 retries' back-offs
    (retry_backoff.py, 125 ms each on average) to spend it. Last in the module: it spends
    web's budget for the next 10 s."""
    write(mesh, "service-router", "api", Routes=[
        {"Match": {"HTTP": {"PathPrefix": "/early/"}},
         "Destination": {"Service": "api-next", "NumRetries": 1000,
                         "RetryOnStatusCodes": [500]}},
    ])  # fmt: skip
    eventually(lambda: _tries(mesh, "next", "/early/404") == (404, 1), 20,
               what="the route to api-next")  # fmt: skip
    event = {"service": "web", "event": "outbound.http.no_budget"}
    refused = series(mesh.web_metrics, "gossamer_proxy_events_total", **event)
    asked = series(mesh.web_metrics, "gossamer_proxy_request_total", direction="outbound")
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda i: _tries(mesh, "next", f"/early/500?b{i}"), range(30)))
    tries = sum(n for _, n in answers)
    # at most 10/s over the window plus a fifth of the requests in it (fewer than all so far)
    assert {status for status, _ in answers} == {500}, answers
    assert 30 < tries <= 30 + 100 + 0.2 * (asked + 30), (tries, asked)
    assert series(mesh.web_metrics, "gossamer_proxy_events_total", **event) == refused + 30
