"""Catalog values: Consul's exact JSON shapes (tables), the peer wire format (round trip, fuzz)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.catalog.consul_json import (
    catalog_service_row,
    check_json,
    health_service_row,
    node_json,
    service_to_agent_json,
)
from gossamer.catalog.model import Check, NodeRecord, Service, known_only, next_version
from gossamer.catalog.wire import RecordError, record_from_wire, record_to_wire

# --- strategies shared with test_catalog_merge ------------------------------------------

words = st.text(alphabet="abcdefgh-_.0123456789", min_size=1, max_size=6)
short_text = st.text(max_size=6)
str_maps = st.dictionaries(words, short_text, max_size=3)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | short_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_text, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(short_text, json_values, max_size=3)
ports = st.integers(0, 65535)

services = st.builds(
    Service,
    id=words,
    name=words,
    tags=st.lists(words, max_size=3).map(tuple),
    address=short_text,
    port=ports,
    meta=str_maps,
    tagged_addresses=st.dictionaries(words, st.tuples(short_text, ports), max_size=2),
    weights=st.tuples(st.integers(0, 100), st.integers(0, 100)),
    kind=st.sampled_from(["", "connect-proxy", "mesh-gateway"]),
    proxy=json_objects,
    connect=json_objects,
    enable_tag_override=st.booleans(),
)
checks = st.builds(
    Check,
    check_id=words,
    name=short_text,
    status=st.sampled_from(["passing", "warning", "critical", "maintenance"]),
    notes=short_text,
    output=short_text,
    service_id=st.sampled_from(["", "web", "db"]),
    service_name=short_text,
    service_tags=st.lists(words, max_size=2).map(tuple),
    type=st.sampled_from(["", "http", "ttl"]),
    definition=json_objects,
    interval=st.sampled_from(["", "10s"]),
    timeout=st.sampled_from(["", "1s"]),
)


DC1 = st.just("dc1")
ANY_VERSION = st.integers(0, 2**63 - 1)


def records(
    node: st.SearchStrategy[str] = words,
    node_id: st.SearchStrategy[str] = words,
    datacenter: st.SearchStrategy[str] = DC1,
    version: st.SearchStrategy[int] = ANY_VERSION,
) -> st.SearchStrategy[NodeRecord]:
    """Valid node records; narrow the name/id/version spaces to provoke conflicts."""
    return st.builds(
        NodeRecord,
        node=node,
        node_id=node_id,
        datacenter=datacenter,
        address=short_text,
        version=version,
        origin=st.one_of(node, words),
        tagged_addresses=str_maps,
        meta=str_maps,
        services=st.lists(services, max_size=3, unique_by=lambda s: s.id).map(tuple),
        checks=st.lists(checks, max_size=3, unique_by=lambda c: c.check_id).map(tuple),
    )


# --- fixtures ---------------------------------------------------------------------------

WEB = Service(
    id="web-1",
    name="web",
    tags=("prod",),
    address="172.17.0.3",
    port=5000,
    meta={"k": "v"},
    tagged_addresses={"lan": ("172.17.0.3", 5000)},
    weights=(10, 1),
)
SIDECAR = Service(
    id="web-1-sidecar-proxy",
    name="web-sidecar-proxy",
    port=21000,
    kind="connect-proxy",
    proxy={"DestinationServiceName": "web", "DestinationServiceID": "web-1"},
)
WEB_CHECK = Check(
    check_id="service:web-1",
    name="Service 'web' check",
    status="passing",
    service_id="web-1",
    service_name="web",
    service_tags=("prod",),
    type="http",
    interval="10s",
    timeout="1s",
)
NODE = NodeRecord(
    node="t2",
    node_id="40e4a748-2192-161a-0510-9bf59fe950b5",
    datacenter="dc1",
    address="192.168.10.10",
    version=7,
    origin="t2",
    tagged_addresses={"wan": "10.0.10.10", "lan": "192.168.10.10"},
    meta={"somekey": "somevalue"},
    services=(WEB, SIDECAR),
    checks=(WEB_CHECK,),
)


# --- Consul JSON shapes -----------------------------------------------------------------


def test_agent_service_json_matches_a_real_agent() -> None:
    assert service_to_agent_json(WEB, "dc1") == {
        "ID": "web-1",
        "Service": "web",
        "Tags": ["prod"],
        "Meta": {"k": "v"},
        "Port": 5000,
        "Address": "172.17.0.3",
        "TaggedAddresses": {  # a real agent adds lan_ipv4/wan_ipv4 for an IPv4 Address
            "lan": {"Address": "172.17.0.3", "Port": 5000},
            "lan_ipv4": {"Address": "172.17.0.3", "Port": 5000},
            "wan_ipv4": {"Address": "172.17.0.3", "Port": 5000},
        },
        "Weights": {"Passing": 10, "Warning": 1},
        "EnableTagOverride": False,
        "Datacenter": "dc1",
    }


def test_agent_service_json_shows_kind_and_proxy_only_when_set() -> None:
    body = service_to_agent_json(SIDECAR, "dc1")
    assert body["Kind"] == "connect-proxy"
    assert body["Proxy"]["DestinationServiceID"] == "web-1"
    assert "Connect" not in body
    assert next(iter(body)) == "Kind"


def test_empty_lists_and_maps_are_never_null() -> None:
    bare = Service(id="x", name="x")
    for body in (service_to_agent_json(bare, "dc1"), catalog_service_row(NODE, bare)):
        assert None not in body.values()
    assert check_json("n", Check("c", "c"))["ServiceTags"] == []


def test_catalog_service_row_has_consuls_fields_in_order() -> None:
    row = catalog_service_row(NODE, WEB, create_index=51, modify_index=52)
    assert list(row) == [
        "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta",
        "ServiceKind", "ServiceID", "ServiceName", "ServiceTags", "ServiceAddress",
        "ServiceTaggedAddresses", "ServiceWeights", "ServiceMeta", "ServicePort",
        "ServiceEnableTagOverride", "ServiceProxy", "ServiceConnect", "CreateIndex", "ModifyIndex",
    ]  # fmt: skip
    assert row["TaggedAddresses"] == {  # an agent's node: the _ipv4 forms follow lan and wan
        "lan": "192.168.10.10",
        "lan_ipv4": "192.168.10.10",
        "wan": "10.0.10.10",
        "wan_ipv4": "10.0.10.10",
    }
    here = {"Address": "172.17.0.3", "Port": 5000}
    assert row["ServiceTaggedAddresses"] == {"lan": here, "lan_ipv4": here, "wan_ipv4": here}
    assert row["ServiceProxy"] == {"Mode": "", "MeshGateway": {}, "Expose": {}}
    assert (row["ServiceConnect"], row["CreateIndex"], row["ModifyIndex"]) == ({}, 51, 52)


def test_health_service_row_nests_node_service_and_checks() -> None:
    serf = Check("serfHealth", "Serf Health Status", status="passing")
    row = health_service_row(NODE, WEB, (serf, WEB_CHECK), index=9)
    assert list(row) == ["Node", "Service", "Checks"]
    assert row["Node"] == node_json(NODE, create_index=9, modify_index=9)
    assert set(row["Node"]) == {
        "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta",
        "CreateIndex", "ModifyIndex",
    }  # fmt: skip
    assert row["Service"]["Service"] == "web" and "Kind" not in row["Service"]
    assert [c["CheckID"] for c in row["Checks"]] == ["serfHealth", "service:web-1"]
    assert row["Checks"][0]["Node"] == "t2"


def test_check_json_matches_a_real_agent() -> None:
    assert check_json("t2", WEB_CHECK, create_index=3, modify_index=4) == {
        "Node": "t2",
        "CheckID": "service:web-1",
        "Name": "Service 'web' check",
        "Status": "passing",
        "Notes": "",
        "Output": "",
        "ServiceID": "web-1",
        "ServiceName": "web",
        "ServiceTags": ["prod"],
        "Type": "http",
        "Interval": "10s",
        "Timeout": "1s",
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": 3,
        "ModifyIndex": 4,
    }


# --- values -----------------------------------------------------------------------------


def test_record_sorts_services_and_checks_by_id() -> None:
    assert [s.id for s in NODE.services] == ["web-1", "web-1-sidecar-proxy"]
    swapped = NodeRecord(
        "t2", NODE.node_id, "dc1", NODE.address, 7, "t2",
        NODE.tagged_addresses, NODE.meta, (SIDECAR, WEB), (WEB_CHECK,),
    )  # fmt: skip
    assert swapped == NODE


@pytest.mark.parametrize("field", ["services", "checks"])
def test_record_refuses_duplicate_ids(field: str) -> None:
    dupes: dict[str, Any] = {"services": (WEB, WEB)} if field == "services" else {}
    dupes |= {"checks": (WEB_CHECK, WEB_CHECK)} if field == "checks" else {}
    with pytest.raises(ValueError, match="duplicate"):
        NodeRecord("n", "i", "dc1", "a", 1, "n", **dupes)


def test_check_refuses_unknown_status() -> None:
    with pytest.raises(ValueError, match="status"):
        Check("c", "c", status="ok")


def test_record_helpers() -> None:
    assert NODE.service("web-1") == WEB and NODE.service("nope") is None
    assert NODE.checks_for("web-1") == (WEB_CHECK,) and NODE.checks_for("other") == ()
    assert not NODE.is_external
    assert NodeRecord("ext", "i", "dc1", "a", 1, origin="t2").is_external


@pytest.mark.parametrize(
    ("previous", "wall_ms", "expected"),
    [(0, 1000, 1000), (5000, 1000, 5001), (1000, 1000, 1001)],
)
def test_next_version_grows_and_is_floored_by_the_wall_clock(
    previous: int, wall_ms: int, expected: int
) -> None:
    assert next_version(previous, wall_ms) == expected


# --- wire format ------------------------------------------------------------------------


@given(records())
def test_wire_round_trips_through_json(record: NodeRecord) -> None:
    text = json.dumps(record_to_wire(record))
    assert record_from_wire(json.loads(text)) == record


def _wire(**changes: Any) -> dict[str, Any]:
    body = record_to_wire(NODE)
    for path, value in changes.items():
        target: Any = body
        *parents, last = path.split("__")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return body


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], "record: expected an object"),
        (_wire(v=2), "v: unsupported"),
        (_wire(v=True), "v: unsupported"),
        (_wire(node=KeyError), "node: missing"),
        (_wire(node=3), "node: expected a string"),
        (_wire(version=-1), "version: expected an integer"),
        (_wire(version=2**63), "version: expected an integer"),
        (_wire(version=True), "version: expected an integer"),
        (_wire(meta={"k": 1}), "meta.k: expected a string"),
        (_wire(services={}), "services: expected a list"),
        (_wire(services__0__port=70000), r"services\[0\].port"),
        (_wire(services__0__port=80.0), r"services\[0\].port"),
        (_wire(services__0__weights=[1]), r"services\[0\].weights"),
        (_wire(services__0__tagged_addresses={"lan": ["a"]}), r"tagged_addresses.lan"),
        (_wire(services__0__enable_tag_override=0), "enable_tag_override"),
        (_wire(services__0__proxy={"x": float("nan")}), r"proxy.x: numbers must be finite"),
        (_wire(services__0__proxy={"x": {1, 2}}), r"proxy.x: not a JSON value"),
        (_wire(services__1__id="web-1"), "duplicate service ids"),
        (_wire(checks__0__status="ok"), r"checks\[0\].status"),
        (_wire(checks__0__service_tags="prod"), r"checks\[0\].service_tags"),
    ],
)
def test_wire_rejects_malformed_records_naming_the_field(body: Any, error: str) -> None:
    with pytest.raises(RecordError, match=error):
        record_from_wire(body)


def test_wire_keeps_unknown_keys_for_rolling_upgrades() -> None:
    """Not read, but kept and written back (tests/test_wire_unknown_fields.py has why)."""
    body = _wire(added_later={"x": 1})
    record = record_from_wire(body)
    assert known_only(record) == NODE and record.unknown_fields == {"added_later": {"x": 1}}
    assert record_to_wire(record) == body


def test_wire_refuses_deep_nesting() -> None:
    deep: Any = {}
    for _ in range(100):
        deep = {"d": deep}
    with pytest.raises(RecordError, match="nested deeper"):
        record_from_wire(_wire(services__0__connect=deep))


def _decodes_or_refuses(data: object) -> None:
    """The documented contract: a NodeRecord, or RecordError; any other exception fails."""
    with contextlib.suppress(RecordError):
        assert isinstance(record_from_wire(data), NodeRecord)


@settings(max_examples=300)
@given(st.dictionaries(short_text, json_values, max_size=6) | json_values)
def test_wire_fuzz_arbitrary_json_gives_a_record_or_record_error(data: Any) -> None:
    _decodes_or_refuses(data)


@settings(max_examples=300)
@given(records(), st.data())
def test_wire_fuzz_one_field_replaced(record: NodeRecord, data: st.DataObject) -> None:
    body = record_to_wire(record)
    key = data.draw(st.sampled_from(sorted(body)))
    body[key] = data.draw(json_values)
    _decodes_or_refuses(body)
