"""Consul's catalog register/deregister bodies, parsed into values. Pure: no I/O.

`PUT /v1/catalog/register` and `/deregister` name an external node (one that
runs no agent). This reads their bodies as Consul does
(agent/consul/catalog_endpoint.go, structs.RegisterRequest): keys match in any
case, unknown keys are refused, each bad field is a RegistrationError naming
it. What depends on the catalog's state (who owns the name, whether an ID is
taken, which services exist) is the owner's to decide: `agent/local/external_nodes.py`.

- `Node` is required; `Address` is checked by the owner (it may be omitted
  with `SkipNodeUpdate` for a node that exists); `ID`, when given, is a
  36-character UUID; a `Datacenter` other than ours is refused.
- `Check`/`Checks`: `CheckID` defaults to `Name`, `Status` to critical; a
  `Definition` is kept with canonical keys and Go durations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gossamer.catalog.durations import format_seconds
from gossamer.catalog.model import Check, Service
from gossamer.catalog.names import meta_count_problem, meta_pair_problem
from gossamer.catalog.registration_check import CHECK_STATUSES
from gossamer.catalog.registration_fields import Fields, RegistrationError, item, shown
from gossamer.catalog.registration_service import parse_service_registration as parse_service

_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_IGNORED = ("Token", "WriteRequest", "CreateIndex", "ModifyIndex")
_SCOPE = ("Namespace", "Partition", "PeerName")
REGISTER_FIELDS = (
    "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta", "Service", "Check",
    "Checks", "SkipNodeUpdate", "Locality", *_SCOPE, *_IGNORED,
)  # fmt: skip
DEREGISTER_FIELDS = ("Node", "Datacenter", "ServiceID", "CheckID", *_SCOPE, *_IGNORED)
CHECK_FIELDS = (
    "Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
    "ServiceTags", "Type", "Interval", "Timeout", "ExposedPort", "Definition", *_SCOPE, *_IGNORED,
)  # fmt: skip
_DEF_STR = ("HTTP", "TLSServerName", "Method", "Body", "TCP", "UDP", "H2PING", "OSService",
            "DockerContainerID", "Shell", "GRPC", "AliasNode", "AliasService")  # fmt: skip
_DEF_BOOL = ("TLSSkipVerify", "DisableRedirects", "TCPUseTLS", "H2PingUseTLS", "GRPCUseTLS")
_DEF_DURATION = ("Interval", "Timeout", "DeregisterCriticalServiceAfter", "TTL")
# Consul's CheckType.Type() order: the type a definition's fields make (most need an Interval).
_KINDS = (("grpc", "GRPC"), ("http", "HTTP"), ("ttl", "TTL"), ("tcp", "TCP"), ("udp", "UDP"),
          ("alias", "AliasService"), ("docker", "DockerContainerID"), ("script", "ScriptArgs"),
          ("h2ping", "H2PING"), ("os_service", "OSService"))  # fmt: skip
DEFINITION_FIELDS = (*_DEF_STR, *_DEF_BOOL, *_DEF_DURATION, "Header", "ScriptArgs", "OutputMaxSize")


@dataclass(frozen=True)
class NodeRegistration:
    """One register body: the node's fields, and the service and checks to upsert."""

    node: str
    address: str
    skip_node_update: bool
    node_id: str
    tagged_addresses: dict[str, str]
    meta: dict[str, str]
    service: Service | None
    checks: tuple[tuple[str, Check], ...]  # (path for errors, check)


@dataclass(frozen=True)
class NodeDeregistration:
    node: str
    service_id: str
    check_id: str


def parse_node_registration(body: object, datacenter: str) -> NodeRegistration:
    f = Fields(body, "", REGISTER_FIELDS)
    node = node_and_scope(f, datacenter)
    node_id = f.str_("ID")
    if node_id and not _UUID.fullmatch(node_id):
        raise f.error("ID", f"must be a 36-character UUID, got {shown(node_id)}")
    return NodeRegistration(
        node=node,
        address=f.str_("Address"),
        skip_node_update=f.bool_("SkipNodeUpdate"),
        node_id=node_id,
        tagged_addresses=_string_map(f, "TaggedAddresses"),
        meta=_meta(f),
        service=_service(f.values["Service"]) if f.has("Service") else None,
        checks=tuple(_checks(f, node)),
    )


def parse_node_deregistration(body: object, datacenter: str) -> NodeDeregistration:
    f = Fields(body, "", DEREGISTER_FIELDS)
    node = node_and_scope(f, datacenter)
    return NodeDeregistration(node, f.str_("ServiceID"), f.str_("CheckID"))


def node_and_scope(f: Fields, datacenter: str) -> str:
    """The `Node`, after refusing another datacenter, namespaces, partitions and locality."""
    node = f.str_("Node")
    if not node:
        raise f.error("Node", "missing required field")
    theirs = f.str_("Datacenter")
    if theirs and theirs != datacenter:
        raise f.error(
            "Datacenter",
            f"{shown(theirs)} is not this agent's datacenter ({shown(datacenter)}); "
            "register external nodes on an agent of their datacenter",
        )
    _no_scope(f)
    if f.values.get("Locality") not in (None, {}):
        raise f.error("Locality", "not supported by gossamer")
    return node


def _no_scope(f: Fields) -> None:
    for key in _SCOPE:
        value = f.str_(key)
        if value and (key == "PeerName" or value != "default"):
            raise f.error(key, "namespaces, partitions and peers are not supported by gossamer")


def _string_map(f: Fields, name: str) -> dict[str, str]:
    raw = f.values.get(name, {})
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise f.error(name, f"must be an object of strings, got {shown(raw)}")
    return dict(sorted(raw.items()))


def _meta(f: Fields) -> dict[str, str]:
    """Consul's node metadata limits (structs.ValidateNodeMetadata)."""
    meta = _string_map(f, "NodeMeta")
    if problem := meta_count_problem(meta):
        raise f.error("NodeMeta", problem)
    for key, value in meta.items():
        if problem := meta_pair_problem(key, value):
            raise RegistrationError(item(f.at("NodeMeta"), key), problem)
    return meta


def _service(raw: object) -> Service:
    """A catalog `Service` (Consul's NodeService: the name is `Service`), via the agent parser."""
    if not isinstance(raw, dict):
        raise RegistrationError("Service", f"must be a JSON object, got {shown(raw)}")
    body: dict[str, Any] = {}
    for key, value in raw.items():
        lower = str(key).lower()
        if lower in ("check", "checks"):
            raise RegistrationError(f"Service.{key}", "not part of a catalog service; use Checks")
        if lower == "name":
            raise RegistrationError("Service.Name", "unknown field (the name is Service.Service)")
        if lower in ("createindex", "modifyindex", "peername", "locallyregisteredassidecar"):
            continue
        if lower == "service" and "Name" in body:
            raise RegistrationError("Service.Service", "given twice")
        body["Name" if lower == "service" else key] = value
    connect = next((v for k, v in body.items() if k.lower() == "connect"), None)
    if isinstance(connect, dict) and any("sidecar" in str(k).lower() for k in connect):
        raise RegistrationError(
            "Service.Connect.SidecarService", "sidecars are registered through the agent API"
        )
    try:
        return parse_service(body, node_address="", used_sidecar_ports=set()).service
    except RegistrationError as exc:
        field = {"Name": "Service", "": ""}.get(exc.field, exc.field)
        raise RegistrationError(f"Service.{field}".rstrip("."), exc.message) from None


def _checks(f: Fields, node: str) -> list[tuple[str, Check]]:
    """The body's `Check` and `Checks`, each with its path for errors."""
    items = [("Check", f.values["Check"])] if f.has("Check") else []
    raw = f.values.get("Checks", [])
    if not isinstance(raw, list):
        raise f.error("Checks", f"must be a list of checks, got {shown(raw)}")
    items += [(f"Checks[{i}]", c) for i, c in enumerate(raw)]
    checks = [(path, _check(c, path, node)) for path, c in items]
    ids = [c.check_id for _, c in checks]
    for path, check in checks:
        if ids.count(check.check_id) > 1:
            raise RegistrationError(
                f"{path}.CheckID", f"duplicate check id {shown(check.check_id)}"
            )
    return checks


def _check(raw: object, path: str, node: str) -> Check:
    """A catalog HealthCheck: a state as given, never run."""
    c = Fields(raw, path, CHECK_FIELDS)
    if c.str_("Node") not in ("", node):
        raise c.error("Node", f"check node {shown(c.str_('Node'))} does not match {shown(node)}")
    _no_scope(c)
    check_id = c.str_("CheckID") or c.str_("Name")
    if not check_id:
        raise c.error("CheckID", "missing required field (or give a Name)")
    status = c.str_("Status") or "critical"
    if status not in CHECK_STATUSES:
        raise c.error("Status", f"must be passing, warning or critical, got {shown(status)}")
    c.str_list("ServiceTags")
    c.str_("ServiceName")
    c.int_("ExposedPort", 0, 65535)
    definition, kind, durations = _definition(c)
    return Check(
        check_id=check_id,
        name=c.str_("Name"),
        status=status,
        notes=c.str_("Notes"),
        output=c.str_("Output"),
        service_id=c.str_("ServiceID"),
        type=c.str_("Type") or kind,
        definition=definition,
        interval=c.str_("Interval") or durations.get("Interval", ""),
        timeout=c.str_("Timeout") or durations.get("Timeout", ""),
    )


def _definition(c: Fields) -> tuple[dict[str, Any], str, dict[str, str]]:
    """Consul's HealthCheckDefinition: kept (canonical keys, Go durations), its check type."""
    if not c.has("Definition"):
        return {}, "", {}
    d = Fields(c.values["Definition"], c.at("Definition"), DEFINITION_FIELDS)
    out: dict[str, Any] = {n: v for n in _DEF_STR if (v := d.str_(n))}
    out |= {n: True for n in _DEF_BOOL if d.bool_(n)}
    durations = {n: format_seconds(s) for n in _DEF_DURATION if (s := d.duration(n))}
    if args := d.str_list("ScriptArgs"):
        out["ScriptArgs"] = list(args)
    if size := d.int_("OutputMaxSize", 0, 2**31 - 1):
        out["OutputMaxSize"] = size
    header = d.values.get("Header", {})
    if not isinstance(header, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in header.values()
    ):
        raise d.error("Header", f"must be an object of string lists, got {shown(header)}")
    if header:
        out["Header"] = {k: list(v) for k, v in sorted(header.items())}
    out |= durations
    timed = "Interval" in out
    kind = next((k for k, key in _KINDS if key in out and (timed or k in ("ttl", "alias"))), "")
    return dict(sorted(out.items())), kind, durations
