"""This agent's identity as agent RPC reads it: `MeshIdentity` behind `sync.identity.RpcIdentity`.

Rules it keeps:
- `generation` moves on every change of the CA map and every change the
  identity reports (bundle, agent certificate), so the TLS contexts are
  rebuilt then and never per connection; a revocation is a map change.
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
        identity.ca.on_change(self._bump)
        identity.on_change(self._bump)

    def _bump(self) -> None:
        self._generation += 1

    @property
    def trust_domain(self) -> str:
        return self._identity.trust_domain() or ""

    @property
    def generation(self) -> int:
        return self._generation

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
