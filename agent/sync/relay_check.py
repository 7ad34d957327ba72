"""Checking what a peer relays on behalf of others: owner signatures and removals.

TLS says who the peer at the other end is; it says nothing about the
records of other owners that peer passes on. Two rules (`catalog.absorb`
rules 4 and 5) close that gap, and this module applies them to each batch
a peer sends, before anything reaches the catalog:

- A record whose owner is not the peer must carry its owner's signature
  (`proxy.ca.record_signature`), made with an agent certificate that passes
  the same checks a connecting peer does (`AgentTls.verified_peer`: bundle,
  trust domain, revocations), remembered as a connecting peer's chain is;
  each record's signature is checked every time (about 0.1 ms).
- A tombstone from a peer that is not the record's owner is applied only
  when that owner is not alive in Serf's view here.

Whatever is refused is left out, counted and logged like any other
refusal (at most once a minute per peer); the rest of the batch applies.
A record left out here still reaches this agent from its owner: the Serf
version tag makes this agent pull it from the owner directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from gossamer.agent.sync import refusals
from gossamer.agent.sync.peer_check import PeerAgent, PeerRefused
from gossamer.catalog import absorb
from gossamer.catalog.merge import CatalogState
from gossamer.catalog.model import NodeRecord
from gossamer.catalog.sync_protocol import Effects
from gossamer.proxy.ca.record_signature import RecordSignatureError, check_signature
from gossamer.proxy.ca.verify import CLIENT_AUTH

if TYPE_CHECKING:  # tls.py builds one of these
    from gossamer.agent.sync.tls import AgentTls

MAX_CACHED_SIGNERS = 4096  # verified chains kept; a cluster has one (or two) per agent


def nobody_alive(node: str) -> bool:
    """The Serf view of a process without one (tests of the RPC alone): no owner alive."""
    return False


class RelayCheck:
    """Applies rules 4 and 5 to what a peer sent (see the module docstring)."""

    def __init__(self, tls: AgentTls, alive: Callable[[str], bool]) -> None:
        self._tls = tls
        self._alive = alive
        self._refused: dict[tuple[bytes, ...], tuple[int, PeerRefused]] = {}

    def admit(
        self, effects: Effects, state: CatalogState, datacenter: str, peer_node: str, peer: object
    ) -> Effects:
        """`effects` without what `peer_node` may not bring; refusals counted against `peer`."""
        kept: list[NodeRecord] = []
        refused: list[str] = []
        for record in effects.records:
            problem = self._record_problem(record, peer_node)
            if problem is None:
                kept.append(record)
            else:
                refused.append(problem)
        if refused:
            self._tls.refuse(
                refusals.UNSIGNED_RELAY,
                peer,
                f"agent {peer_node!r} relayed {len(refused)} record(s) without a valid owner "
                f"signature: " + "; ".join(refused)[:300],
            )
        tombs = [
            (node, version)
            for node, version in effects.tombstones
            if absorb.tombstone_admitted(state, datacenter, node, peer_node, self._alive)
        ]
        if len(tombs) < len(effects.tombstones):
            dropped = sorted({n for n, _ in effects.tombstones} - {n for n, _ in tombs})
            self._tls.refuse(
                refusals.LIVE_REMOVAL,
                peer,
                f"agent {peer_node!r} relayed the removal of nodes whose owner is alive: "
                + ", ".join(dropped)[:200],
            )
        if len(kept) == len(effects.records) and len(tombs) == len(effects.tombstones):
            return effects
        return dataclasses.replace(effects, records=tuple(kept), tombstones=tuple(tombs))

    def _record_problem(self, record: NodeRecord, peer_node: str) -> str | None:
        """Why `record` may not be taken from `peer_node`; None when it may."""
        if not absorb.needs_owner_signature(record, peer_node):
            return None
        if record.signed is None:
            return f"{record.node}: unsigned"
        signer = self._signer(record.signed.chain)
        if isinstance(signer, PeerRefused):
            return f"{record.node}: signer refused ({signer.reason})"
        try:
            check_signature(record, signer.node, signer.chain[0])
        except RecordSignatureError as exc:
            return str(exc)
        return None

    def _signer(self, chain: tuple[bytes, ...]) -> PeerAgent | PeerRefused:
        """The verified agent behind a signing chain (AgentTls remembers successes; a
        refusal is remembered here until the identity's generation moves)."""
        generation = self._tls.identity.generation
        refused = self._refused.get(chain)
        if refused is not None and refused[0] == generation:
            return refused[1]
        try:
            return self._tls.verified_peer(chain, CLIENT_AUTH)
        except PeerRefused as exc:
            if len(self._refused) >= MAX_CACHED_SIGNERS:
                self._refused.clear()
            self._refused[chain] = (generation, exc)
            return exc
