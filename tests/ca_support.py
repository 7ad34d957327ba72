"""A small mesh CA for the proxy/ca tests: a root, an agent's intermediate, leaves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.intermediate import sign_agent_certificate, sign_intermediate
from gossamer.proxy.ca.keys import KeySpec, generate_key
from gossamer.proxy.ca.leaf import Leaf, issue_leaf
from gossamer.proxy.ca.profile import Issuer, common_name, sign
from gossamer.proxy.ca.root import create_root, trust_domain

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CLUSTER = "11111111-2222-3333-4444-555555555555"
TD = trust_domain(CLUSTER)
DC = "dc1"
NODE_ID = "0b5c5e1c-7a5e-4bd7-9d2b-2b7b7a4a8a11"


@dataclass(frozen=True)
class Mesh:
    root: Issuer
    intermediate: Issuer

    @property
    def bundle(self) -> list[x509.Certificate]:
        return [self.root.certificate]

    def leaf(self, service: str = "web", now: datetime = NOW, **kw: timedelta) -> Leaf:
        return issue_leaf(self.intermediate, DC, service, now, **kw)

    def server_only_leaf(self, service: str = "web") -> x509.Certificate:
        """A leaf of `service` whose only purpose is TLS server auth (clients refuse it)."""
        key = generate_key()
        uri = x509.UniformResourceIdentifier(
            f"spiffe://{self.root.trust_domain}/ns/default/dc/{DC}/svc/{service}"
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(common_name(service))
            .public_key(key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([uri]), critical=False)
        )  # fmt: skip
        return sign(builder, self.intermediate, NOW, timedelta(hours=1))

    def agent_cert(self, node_id: str = NODE_ID) -> x509.Certificate:
        key = generate_key()
        agent = AgentId(self.root.trust_domain, DC, node_id)
        return sign_agent_certificate(
            self.intermediate, key.public_key(), agent, NOW, node_name="node-1"
        )


def make_mesh(cluster: str = CLUSTER, now: datetime = NOW, key: KeySpec | None = None) -> Mesh:
    root = create_root(generate_key(key or KeySpec()), trust_domain(cluster), now)
    return Mesh(root, make_intermediate(root, now))


def make_intermediate(root: Issuer, now: datetime = NOW, name: str = "node-1") -> Issuer:
    key = generate_key()
    return Issuer(sign_intermediate(root, key.public_key(), now, name=name), key)
