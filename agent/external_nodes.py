"""External nodes: Consul's `PUT /v1/catalog/register` and `/deregister`, owned by this agent.

A node registered through the catalog API runs no agent, so the agent that
took the registration owns its record (`origin` = this agent) and is its
only writer; peers get it by anti-entropy like any other record. Its checks
are never run: statuses are what the caller sent, and it has no serfHealth.

Consul's rules (agent/consul/catalog_endpoint.go, state/catalog.go):
- `Node` is required, `Address` too unless `SkipNodeUpdate` is set and the
  node exists; `ID`, when given, is a 36-character UUID.
- Each call upserts: node fields are replaced (unless `SkipNodeUpdate`);
  `Service` replaces the service of its id (`ID` defaults to its `Service`);
  `Check`/`Checks` replace checks by id (`CheckID` defaults to `Name`,
  `Status` to critical; a `ServiceID` must name a service of the node, whose
  name and tags are copied in).
- Deregister drops the `ServiceID` service and its checks, else the
  `CheckID` check, else the whole node; unknown ones are a no-op (`true`).
gossamer's: keys match in any case, unknown keys are refused; bad input is
a RegistrationError naming the field (400); a name that is an agent, or an
external node of another agent, is refused with 409 (its owner is the only
writer); a `Datacenter` other than ours is refused.

Versions: each change publishes `next_version(newest held, wall clock)`, the
newest held being the record's or its tombstone's version. The LiveCatalog
persists both, so a restart resumes above them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gossamer.agent.live_catalog import LiveCatalog
from gossamer.catalog.model import Check, NodeRecord, Service, next_version
from gossamer.catalog.registration import RegistrationError, format_duration
from gossamer.catalog.registration import parse_service_registration as parse_service
from gossamer.catalog.registration_check import CHECK_STATUSES, Fields, item, shown
from gossamer.catalog.registration_service import (
    META_KEY_MAX,
    META_MAX_PAIRS,
    META_RESERVED_PREFIX,
    META_VALUE_MAX,
)

CONFLICT = 409
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_META_KEY = re.compile(r"[a-zA-Z0-9_-]+")
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


class ExternalNodes:
    def __init__(
        self,
        catalog: LiveCatalog,
        *,
        owner: str,
        wall_ms: Callable[[], int],
        is_member: Callable[[str], bool] | None = None,
    ) -> None:
        """`owner`: this agent's node name. `is_member`: whether a name is a gossip member."""
        self._catalog = catalog
        self._owner = owner
        self._wall_ms = wall_ms
        self._is_member = is_member or (lambda _name: False)
        self.datacenter = catalog.datacenter

    # -- the two calls ----------------------------------------------------------------------

    def register(self, body: object) -> None:
        """Upsert a node (and a service and checks) from a catalog register body."""
        f = Fields(body, "", REGISTER_FIELDS)
        node = self._node_and_scope(f, writing=True)
        current = self._catalog.record(node)
        skip = f.bool_("SkipNodeUpdate")
        address = f.str_("Address")
        if not address and (current is None or not skip):
            raise f.error("Address", "missing required field (unless SkipNodeUpdate is set)")
        node_id, tagged, meta = self._node_id(f, node), _string_map(f, "TaggedAddresses"), _meta(f)
        record = current or NodeRecord(node, "", self.datacenter, address, 0, self._owner)
        if current is None or not skip:
            node_id = node_id or record.node_id
            record = replace(
                record, node_id=node_id, address=address, tagged_addresses=tagged, meta=meta
            )
        services = {s.id: s for s in record.services}
        if f.has("Service"):
            service = _service(f.values["Service"])
            services[service.id] = service
        checks = {c.check_id: c for c in record.checks}
        for path, check in _checks(f, node):
            if check.service_id and check.service_id not in services:
                raise RegistrationError(
                    f"{path}.ServiceID",
                    f"Missing service registration: no service {shown(check.service_id)} "
                    f"on node {shown(node)}",
                )
            checks[check.check_id] = check
        bound = {
            cid: replace(c, service_name=services[c.service_id].name,
                         service_tags=services[c.service_id].tags)
            for cid, c in checks.items() if c.service_id
        }  # fmt: skip
        new = replace(
            record, services=tuple(services.values()), checks=tuple((checks | bound).values())
        )
        self._publish(current, new)

    def deregister(self, body: object) -> None:
        """Drop a service, a check or the whole node; unknown ones are a no-op."""
        f = Fields(body, "", DEREGISTER_FIELDS)
        node = self._node_and_scope(f, writing=False)
        service_id, check_id = f.str_("ServiceID"), f.str_("CheckID")
        current = self._catalog.record(node)
        if current is None:
            return
        if service_id:
            if current.service(service_id) is None:
                return
            services = tuple(s for s in current.services if s.id != service_id)
            checks = tuple(c for c in current.checks if c.service_id != service_id)
            self._publish(current, replace(current, services=services, checks=checks))
        elif check_id:
            checks = tuple(c for c in current.checks if c.check_id != check_id)
            self._publish(current, replace(current, checks=checks))
        else:
            # A tombstone above the record's version, so its digest stamp is newer.
            self._catalog.remove(node, "deregistered", version=self._next_version(node))

    # -- helpers ----------------------------------------------------------------------------

    def _node_and_scope(self, f: Fields, *, writing: bool) -> str:
        node = f.str_("Node")
        if not node:
            raise f.error("Node", "missing required field")
        datacenter = f.str_("Datacenter")
        if datacenter and datacenter != self.datacenter:
            raise f.error(
                "Datacenter",
                f"{shown(datacenter)} is not this agent's datacenter ({shown(self.datacenter)}); "
                "register external nodes on an agent of their datacenter",
            )
        _no_scope(f)
        if f.values.get("Locality") not in (None, {}):
            raise f.error("Locality", "not supported by gossamer")
        self._claim(node, writing=writing)
        return node

    def _claim(self, node: str, *, writing: bool) -> None:
        """Refuse a name this agent may not change: an agent's own, or another agent's node.

        A node this agent already owns may always be deregistered, even if an
        agent of that name has joined since; registering it then is refused.
        The node of an owner that left the cluster (no record, no member) is
        adopted: this agent becomes its owner, so it does not stay frozen.
        """
        current = self._catalog.record(node)
        ours = current is not None and current.is_external and current.origin == self._owner
        if ours and not writing:
            return
        if node == self._owner or (current and not current.is_external) or self._is_member(node):
            raise RegistrationError(
                "Node",
                f"{shown(node)} is an agent of the cluster and owns its record; register its "
                "services through that agent's /v1/agent/service/register",
                status=CONFLICT,
            )
        owner = current.origin if current is not None else ""
        if owner and not ours and (self._catalog.record(owner) or self._is_member(owner)):
            raise RegistrationError(
                "Node",
                f"external node {shown(node)} is owned by agent {shown(owner)}; "
                "change it through that agent (or after it has left the cluster)",
                status=CONFLICT,
            )

    def _node_id(self, f: Fields, node: str) -> str:
        node_id = f.str_("ID")
        if not node_id:
            return ""
        if not _UUID.fullmatch(node_id):
            raise f.error("ID", f"must be a 36-character UUID, got {shown(node_id)}")
        for other in self._catalog.records():
            if other.node != node and other.node_id.lower() == node_id.lower():
                raise f.error("ID", f"{shown(node_id)} is already used by node {shown(other.node)}")
        return node_id

    def _next_version(self, node: str) -> int:
        record = self._catalog.record(node)
        tomb = self._catalog.state.tombstones.get(self.datacenter, {}).get(node)
        held = max(record.version if record else 0, tomb.version if tomb else 0)
        return next_version(held, self._wall_ms())

    def _publish(self, current: NodeRecord | None, record: NodeRecord) -> None:
        record = replace(record, origin=self._owner)  # also adopts an orphan
        if current is not None and replace(current, version=0) == replace(record, version=0):
            return  # nothing changed
        self._catalog.apply([replace(record, version=self._next_version(record.node))])


# --- body parts ---------------------------------------------------------------------------


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
    if len(meta) > META_MAX_PAIRS:
        raise f.error("NodeMeta", f"at most {META_MAX_PAIRS} pairs, got {len(meta)}")
    for key, value in meta.items():
        at = item(f.at("NodeMeta"), key)
        if not _META_KEY.fullmatch(key) or len(key) > META_KEY_MAX:
            raise RegistrationError(
                at, f"key must match ^[a-zA-Z0-9_-]+$ and be at most {META_KEY_MAX} characters"
            )
        if key.startswith(META_RESERVED_PREFIX):
            raise RegistrationError(at, f"the key prefix {META_RESERVED_PREFIX!r} is reserved")
        if len(value.encode()) > META_VALUE_MAX:
            raise RegistrationError(at, f"value must be at most {META_VALUE_MAX} bytes")
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
    durations = {n: format_duration(s) for n in _DEF_DURATION if (s := d.duration(n))}
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
