"""A mesh made on the spot for agent-RPC tests: real certificates from proxy/ca, no agent.

- `Mesh`: a root of a trust domain; `mesh.enrol(node)` signs an agent's
  intermediate and its agent certificate, as enrolment will.
- `MeshIdentity`: `agent.sync.identity.RpcIdentity` over one agent's
  credentials and the mesh's bundle, with a revoked set the test can fill
  and a `ca-bundle` answer naming the mesh.
- Certificates that must be refused: `mesh.expired(node)`,
  `mesh.foreign_domain(node)` (signed by this mesh's intermediate, naming
  another trust domain), `mesh.service_leaf(node)`, and `Mesh("rogue")`
  for another mesh's CA (same trust domain name, other key).
Times are the real clock: OpenSSL checks validity against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509

from gossamer.agent.sync.identity import AgentChain
from gossamer.agent.sync.relay_check import nobody_alive
from gossamer.agent.sync.tls import AgentTls
from gossamer.catalog.sync_protocol import Message
from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.intermediate import sign_agent_certificate, sign_intermediate
from gossamer.proxy.ca.keys import PrivateKey, certificate_pem, generate_key, private_key_pem
from gossamer.proxy.ca.leaf import issue_leaf
from gossamer.proxy.ca.profile import Issuer, common_name, end_entity_builder, sign
from gossamer.proxy.ca.root import create_root, trust_domain

DC = "dc1"
CLUSTER = "7f3c2a10-0000-4000-8000-00000000000a"


def node_id(node: str) -> str:
    return f"id-{node}"


@dataclass(frozen=True)
class Credentials:
    """One agent's certificate, the intermediate that signed it, and its key."""

    node: str
    certificate: x509.Certificate
    intermediate: x509.Certificate
    key: PrivateKey

    @property
    def chain(self) -> AgentChain:
        pem = certificate_pem(self.certificate) + certificate_pem(self.intermediate)
        return AgentChain(pem.encode("ascii"), private_key_pem(self.key).encode("ascii"))


class Mesh:
    """A mesh CA: one root; signs agents' intermediates and certificates on request."""

    def __init__(self, cluster: str = CLUSTER, now: datetime | None = None) -> None:
        """`now`: the mesh's clock; a rogue mesh made later in a test passes the first one's."""
        self.now = now or datetime.now(UTC)
        self.root = create_root(generate_key(), trust_domain(cluster), self.now)
        self.trust_domain = self.root.trust_domain

    @property
    def bundle(self) -> list[x509.Certificate]:
        return [self.root.certificate]

    def intermediate(self, node: str) -> Issuer:
        key = generate_key()
        return Issuer(sign_intermediate(self.root, key.public_key(), self.now, name=node), key)

    def enrol(
        self, node: str, *, at: datetime | None = None, ttl: timedelta | None = None
    ) -> Credentials:
        """`node`'s agent certificate under its own intermediate (issued `at`, for `ttl`)."""
        ca, key = self.intermediate(node), generate_key()
        agent = AgentId(self.trust_domain, DC, node_id(node))
        options = {"ttl": ttl} if ttl is not None else {}
        cert = sign_agent_certificate(
            ca, key.public_key(), agent, at or self.now, node_name=node, **options
        )
        return Credentials(node, cert, ca.certificate, key)

    def expired(self, node: str) -> Credentials:
        """An agent certificate that expired an hour ago."""
        return self.enrol(node, at=self.now - timedelta(days=1), ttl=timedelta(hours=1))

    def foreign_domain(self, node: str) -> Credentials:
        """Signed by this mesh's intermediate, yet naming an agent of another trust domain."""
        ca, key = self.intermediate(node), generate_key()
        uri = AgentId("elsewhere.consul", DC, node_id(node)).uri
        builder = end_entity_builder(common_name(node), key.public_key(), uri)
        cert = sign(builder, ca, self.now, timedelta(hours=1))
        return Credentials(node, cert, ca.certificate, key)

    def service_leaf(self, node: str) -> Credentials:
        """A valid leaf of this mesh, but a service's, not an agent's."""
        ca = self.intermediate(node)
        leaf = issue_leaf(ca, DC, "web", self.now)
        assert leaf.private_key is not None
        return Credentials(node, leaf.certificate, ca.certificate, leaf.private_key)


@dataclass
class MeshIdentity:
    """`RpcIdentity` over a mesh and one agent's credentials; revoke by node name."""

    mesh: Mesh
    credentials: Credentials | None
    revoked: set[str] = field(default_factory=set)
    generation: int = 1

    @property
    def trust_epoch(self) -> int:
        """Every change here is a revocation: trust shrinks each time."""
        return self.generation

    @property
    def trust_domain(self) -> str:
        return self.mesh.trust_domain

    def bundle(self) -> list[x509.Certificate]:
        return self.mesh.bundle

    def chain(self) -> AgentChain | None:
        return self.credentials.chain if self.credentials is not None else None

    def is_revoked(self, agent: AgentId, intermediate: x509.Certificate) -> bool:
        named = {node_id(n) for n in self.revoked}
        subjects = {f"gossamer intermediate {n}" for n in self.revoked}
        cn = intermediate.subject.rfc4514_string().removeprefix("CN=")
        return agent.node_id in named or cn in subjects

    def ca_bundle_answer(self) -> Message:
        return {"t": "ca-bundle", "roots": [certificate_pem(c) for c in self.mesh.bundle]}

    def revoke(self, node: str) -> None:
        self.revoked.add(node)
        self.generation += 1


def agent_tls(
    mesh: Mesh, credentials: Credentials | None, alive: Callable[[str], bool] = nobody_alive
) -> AgentTls:
    """What an agent holding `credentials` in `mesh` speaks agent RPC with (`alive`: its
    Serf view, for the relay rules)."""
    return AgentTls(MeshIdentity(mesh, credentials), alive=alive)
