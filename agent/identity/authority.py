"""This agent's own signing authority: its intermediate and its agent certificate.

How signing authority is spread (README, "Identity"): the root key lives in
the replicated CA map sealed under the cluster secret; every agent holding
the secret opens it (root_authority.py), signs its own intermediate (CA,
pathlen 0, its own key, kept across re-signings) and with that its agent
certificate and the leaves of its own services. Losing any host never
stops another.

Rules this class keeps (`converge`):
- the intermediate is re-signed when it is not under the active root (a
  rotation, or a lost bootstrap race) or past half its life, and then
  published in the map (`agent/<node-id>`);
- the agent certificate is re-signed when the intermediate changed or at
  its renewal moment (renewal.py, counted from the real signing time);
- whatever is signed is on disk (files.py) before it is used or published.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from cryptography import x509

from gossamer.agent.identity import files as names
from gossamer.agent.identity.cluster_secret import ClusterSecrets
from gossamer.agent.identity.files import IdentityFiles
from gossamer.agent.identity.root_authority import RootAuthority, load_cert, load_key
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca import trust
from gossamer.proxy.ca.ca_entries import RootRecord, agent_value
from gossamer.proxy.ca.intermediate import sign_agent_certificate, sign_intermediate
from gossamer.proxy.ca.keys import certificate_pem, generate_key, private_key_pem
from gossamer.proxy.ca.profile import CLOCK_SKEW, Issuer
from gossamer.proxy.ca.renewal import renew_at

log = logging.getLogger("gossamer.identity")


class Authority(RootAuthority):
    def __init__(
        self,
        files: IdentityFiles,
        ca: CaStore,
        secrets: ClusterSecrets,
        *,
        node: str,
        node_id: str,
        datacenter: str,
        wall_ms: Callable[[], int],
        leaf_ttl: Callable[[], timedelta],
        rng: random.Random,
        configured_root: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            files, ca, secrets, wall_ms=wall_ms, leaf_ttl=leaf_ttl, configured_root=configured_root
        )
        self._node, self._node_id, self._dc, self._rng = node, node_id, datacenter, rng
        self._inter_key = load_key(files.read(names.INTERMEDIATE_KEY))
        if self._inter_key is None:
            self._inter_key = generate_key()
            files.write(names.INTERMEDIATE_KEY, private_key_pem(self._inter_key))
        self.intermediate = load_cert(files.read(names.INTERMEDIATE))
        self.agent_cert = load_cert(files.read(names.AGENT_CERT))
        self.agent_key = load_key(files.read(names.AGENT_KEY))
        self._agent_renew: datetime | None = None

    # -- this agent's intermediate and agent certificate --------------------------------------

    def converge(self) -> bool:
        """Bring the intermediate and agent certificate in step with the map; True if re-signed."""
        record = trust.active_root(self._ca.state)
        if record is None:
            return False
        changed = self._ensure_intermediate(record)
        if changed or self._agent_due():
            self._sign_agent_cert()
        return changed

    def intermediate_root(self) -> str | None:
        """The root id the held intermediate is signed under (None: none held)."""
        if self.intermediate is None:
            return None
        return trust.signed_under(self.intermediate, self._ca.state)

    def intermediate_issuer(self) -> Issuer | None:
        if self.intermediate is None or self._inter_key is None:
            return None
        return Issuer(self.intermediate, self._inter_key)

    def _ensure_intermediate(self, record: RootRecord) -> bool:
        current = self.intermediate
        if (
            current is not None
            and self.intermediate_root() == record.root_id
            and not trust.past_half_life(current, self.now())
        ):
            return False
        issuer = self.root_issuer()
        if issuer is None or self._inter_key is None:
            return False
        cert = sign_intermediate(
            issuer, self._inter_key.public_key(), self.now(), name=self._node,
            ttl=self._ca.state.settings.intermediate_cert_ttl,
        )  # fmt: skip
        self._files.write(names.INTERMEDIATE, certificate_pem(cert))
        self.intermediate = cert
        self._ca.write([agent_value(self._node_id, self._node, cert)])
        log.info("signed this agent's intermediate under root %s", record.root_id[:23])
        return True

    def _agent_due(self) -> bool:
        cert = self.agent_cert
        if cert is None or self.agent_key is None or self.intermediate is None:
            return True
        if cert.issuer != self.intermediate.subject:
            return True
        if self._agent_renew is None:
            self._agent_renew = self.renewal_moment(cert)
        return self.now() >= self._agent_renew

    def _sign_agent_cert(self) -> None:
        issuer = self.intermediate_issuer()
        if issuer is None:
            return
        key = generate_key()
        agent = AgentId(issuer.trust_domain, self._dc, self._node_id)
        cert = sign_agent_certificate(
            issuer, key.public_key(), agent, self.now(), node_name=self._node, ttl=self._leaf_ttl()
        )
        self._files.write(names.AGENT_KEY, private_key_pem(key))
        self._files.write(names.AGENT_CERT, certificate_pem(cert))
        self.agent_cert, self.agent_key = cert, key
        self._agent_renew = self.renewal_moment(cert)

    def renewal_moment(self, cert: x509.Certificate) -> datetime:
        """renewal.py's moment, counted from the real signing time (NotBefore is set back)."""
        return renew_at(cert.not_valid_before_utc + CLOCK_SKEW, cert.not_valid_after_utc, self._rng)

    @property
    def agent_renew_at(self) -> datetime | None:
        return self._agent_renew
