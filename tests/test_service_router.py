"""service-router entries without a cluster: what a body may say, the cross-entry checks, and
how routes match requests and rewrite their heads (catalog/config_router.py, proxy/routes.py,
proxy/router_plan.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.catalog.config_entries import (
    ConfigEntryError,
    check_graph,
    read_entry,
    related_services,
)
from gossamer.catalog.config_resolver import resolver_of
from gossamer.catalog.config_router import HeaderEdits, routes_of
from gossamer.proxy.http_codec import judged_request
from gossamer.proxy.router_plan import plan_of
from gossamer.proxy.routes import query_of, rewritten_head


def router(*routes: dict[str, Any], name: str = "api") -> dict[str, Any]:
    return {"Kind": "service-router", "Name": name, "Routes": list(routes)}


def route(http: dict[str, Any] | None = None, **dest: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if http is not None:
        out["Match"] = {"HTTP": http}
    if dest:
        out["Destination"] = dest
    return out


def fields_of(body: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigEntryError) as caught:
        read_entry(body)
    return [field for field, _ in caught.value.problems]


def test_a_full_router_reads_and_is_stored_normalised() -> None:
    entry = read_entry(router(
        route({"PathPrefix": "/v2", "Methods": ["get", "POST"],
               "Header": [{"Name": "x-canary", "Exact": "1"}],
               "QueryParam": [{"Name": "debug", "Present": True}]},
              Service="api-v2", PrefixRewrite="/", RequestTimeout="2s",
              RequestHeaders={"Set": {"x-routed": "yes"}, "Remove": ["x-drop"]}),
        route(Service="api", ServiceSubset="v2"),
        {},
    ))  # fmt: skip
    first = entry["Routes"][0]
    assert first["Match"]["HTTP"]["Methods"] == ["GET", "POST"]
    assert first["Destination"]["RequestTimeout"] == "2s"
    assert entry["Routes"][2] == {}
    assert read_entry(entry) == entry  # what is served reads back the same
    routes = routes_of(entry)
    assert routes[2].destination.service == "api"  # none given: the router's own
    assert routes[0].destination.request_timeout_s == 2.0
    assert related_services(entry) == ["api-v2"]


BAD = [
    (route({"PathExact": "/a", "PathPrefix": "/b"}), "Routes[0].Match.HTTP"),
    (route({"PathPrefix": "v2"}), "Routes[0].Match.HTTP.PathPrefix"),
    (route({"PathRegex": "(unclosed"}), "Routes[0].Match.HTTP.PathRegex"),
    (route({"Methods": ["FETCH"]}), "Routes[0].Match.HTTP.Methods[0]"),
    (route({"Methods": ["GET", "get"]}), "Routes[0].Match.HTTP.Methods[1]"),
    (route({"Header": [{"Name": "x"}]}), "Routes[0].Match.HTTP.Header[0]"),
    (route({"Header": [{"Name": "x", "Exact": "1", "Prefix": "2"}]}),
     "Routes[0].Match.HTTP.Header[0]"),
    (route({"Header": [{"Name": "bad name", "Present": True}]}),
     "Routes[0].Match.HTTP.Header[0].Name"),
    (route({"Header": [{"Name": "x", "Contains": "1"}]}),
     "Routes[0].Match.HTTP.Header[0].Contains"),
    (route({"QueryParam": [{"Present": True}]}), "Routes[0].Match.HTTP.QueryParam[0].Name"),
    (route({"QueryParam": [{"Name": "q", "Regex": "("}]}),
     "Routes[0].Match.HTTP.QueryParam[0].Regex"),
    (route({"PathRegex": "/x"}, PrefixRewrite="/"), "Routes[0].Destination.PrefixRewrite"),
    (route(IdleTimeout="-5s"), "Routes[0].Destination.IdleTimeout"),
    (route(IdleTimeout="soon"), "Routes[0].Destination.IdleTimeout"),
    (route(NumRetries=-1), "Routes[0].Destination.NumRetries"),
    (route(NumRetries="3"), "Routes[0].Destination.NumRetries"),
    (route(RetryOnConnectFailure="yes"), "Routes[0].Destination.RetryOnConnectFailure"),
    (route(RetryOn=["unavailable"]), "Routes[0].Destination.RetryOn[0]"),
    (route(RetryOn=["reset", "envoy-ratelimited"]), "Routes[0].Destination.RetryOn[1]"),
    (route(RetryOn=["sometimes"]), "Routes[0].Destination.RetryOn[0]"),
    (route(RetryOnStatusCodes=[503, 99]), "Routes[0].Destination.RetryOnStatusCodes[1]"),
    (route(RetryOnStatusCodes=["503"]), "Routes[0].Destination.RetryOnStatusCodes[0]"),
    (route(RetryOnStatusCodes=503), "Routes[0].Destination.RetryOnStatusCodes"),
    (route(ResponseHeaders={"Set": {"Content-Length": "0"}}),
     'Routes[0].Destination.ResponseHeaders.Set["Content-Length"]'),
    (route(ResponseHeaders={"Remove": ["Transfer-Encoding"]}),
     "Routes[0].Destination.ResponseHeaders.Remove[0]"),
    (route(ResponseHeaders={"Add": {"x-at": "%UPSTREAM_HOST%"}}),
     'Routes[0].Destination.ResponseHeaders.Add["x-at"]'),
    (route(ResponseHeaders={"Put": {"a": "b"}}), "Routes[0].Destination.ResponseHeaders.Put"),
    (route(RequestHeaders={"Set": {"Host": "elsewhere"}}),
     'Routes[0].Destination.RequestHeaders.Set["Host"]'),
    (route(RequestHeaders={"Remove": ["Content-Length"]}),
     "Routes[0].Destination.RequestHeaders.Remove[0]"),
    (route(RequestTimeout="-1s"), "Routes[0].Destination.RequestTimeout"),
    (route(RequestHeaders={"Add": {"x-client": "%DOWNSTREAM_REMOTE_ADDRESS%"}}),
     'Routes[0].Destination.RequestHeaders.Add["x-client"]'),
    (route(RequestHeaders={"Set": {"x-start": "%START_TIME(%s)%"}}),
     'Routes[0].Destination.RequestHeaders.Set["x-start"]'),
    (route(ServiceSubset="V2"), "Routes[0].Destination.ServiceSubset"),
    (route(Service="*"), "Routes[0].Destination.Service"),
    (route(Namespace="team"), "Routes[0].Destination.Namespace"),
    ({"Match": {"GRPC": {}}}, "Routes[0].Match.GRPC"),
]  # fmt: skip


@pytest.mark.parametrize(("one", "field"), BAD)
def test_each_bad_route_is_refused_naming_its_field(one: dict[str, Any], field: str) -> None:
    assert field in fields_of(router(one))


def test_every_problem_of_a_body_is_named_at_once() -> None:
    found = fields_of(router(route({"PathPrefix": "x"}), route(RetryOn=["internal"])))
    assert found == ["Routes[0].Match.HTTP.PathPrefix", "Routes[1].Destination.RetryOn[0]"]


def _held(*entries: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["Kind"], e["Name"]): read_entry(e) for e in entries}


def defaults(name: str, protocol: str) -> dict[str, Any]:
    return {"Kind": "service-defaults", "Name": name, "Protocol": protocol}


def test_a_router_needs_an_l7_protocol_on_its_service_and_its_destinations() -> None:
    entry = read_entry(router(route({"PathPrefix": "/v2"}, Service="api-v2")))
    with pytest.raises(ConfigEntryError) as caught:
        check_graph({}, "service-router", "api", entry)
    assert caught.value.field == "Name" and "'tcp'" in caught.value.message
    with pytest.raises(ConfigEntryError) as caught:
        check_graph(_held(defaults("api", "http")), "service-router", "api", entry)
    assert caught.value.field == "Routes[0].Destination.Service"
    held = _held(defaults("api", "http"), defaults("api-v2", "http"))
    check_graph(held, "service-router", "api", entry)
    held[("service-router", "api")] = entry
    with pytest.raises(ConfigEntryError) as caught:  # the protocol a router needs, taken away
        check_graph(held, "service-defaults", "api-v2", read_entry(defaults("api-v2", "tcp")))
    assert caught.value.field == "Protocol" and "service-router/api" in caught.value.message
    check_graph(held, "service-defaults", "web", read_entry(defaults("web", "tcp")))


def test_a_route_to_a_subset_needs_the_resolver_to_define_it() -> None:
    entry = read_entry(router(route(ServiceSubset="v2")))
    held = _held(defaults("api", "http"))
    with pytest.raises(ConfigEntryError) as caught:
        check_graph(held, "service-router", "api", entry)
    assert caught.value.field == "Routes[0].Destination.ServiceSubset"
    resolver = {"Kind": "service-resolver", "Name": "api",
                "Subsets": {"v2": {"Filter": "Service.Meta.version == v2"}}}  # fmt: skip
    held = _held(defaults("api", "http"), resolver)
    check_graph(held, "service-router", "api", entry)
    held[("service-router", "api")] = entry
    with pytest.raises(ConfigEntryError):  # the subset the route needs, deleted
        check_graph(held, "service-resolver", "api", None)


def _request(method: str, path: str, **headers: str) -> Any:
    return judged_request(method, path, [(k.encode(), v.encode()) for k, v in headers.items()])


MATCHING = [
    # (route match, method, path, headers, fits)
    ({"PathPrefix": "/api/v2"}, "GET", "/api/v2/users?x=1", {}, True),
    ({"PathPrefix": "/api/v2"}, "GET", "/api/v1", {}, False),
    ({"PathExact": "/health"}, "GET", "/health?verbose", {}, True),
    ({"PathExact": "/health"}, "GET", "/healthz", {}, False),
    ({"PathRegex": "/u/[0-9]+"}, "GET", "/u/42", {}, True),
    ({"PathRegex": "/u/[0-9]+"}, "GET", "/u/42/x", {}, False),
    ({"Methods": ["POST", "PUT"]}, "PUT", "/", {}, True),
    ({"Methods": ["POST", "PUT"]}, "GET", "/", {}, False),
    ({"Header": [{"Name": "X-Canary", "Exact": "1"}]}, "GET", "/", {"x-canary": "1"}, True),
    ({"Header": [{"Name": "x-canary", "Exact": "1"}]}, "GET", "/", {"X-Canary": "2"}, False),
    ({"Header": [{"Name": "x-canary", "Present": True}]}, "GET", "/", {}, False),
    ({"Header": [{"Name": "x-canary", "Present": True, "Invert": True}]}, "GET", "/", {}, True),
    ({"Header": [{"Name": "x-v", "Prefix": "v2"}]}, "GET", "/", {"x-v": "v2.1"}, True),
    ({"Header": [{"Name": "x-v", "Suffix": "-beta"}]}, "GET", "/", {"x-v": "2-beta"}, True),
    ({"Header": [{"Name": "x-v", "Regex": "v[0-9]"}]}, "GET", "/", {"x-v": "v10"}, False),
    ({"QueryParam": [{"Name": "beta", "Present": True}]}, "GET", "/?beta", {}, True),
    ({"QueryParam": [{"Name": "beta", "Exact": "a b"}]}, "GET", "/?beta=a%20b", {}, True),
    ({"QueryParam": [{"Name": "beta", "Regex": "[0-9]+"}]}, "GET", "/?beta=x", {}, False),
    ({"QueryParam": [{"Name": "beta", "Present": True}]}, "GET", "/beta", {}, False),
    ({"PathPrefix": "/a", "Methods": ["GET"]}, "POST", "/a", {}, False),
    ({"Header": [{"Name": ":authority", "Exact": "api.v2"}]}, "GET", "/", {"Host": "api.v2"},
     True),
    ({"Header": [{"Name": "host", "Prefix": "api."}]}, "GET", "/", {"Host": "web"}, False),
]  # fmt: skip


@pytest.mark.parametrize(("http", "method", "path", "headers", "fits"), MATCHING)
def test_route_matching(http: dict[str, Any], method: str, path: str, headers: dict[str, str],
                        fits: bool) -> None:  # fmt: skip
    entry = read_entry(router(route(http, Service="api-v2")))
    plan = plan_of("api", routes_of(entry), {}, {})
    assert plan is not None
    assert (plan.matcher.first(_request(method, path, **headers)) == 0) == fits


def test_the_first_route_that_fits_decides_and_none_is_minus_one() -> None:
    entry = read_entry(router(
        route({"PathPrefix": "/api"}, Service="a"),
        route({"PathPrefix": "/api/v2"}, Service="b"),
        route({"Methods": ["DELETE"]}, Service="c"),
    ))  # fmt: skip
    plan = plan_of("api", routes_of(entry), {}, {})
    assert plan is not None
    assert plan.matcher.first(_request("GET", "/api/v2/x")) == 0
    assert plan.matcher.first(_request("DELETE", "/other")) == 2
    assert plan.matcher.first(_request("GET", "/other")) == -1


def test_a_plan_resolves_each_destination_through_its_splitter_and_resolver() -> None:
    resolver = read_entry({"Kind": "service-resolver", "Name": "api-v2", "DefaultSubset": "a",
                           "Subsets": {"a": {"Filter": "Service.Meta.v == a"}},
                           "Failover": {"*": {"Service": "api-backup"}}})  # fmt: skip
    entry = read_entry(router(route({"PathPrefix": "/v2"}, Service="api-v2"),
                              route({"PathPrefix": "/own"})))  # fmt: skip
    plan = plan_of("api", routes_of(entry), {}, {"api-v2": resolver_of(resolver)})
    assert plan is not None
    to, own = plan.routes
    assert not to.own and to.chains == {"api-v2": ("api-v2/a", "api-backup")}
    assert set(plan.queries) == {"api-v2/a", "api-backup"}
    assert own.own


HEAD = b"GET /api/v2/users?x=1 HTTP/1.1\r\nHost: api\r\nX-Drop: 1\r\nX-Keep: 2\r\n\r\n"


def test_a_double_percent_in_an_edit_is_sent_as_one() -> None:
    """As Envoy reads a header value: `%%` is a `%` (and `%NAME%`, a variable, is refused)."""
    entry = read_entry(router(route(RequestHeaders={"Set": {"x-share": "100%% of %%NAME%%"}})))
    assert entry["Routes"][0]["Destination"]["RequestHeaders"]["Set"] == {
        "x-share": "100%% of %%NAME%%"}  # fmt: skip
    (only,) = routes_of(entry)
    assert only.destination.request_headers.set == (("x-share", "100% of %NAME%"),)


def test_rewritten_head() -> None:
    edits = HeaderEdits(add=(("x-added", "a"),), set=(("x-keep", "3"),), remove=("x-drop",))
    got = rewritten_head(HEAD, "/api/v2", "/v2", edits)
    assert got == (b"GET /v2/users?x=1 HTTP/1.1\r\nHost: api\r\nx-keep: 3\r\nx-added: a\r\n\r\n")
    assert rewritten_head(HEAD, "/api/v2/", "/", HeaderEdits()).startswith(b"GET /users?x=1 ")
    assert rewritten_head(HEAD, "/api/", "/", HeaderEdits()).startswith(b"GET /v2/users?x=1 ")
    assert rewritten_head(HEAD, "/other", "/x", HeaderEdits()) == HEAD


_SEG = st.text("abcxyz019-", min_size=1, max_size=6)


@given(st.lists(_SEG, min_size=1, max_size=4), st.lists(_SEG, max_size=3),
       st.lists(_SEG, max_size=3))  # fmt: skip
def test_a_prefix_rewrite_keeps_the_rest_of_the_path(prefix: list[str], rest: list[str],
                                                     new: list[str]) -> None:  # fmt: skip
    old_prefix = "/" + "/".join(prefix)
    tail = "".join("/" + s for s in rest)
    rewrite = "/" + "/".join(new)
    head = b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % (old_prefix + tail).encode()
    target = rewritten_head(head, old_prefix, rewrite, HeaderEdits()).split(b" ")[1].decode()
    assert target.startswith("/") and not target.startswith("//")
    assert target.endswith(tail)
    assert target.lstrip("/") == (rewrite + tail).lstrip("/")


@given(st.dictionaries(st.text("abq", min_size=1, max_size=3), st.text("xy =&%", max_size=4),
                       max_size=3))  # fmt: skip
def test_query_of_reads_back_what_was_encoded(params: dict[str, str]) -> None:
    from urllib.parse import urlencode

    assert query_of("/p?" + urlencode(params)) == params


ROUTER_MODULES = ("gossamer.catalog.config_router", "gossamer.proxy.routes",
                  "gossamer.proxy.router_plan", "gossamer.proxy.route_rules")  # fmt: skip


def test_a_sidecar_with_no_router_imports_none_of_the_router_modules() -> None:
    """Started, and told there are no router entries (or an old agent's 400: []), a proxy
    loads nothing of routers."""
    import subprocess
    import sys

    from tests.harness.cli import cli_env

    script = (
        "import sys, gossamer.proxy.__main__\n"
        "from gossamer.proxy.split_targets import Splitters\n"
        "s = Splitters(None)\n"
        "s.on_entries([], []); s.on_resolvers([], []); s.on_routers([], [])\n"
        f"print(' '.join(m for m in {ROUTER_MODULES!r} if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=cli_env(), timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == []


def test_writing_a_router_needs_read_on_each_destination() -> None:
    """As Consul's canWriteDiscoveryChain: service:write on Name, service:read on every other
    service a route sends to (a token for `api` alone must not send api's callers anywhere)."""
    from gossamer.agent.acl.body_needs import Lookups, body_needs
    from gossamer.agent.acl.rules import Access

    look = Lookups("n1", lambda _: None, lambda _: None, lambda _: None)
    body = router(route({"PathPrefix": "/v2"}, Service="api-v2"),
                  route({"Methods": ["POST"]}, Service="writer", ServiceSubset="a"),
                  route(ServiceSubset="v1"))  # fmt: skip
    assert body_needs("/v1/config", "PUT", body, {}, look) == [
        ("service", "api", Access.WRITE), ("service", "api-v2", Access.READ),
        ("service", "writer", Access.READ)]  # fmt: skip


def test_route_index_decides_from_plain_parts_as_an_h2_call_gives_them() -> None:
    from gossamer.proxy.routes import route_index

    entry = read_entry(router(
        route({"PathPrefix": "/pkg.Svc/", "Header": [{"Name": "x-canary", "Present": True}]},
              Service="api-v2"),
        route({"QueryParam": [{"Name": "v", "Exact": "2"}]}, Service="api-v2"),
    ))  # fmt: skip
    plan = plan_of("api", routes_of(entry), {}, {})
    assert plan is not None
    m = plan.matcher
    assert route_index(m, "POST", "/pkg.Svc/Get", {"x-canary": "1"}) == 0
    assert route_index(m, "POST", "/pkg.Svc/Get", {}) == -1
    assert route_index(m, "GET", "/x?v=2", {}) == 1


def test_an_hcl_router_file_as_consul_documents_it_reads() -> None:
    from gossamer.agent.cli.config_hcl import read_entry_hcl

    text = """
    Kind = "service-router"
    Name = "web"
    Routes = [
      {
        Match { HTTP {
          PathPrefix = "/admin"
          Header = [{ Name = "x-debug", Exact = "1" }]
          Methods = ["GET", "POST"]
        } }
        Destination {
          Service = "admin"
          PrefixRewrite = "/"
          RequestTimeout = "5s"
          RequestHeaders {
            Set { "x-web-version" = "from-v1" }
            Remove = ["x-debug"]
          }
        }
      },
      { Destination { ServiceSubset = "canary" } },
    ]
    """
    entry = read_entry(read_entry_hcl(text))
    (admin, canary) = routes_of(entry)
    assert admin.http.methods == ("GET", "POST") and admin.destination.service == "admin"
    assert admin.destination.request_headers.set == (("x-web-version", "from-v1"),)
    assert canary.destination.subset == "canary" and canary.destination.service == "web"


def test_a_route_takes_its_destination_resolver_s_request_timeout_unless_it_has_its_own() -> None:
    """As Consul's route: its own RequestTimeout, else an unsplit destination's resolver's,
    which the upstream's own request_timeout_ms overrides (as for its own resolver)."""
    resolver = read_entry({"Kind": "service-resolver", "Name": "api-v2",
                           "RequestTimeout": "3s"})  # fmt: skip
    entry = read_entry(router(route({"PathPrefix": "/a"}, Service="api-v2"),
                              route({"PathPrefix": "/b"}, Service="api-v2",
                                    RequestTimeout="1s")))  # fmt: skip
    resolvers = {"api-v2": resolver_of(resolver)}
    plan = plan_of("api", routes_of(entry), {}, resolvers)
    assert plan is not None
    assert [r.request_s for r in plan.routes] == [3.0, 1.0]
    plan = plan_of("api", routes_of(entry), {}, resolvers, own_timeout=True)
    assert plan is not None
    assert [r.request_s for r in plan.routes] == [0.0, 1.0]


def test_the_listener_s_routing_learns_what_the_routes_targets_need() -> None:
    """A subset key needs a routing for the listener to dial it as its service, and a
    destination resolver's ConnectTimeout binds dials to that service, unless the upstream
    sets its own connect_timeout_ms."""
    from gossamer.proxy.router_plan import with_routes

    resolver = read_entry({"Kind": "service-resolver", "Name": "api-v2", "ConnectTimeout": "2s",
                           "Subsets": {"a": {"Filter": "Service.Meta.v == a"}}})  # fmt: skip
    resolvers = {"api-v2": resolver_of(resolver)}
    plain = read_entry(router(route({"PathPrefix": "/a"}, Service="other")))
    plan = plan_of("api", routes_of(plain), {}, resolvers)
    assert plan is not None and with_routes(None, plan, "api", ()) is None  # nothing needed
    entry = read_entry(router(route({"PathPrefix": "/a"}, Service="api-v2", ServiceSubset="a")))
    plan = plan_of("api", routes_of(entry), {}, resolvers)
    assert plan is not None
    routing = with_routes(None, plan, "api", ())
    assert routing is not None
    assert routing.chains == {"api": ("api",)} and routing.connect_s == {"api-v2": 2.0}
    plan = plan_of("api", routes_of(entry), {}, resolvers, own_connect=True)
    assert plan is not None
    routing = with_routes(None, plan, "api", ())
    assert routing is not None and routing.connect_s == {}  # (the subset still needs one)


_PATH = st.text("ab/", min_size=1, max_size=6).map(lambda p: "/" + p)
_METHODS = st.sampled_from(["GET", "POST", "PUT"])


@given(st.lists(st.tuples(st.sampled_from(["PathExact", "PathPrefix", ""]), _PATH,
                          st.lists(_METHODS, max_size=2, unique=True),
                          st.sampled_from(["", "1", "2"])), min_size=1, max_size=4),
       _METHODS, _PATH, st.text("ab", max_size=2), st.sampled_from(["", "1", "2"]))  # fmt: skip
def test_the_matcher_takes_the_first_route_a_plain_reading_takes(
    specs: list[tuple[str, str, list[str], str]], method: str, path: str, query: str,
    canary: str,
) -> None:  # fmt: skip
    """Routes on a path (exact or prefix), methods and an exact header, against a plain
    reading of Consul's rule: the first route whose every condition holds, the path taken
    without its query string."""
    routes = []
    for kind, where, methods, header in specs:
        http: dict[str, Any] = {kind: where} if kind else {}
        if methods:
            http["Methods"] = methods
        if header:
            http["Header"] = [{"Name": "x-canary", "Exact": header}]
        routes.append(route(http or None, Service="api-v2"))
    plan = plan_of("api", routes_of(read_entry(router(*routes))), {}, {})
    assert plan is not None
    target = path + (f"?{query}" if query else "")
    headers = {"x-canary": canary} if canary else {}

    def fits(kind: str, where: str, methods: list[str], header: str) -> bool:
        return ((kind != "PathExact" or path == where)
                and (kind != "PathPrefix" or path.startswith(where))
                and (not methods or method in methods)
                and (not header or canary == header))  # fmt: skip

    expected = next((i for i, spec in enumerate(specs) if fits(*spec)), -1)
    assert plan.matcher.first(_request(method, target, **headers)) == expected


def test_gossamer_check_counts_where_each_route_sends() -> None:
    """`gossamer check`'s upstream line: each route's targets (a subset as is, a destination's
    split targets, else its service; the upstream itself is its own count), and a target with
    no passing instance fails the line naming it."""
    from gossamer.agent.preflight import proxy_checks as pc
    from gossamer.agent.preflight.result import Status
    from gossamer.catalog.config_entries import Split

    routes = routes_of(read_entry(router(
        route({"PathPrefix": "/a"}, Service="api-next"),
        route({"PathPrefix": "/b"}, ServiceSubset="v2"),
        route({"PathPrefix": "/c"}, Service="api-split"),
        route({"PathPrefix": "/d"}),  # the upstream itself
    )))  # fmt: skip
    splitters = {"api-split": (Split(50, "api-split"), Split(50, "api-x/blue"),
                               Split(0, "api-off"))}  # fmt: skip
    found = pc.route_targets("api", routes, splitters)
    assert found == [(0, "api-next"), (1, "api/v2"), (2, "api-split"), (2, "api-x/blue")]
    counts = {"api-next": 1, "api/v2": 0, "api-split": 2, "api-x/blue": None}
    targets = [pc.RouteTarget("api", i, key, counts[key]) for i, key in found]
    result = pc.judge_upstreams("web-sidecar-proxy", [("api", 2)], (), targets)
    assert result.status is Status.FAIL
    assert result.detail == ("api (2 healthy; routes: 0 -> api-next (1 healthy), 1 -> api/v2 "
                             "(0 healthy), 2 -> api-split (2 healthy), 2 -> api-x/blue "
                             "(? healthy))")  # fmt: skip
    assert "of api matching subset v2" in result.hint  # (a subset is no service to start)
    assert "of api-x matching subset blue" in result.hint
    good = [t for t in targets if t.healthy]
    assert pc.judge_upstreams("web-sidecar-proxy", [("api", 2)], (), good).status is Status.OK


def test_retry_fields_and_answer_edits_are_stored_and_read() -> None:
    entry = read_entry(router(route(
        NumRetries=3, RetryOnConnectFailure=True, RetryOn=["gateway-error", "reset"],
        RetryOnStatusCodes=[500, 429],
        ResponseHeaders={"Add": {"x-via": "gw"}, "Set": {"cache-control": "no-store"},
                         "Remove": ["server"]},
    )))  # fmt: skip
    stored = entry["Routes"][0]["Destination"]
    assert stored == {"NumRetries": 3, "RetryOnConnectFailure": True,
                      "RetryOn": ["gateway-error", "reset"], "RetryOnStatusCodes": [500, 429],
                      "ResponseHeaders": {"Add": {"x-via": "gw"},
                                          "Set": {"cache-control": "no-store"},
                                          "Remove": ["server"]}}  # fmt: skip
    d = routes_of(entry)[0].destination
    assert (d.num_retries, d.retry_on, d.retry_on_status_codes) == (3, ("gateway-error", "reset"),
                                                                     (500, 429))  # fmt: skip
    assert d.retries and d.response_headers == HeaderEdits((("x-via", "gw"),),
                                                           (("cache-control", "no-store"),),
                                                           ("server",))  # fmt: skip
    assert read_entry(router(route(NumRetries=0)))["Routes"] == [{}]  # Consul's zero: unset
    idle = read_entry(router(route(IdleTimeout=1_500_000_000)))  # nanoseconds, as Consul's JSON
    assert idle["Routes"][0]["Destination"] == {"IdleTimeout": "1.5s"}
    assert routes_of(idle)[0].destination.idle_timeout_s == 1.5


def test_route_rules_retry_decisions() -> None:
    """Which tries a route's rules send again: its statuses whatever the method, the
    sidecar's own 502/503 for safe requests, a lost try with `reset`, within NumRetries
    (else the sidecar's own number)."""
    from gossamer.proxy.route_rules import rules_of

    def rules(**dest: Any) -> Any:
        return rules_of(routes_of(read_entry(router(route(**dest))))[0].destination)

    assert rules() is None and rules(RequestTimeout="1s") is None
    assert rules(IdleTimeout="250ms").idle_s == 0.25
    r = rules(RetryOnStatusCodes=[500], RetryOn=["retriable-4xx"])
    assert r.may_retry(0, 2, False, 500, False) and r.may_retry(0, 2, False, 409, False)
    assert not r.may_retry(0, 2, False, 503, False)  # a POST's 503: the sidecar's rule says no
    assert r.may_retry(0, 2, True, 503, False) and not r.may_retry(0, 2, True, 404, False)
    assert r.may_retry(1, 2, True, 500, False) and not r.may_retry(2, 2, True, 500, False)
    assert not r.may_retry(0, 2, False, 0, True) and r.may_retry(0, 2, True, 0, True)
    five = rules(NumRetries=4, RetryOn=["5xx"])
    assert five.may_retry(3, 2, False, 504, False) and not five.may_retry(4, 2, False, 504, False)
    assert five.may_retry(0, 2, False, 0, True)  # `5xx` includes a try with no answer
    assert not five.may_retry(0, 2, False, 0, False)  # (a broken answer is not `lost`)
    gate = rules(RetryOn=["gateway-error"])
    assert [s for s in (500, 502, 503, 504) if gate.may_retry(0, 2, False, s, False)] == [
        502,
        503,
        504,
    ]
    assert rules(RetryOnConnectFailure=True).statuses == frozenset()


def test_answer_head_edits_remove_then_set_then_add() -> None:
    from gossamer.proxy.route_rules import rules_of

    d = routes_of(
        read_entry(
            router(
                route(
                    ResponseHeaders={
                        "Remove": ["Server"],
                        "Set": {"X-Cache": "miss"},
                        "Add": {"Vary": "x-canary"},
                    }
                )
            )
        )
    )[0]
    r = rules_of(d.destination)
    head = [
        b"Server",
        b": ",
        b"nginx",
        b"\r\n",
        b"x-cache",
        b": ",
        b"hit",
        b"\r\n",
        b"Vary",
        b": ",
        b"accept",
        b"\r\n",
        b"Content-Length",
        b": ",
        b"2",
        b"\r\n",
    ]
    assert b"".join(r.answer_head(head)) == (
        b"Vary: accept\r\nContent-Length: 2\r\nX-Cache: miss\r\nVary: x-canary\r\n"
    )
    only_add = rules_of(routes_of(read_entry(router(route(
        ResponseHeaders={"Add": {"x-a": "1%%"}}))))[0].destination)  # fmt: skip
    assert b"".join(only_add.answer_head(head[:4])) == b"Server: nginx\r\nx-a: 1%\r\n"
    retries_only = rules_of(routes_of(read_entry(router(route(NumRetries=1))))[0].destination)
    assert retries_only.answer_head(head) is head  # nothing to edit: the same list


_NAMES = st.sampled_from(["Server", "server", "X-Cache", "Vary", "Date", "x-a"])


@given(fields=st.lists(st.tuples(_NAMES, st.text("abc", max_size=3)), max_size=6),
       remove=st.lists(_NAMES, max_size=2, unique=True),
       add=st.dictionaries(_NAMES, st.text("xyz", min_size=1, max_size=2), max_size=2))  # fmt: skip
def test_answer_head_keeps_every_field_it_was_not_told_to_drop_in_order(
    fields: list[tuple[str, str]], remove: list[str], add: dict[str, str]
) -> None:
    from gossamer.proxy.http_codec import add_header
    from gossamer.proxy.route_rules import rules_of

    d = routes_of(
        read_entry(
            router(
                route(ResponseHeaders={k: v for k, v in (("Remove", remove), ("Add", add)) if v})
            )
        )
    )[0]
    r = rules_of(d.destination)
    if r is None:  # nothing to edit
        assert not remove and not add
        return
    head: list[bytes] = []
    for name, value in fields:
        add_header(head, name.encode(), value.encode())
    out = r.answer_head(head)
    assert len(out) % 4 == 0
    pairs = [(out[i].decode(), out[i + 2].decode()) for i in range(0, len(out), 4)]
    gone = {n.lower() for n in remove}
    kept = [(n, v) for n, v in fields if n.lower() not in gone]
    assert pairs == kept + list(add.items())


def test_stat_routes_splits_an_http_edge_by_route_over_a_window() -> None:
    """`gossamer stat --routes`: one row per route label of each HTTP edge (none is
    `[default]`), its success and rate over the window as an edge's; TCP edges have none."""
    from gossamer.proxy.edge_metrics import EdgeMetrics, stats_json
    from gossamer.proxy.stat_routes import DEFAULT, route_cells, route_rows
    from gossamer.proxy.stat_rows import edges_of

    m = EdgeMetrics("web")
    out = m.outbound("api")
    m.outbound("db").opened = 1  # a TCP edge: no routes

    def gathered() -> Any:
        return edges_of([{"ProxyID": "web-sidecar-proxy",
                          "Stats": {"Proxies": [stats_json(m, 100.0)]}}])  # fmt: skip

    out.answered(200, 0.01, "route 0 -> api-next")
    out.answered(200, 0.01)
    before = gathered()
    for status in (200, 500, 200, 200):
        out.answered(status, 0.02, "route 0 -> api-next")
    out.answered(503, 0.02)
    found = route_rows(gathered(), before, 10.0)
    assert [(r.destination, r.route, r.requests, r.successes) for r in found] == [
        ("api", DEFAULT, 1, 0), ("api", "route 0 -> api-next", 4, 3)]  # fmt: skip
    assert found[1].success_rate == 0.75 and found[1].per_second == 0.4
    assert route_cells(found[1])[:6] == ["outbound", "web", "api", "route 0 -> api-next",
                                         "75.00%", "0.4"]  # fmt: skip
    since_start = route_rows(gathered(), None, 0.0)
    assert [r.requests for r in since_start] == [2, 5]
    from rich.console import Console

    from gossamer.agent.cli.stat import _print_routes

    console = Console(width=120, record=True)
    _print_routes(found, [], False, console, "routes")
    assert "[default]" in console.export_text()  # a cell, not rich markup
