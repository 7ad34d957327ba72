"""Registrations on a real agent: Consul's agent API through py-consul, persistence, checks."""

from __future__ import annotations

import http.server
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import consul
import pytest

from tests.harness.cli import gossamer
from tests.harness.cluster import AgentProc, Cluster
from tests.harness.poll import eventually


def client(agent: AgentProc) -> consul.Consul:
    return consul.Consul(host=agent.ip, port=agent.http_port)


class _Flappy(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flappy() -> Iterator[tuple[str, type[_Flappy]]]:
    """A real local HTTP server whose status code a test can flip."""
    handler = type("Flappy", (_Flappy,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/health", handler
    finally:
        server.shutdown()
        server.server_close()


def test_register_query_deregister(cluster: Cluster) -> None:
    agent = cluster.new_agent("reg").start()
    c = client(agent)
    c.agent.service.register("web", service_id="web-1", port=8080, tags=["prod"], meta={"v": "1"})
    services = c.agent.services()
    assert services["web-1"]["Service"] == "web" and services["web-1"]["Meta"] == {"v": "1"}
    _, rows = c.catalog.service("web")
    assert [(r["Node"], r["ServiceID"], r["ServicePort"]) for r in rows] == [("reg", "web-1", 8080)]
    assert "consul" in c.catalog.services()[1]  # the agent registers itself
    c.agent.service.deregister("web-1")
    assert "web-1" not in c.agent.services()
    assert c.catalog.service("web")[1] == []


def test_http_check_follows_a_real_server(
    cluster: Cluster, flappy: tuple[str, type[_Flappy]]
) -> None:
    url, handler = flappy
    agent = cluster.new_agent("hc").start()
    c = client(agent)
    c.agent.service.register("api", port=1, check=consul.Check.http(url, "1s"))

    def status() -> str:
        return str(c.agent.checks()["service:api"]["Status"])

    eventually(lambda: status() == "passing", 10, what="passing")
    handler.status = 500
    eventually(lambda: status() == "critical", 10, what="critical")
    assert c.health.service("api", passing=True)[1] == []
    handler.status = 200
    eventually(lambda: status() == "passing", 10, what="passing again")
    assert len(c.health.service("api", passing=True)[1]) == 1


def test_kill_9_and_restart_bring_everything_back(cluster: Cluster) -> None:
    agent = cluster.new_agent("keep").start()
    c = client(agent)
    c.agent.service.register("web", service_id="web-1", port=80, check=consul.Check.ttl("1h"))
    c.agent.check.register("disk", check=consul.Check.ttl("1h"), check_id="disk")
    c.agent.check.ttl_warn("disk", "80% full")
    c.agent.check.ttl_pass("service:web-1", "fine")
    c.agent.service.maintenance("web-1", True, "deploying")
    assert agent.proc is not None
    os.kill(agent.proc.pid, signal.SIGKILL)
    agent.wait_exit()
    agent.start()
    c = client(agent)
    assert set(c.agent.services()) == {"web-1"}
    checks = c.agent.checks()
    assert checks["disk"]["Status"] == "warning" and checks["disk"]["Output"] == "80% full"
    assert checks["service:web-1"]["Status"] == "passing"
    assert checks["_service_maintenance:web-1"]["Notes"] == "deploying"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "Request decode failed"),
        (b'{"Port": 80}', 400, "Name: missing required field"),
        (b'{"Name": "x", "Port": "eighty"}', 400, "Port"),
        (b'{"Name": "x", "Meta": {"bad key!": "v"}}', 400, "Meta"),
        (b'{"Name": "x", "Bogus": 1}', 400, "Bogus"),
    ],
)
def test_bad_registrations_get_400_naming_the_field(
    trio: list[AgentProc], body: bytes, status: int, needle: str
) -> None:
    import urllib.error
    import urllib.request

    a = trio[0]
    req = urllib.request.Request(a.http + "/v1/agent/service/register", data=body, method="PUT")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == status
    assert needle in err.value.read().decode()
    assert "x" not in client(a).agent.services()


def test_unknown_ids_get_404(trio: list[AgentProc]) -> None:
    import urllib.error
    import urllib.request

    a = trio[0]
    for path in ("/v1/agent/check/pass/no-such-check", "/v1/agent/service/deregister/nope"):
        req = urllib.request.Request(a.http + path, method="PUT")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 404
        assert "Unknown" in err.value.read().decode()


def test_services_from_config_files_apply_and_reload(cluster: Cluster) -> None:
    conf = cluster.root / "svc.yaml"
    conf.write_text(
        "services:\n"
        "  - name: web\n    id: web-cfg\n    port: 80\n    checks: [{ttl: 1h}]\n"
        "  - name: db\n    port: 5432\n"
        "checks:\n  - name: disk\n    ttl: 1h\n"
    )
    agent = cluster.new_agent("cfg", "--config-file", str(conf)).start()
    c = client(agent)
    assert set(c.agent.services()) == {"web-cfg", "db"}
    assert {"service:web-cfg", "disk"} <= set(c.agent.checks())

    conf.write_text("services:\n  - name: web\n    id: web-cfg\n    port: 81\n")
    agent.signal(signal.SIGHUP)
    eventually(lambda: set(c.agent.services()) == {"web-cfg"}, 10, what="db dropped on reload")
    assert c.agent.services()["web-cfg"]["Port"] == 81
    assert "disk" not in c.agent.checks()
    # An API registration is not touched by a reload, and config ones survive a restart.
    c.agent.service.register("api", port=9)
    agent.stop()
    agent.start()
    assert set(client(agent).agent.services()) == {"web-cfg", "api"}


def test_a_bad_service_in_a_config_file_stops_the_agent(tmp_path: Path) -> None:
    conf = tmp_path / "bad.yaml"
    conf.write_text("services:\n  - name: web\n    port: eighty\n")
    result = gossamer("agent", "--dev", "--config-file", str(conf), timeout=30)
    assert result.returncode == 2
    assert f"{conf}: services: [0] Port: must be an integer" in result.stderr


async def test_agent_service_hash_blocking_wakes_on_change(trio: list[AgentProc]) -> None:
    import asyncio

    import aiohttp

    a = trio[0]
    client(a).agent.service.register("hashy", port=1)
    url = a.http + "/v1/agent/service/hashy"
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            digest = r.headers["X-Consul-ContentHash"]
            assert (await r.json())["ContentHash"] == digest

        async def blocked() -> str:
            async with s.get(url, params={"hash": digest, "wait": "10s"}) as r:
                return r.headers["X-Consul-ContentHash"]

        waiter = asyncio.create_task(blocked())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), 0.3)  # unchanged: still blocked
        await asyncio.to_thread(client(a).agent.service.register, "hashy", port=2)
        assert await asyncio.wait_for(waiter, 5) != digest
        async with s.get(url, params={"hash": digest, "wait": "soon"}) as r:
            assert r.status == 400 and "wait" in (await r.text()).lower()


async def test_agent_services_hash_blocking_wakes_only_when_its_filtered_list_changes(
    trio: list[AgentProc],
) -> None:
    import asyncio

    import aiohttp

    a = trio[1]
    url = a.http + "/v1/agent/services"
    only = {"filter": 'Service == "listed"'}
    async with aiohttp.ClientSession() as s:
        async with s.get(url, params=only) as r:
            digest = r.headers["X-Consul-ContentHash"]
            assert await r.json() == {}

        async def blocked() -> tuple[str, dict[str, object]]:
            async with s.get(url, params={**only, "hash": digest, "wait": "10s"}) as r:
                return r.headers["X-Consul-ContentHash"], await r.json()

        waiter = asyncio.create_task(blocked())
        await asyncio.to_thread(client(a).agent.service.register, "unlisted", port=1)
        with pytest.raises(TimeoutError):  # another service changed: this list did not
            await asyncio.wait_for(asyncio.shield(waiter), 0.5)
        await asyncio.to_thread(client(a).agent.service.register, "listed", port=2)
        found, rows = await asyncio.wait_for(waiter, 5)
        assert found != digest and list(rows) == ["listed"]
        async with s.get(url, params={"hash": digest, "wait": "soon"}) as r:
            assert r.status == 400 and "wait" in (await r.text()).lower()


def test_ttl_expiry_and_sidecar_registration(trio: list[AgentProc]) -> None:
    a = trio[0]
    c = client(a)
    c.agent.check.register("beat", check=consul.Check.ttl("1s"), check_id="beat")
    c.agent.check.ttl_pass("beat", "alive")
    assert c.agent.checks()["beat"]["Status"] == "passing"
    eventually(lambda: c.agent.checks()["beat"]["Status"] == "critical", 10, what="TTL expiry")
    assert "TTL expired" in c.agent.checks()["beat"]["Output"]

    a.put("/v1/agent/service/register", {
        "Name": "shop", "Port": 8080,
        "Connect": {"SidecarService": {"Proxy": {"Upstreams": [
            {"DestinationName": "db", "LocalBindPort": 9191}]}}},
    })  # fmt: skip
    services = c.agent.services()
    sidecar = services["shop-sidecar-proxy"]
    assert sidecar["Kind"] == "connect-proxy" and 21000 <= sidecar["Port"] <= 21255
    assert sidecar["Proxy"]["DestinationServiceName"] == "shop"
    assert sidecar["Proxy"]["Upstreams"][0]["LocalBindPort"] == 9191
    eventually(lambda: len(trio[2].get("/v1/catalog/connect/shop")) == 1, 10, what="connect")


def test_agent_health_endpoint_status_codes(trio: list[AgentProc]) -> None:
    import urllib.error
    import urllib.request

    a = trio[1]
    c = client(a)
    c.agent.service.register("gauge", service_id="gauge-1", port=1, check=consul.Check.ttl("1h"))

    def code(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(a.http + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    for verb, status, text in (("pass", 200, "passing"), ("warn", 429, "warning"),
                               ("fail", 503, "critical")):  # fmt: skip
        a.put(f"/v1/agent/check/{verb}/service:gauge-1")
        assert code("/v1/agent/health/service/name/gauge?format=text") == (status, text)
        assert code("/v1/agent/health/service/id/gauge-1")[0] == status
    assert code("/v1/agent/health/service/name/nothing")[0] == 404
