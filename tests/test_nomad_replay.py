"""The Nomad job files, and the registrations Nomad would send for them, against real agents.

A replay, not Nomad: Nomad is not installable here. The job files are
parsed with python-hcl2; tests/nomad_replay.py builds, from the example
job, the exact bodies Nomad's Consul service client sends (its shape, IDs
and quirks are listed there); they go over real HTTP (aiohttp) to a real
agent, and what Nomad reads back on its next sync is checked the way its
`different()` would. The proxy task runs from the job file's own
command line, with the environment Nomad's Connect-native hook gives it.
Catalog, health and DNS are then read from the *other* agent (py-consul,
dnspython), so the registration has travelled through the mesh.
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
from tests.proxy_support import App

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
    args = [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], a) for a in task["config"][0]["args"]]
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "gossamer.agent", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=cli_env(env=env),
                                start_new_session=True)  # fmt: skip


def srv_ports(agent: AgentProc, name: str) -> list[int]:
    q = dns.message.make_query(name, "SRV")
    reply = dns.query.udp(q, agent.ip, port=agent.dns_port, timeout=5)
    return sorted(rd.port for rrset in reply.answer for rd in rrset)


async def test_the_example_job_registered_as_nomad_would(
    pair: list[AgentProc], tmp_path: Path
) -> None:
    node, peer = pair
    job = load_job(NOMAD / "web-with-sidecar.nomad.hcl")
    alloc = Alloc(str(uuid.uuid4()), node.ip, {"http": free_port("127.0.0.1"),
                                               "mesh": free_port(node.ip)})  # fmt: skip
    [reg] = registrations(job, alloc)
    app = App("127.0.0.1", port=alloc.ports["http"]).start()
    env = {"NOMAD_IP_mesh": node.ip, "NOMAD_PORT_mesh": str(alloc.ports["mesh"]),
           "NOMAD_PORT_http": str(alloc.ports["http"]), "CONSUL_HTTP_ADDR": node.http}  # fmt: skip
    proxy = proxy_task(job, env, tmp_path / "proxy.log")
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
