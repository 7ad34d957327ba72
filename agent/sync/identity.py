"""What agent RPC needs from this agent's identity: a small interface, and the not-enrolled one.

The identity itself (the CA map, the agent's intermediate and certificate on
disk, enrolment, renewal) lives elsewhere; agent RPC only reads it through
`RpcIdentity`, so the sync side can be tested with certificates made on the
spot (tests/harness/identity.py) and the real identity wired in at the
composition root.

Rules the implementation keeps:
- `generation` changes whenever any of `bundle()`, `chain()` or the revoked
  set changes; the TLS contexts are rebuilt when it does (never per
  connection, building one costs a key load). `trust_epoch` changes only
  when trust shrinks; verified connections are kept across a generation
  change, and verified again after an epoch change.
- `chain()` is None until the agent holds an agent certificate; until then
  the server refuses every connection and the client can only ask for the
  CA bundle (`fetch_ca_bundle`).
- `ca_bundle_answer()` is public by design: it is the one reply given to a
  peer that presents no certificate, so it holds nothing that is not meant
  for anyone who can reach the port (sealed keys, root certificates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from gossamer.catalog.sync_protocol import Message
from gossamer.intentions.spiffe import AgentId


@dataclass(frozen=True)
class AgentChain:
    """This agent's RPC credential: its certificate then its intermediate (PEM), and the key."""

    certificate_pem: bytes  # agent certificate first, then the intermediate that signed it
    key_pem: bytes


class RpcIdentity(Protocol):
    """This agent's identity as agent RPC sees it (see the module docstring for the rules)."""

    @property
    def trust_domain(self) -> str: ...

    @property
    def generation(self) -> int:
        """A number that changes whenever the bundle, the chain or the revocations change."""
        ...

    @property
    def trust_epoch(self) -> int:
        """A number that changes when trust shrinks: a root leaves the bundle, an agent is
        revoked, the trust domain changes (peers verified before must be verified again)."""
        ...

    def bundle(self) -> list[x509.Certificate]:
        """The roots trusted now (active, plus retiring ones still in their overlap)."""
        ...

    def chain(self) -> AgentChain | None:
        """This agent's certificate chain and key; None until it has enrolled."""
        ...

    def is_revoked(self, agent: AgentId, intermediate: x509.Certificate) -> bool:
        """Whether `agent`, or the agent whose `intermediate` signed its certificate, is revoked."""
        ...

    def ca_bundle_answer(self) -> Message:
        """The reply to a "ca-bundle" request: the CA map entries an enrolling agent needs."""
        ...


class NotEnrolled:
    """An identity with nothing yet: refuses every peer, answers "ca-bundle" with an error."""

    trust_domain = ""
    generation = 0
    trust_epoch = 0

    def bundle(self) -> list[x509.Certificate]:
        return []

    def chain(self) -> AgentChain | None:
        return None

    def is_revoked(self, agent: AgentId, intermediate: x509.Certificate) -> bool:
        return True

    def ca_bundle_answer(self) -> Message:
        return {"t": "error", "msg": "this agent has no CA state yet"}
