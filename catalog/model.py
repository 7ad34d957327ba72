"""Consul's catalog data as frozen values, and the exact JSON shapes Consul answers with.

A `NodeRecord` is the unit of replication (DESIGN.md §4): everything one node
publishes about itself (or about an external node it took a registration
for), stamped with a version only its owner ever raises. Services and checks
live inside it, sorted by id, so two agents holding the same record hold
byte-identical data and every answer built from it is stable.

Rules kept here:
- Values are immutable. Opaque JSON parts (`proxy`, `connect`, check
  `definition`) are plain dicts that nobody may mutate after construction.
- The JSON renderers follow what a real Consul agent sends, which differs
  from its docs in places (noted where it does): clients such as py-consul
  and consul-template decode these shapes, so field names are exact and
  lists are `[]`, never `null`.
- Nothing here does I/O or knows about time; indexes are passed in.

The owner's version rule (kept by the agent shell, stated here because the
merge relies on it): every change publishes `next_version(previous, wall_ms)`,
so versions never repeat, a restart from an old backup still moves forward,
and a replacement node that reuses a name outranks what the old one left.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.catalog.tagged import node_tagged, service_tagged

JsonObject = dict[str, Any]

STATUSES = ("passing", "warning", "critical", "maintenance")
"""Check states Consul stores; `any` exists only as a query word."""

SERF_HEALTH_ID = "serfHealth"
SERF_HEALTH_NAME = "Serf Health Status"


def next_version(previous: int, wall_ms: int) -> int:
    """The version an owner publishes next: above the last one and never below the wall clock.

    The wall-clock floor is what lets a node that lost its data dir, or a new
    machine reusing a name, win against the old record and its tombstone.
    """
    return max(previous + 1, wall_ms)


@dataclass(frozen=True)
class Service:
    """One service instance as registered on its node (Consul's NodeService)."""

    id: str
    name: str
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: Mapping[str, str] = field(default_factory=dict)
    tagged_addresses: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    weights: tuple[int, int] = (1, 1)
    kind: str = ""
    proxy: Mapping[str, Any] = field(default_factory=dict)
    connect: Mapping[str, Any] = field(default_factory=dict)
    enable_tag_override: bool = False
    locality: Mapping[str, str] = field(default_factory=dict)  # Region, Zone when set


@dataclass(frozen=True)
class Check:
    """One health check's current state; node-level when `service_id` is empty."""

    check_id: str
    name: str
    status: str = "critical"
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = ()
    type: str = ""
    definition: Mapping[str, Any] = field(default_factory=dict)
    interval: str = ""
    timeout: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check {self.check_id!r}: status {self.status!r} not in {STATUSES}")


@dataclass(frozen=True)
class OwnerSignature:
    """The owner agent's signature over a record, and its certificate chain (DER: agent
    certificate, then its intermediate), so any agent can check a record a third one relays.

    Made and checked in `proxy.ca.record_signature`; the catalog only carries it.
    """

    signature: bytes
    chain: tuple[bytes, ...]


@dataclass(frozen=True)
class NodeRecord:
    """Everything one owner publishes about one node, at one version.

    `origin` is the agent that owns and serves the record: the node itself,
    or for an external node (PUT /v1/catalog/register) the agent that took
    the registration. Services and checks are sorted by id on construction
    and ids must be unique, so equal content means equal records.
    """

    node: str
    node_id: str
    datacenter: str
    address: str
    version: int
    origin: str
    tagged_addresses: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, str] = field(default_factory=dict)
    services: tuple[Service, ...] = ()
    checks: tuple[Check, ...] = ()
    # Not part of the content: the same record signed twice is the same record.
    signed: OwnerSignature | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        services = tuple(sorted(self.services, key=lambda s: s.id))
        checks = tuple(sorted(self.checks, key=lambda c: c.check_id))
        _require_unique("service", [s.id for s in services])
        _require_unique("check", [c.check_id for c in checks])
        object.__setattr__(self, "services", services)
        object.__setattr__(self, "checks", checks)

    @property
    def is_external(self) -> bool:
        """True for nodes registered through the catalog API rather than running an agent."""
        return self.origin != self.node

    def service(self, service_id: str) -> Service | None:
        """The service with that id on this node, if any."""
        return next((s for s in self.services if s.id == service_id), None)

    def checks_for(self, service_id: str) -> tuple[Check, ...]:
        """Node-level checks plus the given service's: what decides that instance's health."""
        return tuple(c for c in self.checks if c.service_id in ("", service_id))


def _require_unique(what: str, ids: list[str]) -> None:
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise ValueError(f"duplicate {what} ids: {dupes}")


# --- Consul JSON shapes -----------------------------------------------------------------


def _service_tagged(service: Service, *, external: bool = False) -> JsonObject:
    # Consul's docs show lowercase "address"/"port"; real agents send the Go
    # field names (Address, Port), and that is what clients have seen.
    stored = service.tagged_addresses
    tagged = dict(sorted(stored.items())) if external else service_tagged(service, stored)
    return {k: {"Address": a, "Port": p} for k, (a, p) in tagged.items()}


def _node_tagged(record: NodeRecord) -> dict[str, str]:
    return node_tagged(record.address, record.tagged_addresses, external=record.is_external)


def _weights(service: Service) -> JsonObject:
    return {"Passing": service.weights[0], "Warning": service.weights[1]}


def _proxy(service: Service) -> JsonObject:
    # A real agent renders the zero Go struct for services without a proxy.
    return dict(service.proxy) if service.proxy else {"Mode": "", "MeshGateway": {}, "Expose": {}}


def service_to_agent_json(service: Service, datacenter: str) -> JsonObject:
    """A value of GET /v1/agent/services (and the body of /v1/agent/service/<id>).

    Like Consul, `Kind`, `Proxy` and `Connect` appear only when set.
    """
    body: JsonObject = {}
    if service.kind:
        body["Kind"] = service.kind
    body |= {
        "ID": service.id,
        "Service": service.name,
        "Tags": list(service.tags),
        "Meta": dict(service.meta),
        "Port": service.port,
        "Address": service.address,
        "TaggedAddresses": _service_tagged(service),
        "Weights": _weights(service),
        "EnableTagOverride": service.enable_tag_override,
        "Datacenter": datacenter,
    }
    if service.proxy:
        body["Proxy"] = dict(service.proxy)
    if service.connect:
        body["Connect"] = dict(service.connect)
    if service.locality:
        body["Locality"] = dict(service.locality)
    return body


def node_json(record: NodeRecord, *, create_index: int = 0, modify_index: int = 0) -> JsonObject:
    """A row of GET /v1/catalog/nodes, and the `Node` object of health rows."""
    return {
        "ID": record.node_id,
        "Node": record.node,
        "Address": record.address,
        "Datacenter": record.datacenter,
        "TaggedAddresses": _node_tagged(record),
        "Meta": dict(record.meta),
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    }


def service_json(
    service: Service, *, create_index: int = 0, modify_index: int = 0, external: bool = False
) -> JsonObject:
    """The `Service` object of /v1/health/service rows and /v1/catalog/node services."""
    body: JsonObject = {
        "ID": service.id,
        "Service": service.name,
        "Tags": list(service.tags),
        "Address": service.address,
        "TaggedAddresses": _service_tagged(service, external=external),
        "Meta": dict(service.meta),
        "Port": service.port,
        "Weights": _weights(service),
        "EnableTagOverride": service.enable_tag_override,
        "Proxy": _proxy(service),
        "Connect": dict(service.connect),
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    }
    if service.locality:
        body["Locality"] = dict(service.locality)
    if service.kind:
        body = {"Kind": service.kind} | body
    return body


def catalog_service_row(
    record: NodeRecord, service: Service, *, create_index: int = 0, modify_index: int = 0
) -> JsonObject:
    """A row of GET /v1/catalog/service/<name>: node fields flattened next to Service* fields."""
    row = {
        "ID": record.node_id,
        "Node": record.node,
        "Address": record.address,
        "Datacenter": record.datacenter,
        "TaggedAddresses": _node_tagged(record),
        "NodeMeta": dict(record.meta),
        "ServiceKind": service.kind,
        "ServiceID": service.id,
        "ServiceName": service.name,
        "ServiceTags": list(service.tags),
        "ServiceAddress": service.address,
        "ServiceTaggedAddresses": _service_tagged(service, external=record.is_external),
        "ServiceWeights": _weights(service),
        "ServiceMeta": dict(service.meta),
        "ServicePort": service.port,
        "ServiceEnableTagOverride": service.enable_tag_override,
        "ServiceProxy": _proxy(service),
        "ServiceConnect": dict(service.connect),
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    }
    return row | ({"ServiceLocality": dict(service.locality)} if service.locality else {})


def check_json(
    node: str, check: Check, *, create_index: int = 0, modify_index: int = 0
) -> JsonObject:
    """A HealthCheck object (/v1/health/*, /v1/agent/checks values), as a real agent sends it."""
    return {
        "Node": node,
        "CheckID": check.check_id,
        "Name": check.name,
        "Status": check.status,
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": check.service_id,
        "ServiceName": check.service_name,
        "ServiceTags": list(check.service_tags),
        "Type": check.type,
        "Interval": check.interval,
        "Timeout": check.timeout,
        "ExposedPort": 0,
        "Definition": dict(check.definition),
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    }


def health_service_row(
    record: NodeRecord, service: Service, checks: tuple[Check, ...], *, index: int = 0
) -> JsonObject:
    """A row of GET /v1/health/service/<name>: Node, Service and the checks that decide it.

    `checks` is passed in (node checks, the gossip `serfHealth` overlay and the
    service's own) because the overlay is not part of the record.
    """
    return {
        "Node": node_json(record, create_index=index, modify_index=index),
        "Service": service_json(
            service, create_index=index, modify_index=index, external=record.is_external
        ),
        "Checks": [
            check_json(record.node, c, create_index=index, modify_index=index) for c in checks
        ],
    }
