"""The leaves this agent issued for its own services: held in memory, kept on disk.

Rules this class keeps:
- A leaf is issued on its first request and written to disk (files.py,
  fsynced) before it is returned, so the leaf a client was given survives
  `kill -9`; a restarted agent serves the same leaf (same serial) at once.
  A disk that refuses the write (full, read-only) does not stop a sidecar
  from getting its leaf: it is held in memory only, and logged.
- Each leaf remembers the root it was issued under; `due` lists the leaves
  to issue again: under another root than the active one (a rotation or a
  lost bootstrap race: at once), or past their renewal moment (renewal.py,
  counted from the real signing time, jittered).
- Every issue bumps the leaf's blocking-query key (`leaf_key`) in the agent's
  index table, which sets its CreateIndex/ModifyIndex and wakes watchers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509

from gossamer.agent.identity.files import IdentityFiles
from gossamer.intentions.spiffe import ServiceId, SpiffeError, parse_service_uri
from gossamer.proxy.ca.consul_json import leaf_json
from gossamer.proxy.ca.errors import CaConfigError
from gossamer.proxy.ca.keys import certificate_pem, load_certificate, private_key_pem
from gossamer.proxy.ca.leaf import Leaf
from gossamer.proxy.ca.profile import utc

log = logging.getLogger("gossamer.identity")


def leaf_key(service: str) -> str:
    """The blocking-query index key of one service's leaf."""
    return f"connect-ca-leaf/{service}"


@dataclass(frozen=True)
class HeldLeaf:
    service: ServiceId
    certificate: x509.Certificate
    private_key_pem: str
    root_id: str
    renew_at: datetime
    create_index: int
    modify_index: int

    def json(self, chain: tuple[x509.Certificate, ...]) -> dict[str, Any]:
        return leaf_json(
            self.certificate, self.private_key_pem, self.service,
            self.create_index, self.modify_index, chain,
        )  # fmt: skip


class LeafBook:
    def __init__(
        self,
        files: IdentityFiles,
        notify: Callable[[set[str]], int],
        renewal: Callable[[x509.Certificate], datetime],
    ) -> None:
        """Load the stored leaves; `renewal` gives a certificate's (jittered) renewal moment."""
        self._files = files
        self._notify = notify
        self._renewal = renewal
        self._held: dict[str, HeldLeaf] = {}
        for name, record in files.leaves().items():
            held = self._read(name, record)
            if held is not None:
                self._held[name] = held

    def get(self, service: str) -> HeldLeaf | None:
        return self._held.get(service)

    def services(self) -> list[str]:
        return sorted(self._held)

    def put(self, leaf: Leaf, root_id: str) -> HeldLeaf:
        """Keep a freshly issued leaf: on disk first, then in memory with the next index."""
        name = leaf.service.service
        assert leaf.private_key is not None  # issued here, with a key made here
        record = {
            "service": name,
            "service_uri": leaf.service.uri,
            "cert": certificate_pem(leaf.certificate),
            "key": private_key_pem(leaf.private_key),
            "root_id": root_id,
        }
        try:
            self._files.write_leaf(name, record)
        except OSError as exc:  # a full or read-only disk: served from memory all the same
            # (Consul's agents never store leaves); a restart issues this service another one
            log.warning("leaf for %s is not stored (%s): served from memory", name, exc)
        index = self._notify({leaf_key(name)})
        before = self._held.get(name)
        held = HeldLeaf(
            leaf.service, leaf.certificate, record["key"], root_id,
            self._renewal(leaf.certificate),
            before.create_index if before is not None else index, index,
        )  # fmt: skip
        self._held[name] = held
        return held

    def due(self, active_root_id: str | None, now: datetime) -> list[str]:
        """Services whose leaf must be issued again now (another root, or renewal time)."""
        return [
            name
            for name, held in sorted(self._held.items())
            if self.is_due(held, active_root_id, now)
        ]

    @staticmethod
    def is_due(held: HeldLeaf, active_root_id: str | None, now: datetime) -> bool:
        """Under another root than the active one, or past its renewal moment."""
        other_root = active_root_id is not None and held.root_id != active_root_id
        return other_root or utc(now) >= held.renew_at

    def next_renewal(self) -> datetime | None:
        return min((h.renew_at for h in self._held.values()), default=None)

    def _read(self, name: str, record: dict[str, Any]) -> HeldLeaf | None:
        try:
            cert = load_certificate(str(record["cert"]), "cert")
            service = parse_service_uri(str(record["service_uri"]))
            key, root_id = str(record["key"]), str(record["root_id"])
        except (KeyError, CaConfigError, SpiffeError) as exc:
            log.warning("stored leaf of %s is unreadable (%s); it will be issued again", name, exc)
            return None
        index = self._notify({leaf_key(name)})
        return HeldLeaf(service, cert, key, root_id, self._renewal(cert), index, index)
