"""The mesh's root: its key (opened from a seal, cached on disk), bootstrap, init, rotation.

Rules this class keeps:
- Bootstrap, init and rotation are the only writes of root entries; each is
  one batch (root entry, its seals, and the config entry the first time),
  fsynced before it returns, with the key cached on disk first.
- The root key is opened from the first seal one of this agent's secrets
  matches (proxy/ca/trust.py rule 5); failure is logged once a minute, and
  the caller tries again on every change of the map and on its timer.
- Re-sealing only adds seals (a new gossip key); seals are separate map
  entries, so it never rewrites a root entry (ca_entries.py says why).
- A root from config (connect.ca_config) is used only for the first root.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from gossamer.agent.identity import files as names
from gossamer.agent.identity.cluster_secret import ClusterSecrets
from gossamer.agent.identity.files import IdentityFiles
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.proxy.ca import trust
from gossamer.proxy.ca.ca_entries import CONFIG, config_value, root_value, seal_key_of
from gossamer.proxy.ca.errors import CaConfigError
from gossamer.proxy.ca.keys import (
    PrivateKey,
    generate_key,
    key_matches,
    load_certificate,
    load_private_key,
    private_key_pem,
)
from gossamer.proxy.ca.operator_root import load_operator_root
from gossamer.proxy.ca.profile import Issuer
from gossamer.proxy.ca.root import cluster_id_of, create_root, cross_sign, trust_domain
from gossamer.proxy.ca.seal import SealError

log = logging.getLogger("gossamer.identity")

COMPLAIN_EVERY_MS = 60_000


class CaExists(CaConfigError):
    """`ca init` (or a configured root) when the mesh has a root already: rotate instead."""


class NoCa(CaConfigError):
    """A rotation asked of a mesh that has no root yet."""


class RootAuthority:
    def __init__(
        self,
        files: IdentityFiles,
        ca: CaStore,
        secrets: ClusterSecrets,
        *,
        wall_ms: Callable[[], int],
        leaf_ttl: Callable[[], timedelta],
        configured_root: Mapping[str, str] | None = None,
    ) -> None:
        """`configured_root`: config's connect.ca_config (root_cert, private_key), if set."""
        self._configured = configured_root or None
        self._files, self._ca, self._secrets = files, ca, secrets
        self._wall_ms, self._leaf_ttl = wall_ms, leaf_ttl
        self._complained_ms = -COMPLAIN_EVERY_MS
        self._root_key = load_key(files.read(names.ROOT_KEY))

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._wall_ms() / 1000, UTC)

    def now_ms(self) -> int:
        return self._wall_ms()

    # -- the CA map: bootstrap, init, rotate, reseal ------------------------------------------

    def bootstrap(self) -> None:
        """The first root: the configured one, or a new cluster id and key; sealed, written."""
        self.install_root(self._configured_issuer())

    def _configured_issuer(self) -> Issuer | None:
        if self._configured is None:
            return None
        pems = self._configured
        return load_operator_root(pems["root_cert"], pems["private_key"], self.now())

    def configured_root_refused(self) -> bool:
        """A root in config that is not the mesh's active root: it was refused (rotate instead)."""
        active = trust.active_root(self._ca.state)
        configured = self._configured_issuer()
        return (
            configured is not None
            and active is not None
            and configured.certificate != active.certificate
        )

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
        """Seal the active root's key under new secrets; drop seals of secrets gone.

        Only an agent that opens the key may do either, so an agent with a
        wrong secret can neither add its own seal nor remove the others'.
        """
        record = trust.active_root(self._ca.state)
        issuer = self.root_issuer()
        if record is None or issuer is None:
            return
        keys = self._secrets.seal_keys(record.cluster_id)
        missing = trust.missing_seals(self._ca.state, record, keys)
        if missing:
            self._ca.write(
                trust.seal_writes(record.root_id, record.cluster_id, issuer.key, missing)
            )
        if self._secrets.complete:
            stale = trust.stale_seals(self._ca.state, record, keys)
            self._ca.delete(seal_key_of(record.root_id, fp) for fp in stale)

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
        try:
            self._files.write(names.ROOT_KEY, private_key_pem(key))
        except OSError as exc:  # only a cache (a seal opens the key again): a full or
            # read-only disk must not stop a rotation, an enrolment or a signing
            log.warning("the root key is kept in memory only (%s)", exc)
        self._root_key = key

    def _complain(self, message: str) -> None:
        now = self._wall_ms()
        if now - self._complained_ms >= COMPLAIN_EVERY_MS:
            self._complained_ms = now
            log.warning("%s", message)


def load_key(text: str | None) -> PrivateKey | None:
    if text is None:
        return None
    try:
        return load_private_key(text)
    except CaConfigError:
        log.warning("a stored identity key is unreadable; it will be made again")
        return None


def load_cert(text: str | None) -> x509.Certificate | None:
    if text is None:
        return None
    try:
        return load_certificate(text)
    except CaConfigError:
        log.warning("a stored identity certificate is unreadable; it will be made again")
        return None
