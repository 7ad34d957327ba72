"""The pure pieces around the authorizer: the guessing guard, result filtering, body needs."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.agent.acl.body_needs import Lookups, body_needs
from gossamer.agent.acl.endpoints import ENDPOINTS
from gossamer.agent.acl.guard import FailureGuard
from gossamer.agent.acl.result_filter import filter_result
from gossamer.agent.acl.rules import Access

W = Access.WRITE


def test_guard_blocks_after_the_burst_and_refills_at_its_rate() -> None:
    guard = FailureGuard(burst=3, per_second=1)
    for _ in range(3):
        assert not guard.blocked("c", 0.0)
        guard.failed("c", 0.0)
    assert guard.blocked("c", 0.0) and not guard.blocked("other", 0.0)
    assert guard.retry_after("c", 0.0) == 1.0
    assert not guard.blocked("c", 1.0)  # one more guess a second


def test_guard_table_is_bounded() -> None:
    guard = FailureGuard(max_clients=2)
    for i in range(5):
        guard.failed(f"c{i}", float(i))
    assert len(guard._buckets) == 2


def may_web(kind: str, name: str) -> bool:
    return name.startswith("web")


def test_filter_lists_keyed_maps_and_single_objects() -> None:
    nodes = [{"Node": "web1"}, {"Node": "db1"}]
    assert filter_result("/v1/catalog/nodes", nodes, may_web) == ([{"Node": "web1"}], True)
    services = {"web": [], "db": []}
    assert filter_result("/v1/catalog/services", services, may_web) == ({"web": []}, True)
    local = {"a": {"Service": "web"}, "b": {"Service": "db"}}
    assert filter_result("/v1/agent/services", local, may_web) == ({"a": {"Service": "web"}}, True)
    assert filter_result("/x", {"DestinationName": "db"}, may_web) == (None, True)
    match = {"web": [{"DestinationName": "web"}, {"DestinationName": "db"}]}
    assert filter_result("/v1/connect/intentions/match", match, may_web)[0] == {
        "web": [{"DestinationName": "web"}]
    }
    assert filter_result("/v1/catalog/nodes", [{"Node": "web"}], may_web)[1] is False


LOOK = Lookups(
    own_node="n1",
    service_name={"web-1": "web"}.get,
    check_service={"c1": "web", "c2": ""}.get,
    intention_destination={"i1": "db"}.get,
)


def test_body_needs_name_the_subject_of_each_write() -> None:
    for body in ({"Name": "web"}, {"name": "web"}):  # py-consul sends lower case
        assert body_needs("/v1/agent/service/register", "PUT", body, {}, LOOK) == [
            ("service", "web", W)
        ]
    deregister = "/v1/agent/service/deregister/{service_id}"
    assert body_needs(deregister, "PUT", None, {"service_id": "web-1"}, LOOK) == [
        ("service", "web", W)
    ]
    ttl = "/v1/agent/check/{verb}/{check_id}"
    assert body_needs(ttl, "PUT", None, {"check_id": "c2"}, LOOK) == [("node", "n1", W)]
    register = {"Node": "ext", "Service": {"Service": "api"}}
    assert body_needs("/v1/catalog/register", "PUT", register, {}, LOOK) == [
        ("node", "ext", W),
        ("service", "api", W),
    ]
    by_id = "/v1/connect/intentions/{id}"
    moved = {"DestinationName": "web"}
    assert body_needs(by_id, "PUT", moved, {"id": "i1"}, LOOK) == [
        ("intention", "db", W),
        ("intention", "web", W),
    ]
    assert body_needs("/v1/unknown", "PUT", None, {}, LOOK) == [("acl", "", W)]


def test_dns_zone_shows_only_what_the_default_token_may_read() -> None:
    from gossamer.agent.dns.zone import build_zone
    from tests.dns_support import STATE, ZONE

    def may(kind: str, name: str) -> bool:
        return kind == "node" or name == "web"

    zone = build_zone(STATE, "dc1", may_read=may)
    assert set(zone.services) == {"web"} and {"web", "api"} <= set(ZONE.services)
    assert zone.nodes == ZONE.nodes
    assert build_zone(STATE, "dc1", may_read=lambda kind, name: False).nodes == {}


def test_cut_off_means_others_exist_and_none_is_alive() -> None:
    from gossamer.agent.acl.down_policy import cut_off

    assert not cut_off("a", [("a", "alive")])  # alone by design is not cut off
    assert not cut_off("a", [("a", "alive"), ("b", "alive"), ("c", "failed")])
    assert cut_off("a", [("a", "alive"), ("b", "failed"), ("c", "failed")])
    assert not cut_off("a", [("a", "alive"), ("b", "left")])


def test_down_policy_decides_while_cut_off(tmp_path: Path) -> None:
    from gossamer.agent.acl.rules import parse_rules
    from gossamer.agent.acl.tokens import Policy, Token, hash_secret, initial_management
    from gossamer.agent.config.acl_section import AclConfig, AclTokens
    from gossamer.agent.http.acl_access import AclAccess
    from gossamer.agent.replicated.acl_store import AclStore
    from gossamer.catalog.store import CatalogStore

    db = CatalogStore.open(tmp_path / "acl.db")
    store = AclStore(db, node="a", wall_ms=lambda: 1_000, notify=lambda keys: 1)
    rules = 'service "web" { policy = "write" }'
    store.put_policy(Policy("p", "web", "", rules, parse_rules(rules)))
    store.put_token(
        Token("00000000-0000-4000-8000-000000000001", hash_secret("w"), policies=("p",))
    )
    store.put_token(initial_management("m", ""))
    isolated = [False]

    def access(down: str) -> AclAccess:
        config = AclConfig(
            enabled=True, default_policy="deny", down_policy=down,  # type: ignore[arg-type]
            tokens=AclTokens(initial_management="m"),
        )  # fmt: skip
        return AclAccess(
            store, lambda: config, datacenter="dc1", node="a", cut_off=lambda: isolated[0]
        )

    def may(down: str, secret: str, name: str, need: Access) -> bool:
        identity = access(down).identify_secret(secret, "c")
        return identity.authorizer.allows("service", name, need).allowed

    try:
        assert may("deny", "w", "web", W) and not may("allow", "w", "db", W)
        isolated[0] = True
        assert may("extend-cache", "w", "web", W) and not may("extend-cache", "w", "db", W)
        assert not may("deny", "w", "web", Access.READ)
        assert may("deny", "m", "db", W)  # the configured management token still works
        assert may("allow", "w", "db", W) and may("allow", "", "db", W)
    finally:
        db.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
BY_BODY = sorted(route for (_, route), need in ENDPOINTS.items() if need.by_body)
FILTERED = sorted(route for (_, route), need in ENDPOINTS.items() if need.filtered)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(BY_BODY), st.sampled_from(["PUT", "POST", "DELETE"]), json_values)
def test_any_body_gives_needs_and_never_raises(route: str, method: str, body: object) -> None:
    needs = body_needs(route, method, body, {"id": "i1", "check_id": "c1"}, LOOK)
    assert needs and all(kind and access == W for kind, _, access in needs)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FILTERED), json_values)
def test_any_answer_filters_without_raising(route: str, payload: object) -> None:
    kept, removed = filter_result(route, payload, may_web)
    assert removed or kept == payload
