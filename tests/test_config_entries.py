"""Config entries: the pure reader's table, the replicated store, and `/v1/config` over a socket.

The routes are served in-process on a real socket over a real store and
read with py-consul (its `config` calls) and aiohttp; two stores exchange
their maps as the replicator does (snapshot -> absorb). The proxy side of
service-splitter, and the CLI against two real agents, are in test_proxy_splits.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import consul
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.agent.cli.config_hcl import HclError, read_entry_hcl
from gossamer.agent.http.app import error_middleware
from gossamer.agent.http.catalog_access import CATALOG_KEY
from gossamer.agent.http.config_entry_routes import CONFIG_ENTRIES_KEY, add_config_entry_routes
from gossamer.agent.replicated.config_entry_store import ConfigEntryStore
from gossamer.catalog import lww
from gossamer.catalog.config_defaults import with_service_defaults
from gossamer.catalog.config_entries import ConfigEntryError, Split, read_entry, splits_of
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore
from tests.harness.cli import DOWN, expect
from tests.harness.http_app import SyncCalls, serving
from tests.harness.poll import eventually_async
from tests.harness.served_agent import Served as FakeServed

SPLITS = [{"Weight": 90, "Service": "api"}, {"Weight": 10, "Service": "api-canary"}]
CANARY = {"Kind": "service-splitter", "Name": "api", "Splits": SPLITS}


# --- the reader (pure) -------------------------------------------------------------------------


def test_reader_normalises_a_splitter_and_defaults() -> None:
    assert read_entry(CANARY) == CANARY
    body = {"kind": "service-splitter", "name": "api",
            "splits": [{"weight": 33.33}, {"weight": 66.67, "service": "v2"}]}  # fmt: skip
    entry = read_entry(body)
    assert entry["Splits"] == [{"Weight": 33.33, "Service": "api"},
                               {"Weight": 66.67, "Service": "v2"}]  # fmt: skip
    assert splits_of(entry) == (Split(3333, "api"), Split(6667, "v2"))
    assert read_entry({"Kind": "service-defaults", "Name": "web", "Protocol": "HTTP"}) == {
        "Kind": "service-defaults", "Name": "web", "Protocol": "http"}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"Kind": "service-splitter", "Name": "api", "Splits": [{"Weight": 90}]},
         "Splits", "weights must sum to 100, got 90"),
        ({"Kind": "service-splitter", "Name": "api",
          "Splits": [{"Weight": 50.001}, {"Weight": 49.999, "Service": "b"}]},
         "", ""),  # 0.01 precision: 5000 + 5000 hundredths is 100
        ({"Kind": "service-splitter", "Name": "api", "Splits": [{"Weight": 100.5}]},
         "Splits[0].Weight", "from 0 to 100"),
        ({"Kind": "service-splitter", "Name": "api", "Splits": [{"Weight": "90"}]},
         "Splits[0].Weight", "must be a number"),
        ({"Kind": "service-splitter", "Name": "api",
          "Splits": [{"Weight": 50}, {"Weight": 50, "Service": "api"}]},
         "Splits[1].Service", "more than once"),
        ({"Kind": "service-splitter", "Name": "api",
          "Splits": [{"Weight": 100, "ServiceSubset": "V_2"}]},
         "Splits[0].ServiceSubset", "not a subset name"),
        ({"Kind": "service-splitter", "Name": "api", "Splits": []}, "Splits", "must be a list of"),
        ({"Kind": "service-splitter", "Splits": [{"Weight": 100, "Service": "x"}]},
         "Name", "is required"),
        ({"Kind": "service-router", "Name": "api", "Routes": {}}, "Routes", "must be a list"),
        ({"Kind": "ingress-gateway", "Name": "api"}, "Kind", "not a config entry kind"),
        ({"Kind": "mesh", "Name": "api"}, "Kind", "not a config entry kind"),
        ({"Name": "api"}, "Kind", "must name a config entry kind"),
        ({"Kind": "service-defaults", "Name": "api", "Protocol": "udp"}, "Protocol", "one of"),
        ({"Kind": "service-defaults", "Name": "api", "Bogus": 1}, "Bogus", "unknown field"),
        ({"Kind": "service-defaults", "Name": "a/b"}, "Name", "must be a service name"),
        ({"Kind": "service-defaults", "Name": "api", "Meta": {"consul-x": "1"}},
         'Meta["consul-x"]', "reserved"),
        ({"Kind": "service-defaults", "Name": "api", "Namespace": "team"}, "Namespace",
         "Enterprise"),
    ],
)  # fmt: skip
def test_reader_names_the_field_at_fault(body: dict[str, Any], field: str, words: str) -> None:
    if not field:
        read_entry(body)
        return
    with pytest.raises(ConfigEntryError) as caught:
        read_entry(body)
    assert caught.value.field == field and words in caught.value.message


def test_reader_reports_every_problem_at_once() -> None:
    body = {"Kind": "service-splitter", "Name": "",
            "Splits": [{"Weight": -1}, {"Weight": 10, "ServiceSubset": "X"}]}  # fmt: skip
    with pytest.raises(ConfigEntryError) as caught:
        read_entry(body)
    fields = [f for f, _ in caught.value.problems]
    assert fields == ["Name", "Splits[0].Weight", "Splits[1].ServiceSubset"]


# --- the replicated store ----------------------------------------------------------------------


def _store(tmp_path: Path, node: str) -> tuple[ConfigEntryStore, LiveCatalog, CatalogStore]:
    db = CatalogStore.open(tmp_path / f"{node}.db")
    catalog = LiveCatalog("dc1", db, wall_ms=lambda: 1_000)
    clock = iter(range(1_700_000_000_000, 1_800_000_000_000, 10))
    store = ConfigEntryStore(db, node=node, wall_ms=lambda: next(clock), notify=catalog.touch)
    return store, catalog, db


def test_store_cas_indexes_replication_and_reload(tmp_path: Path) -> None:
    a, _, db_a = _store(tmp_path, "a")
    b, _, db_b = _store(tmp_path, "b")
    assert a.put(CANARY, cas=0)
    assert not a.put(CANARY, cas=0)  # held already
    first = a.get("service-splitter", "api")
    assert first is not None and first["CreateIndex"] == first["ModifyIndex"]
    moved = {**CANARY, "Splits": [{"Weight": 100, "Service": "api-canary"}]}
    assert not a.put(moved, cas=first["ModifyIndex"] + 1)
    assert a.put(moved, cas=first["ModifyIndex"])
    second = a.get("service-splitter", "api")
    assert second is not None and second["CreateIndex"] == first["CreateIndex"]
    assert second["ModifyIndex"] > first["ModifyIndex"] and second["Splits"] == moved["Splits"]

    assert b.absorb(_entries(a)) == ["service-splitter/api"]
    assert b.of_kind("service-splitter")[0]["Splits"] == moved["Splits"]
    assert a.delete("service-splitter", "api")
    b.absorb(_entries(a))
    assert b.get("service-splitter", "api") is None and b.of_kind("service-splitter") == []
    assert b.absorb([("nonsense-key", _entries(a)[0][1])]) == []  # not a kind/name: refused
    db_a.close()
    b.put({"Kind": "service-defaults", "Name": "web", "Protocol": "http"})
    db_b.close()
    reopened, _, db = _store(tmp_path, "b")
    held = reopened.get("service-defaults", "web")
    assert held is not None and held["Protocol"] == "http"
    db.close()


def _entries(store: ConfigEntryStore) -> list[tuple[str, lww.Entry]]:
    return list(store._map.entries.items())


# --- /v1/config over a socket --------------------------------------------------------------------


@dataclass
class Served(SyncCalls):
    base: str
    http: aiohttp.ClientSession
    client: consul.Consul
    store: ConfigEntryStore
    catalog: LiveCatalog

    async def req(self, method: str, url: str, body: Any = None) -> tuple[int, Any, Any]:
        async with self.http.request(method, self.base + url, json=body) as r:
            data = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, data, r.headers


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Served]:
    store, catalog, db = _store(tmp_path, "n1")
    app = web.Application(middlewares=[error_middleware])
    app[CATALOG_KEY] = catalog
    app[CONFIG_ENTRIES_KEY] = store
    add_config_entry_routes(app.router)
    try:
        async with serving(app) as where, aiohttp.ClientSession() as http:
            yield Served(where.base, http, where.consul(), store, catalog)
    finally:
        db.close()


async def test_py_consul_set_get_list_delete(api: Served) -> None:
    config = api.client.config
    splits = CANARY["Splits"]
    assert await api.call(config.set, "service-splitter", "api", {"Splits": splits}) is True
    assert await api.call(config.set, "service-defaults", "api", {"Protocol": "http"})
    got = await api.call(config.get, "service-splitter", "api")
    assert got["Splits"] == splits and got["ModifyIndex"] >= got["CreateIndex"] > 0
    assert not await api.call(config.set, "service-splitter", "api", {"Splits": splits}, cas=0)
    index = got["ModifyIndex"]
    assert await api.call(config.set, "service-splitter", "api", {"Splits": splits}, cas=index)
    listed = await api.call(config.list, "service-splitter")
    assert [e["Name"] for e in listed] == ["api"]
    assert not await api.call(config.delete, "service-splitter", "api", cas=index)  # moved on
    await api.call(config.delete, "service-splitter", "api")
    assert await api.call(config.list, "service-splitter") == []
    assert await api.call(config.get, "service-splitter", "api") is None  # 404 -> None


async def test_bad_bodies_and_paths_are_400s_naming_the_field(api: Served) -> None:
    bad = {**CANARY, "Splits": [{"Weight": 90, "Service": "api"}, {"Weight": 5, "Service": "b"}]}
    status, text, _ = await api.req("PUT", "/v1/config", bad)
    assert status == 400 and "Splits: weights must sum to 100, got 95" in text
    status, text, _ = await api.req("PUT", "/v1/config?cas=x", CANARY)
    assert status == 400 and "'cas'" in text
    status, text, _ = await api.req("GET", "/v1/config/ingress-gateway/api")
    assert status == 400 and text.startswith("kind: 'ingress-gateway'")
    status, text, _ = await api.req("GET", "/v1/config/service-splitter/nope")
    assert status == 404 and "Config entry not found" in text
    status, text, _ = await api.req("GET", "/v1/config/service-splitter?dc=dc9")
    assert status == 500 and "dc9" in text


async def test_reads_are_blocking_queries_woken_by_a_write(api: Served) -> None:
    status, _, headers = await api.req("GET", "/v1/config/service-splitter")
    index = int(headers["X-Consul-Index"])
    assert status == 200 and index >= 1
    parked = asyncio.create_task(
        api.req("GET", f"/v1/config/service-splitter?index={index}&wait=10s")
    )
    await eventually_async(lambda: api.catalog.watchers == 1)  # parked, not answered
    assert api.store.put(CANARY)
    status, body, headers = await asyncio.wait_for(parked, 5)
    assert status == 200 and [e["Name"] for e in body] == ["api"]
    assert int(headers["X-Consul-Index"]) > index


# --- the CLI's own checks (with real agents: test_proxy_splits.py) -----------------------------


def test_cli_bad_input_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**CANARY, "Splits": [{"Weight": 90, "Service": "api"}]}))
    said = expect("config", "write", str(bad), "--http-addr", DOWN, code=2)
    assert f"{bad}: Splits: weights must sum to 100, got 90" in said
    hcl = tmp_path / "entry.hcl"
    hcl.write_text('Kind = "service-splitter"\nName = "api"\nSplits = [\n  { Weight = 90 \n')
    said = expect("config", "write", str(hcl), "--http-addr", DOWN, code=2)
    assert f"{hcl}: line 5, column 1: missing '}}'" in said


# --- HCL entry files (the CLI) -----------------------------------------------------------------

CANARY_HCL = """
# a canary: one request in ten
Kind = "service-splitter"
Name = "api"
Splits = [
  { Weight = 90, Service = "api" },
  {
    weight  = 10.0
    service = "api-canary"
  },
]
Meta { team = "payments" }
"""


def test_hcl_entry_files_read_as_consul_writes_them() -> None:
    entry = read_entry(read_entry_hcl(CANARY_HCL))
    assert entry == CANARY | {"Meta": {"team": "payments"}}
    assert read_entry_hcl('Protocol = "http"\nFlag = true\nEmpty = []') == {
        "Protocol": "http", "Flag": True, "Empty": []}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ('Kind "x"\nName = "a"', ["line 1, column 6: expected '=' after Kind, found '\"x\"'"]),
        ("A = \nB = [1 2]", ["line 2, column 1: expected a value, found 'B'"]),
        ("A = [1 2]\nB = =", ["line 1, column 8: expected ',' or ']', found '2'",
                              "line 2, column 5: expected a value, found '='"]),
        ("M { a = 1", ["line 1, column 10: missing '}'"]),
        ('A = "open', ["line 1, column 5: unterminated string",
                       "line 1, column 6: expected a value, found 'open'"]),
    ],
)  # fmt: skip
def test_hcl_syntax_problems_name_every_line(text: str, problems: list[str]) -> None:
    with pytest.raises(HclError) as caught:
        read_entry_hcl(text)
    assert str(caught.value).split("; ") == problems


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]=,"#\n ab1.-', max_size=60) | st.text(max_size=60))
def test_hcl_reader_reads_or_raises_its_one_error(text: str) -> None:
    try:
        found = read_entry_hcl(text)
    except HclError as exc:
        assert "line " in str(exc)  # every problem says where
    else:
        assert isinstance(found, dict)


# --- service-defaults' protocol in the sidecar registrations the agent serves --------------------


def test_defaults_fill_only_what_the_registration_leaves_unset() -> None:
    body = {"Kind": "connect-proxy", "Proxy": {
        "DestinationServiceName": "web", "Config": {"bind_port": 1},
        "Upstreams": [{"DestinationName": "db"}, {"DestinationName": "api",
                                                  "Config": {"protocol": "tcp"}},
                      {"DestinationType": "prepared_query", "DestinationName": "db"}]}}  # fmt: skip
    merged = with_service_defaults(body, {"web": "http", "db": "grpc", "api": "http"}.get)
    proxy = merged["Proxy"]
    assert proxy["Config"] == {"bind_port": 1, "protocol": "http"}
    assert [u.get("Config") for u in proxy["Upstreams"]] == [
        {"protocol": "grpc"}, {"protocol": "tcp"}, None,  # own config wins; queries untouched
    ]  # fmt: skip
    assert "protocol" not in body["Proxy"]["Config"]  # the input is not modified
    plain = {"Kind": "", "Service": "web"}
    assert with_service_defaults(plain, {"web": "http"}.get) is plain


async def test_the_sidecar_registration_follows_service_defaults(served: FakeServed) -> None:
    register = {"Name": "db", "Port": 5432, "Connect": {"SidecarService": {}}}
    assert (await served.call("PUT", "/v1/agent/service/register", json.dumps(register)))[0] == 200
    path = "/v1/agent/service/db-sidecar-proxy"
    status, text = await served.call("GET", path)
    before = json.loads(text)
    assert status == 200 and "protocol" not in (before["Proxy"].get("Config") or {})
    parked = asyncio.create_task(
        served.call("GET", f"{path}?hash={before['ContentHash']}&wait=10s")
    )
    catalog = served.client.app[CATALOG_KEY]
    await eventually_async(lambda: catalog.watchers == 1)  # parked on the old hash
    entry = {"Kind": "service-defaults", "Name": "db", "Protocol": "http"}
    assert await served.call("PUT", "/v1/config", json.dumps(entry)) == (200, "true")
    status, text = await asyncio.wait_for(parked, 5)  # the new content, not the 10 s wait
    assert status == 200 and json.loads(text)["Proxy"]["Config"]["protocol"] == "http"
