"""Certificates for the proxy tests: a mesh, its leaves, and the bad ones the inbound port refuses.

`Pki` is one mesh CA (root -> agent intermediate -> leaves) at the real
clock, shaped as the agent's HTTP answers (`leaf_json`, `roots_json`) so
`proxy.identity.build_identity` reads them as it reads the agent's.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

from cryptography import x509

from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.intermediate import sign_agent_certificate
from gossamer.proxy.ca.keys import certificate_pem, generate_key, private_key_pem
from gossamer.proxy.ca.profile import common_name, end_entity_builder, sign
from gossamer.proxy.identity import Identity, build_identity
from gossamer.proxy.tls_pipe import TlsPipe
from tests.ca_support import DC, Mesh, make_mesh

CLUSTER_B = "99999999-2222-3333-4444-555555555555"


class Pki:
    def __init__(self, cluster: str | None = None) -> None:
        now = datetime.now(UTC)
        self.mesh: Mesh = make_mesh(cluster, now) if cluster else make_mesh(now=now)
        self.now = now
        self.trust_domain = self.mesh.root.trust_domain

    def roots_json(self) -> dict[str, object]:
        return {"TrustDomain": self.trust_domain,
                "Roots": [{"RootCert": certificate_pem(self.mesh.root.certificate)}]}  # fmt: skip

    def leaf_json(self, service: str, **ttl: timedelta) -> dict[str, str]:
        """As the agent answers: the PEMs and the leaf's SPIFFE ID (`ServiceURI`)."""
        leaf = self.mesh.leaf(service, self.now, **ttl)
        assert leaf.private_key is not None
        sans = leaf.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        (uri,) = sans.value.get_values_for_type(x509.UniformResourceIdentifier)
        return {**self._pems(leaf.certificate, leaf.private_key), "ServiceURI": uri}

    def identity(self, service: str) -> Identity:
        return build_identity(self.leaf_json(service), self.roots_json())

    def expired_json(self, service: str) -> dict[str, str]:
        leaf = self.mesh.leaf(service, self.now - timedelta(days=2), ttl=timedelta(hours=1))
        assert leaf.private_key is not None
        return self._pems(leaf.certificate, leaf.private_key)

    def odd_uri_json(self, uri: str) -> dict[str, str]:
        """A leaf signed by this mesh whose one URI SAN is `uri`."""
        key = generate_key()
        builder = end_entity_builder(common_name("odd"), key.public_key(), uri)
        return self._pems(sign(builder, self.mesh.intermediate, self.now, timedelta(hours=1)), key)

    def agent_json(self) -> dict[str, str]:
        key = generate_key()
        agent = AgentId(self.trust_domain, DC, "node-id-1")
        cert = sign_agent_certificate(self.mesh.intermediate, key.public_key(), agent, self.now,
                                      node_name="node-1")  # fmt: skip
        return self._pems(cert, key)

    def _pems(self, cert: x509.Certificate, key: object) -> dict[str, str]:
        chain = certificate_pem(cert) + certificate_pem(self.mesh.intermediate.certificate)
        return {"CertPEM": chain, "PrivateKeyPEM": private_key_pem(key)}  # type: ignore[arg-type]


def client_context(pki: Pki, leaf: dict[str, str] | None) -> ssl.SSLContext:
    """A TLS 1.3 client presenting `leaf` (None: no certificate), not checking the server."""
    if leaf is not None:
        context = build_identity(leaf, pki.roots_json()).client
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # these tests are about the server's checks
    return context


def handshaken(
    client: ssl.SSLContext, server: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[TlsPipe, TlsPipe]:
    """A client (offering `session`) and a server `TlsPipe` through their handshake with each
    other, in memory."""
    near = TlsPipe(client, server_side=False, session=session)
    far = TlsPipe(server, server_side=True)
    to_far = near.start()
    while not (near.handshaken and far.handshaken):
        far.feed(to_far)
        near.feed(far.pending())
        to_far = near.pending()
    far.feed(to_far)
    return near, far
