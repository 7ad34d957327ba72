"""`PUT /v1/connect/ca/configuration`: TTL changes, init, rotation. Read, checked, then applied.

The body is Consul's (`{"Provider": "consul", "Config": {...}}`) plus two
gossamer fields; what it does:
- `Config` TTLs and key type: checked (settings.py) and written as the
  map's `config` entry. A changed PrivateKeyType/Bits rotates, as in Consul.
- `Config.PrivateKey` + `Config.RootCert`: the operator's own root, checked
  (operator_root.py). With no root yet it becomes the first root; with one,
  the mesh rotates to it.
- `"ForceRotate": true` (gossamer's): rotate to a new root made here.
- `"InitOnly": true` (gossamer's, what `gossamer ca init` sends): only
  create the first root; refused (CaExists, 400) once a root exists.
- `ForceWithoutCrossSigning` is refused: gossamer always cross-signs, so
  no connection breaks during a rotation.
Everything is checked before anything is written: a refused body changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.identity.root_authority import CaExists
from gossamer.proxy.ca import trust
from gossamer.proxy.ca.ca_entries import config_value
from gossamer.proxy.ca.errors import CaConfigError
from gossamer.proxy.ca.operator_root import load_operator_root
from gossamer.proxy.ca.profile import Issuer, trust_domain_of
from gossamer.proxy.ca.settings import CaSettings, read_consul_config

PROVIDERS = ("consul", "")


@dataclass(frozen=True)
class ConfigChange:
    settings: CaSettings
    operator: Issuer | None
    init_only: bool
    force_rotate: bool


def read_change(identity: MeshIdentity, body: object) -> ConfigChange:
    """The body, read and checked against the current state; CaConfigError listing problems."""
    if not isinstance(body, dict):
        raise CaConfigError("body: expected a JSON object with Provider and Config")
    problems = []
    provider = body.get("Provider", "consul")
    if provider not in PROVIDERS:
        problems.append(f'Provider: only "consul" (the built-in CA) is supported, got {provider!r}')
    if body.get("ForceWithoutCrossSigning"):
        problems.append(
            "ForceWithoutCrossSigning: refused; gossamer always cross-signs a new root so "
            "that no connection breaks during a rotation"
        )
    config: Any = body.get("Config") or {}
    if not isinstance(config, dict):
        raise CaConfigError("Config: expected an object")
    update = read_consul_config(config)
    if problems:
        raise CaConfigError(*problems)
    operator = None
    if update.root_cert_pem and update.private_key_pem:
        active = trust.active_root(identity.state)
        domain = trust_domain_of(active.certificate) if active is not None else None
        operator = load_operator_root(
            update.root_cert_pem, update.private_key_pem, identity.authority.now(), domain
        )
    return ConfigChange(
        update.settings, operator, body.get("InitOnly") is True, body.get("ForceRotate") is True
    )


def apply_change(identity: MeshIdentity, change: ConfigChange) -> None:
    """Write the change: settings first, then init or rotation (each fsynced before return)."""
    state = identity.state
    has_root = trust.active_root(state) is not None
    if change.init_only and has_root:
        raise CaExists("the mesh has a CA root already; rotate it instead (gossamer ca rotate)")
    key_changed = change.settings.key != state.settings.key
    rotating = has_root and (change.operator is not None or change.force_rotate or key_changed)
    if rotating and identity.authority.root_issuer() is None:
        raise CaConfigError("this agent cannot open the active root's key, so it cannot rotate")
    if change.settings != state.settings:
        identity.ca.write([config_value(change.settings)])
    if not has_root:
        if change.init_only or change.operator is not None:
            identity.authority.install_root(change.operator)
    elif rotating:
        identity.authority.rotate(change.operator)
    identity.step()
