"""`Proxy.Expose.Checks: true`: the service's HTTP and gRPC checks run through its sidecar.

The pure part (catalog/expose_checks.py) on tables: which checks get a port
of the expose range, which port, the paths the sidecar gains. Then a real
agent, sidecar, HTTP app and gRPC health server, both bound to 127.0.0.1
only: each check shows its `ExposedPort`, is critical while no sidecar
listens there, and passes once the sidecar serves the exposed paths, its
output naming the sidecar's address and port (the probe went through it).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gossamer.catalog.expose_checks import EXPOSE_RANGE, GRPC_HEALTH, expose_all, expose_checks
from gossamer.catalog.registration import parse_check_registration, parse_service_registration
from gossamer.catalog.registration_fields import RegistrationConflict
from gossamer.proxy.expose_config import from_this_host
from tests.harness.cluster import Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import sidecar, wait_listening


def registration(checks: list[dict[str, Any]], expose: dict[str, Any]) -> Any:
    proxy = {"Expose": expose}
    body = {"Name": "web", "Port": 8080, "Checks": checks,
            "Connect": {"SidecarService": {"Port": 21000, "Proxy": proxy}}}  # fmt: skip
    return parse_service_registration(body, node_address="10.0.0.1", used_sidecar_ports=set())


HTTP = {"CheckID": "h", "HTTP": "http://127.0.0.1:8080/health?full=1", "Interval": "10s"}
GRPC = {"CheckID": "g", "GRPC": "127.0.0.1:9090/api", "Interval": "10s"}
HTTPS = {"CheckID": "s", "HTTP": "https://127.0.0.1:8443/health", "Interval": "10s"}
TCP = {"CheckID": "t", "TCP": "127.0.0.1:8080", "Interval": "10s"}


def test_http_and_grpc_checks_get_ports_and_paths() -> None:
    reg = registration([HTTP, GRPC, HTTPS, TCP], {"Checks": True})
    out = expose_checks(reg, taken={21500}, previous={})
    ports = {c.check_id: (c.exposed_host, c.exposed_port) for c in out.checks}
    assert ports == {"h": ("127.0.0.1", 21501), "g": ("127.0.0.1", 21502), "s": ("", 0),
                     "t": ("", 0)}  # fmt: skip
    assert out.sidecar is not None
    assert out.sidecar.proxy["Expose"] == {"Checks": True, "Paths": [
        {"ListenerPort": 21501, "Path": "/health", "LocalPathPort": 8080, "Protocol": "http",
         "ParsedFromCheck": True},
        {"ListenerPort": 21502, "Path": GRPC_HEALTH, "LocalPathPort": 9090, "Protocol": "http2",
         "ParsedFromCheck": True},
    ]}  # fmt: skip
    assert {c.check_id: c.exposed_port for c in out.initial_checks()}["h"] == 21501


def test_a_check_keeps_its_port_and_paths_given_are_kept() -> None:
    given = {"ListenerPort": 21500, "Path": "/metrics", "LocalPathPort": 9102}
    reg = registration([HTTP, GRPC], {"Checks": True, "Paths": [given]})
    out = expose_checks(reg, taken=set(), previous={"g": 21600, "h": 21500})
    assert {c.check_id: c.exposed_port for c in out.checks} == {"h": 21501, "g": 21600}
    assert out.sidecar is not None
    assert out.sidecar.proxy["Expose"]["Paths"][0] == {**given, "Protocol": "http"}


def test_checks_registered_alone_for_the_service_are_exposed_too() -> None:
    reg = registration([HTTP], {"Checks": True})
    body = {"ID": "a", "Name": "a", "ServiceID": "web", "Interval": "10s",
            "HTTP": "http://127.0.0.1:8081/ready"}  # fmt: skip
    alone = parse_check_registration(body, service_ids={"web"}, allow_script=False)
    out, bound = expose_all(reg, [alone], taken=set(), previous={"h": 21500})
    ports = [(c.check_id, c.exposed_port) for c in (*out.checks, *bound)]
    assert ports == [("h", 21500), ("a", 21501)]
    assert out.sidecar is not None
    assert out.sidecar.proxy["Expose"]["Paths"][1]["Path"] == "/ready"
    # the sidecar gone: every one back on its own target
    gone, bound = expose_all(replace(out, sidecar=None), bound, taken=set(), previous={})
    assert [c.exposed_port for c in (*gone.checks, *bound)] == [0, 0]


def test_without_checks_true_nothing_changes_and_a_full_range_is_refused() -> None:
    reg = registration([HTTP], {})
    assert expose_checks(reg, taken=set(), previous={}) is reg
    full = set(range(EXPOSE_RANGE[0], EXPOSE_RANGE[1] + 1))
    with pytest.raises(RegistrationConflict, match="no free port left in the expose range"):
        expose_checks(registration([HTTP], {"Checks": True}), taken=full, previous={})


@pytest.mark.parametrize(("peer", "local", "ok"), [
    ("127.0.0.1", "10.0.0.5", True), ("127.9.8.7", "127.9.8.7", True), ("::1", "::", True),
    ("::ffff:127.0.0.1", "::", True), ("10.0.0.5", "10.0.0.5", True),  # the agent, this host
    ("10.0.0.9", "10.0.0.5", False), ("fe80::1%eth0", "fe80::2", False), ("?", "x", False),
])  # fmt: skip
def test_a_checks_path_takes_this_hosts_connections_only(peer: str, local: str, ok: bool) -> None:
    """Consul's listener for a check's path matches 127.0.0.0/8, ::1 and its agent's address
    only: another host reaching it gets nothing."""
    assert from_this_host(peer, local) is ok


class HealthServer:
    def __init__(self) -> None:
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")  # 127.0.0.1 only
        self.health.set("api", health_pb2.HealthCheckResponse.SERVING)
        self.server.start()


def test_an_http2_path_lets_its_method_through_only(
    tmp_path: Path, apps: tuple[HttpApp, HealthServer]
) -> None:
    """An `http2` path given by hand (h2c through the gate): its gRPC method reaches the app,
    another method gets what Envoy answers when no route matches (gRPC: UNIMPLEMENTED)."""
    _, grpc_app = apps
    c = Cluster(tmp_path)
    try:
        agent = c.new_agent("xc2").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        inbound, port = free_port(agent.ip), free_port(agent.ip)
        path = {"Path": GRPC_HEALTH, "LocalPathPort": grpc_app.port, "ListenerPort": port,
                "Protocol": "http2"}  # fmt: skip
        agent.put("/v1/agent/service/register", {
            "Name": "api", "ID": "api", "Port": grpc_app.port, "Address": agent.ip,
            "Connect": {"SidecarService": {"Port": inbound,
                                           "Proxy": {"Expose": {"Paths": [path]}}}},
        })  # fmt: skip
        proxy = sidecar(agent, tmp_path, "api")
        try:
            wait_listening(agent.ip, port, proxy)
            with grpc.insecure_channel(f"{agent.ip}:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                asked = health_pb2.HealthCheckRequest(service="api")
                assert (
                    stub.Check(asked, timeout=10).status == health_pb2.HealthCheckResponse.SERVING
                )
                with pytest.raises(grpc.RpcError) as refused:
                    next(iter(stub.Watch(asked, timeout=10)))
                assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            proxy.stop()
    finally:
        c.close()


@pytest.fixture
def apps() -> Iterator[tuple[HttpApp, HealthServer]]:
    app, grpc_app = HttpApp().start(), HealthServer()
    yield app, grpc_app
    app.stop()
    grpc_app.server.stop(0)


def test_checks_pass_through_the_sidecar(
    tmp_path: Path, apps: tuple[HttpApp, HealthServer]
) -> None:
    app, grpc_app = apps
    c = Cluster(tmp_path)
    try:
        agent = c.new_agent("xc1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        inbound = free_port(agent.ip)
        agent.put("/v1/agent/service/register", {
            "Name": "web", "ID": "web", "Port": app.port, "Address": agent.ip,
            "Checks": [
                {"CheckID": "web-http", "HTTP": f"http://127.0.0.1:{app.port}/echo/health",
                 "Interval": "1s"},
                {"CheckID": "web-grpc", "GRPC": f"127.0.0.1:{grpc_app.port}/api",
                 "Interval": "1s"},
            ],
            "Connect": {"SidecarService": {"Port": inbound, "Proxy": {"Expose": {"Checks": True}}}},
        })  # fmt: skip
        checks = agent.get("/v1/agent/checks")
        http_port, grpc_port = checks["web-http"]["ExposedPort"], checks["web-grpc"]["ExposedPort"]
        assert EXPOSE_RANGE[0] <= http_port <= EXPOSE_RANGE[1]
        assert EXPOSE_RANGE[0] <= grpc_port <= EXPOSE_RANGE[1] and grpc_port != http_port
        # what was registered is shown; the probe goes elsewhere
        assert (
            checks["web-http"]["Definition"]["HTTP"] == f"http://127.0.0.1:{app.port}/echo/health"
        )

        def statuses() -> dict[str, str]:
            now = agent.get("/v1/agent/checks")
            return {cid: now[cid]["Status"] for cid in ("web-http", "web-grpc")}

        eventually(lambda: agent.get("/v1/agent/checks")["web-http"]["Output"], 10,
                   what="a first run of the HTTP check")  # fmt: skip
        assert statuses() == {"web-http": "critical", "web-grpc": "critical"}  # no sidecar yet
        proxy = sidecar(agent, tmp_path, "web")
        try:
            eventually(lambda: statuses() == {"web-http": "passing", "web-grpc": "passing"}, 20,
                       what=f"both checks passing; proxy log:\n{proxy.log()[-2000:]}")  # fmt: skip
            output = agent.get("/v1/agent/checks")["web-http"]["Output"]
            assert f"{agent.ip}:{http_port}/echo/health" in output, output
            assert "GET /echo/health" in app.seen
            # A check registered on its own for the service goes through the sidecar too.
            agent.put("/v1/agent/check/register", {
                "ID": "web-extra", "Name": "extra", "ServiceID": "web", "Interval": "1s",
                "HTTP": f"http://127.0.0.1:{app.port}/echo/extra"})  # fmt: skip
            extra_port = agent.get("/v1/agent/checks")["web-extra"]["ExposedPort"]
            assert extra_port not in (0, http_port, grpc_port)

            def extra_passes() -> bool:
                check = agent.get("/v1/agent/checks")["web-extra"]
                return (
                    check["Status"] == "passing" and f"{agent.ip}:{extra_port}/" in check["Output"]
                )

            eventually(extra_passes, 20, what="the check registered alone, through the sidecar")
            agent.put("/v1/agent/check/deregister/web-extra")
            shown = agent.get("/v1/agent/service/web-sidecar-proxy")["Proxy"]["Expose"]["Paths"]
            assert sorted(p["ListenerPort"] for p in shown) == sorted([http_port, grpc_port])
        finally:
            proxy.stop()
        # The sidecar deregistered alone (as Nomad does first): the checks go back to their
        # own targets, as Consul resets them, instead of probing a listener that is gone.
        eventually(lambda: statuses()["web-http"] == "critical", 10, what="no sidecar: critical")
        agent.put("/v1/agent/service/deregister/web-sidecar-proxy")
        checks = agent.get("/v1/agent/checks")
        assert (checks["web-http"]["ExposedPort"], checks["web-grpc"]["ExposedPort"]) == (0, 0)
        eventually(lambda: statuses() == {"web-http": "passing", "web-grpc": "passing"}, 10,
                   what="both checks passing on their own targets")  # fmt: skip
    finally:
        c.close()
