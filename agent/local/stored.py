"""How this node's registrations are kept in the store, and read back after a restart.

Registrations are stored as the bodies given and parsed again on restart, so
the stored form is exactly what Consul clients sent. Marks beside a body say
where it came from: a generated sidecar is stored as a stub pointing at its
service (`SIDECAR_OF`; its port is kept so a restart gives the same port), a
body a config file made carries `FROM_CONFIG` (the config applies it again,
so restore only notes its id), a standalone check is `{STANDALONE: True,
"body": ...}`. A stored body that no longer parses is logged and skipped; so
is one holding a lone UTF-16 surrogate (`"\\ud800"`), which older versions
took over HTTP: UTF-8 cannot encode it, so the node's record could not be
signed and the agent did not start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gossamer.agent.local.registry import Registry
from gossamer.catalog.plain_json import lone_surrogate_in
from gossamer.catalog.registration import (
    CheckDefinition,
    RegistrationError,
    ServiceRegistration,
    parse_check_registration,
)
from gossamer.catalog.store import CatalogStore

log = logging.getLogger("gossamer.local")

SIDECAR_OF = "_gossamer_sidecar_of"  # marks the stored copy of a generated sidecar
FROM_CONFIG = "_gossamer_from_config"  # marks a registration that a config file made
STANDALONE = "_standalone"  # marks a check registered on its own

# Parses a stored service body, given the port its sidecar had (if any).
ParseService = Callable[[Mapping[str, Any], int | None], ServiceRegistration]


@dataclass
class FromConfig:
    """Ids of what a config file registered: the config registers them again."""

    services: set[str] = field(default_factory=set)
    checks: set[str] = field(default_factory=set)


def store_service(
    store: CatalogStore,
    reg: ServiceRegistration,
    body: Mapping[str, Any],
    *,
    from_config: bool,
    replace_checks: bool,
) -> None:
    """The body as given (marked when a config file made it), and its sidecar's stub."""
    checks = {c.check_id: {"ServiceID": c.service_id} for c in reg.checks}
    stored = dict(body) | ({FROM_CONFIG: True} if from_config else {})
    store.put_service(reg.service.id, stored, checks, replace_checks=replace_checks)
    if reg.sidecar is not None:
        sidecar = reg.sidecar
        stub = {"ID": sidecar.id, "Port": sidecar.port, SIDECAR_OF: reg.service.id}
        stub_checks = {c.check_id: {"ServiceID": c.service_id} for c in reg.sidecar_checks}
        store.put_service(sidecar.id, stub, stub_checks, replace_checks=True)


def delete_service(store: CatalogStore, reg: ServiceRegistration) -> None:
    store.delete_service(reg.service.id)
    if reg.sidecar is not None:
        store.delete_service(reg.sidecar.id)


def drop_sidecar(store: CatalogStore, reg: ServiceRegistration) -> ServiceRegistration:
    """`reg` without its generated sidecar, stored so (a restart does not bring it back)."""
    assert reg.sidecar is not None
    body = dict(store.services().get(reg.service.id, {}))
    for key, connect in list(body.items()):
        if key.lower() == "connect" and isinstance(connect, dict):
            body[key] = {
                k: v
                for k, v in connect.items()
                if k.lower() not in ("sidecarservice", "sidecar_service")
            }
    checks = {c.check_id: {"ServiceID": c.service_id} for c in reg.checks}
    store.put_service(reg.service.id, body, checks)
    store.delete_service(reg.sidecar.id)
    return replace(reg, sidecar=None, sidecar_checks=())


def store_check(
    store: CatalogStore, defn: CheckDefinition, body: Mapping[str, Any], *, from_config: bool
) -> None:
    stored = {STANDALONE: True, "body": dict(body), FROM_CONFIG: from_config}
    store.put_check(defn.check_id, stored, service_id=defn.service_id)


def restore_registrations(
    store: CatalogStore, registry: Registry, parse_service: ParseService
) -> FromConfig:
    """Fill `registry` with what the store holds; services first (checks may name them)."""
    from_config = FromConfig()
    stored = store.services()
    sidecar_ports = {
        body[SIDECAR_OF]: int(body.get("Port", 0))
        for body in stored.values()
        if isinstance(body.get(SIDECAR_OF), str)
    }
    for service_id, body in stored.items():
        if body.get(FROM_CONFIG):
            from_config.services.add(service_id)
            continue
        if SIDECAR_OF in body:
            continue
        try:
            _no_lone_surrogate(body)
            reg = parse_service(body, sidecar_ports.get(service_id))
        except RegistrationError as exc:
            log.error("stored service %s no longer parses, skipped: %s", service_id, exc)
            continue
        registry.put(reg)
    for check_id, stored_check in store.checks().items():
        if stored_check.definition.get(FROM_CONFIG):
            from_config.checks.add(check_id)
        elif stored_check.definition.get(STANDALONE):
            _restore_standalone(registry, check_id, stored_check.definition["body"])
    return from_config


def _restore_standalone(registry: Registry, check_id: str, body: Mapping[str, Any]) -> None:
    try:
        _no_lone_surrogate(body)
        defn = parse_check_registration(
            body, service_ids=set(registry.service_map()), allow_script=True
        )
    except RegistrationError as exc:
        log.error("stored check %s no longer parses, skipped: %s", check_id, exc)
        return
    registry.standalone[defn.check_id] = defn


def _no_lone_surrogate(body: Mapping[str, Any]) -> None:
    if found := lone_surrogate_in(body, "body"):
        raise RegistrationError(found, "a lone surrogate escape is not Unicode")
