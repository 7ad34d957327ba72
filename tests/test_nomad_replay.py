"""The Nomad job files, and the registrations Nomad would send for them, against real agents.

A replay, not Nomad: Nomad is not installable here. The job files are
parsed with python-hcl2; tests/nomad_replay.py builds, from the example
job, the exact bodies Nomad's Consul service client sends (its shape, IDs
and quirks are listed there); they go over real HTTP (aiohttp) to a real
agent, and what Nomad reads back on its next sync is checked the way its
`different()` would. The proxy task runs from the job file's own
command line, with the environment Nomad's Connect-native hook gives it.
Catalog, health and DNS are then read from the *other* agent (py-consul,
dnspython), so the registration has travelled through the mesh, and a
client proxy there reaches the app through the proxy task (mTLS, intention).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import consul
import dns.message
import dns.query
import pytest

from tests.harness.cli import cli_env
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.nomad_replay import SIDECAR_SUFFIX, Alloc, blocks, load_job, needs_update, registrations
from tests.proxy_support import App, ProxyProc, roundtrip, set_intention

NOMAD = Path(__file__).resolve().parent.parent / "nomad"
SIDECAR_JOB = """
job "web" {
  group "web" {
    network { mode = "bridge" }
    service {
      name = "web"
      port = "8080"
      tags = ["v1"]
      check {
        name = "web alive"
        type = "http"
        path = "/health"
        interval = "5s"
        timeout = "2s"
      }
      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "db"
              local_bind_port = 9191
            }
          }
        }
      }
    }
  }
}
"""
SIDECAR_CHECK_ID = re.compile(r"^service:_nomad-.+-sidecar-proxy(:[\d]+)?$")  # Nomad's own


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProc]]:
    c = Cluster(tmp_path_factory.mktemp("nomad"))
    try:
        yield c.start(2)
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def test_the_job_files_parse_into_what_nomad_needs() -> None:
    agent = load_job(NOMAD / "gossamer-agent.nomad.hcl")
    assert agent["type"] == "system"
    [task] = blocks(blocks(agent, "group")[0], "task")
    assert task["config"][0]["args"][0] == "agent" and task["kill_signal"] == "SIGTERM"
    web = load_job(NOMAD / "web-with-sidecar.nomad.hcl")
    [group] = blocks(web, "group")
    [service] = blocks(group, "service")
    assert service["connect"][0]["native"] is True and service["task"] == "proxy"
    tasks = {t["name"]: t for t in blocks(group, "task")}
    assert tasks["proxy"]["lifecycle"][0] == {"hook": "prestart", "sidecar": True}
    assert tasks["proxy"]["config"][0]["args"][:2] == ["connect", "proxy"]


def test_the_agent_self_answers_what_nomads_fingerprint_reads(pair: list[AgentProc]) -> None:
    info = consul.Consul(host=pair[0].ip, port=pair[0].http_port).agent.self()
    major, minor, _ = (int(p) for p in info["Config"]["Version"].split("+")[0].split("."))
    assert (major, minor) >= (1, 8)  # Nomad's Consul version constraint for Connect
    assert "ent" not in info["Stats"]["build"]["version_metadata"]  # no namespaces asked
    assert info["Config"]["NodeName"] == pair[0].name and info["Config"]["Datacenter"]
    assert isinstance(info["Member"]["Tags"], dict)


async def put(http: aiohttp.ClientSession, agent: AgentProc, path: str, body: Any = None) -> None:
    async with http.put(agent.http + path, json=body) as resp:
        assert resp.status == 200, (path, resp.status, await resp.text())


async def get(http: aiohttp.ClientSession, agent: AgentProc, path: str) -> Any:
    async with http.get(agent.http + path) as resp:
        assert resp.status == 200, (path, await resp.text())
        return await resp.json()


def proxy_task(job: dict[str, Any], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The job's proxy task, its ${NOMAD_*} interpolated, run as Nomad's raw_exec would."""
    [group] = blocks(job, "group")
    task = next(t for t in blocks(group, "task") if t["name"] == "proxy")
    args = [interpolated(a, env) for a in task["config"][0]["args"]]
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "gossamer.agent", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=cli_env(env=env),
                                start_new_session=True)  # fmt: skip


def interpolated(text: str, env: dict[str, str]) -> str:
    """`text` with its `${NAME}`s replaced as Nomad does for a task's args."""
    return re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], text)


def placed(node: AgentProc) -> Alloc:
    """One allocation of the example job on `node`, with the ports Nomad would pick."""
    ports = {"http": free_port("127.0.0.1"), "mesh": free_port(node.ip),
             "db": free_port("127.0.0.1")}  # fmt: skip
    return Alloc(str(uuid.uuid4()), node.ip, ports)


def task_env(node: AgentProc, alloc: Alloc) -> dict[str, str]:
    """What Nomad sets for a task of `alloc` (its ports) and its Connect-native hook does."""
    env = {f"NOMAD_PORT_{label}": str(port) for label, port in alloc.ports.items()}
    return {**env, "NOMAD_IP_mesh": node.ip, "CONSUL_HTTP_ADDR": node.http}


def srv_ports(agent: AgentProc, name: str) -> list[int]:
    q = dns.message.make_query(name, "SRV")
    reply = dns.query.udp(q, agent.ip, port=agent.dns_port, timeout=5)
    return sorted(rd.port for rrset in reply.answer for rd in rrset)


def through_the_mesh(peer: AgentProc, tmp_path: Path) -> None:
    """A client on the other host reaches the app through the native endpoint (the proxy task)."""
    peer.put("/v1/agent/service/register", {"Name": "client", "ID": "client", "Port": 1})
    set_intention(peer, "client", "web", "allow")
    port = free_port("127.0.0.1")
    client = ProxyProc(["--service", "client", "--upstream", f"web:{port}",
                        "--http-addr", peer.http], tmp_path / "client.log").start()  # fmt: skip
    try:
        got = eventually(lambda: roundtrip(("127.0.0.1", port), b"via mesh"), 30,
                         what="client -> web's native endpoint")  # fmt: skip
        assert got == b"via mesh<eof>"
    finally:
        assert client.stop() == 0
        peer.put("/v1/agent/service/deregister/client")


async def test_the_example_job_registered_as_nomad_would(
    pair: list[AgentProc], tmp_path: Path
) -> None:
    node, peer = pair
    job = load_job(NOMAD / "web-with-sidecar.nomad.hcl")
    alloc = placed(node)
    [reg] = registrations(job, alloc)
    app = App("127.0.0.1", port=alloc.ports["http"]).start()
    proxy = proxy_task(job, task_env(node, alloc), tmp_path / "proxy.log")
    async with aiohttp.ClientSession() as http:
        try:
            await get(http, node, "/v1/agent/services")  # Nomad's sync reads first
            await put(http, node, "/v1/agent/service/register", reg.service)
            checks = await get(http, node, "/v1/agent/checks")
            assert {c["ID"] for c in reg.checks} <= set(checks)  # so no check/register follows
            existing = (await get(http, node, "/v1/agent/services"))[reg.service_id]
            assert needs_update(reg.service, existing, None) == []  # the next sync is quiet
            await put(
                http, node, "/v1/agent/service/register?replace-existing-checks=true", reg.service
            )  # fmt: skip  (a job update)
            c = consul.Consul(host=peer.ip, port=peer.http_port)

            def passing() -> list[Any]:
                return c.health.service("web", passing=True)[1]

            [row] = await asyncio.to_thread(eventually, passing, 30, what="web passing on peer")
            assert row["Service"]["ID"] == reg.service_id
            assert row["Service"]["Meta"]["external-source"] == "nomad"
            assert row["Service"]["Port"] == alloc.ports["mesh"]
            [mesh] = (await asyncio.to_thread(c.health.connect, "web"))[1]
            assert mesh["Service"]["Connect"] == {"Native": True}
            assert await asyncio.to_thread(srv_ports, peer, "web.service.consul") == [
                alloc.ports["mesh"]
            ]
            await asyncio.to_thread(through_the_mesh, peer, tmp_path)
            await put(http, node, f"/v1/agent/service/deregister/{reg.service_id}")
            await asyncio.to_thread(eventually, lambda: not c.health.service("web")[1], 15,
                                    what="web gone on peer")  # fmt: skip
            assert reg.checks[0]["ID"] not in await get(http, node, "/v1/agent/checks")
        finally:
            proxy.terminate()
            assert proxy.wait(20) == 0, (tmp_path / "proxy.log").read_text()[-2000:]
            app.stop()


async def test_a_sidecar_service_registration_in_nomads_shape(
    pair: list[AgentProc], tmp_path: Path
) -> None:
    """The `connect { sidecar_service }` body: accepted, expanded, read back, removed."""
    node, peer = pair
    path = tmp_path / "sidecar.nomad.hcl"
    path.write_text(SIDECAR_JOB)
    alloc = Alloc(str(uuid.uuid4()), node.ip, {"connect-proxy-web": free_port(node.ip)})
    [reg] = registrations(load_job(path), alloc)
    sid = reg.service_id
    async with aiohttp.ClientSession() as http:
        await put(http, node, "/v1/agent/service/register", reg.service)
        services = await get(http, node, "/v1/agent/services")
        sidecar = services[sid + SIDECAR_SUFFIX]
        assert needs_update(reg.service, services[sid], sidecar) == []
        assert (
            sidecar["Kind"] == "connect-proxy"
            and sidecar["Port"] == alloc.ports["connect-proxy-web"]
        )
        assert sidecar["Proxy"]["DestinationServiceID"] == sid
        assert sidecar["Proxy"]["Config"]["bind_port"] == alloc.ports["connect-proxy-web"]
        checks = await get(http, node, "/v1/agent/checks")
        mine = [cid for cid, ch in checks.items() if ch["ServiceID"] == sid + SIDECAR_SUFFIX]
        assert len(mine) == 2 and all(SIDECAR_CHECK_ID.match(cid) for cid in mine), mine
        c = consul.Consul(host=peer.ip, port=peer.http_port)
        await asyncio.to_thread(eventually, lambda: c.catalog.connect("web")[1], 15,
                                what="the sidecar in the peer's catalog")  # fmt: skip
        # Nomad removes the sidecar first, then its parent (syncRemoveService)
        await put(http, node, f"/v1/agent/service/deregister/{sid}{SIDECAR_SUFFIX}")
        between = await get(http, node, "/v1/agent/services")
        assert sid in between and sid + SIDECAR_SUFFIX not in between
        assert not set(mine) & set(await get(http, node, "/v1/agent/checks"))
        await put(http, node, f"/v1/agent/service/deregister/{sid}")
        left = await get(http, node, "/v1/agent/services")
        assert not [s for s in left if s.startswith("_nomad")]


def full_body(sid: str) -> dict[str, Any]:
    """Every field Nomad's service client and connect.go may set, each with a value."""
    check_http = {"CheckID": "_nomad-check-" + "a" * 64, "Name": "api http", "Interval": "10s",
                  "Timeout": "2s", "HTTP": "https://127.0.0.1:1/health", "Header": {"X-A": ["b"]},
                  "Method": "POST", "Body": "{}", "Status": "passing", "TLSServerName": "api.local",
                  "TLSSkipVerify": True, "SuccessBeforePassing": 2, "FailuresBeforeCritical": 3,
                  "FailuresBeforeWarning": 1}  # fmt: skip
    check_script = {"CheckID": "_nomad-check-" + "c" * 64, "Name": "script", "TTL": "40s"}
    check_grpc = {"CheckID": "_nomad-check-" + "b" * 64, "Name": "grpc", "Interval": "10s",
                  "Timeout": "2s", "GRPC": "127.0.0.1:1/api", "GRPCUseTLS": True,
                  "TLSServerName": "api.local", "TLSSkipVerify": True}  # fmt: skip
    upstream = {"DestinationType": "service", "DestinationNamespace": "", "DestinationName": "db",
                "DestinationPartition": "", "DestinationPeer": "", "Datacenter": "dc1",
                "LocalBindAddress": "127.0.0.1", "LocalBindPort": 9191,
                "LocalBindSocketPath": "", "LocalBindSocketMode": "", "Config": {"x": 1},
                "MeshGateway": {"Mode": "local"}}  # fmt: skip
    proxy = {"Mode": "transparent", "TransparentProxy": {"OutboundListenerPort": 15001},
             "LocalServiceAddress": "127.0.0.1", "LocalServicePort": 8080,
             "Config": {"bind_address": "0.0.0.0", "bind_port": 21500, "connect_timeout_ms": 500,
                        "envoy_stats_tags": ["nomad.job=api"]},
             "Upstreams": [upstream], "MeshGateway": {}, "Expose": {}}  # fmt: skip
    return {"Kind": "", "ID": sid, "Name": "api", "Tags": ["a"], "Port": 8080,
            "Address": "127.0.0.1",
            "TaggedAddresses": {"lan": {"Address": "127.0.0.1", "Port": 8080}},
            "EnableTagOverride": True, "Meta": {"external-source": "nomad"},
            "Weights": {"Passing": 2, "Warning": 1}, "Check": None,
            "Checks": [check_http, check_script, check_grpc],
            "Connect": {"SidecarService": {
                "Tags": ["s"], "Port": 21500, "Address": "127.0.0.1", "Meta": {"m": "1"},
                "Check": None, "Proxy": proxy,
                "Checks": [{"Name": f"Connect Sidecar Aliasing {sid}", "AliasService": sid},
                           {"Name": "Connect Sidecar Listening", "TCP": "127.0.0.1:21500",
                            "Interval": "10s"}]}}}  # fmt: skip


async def test_every_field_nomads_service_client_sets_is_accepted(pair: list[AgentProc]) -> None:
    node = pair[0]
    sid = f"_nomad-task-{uuid.uuid4()}-group-api-api-http"
    gateway = {"Kind": "ingress-gateway", "ID": sid + "-ig", "Name": "ig", "Port": 8081,
               "Address": "127.0.0.1", "Check": None, "Checks": [],
               "Proxy": {"Config": {"connect_timeout_ms": 5000, "envoy_gateway_bind_addresses":
                         {"default": {"Address": "0.0.0.0", "Port": 8081}}},
                         "MeshGateway": {}, "Expose": {}}}  # fmt: skip
    script_id = "_nomad-check-" + "c" * 64
    async with aiohttp.ClientSession() as http:
        await put(http, node, "/v1/agent/service/register?replace-existing-checks=true",
                  full_body(sid))  # fmt: skip
        await put(http, node, "/v1/agent/service/register", gateway)
        await put(http, node, "/v1/agent/check/register", {
            "ID": "_nomad-check-" + "d" * 64, "Name": "standalone", "ServiceID": sid,
            "TTL": "40s", "Status": "passing", "Notes": "n"})  # fmt: skip
        # a script check is a TTL check that Nomad's client heart-beats (UpdateTTL)
        await put(http, node, f"/v1/agent/check/update/{script_id}",
                  {"Status": "passing", "Output": "ok"})  # fmt: skip
        assert (await get(http, node, "/v1/agent/checks"))[script_id]["Status"] == "passing"
        await put(http, node, "/v1/agent/check/deregister/_nomad-check-" + "d" * 64)
        for service_id in (sid + SIDECAR_SUFFIX, sid, sid + "-ig"):
            await put(http, node, f"/v1/agent/service/deregister/{service_id}")


async def test_nomads_expose_paths_are_accepted_and_shown(pair: list[AgentProc]) -> None:
    """`expose { path {...} }` as Nomad sends it (api.ExposePath: `ParsedFromCheck` has no
    omitempty) is registered and shown back; it was refused with a 400 before gossamer's
    proxy served exposed paths. A bad one is still a 400 naming the field."""
    node = pair[0]
    body = full_body(f"_nomad-task-{uuid.uuid4()}-group-api-api-http")
    sid = body["ID"]
    path = {"ListenerPort": 21600, "Path": "/metrics", "LocalPathPort": 9102,
            "Protocol": "http", "ParsedFromCheck": False}  # fmt: skip

    def with_expose(expose: dict[str, Any]) -> dict[str, Any]:
        sidecar = body["Connect"]["SidecarService"]
        return {**body, "Connect": {"SidecarService": {
            **sidecar, "Proxy": {**sidecar["Proxy"], "Expose": expose}}}}  # fmt: skip

    url = node.http + "/v1/agent/service/register"
    async with aiohttp.ClientSession() as http:
        async with http.put(url, json=with_expose({"Paths": [path]})) as resp:
            assert resp.status == 200, await resp.text()
        shown = await get(http, node, f"/v1/agent/service/{sid}{SIDECAR_SUFFIX}")
        assert shown["Proxy"]["Expose"] == {
            "Paths": [
                {
                    "ListenerPort": 21600,
                    "Path": "/metrics",
                    "LocalPathPort": 9102,
                    "Protocol": "http",
                }
            ]
        }
        bad = with_expose({"Paths": [{**path, "Path": "metrics"}]})
        async with http.put(url, json=bad) as resp:
            assert resp.status == 400
            assert (await resp.text()).startswith(
                "Connect.SidecarService.Proxy.Expose.Paths[0].Path: "
            )
        for service_id in (sid + SIDECAR_SUFFIX, sid):
            await put(http, node, f"/v1/agent/service/deregister/{service_id}")


async def test_two_allocations_on_one_client_each_listen_for_db(
    pair: list[AgentProc], tmp_path: Path
) -> None:
    """Nomad binpacks: both allocations of `count = 2` may land on one client. Each one's
    proxy listens for db on a port of its own allocation, where its app calls db. With the
    job's old fixed `--upstream db:9191` the second proxy could not listen (logged, tried
    again every 5 s) and its app reached db through the first allocation's proxy."""
    node, _ = pair
    job = load_job(NOMAD / "web-with-sidecar.nomad.hcl")
    [group] = blocks(job, "group")
    assert group["count"] == 2
    [app_task] = [t for t in blocks(group, "task") if t["name"] == "web"]
    allocs = [placed(node), placed(node)]
    for alloc in allocs:  # the app is told the port its proxy listens on
        env = task_env(node, alloc)
        args = [interpolated(a, env) for a in app_task["config"][0]["args"]]
        assert f"127.0.0.1:{alloc.ports['db']}" in args
    async with aiohttp.ClientSession() as http:
        regs = [registrations(job, alloc)[0] for alloc in allocs]
        for reg in regs:
            await put(http, node, "/v1/agent/service/register", reg.service)
        logs = [tmp_path / f"proxy-{i}.log" for i in range(2)]
        proxies = [proxy_task(job, task_env(node, allocs[i]), logs[i]) for i in range(2)]
        try:
            for i in range(2):
                await asyncio.to_thread(_listens_for_db, allocs[i], logs[i])
            assert not any("cannot listen" in log.read_text() for log in logs)
        finally:
            for proxy in proxies:
                proxy.terminate()
            for i in range(2):
                assert proxies[i].wait(20) == 0, logs[i].read_text()[-2000:]
            for reg in regs:
                await put(http, node, f"/v1/agent/service/deregister/{reg.service_id}")


def _listens_for_db(alloc: Alloc, log: Path) -> None:
    line = f"upstream db listening on 127.0.0.1:{alloc.ports['db']}"
    eventually(lambda: line in log.read_text(), 20, what=f"{line}; {log.read_text()[-2000:]}")
