"""A service's `Proxy` block (connect-proxy and gateways) parsed and checked. Pure.

Follows Consul's structs.ConnectProxyConfig and Upstream validation:
- upstreams need a `DestinationName` and a `LocalBindPort`, and must not
  repeat a target (type, datacenter, name) or a bind address:port;
- `Mode` is "", "direct" or "transparent"; `MeshGateway.Mode` "", "none",
  "local" or "remote"; `Expose` as registration_expose.py checks it;
- `Config` maps are free-form JSON, copied after checking they are plain,
  finite and no deeper than the replication wire allows.
The result uses Consul's JSON names with empty fields left out, as an
agent's `/v1/agent/service/<id>` shows it.
"""

from __future__ import annotations

import copy
from typing import Any

from gossamer.catalog.plain_json import json_problem
from gossamer.catalog.registration_expose import parse_expose, port_clash
from gossamer.catalog.registration_fields import Fields, RegistrationError, shown

MAX_OPAQUE_DEPTH = 24  # under the replication wire's limit of 32, counted from `proxy`
PROXY_FIELDS = (
    "DestinationServiceName", "DestinationServiceID", "LocalServiceAddress", "LocalServicePort",
    "LocalServiceSocketPath", "Mode", "TransparentProxy", "Config", "Upstreams", "MeshGateway",
    "Expose", "AccessLogs", "EnvoyExtensions",
)  # fmt: skip
UPSTREAM_FIELDS = (
    "DestinationType", "DestinationNamespace", "DestinationPartition", "DestinationPeer",
    "DestinationName", "Datacenter", "LocalBindAddress", "LocalBindPort", "LocalBindSocketPath",
    "LocalBindSocketMode", "Config", "MeshGateway", "CentrallyConfigured",
)  # fmt: skip


def parse_proxy(raw: object, path: str) -> dict[str, Any]:
    p = Fields(raw, path, PROXY_FIELDS)
    out: dict[str, Any] = {}
    for key in ("DestinationServiceName", "DestinationServiceID", "LocalServiceAddress"):
        if value := p.str_(key):
            out[key] = value
    if port := p.int_("LocalServicePort", 0, 65535):
        out["LocalServicePort"] = port
    mode = p.str_("Mode")
    if mode not in ("", "direct", "transparent"):
        raise p.error("Mode", f'must be "direct" or "transparent", got {shown(mode)}')
    if mode:
        out["Mode"] = mode
    if p.has("TransparentProxy"):
        t = Fields(p.values["TransparentProxy"], p.at("TransparentProxy"), _TPROXY)
        tproxy: dict[str, Any] = {}
        if port := t.int_("OutboundListenerPort", 0, 65535):
            tproxy["OutboundListenerPort"] = port
        if t.bool_("DialedDirectly"):
            tproxy["DialedDirectly"] = True
        out["TransparentProxy"] = tproxy
    if p.has("Config"):
        out["Config"] = _opaque(p.values["Config"], p.at("Config"), 1)
    raw_upstreams = p.values.get("Upstreams", [])
    if not isinstance(raw_upstreams, list):
        raise p.error("Upstreams", f"must be a list, got {shown(raw_upstreams)}")
    upstreams = [_upstream(u, f"{p.at('Upstreams')}[{i}]") for i, u in enumerate(raw_upstreams)]
    _no_duplicate_upstreams(upstreams, p.at("Upstreams"))
    if upstreams:
        out["Upstreams"] = upstreams
    if p.has("MeshGateway"):
        out["MeshGateway"] = _mesh_gateway(p)
    if expose := parse_expose(p.values.get("Expose"), p.at("Expose")):
        out["Expose"] = expose
        port_clash(out, 0, path)
    for key in ("LocalServiceSocketPath", "AccessLogs", "EnvoyExtensions"):
        if p.values.get(key) not in (None, "", {}, []):
            raise p.error(key, "not supported by gossamer")
    return out


_TPROXY = ("OutboundListenerPort", "DialedDirectly")


def _mesh_gateway(f: Fields) -> dict[str, str]:
    m = Fields(f.values["MeshGateway"], f.at("MeshGateway"), ("Mode",))
    mode = m.str_("Mode")
    if mode not in ("", "none", "local", "remote"):
        raise m.error("Mode", f'must be "none", "local" or "remote", got {shown(mode)}')
    return {"Mode": mode} if mode else {}


def _upstream(raw: object, path: str) -> dict[str, Any]:
    u = Fields(raw, path, UPSTREAM_FIELDS)
    dest_type = u.str_("DestinationType") or "service"
    if dest_type not in ("service", "prepared_query"):
        raise u.error(
            "DestinationType", f'must be "service" or "prepared_query", got {shown(dest_type)}'
        )
    name = u.str_("DestinationName")
    if not name:
        raise u.error("DestinationName", "missing required field")
    for key in ("DestinationNamespace", "DestinationPartition"):
        if u.str_(key) not in ("", "default"):
            raise u.error(key, "namespaces and partitions are not supported by gossamer")
    for key in ("DestinationPeer", "LocalBindSocketPath", "LocalBindSocketMode"):
        if u.str_(key):
            raise u.error(key, "not supported by gossamer")
    if u.bool_("CentrallyConfigured"):
        raise u.error("CentrallyConfigured", "not supported by gossamer")
    out: dict[str, Any] = {"DestinationType": dest_type, "DestinationName": name}
    for key in ("Datacenter", "LocalBindAddress"):
        if value := u.str_(key):
            out[key] = value
    out["LocalBindPort"] = u.int_("LocalBindPort", 1, 65535, what="1-65535 (required)")
    if u.has("Config"):
        out["Config"] = _opaque(u.values["Config"], u.at("Config"), 3)
    if u.has("MeshGateway"):
        out["MeshGateway"] = _mesh_gateway(u)
    return out


def _no_duplicate_upstreams(upstreams: list[dict[str, Any]], path: str) -> None:
    targets: set[tuple[str, str, str]] = set()
    binds: set[tuple[str, int]] = set()
    for i, u in enumerate(upstreams):
        target = (u["DestinationType"], u.get("Datacenter", ""), u["DestinationName"])
        bind = (u.get("LocalBindAddress", "127.0.0.1"), u["LocalBindPort"])
        if target in targets:
            raise RegistrationError(f"{path}[{i}]", f"duplicate upstream {shown(target[2])}")
        if bind in binds:
            raise RegistrationError(f"{path}[{i}].LocalBindPort", f"{bind[0]}:{bind[1]} used twice")
        targets.add(target)
        binds.add(bind)


def _opaque(value: object, path: str, depth: int) -> Any:
    """A copy of free-form JSON (`Config`), checked to be plain, finite and not too deep."""
    if problem := json_problem(value, path, depth, MAX_OPAQUE_DEPTH):
        raise RegistrationError(*problem)
    return copy.deepcopy(value)
