"""What a README walk of service routers found: bodies a Consul user may write that were
stored although every request the route took then failed, and Consul fields read wrong.
Pure: the agent's `PUT /v1/config` stores what `read_entry` returns and nothing when it
raises (catalog/config_entries.py)."""

from __future__ import annotations

from typing import Any

import pytest

from gossamer.catalog.config_entries import ConfigEntryError, read_entry
from gossamer.catalog.config_router import HeaderEdits, routes_of
from gossamer.proxy.router_plan import plan_of
from gossamer.proxy.routes import rewritten_head, route_index


def router(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"Kind": "service-router", "Name": "api", "Routes": list(routes)}


def problems_of(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigEntryError) as caught:
        read_entry(body)
    return dict(caught.value.problems)


def prefix_route(rewrite: str) -> dict[str, Any]:
    return {"Match": {"HTTP": {"PathPrefix": "/v2/"}},
            "Destination": {"Service": "api-v2", "PrefixRewrite": rewrite}}  # fmt: skip


@pytest.mark.parametrize("rewrite", [
    "v1/",  # the request line would carry `GET v1/users`: the far side answers 400
    "/a b/",  # a space ends the request target: the rest reads as the HTTP version
    "/a\r\nx-evil: 1\r\nx-pad: ",  # a line break writes fields of its own into the head
    "/\u20ac/",  # not latin-1: the sidecar's own re-encoding raised, each request got 400
    "/a#b",  # a fragment is never part of a request target
])  # fmt: skip
def test_a_prefix_rewrite_that_cannot_start_a_request_target_is_refused(rewrite: str) -> None:
    found = problems_of(router(prefix_route(rewrite)))
    assert list(found) == ["Routes[0].Destination.PrefixRewrite"], found


@pytest.mark.parametrize("rewrite", ["/", "/v1/", "/v1", "/a%20b/", "/x?y=1&", "/~user/"])
def test_a_prefix_rewrite_that_starts_a_path_is_stored(rewrite: str) -> None:
    entry = read_entry(router(prefix_route(rewrite)))
    assert entry["Routes"][0]["Destination"]["PrefixRewrite"] == rewrite


@pytest.mark.parametrize("num", [-1, 2**32, 2.5, "3", True])
def test_num_retries_out_of_range_names_the_range_consul_takes(num: object) -> None:
    route = {"Destination": {"Service": "api-v2", "NumRetries": num}}
    found = problems_of(router(route))
    why = found["Routes[0].Destination.NumRetries"]
    assert "0-4294967295" in why, why  # "0 or more" said nothing to the one who wrote 2**32


def test_num_retries_at_consul_s_largest_is_stored() -> None:
    entry = read_entry(router({"Destination": {"Service": "api-v2", "NumRetries": 2**32 - 1}}))
    assert entry["Routes"][0]["Destination"]["NumRetries"] == 2**32 - 1


def folded(http: dict[str, Any], **dest: Any) -> dict[str, Any]:
    return {"Match": {"HTTP": {**http, "CaseInsensitive": True}},
            "Destination": {"Service": "api-v2", **dest}}  # fmt: skip


def test_case_insensitive_is_stored_and_read_back_as_consul_writes_it() -> None:
    entry = read_entry(router(folded({"PathPrefix": "/V2/"})))
    assert entry["Routes"][0]["Match"]["HTTP"] == {"PathPrefix": "/V2/", "CaseInsensitive": True}
    assert read_entry(entry) == entry
    assert routes_of(entry)[0].http.case_insensitive
    plain = read_entry(router({"Match": {"HTTP": {"PathPrefix": "/v2/", "CaseInsensitive": False}},
                               "Destination": {"Service": "api-v2"}}))  # fmt: skip
    assert plain["Routes"][0]["Match"]["HTTP"] == {"PathPrefix": "/v2/"}  # false: left out


def test_case_insensitive_of_the_wrong_type_or_with_a_regex_is_refused() -> None:
    found = problems_of(
        router(
            folded({"PathPrefix": "/v2/"})
            | {"Match": {"HTTP": {"PathPrefix": "/v2/", "CaseInsensitive": "yes"}}}
        )
    )
    assert list(found) == ["Routes[0].Match.HTTP.CaseInsensitive"], found
    # Envoy's case_sensitive leaves a regex as written: a flag that would change nothing is
    # refused, with the way to say it in the pattern
    found = problems_of(router(folded({"PathRegex": "/v[0-9]+/.*"})))
    assert "(?i)" in found["Routes[0].Match.HTTP.CaseInsensitive"], found


def _plan(*routes: dict[str, Any]) -> Any:
    plan = plan_of("api", routes_of(read_entry(router(*routes))), {}, {})
    assert plan is not None
    return plan


@pytest.mark.parametrize(("path", "fits"), [
    ("/v2/users", True), ("/V2/Users", True), ("/v2/USERS?Q=1", True), ("/v3/users", False),
])  # fmt: skip
def test_a_case_insensitive_prefix_matches_a_path_in_any_case(path: str, fits: bool) -> None:
    plan = _plan(folded({"PathPrefix": "/v2/"}))
    assert (route_index(plan.matcher, "GET", path, {}) == 0) is fits


def test_a_case_insensitive_exact_path_and_a_case_sensitive_route_beside_it() -> None:
    exact = {"Match": {"HTTP": {"PathExact": "/Health"}}, "Destination": {"Service": "api-v2"}}
    plan = _plan(exact, folded({"PathExact": "/health"}))
    assert route_index(plan.matcher, "GET", "/Health", {}) == 0
    assert route_index(plan.matcher, "GET", "/HEALTH", {}) == 1
    assert route_index(plan.matcher, "GET", "/health/x", {}) == -1


def test_a_case_insensitive_route_rewrites_the_prefix_it_matched_in_another_case() -> None:
    plan = _plan(folded({"PathPrefix": "/v2/"}, PrefixRewrite="/"))
    to = plan.routes[0]
    head = b"GET /V2/users?x=1 HTTP/1.1\r\nHost: api\r\n\r\n"
    new = rewritten_head(head, to.prefix, to.rewrite, to.edits)
    assert new.startswith(b"GET /users?x=1 HTTP/1.1\r\n"), new
    assert rewritten_head(head, "/v3/", "/", HeaderEdits()) == head  # another prefix: as it was


def test_stat_routes_lists_a_router_s_routes_in_their_order() -> None:
    """With eleven routes or more, `route 10 -> …` was listed between `route 1` and
    `route 2` (the labels' text order); an operator reads routes in the router's order,
    `[default]` first and `other` (past the label bound) last."""
    from gossamer.proxy.edge_metrics import EdgeMetrics, stats_json
    from gossamer.proxy.stat_routes import DEFAULT, route_rows
    from gossamer.proxy.stat_rows import edges_of

    m = EdgeMetrics("web")
    out = m.outbound("api")
    inbound = m.inbound("web")
    labels = ["other", "route 10 -> api-v2", "route 2 -> api/canary", "route 1 -> api-v2"]
    for label in labels:
        out.answered(200, 0.01, label)
    out.answered(200, 0.01)
    for label in ("GET /b*", "/a"):
        inbound.answered(200, 0.01, label)
    gathered = edges_of([{"ProxyID": "web-sidecar-proxy",
                          "Stats": {"Proxies": [stats_json(m, 100.0)]}}])  # fmt: skip
    found = [(r.direction, r.route) for r in route_rows(gathered, None, 0.0)]
    assert found == [("inbound", "/a"), ("inbound", "GET /b*"),
                     ("outbound", DEFAULT), ("outbound", "route 1 -> api-v2"),
                     ("outbound", "route 2 -> api/canary"), ("outbound", "route 10 -> api-v2"),
                     ("outbound", "other")]  # fmt: skip


def test_check_s_hint_for_a_route_to_an_empty_subset_says_what_to_start() -> None:
    """`gossamer check` hinted "start api/ghost with a sidecar" for a route to subset ghost
    of api that no instance matched: no service is named api/ghost. The hint names the
    service and the subset whose Filter an instance must match."""
    from gossamer.agent.preflight.proxy_checks import RouteTarget, judge_upstreams

    result = judge_upstreams("web-sidecar-proxy", [("api", 2)],
                             routes=[RouteTarget("api", 0, "api/ghost", 0),
                                     RouteTarget("api", 1, "api-v2", 0)])  # fmt: skip
    assert "start api-v2 with a sidecar" in result.hint, result.hint
    assert "an instance of api matching subset ghost" in result.hint, result.hint
    assert "api/ghost with" not in result.hint, result.hint


def test_a_case_insensitive_route_rewrites_an_http2_call_s_path_in_another_case() -> None:
    """A balanced HTTP/2 call a CaseInsensitive route took by `/V2/…` kept its path whole:
    the call's rewrite compared the prefix as written, the match had folded it."""
    from gossamer.proxy.h2_split_routed import request_fields

    plan = _plan(folded({"PathPrefix": "/v2/"}, PrefixRewrite="/"))
    to = plan.routes[0]
    assert route_index(plan.matcher, "POST", "/V2/Users", {}) == 0
    fields = [(b":method", b"POST"), (b":path", b"/V2/Users"), (b":authority", b"api")]
    out = request_fields(fields, to.prefix, to.rewrite, (), (), ())
    assert (b":path", b"/Users") in out, out
    kept = [(b":method", b"POST"), (b":path", b"/v3/x")]
    assert request_fields(kept, to.prefix, to.rewrite, (), (), ()) == kept
