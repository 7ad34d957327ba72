"""One service object of a registration body, read and type-checked. Pure.

Both the service itself and its `Connect.SidecarService` are service
objects; this reads either into a `Draft` before ids and defaults are
settled (registration_service.py settles the service, registration_sidecar.py
the sidecar). Consul's rules kept here (structs.NodeService.Validate):
- `ID` must not contain "/"; a sidecar's `ID` cannot be set.
- `Address` must not be a wildcard; `Kind` is one of `KINDS`.
- Meta follows catalog/names.py (64 pairs, key syntax, `consul-` reserved
  except `consul-wan-federation` on mesh gateways, 512-byte values).
- `Weights` default to {Passing: 1, Warning: 1}; Passing must be at least 1.
- A service's `Check` is skipped when all its fields are zero, as in Consul.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from gossamer.catalog.check_definition import CheckDefinition
from gossamer.catalog.model import Service
from gossamer.catalog.names import id_problem, meta_count_problem, meta_pair_problem
from gossamer.catalog.registration_check import build_check, check_fields, is_empty_check
from gossamer.catalog.registration_fields import Fields, RegistrationError, item, shown
from gossamer.catalog.registration_proxy import parse_proxy

KINDS = ("", "connect-proxy", "mesh-gateway", "terminating-gateway", "ingress-gateway")
GATEWAYS = KINDS[2:]
SIDECAR_SUFFIX = "-sidecar-proxy"
MAX_WEIGHT = 65535  # gossamer's bound: a DNS SRV weight is 16 bits
_WILDCARD_ADDRESSES = ("0.0.0.0", "::", "[::]")

SERVICE_FIELDS = (
    "Name", "ID", "Tags", "Address", "TaggedAddresses", "Meta", "Port", "Kind", "Proxy",
    "Connect", "Check", "Checks", "EnableTagOverride", "Weights", "Token", "Namespace",
    "Partition", "SocketPath", "Ports", "Locality",
)  # fmt: skip


def _unbracketed(address: str) -> str:
    """`[::1]` as `::1`; anything else as given. Accepted, `[::1]` was taken for a host name:
    DNS answered a CNAME to `[::1].` and no sidecar could dial or bind it."""
    if not (address.startswith("[") and address.endswith("]")):
        return address
    try:
        return str(ipaddress.IPv6Address(address[1:-1]))
    except ValueError:
        return address


@dataclass(frozen=True)
class Draft:
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
    locality: dict[str, str]


def read_draft(raw: object, path: str, *, nested: bool) -> Draft:
    """Read a service object (`nested`: a sidecar's, whose Name and ID the agent sets)."""
    f = Fields(raw, path, SERVICE_FIELDS)
    name = f.str_("Name")
    if not name and not nested:
        raise f.error("Name", "missing required field")
    service_id = _service_id(f, nested)
    address = f.str_("Address")
    if address in _WILDCARD_ADDRESSES:
        raise f.error("Address", f"must not be a wildcard address, got {shown(address)}")
    if (bare := _unbracketed(address)) != address:
        raise f.error("Address", f"an IPv6 address is written without brackets here: "
                      f"{shown(bare)}, not {shown(address)}")  # fmt: skip
    kind = f.str_("Kind")
    if kind not in KINDS:
        raise f.error("Kind", f"unknown kind {shown(kind)} (allowed: {', '.join(KINDS[1:])})")
    _refuse_unsupported(f)
    native, sidecar = _connect(f)
    checks = _check_objects(f)
    return Draft(
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
        proxy=parse_proxy(f.values["Proxy"], f.at("Proxy")) if f.has("Proxy") else None,
        native=native,
        sidecar=sidecar,
        checks=checks,
        enable_tag_override=f.bool_("EnableTagOverride"),
        locality=_locality(f),
    )


def _service_id(f: Fields, nested: bool) -> str:
    service_id = f.str_("ID")
    if nested and service_id:
        raise f.error("ID", f"cannot be set: the agent names the sidecar <id>{SIDECAR_SUFFIX}")
    if problem := id_problem(service_id):
        raise f.error("ID", problem)
    return service_id


def _refuse_unsupported(f: Fields) -> None:
    for key in ("Namespace", "Partition"):
        if f.str_(key) not in ("", "default"):
            raise f.error(key, "namespaces and partitions are not supported by gossamer")
    f.str_("Token")  # accepted and ignored: gossamer has no ACLs
    if f.str_("SocketPath"):
        raise f.error("SocketPath", "unix socket services are not supported by gossamer")
    if f.values.get("Ports") not in (None, {}, []):
        raise f.error("Ports", "not supported by gossamer")


def _locality(f: Fields) -> dict[str, str]:
    """Consul's `Locality {Region, Zone}`: kept and shown as given, empty parts left out."""
    if f.values.get("Locality") in (None, {}):
        return {}
    loc = Fields(f.values["Locality"], f.at("Locality"), ("Region", "Zone"))
    return {key: value for key in ("Region", "Zone") if (value := loc.str_(key))}


def _check_objects(f: Fields) -> tuple[Fields, ...]:
    checks: list[Fields] = []
    if f.has("Check"):
        check = check_fields(f.values["Check"], f.at("Check"))
        if not is_empty_check(check):
            checks.append(check)
    raw_checks = f.values.get("Checks", [])
    if not isinstance(raw_checks, list):
        raise f.error("Checks", f"must be a list of checks, got {shown(raw_checks)}")
    checks += [check_fields(c, f"{f.at('Checks')}[{i}]") for i, c in enumerate(raw_checks)]
    return tuple(checks)


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
    if problem := meta_count_problem(raw):
        raise f.error("Meta", problem)
    allowed = ("consul-wan-federation",) if kind == "mesh-gateway" else ()
    for key, value in raw.items():
        if problem := meta_pair_problem(key, value, allowed):
            raise RegistrationError(item(f.at("Meta"), key), problem)
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


def service_checks(d: Draft, service: Service, allow_script: bool) -> tuple[CheckDefinition, ...]:
    """The draft's checks, built for `service` (ids `service:<id>[:n]` unless given)."""
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
