"""The catalog and health read API over a real LiveCatalog, read with py-consul and aiohttp."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
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
from gossamer.agent.http.health_routes import add_health_routes
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import Check, NodeRecord, Service
from gossamer.catalog.store import CatalogStore
from tests.harness.http_app import SyncCalls, serving
from tests.harness.poll import eventually_async

ADDRESSES = {"n1": "198.18.0.1", "n2": "198.18.0.2", "n3": "198.18.0.3"}


def svc_check(service: Service, status: str = "passing") -> Check:
    return Check(
        check_id=f"service:{service.id}", name=f"Service '{service.name}' check", status=status,
        service_id=service.id, service_name=service.name, service_tags=service.tags, type="ttl",
    )  # fmt: skip


def node_record(
    node: str, version: int, services: list[Service], *, meta: dict[str, str] | None = None,
    status: str = "passing", origin: str = "", node_checks: tuple[Check, ...] = (),
) -> NodeRecord:  # fmt: skip
    return NodeRecord(
        node=node, node_id=f"id-{node}", datacenter="dc1",
        address=ADDRESSES.get(node, "198.18.0.99"), version=version, origin=origin or node,
        meta=meta or {}, services=tuple(services),
        checks=(*node_checks, *(svc_check(s, status) for s in services if s.kind == "")),
    )  # fmt: skip


WEB1 = Service(id="web", name="web", tags=("prod", "v1"), port=80)
DB1 = Service(id="db", name="db", port=5432)
WEB2 = Service(id="web", name="web", tags=("PROD",), port=80)
SIDECAR = Service(
    id="web-sidecar-proxy", name="web-sidecar-proxy", kind="connect-proxy", port=21000,
    proxy={"DestinationServiceName": "web", "DestinationServiceID": "web"},
)  # fmt: skip
WEB3 = Service(id="web", name="web", tags=("canary",), port=8080)
API3 = Service(id="api", name="api", port=9000, connect={"Native": True})
LEGACY = Service(id="legacy", name="legacy", port=25)
MEM = Check(check_id="mem", name="Memory", status="passing")


def initial_records() -> list[NodeRecord]:
    return [
        node_record("n1", 1, [WEB1, DB1], meta={"rack": "a"}, node_checks=(MEM,)),
        node_record("n2", 2, [WEB2, SIDECAR], meta={"rack": "b"}),
        node_record("n3", 3, [WEB3, API3], meta={"rack": "b"}, status="critical"),
        node_record("ext", 4, [LEGACY], origin="n1"),
    ]


@dataclass
class Served(SyncCalls):
    catalog: LiveCatalog
    base: str
    http: aiohttp.ClientSession
    client: consul.Consul

    async def get(self, path: str, **params: Any) -> tuple[int, Any, dict[str, str]]:
        async with self.http.get(self.base + path, params=params or None) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body, dict(r.headers)


@asynccontextmanager
async def started(tmp_path: Path, records: list[NodeRecord]) -> AsyncIterator[Served]:
    catalog = LiveCatalog("dc1", CatalogStore.open(tmp_path / "c.db"), wall_ms=lambda: 1_000)
    catalog.apply(records)
    app = web.Application(middlewares=[error_middleware])
    app[CATALOG_KEY] = catalog
    app[NODE_NAME_KEY] = "n2"
    add_catalog_routes(app.router)
    add_health_routes(app.router)
    async with serving(app) as where, aiohttp.ClientSession() as http:
        yield Served(catalog, where.base, http, where.consul())


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with started(tmp_path, initial_records()) as s:
        yield s


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    await eventually_async(predicate, timeout, interval=0.005)


# --- catalog --------------------------------------------------------------------------------


async def test_py_consul_reads_the_catalog(served: Served) -> None:
    c = served.client
    assert await served.call(c.catalog.datacenters) == ["dc1"]
    index, services = await served.call(c.catalog.services)
    assert int(index) >= 1
    assert services == {
        "api": [], "db": [], "legacy": [], "web": ["PROD", "canary", "prod", "v1"],
        "web-sidecar-proxy": [],
    }  # fmt: skip
    _, rows = await served.call(c.catalog.service, "web")
    assert [(r["Node"], r["ServiceID"], r["ServicePort"]) for r in rows] == [
        ("n1", "web", 80), ("n2", "web", 80), ("n3", "web", 8080),
    ]  # fmt: skip
    assert rows[0]["NodeMeta"] == {"rack": "a"} and rows[0]["ServiceTags"] == ["prod", "v1"]
    assert rows[2]["ServiceName"] == "web"  # critical, but the catalog does not filter on health
    _, nodes = await served.call(c.catalog.nodes)
    assert [n["Node"] for n in nodes] == ["ext", "n1", "n2", "n3"]
    assert set(nodes[0]) >= {"ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta"}
    _, node = await served.call(c.catalog.node, "n1")
    assert node["Node"]["Node"] == "n1" and sorted(node["Services"]) == ["db", "web"]
    assert node["Services"]["web"]["Tags"] == ["prod", "v1"]
    assert await served.call(c.catalog.node, "ghost") == (
        str(served.catalog.index(["node:ghost"])),
        None,
    )
    assert (await served.call(c.catalog.service, "nope"))[1] == []


async def test_node_services_and_unknown_node(served: Served) -> None:
    status, body, _ = await served.get("/v1/catalog/node-services/n2")
    assert status == 200 and body["Node"]["Node"] == "n2"
    assert [s["ID"] for s in body["Services"]] == ["web", "web-sidecar-proxy"]
    status, body, _ = await served.get("/v1/catalog/node-services/ghost")
    assert (status, body) == (200, {"Node": None, "Services": []})
    _, body, _ = await served.get("/v1/catalog/node/n2", filter='Kind == "connect-proxy"')
    assert list(body["Services"]) == ["web-sidecar-proxy"]


async def test_tags_must_all_match_case_insensitively(served: Served) -> None:
    async with served.http.get(served.base + "/v1/catalog/service/web?tag=prod&tag=v1") as r:
        assert [row["Node"] for row in await r.json()] == ["n1"]
    _, rows = await served.call(served.client.catalog.service, "web", tag="prod")
    assert [row["Node"] for row in rows] == ["n1", "n2"]  # n2's tag is PROD
    _, rows = await served.call(served.client.health.service, "web", tag=["prod", "v1"])
    assert [row["Node"]["Node"] for row in rows] == ["n1"]


async def test_near_agent_node_meta_and_filters(served: Served) -> None:
    c = served.client
    _, nodes = await served.call(c.catalog.nodes, near="_agent")
    assert [n["Node"] for n in nodes] == ["n2", "ext", "n1", "n3"]  # this agent runs as n2
    _, rows = await served.call(c.catalog.service, "web", near="n3")
    assert [r["Node"] for r in rows] == ["n3", "n1", "n2"]
    _, rows = await served.call(c.catalog.service, "web", node_meta={"rack": "b"})
    assert [r["Node"] for r in rows] == ["n2", "n3"]
    _, rows = await served.call(c.catalog.service, "web", filter_expr='NodeMeta.rack == "a"')
    assert [r["Node"] for r in rows] == ["n1"]
    _, nodes = await served.call(c.catalog.nodes, filter_expr="Meta.rack is empty")
    assert [n["Node"] for n in nodes] == ["ext"]
    _, services = await served.call(c.catalog.services, filter_expr="canary in ServiceTags")
    assert services == {"web": ["canary"]}
    _, rows = await served.call(c.health.service, "web", filter_expr="Checks.Status == critical")
    assert [r["Node"]["Node"] for r in rows] == ["n3"]


async def test_connect_endpoints_list_sidecars_and_natives(served: Served) -> None:
    c = served.client
    _, rows = await served.call(c.catalog.connect, "web")
    assert [(r["Node"], r["ServiceID"], r["ServiceKind"]) for r in rows] == [
        ("n2", "web-sidecar-proxy", "connect-proxy")
    ]
    _, rows = await served.call(c.catalog.connect, "api")
    assert [(r["Node"], r["ServiceID"]) for r in rows] == [("n3", "api")]
    _, rows = await served.call(c.health.connect, "web")
    assert [r["Service"]["ID"] for r in rows] == ["web-sidecar-proxy"]
    assert [ch["CheckID"] for ch in rows[0]["Checks"]] == ["serfHealth"]


# --- health ---------------------------------------------------------------------------------


async def test_passing_follows_service_node_and_gossip_health(served: Served) -> None:
    c = served.client
    _, rows = await served.call(c.health.service, "web")
    assert [r["Node"]["Node"] for r in rows] == ["n1", "n2", "n3"]
    assert [ch["CheckID"] for ch in rows[0]["Checks"]] == ["mem", "serfHealth", "service:web"]
    assert set(rows[0]) == {"Node", "Service", "Checks"}
    _, rows = await served.call(c.health.service, "web", passing=True)
    assert [r["Node"]["Node"] for r in rows] == ["n1", "n2"]

    served.catalog.set_failed("n1", True)
    _, rows = await served.call(c.health.service, "web", passing=True)
    assert [r["Node"]["Node"] for r in rows] == ["n2"]
    _, checks = await served.call(c.health.node, "n1")
    serf = next(ch for ch in checks if ch["CheckID"] == "serfHealth")
    assert serf["Status"] == "critical" and serf["Name"] == "Serf Health Status"
    _, critical = await served.call(c.health.state, "critical")
    assert [(ch["Node"], ch["CheckID"]) for ch in critical] == [
        ("n1", "serfHealth"), ("n3", "service:api"), ("n3", "service:web"),
    ]  # fmt: skip
    served.catalog.set_failed("n1", False)
    _, rows = await served.call(c.health.service, "web", passing=True)
    assert [r["Node"]["Node"] for r in rows] == ["n1", "n2"]


async def test_health_checks_node_and_state(served: Served) -> None:
    c = served.client
    _, checks = await served.call(c.health.checks, "web")
    assert [(ch["Node"], ch["CheckID"], ch["Status"]) for ch in checks] == [
        ("n1", "service:web", "passing"), ("n2", "service:web", "passing"),
        ("n3", "service:web", "critical"),
    ]  # fmt: skip
    _, checks = await served.call(c.health.node, "ext")
    assert [ch["CheckID"] for ch in checks] == ["service:legacy"]  # external: no serfHealth
    _, checks = await served.call(c.health.node, "ghost")
    assert checks == []
    _, checks = await served.call(c.health.state, "any")
    assert len(checks) == 1 + 4 + 2 + 3  # ext legacy; n1 mem/serf/db/web; n2 serf/web; n3
    _, checks = await served.call(c.health.state, "passing", filter_expr='Node == "n1"')
    assert [ch["CheckID"] for ch in checks] == ["mem", "serfHealth", "service:db", "service:web"]


# --- bad input and headers ------------------------------------------------------------------


async def test_bad_input_is_a_400_naming_the_parameter(served: Served) -> None:
    cases = {
        "/v1/catalog/service/web?filter=Nope == 1": "filter",
        "/v1/health/service/web?filter=Checks.Status ==": "filter",
        "/v1/catalog/nodes?index=abc": "index",
        "/v1/health/service/web?index=-1": "index",
        "/v1/catalog/services?index=1&wait=soon": "wait",
        "/v1/health/state/bogus": "state",
        "/v1/health/service/web?passing=maybe": "passing",
    }
    for path, word in cases.items():
        async with served.http.get(served.base + path) as r:
            text = await r.text()
            assert r.status == 400, (path, r.status, text)
            assert word in text, (path, text)
    async with served.http.get(served.base + "/v1/catalog/nodes?dc=dc2") as r:
        assert r.status == 500 and "No path to datacenter" in await r.text()
    with pytest.raises(consul.ConsulException):
        await served.call(served.client.catalog.services, dc="elsewhere")


async def test_index_headers_never_zero_even_when_empty(tmp_path: Path) -> None:
    async with started(tmp_path, []) as s:
        for path in ("/v1/catalog/nodes", "/v1/catalog/services", "/v1/catalog/service/x",
                     "/v1/catalog/connect/x", "/v1/catalog/node/x", "/v1/health/node/x",
                     "/v1/health/checks/x", "/v1/health/service/x", "/v1/health/state/any",
                     "/v1/health/connect/x", "/v1/catalog/node-services/x"):  # fmt: skip
            status, body, headers = await s.get(path)
            assert status == 200, path
            assert int(headers["X-Consul-Index"]) >= 1, path
            assert headers["X-Consul-KnownLeader"] == "true"
            assert headers["X-Consul-LastContact"] == "0"
            assert body is None if path == "/v1/catalog/node/x" else body is not None, path
            assert body in ([], {}, None, {"Node": None, "Services": []}), (path, body)


# --- blocking -------------------------------------------------------------------------------


async def test_a_watcher_of_a_wakes_for_a_and_sleeps_through_b(served: Served) -> None:
    loop = asyncio.get_running_loop()
    _, _, headers = await served.get("/v1/health/service/web")
    index = headers["X-Consul-Index"]
    watch = asyncio.create_task(served.get("/v1/health/service/web", index=index, wait="10s"))
    await until(lambda: served.catalog.watchers == 1)

    # db on n1 changes: the web watcher stays asleep.
    db_moved = Service(id="db", name="db", port=5433)
    served.catalog.apply([node_record("n1", 11, [WEB1, db_moved], meta={"rack": "a"},
                                      node_checks=(MEM,))])  # fmt: skip
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(watch), 0.3)
    assert served.catalog.watchers == 1

    # web on n2 changes: the watcher answers at once with the new data and a higher index.
    served.catalog.apply([node_record("n2", 12, [WEB2], meta={"rack": "b"}, status="warning")])
    changed_at = loop.time()
    status, rows, new_headers = await asyncio.wait_for(watch, 2)
    assert loop.time() - changed_at < 0.1
    assert status == 200 and int(new_headers["X-Consul-Index"]) > int(index)
    n2 = next(r for r in rows if r["Node"]["Node"] == "n2")
    assert {ch["Status"] for ch in n2["Checks"] if ch["CheckID"] == "service:web"} == {"warning"}
    assert served.catalog.watchers == 0


async def test_blocking_on_gossip_health_times_out_and_resets(served: Served) -> None:
    loop = asyncio.get_running_loop()
    _, _, headers = await served.get("/v1/catalog/nodes")
    index = int(headers["X-Consul-Index"])
    # An index from the future (ours went backwards) answers at once with the current one.
    start = loop.time()
    _, _, again = await served.get("/v1/catalog/nodes", index=index + 1000, wait="10s")
    assert loop.time() - start < 1 and int(again["X-Consul-Index"]) == index
    # A short wait with nothing changing returns after about the wait.
    start = loop.time()
    _, _, again = await served.get("/v1/catalog/nodes", index=index, wait="200ms")
    assert 0.19 <= loop.time() - start < 2 and int(again["X-Consul-Index"]) == index
    # serfHealth flipping wakes a health/state watcher.
    _, _, headers = await served.get("/v1/health/state/critical")
    watch = asyncio.create_task(
        served.get("/v1/health/state/critical", index=headers["X-Consul-Index"], wait="10s")
    )
    await until(lambda: served.catalog.watchers == 1)
    served.catalog.set_failed("n2", True)
    _, checks, _ = await asyncio.wait_for(watch, 2)
    assert ("n2", "serfHealth") in [(ch["Node"], ch["CheckID"]) for ch in checks]
