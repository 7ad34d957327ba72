"""This agent's part of the mesh identity, for the HTTP API, the renewal loop and RPC TLS.

It joins the CA map (ca_store.py), this agent's signing authority
(authority.py) and its services' leaves (leaves.py). Rules it keeps:
- Racing agents that each made a root converge (trust.py rule 1), and
  whatever was signed under a losing root is signed again at once (`step`).
- A leaf is only issued for a service registered on this agent
  (`ServiceNotHere`, 403), and only once this agent holds an intermediate
  under the active root (`IdentityNotReady`, 503).
- `step` re-signs what is stale and tells `on_change` listeners (agent-RPC
  TLS rebuilds its contexts) when the trust bundle or the agent certificate
  changed; renewal_loop.py runs it on every change of the map and at the
  next renewal moment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gossamer.agent.identity.authority import Authority
from gossamer.agent.identity.cluster_secret import OPEN_WARNING, ClusterSecrets
from gossamer.agent.identity.leaves import HeldLeaf, LeafBook
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.proxy.ca import trust
from gossamer.proxy.ca.ca_entries import CaState, revoked_value
from gossamer.proxy.ca.consul_json import ca_config_json, roots_json
from gossamer.proxy.ca.errors import CaError
from gossamer.proxy.ca.keys import certificate_pem, colon_hex, key_id, private_key_pem
from gossamer.proxy.ca.leaf import check_service_name, issue_leaf
from gossamer.proxy.ca.profile import trust_domain_of
from gossamer.proxy.ca.seal import OPEN

log = logging.getLogger("gossamer.identity")


class ServiceNotHere(CaError):
    """A leaf asked for a service this agent does not have registered."""

    http_status = 403


class IdentityNotReady(CaError):
    """No intermediate under the active root yet (no root, or our secret opens no seal)."""

    http_status = 503


@dataclass(frozen=True)
class AgentTlsMaterial:
    """This agent's certificate chain (agent cert, then its intermediate) and key, as PEM."""

    chain_pem: str
    key_pem: str
    certificate: x509.Certificate


class MeshIdentity:
    def __init__(
        self,
        ca: CaStore,
        authority: Authority,
        leaves: LeafBook,
        secrets: ClusterSecrets,
        *,
        datacenter: str,
        registered: Callable[[str], bool],
        leaf_ttl: Callable[[], timedelta],
        unbounded_leaf_ttl: bool,
    ) -> None:
        self.ca, self.authority, self.leaves, self.secrets = ca, authority, leaves, secrets
        self._dc = datacenter
        self._registered = registered
        self._leaf_ttl = leaf_ttl
        self._unbounded = unbounded_leaf_ttl
        self._listeners: list[Callable[[], None]] = []
        self._seen: tuple[Any, ...] = ()
        if secrets.kind == OPEN:
            log.warning("%s", OPEN_WARNING)

    # -- for agent-RPC TLS (and the proxy) ---------------------------------------------------

    @property
    def state(self) -> CaState:
        return self.ca.state

    def trust_domain(self) -> str | None:
        """The mesh's trust domain (`<cluster-id>.consul`), None before the first root."""
        record = trust.active_root(self.ca.state)
        return None if record is None else trust_domain_of(record.certificate)

    def trust_bundle(self) -> list[x509.Certificate]:
        """The roots to verify peers against: the active one and those still retiring."""
        return trust.bundle_certificates(self.ca.state, self.authority.now_ms())

    def bundle_intermediates(self) -> list[x509.Certificate]:
        """Cross-signed copies of trusted roots, for chains that span a rotation."""
        return trust.cross_signed(self.ca.state, self.authority.now_ms())

    def agent_tls(self) -> AgentTlsMaterial | None:
        """This agent's certificate chain and key, once it has them."""
        a = self.authority
        chain = self.agent_chain()
        if a.agent_cert is None or a.agent_key is None or not chain:
            return None
        pem = "".join(certificate_pem(c) for c in chain)
        return AgentTlsMaterial(pem, private_key_pem(a.agent_key), a.agent_cert)

    def agent_chain(self) -> list[x509.Certificate]:
        """What this agent presents (TLS, record signatures): its certificate, its intermediate,
        and, during a rotation, the new root cross-signed by the old one, so a peer that does
        not yet know the new root still chains to the old (empty until it holds both)."""
        a = self.authority
        if a.agent_cert is None or a.intermediate is None:
            return []
        under = a.intermediate_root()
        cross = [r.cross_signed for r in self.ca.state.roots if r.root_id == under]
        return [a.agent_cert, a.intermediate, *(c for c in cross if c is not None)]

    def revoked_key_ids(self) -> set[bytes]:
        """Key ids of revoked agents' intermediates: refuse any chain holding one."""
        return trust.revoked_key_ids(self.ca.state)

    def revoked_node_ids(self) -> set[str]:
        return set(self.ca.state.revoked)

    def revoke(self, node_id: str, node: str, reason: str) -> None:
        """Revoke an agent: every chain holding its intermediate is refused from now on."""
        self.ca.write([revoked_value(node_id, node, self.authority.now_ms(), reason)])

    def revoked_json(self) -> list[dict[str, Any]]:
        """The revocations; `IntermediateKeyID` (colon hex) when the agent's intermediate is
        known: proxies refuse leaves whose issuer has that key (proxy/authorize.py)."""
        state = self.ca.state
        return [
            {"Node": r.node, "NodeID": r.node_id, "AtMs": r.at_ms, "Reason": r.reason}
            | ({"IntermediateKeyID": colon_hex(key_id(cert.public_key()))} if cert else {})
            for r in sorted(state.revoked.values(), key=lambda r: r.node)
            for cert in [state.agents.get(r.node_id)]
        ]

    def on_change(self, listener: Callable[[], None]) -> None:
        """Called (on the loop) after the trust bundle or this agent's certificate changed."""
        self._listeners.append(listener)

    # -- Consul's JSON -----------------------------------------------------------------------

    def roots_json(self) -> dict[str, Any]:
        """The /v1/connect/ca/roots body: the trust bundle, active root first."""
        entries = trust.root_entries(self.ca.state, self.authority.now_ms(), self.ca.roots_index)
        return roots_json(self.trust_domain() or "", entries)

    def config_json(self) -> dict[str, Any]:
        """The /v1/connect/ca/configuration body: provider and TTLs, never a key."""
        return ca_config_json(self.ca.state.settings, self.ca.index, self.ca.index)

    def leaf_json(self, service: str) -> dict[str, Any]:
        return self.leaf(service).json(self.chain())

    # -- leaves ------------------------------------------------------------------------------

    def leaf(self, service: str) -> HeldLeaf:
        """The service's current leaf, issued (and stored) now if it has none or a stale one."""
        check_service_name(self._dc, service)  # before the file name is made from it
        if not self._registered(service):
            raise ServiceNotHere(f"service {service!r} is not registered on this agent")
        held = self.leaves.get(service)
        if held is not None and not self._stale(held):
            return held
        self.authority.converge()  # the intermediate first, if the roots just changed
        return self._issue(service)

    def chain(self) -> tuple[x509.Certificate, ...]:
        """What a leaf's CertPEM carries after the leaf: this agent's intermediate."""
        return () if self.authority.intermediate is None else (self.authority.intermediate,)

    def _stale(self, held: HeldLeaf) -> bool:
        return LeafBook.is_due(held, self._active_id(), self.authority.now())

    def _issue(self, service: str) -> HeldLeaf:
        active = self._active_id()
        issuer = self.authority.intermediate_issuer()
        if active is None or issuer is None or self.authority.intermediate_root() != active:
            raise IdentityNotReady(
                "this agent holds no intermediate under the mesh's active root yet "
                "(no CA root, or this agent's keyring/join token opens none of its seals)"
            )
        leaf = issue_leaf(
            issuer, self._dc, service, self.authority.now(), self._leaf_ttl(),
            test_only_unbounded_ttl=self._unbounded,
        )  # fmt: skip
        return self.leaves.put(leaf, active)

    def _active_id(self) -> str | None:
        record = trust.active_root(self.ca.state)
        return None if record is None else record.root_id

    # -- keeping in step ---------------------------------------------------------------------

    def step(self) -> None:
        """Re-sign what is stale: intermediate, agent certificate, leaves; tell listeners."""
        if trust.active_root(self.ca.state) is None:
            return
        self.authority.reseal()
        self.authority.converge()
        active = self._active_id()
        if active is not None and self.authority.intermediate_root() == active:
            for service in self.leaves.due(active, self.authority.now()):
                if self._registered(service):
                    self._issue(service)
        self._tell_listeners()

    def _tell_listeners(self) -> None:
        """Listeners hear when the bundle or the agent certificate changed (once per change).

        A retiring root leaves the bundle with time, not with a write: then
        its watchers are woken here (`roots_expired`), as a write wakes them.
        """
        roots = tuple(c.fingerprint(hashes.SHA256()) for c in self.trust_bundle())
        agent = self.authority.agent_cert
        seen = (roots, agent.serial_number if agent is not None else None, self.ca.roots_index)
        changed = seen[:2] != self._seen[:2]
        if changed and self._seen and roots != self._seen[0] and seen[2] == self._seen[2]:
            self.ca.roots_expired()
            seen = (*seen[:2], self.ca.roots_index)
        self._seen = seen
        if changed:
            for listener in self._listeners:
                listener()

    def next_deadline(self) -> datetime | None:
        """The next moment something must be re-signed or a root retires (None: nothing)."""
        moments = [m for m in (self.leaves.next_renewal(), self.authority.agent_renew_at) if m]
        retiring = trust.next_retirement(self.ca.state, self.authority.now_ms())
        if retiring is not None:
            moments.append(datetime.fromtimestamp(retiring / 1000, UTC))
        return min(moments, default=None)

    def warn_if_config_root_refused(self) -> None:
        if self.authority.configured_root_refused():
            log.warning(
                "connect.ca_config: the root in the config is refused: the mesh has a CA root "
                "already; rotate to it instead (gossamer ca rotate --root-cert F --private-key F)"
            )

    # -- /v1/agent/self ----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """`Gossamer.Identity` of /v1/agent/self: how this agent enrols, and its certificate."""
        cert = self.authority.agent_cert
        now = self.authority.now()
        valid = (
            cert is not None
            and cert.not_valid_before_utc <= now < cert.not_valid_after_utc
            and self.authority.intermediate_root() == self._active_id()
        )
        return {
            "Enrolment": self.secrets.kind,
            "Open": self.secrets.kind == OPEN,
            "TrustDomain": self.trust_domain() or "",
            "AgentCertificate": {
                "Valid": bool(valid),
                "NotAfter": cert.not_valid_after_utc.isoformat() if cert is not None else "",
            },
        }
