"""Every route the agent serves has a row in the ACL endpoint table (a new one must decide)."""

from __future__ import annotations

from typing import cast

from gossamer.agent.acl.endpoints import ENDPOINTS, UNLISTED, need_for
from gossamer.agent.acl.rules import Access
from gossamer.agent.http.api import AgentApi
from gossamer.agent.http.app import make_app
from gossamer.catalog.live import LiveCatalog


def served_routes() -> set[tuple[str, str]]:
    app = make_app(cast(AgentApi, None), cast(LiveCatalog, None))
    routes = set()
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "*") or canonical.startswith(("/v1/acl/", "/v1/agent/token/")):
            continue  # HEAD is checked as GET; the ACL routes check their own
        routes.add((route.method, canonical))
    return routes


def test_every_served_route_has_a_permission() -> None:
    assert served_routes() - ENDPOINTS.keys() == set()


def test_table_rows_name_routes_that_exist() -> None:
    assert ENDPOINTS.keys() - served_routes() == set()


def test_unknown_routes_need_management_and_head_is_get() -> None:
    assert need_for("GET", "/v1/new/thing") == UNLISTED
    assert need_for("HEAD", "/v1/catalog/service/{name}").kind == "service"
    leaf = need_for("GET", "/v1/agent/connect/ca/leaf/{service}")
    assert (leaf.kind, leaf.access, leaf.param) == ("service", Access.WRITE, "service")
