"""Enrolment: learn the mesh's roots from peers before this agent can speak mutual TLS.

An agent with no certificate cannot sync (agent RPC refuses it), so it asks
peers for their "ca-bundle" (`sync.client.fetch_ca_bundle`: no client
certificate, the server not verified) and keeps only what it can check by
itself (`admissible`, pure): a root is taken only when one of its seals
opens with this agent's cluster secret and holds the key of that very root
certificate. A forged root therefore needs the secret, and an agent with the
wrong keyring or join token learns nothing it can use.

The same pull heals a bootstrap race that mutual TLS would otherwise freeze:
two agents that each made a root cannot verify each other, so neither could
sync the other's root; each pulls the other's bundle from time to time
(`PULL_EVERY_S`) and the earliest root wins on both (trust.py).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gossamer.agent.identity.cluster_secret import ClusterSecrets
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.agent.sync.client import fetch_ca_bundle
from gossamer.agent.sync.peer_link import Address, PeerError
from gossamer.catalog import lww
from gossamer.catalog.lww_sync import split_ahead
from gossamer.gossip.addresses import format_host_port
from gossamer.proxy.ca import trust
from gossamer.proxy.ca.ca_entries import ROOT, SEAL, read_state
from gossamer.proxy.ca.errors import CaConfigError
from gossamer.proxy.ca.keys import key_matches
from gossamer.proxy.ca.seal import SealError, SealKey

log = logging.getLogger("gossamer.identity")

PULL_EVERY_S = 30.0  # an enrolled agent still pulls a peer's bundle this often (race healing)
PEERS_PER_PULL = 3
COMPLAIN_EVERY_MS = 60_000  # an agent that has no root yet asks up to this many peers at once

Entries = list[tuple[str, lww.Entry]]


def admissible(entries: Entries, seal_keys: Callable[[str], Sequence[SealKey]]) -> Entries:
    """The root and seal entries whose root key one of our seal keys opens; nothing else."""
    state = read_state((k, e.value) for k, e in entries if not e.deleted)
    trusted: set[str] = set()
    for record in state.roots:
        try:
            key = trust.open_root_key(state, record, seal_keys(record.cluster_id))
        except (SealError, CaConfigError):
            continue
        if key_matches(key, record.certificate):
            trusted.add(record.root_id)
    return [(k, e) for k, e in entries if _root_id_of(k) in trusted]


def _root_id_of(key: str) -> str | None:
    if key.startswith(ROOT):
        return key.removeprefix(ROOT)
    if key.startswith(SEAL):
        return key.removeprefix(SEAL).split("/", 1)[0]
    return None


def parse_bundle(reply: dict[str, Any]) -> Entries:
    """The entries of a "ca-bundle" reply; malformed items are skipped."""
    raw = reply.get("entries")
    out: Entries = []
    for item in raw if isinstance(raw, list) else []:
        try:
            out.append(lww.entry_from_wire(item))
        except lww.EntryError:
            continue
    return out


class Enrolment:
    """Pulls peers' bundles into the CA map; see the module docstring."""

    def __init__(
        self,
        ca: CaStore,
        secrets: ClusterSecrets,
        peers: Callable[[], Iterable[Address]],
        rng: random.Random,
        wall_ms: Callable[[], int],
    ) -> None:
        self._ca, self._secrets, self._peers, self._rng = ca, secrets, peers, rng
        self._wall_ms = wall_ms
        self.answered = 0  # peers that answered a pull, ever: a mesh with no root said so
        self.unopened = 0  # roots offered that no secret of ours opens: never bootstrap then
        self._complained_ms = -COMPLAIN_EVERY_MS

    async def pull(self, count: int = 1) -> int:
        """Ask up to `count` random peers; returns how many entries changed here."""
        peers = list(self._peers())
        self._rng.shuffle(peers)
        changed = 0
        for addr in peers[:count]:
            try:
                reply = await fetch_ca_bundle(addr)
            except (PeerError, OSError, TimeoutError) as exc:
                log.debug("ca-bundle from %s failed: %s", format_host_port(*addr), exc)
                continue
            self.answered += 1
            entries, _ahead = split_ahead(parse_bundle(reply), self._wall_ms())
            kept = admissible(entries, self._secrets.seal_keys)
            changed += len(self._ca.absorb(kept))
            if trust.active_root(self._ca.state) is None:  # (an enrolled agent may see old seals)
                self._note_unopened(addr, _roots(entries) - _roots(kept))
        return changed

    def _note_unopened(self, addr: Address, roots: set[str]) -> None:
        """A peer's mesh has roots we cannot open: wrong keyring or join token (logged 1/min)."""
        self.unopened += len(roots)
        now = self._wall_ms()
        if roots and now - self._complained_ms >= COMPLAIN_EVERY_MS:
            self._complained_ms = now
            log.warning(
                "cannot enrol: no seal of the CA key offered by %s matches this agent's "
                "keyring/join token (roots %s); not creating a CA of its own",
                format_host_port(*addr), ", ".join(sorted(r[:23] for r in roots)),
            )  # fmt: skip


def _roots(entries: Entries) -> set[str]:
    return {k.removeprefix(ROOT) for k, e in entries if k.startswith(ROOT) and not e.deleted}
