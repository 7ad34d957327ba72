"""This agent's identity as agent RPC reads it: `MeshIdentity` behind `sync.identity.RpcIdentity`.

Rules it keeps:
- `generation` moves when what agent RPC checks against changes: the trust
  bundle, this agent's chain, or the revocations (`_standing`), so the TLS
  contexts are rebuilt then, and never per connection. `trust_epoch` moves
  only when trust shrinks (a root leaves the bundle, a revocation is added,
  the trust domain changes): connections verified before are verified
  again. A new root or a renewed certificate of our own leaves open
  connections alone: what was verified still holds. Other CA map changes
  (an agent's new intermediate, a config entry, a seal) move neither:
  after a rotation every agent publishes a new intermediate, and moving
  for each would rebuild the contexts once per agent.
- A chain is revoked when the agent's node id is revoked or any CA in it
  carries the key of a revoked agent's intermediate.
- The "ca-bundle" answer holds only root and seal entries: root certificates
  are public, and a seal opens only with the cluster secret. Nothing else of
  the map (config, revocations, agents' intermediates) is given to a peer
  that has not shown a certificate.
"""

from __future__ import annotations

from cryptography import x509

from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.sync.identity import AgentChain
from gossamer.catalog import lww
from gossamer.catalog.sync_protocol import Message
from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.ca_entries import ROOT, SEAL
from gossamer.proxy.ca.keys import key_id

BUNDLE_PREFIXES = (ROOT, SEAL)


class MeshRpcIdentity:
    def __init__(self, identity: MeshIdentity) -> None:
        self._identity = identity
        self._generation = 0
        self._epoch = 0
        self._checked: tuple[object, ...] | None = None
        identity.ca.on_change(self._bump)
        identity.on_change(self._bump)

    def _standing(self) -> tuple[object, ...]:
        """Everything a peer check or this agent's own TLS depends on (certificates compare
        by their DER)."""
        i = self._identity
        return (
            tuple(i.trust_bundle()),
            tuple(i.agent_chain()),
            frozenset(i.revoked_node_ids()),
            frozenset(i.revoked_key_ids()),
            i.trust_domain(),
        )

    def _bump(self) -> None:
        standing = self._standing()
        if standing != self._checked:
            if self._checked is not None and _trust_shrank(self._checked, standing):
                self._epoch += 1
            self._checked = standing
            self._generation += 1

    @property
    def trust_domain(self) -> str:
        return self._identity.trust_domain() or ""

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def trust_epoch(self) -> int:
        return self._epoch

    def bundle(self) -> list[x509.Certificate]:
        return self._identity.trust_bundle()

    def chain(self) -> AgentChain | None:
        material = self._identity.agent_tls()
        if material is None:
            return None
        return AgentChain(material.chain_pem.encode(), material.key_pem.encode())

    def is_revoked(self, agent: AgentId, intermediate: x509.Certificate) -> bool:
        if agent.node_id in self._identity.revoked_node_ids():
            return True
        return key_id(intermediate.public_key()) in self._identity.revoked_key_ids()

    def ca_bundle_answer(self) -> Message:
        entries = self._identity.ca.snapshot().entries.entries
        return {
            "t": "ca-bundle",
            "entries": [
                lww.entry_to_wire(key, entry)
                for key, entry in sorted(entries.items())
                if key.startswith(BUNDLE_PREFIXES) and not entry.deleted
            ],
        }


def _trust_shrank(before: tuple[object, ...], after: tuple[object, ...]) -> bool:
    """Whether a peer verified under `before` may no longer pass under `after`: a root left
    the bundle, a revocation was added, or the trust domain changed (see `_standing`)."""
    roots_before, _, nodes_before, keys_before, domain_before = before
    roots_after, _, nodes_after, keys_after, domain_after = after
    assert isinstance(roots_before, tuple) and isinstance(roots_after, tuple)
    assert isinstance(nodes_before, frozenset) and isinstance(nodes_after, frozenset)
    assert isinstance(keys_before, frozenset) and isinstance(keys_after, frozenset)
    return (
        any(root not in roots_after for root in roots_before)
        or not nodes_after <= nodes_before
        or not keys_after <= keys_before
        or domain_after != domain_before
    )
