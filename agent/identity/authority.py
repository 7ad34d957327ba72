"""This agent's signing authority: the root key (unsealed), its own intermediate, its agent cert.

How signing authority is spread (README, "Identity"): the root key lives in
the replicated CA map sealed under the cluster secret; every agent holding
the secret opens it, signs its own intermediate (CA, pathlen 0, its own key,
kept across re-signings) and with that its agent certificate and the
leaves of its own services. Losing any host never stops another.

Rules this class keeps:
- Bootstrap, init and rotation write the CA map; everything else here only
  reads it and keeps this agent's material in step (`converge`):
  the intermediate is re-signed when it is not under the active root (a
  rotation, or a lost bootstrap race) or past half its life; the agent
  certificate when the intermediate changed or at its renewal moment.
- Whatever is signed is on disk (files.py) before it is used or published.
- A root key that no seal of ours opens is logged once a minute; the agent
  keeps trying on every change of the map and on its timer.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from gossamer.agent.identity import files as names
from gossamer.agent.identity.cluster_secret import ClusterSecrets
from gossamer.agent.identity.files import IdentityFiles
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca import trust
from gossamer.proxy.ca.ca_entries import CONFIG, RootRecord, agent_value, config_value, root_value
from gossamer.proxy.ca.errors import CaConfigError
from gossamer.proxy.ca.intermediate import sign_agent_certificate, sign_intermediate
from gossamer.proxy.ca.keys import (
    PrivateKey,
    certificate_pem,
    generate_key,
    key_matches,
    load_certificate,
    load_private_key,
    private_key_pem,
)
from gossamer.proxy.ca.profile import CLOCK_SKEW, Issuer
from gossamer.proxy.ca.renewal import renew_at
from gossamer.proxy.ca.root import cluster_id_of, create_root, cross_sign, trust_domain
from gossamer.proxy.ca.seal import SealError

log = logging.getLogger("gossamer.identity")

COMPLAIN_EVERY_MS = 60_000


class CaExists(CaConfigError):
    """`ca init` (or a configured root) when the mesh has a root already: rotate instead."""


class NoCa(CaConfigError):
    """A rotation asked of a mesh that has no root yet."""


class Authority:
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
    ) -> None:
        self._files, self._ca, self._secrets = files, ca, secrets
        self._node, self._node_id, self._dc = node, node_id, datacenter
        self._wall_ms, self._leaf_ttl, self._rng = wall_ms, leaf_ttl, rng
        self._complained_ms = -COMPLAIN_EVERY_MS
        self._root_key = _key(files.read(names.ROOT_KEY))
        self._inter_key = _key(files.read(names.INTERMEDIATE_KEY))
        if self._inter_key is None:
            self._inter_key = generate_key()
            files.write(names.INTERMEDIATE_KEY, private_key_pem(self._inter_key))
        self.intermediate = _cert(files.read(names.INTERMEDIATE))
        self.agent_cert = _cert(files.read(names.AGENT_CERT))
        self.agent_key = _key(files.read(names.AGENT_KEY))
        self._agent_renew: datetime | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._wall_ms() / 1000, UTC)

    def now_ms(self) -> int:
        return self._wall_ms()

    # -- the CA map: bootstrap, init, rotate, reseal ------------------------------------------

    def bootstrap(self) -> None:
        """Create the mesh's root (there is none): a new cluster id, a key, sealed, written."""
        self.install_root(None)

    def install_root(self, operator: Issuer | None) -> None:
        """The first root: the operator's, or a new one. CaExists when a root is active."""
        if trust.active_root(self._ca.state) is not None:
            raise CaExists("the mesh has a CA root already; rotate it instead (gossamer ca rotate)")
        settings = self._ca.state.settings
        if operator is None:
            cluster_id = str(uuid.uuid4())
            key = generate_key(settings.key)
            operator = create_root(
                key, trust_domain(cluster_id), self.now(), settings.root_cert_ttl
            )
        else:
            cluster_id = cluster_id_of(operator.trust_domain)
        writes: list[tuple[str, Any]] = [
            root_value(operator.certificate, cluster_id, self._wall_ms())
        ]
        writes += self._seals(operator, cluster_id)
        if CONFIG not in self._ca.snapshot().entries.entries:
            writes.append(config_value(settings))
        self._remember_root_key(operator.key)
        self._ca.write(writes)
        log.info("created the mesh CA root (trust domain %s)", operator.trust_domain)

    def rotate(self, new: Issuer | None) -> None:
        """A new root, cross-signed by the active one's key; the old one retires (trust.py)."""
        state = self._ca.state
        old = trust.active_root(state)
        if old is None:
            raise NoCa("the mesh has no CA root yet; nothing to rotate")
        old_issuer = self.root_issuer()
        if old_issuer is None:
            raise CaConfigError("this agent cannot open the active root's key; cannot rotate")
        if new is None:
            key = generate_key(state.settings.key)
            new = create_root(
                key, old_issuer.trust_domain, self.now(), state.settings.root_cert_ttl
            )
        elif new.trust_domain != old_issuer.trust_domain:
            raise CaConfigError(
                f"RootCert: trust domain {new.trust_domain!r} is not this mesh's "
                f"({old_issuer.trust_domain!r})"
            )
        cross = cross_sign(new.certificate, old_issuer, self.now())
        writes = trust.rotation_writes(
            state, new.certificate, cross, self._wall_ms(), self._leaf_ttl()
        )
        writes += self._seals(new, old.cluster_id)
        self._remember_root_key(new.key)
        self._ca.write(writes)
        log.info("rotated the mesh CA root: %s retires", old.root_id)

    def reseal(self) -> None:
        """Add seals for secrets (new gossip keys) that the active root's seals lack."""
        record = trust.active_root(self._ca.state)
        issuer = self.root_issuer()
        if record is None or issuer is None:
            return
        missing = trust.missing_seals(
            self._ca.state, record, self._secrets.seal_keys(record.cluster_id)
        )
        if missing:
            self._ca.write(
                trust.seal_writes(record.root_id, record.cluster_id, issuer.key, missing)
            )

    def _seals(self, root: Issuer, cluster_id: str) -> list[tuple[str, Any]]:
        rid = root_value(root.certificate, cluster_id, 0)[0].removeprefix("root/")
        keys = self._secrets.seal_keys(cluster_id)
        return list(trust.seal_writes(rid, cluster_id, root.key, keys))

    # -- the root key ------------------------------------------------------------------------

    def root_issuer(self) -> Issuer | None:
        """The active root and its key, opened from a seal (cached on disk); None if not ours."""
        record = trust.active_root(self._ca.state)
        if record is None:
            return None
        if self._root_key is not None and key_matches(self._root_key, record.certificate):
            return Issuer(record.certificate, self._root_key)
        try:
            key = trust.open_root_key(
                self._ca.state, record, self._secrets.seal_keys(record.cluster_id)
            )
        except (SealError, CaConfigError) as exc:
            self._complain(f"cannot enrol: {exc}")
            return None
        self._remember_root_key(key)
        return Issuer(record.certificate, key)

    def _remember_root_key(self, key: PrivateKey) -> None:
        self._files.write(names.ROOT_KEY, private_key_pem(key))
        self._root_key = key

    def _complain(self, message: str) -> None:
        now = self._wall_ms()
        if now - self._complained_ms >= COMPLAIN_EVERY_MS:
            self._complained_ms = now
            log.warning("%s", message)

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


def _key(text: str | None) -> PrivateKey | None:
    if text is None:
        return None
    try:
        return load_private_key(text)
    except CaConfigError:
        log.warning("a stored identity key is unreadable; it will be made again")
        return None


def _cert(text: str | None) -> x509.Certificate | None:
    if text is None:
        return None
    try:
        return load_certificate(text)
    except CaConfigError:
        log.warning("a stored identity certificate is unreadable; it will be made again")
        return None
