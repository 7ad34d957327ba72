"""Registration bodies -> catalog values: good bodies (any key case), Consul's doc samples,
sidecar expansion, bad bodies naming the field, and fuzzing (never another exception)."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import consul
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from gossamer.agent.http.errors import answer
from gossamer.catalog.consul_json import service_to_agent_json
from gossamer.catalog.durations import format_seconds as format_duration
from gossamer.catalog.model import Check, NodeRecord, Service
from gossamer.catalog.registration import (
    CheckDefinition,
    HttpRequest,
    RegistrationError,
    ServiceRegistration,
    parse_check_registration,
    parse_service_registration,
)
from gossamer.catalog.registration_check import CHECK_FIELDS
from gossamer.catalog.registration_fields import snake
from gossamer.catalog.registration_service import PROXY_FIELDS, SERVICE_FIELDS, UPSTREAM_FIELDS
from gossamer.catalog.wire import record_from_wire, record_to_wire


def reg(body: object, **kw: Any) -> ServiceRegistration:
    kw.setdefault("node_address", "10.0.0.1")
    kw.setdefault("used_sidecar_ports", set())
    return parse_service_registration(body, **kw)


def check(body: object, **kw: Any) -> CheckDefinition:
    kw.setdefault("service_ids", {"web"})
    kw.setdefault("allow_script", False)
    return parse_check_registration(body, **kw)


def error_of(fn: Any, body: object, **kw: Any) -> RegistrationError:
    with pytest.raises(RegistrationError) as info:
        fn(body, **kw)
    return info.value


# --- good bodies, any spelling ---------------------------------------------------------

WEB_CAMEL = {
    "ID": "web-1",
    "Name": "web",
    "Tags": ["v1", "primary"],
    "Address": "10.0.0.5",
    "Port": 8080,
    "Meta": {"version": "1.2", "team_a": "x"},
    "TaggedAddresses": {"wan": {"Address": "198.51.100.1", "Port": 80}},
    "Weights": {"Passing": 10, "Warning": 2},
    "EnableTagOverride": True,
    "Check": {
        "HTTP": "http://127.0.0.1:8080/health",
        "Method": "HEAD",
        "Header": {"X-Probe": ["1", "2"]},
        "TLSSkipVerify": True,
        "Interval": "15s",
        "Timeout": "2s",
        "DeregisterCriticalServiceAfter": "90m",
    },
    "Checks": [{"CheckID": "web-ttl", "Name": "ttl", "TTL": "30s", "Status": "passing"}],
}
WEB_SNAKE = {
    "id": "web-1",
    "name": "web",
    "tags": ["v1", "primary"],
    "address": "10.0.0.5",
    "port": 8080,
    "meta": {"version": "1.2", "team_a": "x"},
    "tagged_addresses": {"wan": {"address": "198.51.100.1", "port": 80}},
    "weights": {"passing": 10, "warning": 2},
    "enable_tag_override": True,
    "check": {
        "http": "http://127.0.0.1:8080/health",
        "method": "HEAD",
        "header": {"X-Probe": ["1", "2"]},
        "tls_skip_verify": True,
        "interval": "15s",
        "timeout": "2s",
        "deregister_critical_service_after": "90m",
    },
    "checks": [{"check_id": "web-ttl", "name": "ttl", "ttl": "30s", "status": "passing"}],
}
WEB_MIXED = {
    "iD": "web-1",
    "NAME": "web",
    "Tags": ["v1", "primary"],
    "ADDRESS": "10.0.0.5",
    "port": 8080,
    "Meta": {"version": "1.2", "team_a": "x"},  # meta keys are data: kept as given
    "TAGGED_ADDRESSES": {"wan": {"ADDRESS": "198.51.100.1", "pOrT": 80}},
    "Weights": {"PASSING": 10, "warning": 2},
    "enabletagoverride": True,  # py-consul's spelling
    "CHECK": {
        "Http": "http://127.0.0.1:8080/health",
        "METHOD": "HEAD",
        "header": {"X-Probe": ["1", "2"]},  # header names are data too
        "TLS_SKIP_VERIFY": True,
        "interval": "15s",
        "Timeout": "2s",
        "DeregisterCriticalServiceAfter": "90m",
    },
    "Checks": [{"CHECKID": "web-ttl", "Name": "ttl", "ttl": "30s", "STATUS": "passing"}],
}

WEB_SERVICE = Service(
    id="web-1",
    name="web",
    tags=("v1", "primary"),
    address="10.0.0.5",
    port=8080,
    meta={"version": "1.2", "team_a": "x"},
    tagged_addresses={"wan": ("198.51.100.1", 80)},
    weights=(10, 2),
    enable_tag_override=True,
)
WEB_CHECKS = (
    Check(
        check_id="service:web-1:1",
        name="Service 'web' check",
        service_id="web-1",
        service_name="web",
        service_tags=("v1", "primary"),
        type="http",
        definition={
            "HTTP": "http://127.0.0.1:8080/health",
            "Method": "HEAD",
            "Header": {"X-Probe": ["1", "2"]},
            "TLSSkipVerify": True,
            "Interval": "15s",
            "Timeout": "2s",
            "DeregisterCriticalServiceAfter": "1h30m0s",
        },
        interval="15s",
        timeout="2s",
    ),
    Check(
        check_id="web-ttl",
        name="ttl",
        status="passing",
        service_id="web-1",
        service_name="web",
        service_tags=("v1", "primary"),
        type="ttl",
        definition={"TTL": "30s"},
    ),
)


@pytest.mark.parametrize("body", [WEB_CAMEL, WEB_SNAKE, WEB_MIXED], ids=["camel", "snake", "mixed"])
def test_any_key_spelling_gives_the_same_service(body: dict[str, Any]) -> None:
    r = reg(body)
    assert r.service == WEB_SERVICE
    assert r.sidecar is None and r.sidecar_checks == ()
    assert r.initial_checks() == WEB_CHECKS
    http = r.checks[0]
    assert (http.interval_s, http.timeout_s, http.deregister_critical_service_after_s) == (
        15.0,
        2.0,
        5400.0,
    )


def test_minimal_body_gets_consuls_defaults() -> None:
    r = reg({"Name": "db"})
    assert r.service == Service(id="db", name="db")
    assert r.checks == ()
    assert service_to_agent_json(r.service, "dc1") == {
        "ID": "db",
        "Service": "db",
        "Tags": [],
        "Meta": {},
        "Port": 0,
        "Address": "",
        "TaggedAddresses": {},
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
        "Datacenter": "dc1",
    }


def test_nulls_are_absent_like_in_go() -> None:
    r = reg({"Name": "db", "ID": None, "Tags": None, "Port": None, "Check": None, "Meta": None})
    assert r.service == Service(id="db", name="db")


def test_empty_check_object_is_skipped_as_consul_does() -> None:
    assert reg({"Name": "db", "Check": {}}).checks == ()
    assert reg({"Name": "db", "Check": {"Name": "", "Interval": 0}}).checks == ()


def test_one_check_is_service_id_and_several_are_numbered() -> None:
    one = reg({"Name": "db", "Check": {"TTL": "10s"}})
    assert [c.check_id for c in one.checks] == ["service:db"]
    several = reg(
        {
            "Name": "db",
            "Check": {"TTL": "10s"},
            "Checks": [{"TCP": "localhost:5432", "Interval": "5s"}, {"TTL": "1m", "ID": "mine"}],
        }
    )
    assert [c.check_id for c in several.checks] == ["service:db:1", "service:db:2", "mine"]
    assert [c.kind for c in several.checks] == ["ttl", "tcp", "ttl"]


def test_underscores_are_not_stripped_in_general() -> None:
    # Consul (Go's encoding/json plus declared snake_case aliases) ignores case only.
    assert reg({"Name": "x", "ENABLE_TAG_OVERRIDE": True}).service.enable_tag_override
    err = error_of(reg, {"Name": "x", "enable_tagoverride": True})
    assert err.field == "enable_tagoverride" and "unknown field" in err.message
    assert reg({"Name": "x", "Check": {"ScriptArgs": ["a"], "Interval": "1s"}}, allow_script=True)
    assert reg({"Name": "x", "Check": {"script_args": ["a"], "Interval": "1s"}}, allow_script=True)


def test_tagged_address_lowercase_keys_as_in_the_docs_sample() -> None:
    r = reg({"Name": "redis", "TaggedAddresses": {"lan": {"address": "127.0.0.1", "port": 8000}}})
    assert r.service.tagged_addresses == {"lan": ("127.0.0.1", 8000)}


def test_connect_native_and_proxy_kind() -> None:
    assert reg({"Name": "n", "Connect": {"Native": True}}).service.connect == {"Native": True}
    proxy = reg(
        {
            "Name": "web-proxy",
            "Kind": "connect-proxy",
            "Port": 20000,
            "Proxy": {
                "destination_service_name": "web",
                "local_service_port": 8080,
                "config": {"protocol": "tcp", "Nested_Key": {"a": [1, 2.5, None]}},
                "upstreams": [
                    {"destination_name": "db", "local_bind_port": 9191, "Datacenter": "dc2"}
                ],
            },
        }
    ).service
    assert proxy.kind == "connect-proxy"
    assert proxy.proxy == {
        "DestinationServiceName": "web",
        "LocalServicePort": 8080,
        "Config": {"protocol": "tcp", "Nested_Key": {"a": [1, 2.5, None]}},  # opaque: as given
        "Upstreams": [
            {
                "DestinationType": "service",
                "DestinationName": "db",
                "Datacenter": "dc2",
                "LocalBindPort": 9191,
            }
        ],
    }


def test_gateway_kinds() -> None:
    gw = reg(
        {
            "Name": "mgw",
            "Kind": "mesh-gateway",
            "Port": 8443,
            "Meta": {"consul-wan-federation": "1"},
        }
    )
    assert gw.service.kind == "mesh-gateway"
    assert reg({"Name": "igw", "Kind": "ingress-gateway"}).service.port == 0


# --- Consul's documented samples ------------------------------------------------------

# website/content/api-docs/agent/service.mdx, "Register Service", Sample Payload
SERVICE_SAMPLE = {
    "ID": "redis1",
    "Name": "redis",
    "Tags": ["primary", "v1"],
    "Address": "127.0.0.1",
    "Port": 8000,
    "Meta": {"redis_version": "4.0"},
    "EnableTagOverride": False,
    "Check": {
        "DeregisterCriticalServiceAfter": "90m",
        "Args": ["/usr/local/bin/check_redis.py"],
        "Interval": "10s",
        "Timeout": "5s",
    },
    "Weights": {"Passing": 10, "Warning": 1},
}

# website/content/api-docs/agent/check.mdx, "Register Check", Sample Payload
CHECK_SAMPLE = {
    "ID": "mem",
    "Name": "Memory utilization",
    "Namespace": "default",
    "Notes": "Ensure we don't oversubscribe memory",
    "DeregisterCriticalServiceAfter": "90m",
    "Args": ["/usr/local/bin/check_mem.py"],
    "DockerContainerID": "f972c95ebf0e",
    "Shell": "/bin/bash",
    "HTTP": "https://example.com",
    "Method": "POST",
    "Header": {"Content-Type": ["application/json"]},
    "Body": '{"check":"mem"}',
    "DisableRedirects": True,
    "TCP": "example.com:22",
    "Interval": "10s",
    "Timeout": "5s",
    "TLSSkipVerify": True,
}


def test_service_doc_sample() -> None:
    r = reg(SERVICE_SAMPLE, allow_script=True)
    assert r.service == Service(
        id="redis1",
        name="redis",
        tags=("primary", "v1"),
        address="127.0.0.1",
        port=8000,
        meta={"redis_version": "4.0"},
        weights=(10, 1),
    )
    assert r.checks == (
        CheckDefinition(
            check_id="service:redis1",
            name="Service 'redis' check",
            kind="script",
            service_id="redis1",
            args=("/usr/local/bin/check_redis.py",),
            interval_s=10.0,
            timeout_s=5.0,
            deregister_critical_service_after_s=5400.0,
        ),
    )
    # Scripts are off by default, as in Consul, and the error names both keys.
    err = error_of(reg, SERVICE_SAMPLE)
    assert err.field == "Check.Args"
    assert "enable_script_checks" in err.message and "enable_local_script_checks" in err.message


def test_check_doc_sample_runs_the_kind_consul_would() -> None:
    # The sample sets Args, Docker, HTTP and TCP at once; Consul's agent runs HTTP.
    c = check(CHECK_SAMPLE, allow_script=True)
    assert c == CheckDefinition(
        check_id="mem",
        name="Memory utilization",
        kind="http",
        notes="Ensure we don't oversubscribe memory",
        http=HttpRequest(
            url="https://example.com",
            method="POST",
            header={"Content-Type": ("application/json",)},
            body='{"check":"mem"}',
            disable_redirects=True,
            tls_skip_verify=True,
        ),
        interval_s=10.0,
        timeout_s=5.0,
        deregister_critical_service_after_s=5400.0,
    )
    assert c.to_check() == Check(
        check_id="mem",
        name="Memory utilization",
        notes="Ensure we don't oversubscribe memory",
        type="http",
        definition={
            "HTTP": "https://example.com",
            "Method": "POST",
            "Header": {"Content-Type": ["application/json"]},
            "Body": '{"check":"mem"}',
            "TLSSkipVerify": True,
            "DisableRedirects": True,
            "Interval": "10s",
            "Timeout": "5s",
            "DeregisterCriticalServiceAfter": "1h30m0s",
        },
        interval="10s",
        timeout="5s",
    )
    assert error_of(check, CHECK_SAMPLE).field == "Args"


def test_py_consul_payloads_parse() -> None:
    """The check dicts and register payload shapes a real client (py-consul) sends."""
    assert (
        check({"name": "h", **consul.Check.http("http://x:1/", "10s", timeout="1s")}).kind == "http"
    )
    assert check({"name": "t", **consul.Check.tcp("localhost", 22, "5s")}).tcp == "localhost:22"
    assert check({"name": "l", **consul.Check.ttl("10s")}).ttl_s == 10.0
    scripted = check({"name": "s", **consul.Check.script(["true"], "10s")}, allow_script=True)
    assert scripted.args == ("true",)
    body = {"name": "c", "id": "cid", "notes": "n", "serviceid": "web", **consul.Check.ttl("5s")}
    assert check(body).service_id == "web"
    service = {
        "name": "svc",
        "enabletagoverride": True,
        "id": "svc1",
        "port": 80,
        "checks": [consul.Check.http("http://localhost/", "10s")],
    }
    assert reg(service).service.enable_tag_override


# --- sidecar expansion ----------------------------------------------------------------


def test_sidecar_expansion_matches_consul_docs() -> None:
    # docs/connect/proxies/deploy-sidecar-services.mdx: the minimal example and what it expands to
    r = reg(
        {"service": "ignored"}
        if False
        else {"name": "web", "port": 8080, "connect": {"sidecar_service": {}}}
    )
    assert r.service == Service(id="web", name="web", port=8080)
    assert r.sidecar == Service(
        id="web-sidecar-proxy",
        name="web-sidecar-proxy",
        port=21000,
        kind="connect-proxy",
        proxy={
            "DestinationServiceName": "web",
            "DestinationServiceID": "web",
            "LocalServiceAddress": "127.0.0.1",
            "LocalServicePort": 8080,
        },
    )
    assert r.sidecar_checks == (
        CheckDefinition(
            check_id="service:web-sidecar-proxy:1",
            name="Connect Sidecar Listening",
            kind="tcp",
            service_id="web-sidecar-proxy",
            tcp="127.0.0.1:21000",
            interval_s=10.0,
            timeout_s=10.0,
        ),
        CheckDefinition(
            check_id="service:web-sidecar-proxy:2",
            name="Connect Sidecar Aliasing web",
            kind="alias",
            service_id="web-sidecar-proxy",
            alias_service="web",
        ),
    )
    assert [c.service_name for c in r.initial_checks()] == ["web-sidecar-proxy"] * 2


def test_sidecar_agent_json_matches_the_documented_get_service_shape() -> None:
    # api-docs/agent/service.mdx "Get Service Configuration" sample (minus tproxy/config)
    r = reg(
        {
            "Name": "web",
            "Port": 8080,
            "Connect": {
                "SidecarService": {
                    "Port": 18080,
                    "Proxy": {
                        "Config": {"foo": "bar"},
                        "Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191}],
                    },
                }
            },
        }
    )
    assert r.sidecar is not None
    body = service_to_agent_json(r.sidecar, "dc1")
    assert body["Kind"] == "connect-proxy" and body["ID"] == "web-sidecar-proxy"
    assert body["Port"] == 18080
    assert body["Proxy"] == {
        "DestinationServiceName": "web",
        "DestinationServiceID": "web",
        "LocalServiceAddress": "127.0.0.1",
        "LocalServicePort": 8080,
        "Config": {"foo": "bar"},
        "Upstreams": [
            {"DestinationType": "service", "DestinationName": "db", "LocalBindPort": 9191}
        ],
    }
    assert r.sidecar_checks[0].tcp == "127.0.0.1:18080"


def test_sidecar_inherits_tags_meta_address_only_when_it_has_none() -> None:
    parent = {"Name": "web", "Port": 80, "Address": "10.1.1.1", "Tags": ["a"], "Meta": {"k": "v"}}
    inherited = reg({**parent, "Connect": {"SidecarService": {}}}).sidecar
    assert inherited is not None
    assert (inherited.tags, dict(inherited.meta), inherited.address) == (
        ("a",),
        {"k": "v"},
        "10.1.1.1",
    )
    own = reg(
        {**parent, "Connect": {"SidecarService": {"Tags": ["b"], "Meta": {"m": "1"}, "Name": "px"}}}
    )
    assert own.sidecar is not None
    assert (own.sidecar.tags, dict(own.sidecar.meta), own.sidecar.name) == (
        ("b",),
        {"m": "1"},
        "px",
    )
    assert own.sidecar_checks[0].tcp == "10.1.1.1:21000"  # the sidecar's address first


def test_sidecar_ports_first_free_previous_kept_and_exhaustion() -> None:
    body = {"Name": "web", "Port": 21000, "Connect": {"SidecarService": {}}}
    r = reg(body, used_sidecar_ports={21001, 21003})
    assert r.sidecar is not None and r.sidecar.port == 21002  # parent's own port counts too
    kept = reg(body, used_sidecar_ports={21001}, previous_sidecar_port=21100).sidecar
    assert kept is not None and kept.port == 21100
    err = error_of(reg, body, used_sidecar_ports={21001}, sidecar_port_range=(21000, 21001))
    assert err.field == "Connect.SidecarService.Port" and "[21000, 21001]" in err.message


def test_sidecar_own_checks_replace_the_defaults() -> None:
    r = reg(
        {
            "Name": "web",
            "Connect": {"SidecarService": {"Port": 21500, "Check": {"TTL": "30s"}}},
        }
    )
    assert [(c.check_id, c.kind, c.name) for c in r.sidecar_checks] == [
        ("service:web-sidecar-proxy", "ttl", "Service 'web-sidecar-proxy' check")
    ]


def test_registration_fits_the_replication_wire() -> None:
    r = reg(WEB_CAMEL | {"Connect": {"SidecarService": {}}})
    record = NodeRecord(
        node="n1",
        node_id="id",
        datacenter="dc1",
        address="10.0.0.1",
        version=1,
        origin="n1",
        services=r.services(),
        checks=r.initial_checks(),
    )
    assert record_from_wire(json.loads(json.dumps(record_to_wire(record)))) == record


# --- checks ---------------------------------------------------------------------------


def test_standalone_check_defaults() -> None:
    c = check({"Name": "disk", "TTL": "1m"})
    assert (c.check_id, c.service_id, c.status, c.kind, c.ttl_s) == (
        "disk",
        "",
        "critical",
        "ttl",
        60,
    )
    assert c.to_check() == Check(
        check_id="disk", name="disk", type="ttl", definition={"TTL": "1m0s"}
    )


def test_check_for_a_service() -> None:
    c = check({"Name": "web alive", "ServiceID": "web", "TCP": "[::1]:80", "Interval": "1m30s"})
    web = Service(id="web", name="web", tags=("t",))
    assert c.to_check(web).service_tags == ("t",)
    assert c.to_check(web).interval == "1m30s"
    with pytest.raises(ValueError):
        c.to_check()


def test_alias_and_script_checks() -> None:
    a = check({"Name": "a", "AliasService": "web", "AliasNode": "n2"})
    assert a.kind == "alias" and a.definition() == {"AliasNode": "n2", "AliasService": "web"}
    s = check({"Name": "s", "Args": ["/bin/true"], "Interval": "10s"}, allow_script=True)
    assert (s.kind, s.timeout_s) == ("script", 30.0)  # Consul's script default
    assert s.definition() == {"ScriptArgs": ["/bin/true"], "Interval": "10s", "Timeout": "30s"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"Interval": "100ms"}, 1.0),  # Consul raises intervals below 1s to 1s
        ({"Interval": 5_000_000_000}, 5.0),  # numbers are nanoseconds, as in Go
        ({"Interval": "1.5s"}, 1.5),
    ],
)
def test_interval_forms_and_minimum(given: dict[str, Any], expected: float) -> None:
    assert check({"Name": "t", "TCP": "h:1", **given}).interval_s == expected


def test_other_check_options() -> None:
    c = check(
        {
            "Name": "h",
            "HTTP": "http://h/",
            "Interval": "10s",
            "DeregisterCriticalServiceAfter": "10s",  # Consul's minimum is 1m
            "SuccessBeforePassing": 2,
            "FailuresBeforeCritical": 3,
            "OutputMaxSize": 100,
            "Status": "warning",
            "TLSServerName": "example.com",
        }
    )
    assert c.deregister_critical_service_after_s == 60.0
    assert (c.success_before_passing, c.failures_before_warning, c.failures_before_critical) == (
        2,
        3,
        3,
    )
    assert c.http is not None
    assert (c.output_max_size, c.status, c.http.tls_server_name, c.http.method) == (
        100,
        "warning",
        "example.com",
        "GET",
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (10, "10s"),
        (90, "1m30s"),
        (3600, "1h0m0s"),
        (5400, "1h30m0s"),
        (0.5, "500ms"),
        (1.5, "1.5s"),
        (0.0000015, "1.5µs"),
        (1e-7, "100ns"),
        (86400, "24h0m0s"),
    ],
)
def test_format_duration_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- bad bodies -----------------------------------------------------------------------

S = {"Name": "web"}
BAD_SERVICES: list[tuple[object, str, str]] = [
    ([], "body", "JSON object"),
    ({}, "Name", "missing required field"),
    ({"Name": 5}, "Name", "must be a string"),
    (S | {"Port": "abc"}, "Port", 'integer 0-65535, got "abc"'),
    (S | {"Port": 70000}, "Port", "0-65535"),
    (S | {"Port": True}, "Port", "integer"),
    (S | {"Port": 80.0}, "Port", "integer"),
    (S | {"ID": "a/b"}, "ID", "'/'"),
    (S | {"Tags": "a"}, "Tags", "must be a list of strings"),
    (S | {"Tags": ["a", 1]}, "Tags", "must be a list of strings"),
    (S | {"Meta": {f"k{i}": "v" for i in range(65)}}, "Meta", "at most 64 pairs"),
    (S | {"Meta": {"bad key!": "v"}}, 'Meta["bad key!"]', "^[a-zA-Z0-9_-]+$"),
    (S | {"Meta": {"k" * 129: "v"}}, f'Meta["{"k" * 129}"]', "128 characters"),
    (S | {"Meta": {"k": "v" * 513}}, 'Meta["k"]', "at most 512"),
    (S | {"Meta": {"k": 1}}, 'Meta["k"]', "must be a string"),
    (S | {"Meta": {"consul-x": "v"}}, 'Meta["consul-x"]', "reserved"),
    (S | {"Meta": []}, "Meta", "object"),
    (S | {"Kind": "x"}, "Kind", 'unknown kind "x"'),
    (S | {"Weights": {"Passing": 0}}, "Weights.Passing", "must be ≥ 1"),
    (S | {"Weights": {"Warning": 1}}, "Weights.Passing", "must be ≥ 1"),
    (S | {"Weights": {"Passing": 1, "Warning": -1}}, "Weights.Warning", "integer"),
    (S | {"Weights": {"Passing": 1, "Heavy": 1}}, "Weights.Heavy", "unknown field"),
    (S | {"TaggedAddresses": {"lan": "1.2.3.4"}}, 'TaggedAddresses["lan"]', "{Address, Port}"),
    (
        S | {"TaggedAddresses": {"lan": {"Address": "a", "Port": -1}}},
        'TaggedAddresses["lan"].Port',
        "0-65535",
    ),
    (S | {"Foo": 1}, "Foo", "unknown field"),
    (S | {"Name": "a", "name": "b"}, "Name", "given twice"),
    (S | {"Address": "0.0.0.0"}, "Address", "wildcard"),
    (S | {"EnableTagOverride": "yes"}, "EnableTagOverride", "true or false"),
    (S | {"Namespace": "team"}, "Namespace", "not supported"),
    (S | {"SocketPath": "/s"}, "SocketPath", "not supported"),
    (S | {"Proxy": {"DestinationServiceName": "x"}}, "Proxy", "only valid"),
    (S | {"Kind": "connect-proxy", "Port": 1}, "Proxy.DestinationServiceName", "missing"),
    (
        S | {"Kind": "connect-proxy", "Proxy": {"DestinationServiceName": "w"}},
        "Port",
        "must be set",
    ),
    (S | {"Kind": "mesh-gateway"}, "Port", "must be set"),
    (
        S | {"Kind": "mesh-gateway", "Port": 1, "Connect": {"Native": True}},
        "Connect.Native",
        "not valid",
    ),
    (S | {"Connect": {"Proxy": {}}}, "Connect.Proxy", "removed"),
    (S | {"Connect": {"Bogus": 1}}, "Connect.Bogus", "unknown field"),
    (
        S | {"Connect": {"SidecarService": {"ID": "x"}}},
        "Connect.SidecarService.ID",
        "cannot be set",
    ),
    (
        S | {"Connect": {"SidecarService": {"Kind": "mesh-gateway"}}},
        "Connect.SidecarService.Kind",
        "connect-proxy",
    ),
    (S | {"Connect": {"SidecarService": []}}, "Connect.SidecarService", "JSON object"),
    (
        S | {"Connect": {"SidecarService": {"Connect": {"SidecarService": {}}}}},
        "Connect.SidecarService.Connect.SidecarService",
        "nested",
    ),
    (
        S | {"Connect": {"SidecarService": {"Meta": {"consul-a": "b"}}}},
        'Connect.SidecarService.Meta["consul-a"]',
        "reserved",
    ),
    (
        S | {"Connect": {"SidecarService": {"Proxy": {"Upstreams": [{"LocalBindPort": 1}]}}}},
        "Connect.SidecarService.Proxy.Upstreams[0].DestinationName",
        "missing",
    ),
    (
        S | {"Connect": {"SidecarService": {"Proxy": {"Upstreams": [{"DestinationName": "db"}]}}}},
        "Connect.SidecarService.Proxy.Upstreams[0].LocalBindPort",
        "required",
    ),
    (
        S
        | {
            "Connect": {
                "SidecarService": {
                    "Proxy": {
                        "Upstreams": [
                            {"DestinationName": "db", "LocalBindPort": 1},
                            {"DestinationName": "db", "LocalBindPort": 2},
                        ]
                    }
                }
            }
        },
        "Connect.SidecarService.Proxy.Upstreams[1]",
        "duplicate",
    ),
    (
        S
        | {
            "Connect": {
                "SidecarService": {
                    "Proxy": {
                        "Upstreams": [
                            {"DestinationName": "a", "LocalBindPort": 1},
                            {"DestinationName": "b", "LocalBindPort": 1},
                        ]
                    }
                }
            }
        },
        "Connect.SidecarService.Proxy.Upstreams[1].LocalBindPort",
        "used twice",
    ),
    (
        S
        | {
            "Connect": {
                "SidecarService": {
                    "Proxy": {
                        "Upstreams": [
                            {"DestinationName": "a", "LocalBindPort": 1, "DestinationType": "x"}
                        ]
                    }
                }
            }
        },
        "Connect.SidecarService.Proxy.Upstreams[0].DestinationType",
        "prepared_query",
    ),
    (
        S | {"Connect": {"SidecarService": {"Proxy": {"Config": {"x": float("nan")}}}}},
        "Connect.SidecarService.Proxy.Config.x",
        "finite",
    ),
    (
        S | {"Connect": {"SidecarService": {"Proxy": {"Mode": "magic"}}}},
        "Connect.SidecarService.Proxy.Mode",
        "transparent",
    ),
    (S | {"Check": {"Interval": "10s"}}, "Check", "no check kind"),
    (S | {"Check": {"HTTP": "http://x/"}}, "Check.Interval", "missing required field for HTTP"),
    (S | {"Check": {"HTTP": "ftp://x/", "Interval": "1s"}}, "Check.HTTP", "http:// or https://"),
    (S | {"Check": {"HTTP": "http://x/", "Interval": "abc"}}, "Check.Interval", "duration"),
    (S | {"Check": {"HTTP": "http://x/", "Interval": "-1s"}}, "Check.Interval", "negative"),
    (
        S | {"Check": {"HTTP": "http://x/", "Interval": "1s", "Header": {"a": "b"}}},
        'Check.Header["a"]',
        "list of strings",
    ),
    (
        S | {"Check": {"HTTP": "http://x/", "Interval": "1s", "Method": "GE T"}},
        "Check.Method",
        "HTTP method",
    ),
    (
        S | {"Checks": [{"TTL": "1s"}, {"TCP": "nohost", "Interval": "1s"}]},
        "Checks[1].TCP",
        "host:port",
    ),
    (
        S | {"Checks": [{"TTL": "1s"}, {"TTL": "1s", "Interval": "1s"}]},
        "Checks[1].TTL",
        "cannot both",
    ),
    (
        S | {"Checks": [{"TTL": "1s", "CheckID": "a"}, {"TTL": "1s", "CheckID": "a"}]},
        "Checks[1].CheckID",
        "duplicate",
    ),
    (S | {"Checks": {"TTL": "1s"}}, "Checks", "list of checks"),
    (S | {"Check": {"TTL": "1s", "Status": "ok"}}, "Check.Status", "passing, warning or critical"),
    (S | {"Check": {"GRPC": "h/svc", "Interval": "1s"}}, "Check.GRPC", "(no port)"),
    (
        S | {"Check": {"H2PING": "h:1", "Interval": "1s"}},
        "Check.H2PING",
        "not supported by gossamer",
    ),
    (S | {"Check": {"UDP": "h:1", "Interval": "1s"}}, "Check.UDP", "not supported by gossamer"),
    (
        S | {"Check": {"OSService": "sshd", "Interval": "1s"}},
        "Check.OSService",
        "not supported by gossamer",
    ),
    (S | {"Check": {"Script": "x", "Interval": "1s"}}, "Check.Script", "Args"),
    (S | {"Check": {"TTL": "0s"}}, "Check.TTL", "greater than 0"),
    (S | {"Check": {"TTL": "1s", "AliasService": "x"}}, "Check.AliasService", "TTL"),
    (
        S | {"Check": {"TTL": "1s", "FailuresBeforeWarning": 2}},
        "Check.FailuresBeforeWarning",
        "FailuresBeforeCritical",
    ),
    (S | {"Check": {"TTL": "1s", "OutputMaxSize": -1}}, "Check.OutputMaxSize", "integer"),
    (S | {"Check": {"TTL": "1s", "Bogus": 1}}, "Check.Bogus", "unknown field"),
]


@pytest.mark.parametrize(("body", "field", "text"), BAD_SERVICES)
def test_bad_service_bodies_name_the_field(body: object, field: str, text: str) -> None:
    err = error_of(reg, body)
    assert (err.field, answer(err)) == (field, (400, str(err)))  # the HTTP edge's table
    assert text in err.message
    assert str(err).startswith(f"{field}: ")


def test_script_in_docker_check_is_refused_as_docker_when_scripts_are_on() -> None:
    body = {"Name": "d", "Args": ["x"], "DockerContainerID": "abc", "Interval": "1s"}
    assert error_of(check, body, allow_script=True).field == "DockerContainerID"
    assert error_of(check, body).field == "Args"


BAD_CHECKS: list[tuple[object, str, str]] = [
    ({"TTL": "1s"}, "Name", "missing required field"),
    ({"Name": "x", "TTL": "1s", "ServiceID": 3}, "ServiceID", "must be a string"),
    ({"Name": "x", "TTL": "1s", "ID": "a", "CheckID": "b"}, "CheckID", "differs from ID"),
    ({"Name": "x", "TTL": "1s", "ID": "a/b"}, "ID", "'/'"),
    ({"Name": "x", "TTL": 1.5e300}, "TTL", "out of range"),
    ({"Name": "x", "TTL": "9" * 400 + "s"}, "TTL", "out of range"),
    ({"Name": "x", "TTL": ""}, "TTL", "duration"),
    ({"Name": "x", "TTL": True}, "TTL", "duration"),
    ({"Name": "x", "HTTP": "http://[::1/", "Interval": "1s"}, "HTTP", "URL"),
    ({"Name": "x", "HTTP": "http://h:99999/", "Interval": "1s"}, "HTTP", "URL"),
    ({"Name": "x", "TCP": "h:0", "Interval": "1s"}, "TCP", "host:port"),
]


@pytest.mark.parametrize(("body", "field", "text"), BAD_CHECKS)
def test_bad_check_bodies_name_the_field(body: object, field: str, text: str) -> None:
    err = error_of(check, body)
    assert err.field == field and text in err.message


def test_every_problem_of_a_check_is_reported_at_once() -> None:
    body = {
        "Name": "x",
        "ID": "a/b",
        "Status": "ok",
        "TTL": "soon",
        "Notes": 5,
        "FailuresBeforeCritical": -1,
    }
    err = error_of(check, body)
    assert err.problems == (
        ("ID", "must not contain '/', got \"a/b\""),
        ("Status", 'must be passing, warning or critical, got "ok"'),
        ("TTL", 'must be a duration like "10s", "1m30s" or "500ms", got "soon"'),
        ("FailuresBeforeCritical", "must be an integer 0-2147483647, got -1"),
        ("Notes", "must be a string, got 5"),
    )
    assert (err.field, answer(err)) == ("ID", (400, str(err)))  # the HTTP edge's table
    assert str(err) == "; ".join(f"{field}: {message}" for field, message in err.problems)


def test_rules_between_fields_and_the_kind_fields_are_reported_together() -> None:
    body = {"Name": "x", "TTL": "1s", "Interval": "1s", "FailuresBeforeWarning": 2}
    assert [f for f, _ in error_of(check, body).problems] == ["TTL", "FailuresBeforeWarning"]
    body = {"Name": "x", "HTTP": "ftp://h/", "Interval": "1s", "Method": "GE T", "Body": 1}
    assert [f for f, _ in error_of(check, body).problems] == ["HTTP", "Method", "Body"]
    body = {"Name": "x", "HTTP": "http://h/", "Interval": "1s", "Args": ["x"]}
    assert [f for f, _ in error_of(check, body).problems] == ["Args"]


def test_unknown_service_id_is_a_404() -> None:
    err = error_of(check, {"Name": "x", "TTL": "1s", "ServiceID": "nope"})
    assert (err.field, answer(err)) == ("ServiceID", (404, str(err)))  # the HTTP edge's table
    assert '"nope"' in err.message


# --- fuzzing: a registration or a RegistrationError, never anything else ---------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)


def _finite(value: Any) -> bool:
    """Valid bodies hold plain JSON: no NaN or infinity (the parser refuses those)."""
    return not (isinstance(value, float) and not math.isfinite(value))


json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(-2, 2), inner, max_size=4)
    ),
    max_leaves=20,
)


def keyed(
    names: tuple[str, ...], values: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose keys are real field names in random spellings, so parsing goes deep."""
    spelled = st.sampled_from(names).flatmap(
        lambda n: st.sampled_from(
            [
                n,
                n.lower(),
                n.upper(),
                "".join(f"_{c.lower()}" if c.isupper() else c for c in n).lstrip("_"),
            ]
        )
    )
    return st.dictionaries(spelled, values, max_size=6)


likely_values = (
    json_values
    | st.sampled_from(
        ["10s", "1m", "0s", "web", "http://h:1/x", "h:80", "connect-proxy", "passing"]
    )
    | st.integers(0, 70000)
)
checks_st = keyed(CHECK_FIELDS, likely_values)
upstream_st = keyed(UPSTREAM_FIELDS, likely_values)
proxy_st = keyed(PROXY_FIELDS, likely_values | st.lists(upstream_st, max_size=2))
service_values = likely_values | checks_st | st.lists(checks_st, max_size=2) | proxy_st
sidecar_st = keyed(SERVICE_FIELDS, service_values)
connect_st = st.fixed_dictionaries(
    {}, optional={"SidecarService": sidecar_st, "Native": st.booleans()}
)
services_st = keyed(SERVICE_FIELDS, service_values | connect_st)


def _accepts_or_refuses(body: object) -> None:
    try:
        r = reg(body, allow_script=True)
    except RegistrationError as err:
        assert err.field or err.message
        return
    record = NodeRecord(
        "n", "i", "dc1", "a", 1, "n", services=r.services(), checks=r.initial_checks()
    )
    assert record_from_wire(record_to_wire(record)) == record


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json_is_a_registration_or_an_error(body: Any) -> None:
    _accepts_or_refuses(body)
    with contextlib.suppress(RegistrationError):
        check(body, allow_script=True)


@settings(max_examples=600, deadline=None)
@given(services_st, st.sampled_from(["Name", "name"]), st.text(min_size=1, max_size=6))
def test_structured_service_bodies_never_crash(body: dict[str, Any], key: str, name: str) -> None:
    _accepts_or_refuses({key: name, **body} if "name" not in {k.lower() for k in body} else body)


@settings(max_examples=400, deadline=None)
@given(checks_st)
def test_structured_check_bodies_never_crash(body: dict[str, Any]) -> None:
    try:
        c = check(body, allow_script=True, service_ids={"web", "10s"})
    except RegistrationError:
        return
    assert c.kind in ("http", "tcp", "ttl", "script", "alias")
    c.to_check(Service(id=c.service_id, name="s") if c.service_id else None)


# Valid bodies built from parts, so fuzzing reaches sidecars, proxies and every check kind.
names = st.from_regex(r"[a-z][a-z0-9-]{0,7}", fullmatch=True)
valid_check = st.one_of(
    st.fixed_dictionaries(
        {"TTL": st.sampled_from(["10s", "1m", 30 * 10**9])},
        optional={"Name": names, "Status": st.sampled_from(["passing", "warning", "critical"])},
    ),
    st.fixed_dictionaries(
        {
            "HTTP": st.just("http://127.0.0.1:8080/health"),
            "Interval": st.sampled_from(["1s", "500ms"]),
        },
        optional={
            "Method": st.sampled_from(["GET", "POST"]),
            "Header": st.dictionaries(names, st.lists(st.text(max_size=4), max_size=2), max_size=2),
            "Timeout": st.just("2s"),
            "TLSSkipVerify": st.booleans(),
        },
    ),
    st.fixed_dictionaries(
        {"TCP": st.sampled_from(["localhost:80", "[::1]:5432"]), "Interval": st.just("5s")}
    ),
    st.fixed_dictionaries({"AliasService": names}),
    st.fixed_dictionaries(
        {"Args": st.lists(st.text(max_size=4), min_size=1, max_size=2), "Interval": st.just("1m")}
    ),
)
upstreams = st.lists(
    st.fixed_dictionaries(
        {"DestinationName": names, "LocalBindPort": st.integers(1, 65535)},
        optional={
            "Datacenter": st.just("dc2"),
            "Config": st.dictionaries(names, json_scalars.filter(_finite), max_size=2),
        },
    ),
    max_size=3,
    unique_by=(lambda u: u["DestinationName"], lambda u: u["LocalBindPort"]),
)
meta = st.dictionaries(
    names.filter(lambda k: not k.startswith("consul-")), st.text(max_size=6), max_size=3
)
sidecar_valid = st.fixed_dictionaries(
    {},
    optional={
        "Port": st.integers(1, 65535),
        "Tags": st.lists(names, max_size=2),
        "Meta": meta,
        "Proxy": st.fixed_dictionaries(
            {}, optional={"Upstreams": upstreams, "Mode": st.just("direct")}
        ),
        "Checks": st.lists(valid_check, max_size=2),
    },
)
valid_service = st.fixed_dictionaries(
    {"Name": names},
    optional={
        "ID": names,
        "Port": st.integers(0, 65535),
        "Address": st.sampled_from(["", "10.0.0.9", "web.internal"]),
        "Tags": st.lists(names, max_size=3),
        "Meta": meta,
        "Weights": st.fixed_dictionaries(
            {"Passing": st.integers(1, 100), "Warning": st.integers(0, 100)}
        ),
        "TaggedAddresses": st.dictionaries(
            names,
            st.fixed_dictionaries({"Address": names, "Port": st.integers(0, 65535)}),
            max_size=2,
        ),
        "EnableTagOverride": st.booleans(),
        "Check": valid_check,
        "Checks": st.lists(valid_check, max_size=3),
        "Connect": st.fixed_dictionaries({"SidecarService": sidecar_valid}),
    },
)
DATA_MAPS = {"meta", "header", "config", "taggedaddresses", "tagged_addresses"}


def respell(value: Any, data: DataObject) -> Any:
    """The same body with every field name in a random Consul-accepted spelling."""
    if isinstance(value, list):
        return [respell(v, data) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, v in value.items():
        spelling = data.draw(
            st.sampled_from([key, key.lower(), key.upper(), snake(key), snake(key).upper()])
        )
        if key.lower() in DATA_MAPS:
            v = {k: respell(x, data) if key == "TaggedAddresses" else x for k, x in v.items()}
        else:
            v = respell(v, data)
        out[spelling] = v
    return out


@settings(max_examples=300, deadline=None)
@given(valid_service, st.data())
def test_valid_bodies_parse_the_same_in_any_spelling(
    body: dict[str, Any], data: DataObject
) -> None:
    r = reg(body, allow_script=True)
    assert r == reg(respell(body, data), allow_script=True)
    assert r.service.id == body.get("ID", body["Name"])
    assert (r.sidecar is None) == ("Connect" not in body)
    record = NodeRecord(
        "n", "i", "dc1", "a", 1, "n", services=r.services(), checks=r.initial_checks()
    )
    assert record_from_wire(json.loads(json.dumps(record_to_wire(record)))) == record


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for k, v in items:
        found += _leaves(v, (*path, k))
    return found


@settings(max_examples=500, deadline=None)
@given(valid_service, st.data())
def test_one_bad_part_anywhere_is_refused_cleanly(body: dict[str, Any], data: DataObject) -> None:
    path = data.draw(st.sampled_from(_leaves(body)))
    target: Any = body
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = data.draw(json_values)
    _accepts_or_refuses(body)
