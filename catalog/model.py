"""Consul's catalog data as frozen values (the JSON Consul answers with is in consul_json.py).

A `NodeRecord` is the unit of replication (DESIGN.md §4): everything one node
publishes about itself (or about an external node it took a registration
for), stamped with a version only its owner ever raises. Services and checks
live inside it, sorted by id, so two agents holding the same record hold
byte-identical data and every answer built from it is stable.

Rules kept here:
- Values are immutable. Opaque JSON parts (`proxy`, `connect`, check
  `definition`) are plain dicts that nobody may mutate after construction.
- Nothing here does I/O or knows about time.
- Fields a newer agent added that this version does not know are kept
  (`unknown_fields`) and relayed unchanged, never read: the owner's
  signature covers them (wire.py), and a relay that dropped them would
  break it. An owner publishes only what it knows (`known_only`).

The owner's version rule (kept by the agent shell, stated here because the
merge relies on it): every change publishes `next_version(previous, wall_ms)`,
so versions never repeat, a restart from an old backup still moves forward,
and a replacement node that reuses a name outranks what the old one left.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

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
    unknown_fields: Mapping[str, Any] = field(default_factory=dict)  # see NodeRecord's


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
    exposed_port: int = 0  # the sidecar's listener its probe goes through (`Expose.Checks`)
    unknown_fields: Mapping[str, Any] = field(default_factory=dict)  # see NodeRecord's

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
    # What a newer owner wrote that this version does not read (here, in each Service
    # and Check): content, kept as it came and never used, so the record relays as signed.
    unknown_fields: Mapping[str, Any] = field(default_factory=dict)
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


def known_only(record: NodeRecord) -> NodeRecord:
    """`record` without the fields this version does not know, unsigned: what an owner
    publishes. It cannot keep fields it does not understand true to its own changes, so
    it leaves them out rather than sign them (a record with none is returned as it is)."""
    if not has_unknown_fields(record):
        return record
    return replace(
        record,
        services=tuple(replace(s, unknown_fields={}) for s in record.services),
        checks=tuple(replace(c, unknown_fields={}) for c in record.checks),
        unknown_fields={},
        signed=None,
    )


def has_unknown_fields(record: NodeRecord) -> bool:
    """Whether a newer agent wrote fields into `record` that this version does not know."""
    parts: list[Service | Check | NodeRecord] = [record, *record.services, *record.checks]
    return any(p.unknown_fields for p in parts)


def _require_unique(what: str, ids: list[str]) -> None:
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise ValueError(f"duplicate {what} ids: {dupes}")
