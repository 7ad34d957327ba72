"""Service registration bodies (`PUT /v1/agent/service/register`, config `services:`), no I/O.

Follows Consul's agent (agent_endpoint.go AgentRegisterService,
structs.NodeService.Validate, sidecar_service.go):
- `ID` defaults to `Name`; `Weights` to {Passing: 1, Warning: 1}; `Address`
  stays empty when not given (clients then use the node's address).
- Meta: at most 64 pairs, keys of [A-Za-z0-9_-] up to 128 characters, values
  up to 512 bytes (Go's len), no `consul-` prefix (except
  `consul-wan-federation` on mesh gateways).
- `Proxy` only on connect-proxy and gateway kinds; a connect-proxy needs
  `Proxy.DestinationServiceName` and a `Port`; upstreams need a name and a
  bind port and must not repeat.
- `Connect.SidecarService` registers a second service, `<id>-sidecar-proxy`,
  with Consul's defaults (see `_sidecar`); its `ID` cannot be set.
The stored `proxy` dict uses Consul's JSON names with empty fields left out,
as an agent's `/v1/agent/service/<id>` shows it.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from gossamer.catalog.model import Check, Service
from gossamer.catalog.plain_json import json_problem
from gossamer.catalog.registration_check import (
    DEFAULT_TIMEOUT_S,
    CheckDefinition,
    Fields,
    RegistrationConflict,
    RegistrationError,
    build_check,
    check_fields,
    is_empty_check,
    item,
    shown,
)
from gossamer.gossip.addresses import format_host_port

KINDS = ("", "connect-proxy", "mesh-gateway", "terminating-gateway", "ingress-gateway")
GATEWAYS = KINDS[2:]
SIDECAR_SUFFIX = "-sidecar-proxy"
SIDECAR_PORT_RANGE = (21000, 21255)
META_MAX_PAIRS = 64
META_KEY_MAX = 128
META_VALUE_MAX = 512
META_RESERVED_PREFIX = "consul-"
MAX_WEIGHT = 65535  # gossamer's bound: a DNS SRV weight is 16 bits
MAX_OPAQUE_DEPTH = 24  # under the replication wire's limit of 32, counted from `proxy`
_META_KEY = re.compile(r"[a-zA-Z0-9_-]+")
_WILDCARD_ADDRESSES = ("0.0.0.0", "::", "[::]")

SERVICE_FIELDS = (
    "Name", "ID", "Tags", "Address", "TaggedAddresses", "Meta", "Port", "Kind", "Proxy",
    "Connect", "Check", "Checks", "EnableTagOverride", "Weights", "Token", "Namespace",
    "Partition", "SocketPath", "Ports", "Locality",
)  # fmt: skip
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


@dataclass(frozen=True)
class ServiceRegistration:
    """A parsed service body: the service, its checks, and the sidecar it asked for."""

    service: Service
    checks: tuple[CheckDefinition, ...] = ()
    sidecar: Service | None = None
    sidecar_checks: tuple[CheckDefinition, ...] = ()

    def services(self) -> tuple[Service, ...]:
        return (self.service,) if self.sidecar is None else (self.service, self.sidecar)

    def initial_checks(self) -> tuple[Check, ...]:
        """Every check's starting state (the service's, then the sidecar's)."""
        own = tuple(c.to_check(self.service) for c in self.checks)
        if self.sidecar is None:
            return own
        return own + tuple(c.to_check(self.sidecar) for c in self.sidecar_checks)


@dataclass(frozen=True)
class _Draft:
    """One service object read and type-checked, before ids and defaults are settled."""

    f: Fields
    name: str
    id: str
    tags: tuple[str, ...]
    address: str
    port: int
    meta: dict[str, str]
    tagged: dict[str, tuple[str, int]]
    weights: tuple[int, int]
    kind: str
    proxy: dict[str, Any] | None
    native: bool
    sidecar: object | None
    checks: tuple[Fields, ...]
    enable_tag_override: bool


def parse_service_registration(
    body: object,
    *,
    node_address: str,
    used_sidecar_ports: set[int],
    sidecar_port_range: tuple[int, int] = SIDECAR_PORT_RANGE,
    allow_script: bool = False,
    previous_sidecar_port: int | None = None,
) -> ServiceRegistration:
    """Parse and validate a service registration body; raises RegistrationError.

    `used_sidecar_ports`: ports of the other services on this agent (the
    parent's own port is added here). `previous_sidecar_port`: the port of
    this sidecar if it is already registered; kept when inside the range,
    as Consul does. `node_address` is the last fallback for the sidecar's
    listening check. `allow_script`: whether `Args` checks are allowed for
    this source (enable_script_checks, or enable_local_script_checks for
    config files).
    """
    d = _draft(body, "", nested=False)
    _validate_kind(d)
    service = Service(
        id=d.id or d.name,
        name=d.name,
        tags=d.tags,
        address=d.address,
        port=d.port,
        meta=d.meta,
        tagged_addresses=d.tagged,
        weights=d.weights,
        kind=d.kind,
        proxy=d.proxy or {},
        connect={"Native": True} if d.native else {},
        enable_tag_override=d.enable_tag_override,
    )
    checks = _service_checks(d, service, allow_script)
    if d.sidecar is None:
        return ServiceRegistration(service, checks)
    low, high = sidecar_port_range
    taken = set(used_sidecar_ports) | {service.port}
    if previous_sidecar_port is not None and low <= previous_sidecar_port <= high:
        free: int | None = previous_sidecar_port
    else:
        free = next((p for p in range(low, high + 1) if p not in taken), None)
    sidecar, sidecar_checks = _sidecar(
        service, d.sidecar, "Connect.SidecarService", free, (low, high), node_address, allow_script
    )
    return ServiceRegistration(service, checks, sidecar, sidecar_checks)


def _draft(raw: object, path: str, *, nested: bool) -> _Draft:
    f = Fields(raw, path, SERVICE_FIELDS)
    name = f.str_("Name")
    if not name and not nested:
        raise f.error("Name", "missing required field")
    service_id = f.str_("ID")
    if nested and service_id:
        raise f.error("ID", f"cannot be set: the agent names the sidecar <id>{SIDECAR_SUFFIX}")
    if "/" in service_id:
        raise f.error("ID", f"must not contain '/', got {shown(service_id)}")
    address = f.str_("Address")
    if address in _WILDCARD_ADDRESSES:
        raise f.error("Address", f"must not be a wildcard address, got {shown(address)}")
    kind = f.str_("Kind")
    if kind not in KINDS:
        raise f.error("Kind", f"unknown kind {shown(kind)} (allowed: {', '.join(KINDS[1:])})")
    for key in ("Namespace", "Partition"):
        if f.str_(key) not in ("", "default"):
            raise f.error(key, "namespaces and partitions are not supported by gossamer")
    f.str_("Token")  # accepted and ignored: gossamer has no ACLs
    if f.str_("SocketPath"):
        raise f.error("SocketPath", "unix socket services are not supported by gossamer")
    for key in ("Ports", "Locality"):
        if f.values.get(key) not in (None, {}, []):
            raise f.error(key, "not supported by gossamer")
    native, sidecar = _connect(f)
    checks: list[Fields] = []
    if f.has("Check"):
        check = check_fields(f.values["Check"], f.at("Check"))
        if not is_empty_check(check):
            checks.append(check)
    raw_checks = f.values.get("Checks", [])
    if not isinstance(raw_checks, list):
        raise f.error("Checks", f"must be a list of checks, got {shown(raw_checks)}")
    checks += [check_fields(c, f"{f.at('Checks')}[{i}]") for i, c in enumerate(raw_checks)]
    return _Draft(
        f=f,
        name=name,
        id=service_id,
        tags=f.str_list("Tags"),
        address=address,
        port=f.int_("Port", 0, 65535),
        meta=_meta(f, kind),
        tagged=_tagged_addresses(f),
        weights=_weights(f),
        kind=kind,
        proxy=_proxy(f.values["Proxy"], f.at("Proxy")) if f.has("Proxy") else None,
        native=native,
        sidecar=sidecar,
        checks=tuple(checks),
        enable_tag_override=f.bool_("EnableTagOverride"),
    )


def _connect(f: Fields) -> tuple[bool, object | None]:
    if not f.has("Connect"):
        return False, None
    c = Fields(f.values["Connect"], f.at("Connect"), ("Native", "SidecarService", "Proxy"))
    if c.has("Proxy"):
        raise c.error("Proxy", "managed proxies were removed in Consul 1.6; use SidecarService")
    return c.bool_("Native"), c.values.get("SidecarService")


def _meta(f: Fields, kind: str) -> dict[str, str]:
    raw = f.values.get("Meta", {})
    if not isinstance(raw, dict):
        raise f.error("Meta", f"must be an object of strings, got {shown(raw)}")
    if len(raw) > META_MAX_PAIRS:
        raise f.error("Meta", f"at most {META_MAX_PAIRS} pairs, got {len(raw)}")
    allowed = {"consul-wan-federation"} if kind == "mesh-gateway" else set()
    for key, value in raw.items():
        at = item(f.at("Meta"), key)
        if not isinstance(key, str) or not _META_KEY.fullmatch(key) or len(key) > META_KEY_MAX:
            raise RegistrationError(
                at, f"key must match ^[a-zA-Z0-9_-]+$ and be at most {META_KEY_MAX} characters"
            )
        if key.startswith(META_RESERVED_PREFIX) and key not in allowed:
            raise RegistrationError(at, f"the key prefix {META_RESERVED_PREFIX!r} is reserved")
        if not isinstance(value, str):
            raise RegistrationError(at, f"value must be a string, got {shown(value)}")
        if len(value.encode()) > META_VALUE_MAX:
            size = len(value.encode())
            raise RegistrationError(at, f"value must be at most {META_VALUE_MAX} bytes, got {size}")
    return dict(raw)


def _tagged_addresses(f: Fields) -> dict[str, tuple[str, int]]:
    raw = f.values.get("TaggedAddresses", {})
    if not isinstance(raw, dict):
        raise f.error("TaggedAddresses", f"must be an object, got {shown(raw)}")
    out: dict[str, tuple[str, int]] = {}
    for key, value in raw.items():
        at = item(f.at("TaggedAddresses"), key)
        if not isinstance(key, str):
            raise RegistrationError(at, "keys must be strings")
        if not isinstance(value, dict):
            raise RegistrationError(at, f"must be an object {{Address, Port}}, got {shown(value)}")
        t = Fields(value, at, ("Address", "Port"))
        out[key] = (t.str_("Address"), t.int_("Port", 0, 65535))
    return out


def _weights(f: Fields) -> tuple[int, int]:
    if not f.has("Weights"):
        return (1, 1)
    w = Fields(f.values["Weights"], f.at("Weights"), ("Passing", "Warning"))
    passing = w.values.get("Passing", 0)
    if isinstance(passing, int) and not isinstance(passing, bool) and passing < 1:
        raise w.error("Passing", f"must be ≥ 1, got {passing}")
    return w.int_("Passing", 1, MAX_WEIGHT), w.int_("Warning", 0, MAX_WEIGHT)


def _proxy(raw: object, path: str) -> dict[str, Any]:
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
    for key in ("LocalServiceSocketPath", "Expose", "AccessLogs", "EnvoyExtensions"):
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


def _validate_kind(d: _Draft) -> None:
    f, proxy = d.f, d.proxy or {}
    if d.kind == "connect-proxy":
        if not proxy.get("DestinationServiceName"):
            raise RegistrationError(
                f"{f.at('Proxy')}.DestinationServiceName",
                "missing required field for connect-proxy",
            )
        if d.port == 0:
            raise f.error("Port", "must be set for a connect-proxy")
    elif d.kind in GATEWAYS:
        if d.port == 0 and d.kind != "ingress-gateway":
            raise f.error("Port", f"must be set for a {d.kind}")
        for key in ("DestinationServiceName", "Upstreams"):
            if key in proxy:
                raise RegistrationError(f"{f.at('Proxy')}.{key}", f"not valid for a {d.kind}")
    elif d.proxy:
        raise f.error("Proxy", 'only valid when Kind is "connect-proxy" or a gateway')
    if d.kind and (d.native or d.sidecar is not None):
        what = "Native" if d.native else "SidecarService"
        raise RegistrationError(f"{f.at('Connect')}.{what}", f"not valid for a {d.kind}")


def _service_checks(d: _Draft, service: Service, allow_script: bool) -> tuple[CheckDefinition, ...]:
    checks: list[CheckDefinition] = []
    for i, cf in enumerate(d.checks):
        suffix = f":{i + 1}" if len(d.checks) > 1 else ""
        check = build_check(
            cf,
            allow_script=allow_script,
            service_id=service.id,
            default_id=f"service:{service.id}{suffix}",
            default_name=f"Service '{service.name}' check",
        )
        if any(c.check_id == check.check_id for c in checks):
            raise cf.error("CheckID", f"duplicate check id {shown(check.check_id)}")
        checks.append(check)
    return tuple(checks)


def _sidecar(
    parent: Service,
    raw: object,
    path: str,
    free_port: int | None,
    port_range: tuple[int, int],
    node_address: str,
    allow_script: bool,
) -> tuple[Service, tuple[CheckDefinition, ...]]:
    """Consul's sidecar_service expansion (agent/sidecar_service.go)."""
    d = _draft(raw, path, nested=True)
    if d.kind not in ("", "connect-proxy"):
        raise d.f.error("Kind", f"a sidecar is a connect-proxy, got {shown(d.kind)}")
    if d.sidecar is not None:
        raise RegistrationError(f"{path}.Connect.SidecarService", "sidecars cannot be nested")
    if d.native:
        raise RegistrationError(f"{path}.Connect.Native", "a sidecar proxy cannot be native")
    given = d.proxy or {}
    proxy: dict[str, Any] = {
        "DestinationServiceName": given.get("DestinationServiceName", parent.name),
        "DestinationServiceID": given.get("DestinationServiceID", parent.id),
    }
    local_address = given.get("LocalServiceAddress", "")
    local_port = given.get("LocalServicePort", 0)
    if not local_address or not local_port:
        local_address, local_port = local_address or "127.0.0.1", local_port or parent.port
    proxy["LocalServiceAddress"] = local_address
    if local_port:
        proxy["LocalServicePort"] = local_port
    proxy |= {k: v for k, v in given.items() if k not in proxy}
    port = d.port or free_port
    if not port:
        low, high = port_range
        raise RegistrationConflict(  # valid, but the other sidecars hold every port
            f"{path}.Port", f"not given and no free port left in the sidecar range [{low}, {high}]"
        )
    sidecar = Service(
        id=parent.id + SIDECAR_SUFFIX,
        name=d.name or parent.name + SIDECAR_SUFFIX,
        tags=d.tags or parent.tags,
        address=d.address or parent.address,
        port=port,
        meta=d.meta or dict(parent.meta),
        tagged_addresses=d.tagged,
        weights=d.weights,
        kind="connect-proxy",
        proxy=proxy,
        enable_tag_override=d.enable_tag_override,
    )
    checks = _service_checks(d, sidecar, allow_script)
    if checks:
        return sidecar, checks
    check_address = sidecar.address or local_address or node_address
    return sidecar, (
        CheckDefinition(
            check_id=f"service:{sidecar.id}:1",
            name="Connect Sidecar Listening",
            kind="tcp",
            service_id=sidecar.id,
            tcp=format_host_port(check_address, port),
            interval_s=10.0,
            timeout_s=DEFAULT_TIMEOUT_S,
        ),
        CheckDefinition(
            check_id=f"service:{sidecar.id}:2",
            name=f"Connect Sidecar Aliasing {parent.id}",
            kind="alias",
            service_id=sidecar.id,
            alias_service=parent.id,
        ),
    )
