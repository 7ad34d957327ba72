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
external node of another agent, is a RegistrationConflict (409: its owner is
the only writer), as is an `ID` another node already uses; a `Datacenter`
other than ours is refused.

Versions: each change publishes `next_version(newest held, wall clock)`, the
newest held being the record's or its tombstone's version. The LiveCatalog
persists both, so a restart resumes above them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import NodeRecord, next_version
from gossamer.catalog.registration import RegistrationConflict, RegistrationError
from gossamer.catalog.registration_fields import shown
from gossamer.catalog.registration_node import (
    NodeRegistration,
    parse_node_deregistration,
    parse_node_registration,
)


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
        reg = parse_node_registration(body, self.datacenter)
        self._claim(reg.node, writing=True)
        current = self._catalog.record(reg.node)
        if not reg.address and (current is None or not reg.skip_node_update):
            raise RegistrationError(
                "Address", "missing required field (unless SkipNodeUpdate is set)"
            )
        self._unique_id(reg)
        self._publish(current, _upserted(current, reg, self.datacenter, self._owner))

    def deregister(self, body: object) -> None:
        """Drop a service, a check or the whole node; unknown ones are a no-op."""
        dereg = parse_node_deregistration(body, self.datacenter)
        self._claim(dereg.node, writing=False)
        current = self._catalog.record(dereg.node)
        if current is None:
            return
        if dereg.service_id:
            if current.service(dereg.service_id) is None:
                return
            services = tuple(s for s in current.services if s.id != dereg.service_id)
            checks = tuple(c for c in current.checks if c.service_id != dereg.service_id)
            self._publish(current, replace(current, services=services, checks=checks))
        elif dereg.check_id:
            checks = tuple(c for c in current.checks if c.check_id != dereg.check_id)
            self._publish(current, replace(current, checks=checks))
        else:
            # A tombstone above the record's version, so its digest stamp is newer.
            self._catalog.remove(
                dereg.node, "deregistered", version=self._next_version(dereg.node), must_store=True
            )

    # -- helpers ----------------------------------------------------------------------------

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
            raise RegistrationConflict(
                "Node",
                f"{shown(node)} is an agent of the cluster and owns its record; register its "
                "services through that agent's /v1/agent/service/register",
            )
        owner = current.origin if current is not None else ""
        if owner and not ours and (self._catalog.record(owner) or self._is_member(owner)):
            raise RegistrationConflict(
                "Node",
                f"external node {shown(node)} is owned by agent {shown(owner)}; "
                "change it through that agent (or after it has left the cluster)",
            )

    def _unique_id(self, reg: NodeRegistration) -> None:
        if not reg.node_id:
            return
        for other in self._catalog.records():
            if other.node != reg.node and other.node_id.lower() == reg.node_id.lower():
                raise RegistrationConflict(
                    "ID", f"{shown(reg.node_id)} is already used by node {shown(other.node)}"
                )

    def republish(self) -> None:
        """Publish every external node this agent owns at a new version (to sign it again)."""
        mine = [r for r in self._catalog.records() if r.is_external and r.origin == self._owner]
        if mine:
            self._catalog.apply([replace(r, version=self._next_version(r.node)) for r in mine])

    def _next_version(self, node: str) -> int:
        return next_version(self._catalog.held_version(node), self._wall_ms())

    def _publish(self, current: NodeRecord | None, record: NodeRecord) -> None:
        record = replace(record, origin=self._owner)  # also adopts an orphan
        if current is not None and replace(current, version=0) == replace(record, version=0):
            return  # nothing changed
        # what the caller is told is written: stored first (a full disk answers 500)
        self._catalog.apply(
            [replace(record, version=self._next_version(record.node))], must_store=True
        )


def _upserted(
    current: NodeRecord | None, reg: NodeRegistration, datacenter: str, owner: str
) -> NodeRecord:
    """The node's record after Consul's upsert rules (version set when published)."""
    record = current or NodeRecord(reg.node, "", datacenter, reg.address, 0, owner)
    if current is None or not reg.skip_node_update:
        record = replace(
            record,
            node_id=reg.node_id or record.node_id,
            address=reg.address,
            tagged_addresses=reg.tagged_addresses,
            meta=reg.meta,
        )
    services = {s.id: s for s in record.services}
    if reg.service is not None:
        services[reg.service.id] = reg.service
    checks = {c.check_id: c for c in record.checks}
    for path, check in reg.checks:
        if check.service_id and check.service_id not in services:
            raise RegistrationError(
                f"{path}.ServiceID",
                f"Missing service registration: no service {shown(check.service_id)} "
                f"on node {shown(reg.node)}",
            )
        checks[check.check_id] = check
    bound = {
        cid: replace(c, service_name=services[c.service_id].name,
                     service_tags=services[c.service_id].tags)
        for cid, c in checks.items() if c.service_id
    }  # fmt: skip
    return replace(
        record, services=tuple(services.values()), checks=tuple((checks | bound).values())
    )
