"""PUT /v1/catalog/register and /deregister over a real server, LiveCatalog and store.

Written with py-consul (a client nobody here wrote) and read back through the
catalog and health read API, the way any Consul client would.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import consul
import pytest
from aiohttp import web

from gossamer.agent.http.app import error_middleware
from gossamer.agent.http.catalog_access import CATALOG_KEY, NODE_NAME_KEY
from gossamer.agent.http.catalog_routes import add_catalog_routes
from gossamer.agent.http.catalog_write_routes import EXTERNAL_NODES_KEY, add_catalog_write_routes
from gossamer.agent.http.health_routes import add_health_routes
from gossamer.agent.local.external_nodes import ExternalNodes
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import NodeRecord, Service
from gossamer.catalog.store import CatalogStore
from tests.harness.http_app import ServeApp, SyncCalls, serving

OWNER = "n1"
MEMBERS = {"n1", "n2", "n9"}  # n9 is a gossip member whose record has not arrived yet
UUID = "40e4a748-2192-161a-0510-9bf59fe950b5"


def seed() -> list[NodeRecord]:
    agent = NodeRecord("n1", "id-n1", "dc1", "198.18.0.1", 5, "n1")
    other = NodeRecord("n2", "id-n2", "dc1", "198.18.0.2", 5, "n2")
    theirs = NodeRecord(
        "ext2", "", "dc1", "198.18.0.3", 7, "n2", services=(Service("db", "db", port=5432),)
    )
    orphan = NodeRecord("ext3", "", "dc1", "198.18.0.4", 7, "gone")  # its owner left
    return [agent, other, theirs, orphan]


@dataclass
class Served(SyncCalls):
    catalog: LiveCatalog
    store: CatalogStore
    clock: list[int]
    base: str
    http: aiohttp.ClientSession
    client: consul.Consul

    async def get(self, path: str) -> Any:
        async with self.http.get(self.base + path) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def put(self, path: str, data: str) -> tuple[int, str]:
        async with self.http.put(self.base + path, data=data) as r:
            return r.status, await r.text()

    def record(self, node: str) -> NodeRecord | None:
        return self.catalog.record(node)


@asynccontextmanager
async def started(path: Path, clock: list[int], records: list[NodeRecord]) -> AsyncIterator[Served]:
    store = CatalogStore.open(path)
    catalog = LiveCatalog("dc1", store, wall_ms=lambda: clock[0])
    catalog.apply(records)
    external = ExternalNodes(
        catalog, owner=OWNER, wall_ms=lambda: clock[0], is_member=MEMBERS.__contains__
    )
    app = web.Application(middlewares=[error_middleware])
    app[CATALOG_KEY] = catalog
    app[NODE_NAME_KEY] = OWNER
    app[EXTERNAL_NODES_KEY] = external
    add_catalog_routes(app.router)
    add_health_routes(app.router)
    add_catalog_write_routes(app.router)
    try:
        async with serving(app) as where, aiohttp.ClientSession() as http:
            yield Served(catalog, store, clock, where.base, http, where.consul())
    finally:
        store.close()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with started(tmp_path / "c.db", [1_000], seed()) as s:
        yield s


REDIS = {"Service": "redis", "ID": "redis1", "Tags": ["primary"], "Port": 8000}
REDIS_CHECK = {"CheckID": "service:redis1", "Name": "Redis", "Status": "passing",
               "ServiceID": "redis1", "Notes": "watched elsewhere"}  # fmt: skip


# --- registering ----------------------------------------------------------------------------


async def test_register_with_py_consul_and_read_back(served: Served) -> None:
    c = served.client
    ok = await served.call(c.catalog.register, "ext1", "10.0.0.7", service=REDIS, check=REDIS_CHECK)
    assert ok is True
    body = await served.get("/v1/catalog/node/ext1")
    assert body["Node"]["Node"] == "ext1" and body["Node"]["Address"] == "10.0.0.7"
    assert body["Node"]["Datacenter"] == "dc1"
    redis = body["Services"]["redis1"]
    assert (redis["Service"], redis["Tags"], redis["Port"]) == ("redis", ["primary"], 8000)
    checks = await served.get("/v1/health/node/ext1")
    # An external node has no serfHealth: its checks are exactly what was registered.
    assert [(h["CheckID"], h["Status"], h["ServiceName"], h["ServiceTags"]) for h in checks] == [
        ("service:redis1", "passing", "redis", ["primary"])
    ]
    assert checks[0]["Notes"] == "watched elsewhere"
    _, rows = await served.call(c.health.service, "redis", passing=True)
    assert [r["Node"]["Node"] for r in rows] == ["ext1"]
    record = served.record("ext1")
    assert record is not None and record.origin == OWNER and record.is_external


async def test_each_call_merges_into_the_node(served: Served) -> None:
    c = served.client
    await served.call(c.catalog.register, "ext1", "10.0.0.7", service=REDIS, check=REDIS_CHECK)
    web_svc = {"Service": "web", "Port": 80}
    await served.call(c.catalog.register, "ext1", "10.0.0.7", service=web_svc)
    node_check = {"Name": "disk"}  # no CheckID: it defaults to the name; no Status: critical
    await served.call(c.catalog.register, "ext1", "10.0.0.7", check=node_check)
    body = await served.get("/v1/catalog/node/ext1")
    assert sorted(body["Services"]) == ["redis1", "web"]
    checks = {h["CheckID"]: h["Status"] for h in await served.get("/v1/health/node/ext1")}
    assert checks == {"disk": "critical", "service:redis1": "passing"}
    # Re-registering a service replaces it; its checks follow the new name and tags.
    redis2 = REDIS | {"Tags": ["replica"], "Port": 8001}
    await served.call(c.catalog.register, "ext1", "10.0.0.8", service=redis2)
    body = await served.get("/v1/catalog/node/ext1")
    assert body["Node"]["Address"] == "10.0.0.8"
    assert (body["Services"]["redis1"]["Tags"], body["Services"]["redis1"]["Port"]) == (
        ["replica"], 8001,
    )  # fmt: skip
    rows = await served.get("/v1/health/checks/redis")
    assert [(r["CheckID"], r["ServiceTags"]) for r in rows] == [("service:redis1", ["replica"])]


async def test_full_body_node_fields_checks_and_skip_node_update(served: Served) -> None:
    body = {
        "ID": UUID, "Node": "t2.320", "Address": "192.168.10.10", "Datacenter": "dc1",
        "TaggedAddresses": {"lan": "192.168.10.10", "wan": "10.0.10.10"},
        "NodeMeta": {"somekey": "somevalue"},
        "Service": {"ID": "redis1", "Service": "redis", "Address": "127.0.0.1", "Port": 8000,
                    "Meta": {"redis_version": "4.0"}, "Namespace": "default",
                    "TaggedAddresses": {"lan": {"address": "127.0.0.1", "port": 8000}}},
        "Checks": [
            {"Node": "t2.320", "CheckID": "service:redis1", "Name": "Redis health check",
             "Status": "warning", "ServiceID": "redis1",
             "Definition": {"tcp": "localhost:8888", "Interval": "5s", "Timeout": 1_000_000_000,
                            "DeregisterCriticalServiceAfter": "30s"}},
            {"name": "mem", "status": "passing", "output": "fine"},
        ],
        "SkipNodeUpdate": False,
    }  # fmt: skip
    status, text = await served.put("/v1/catalog/register", json.dumps(body))
    assert (status, text) == (200, "true")
    nodes = {n["Node"]: n for n in await served.get("/v1/catalog/nodes")}
    node = nodes["t2.320"]
    assert node["ID"] == UUID and node["Meta"] == {"somekey": "somevalue"}
    assert node["TaggedAddresses"] == {"lan": "192.168.10.10", "wan": "10.0.10.10"}
    rows = {h["CheckID"]: h for h in await served.get("/v1/health/node/t2.320")}
    tcp = rows["service:redis1"]
    assert (tcp["Type"], tcp["Interval"], tcp["Timeout"], tcp["Status"]) == (
        "tcp", "5s", "1s", "warning",
    )  # fmt: skip
    assert tcp["Definition"] == {
        "DeregisterCriticalServiceAfter": "30s", "Interval": "5s", "TCP": "localhost:8888",
        "Timeout": "1s",
    }  # fmt: skip
    assert (rows["mem"]["Output"], rows["mem"]["Type"], rows["mem"]["ServiceID"]) == (
        "fine",
        "",
        "",
    )
    # SkipNodeUpdate: the node's fields stay, the service is added.
    skip = {"Node": "t2.320", "SkipNodeUpdate": True, "Service": {"Service": "extra"}}
    assert (await served.put("/v1/catalog/register", json.dumps(skip)))[0] == 200
    after = {n["Node"]: n for n in await served.get("/v1/catalog/nodes")}["t2.320"]
    assert after["Address"] == "192.168.10.10" and after["Meta"] == {"somekey": "somevalue"}
    assert sorted((await served.get("/v1/catalog/node/t2.320"))["Services"]) == ["extra", "redis1"]


# --- deregistering --------------------------------------------------------------------------


async def test_deregister_service_check_node_and_unknowns(served: Served) -> None:
    c = served.client
    await served.call(c.catalog.register, "ext1", "10.0.0.7", service=REDIS, check=REDIS_CHECK)
    await served.call(c.catalog.register, "ext1", "10.0.0.7", check={"Name": "disk"})
    await served.call(c.catalog.register, "ext1", "10.0.0.7", service={"Service": "web"})
    assert await served.call(c.catalog.deregister, "ext1", service_id="redis1") is True
    body = await served.get("/v1/catalog/node/ext1")
    assert sorted(body["Services"]) == ["web"]
    assert [h["CheckID"] for h in await served.get("/v1/health/node/ext1")] == ["disk"]
    assert await served.call(c.catalog.deregister, "ext1", check_id="disk") is True
    assert await served.get("/v1/health/node/ext1") == []
    # Unknown service, check and node: Consul answers true and changes nothing.
    before = served.record("ext1")
    for kwargs in ({"service_id": "nope"}, {"check_id": "nope"}):
        assert await served.call(c.catalog.deregister, "ext1", **kwargs) is True
    assert served.record("ext1") == before
    assert await served.call(c.catalog.deregister, "never-registered") is True
    # Only Node: the whole node goes, leaving a tombstone newer than the record.
    assert before is not None
    assert await served.call(c.catalog.deregister, "ext1") is True
    assert "ext1" not in [n["Node"] for n in await served.get("/v1/catalog/nodes")]
    assert await served.get("/v1/catalog/node/ext1") is None
    tomb = served.catalog.state.tombstones["dc1"]["ext1"]
    assert tomb.version > before.version
    # Registering it again outranks the tombstone, even with the wall clock behind.
    served.clock[0] = 10
    await served.call(c.catalog.register, "ext1", "10.0.0.9")
    again = served.record("ext1")
    assert again is not None and again.version > tomb.version and again.services == ()


# --- versions and persistence ---------------------------------------------------------------


async def test_versions_grow_and_survive_a_restart(tmp_path: Path) -> None:
    clock = [1_000]
    async with started(tmp_path / "c.db", clock, seed()) as s:
        await s.call(s.client.catalog.register, "ext1", "10.0.0.7", service=REDIS)
        first = s.record("ext1")
        await s.call(s.client.catalog.register, "ext1", "10.0.0.7", service=REDIS)
        assert s.record("ext1") == first  # nothing changed: no new version
        await s.call(s.client.catalog.register, "ext1", "10.0.0.7", check=REDIS_CHECK)
        second = s.record("ext1")
        assert first is not None and second is not None
        assert (first.version, second.version) == (1_000, 1_001)
        clock[0] = 50_000
        await s.call(s.client.catalog.register, "ext1", "10.0.0.7", check={"Name": "disk"})
        third = s.record("ext1")
        assert third is not None and third.version == 50_000  # floored by the wall clock
    # Restart with the clock set back: everything is there and versions keep growing.
    clock[0] = 5
    async with started(tmp_path / "c.db", clock, []) as s:
        assert s.record("ext1") == third
        rows = {h["CheckID"]: h["Status"] for h in await s.get("/v1/health/node/ext1")}
        assert rows == {"disk": "critical", "service:redis1": "passing"}
        await s.call(s.client.catalog.register, "ext1", "10.0.0.7", service={"Service": "web"})
        fourth = s.record("ext1")
        assert fourth is not None and fourth.version == 50_001 and fourth.origin == OWNER


# --- refusals -------------------------------------------------------------------------------


BAD_BODIES: list[tuple[str, str]] = [
    ('{"Node": ', "Request decode failed"),
    ("[1]", "body: must be a JSON object"),
    ('{"Address": "10.0.0.1"}', "Node: missing required field"),
    ('{"Node": "x"}', "Address: missing required field"),
    ('{"Node": "x", "Address": "a", "Adress": "b"}', "Adress: unknown field"),
    ('{"Node": "x", "Address": "a", "ID": "not-a-uuid"}', "ID: must be a 36-character UUID"),
    ('{"Node": "x", "Address": "a", "Datacenter": "dc2"}', "Datacenter: \"dc2\" is not"),
    ('{"Node": "x", "Address": "a", "NodeMeta": {"bad key": "v"}}', 'NodeMeta["bad key"]: key'),
    ('{"Node": "x", "Address": "a", "Service": {"Port": 1}}', "Service.Service: missing"),
    ('{"Node": "x", "Address": "a", "Service": {"Service": "s", "Port": "80"}}', "Service.Port:"),
    ('{"Node": "x", "Address": "a", "Service": {"Name": "s"}}', "Service.Name: unknown field"),
    ('{"Node": "x", "Address": "a", "Check": {"Name": "c", "Status": "ok"}}', "Check.Status:"),
    ('{"Node": "x", "Address": "a", "Check": {"Status": "passing"}}', "Check.CheckID: missing"),
    ('{"Node": "x", "Address": "a", "Checks": [{"Name": "c", "ServiceID": "s"}]}',
     "Checks[0].ServiceID: Missing service registration"),
    ('{"Node": "x", "Address": "a", "Check": {"Name": "c", "Node": "y"}}', "Check.Node: check"),
    ('{"Node": "x", "Address": "a", "Check": {"Name": "c", "Definition": {"Interval": "soon"}}}',
     "Check.Definition.Interval: must be a duration"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "error"), BAD_BODIES)
async def test_bad_bodies_are_400_naming_the_field(served: Served, body: str, error: str) -> None:
    before = served.catalog.state
    status, text = await served.put("/v1/catalog/register", body)
    assert status == 400, text
    assert error in text
    assert served.catalog.state is before  # nothing half-registered


async def test_bad_deregister_bodies(served: Served) -> None:
    for body, error in [
        ('{"ServiceID": "s"}', "Node: missing required field"),
        ('{"Node": "x", "Datacenter": "dc9"}', "Datacenter:"),
        ('{"Node": "x", "ServiceID": 3}', "ServiceID: must be a string"),
    ]:
        status, text = await served.put("/v1/catalog/deregister", body)
        assert (status, error in text) == (400, True), text


async def test_names_owned_by_someone_else_are_refused(served: Served) -> None:
    c = served.client
    before = served.catalog.state
    for node, says in [
        ("n1", "is an agent of the cluster"),  # this agent itself
        ("n2", "is an agent of the cluster"),  # another agent's own record
        ("n9", "is an agent of the cluster"),  # a gossip member with no record yet
        ("ext2", 'owned by agent "n2"'),  # an external node another agent took
    ]:
        status, text = await served.put(
            "/v1/catalog/register", json.dumps({"Node": node, "Address": "10.0.0.1"})
        )
        assert status == 409 and says in text, (node, status, text)
        with pytest.raises(consul.ConsulException):
            await served.call(c.catalog.register, node, "10.0.0.1")
    for node in ("n2", "ext2"):
        status, text = await served.put("/v1/catalog/deregister", json.dumps({"Node": node}))
        assert status == 409, text
    assert served.catalog.state is before


async def test_the_node_of_an_owner_that_left_is_adopted(served: Served) -> None:
    c = served.client
    assert await served.call(c.catalog.register, "ext3", "10.0.0.3", service=REDIS) is True
    adopted = served.record("ext3")
    assert adopted is not None and adopted.origin == OWNER and adopted.version > 7
    assert await served.call(c.catalog.deregister, "ext3") is True
    assert served.record("ext3") is None


async def test_routes_without_external_nodes_answer_500(serve_app: ServeApp) -> None:
    app = web.Application(middlewares=[error_middleware])
    add_catalog_write_routes(app.router)
    bare = await serve_app(app)
    async with aiohttp.ClientSession() as http:
        url = bare.base + "/v1/catalog/register"
        async with http.put(url, data='{"Node": "x", "Address": "a"}') as r:
            assert r.status == 500 and "not available" in await r.text()
