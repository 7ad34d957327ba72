"""This agent's own node record: what is registered here, its checks' states, its version.

The agent is the only writer of its record (DESIGN.md §4). Every change is
made durable first, so a `kill -9` loses nothing that was acknowledged, and
then published: a new version (`next_version`: above the last one and never
below the wall clock, persisted), the record into the LiveCatalog, and the
version to the `on_version` callback, which puts it in the serf tags so
peers know to pull. Registrations are stored as the bodies given and parsed
again on restart, so the stored form is exactly what Consul clients sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gossamer.agent.checks.runner import CheckRunner, Restore
from gossamer.agent.checks.spec import CheckSpec, spec_from_definition
from gossamer.agent.checks.status import AliasedCheck, NodeHealth
from gossamer.catalog import merge
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import Check, NodeRecord, Service, next_version
from gossamer.catalog.registration import (
    CheckDefinition,
    RegistrationError,
    ServiceRegistration,
    parse_check_registration,
    parse_service_registration,
)
from gossamer.catalog.store import CatalogStore, CheckState

log = logging.getLogger("gossamer.local")

SIDECAR_OF = "_gossamer_sidecar_of"  # marks the stored copy of a generated sidecar
FROM_CONFIG = "_gossamer_from_config"  # marks a registration that a config file made
NODE_MAINT_ID = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"
NODE_MAINT_NOTE = (
    "Maintenance mode is enabled for this node, but no reason was provided. "
    "This is a default message."
)
SERVICE_MAINT_NOTE = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)


class UnknownId(KeyError):
    """A service or check id that is not registered on this agent (HTTP 404)."""

    what = "ID"

    def __str__(self) -> str:  # KeyError's own str is only the quoted key
        return f"Unknown {self.what} {self.args[0]!r}"


class UnknownServiceId(UnknownId):
    what = "service ID"


class UnknownCheckId(UnknownId):
    what = "check ID"


@dataclass(frozen=True)
class NodeIdentity:
    node: str
    node_id: str
    datacenter: str
    address: str
    meta: Mapping[str, str] = field(default_factory=dict)
    # Registered by the agent itself, not through the API: every agent is an
    # instance of service `consul` (port: its agent RPC port), as Consul's
    # servers are, so `consul.service.consul` finds the agents.
    builtin_services: tuple[Service, ...] = ()


class LocalNode:
    def __init__(
        self,
        identity: NodeIdentity,
        store: CatalogStore,
        catalog: LiveCatalog,
        *,
        wall_ms: Callable[[], int],
        on_version: Callable[[int], None],
        allow_script_checks: bool = False,
        allow_local_script_checks: bool = False,
    ) -> None:
        self.identity = identity
        self._store = store
        self._catalog = catalog
        self._wall_ms = wall_ms
        self._on_version = on_version
        self._allow_script = allow_script_checks
        self._allow_local_script = allow_local_script_checks or allow_script_checks
        self._registrations: dict[str, ServiceRegistration] = {}
        self._standalone: dict[str, CheckDefinition] = {}
        self._status: dict[str, tuple[str, str]] = {}
        self.runner = CheckRunner(self._check_changed, alias_lookup=self._alias_health)
        self._config_services: set[str] = set()
        self._config_checks: set[str] = set()
        self.version = store.last_version()

    # -- start-up --------------------------------------------------------------------------

    def restore(self) -> None:
        """Bring back what was registered before a restart, then publish once."""
        stored = self._store.services()
        states = self._store.check_states()
        sidecar_ports = {
            body[SIDECAR_OF]: int(body.get("Port", 0))
            for body in stored.values()
            if isinstance(body.get(SIDECAR_OF), str)
        }
        for service_id, body in stored.items():
            if body.get(FROM_CONFIG):
                self._config_services.add(service_id)  # the config applies it again
                continue
            if SIDECAR_OF in body:
                continue
            try:
                reg = self._parse_service(body, previous_sidecar_port=sidecar_ports.get(service_id))
            except RegistrationError as exc:
                log.error("stored service %s no longer parses, skipped: %s", service_id, exc)
                continue
            self._registrations[reg.service.id] = reg
        for check_id, stored_check in self._store.checks().items():
            if stored_check.definition.get(FROM_CONFIG):
                self._config_checks.add(check_id)
            elif stored_check.definition.get("_standalone"):
                self._restore_standalone(check_id, stored_check.definition["body"])
        for defn in self._all_checks():
            state = states.get(defn.check_id)
            self._status[defn.check_id] = (
                (state.status, state.output) if state else (defn.status, "")
            )
            restore = Restore(state.status, state.output) if state else None  # type: ignore[arg-type]
            self.runner.add(spec_from_definition(defn), restore)
        self.publish()

    def _restore_standalone(self, check_id: str, body: Mapping[str, Any]) -> None:
        try:
            defn = parse_check_registration(
                body, service_ids=set(self._service_map()), allow_script=True
            )
        except RegistrationError as exc:
            log.error("stored check %s no longer parses, skipped: %s", check_id, exc)
            return
        self._standalone[defn.check_id] = defn

    # -- registration ------------------------------------------------------------------------

    def register_service(
        self,
        body: Mapping[str, Any],
        *,
        replace_existing_checks: bool = False,
        from_config: bool = False,
        publish: bool = True,
    ) -> Service:
        """Parse, store and publish one registration; RegistrationError leaves nothing behind."""
        allow_script = self._allow_local_script if from_config else self._allow_script
        reg = self._parse_service(body, previous_sidecar_port=None, allow_script=allow_script)
        old = self._registrations.get(reg.service.id)
        if old is not None and old.sidecar is not None and reg.sidecar is not None:
            # A re-registered sidecar keeps its port, as in Consul.
            reg = self._parse_service(
                body, previous_sidecar_port=old.sidecar.port, allow_script=allow_script
            )
        specs = self._specs(self._checks_of(reg))  # before storing: nothing half-registered
        checks = {c.check_id: {"ServiceID": c.service_id} for c in reg.checks}
        stored = dict(body) | ({FROM_CONFIG: True} if from_config else {})
        self._store.put_service(
            reg.service.id, stored, checks, replace_checks=replace_existing_checks
        )
        if reg.sidecar is not None:
            sidecar = reg.sidecar
            stub = {"ID": sidecar.id, "Port": sidecar.port, SIDECAR_OF: reg.service.id}
            stub_checks = {c.check_id: {"ServiceID": c.service_id} for c in reg.sidecar_checks}
            self._store.put_service(sidecar.id, stub, stub_checks, replace_checks=True)
        kept = {c.check_id for c in self._checks_of(reg)}
        if old is not None:
            self._drop_checks([c for c in self._checks_of(old) if c.check_id not in kept])
        self._registrations[reg.service.id] = reg
        for defn, spec in zip(self._checks_of(reg), specs, strict=True):
            self._status.setdefault(defn.check_id, (defn.status, ""))
            self.runner.add(spec)
        if publish:
            self.publish()
        return reg.service

    @staticmethod
    def _specs(defns: tuple[CheckDefinition, ...]) -> list[CheckSpec]:
        try:
            return [spec_from_definition(d) for d in defns]
        except ValueError as exc:
            raise RegistrationError("Check", str(exc)) from None

    def apply_config(
        self, services: list[dict[str, Any]], checks: list[dict[str, Any]]
    ) -> list[str]:
        """Register what the config files define, drop what they no longer do.

        Returns one message per definition that could not be applied (e.g. a
        script check while `enable_local_script_checks` is off); the others
        still apply. One publish at the end, however many there are.
        """
        problems: list[str] = []
        now_services: set[str] = set()
        for i, body in enumerate(services):
            try:
                now_services.add(self.register_service(body, from_config=True, publish=False).id)
            except RegistrationError as exc:
                problems.append(f"services[{i}]: {exc}")
        now_checks: set[str] = set()
        for i, body in enumerate(checks):
            try:
                now_checks.add(self.register_check(body, from_config=True, publish=False).check_id)
            except RegistrationError as exc:
                problems.append(f"checks[{i}]: {exc}")
        for service_id in self._config_services - now_services:
            self._forget_service(service_id)
        for check_id in self._config_checks - now_checks:
            self._forget_check(check_id)
        self._config_services, self._config_checks = now_services, now_checks
        self.publish()
        return problems

    def _forget_service(self, service_id: str) -> None:
        if service_id in self._registrations:
            self.deregister_service(service_id, publish=False)
        else:
            self._store.delete_service(service_id)

    def _forget_check(self, check_id: str) -> None:
        if check_id in self._standalone:
            self.deregister_check(check_id, publish=False)
        else:
            self._store.delete_check(check_id)

    def deregister_service(self, service_id: str, *, publish: bool = True) -> None:
        """Remove a service, its sidecar and every check bound to them (as Consul does)."""
        reg = self._registrations.pop(service_id, None)
        if reg is None:
            raise UnknownServiceId(service_id)
        self._store.delete_service(service_id)
        if reg.sidecar is not None:
            self._store.delete_service(reg.sidecar.id)
        gone = {s.id for s in reg.services()}
        bound = [cid for cid, d in self._standalone.items() if d.service_id in gone]
        self._drop_checks([*self._checks_of(reg), *(self._standalone.pop(c) for c in bound)])
        if publish:
            self.publish()

    def register_check(
        self, body: Mapping[str, Any], *, from_config: bool = False, publish: bool = True
    ) -> CheckDefinition:
        allow_script = self._allow_local_script if from_config else self._allow_script
        defn = parse_check_registration(
            body, service_ids=set(self._service_map()), allow_script=allow_script
        )
        (spec,) = self._specs((defn,))
        stored = {"_standalone": True, "body": dict(body), FROM_CONFIG: from_config}
        self._store.put_check(defn.check_id, stored, service_id=defn.service_id)
        self._standalone[defn.check_id] = defn
        self._status.setdefault(defn.check_id, (defn.status, ""))
        self.runner.add(spec)
        if publish:
            self.publish()
        return defn

    def deregister_check(self, check_id: str, *, publish: bool = True) -> None:
        defn = self._standalone.pop(check_id, None)
        if defn is None:
            raise UnknownCheckId(check_id)
        self._store.delete_check(check_id)
        self._drop_checks([defn])
        if publish:
            self.publish()

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        """PUT /v1/agent/check/pass|warn|fail|update; UnknownCheckId when not registered here."""
        if not any(d.check_id == check_id for d in self._all_checks()):
            raise UnknownCheckId(check_id)
        self.runner.ttl_update(check_id, status, output)

    def set_maintenance(self, service_id: str | None, reason: str | None) -> None:
        if service_id is not None and service_id not in self._service_map():
            raise UnknownServiceId(service_id)
        self._store.set_maintenance(service_id, reason)
        self.publish()

    def _drop_checks(self, defns: list[CheckDefinition] | tuple[CheckDefinition, ...]) -> None:
        for defn in defns:
            self.runner.remove(defn.check_id)
            self._status.pop(defn.check_id, None)

    # -- what is registered ---------------------------------------------------------------------

    def _parse_service(
        self,
        body: Mapping[str, Any],
        *,
        previous_sidecar_port: int | None,
        allow_script: bool = True,
    ) -> ServiceRegistration:
        used = {
            s.port
            for reg in self._registrations.values()
            for s in reg.services()
            if s.kind == "connect-proxy"
        }
        return parse_service_registration(
            body,
            node_address=self.identity.address,
            used_sidecar_ports=used,
            allow_script=allow_script,
            previous_sidecar_port=previous_sidecar_port,
        )

    @staticmethod
    def _checks_of(reg: ServiceRegistration) -> tuple[CheckDefinition, ...]:
        return reg.checks + reg.sidecar_checks

    def _service_map(self) -> dict[str, Service]:
        return {s.id: s for reg in self._registrations.values() for s in reg.services()}

    def check_definitions(self) -> list[CheckDefinition]:
        """Every check registered here (service, sidecar and standalone)."""
        return self._all_checks()

    def _all_checks(self) -> list[CheckDefinition]:
        regs = [c for reg in self._registrations.values() for c in self._checks_of(reg)]
        return regs + list(self._standalone.values())

    def services(self) -> dict[str, Service]:
        return dict(sorted(self._service_map().items()))

    def all_services(self) -> tuple[Service, ...]:
        """What the node record carries: API registrations plus the built-in ones."""
        builtin = {s.id: s for s in self.identity.builtin_services}
        return tuple(sorted((builtin | self._service_map()).values(), key=lambda s: s.id))

    def checks(self) -> list[Check]:
        """Every check of this node as it stands now, maintenance checks included."""
        services = self._service_map()
        out = []
        for defn in self._all_checks():
            status, output = self._status.get(defn.check_id, (defn.status, ""))
            check = defn.to_check(services.get(defn.service_id) if defn.service_id else None)
            out.append(replace(check, status=status, output=output))
        return out + self._maintenance_checks(services)

    def _maintenance_checks(self, services: Mapping[str, Service]) -> list[Check]:
        maint = self._store.maintenance()
        out = []
        if maint.node is not None:
            out.append(Check(check_id=NODE_MAINT_ID, name="Node Maintenance Mode",
                             status="critical", notes=maint.node or NODE_MAINT_NOTE,
                             type="maintenance"))  # fmt: skip
        for service_id, reason in sorted(maint.services.items()):
            service = services.get(service_id)
            if service is None:
                continue
            out.append(Check(check_id=SERVICE_MAINT_PREFIX + service_id,
                             name="Service Maintenance Mode", status="critical",
                             notes=reason or SERVICE_MAINT_NOTE, service_id=service_id,
                             service_name=service.name, service_tags=service.tags,
                             type="maintenance"))  # fmt: skip
        return out

    def _alias_health(self, node: str) -> NodeHealth | None:
        """What an alias check sees: this node's live state, or a peer's from the catalog."""
        if node in ("", self.identity.node):
            services, checks = frozenset(self._service_map()), self.checks()
        else:
            record = self._catalog.record(node)
            if record is None:
                return None
            services = frozenset(s.id for s in record.services)
            checks = list(merge.node_checks(self._catalog.state, record)) + [
                c for c in record.checks if c.service_id
            ]
        aliased = tuple(
            AliasedCheck(name=c.name, status=c.status, output=c.output, service_id=c.service_id)  # type: ignore[arg-type]
            for c in checks
            if c.status in ("passing", "warning", "critical")
        )
        return NodeHealth(node=node or self.identity.node, services=services, checks=aliased)

    # -- publishing ------------------------------------------------------------------------

    def _check_changed(self, check_id: str, status: str, output: str) -> None:
        if check_id not in self._status:
            return  # deregistered while its last run finished
        self._status[check_id] = (status, output)
        self._store.put_check_state(check_id, CheckState(status=status, output=output))
        self.publish()

    def record(self) -> NodeRecord:
        i = self.identity
        return NodeRecord(
            node=i.node,
            node_id=i.node_id,
            datacenter=i.datacenter,
            address=i.address,
            version=self.version,
            origin=i.node,
            tagged_addresses={"lan": i.address, "lan_ipv4": i.address},
            meta=dict(i.meta),
            services=self.all_services(),
            checks=tuple(sorted(self.checks(), key=lambda c: c.check_id)),
        )

    def publish(self) -> None:
        """Persist a higher version and put the new record into the catalog."""
        candidate = self.record()
        current = self._catalog.record(self.identity.node)
        if current is not None and replace(current, version=0) == replace(candidate, version=0):
            return  # nothing a reader could see changed
        self.version = self._store.save_last_version(next_version(self.version, self._wall_ms()))
        self._catalog.apply([replace(candidate, version=self.version)])
        self._on_version(self.version)

    async def stop(self) -> None:
        await self.runner.stop()
