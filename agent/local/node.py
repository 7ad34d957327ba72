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
from dataclasses import replace
from typing import Any

from gossamer.agent.checks import spec
from gossamer.agent.checks.runner import CheckRunner, Restore
from gossamer.agent.checks.status import NodeHealth, parse_status
from gossamer.agent.local.alias import own_health, peer_health
from gossamer.agent.local.exposed import reexpose
from gossamer.agent.local.maintenance import maintenance_checks
from gossamer.agent.local.own_record import NodeIdentity, own_record, unchanged
from gossamer.agent.local.proxy_keys import check_proxy_keys
from gossamer.agent.local.registry import Registry, UnknownCheckId, UnknownServiceId, checks_of
from gossamer.agent.local.stored import (
    FromConfig,
    delete_service,
    drop_sidecar,
    restore_registrations,
    store_check,
    store_service,
)
from gossamer.catalog.expose_checks import expose_checks, wants_checks
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import Check, NodeRecord, Service, next_version
from gossamer.catalog.registration import (
    CheckDefinition,
    RegistrationError,
    ServiceRegistration,
    parse_check_registration,
    parse_service_registration,
)
from gossamer.catalog.store import CatalogStore, CheckState, StoreError

log = logging.getLogger("gossamer.local")


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
        # Who hears of each new version: the agent points it at serf's tags once serf runs.
        self.on_version = on_version
        self._allow_script = allow_script_checks
        self._allow_local_script = allow_local_script_checks or allow_script_checks
        self._registry = Registry()
        self.runner = CheckRunner(self._check_changed, alias_lookup=self._alias_health)
        self.version = store.last_version()

    # -- start-up --------------------------------------------------------------------------

    def restore(self) -> FromConfig:
        """Bring back what was registered before a restart, then publish once.

        What config files registered is not brought back: the config applies
        it again (ConfigRegistrations, given the ids returned here).
        """
        from_config = restore_registrations(self._store, self._registry, self._parse_stored)
        for service_id in list(self._registry.registrations):  # checks registered alone too
            reexpose(self._registry, service_id)
        states = self._store.check_states()
        for defn in self._registry.all_checks():
            state = states.get(defn.check_id)
            self._registry.status[defn.check_id] = (
                (state.status, state.output) if state else (defn.status, "")
            )
            restore = Restore(state.status, state.output) if state else None  # type: ignore[arg-type]
            self.runner.add(defn, restore)
        self.publish()
        return from_config

    def _parse_stored(
        self, body: Mapping[str, Any], sidecar_port: int | None
    ) -> ServiceRegistration:
        return self._parse_service(body, previous_sidecar_port=sidecar_port)

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
        old = self._registry.registrations.get(reg.service.id)
        if old is not None and old.sidecar is not None and reg.sidecar is not None:
            # A re-registered sidecar keeps its port, as in Consul.
            reg = self._parse_service(
                body, previous_sidecar_port=old.sidecar.port, allow_script=allow_script
            )
        self._check_runnable(checks_of(reg))  # before storing: nothing half-registered
        store_service(
            self._store, reg, body, from_config=from_config, replace_checks=replace_existing_checks
        )
        kept = {c.check_id for c in checks_of(reg)}
        if old is not None:
            self._drop_checks([c for c in checks_of(old) if c.check_id not in kept])
        self._registry.put(reg)
        for defn in checks_of(reg):
            self._registry.status.setdefault(defn.check_id, (defn.status, ""))
            self.runner.add(defn)
        self._rerun(reexpose(self._registry, reg.service.id))  # its checks registered alone
        if publish:
            self.publish()
        return reg.service

    def _forget_standalone(self, check_id: str, old: CheckDefinition | None) -> None:
        if old is None:
            self._registry.standalone.pop(check_id, None)
        else:
            self._registry.standalone[check_id] = old

    def _rerun(self, defns: list[CheckDefinition]) -> None:
        """Run checks again whose target changed, from the status they had."""
        for defn in defns:
            status, output = self._registry.status.get(defn.check_id, (defn.status, ""))
            self.runner.add(defn, Restore(parse_status(status), output))

    @staticmethod
    def _check_runnable(defns: tuple[CheckDefinition, ...]) -> None:
        try:
            for d in defns:
                spec.validate(d)
        except ValueError as exc:
            raise RegistrationError("Check", str(exc)) from None

    def forget_service(self, service_id: str) -> None:
        """Deregister it if registered now, else drop what the store kept (no publish)."""
        if service_id in self._registry.registrations:
            self.deregister_service(service_id, publish=False)
        else:
            self._store.delete_service(service_id)

    def forget_check(self, check_id: str) -> None:
        """Deregister it if registered now, else drop what the store kept (no publish)."""
        if check_id in self._registry.standalone:
            self.deregister_check(check_id, publish=False)
        else:
            self._store.delete_check(check_id)

    def deregister_service(self, service_id: str, *, publish: bool = True) -> None:
        """Remove a service, its sidecar and every check bound to them (as Consul does)."""
        reg = self._registry.pop(service_id)
        if reg is None:
            return self._deregister_sidecar(service_id, publish=publish)
        delete_service(self._store, reg)
        gone = {s.id for s in reg.services()}
        bound = [cid for cid, d in self._registry.standalone.items() if d.service_id in gone]
        self._drop_checks([*checks_of(reg), *(self._registry.standalone.pop(c) for c in bound)])
        if publish:
            self.publish()

    def _deregister_sidecar(self, sidecar_id: str, *, publish: bool) -> None:
        """Remove a generated sidecar alone; its parent stays (Nomad removes sidecar first)."""
        parent = self._registry.parent_of_sidecar(sidecar_id)
        if parent is None:
            raise UnknownServiceId(sidecar_id)
        self._registry.put(drop_sidecar(self._store, parent))
        self._drop_checks(parent.sidecar_checks)
        # checks that went through the sidecar: back on their own targets
        self._rerun(reexpose(self._registry, parent.service.id))
        if publish:
            self.publish()

    def register_check(
        self, body: Mapping[str, Any], *, from_config: bool = False, publish: bool = True
    ) -> CheckDefinition:
        allow_script = self._allow_local_script if from_config else self._allow_script
        defn = parse_check_registration(
            body, service_ids=set(self._registry.service_map()), allow_script=allow_script
        )
        self._check_runnable((defn,))
        old = self._registry.standalone.get(defn.check_id)
        self._registry.standalone[defn.check_id] = defn
        try:  # one for a service whose sidecar exposes its checks goes through it too
            changed = reexpose(self._registry, defn.service_id) if defn.service_id else []
        except RegistrationError:
            self._forget_standalone(defn.check_id, old)
            raise
        defn = self._registry.standalone[defn.check_id]
        try:
            store_check(self._store, defn, body, from_config=from_config)
        except StoreError:  # not stored (a full disk): nothing of it may stay in memory
            self._forget_standalone(defn.check_id, old)
            if defn.service_id:
                reexpose(self._registry, defn.service_id)  # its exposed path goes again
            raise
        self._registry.status.setdefault(defn.check_id, (defn.status, ""))
        self.runner.add(defn)
        self._rerun([d for d in changed if d.check_id != defn.check_id])
        if publish:
            self.publish()
        return defn

    def deregister_check(self, check_id: str, *, publish: bool = True) -> None:
        defn = self._registry.standalone.pop(check_id, None)
        if defn is None:
            raise UnknownCheckId(check_id)
        self._store.delete_check(check_id)
        self._drop_checks([defn])
        if defn.service_id:  # its exposed path goes (expose_checks.py)
            self._rerun(reexpose(self._registry, defn.service_id))
        if publish:
            self.publish()

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        """PUT /v1/agent/check/pass|warn|fail|update; UnknownCheckId when not registered here."""
        if not any(d.check_id == check_id for d in self._registry.all_checks()):
            raise UnknownCheckId(check_id)
        self.runner.ttl_update(check_id, status, output)

    def set_maintenance(self, service_id: str | None, reason: str | None) -> None:
        if service_id is not None and service_id not in self._registry.service_map():
            raise UnknownServiceId(service_id)
        self._store.set_maintenance(service_id, reason)
        self.publish()

    def _drop_checks(self, defns: list[CheckDefinition] | tuple[CheckDefinition, ...]) -> None:
        for defn in defns:
            self.runner.remove(defn.check_id)
            self._registry.status.pop(defn.check_id, None)

    # -- what is registered ---------------------------------------------------------------------

    def _parse_service(
        self,
        body: Mapping[str, Any],
        *,
        previous_sidecar_port: int | None,
        allow_script: bool = True,
    ) -> ServiceRegistration:
        reg = parse_service_registration(
            body,
            node_address=self.identity.address,
            used_sidecar_ports=self._registry.used_sidecar_ports(),
            allow_script=allow_script,
            previous_sidecar_port=previous_sidecar_port,
        )
        check_proxy_keys(reg)  # the built-in proxy's keys: a 400 now, not an exit later
        if wants_checks(reg):  # its HTTP and gRPC checks through its sidecar
            sid = reg.service.id
            old = self._registry.registrations.get(sid)
            had = {c.check_id: c.exposed_port for c in old.checks} if old is not None else {}
            reg = expose_checks(reg, self._registry.exposed_ports(sid), had)
        return reg

    def check_definitions(self) -> list[CheckDefinition]:
        """Every check registered here (service, sidecar and standalone)."""
        return self._registry.all_checks()

    @property
    def generation(self) -> int:
        """Moves on every change of what `services()` returns (prepared answers' stamp)."""
        return self._registry.generation

    def services(self) -> dict[str, Service]:
        return dict(sorted(self._registry.service_map().items()))

    def all_services(self) -> tuple[Service, ...]:
        """What the node record carries: API registrations plus the built-in ones."""
        builtin = {s.id: s for s in self.identity.builtin_services}
        return tuple(sorted((builtin | self._registry.service_map()).values(), key=lambda s: s.id))

    def checks(self) -> list[Check]:
        """Every check of this node as it stands now, maintenance checks included."""
        services = self._registry.service_map()
        maintenance = maintenance_checks(self._store.maintenance(), services)
        return self._registry.check_rows(services) + maintenance

    def _alias_health(self, node: str) -> NodeHealth | None:
        """What an alias check sees: this node's live state, or a peer's from the catalog."""
        if node in ("", self.identity.node):
            return own_health(self.identity.node, self._registry.service_map(), self.checks())
        return peer_health(self._catalog, node)

    # -- publishing ------------------------------------------------------------------------

    def _check_changed(self, check_id: str, status: str, output: str) -> None:
        if check_id not in self._registry.status:
            return  # deregistered while its last run finished
        self._registry.status[check_id] = (status, output)
        try:
            self._store.put_check_state(check_id, CheckState(status=status, output=output))
        except StoreError as exc:  # a full disk must not hide a check gone critical: publish
            log.warning("check %s is %s; its state is not stored: %s", check_id, status, exc)
        self.publish()

    def record(self) -> NodeRecord:
        return own_record(self.identity, self.version, self.all_services(), self.checks())

    def publish(self, *, force: bool = False) -> None:
        """Persist a higher version and put the new record into the catalog.

        `force`: even when nothing a reader could see changed (the record is
        to be signed again with a new agent certificate).
        """
        candidate = self.record()
        if unchanged(self._catalog.record(self.identity.node), candidate) and not force:
            return  # nothing a reader could see changed
        version = next_version(self.version, self._wall_ms())
        try:
            self.version = self._store.save_last_version(version)
        except StoreError as exc:  # published all the same: after a restart the wall clock
            # floor (next_version) puts the next version above this one anyway
            log.warning("version %d of this node's record is not stored: %s", version, exc)
            self.version = version
        self._catalog.apply([replace(candidate, version=self.version)])
        self.on_version(self.version)

    async def stop(self) -> None:
        await self.runner.stop()
