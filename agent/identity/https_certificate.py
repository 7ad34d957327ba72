"""The agent's HTTPS server certificate from the mesh CA, kept in step with its agent certificate.

With `https` on and no cert_file/key_file, the HTTP API over TLS serves a
certificate this agent signs for itself from its intermediate
(proxy/ca/agent_server.py: its SPIFFE URI plus the host names and addresses
a client dials). Clients verify it against the mesh's roots
(`/v1/connect/ca/roots`, `gossamer ca roots --pem`, or the copy written
here as `<data_dir>/identity/https-ca.pem`).

Rules this class keeps:
- It is signed again whenever the agent certificate is: at that
  certificate's renewal moment (well before expiry) and at once when a root
  rotation re-signs the intermediate, and it ends when the agent certificate
  ends, so the two never drift apart. `MeshIdentity.on_change` calls
  `refresh` after each such change.
- The chain served is the certificate, this agent's intermediate and, during
  a rotation, the new root cross-signed by the old (as for agent RPC), so a
  client holding either root verifies it.
- Key and chain are written atomically (0600) and then loaded into the one
  SSLContext the listener serves with: new handshakes get the new
  certificate, open connections keep theirs, the listener never restarts.
- Until the agent holds an intermediate (a fresh agent still enrolling),
  the context has no certificate and handshakes fail; HTTPS answers from
  the first refresh on.
"""

from __future__ import annotations

import logging
import ssl
from datetime import timedelta

from cryptography import x509

from gossamer.agent.identity.files import IdentityFiles
from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.agent_server import ServerNames, sign_agent_server_certificate
from gossamer.proxy.ca.keys import certificate_pem, generate_key, private_key_pem

log = logging.getLogger("gossamer.identity")

CHAIN_FILE = "https.pem"
KEY_FILE = "https-key.pem"
ROOTS_FILE = "https-ca.pem"  # the trust bundle, for local clients' CONSUL_CACERT


class HttpsCertificate:
    def __init__(
        self,
        identity: MeshIdentity,
        files: IdentityFiles,
        context: ssl.SSLContext,
        names: ServerNames,
        *,
        node: str,
        node_id: str,
        datacenter: str,
    ) -> None:
        self._identity, self._files, self.context, self.names = identity, files, context, names
        self._node, self._node_id, self._dc = node, node_id, datacenter
        self.certificate: x509.Certificate | None = None
        self._for_agent_serial: int | None = None  # the agent certificate it was signed beside
        identity.on_change(self._changed)

    def _changed(self) -> None:
        self.refresh()

    def refresh(self) -> bool:
        """Sign and load a new certificate if the agent certificate changed; True if it did."""
        authority = self._identity.authority
        bundle = self._identity.trust_bundle()
        if bundle:
            self._files.write(ROOTS_FILE, "".join(certificate_pem(c) for c in bundle))
        agent, issuer = authority.agent_cert, authority.intermediate_issuer()
        chain = self._identity.agent_chain()
        if agent is None or issuer is None or not chain:
            return False
        if agent.serial_number == self._for_agent_serial:
            return False
        now = authority.now()
        key = generate_key()
        cert = sign_agent_server_certificate(
            issuer, key.public_key(), AgentId(issuer.trust_domain, self._dc, self._node_id),
            self.names, now, node_name=self._node,
            ttl=max(agent.not_valid_after_utc - now, timedelta(seconds=1)),
        )  # fmt: skip
        self._files.write(KEY_FILE, private_key_pem(key))
        self._files.write(CHAIN_FILE, "".join(certificate_pem(c) for c in [cert, *chain[1:]]))
        self.context.load_cert_chain(self._files.path / CHAIN_FILE, self._files.path / KEY_FILE)
        self.certificate, self._for_agent_serial = cert, agent.serial_number
        log.info("HTTPS: serving a mesh CA certificate until %s", cert.not_valid_after_utc)
        return True
