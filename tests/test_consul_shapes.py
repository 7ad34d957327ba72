"""The API surface Consul clients read, compared key by key with Consul's documented answers.

One real agent (serf child, real sockets), read through py-consul where it
has the call and aiohttp otherwise. Key sets are Consul's; gossamer's own
fields live under `Gossamer` in /v1/agent/self, where clients do not
compare strictly.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import consul
import pytest

from gossamer.agent.http.metrics_figures import route_label
from gossamer.catalog.model import NodeRecord, Service
from gossamer.catalog.tagged import node_tagged, service_tagged
from gossamer.catalog.wire import record_body_to_wire, record_from_wire, record_to_wire
from tests.harness.cluster import AgentProc, Cluster

SELF_SECTIONS = {"Config", "DebugConfig", "Coord", "Member", "Stats", "Meta", "xDS", "Gossamer"}
CONFIG_KEYS = {
    "Datacenter", "PrimaryDatacenter", "NodeName", "NodeID", "Revision", "Server", "Version",
    "BuildDate",
}  # fmt: skip
STATS = {
    "agent": {"check_monitors", "check_ttls", "checks", "services"},
    "runtime": {"arch", "cpu_count", "goroutines", "max_procs", "os", "version"},
    "serf_lan": {
        "coordinate_resets", "encrypted", "event_queue", "event_time", "failed", "health_score",
        "intent_queue", "left", "member_time", "members", "query_queue", "query_time",
    },
    "build": {"prerelease", "revision", "version", "version_metadata"},
}  # fmt: skip
AGENT_SERVICE_KEYS = {
    "ID", "Service", "Tags", "Meta", "Port", "Address", "TaggedAddresses", "Weights",
    "EnableTagOverride", "Datacenter",
}  # fmt: skip
NODE_TAGS = {"lan", "lan_ipv4", "wan", "wan_ipv4"}


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProc]:
    c = Cluster(Path(tmp_path_factory.mktemp("shapes")))
    try:
        (agent,) = c.start(1)
        agent.put("/v1/agent/service/register", {"Name": "web", "Port": 80, "Address": "10.1.2.3"})
        agent.put("/v1/agent/check/register", {"Name": "beat", "TTL": "30s"})
        yield agent
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def client(agent: AgentProc) -> consul.Consul:
    return consul.Consul(host=agent.ip, port=agent.http_port)


def test_agent_self_has_consuls_sections_with_consuls_keys(solo: AgentProc) -> None:
    me = client(solo).agent.self()
    assert set(me) == SELF_SECTIONS
    assert set(me["Config"]) >= CONFIG_KEYS
    for section, keys in STATS.items():
        assert set(me["Stats"][section]) == keys, section
        assert all(isinstance(v, str) for v in me["Stats"][section].values()), section
    assert me["Stats"]["agent"] == {
        "check_monitors": "0", "check_ttls": "1", "checks": "1", "services": "1",
    }  # fmt: skip
    assert me["Stats"]["serf_lan"]["members"] == "1"  # serf's own figure
    assert me["Stats"]["build"]["version"] == me["Config"]["Version"]
    assert me["xDS"] == {"SupportedProxies": {}, "Port": -1, "Ports": {"TLS": -1, "Plaintext": -1}}
    coord = me["Coord"]
    assert coord is None or (set(coord) == {"Vec", "Error", "Adjustment", "Height"})
    assert me["Member"]["Name"] == me["Config"]["NodeName"]
    tagged = me["DebugConfig"]["TaggedAddresses"]
    assert set(tagged) == NODE_TAGS and set(tagged.values()) == {solo.ip}


def test_agent_services_carry_every_field_consul_always_returns(solo: AgentProc) -> None:
    services = client(solo).agent.services()
    web = services["web"]
    assert set(web) == AGENT_SERVICE_KEYS
    assert web["Weights"] == {"Passing": 1, "Warning": 1}
    assert (web["Tags"], web["Meta"], web["EnableTagOverride"]) == ([], {}, False)
    here = {"Address": "10.1.2.3", "Port": 80}
    assert web["TaggedAddresses"] == {"lan_ipv4": here, "wan_ipv4": here}
    one = solo.get("/v1/agent/service/web")
    assert set(one) == AGENT_SERVICE_KEYS | {"ContentHash"}
    assert {k: v for k, v in one.items() if k != "ContentHash"} == web


def test_nodes_carry_consuls_four_tagged_addresses_everywhere(solo: AgentProc) -> None:
    c = client(solo)
    _, nodes = c.catalog.nodes()
    _, rows = c.catalog.service("web")
    _, health = c.health.service("web")
    _, node = c.catalog.node(nodes[0]["Node"])
    for where, tagged in [
        ("catalog nodes", nodes[0]["TaggedAddresses"]),
        ("catalog service", rows[0]["TaggedAddresses"]),
        ("health service", health[0]["Node"]["TaggedAddresses"]),
        ("catalog node", node["Node"]["TaggedAddresses"]),
    ]:
        assert tagged == dict.fromkeys(sorted(NODE_TAGS), solo.ip), where


def test_tagged_defaults_follow_the_address_family_and_never_override() -> None:
    assert node_tagged("fd00::1", {}, external=False) == {
        "lan": "fd00::1", "lan_ipv6": "fd00::1", "wan": "fd00::1", "wan_ipv6": "fd00::1",
    }  # fmt: skip
    assert node_tagged("10.0.0.1", {"wan": "203.0.113.9"}, external=False) == {
        "lan": "10.0.0.1", "lan_ipv4": "10.0.0.1", "wan": "203.0.113.9", "wan_ipv4": "203.0.113.9",
    }  # fmt: skip
    assert node_tagged("10.0.0.1", {"lan": "x"}, external=True) == {"lan": "x"}
    assert node_tagged("db.example", {}, external=False) == {
        "lan": "db.example",
        "wan": "db.example",
    }
    named = Service("s", "s", address="db.example", port=5)
    assert service_tagged(named, {}) == {}
    mine = Service("s", "s", address="10.0.0.1", port=5)
    assert service_tagged(mine, {"wan_ipv4": ("198.51.100.1", 6)}) == {
        "lan_ipv4": ("10.0.0.1", 5), "wan_ipv4": ("198.51.100.1", 6),
    }  # fmt: skip


METRIC_KEYS = {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
SUMMARY_KEYS = {"Name", "Count", "Rate", "Sum", "Min", "Max", "Mean", "Stddev", "Labels"}


def test_agent_metrics_json_has_consuls_shape_and_the_agents_figures(solo: AgentProc) -> None:
    c = client(solo)
    c.agent.self()  # at least one timed request of a known route
    metrics = c.agent.metrics()
    assert set(metrics) == METRIC_KEYS
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC", metrics["Timestamp"])
    gauges = {(g["Name"], tuple(g["Labels"].items())): g["Value"] for g in metrics["Gauges"]}
    assert gauges[("consul.state.nodes", ())] == 1
    _, services = c.catalog.services()  # web, and the "consul" service every agent shows
    assert gauges[("consul.state.service_instances", ())] == len(services) == 2
    assert gauges[("gossamer.agent.checks", ())] == 1
    assert gauges[("gossamer.serf.members", (("status", "members"),))] == 1
    assert gauges[("consul.runtime.sys_bytes", ())] > 1_000_000
    assert all(set(s) == SUMMARY_KEYS for s in metrics["Samples"] + metrics["Counters"])
    selves = [
        s for s in metrics["Samples"] if s["Labels"] == {"method": "GET", "path": "v1_agent_self"}
    ]
    assert selves and selves[0]["Name"] == "consul.api.http" and selves[0]["Count"] >= 1
    assert 0 < selves[0]["Min"] <= selves[0]["Mean"] <= selves[0]["Max"]
    ok = [s for s in metrics["Counters"] if s["Labels"] == {"code": "200"}]
    assert ok and ok[0]["Count"] >= 1


def test_route_labels_leave_parameters_out() -> None:
    assert route_label("/v1/agent/self") == "v1_agent_self"
    assert route_label("/v1/agent/service/{service_id}") == "v1_agent_service_"
    assert route_label("/v1/health/service/{service}") == "v1_health_service_"


def test_acl_endpoints_answer_as_a_consul_with_acls_disabled(solo: AgentProc) -> None:
    c = client(solo)
    with pytest.raises(consul.ACLDisabled, match="ACL support disabled"):
        c.acl.token.list()
    with pytest.raises(consul.ACLDisabled, match="ACL support disabled"):
        c.acl.policy.list()
    with pytest.raises(consul.ACLDisabled, match="ACL support disabled"):
        c.agent.token.set("default", "t")
    request = urllib.request.Request(
        solo.http + "/v1/agent/token/default", data=b'{"Token": "t"}', method="PUT"
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request)
    assert (raised.value.code, raised.value.read()) == (401, b"ACL support disabled")


def test_ingress_and_peer_reads_are_empty_with_the_index_headers(solo: AgentProc) -> None:
    c = client(solo)
    index, rows = c.health.ingress("web")
    assert rows == [] and int(index) > 0
    index, rows = c.catalog.service("web", peer="elsewhere")
    assert rows == [] and int(index) > 0
    assert c.catalog.service("web")[1]  # without peer, the instance is there
    for path in ("/v1/health/service/web?peer=p", "/v1/catalog/services?peer=p"):
        with urllib.request.urlopen(solo.http + path) as r:
            body = json.loads(r.read())
            headers = {k: r.headers[k] for k in LIST_HEADERS}
        assert not body, path
        assert headers == {
            "X-Consul-Index": headers["X-Consul-Index"],
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
            "X-Consul-Effective-Consistency": "stale",
        }
        assert int(headers["X-Consul-Index"]) > 0


LIST_HEADERS = (
    "X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact",
    "X-Consul-Effective-Consistency",
)  # fmt: skip


def test_locality_is_stored_and_returned_everywhere_a_service_appears(solo: AgentProc) -> None:
    where = {"Region": "eu-west-1", "Zone": "eu-west-1a"}
    solo.put(
        "/v1/agent/service/register",
        {"Name": "geo", "Port": 81, "Locality": where, "Connect": {"SidecarService": {}}},
    )
    c = client(solo)
    assert c.agent.services()["geo"]["Locality"] == where
    assert c.agent.services()["geo-sidecar-proxy"]["Locality"] == where  # the parent's
    assert solo.get("/v1/agent/service/geo")["Locality"] == where
    _, rows = c.catalog.service("geo")
    assert rows[0]["ServiceLocality"] == where
    _, health = c.health.service("geo")
    assert health[0]["Service"]["Locality"] == where
    assert "Locality" not in c.agent.services()["web"]  # omitted when unset, as Consul


def test_locality_survives_the_wire_and_records_without_it_encode_as_before() -> None:
    plain = Service("s", "s", port=1)
    placed = Service("s", "s", port=1, locality={"Region": "r1"})
    record = NodeRecord("n", "", "dc1", "10.0.0.1", 1, "n", services=(plain,))
    assert "locality" not in record_body_to_wire(record)["services"][0]
    for service in (plain, placed):
        again = record_from_wire(record_to_wire(replace(record, services=(service,))))
        assert again.services == (service,)


def test_a_bad_locality_is_a_400_naming_the_field(solo: AgentProc) -> None:
    body = json.dumps({"Name": "bad", "Locality": {"Zone": 5}}).encode()
    request = urllib.request.Request(
        solo.http + "/v1/agent/service/register", data=body, method="PUT"
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request)
    assert raised.value.code == 400
    assert raised.value.read().decode() == "Locality.Zone: must be a string, got 5\n"
