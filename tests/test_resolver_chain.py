"""service-resolver entries without I/O: the reader's 400s, the chain (redirects, default
subsets, failover, loops), the write-time graph check, and the routes a listener obeys."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.catalog.config_entries import (
    ConfigEntryError,
    Split,
    check_graph,
    read_entry,
    splits_of,
)
from gossamer.catalog.config_resolver import Ref, Resolver, Subset, resolver_of
from gossamer.catalog.resolver_chain import ChainError, Target, resolve
from gossamer.proxy.config import Upstream
from gossamer.proxy.resolver_routes import routing_of

V1, V2 = "Service.Meta.version == v1", "Service.Meta.version == v2"
SUBSETS = {"v1": {"Filter": V1}, "v2": {"Filter": V2, "OnlyPassing": True}}


def resolver(name: str = "api", **fields: Any) -> dict[str, Any]:
    return {"Kind": "service-resolver", "Name": name, **fields}


def typed(**entries: dict[str, Any]) -> dict[str, Resolver]:
    return {name: resolver_of(read_entry(resolver(name, **e))) for name, e in entries.items()}


# --- the reader --------------------------------------------------------------------------


def test_a_full_resolver_reads_back_in_consul_s_shape() -> None:
    body = resolver(Subsets=SUBSETS, DefaultSubset="v1", ConnectTimeout="2500ms",
                    RequestTimeout="1m", Failover={"*": {"Targets": [{"Service": "b"}]},
                                                   "v2": {"ServiceSubset": "v1"}})  # fmt: skip
    entry = read_entry(body)
    assert entry == body | {"ConnectTimeout": "2.5s", "RequestTimeout": "1m0s"}
    r = resolver_of(entry)
    assert r.subsets["v2"] == Subset(V2, only_passing=True) and r.connect_timeout_s == 2.5
    assert r.failover == {"*": (Ref("b"),), "v2": (Ref("", "v1"),)}
    snake = read_entry({"kind": "service-resolver", "name": "api", "default_subset": "v1",
                        "subsets": {"v1": {"filter": V1, "only_passing": True}}})  # fmt: skip
    assert snake["Subsets"] == {"v1": {"Filter": V1, "OnlyPassing": True}}


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"DefaultSubset": "v3", "Subsets": SUBSETS}, "DefaultSubset", "not one of Subsets"),
        ({"Subsets": {"V1": {}}}, 'Subsets["V1"]', "DNS label"),
        ({"Subsets": {"v1": {"Filter": "Service.Meta.version =="}}}, 'Subsets["v1"].Filter',
         "not a valid filter"),
        ({"Subsets": {"v1": {"Filter": "Service.Metta.version == v1"}}},
         'Subsets["v1"].Filter', "Metta"),
        ({"Subsets": {"v1": {"OnlyPassing": "yes"}}}, 'Subsets["v1"].OnlyPassing', "true or false"),
        ({"Subsets": {"v1": {"Fliter": V1}}}, 'Subsets["v1"].Fliter', "unknown field"),
        ({"Redirect": {}}, "Redirect", "is empty"),
        ({"Redirect": {"ServiceSubset": "v1"}, "Subsets": SUBSETS}, "Redirect.ServiceSubset",
         "without Redirect.Service"),
        ({"Redirect": {"Service": "api", "ServiceSubset": "v9"}, "Subsets": SUBSETS},
         "Redirect.ServiceSubset", "not a subset"),
        ({"Redirect": {"Service": "b", "Datacenter": "dc2"}}, "Redirect.Datacenter",
         "own datacenter"),
        ({"Redirect": {"Service": "b", "Peer": "east"}}, "Redirect.Peer", "own datacenter"),
        ({"Redirect": {"Service": "b"}, "Failover": {"*": {"Service": "c"}}}, "Failover",
         "cannot both be set"),
        ({"Failover": {"v9": {"Service": "b"}}}, 'Failover["v9"]', "keyed by one of Subsets"),
        ({"Failover": {"*": {}}}, 'Failover["*"]', "one of Service, ServiceSubset or Targets"),
        ({"Failover": {"*": {"Datacenters": ["dc2"]}}}, 'Failover["*"].Datacenters',
         "own datacenter"),
        ({"Failover": {"*": {"Targets": [{"Service": "b", "Peer": "east"}]}}},
         'Failover["*"].Targets[0].Peer', "own datacenter"),
        ({"Failover": {"*": {"Targets": [{"Partition": "p2", "Service": "b"}]}}},
         'Failover["*"].Targets[0].Partition', "default partition"),
        ({"Failover": {"*": {"Service": "b", "Targets": [{"Service": "c"}]}}},
         'Failover["*"].Targets', "cannot be set with Service"),
        ({"Failover": {"*": {"ServiceSubset": "v9"}}, "Subsets": SUBSETS},
         'Failover["*"].ServiceSubset', "not a subset"),
        ({"Failover": {"*": {"Service": "b", "Policy": {"Mode": "order-by-locality"}}}},
         'Failover["*"].Policy', "listed order"),
        ({"ConnectTimeout": "-1s"}, "ConnectTimeout", ">= 0"),
        ({"RequestTimeout": "5"}, "RequestTimeout", "not a duration"),
        ({"RequestTimeout": 5}, "RequestTimeout", "duration string"),
        ({"LoadBalancer": {"Policy": "ring_hash"}}, "LoadBalancer", "not supported"),
        ({"PrioritizeByLocality": {"Mode": "failover"}}, "PrioritizeByLocality", "locality"),
    ],
)  # fmt: skip
def test_each_bad_field_is_named(fields: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigEntryError) as caught:
        read_entry(resolver(**fields))
    found = dict(caught.value.problems)
    assert field in found and words in found[field], caught.value.problems


def test_a_split_to_a_subset_is_kept_as_its_target_key() -> None:
    body = {"Kind": "service-splitter", "Name": "api",
            "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "Service": "api",
                                                             "ServiceSubset": "v2"}]}  # fmt: skip
    entry = read_entry(body)
    assert entry["Splits"] == [{"Weight": 90, "Service": "api", "ServiceSubset": "v1"},
                               {"Weight": 10, "Service": "api", "ServiceSubset": "v2"}]  # fmt: skip
    assert splits_of(entry) == (Split(9000, "api/v1"), Split(1000, "api/v2"))
    with pytest.raises(ConfigEntryError) as caught:
        read_entry({**body, "Splits": [{"Weight": 100, "ServiceSubset": "V_2"}]})
    assert caught.value.field == "Splits[0].ServiceSubset"


# --- the chain ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "asked", "primary", "failover"),
    [
        ({}, ("api", ""), "api", ()),
        ({"api": {"Subsets": SUBSETS, "DefaultSubset": "v1"}}, ("api", ""), "api/v1", ()),
        ({"api": {"Subsets": SUBSETS, "DefaultSubset": "v1"}}, ("api", "v2"), "api/v2", ()),
        ({"api": {"Subsets": SUBSETS}}, ("api", ""), "api", ()),
        ({"api": {"Redirect": {"Service": "b"}}}, ("api", ""), "b", ()),
        # another service: the subset asked for is dropped, that service's default taken
        ({"api": {"Redirect": {"Service": "b"}}, "b": {"Subsets": SUBSETS, "DefaultSubset": "v2"}},
         ("api", "v1"), "b/v2", ()),
        ({"api": {"Redirect": {"Service": "b", "ServiceSubset": "v1"}}, "b": {"Subsets": SUBSETS}},
         ("api", ""), "b/v1", ()),
        ({"api": {"Redirect": {"Service": "b"}}, "b": {"Redirect": {"Service": "c"}}},
         ("api", ""), "c", ()),
        ({"api": {"Subsets": SUBSETS, "DefaultSubset": "v1",
                  "Failover": {"*": {"Targets": [{"ServiceSubset": "v2"}, {"Service": "b"},
                                                 {"ServiceSubset": "v1"}]}}}},
         ("api", ""), "api/v1", ("api/v2", "b")),  # itself dropped
        ({"api": {"Subsets": SUBSETS, "Failover": {"v2": {"ServiceSubset": "v1"},
                                                   "*": {"Service": "b"}}}},
         ("api", "v2"), "api/v2", ("api/v1",)),
        ({"api": {"Subsets": SUBSETS, "Failover": {"v2": {"ServiceSubset": "v1"},
                                                   "*": {"Service": "b"}}}},
         ("api", "v1"), "api/v1", ("b",)),
        # a failover target's redirect is followed
        ({"api": {"Failover": {"*": {"Service": "b"}}}, "b": {"Redirect": {"Service": "c"}}},
         ("api", ""), "api", ("c",)),
    ],
)  # fmt: skip
def test_resolve(entries: dict[str, dict[str, Any]], asked: tuple[str, str], primary: str,
                 failover: tuple[str, ...]) -> None:  # fmt: skip
    route = resolve(*asked, typed(**entries))
    assert route.primary.key == primary
    assert tuple(t.key for t in route.failover) == failover


@pytest.mark.parametrize(
    ("entries", "asked", "words"),
    [
        ({"a": {"Redirect": {"Service": "b"}}, "b": {"Redirect": {"Service": "a"}}}, ("a", ""),
         "circular resolver redirect: a -> b -> a"),
        ({}, ("api", "v1"), "does not have a subset named 'v1'"),
        ({"api": {"Subsets": SUBSETS}}, ("api", "v3"), "defines 'v1', 'v2'"),
    ],
)  # fmt: skip
def test_unresolvable_chains_say_why(entries: dict[str, dict[str, Any]],
                                     asked: tuple[str, str], words: str) -> None:  # fmt: skip
    with pytest.raises(ChainError) as caught:
        resolve(*asked, typed(**entries))
    assert words in str(caught.value)


def test_a_subset_s_health_query() -> None:
    assert Target("api").query() == "passing"
    assert Target("api", "v2", V2, only_passing=True).query() == (
        "passing&filter=Service.Meta.version%20%3D%3D%20v2"
    )
    warn_too = Target("api", "v1", V1).query()
    assert warn_too.startswith("filter=") and "critical" in warn_too and "passing" not in warn_too


names = st.sampled_from(["a", "b", "c", "d"])
subset_names = st.sampled_from(["", "x", "y"])


@st.composite
def resolver_sets(draw: st.DrawFn) -> dict[str, Resolver]:
    found = {}
    for name in draw(st.lists(names, unique=True)):
        subsets = {s: Subset() for s in draw(st.lists(st.sampled_from(["x", "y"]), unique=True))}
        redirect = None
        if draw(st.booleans()):
            redirect = Ref(draw(names), draw(subset_names))
        default = draw(st.sampled_from(["", *subsets]))
        failover = {"*": (Ref(draw(names), draw(subset_names)),)} if draw(st.booleans()) else {}
        found[name] = Resolver(name, default, subsets, redirect, failover)
    return found


@settings(max_examples=300, deadline=None)
@given(resolver_sets(), names, subset_names)
def test_resolve_ends_or_says_why(resolvers: dict[str, Resolver], service: str,
                                  subset: str) -> None:  # fmt: skip
    """Any set of entries: resolve ends, at a target that its resolver neither redirects
    nor leaves without its default subset, whose subset exists; failover never repeats."""
    try:
        route = resolve(service, subset, resolvers)
    except ChainError:
        return
    for target in route.targets:
        r = resolvers.get(target.service)
        if target.subset:
            assert r is not None and target.subset in r.subsets
        elif r is not None:
            assert not r.default_subset
    keys = [t.key for t in route.targets]
    assert len(keys) == len(set(keys))


# --- the write-time check ----------------------------------------------------------------


def held(*bodies: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    entries = [read_entry(b) for b in bodies]
    return {(e["Kind"], e["Name"]): e for e in entries}


SPLIT = {
    "Kind": "service-splitter",
    "Name": "api",
    "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}],
}


def test_a_split_to_a_subset_no_resolver_defines_is_refused() -> None:
    with pytest.raises(ConfigEntryError) as caught:
        check_graph({}, "service-splitter", "api", read_entry(SPLIT))
    assert caught.value.field == "Splits[0].ServiceSubset"
    assert "does not have a subset named 'v1'" in caught.value.message
    check_graph(held(resolver(Subsets=SUBSETS)), "service-splitter", "api", read_entry(SPLIT))


def test_a_resolver_change_that_breaks_a_split_or_loops_is_refused() -> None:
    now = held(resolver(Subsets=SUBSETS), SPLIT)
    with pytest.raises(ConfigEntryError) as caught:
        check_graph(now, "service-resolver", "api", None)
    assert caught.value.field == "name" and "service-splitter/api.Splits[0]" in caught.value.message
    with pytest.raises(ConfigEntryError) as caught:
        check_graph(now, "service-resolver", "api", read_entry(resolver(Subsets={"v1": {}})))
    assert caught.value.field == "Subsets" and "'v2'" in caught.value.message
    loop = held(resolver("a", Redirect={"Service": "b"}))
    with pytest.raises(ConfigEntryError) as caught:
        check_graph(
            loop, "service-resolver", "b", read_entry(resolver("b", Redirect={"Service": "a"}))
        )
    assert caught.value.field == "Redirect" and "circular" in caught.value.message


def test_a_chain_broken_before_does_not_block_other_writes() -> None:
    broken = {
        **held(resolver(Subsets=SUBSETS)),
        ("service-splitter", "web"): read_entry(
            {
                **SPLIT,
                "Name": "web",
                "Splits": [{"Weight": 100, "Service": "web", "ServiceSubset": "v1"}],
            }
        ),
    }
    check_graph(broken, "service-resolver", "other", read_entry(resolver("other")))


# --- the routes a listener obeys ---------------------------------------------------------


def test_no_resolver_or_one_that_changes_nothing_is_no_routing() -> None:
    up = Upstream("api", 1)
    assert routing_of(up, (), {}) is None
    assert routing_of(up, (), typed(api={"Subsets": SUBSETS})) is None  # no default subset
    assert routing_of(up, (Split(5000, "api"), Split(5000, "b")), typed(c={})) is None


def test_routes_of_a_split_with_failover_and_timeouts() -> None:
    resolvers = typed(api={"Subsets": SUBSETS, "ConnectTimeout": "2s", "RequestTimeout": "3s",
                           "Failover": {"v1": {"Service": "b"}}})  # fmt: skip
    splits = (Split(9000, "api/v1"), Split(1000, "api/v2"))
    routing = routing_of(Upstream("api", 1), splits, resolvers)
    assert routing is not None
    assert routing.chains == {"api/v1": ("api/v1", "b"), "api/v2": ("api/v2",)}
    assert set(routing.queries) == {"api/v1", "api/v2", "b"}
    assert routing.connect_s == {"api": 2.0} and routing.request_s == 0.0  # split: no route timeout
    alone = routing_of(Upstream("api", 1), (), resolvers)
    assert alone is not None and alone.request_s == 3.0 and alone.chains == {"api": ("api",)}
    own = Upstream("api", 1, connect_timeout_set=True, request_timeout_set=True)
    assert routing_of(own, (), resolvers) is None  # the upstream's own timeouts win


def test_a_proxy_without_resolvers_loads_none_of_their_modules() -> None:
    """The resolver modules (and the filter parser they bring) are imported on the first
    resolver entry a sidecar hears of: RSS a sidecar without one does not pay."""
    import subprocess
    import sys

    from tests.harness.cli import cli_env

    lazy = ("gossamer.catalog.config_resolver", "gossamer.catalog.resolver_chain",
            "gossamer.proxy.resolver_routes", "gossamer.catalog.filter")  # fmt: skip
    script = ("import sys, gossamer.proxy.__main__, gossamer.proxy.runtime\n"
              f"print(' '.join(m for m in {lazy!r} if m in sys.modules))")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=cli_env(), timeout=60, check=True)  # fmt: skip
    assert run.stdout.split() == []


def test_a_listener_takes_the_resolver_s_timeouts_and_gives_them_back() -> None:
    """ConnectTimeout binds dials per service; RequestTimeout binds an unsplit upstream's
    requests (HTTP/1 pool and the HTTP/2 calls of new connections); removed, the upstream's
    own values return."""
    from gossamer.proxy import tally
    from gossamer.proxy.outbound import UpstreamListener

    resolvers = typed(api={"ConnectTimeout": "2s", "RequestTimeout": "300ms"},
                      b={"ConnectTimeout": "4s"})  # fmt: skip
    for protocol in ("http", "http2"):
        up = Upstream("api", 1, protocol=protocol)
        listener = UpstreamListener(up, lambda: None, tally.Tally())
        listener.set_routing(routing_of(up, (), resolvers))
        assert listener.connect_timeout_for("api") == 2.0
        assert listener.connect_timeout_for("b") == up.connect_timeout_s  # not on its way
        assert listener.request_timeout_s == 0.3
        if listener.http is not None:
            assert listener.http.limits.request_s == 0.3
        listener.set_routing(None)
        assert listener.connect_timeout_for("api") == up.connect_timeout_s
        assert listener.request_timeout_s == up.request_timeout_s


def test_writing_a_chain_entry_needs_read_on_each_service_it_sends_to() -> None:
    """As Consul's canWriteDiscoveryChain: service:write on the entry's Name and service:read
    on every other service a splitter or resolver sends traffic to; without the second, a
    token for `api` could send api's callers anywhere."""
    from gossamer.agent.acl.body_needs import Lookups, body_needs
    from gossamer.agent.acl.rules import Access

    look = Lookups("n1", lambda _: None, lambda _: None, lambda _: None)
    R, W = Access.READ, Access.WRITE
    redirect = resolver(Redirect={"Service": "api-backup"})
    assert body_needs("/v1/config", "PUT", redirect, {}, look) == [
        ("service", "api", W), ("service", "api-backup", R)]  # fmt: skip
    failover = resolver(
        Subsets=SUBSETS,
        Failover={
            "v1": {"Targets": [{"ServiceSubset": "v2"}, {"Service": "b"}]},
            "*": {"Service": "c"},
        },
    )
    assert body_needs("/v1/config", "PUT", failover, {}, look) == [
        ("service", "api", W), ("service", "b", R), ("service", "c", R)]  # fmt: skip
    split = {"Kind": "service-splitter", "Name": "api", "Splits": [
        {"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "Service": "canary"}]}  # fmt: skip
    assert body_needs("/v1/config", "PUT", split, {}, look) == [
        ("service", "api", W), ("service", "canary", R)]  # fmt: skip
    defaults = {"Kind": "service-defaults", "Name": "api", "Protocol": "http"}
    assert body_needs("/v1/config", "PUT", defaults, {}, look) == [("service", "api", W)]
    bad = resolver(Redirect={"Service": "x"}, LoadBalancer={})  # a 400 anyway
    assert body_needs("/v1/config", "PUT", bad, {}, look) == [("service", "api", W)]


def test_a_tag_filter_and_its_health_query() -> None:
    entry = read_entry(
        resolver(
            Subsets={
                "canary": {"Filter": "Service.Tags contains canary", "OnlyPassing": True},
                "stable": {"Filter": "canary not in Service.Tags"},
            }
        )
    )
    route = resolve("api", "canary", {"api": resolver_of(entry)})
    assert route.primary.query() == "passing&filter=Service.Tags%20contains%20canary"
    stable = resolve("api", "stable", {"api": resolver_of(entry)}).primary.query()
    assert stable == (
        "filter=%28canary%20not%20in%20Service.Tags%29%20and%20not%20"
        "Checks.Status%20%3D%3D%20critical"
    )
