"""The intention HTTP API over a real IntentionStore, read and written with py-consul and aiohttp.

One agent's routes served in-process on a real socket; replication between
agents is tested against real agents in test_intentions_cluster.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import consul
import pytest
from aiohttp import web

from gossamer.agent.config import AgentConfig, IntentionsConfig
from gossamer.agent.http.app import error_middleware
from gossamer.agent.http.catalog_access import CATALOG_KEY
from gossamer.agent.http.intention_access import (
    INTENTIONS_KEY,
    IntentionsAccess,
    wake_on_new_default,
)
from gossamer.agent.http.intention_check_routes import add_intention_check_routes
from gossamer.agent.http.intention_routes import add_intention_id_routes, add_intention_routes
from gossamer.agent.replicated.intention_store import IntentionStore
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore
from tests.harness.http_app import ServeApp, SyncCalls, serving
from tests.harness.poll import eventually_async

SPIFFE = "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/{}"
L7 = [
    {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
    {"Action": "allow", "HTTP": {"PathPrefix": "/api", "Methods": ["GET", "HEAD"],
                                 "Header": [{"Name": "X-Env", "Exact": "prod"}]}},
]  # fmt: skip


@dataclass
class Served(SyncCalls):
    base: str
    http: aiohttp.ClientSession
    client: consul.Consul
    store: IntentionStore
    catalog: LiveCatalog
    policy: dict[str, bool] = field(default_factory=lambda: {"allow": False})

    async def req(
        self, method: str, url: str, body: Any = None, raw: bytes | None = None, /, **params: Any
    ) -> tuple[int, Any, dict[str, str]]:
        kw: dict[str, Any] = {"params": params or None}
        if raw is not None:
            kw["data"] = raw
        elif body is not None:
            kw["json"] = body
        async with self.http.request(method, self.base + url, **kw) as r:
            data = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, data, dict(r.headers)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    db = CatalogStore.open(tmp_path / "c.db")
    catalog = LiveCatalog("dc1", db, wall_ms=lambda: 1_000)
    store = IntentionStore(db, node="n1", wall_ms=lambda: 1_700_000_000_000, notify=catalog.touch)
    policy = {"allow": False}
    app = web.Application(middlewares=[error_middleware])
    app[CATALOG_KEY] = catalog
    app[INTENTIONS_KEY] = IntentionsAccess(store, lambda: policy["allow"])
    add_intention_routes(app.router)
    add_intention_check_routes(app.router)
    add_intention_id_routes(app.router)
    try:
        async with serving(app) as where, aiohttp.ClientSession() as http:
            yield Served(where.base, http, where.consul(), store, catalog, policy)
    finally:
        db.close()


# --- py-consul ---------------------------------------------------------------------------------


async def test_py_consul_upsert_read_list_check_match_delete(served: Served) -> None:
    ixns = served.client.connect.intentions
    assert await served.call(ixns.upsert, "web", "db", action="allow", description="d",
                             meta={"team": "a"})  # fmt: skip
    assert await served.call(ixns.upsert, "*", "db", action="deny")
    assert await served.call(ixns.upsert, "web", "api", permissions=L7)
    got = await served.call(ixns.read, "web", "db")
    assert got["Action"] == "allow" and got["Meta"] == {"team": "a"} and got["Precedence"] == 9
    assert got["ID"] and got["CreatedAt"].endswith("Z") and got["CreateIndex"] > 0
    assert await served.call(ixns.read, "nobody", "db") is None  # 404 -> None

    listed = await served.call(ixns.list)
    assert [(i["SourceName"], i["DestinationName"]) for i in listed] == [
        ("web", "api"), ("web", "db"), ("*", "db"),  # precedence 9, 9, then 8
    ]  # fmt: skip
    assert "Action" not in listed[0] and len(listed[0]["Permissions"]) == 2
    denies = await served.call(ixns.list, filter_expr='Action == "deny"')
    assert [i["SourceName"] for i in denies] == ["*"]

    assert await served.call(ixns.check, "web", "db") is True
    assert await served.call(ixns.check, "other", "db") is False  # * => db deny
    assert await served.call(ixns.check, "web", "api") is False  # L7 without a request
    assert await served.call(ixns.check, "a", "b") is False  # default policy: deny
    served.policy["allow"] = True
    assert await served.call(ixns.check, "a", "b") is True

    matched = await served.call(ixns.match, "destination", "db")
    assert [i["SourceName"] for i in matched["db"]] == ["web", "*"]
    assert await served.call(ixns.delete, "web", "db")
    assert await served.call(ixns.read, "web", "db") is None
    assert await served.call(ixns.check, "web", "db") is False  # now * => db decides


# --- the legacy ID routes ------------------------------------------------------------------------


async def test_legacy_create_get_update_delete_by_id(served: Served) -> None:
    body = {"SourceName": "web", "DestinationName": "db", "Action": "allow"}
    status, created, _ = await served.req("POST", "/v1/connect/intentions", body)
    assert status == 200 and set(created) == {"ID"}
    ixn_id = created["ID"]
    status, text, _ = await served.req("POST", "/v1/connect/intentions", {**body, "Action": "deny"})
    assert status == 409 and text.startswith("duplicate intention found: web => db (allow)")

    status, got, headers = await served.req("GET", f"/v1/connect/intentions/{ixn_id}")
    assert status == 200 and got["ID"] == ixn_id and int(headers["X-Consul-Index"]) >= 1
    moved = {"SourceName": "web", "DestinationName": "cache", "Action": "deny"}
    status, ok, _ = await served.req("PUT", f"/v1/connect/intentions/{ixn_id}", moved)
    assert (status, ok) == (200, True)
    _, got, _ = await served.req("GET", "/v1/connect/intentions/exact", source="web",
                                 destination="cache")  # fmt: skip
    assert got["ID"] == ixn_id and got["Action"] == "deny"
    assert got["CreatedAt"] <= got["UpdatedAt"] and got["CreateIndex"] < got["ModifyIndex"]
    status, _, _ = await served.req("GET", "/v1/connect/intentions/exact", source="web",
                                    destination="db")  # fmt: skip
    assert status == 404

    await served.req("POST", "/v1/connect/intentions", body)
    status, text, _ = await served.req("PUT", f"/v1/connect/intentions/{ixn_id}",
                                       {**body, "Action": "deny"})  # fmt: skip
    assert status == 409 and "duplicate intention found" in text  # web => db is taken again

    status, ok, _ = await served.req("DELETE", f"/v1/connect/intentions/{ixn_id}")
    assert (status, ok) == (200, True)
    for method in ("GET", "PUT", "DELETE"):
        status, text, _ = await served.req(method, f"/v1/connect/intentions/{ixn_id}", body)
        assert status == 404 and "Intention not found" in text, method


async def test_exact_put_ignores_assigned_fields_and_delete_is_idempotent(served: Served) -> None:
    body = {"SourceType": "consul", "Action": "allow", "ID": "0b5c5e1c-7a5e-4bd7-9d2b-2b7b7a4a8a11",
            "CreateIndex": 99, "Precedence": 1}  # fmt: skip
    status, ok, _ = await served.req("PUT", "/v1/connect/intentions/exact", body,
                                     source="default/web", destination="db")  # fmt: skip
    assert (status, ok) == (200, True)
    stored = served.store.get("web", "db")
    assert stored is not None and stored.id != body["ID"] and stored.precedence == 9
    for _ in range(2):
        status, ok, _ = await served.req("DELETE", "/v1/connect/intentions/exact", source="web",
                                         destination="db")  # fmt: skip
        assert (status, ok) == (200, True)
    assert served.store.get("web", "db") is None


async def test_a_header_rule_on_a_pseudo_header_is_stored_and_others_are_a_400(
    served: Served,
) -> None:
    """The README's promise: `:authority`, `:method` and `:path` can be matched with Header
    rules (the sidecars judge them on HTTP/1 and HTTP/2 alike). Once, every such write was
    a 400 `must be an HTTP header name`. A name the sidecars do not judge alike on both
    (`:scheme`) or that is no name at all is still a 400 naming the field."""
    headers = [{"Name": ":authority", "Exact": "secret-host"}, {"Name": ":method", "Exact": "GET"},
               {"Name": ":path", "Prefix": "/admin"}]  # fmt: skip
    body = {"Permissions": [{"Action": "deny", "HTTP": {"Header": headers}}]}
    status, answer, _ = await served.req("PUT", "/v1/connect/intentions/exact", body,
                                         source="web", destination="db")  # fmt: skip
    assert (status, answer) == (200, True)
    status, got, _ = await served.req("GET", "/v1/connect/intentions/exact", source="web",
                                      destination="db")  # fmt: skip
    assert status == 200 and got["Permissions"][0]["HTTP"]["Header"] == headers
    legacy = {
        "SourceName": "api",
        "DestinationName": "db",
        "Permissions": [
            {"Action": "allow", "HTTP": {"Header": [{"Name": ":Authority", "Suffix": ".internal"}]}}
        ],
    }
    status, created, _ = await served.req("POST", "/v1/connect/intentions", legacy)
    assert status == 200 and created["ID"], created
    for name in (":scheme", ":authority:", "x y"):
        bad = {
            "Permissions": [
                {"Action": "deny", "HTTP": {"Header": [{"Name": name, "Present": True}]}}
            ]
        }
        status, text, _ = await served.req("PUT", "/v1/connect/intentions/exact", bad,
                                           source="web", destination="cache")  # fmt: skip
        assert status == 400, (status, text)
        assert (
            f"Permissions[0].HTTP.Header[0].Name: must be an HTTP header name or one of "
            f"the pseudo-headers :authority, :method, :path, got {json.dumps(name)}" in text
        )
    status, _, _ = await served.req("GET", "/v1/connect/intentions/exact", source="web",
                                    destination="cache")  # fmt: skip
    assert status == 404


async def test_contains_and_ignore_case_round_trip_and_decide(served: Served) -> None:
    """Newer Consul's `Contains` and `IgnoreCase` header fields: written through `/exact`
    and the legacy create, read back as Consul writes them, decided by check and authorize;
    IgnoreCase beside a Regex is a 400 naming the field, as Consul refuses it. Before, every
    such write was a 400 `unknown field`, so a Consul user's intentions could not move over."""
    headers = [{"Name": "User-Agent", "Contains": "bot", "IgnoreCase": True},
               {"Name": "X-Env", "Exact": "Prod", "Invert": True, "IgnoreCase": True}]  # fmt: skip
    body = {"Permissions": [{"Action": "deny", "HTTP": {"Header": headers}},
                            {"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}  # fmt: skip
    status, answer, _ = await served.req("PUT", "/v1/connect/intentions/exact", body,
                                         source="web", destination="crawl")  # fmt: skip
    assert (status, answer) == (200, True)
    got = await served.call(served.client.connect.intentions.read, "web", "crawl")  # py-consul
    assert got["Permissions"][0]["HTTP"]["Header"] == headers
    legacy = {"SourceName": "api", "DestinationName": "crawl", "Permissions": [
        {"Action": "allow", "HTTP": {"Header": [{"Name": "x-team", "prefix": "PAY",
                                                 "ignore_case": True}]}}]}  # fmt: skip
    status, created, _ = await served.req("POST", "/v1/connect/intentions", legacy)
    assert status == 200, created
    status, by_id, _ = await served.req("GET", f"/v1/connect/intentions/{created['ID']}")
    assert by_id["Permissions"][0]["HTTP"]["Header"] == [
        {"Name": "x-team", "Prefix": "PAY", "IgnoreCase": True}
    ]

    async def allowed(source: str, *header: str) -> bool:
        params = [("source", source), ("destination", "crawl"), ("path", "/x")]
        params += [("header", h) for h in header]
        async with served.http.get(served.base + "/v1/connect/intentions/check",
                                   params=params) as r:  # fmt: skip
            assert r.status == 200, await r.text()
            return bool((await r.json())["Allowed"])

    assert await allowed("web", "User-Agent: GoogleBOT/2.1", "X-Env: staging") is False
    assert await allowed("web", "User-Agent: GoogleBOT/2.1", "X-Env: PROD") is True
    assert await allowed("web", "User-Agent: curl/8", "X-Env: staging") is True
    assert await allowed("api", "X-Team: payments") is True
    assert await allowed("api", "X-Team: ops") is False
    status, answer, _ = await served.req("POST", "/v1/agent/connect/authorize", {
        "Target": "crawl", "ClientCertURI": SPIFFE.format("web"), "ClientCertSerial": "01",
        "Method": "GET", "Path": "/", "Headers": {"user-agent": "bingBot", "x-env": "dev"},
    })  # fmt: skip
    assert status == 200 and answer["Authorized"] is False, answer
    assert "Permissions[0] (deny)" in answer["Reason"]
    bad = {"Permissions": [{"Action": "allow", "HTTP": {"Header": [
        {"Name": "x-a", "Regex": "a.*", "IgnoreCase": True}]}}]}  # fmt: skip
    status, text, _ = await served.req("PUT", "/v1/connect/intentions/exact", bad,
                                       source="web", destination="other")  # fmt: skip
    assert status == 400 and (
        "Permissions[0].HTTP.Header[0].IgnoreCase: applies only to Exact, Prefix, Suffix or "
        "Contains, not to Regex" in text
    ), text


# --- decisions beyond Consul: L7 in check and authorize -------------------------------------


async def test_check_evaluates_l7_permissions_when_the_request_is_described(served: Served) -> None:
    await served.req("PUT", "/v1/connect/intentions/exact", {"Permissions": L7}, source="web",
                     destination="api")  # fmt: skip

    async def allowed(**q: str | list[str]) -> tuple[bool, str]:
        params: list[tuple[str, str]] = [("source", "web"), ("destination", "api")]
        for k, v in q.items():
            params += [(k, x) for x in (v if isinstance(v, list) else [v])]
        async with served.http.get(served.base + "/v1/connect/intentions/check",
                                   params=params) as r:  # fmt: skip
            assert r.status == 200, await r.text()
            body = await r.json()
            return body["Allowed"], body["Reason"]

    assert (await allowed())[0] is False  # no request: L7 is a deny, as Consul's check
    assert (await allowed(method="GET", path="/api/v1", header="X-Env: prod"))[0] is True
    assert (await allowed(method="get", path="/api/v1?x=1", header="x-env:prod"))[0] is True
    assert (await allowed(method="POST", path="/api/v1", header="X-Env:prod"))[0] is False
    assert (await allowed(method="GET", path="/api/v1", header=["X-Env:prod", "X-Env:dev"]))[0] \
        is False  # a repeated header is matched joined: "prod,dev"  # fmt: skip
    denied, reason = await allowed(path="/admin/x")
    assert denied is False and "Permissions[0] (deny)" in reason
    for spelled in ("/api/../admin/x", "/%61dmin/x", "/api/%2e%2e/admin/x"):  # as sidecars read
        assert (await allowed(path=spelled))[1] == reason
    missed, reason = await allowed(path="/other")
    assert missed is False and "default policy is deny" in reason
    served.policy["allow"] = True
    assert (await allowed(path="/other"))[0] is True  # an L7 miss gets the default


async def test_check_reads_the_authority_under_both_names_as_the_sidecars_do(
    served: Served,
) -> None:
    """A rule on `:authority` (or on Host) holds for a request described with either name,
    as judged_request makes the sidecars read HTTP/1 and HTTP/2 alike; `header=` takes a
    pseudo-header's own colon. Before, `:authority` was refused as no header name and a
    Host did not meet an `:authority` rule, so check answered otherwise than the data path."""
    deny = {"Action": "deny", "HTTP": {"Header": [{"Name": ":authority", "Exact": "secret"}]}}
    allow = {"Action": "allow", "HTTP": {"PathPrefix": "/"}}
    await served.req("PUT", "/v1/connect/intentions/exact", {"Permissions": [deny, allow]},
                     source="web", destination="auth")  # fmt: skip

    async def allowed(header: str) -> bool:
        params = [("source", "web"), ("destination", "auth"), ("path", "/"), ("header", header)]
        async with served.http.get(served.base + "/v1/connect/intentions/check",
                                   params=params) as r:  # fmt: skip
            assert r.status == 200, await r.text()
            return bool((await r.json())["Allowed"])

    assert await allowed(":authority:secret") is False
    assert await allowed("Host: secret") is False
    assert await allowed("host:other") is True
    assert await allowed(":method:GET") is True  # a pseudo-header the rules may name
    scheme = [("source", "web"), ("destination", "auth"), ("header", ":scheme:https")]
    async with served.http.get(served.base + "/v1/connect/intentions/check", params=scheme) as r:
        assert r.status == 400 and "':scheme' is not a header name" in await r.text()


async def test_authorize_takes_the_source_from_the_spiffe_uri(served: Served) -> None:
    await served.req("PUT", "/v1/connect/intentions/exact", {"Action": "deny"}, source="web",
                     destination="db")  # fmt: skip
    await served.req("PUT", "/v1/connect/intentions/exact", {"Permissions": L7}, source="web",
                     destination="api")  # fmt: skip

    async def authorize(body: dict[str, Any]) -> dict[str, Any]:
        status, answer, _ = await served.req("POST", "/v1/agent/connect/authorize", body)
        assert status == 200, answer
        return dict(answer)

    base = {"ClientCertURI": SPIFFE.format("web"), "ClientCertSerial": "04:00:01"}
    assert await authorize({**base, "Target": "db"}) == {
        "Authorized": False, "Reason": "matched intention web => db (deny)",
    }  # fmt: skip
    assert (await authorize({**base, "Target": "api"}))["Authorized"] is False
    l7 = {**base, "Target": "api", "Method": "GET", "Path": "/api/x", "Headers": {"X-Env": "prod"}}
    assert (await authorize(l7))["Authorized"] is True
    assert (await authorize({**l7, "Namespace": "default"}))["Authorized"] is True  # ignored
    other_td = {**base, "ClientCertURI": "spiffe://other.example/ns/default/dc/dc9/svc/web"}
    assert (await authorize({**other_td, "Target": "db"}))["Authorized"] is False
    assert (await authorize({**base, "Target": "cache"}))["Reason"].startswith("no intention")


# --- blocking queries -----------------------------------------------------------------------


async def test_list_and_match_block_until_an_intention_changes(served: Served) -> None:
    _, _, headers = await served.req("GET", "/v1/connect/intentions")
    index = headers["X-Consul-Index"]
    watch_list = asyncio.create_task(served.req("GET", "/v1/connect/intentions", index=index,
                                                wait="10s"))  # fmt: skip
    watch_match = asyncio.create_task(served.req("GET", "/v1/connect/intentions/match",
                                                 by="source", name="web", index=index,
                                                 wait="10s"))  # fmt: skip
    await eventually_async(lambda: served.catalog.watchers == 2, 2, interval=0.005)
    await served.call(served.client.connect.intentions.upsert, "web", "db", action="allow")
    (s1, rows, h1), (s2, matched, h2) = await asyncio.wait_for(
        asyncio.gather(watch_list, watch_match), 2
    )
    assert s1 == s2 == 200 and int(h1["X-Consul-Index"]) > int(index)
    assert [r["SourceName"] for r in rows] == ["web"]
    assert [r["DestinationName"] for r in matched["web"]] == ["db"]
    assert h1["X-Consul-Index"] == h2["X-Consul-Index"]


async def test_match_says_the_default_and_a_new_default_wakes_it(served: Served) -> None:
    status, _, headers = await served.req("GET", "/v1/connect/intentions/match", by="destination",
                                          name="db")  # fmt: skip
    assert status == 200 and headers["X-Gossamer-Default-Policy"] == "deny"
    index = headers["X-Consul-Index"]
    watch = asyncio.create_task(served.req("GET", "/v1/connect/intentions/match",
                                           by="destination", name="db", index=index,
                                           wait="10s"))  # fmt: skip
    await eventually_async(lambda: served.catalog.watchers == 1, 2, interval=0.005)
    deny = IntentionsConfig(default_policy="deny")
    old = AgentConfig.model_construct(dev=True, intentions=deny)  # only the default is read
    new = old.model_copy(update={"intentions": IntentionsConfig(default_policy="allow")})
    wake_on_new_default(served.catalog.touch, old, old)  # no change: still parked
    assert served.catalog.watchers == 1
    served.policy["allow"] = True
    wake_on_new_default(served.catalog.touch, old, new)  # what the agent's reload calls
    _, _, woke = await asyncio.wait_for(watch, 2)
    assert woke["X-Gossamer-Default-Policy"] == "allow"
    assert int(woke["X-Consul-Index"]) > int(index)


# --- bad input ------------------------------------------------------------------------------


BAD = [
    ("GET", "/v1/connect/intentions/exact", {"destination": "db"}, None, "'source'"),
    ("GET", "/v1/connect/intentions/exact", {"source": "web"}, None, "'destination'"),
    ("PUT", "/v1/connect/intentions/exact", {"source": "we b", "destination": "db"},
     {"Action": "allow"}, "source: must be a DNS-label-like"),
    ("PUT", "/v1/connect/intentions/exact", {"source": "ns1/web", "destination": "db"},
     {"Action": "allow"}, "source: namespace 'ns1'"),
    ("DELETE", "/v1/connect/intentions/exact", {"source": "web", "destination": "d*b"}, None,
     "destination: wildcard"),
    ("PUT", "/v1/connect/intentions/exact", {"source": "web", "destination": "db"}, b"{nope",
     "Request decode failed"),
    ("PUT", "/v1/connect/intentions/exact", {"source": "web", "destination": "db"},
     {"Action": "allow", "Permissions": L7}, "Action: exactly one of Action or Permissions"),
    ("PUT", "/v1/connect/intentions/exact", {"source": "web", "destination": "*"},
     {"Permissions": [{"Action": "allow", "HTTP": {"PathRegex": "(?=x)"}}]},
     "Permissions[0].HTTP.PathRegex"),
    ("POST", "/v1/connect/intentions", {}, {"SourceName": "web", "Action": "allow",
     "ID": "0b5c5e1c-7a5e-4bd7-9d2b-2b7b7a4a8a11", "DestinationName": "db"}, "ID: must be empty"),
    ("POST", "/v1/connect/intentions", {}, [1], "body: must be a JSON object"),
    ("GET", "/v1/connect/intentions", {"filter": "Nope == 1"}, None, "Nope"),
    ("GET", "/v1/connect/intentions", {"index": "x"}, None, "index"),
    ("GET", "/v1/connect/intentions/match", {"by": "owner", "name": "web"}, None, "'by'"),
    ("GET", "/v1/connect/intentions/match", {"name": "web"}, None, "'by' not set"),
    ("GET", "/v1/connect/intentions/match", {"by": "source"}, None, "'name' not set"),
    ("GET", "/v1/connect/intentions/check", {"source": "web"}, None, "'destination'"),
    ("GET", "/v1/connect/intentions/check", {"source": "web", "destination": "db",
     "header": "NoColon"}, None, "header: expected Name:Value"),
    ("GET", "/v1/connect/intentions/check", {"source": "web", "destination": "db",
     "path": "api"}, None, "path: must start with '/'"),
    ("GET", "/v1/connect/intentions/check", {"source": "web", "destination": "db",
     "path": "/a%zz"}, None, "path: a broken percent-escape"),
    ("GET", "/v1/connect/intentions/check", {"source": "web", "destination": "db",
     "source-type": "external-uri"}, None, "source-type"),
    ("POST", "/v1/agent/connect/authorize", {}, {"Target": "db",
     "ClientCertURI": "spiffe://td/agent/client/dc/dc1/id/n1"}, "ClientCertURI: not a valid"),
    ("POST", "/v1/agent/connect/authorize", {}, {"ClientCertURI": SPIFFE.format("web")},
     "Target: is required"),
    ("POST", "/v1/agent/connect/authorize", {}, {"Target": "db", "ClientCertURI": 5},
     "ClientCertURI: must be a string"),
    ("POST", "/v1/agent/connect/authorize", {}, {"Target": "db", "ClientCertURI":
     SPIFFE.format("web"), "Headers": ["x"]}, "Headers: must be a JSON object"),
    ("POST", "/v1/agent/connect/authorize", {}, None, "body: must be a JSON object"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "params", "body", "needle"), BAD)
async def test_bad_input_is_a_400_naming_the_field(
    served: Served, method: str, path: str, params: dict[str, str], body: Any, needle: str
) -> None:
    raw = body if isinstance(body, bytes) else None
    status, text, _ = await served.req(method, path, None if raw else body, raw, **params)
    assert status == 400, (status, text)
    assert needle in text, text
    assert served.store.snapshot().entries.entries == {}


async def test_every_problem_of_a_body_is_listed_at_once(served: Served) -> None:
    body = {"Action": "maybe", "Description": "x" * 600, "Meta": {"bad key": "v"}, "Typo": 1}
    status, text, _ = await served.req("PUT", "/v1/connect/intentions/exact", body, source="web",
                                       destination="db")  # fmt: skip
    assert status == 400
    lines = text.strip().splitlines()
    assert lines[0] == "Invalid intention:"
    for field_name in ("Typo: unknown field", "Action:", "Description:", 'Meta["bad key"]'):
        assert any(line.strip().startswith(field_name) for line in lines), (field_name, text)


async def test_another_datacenter_and_a_missing_store(served: Served, serve_app: ServeApp) -> None:
    status, text, _ = await served.req("GET", "/v1/connect/intentions", dc="dc2")
    assert status == 500 and "No path to datacenter" in text
    app = web.Application(middlewares=[error_middleware])
    add_intention_check_routes(app.router)
    bare = await serve_app(app)
    async with served.http.get(bare.base + "/v1/connect/intentions/check",
                               params={"source": "a", "destination": "b"}) as r:  # fmt: skip
        assert r.status == 500 and "not available" in await r.text()
