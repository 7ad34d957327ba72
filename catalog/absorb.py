"""Taking in what peers send: their records and their tombstones, and the version held here.

The live catalog, the sync exchange, the tests and the simulation all call
these, so the rules are decided once. Pure: a state in, a new state out.

Rules this module keeps:
1. A record this agent owns (`origin` = this agent) is never taken from a
   peer: the owner is the only authority on it, whatever version a peer
   claims. An empty `self_origin` means the records are this agent's own
   writes, and all of them are taken.
2. A relayed tombstone `(node, version)` removes the node's record only if
   that record's version is <= `version` (merge's rule 3): a node registered
   again after its removal keeps its newer record. With no record held, it
   is kept as a tombstone unless one at least as new is already held. This
   agent's own node is never buried by a peer.
3. The version held for a node is its record's, or else its tombstone's
   (the state never holds both for one name); 0 when neither. A newer one
   announced elsewhere (a serf `cv` tag) is worth pulling; a new write of an
   owned node must go above it.
4. A record *pushed* to us by a verified peer (agent RPC knows its node
   name from its certificate) is taken only if that peer owns it (`origin`
   is the peer) or it carries an owner signature (a relayed change,
   record_news.py); `split_pushed` says which, and an unsigned record of
   another owner in a push is refused. Records of other owners also
   arrive in the replies of the peers this agent asks (digest deltas and
   pulls), where relaying is how anti-entropy works; `needs_owner_signature`
   says which records, pushed or answered, must carry their owner's valid
   signature (the agent's RPC code checks it, the same way for both).
5. A tombstone relayed by a peer that is not the record's owner is applied
   only when that owner is not alive in this agent's Serf view
   (`tombstone_admitted`): an owner that is alive speaks for its records
   itself, so no other agent can remove them. With no record held, the
   node's own name is the owner asked about.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gossamer.catalog import merge
from gossamer.catalog.merge import CatalogState
from gossamer.catalog.model import NodeRecord

RELAYED_REMOVAL = "removed (relayed by a peer)"


def taken_from_peer(record: NodeRecord, self_origin: str) -> bool:
    """Rule 1: whether a record a peer sent may replace what is held here."""
    return not self_origin or record.origin != self_origin


def split_owned(
    records: Iterable[NodeRecord], peer_origin: str
) -> tuple[list[NodeRecord], list[NodeRecord]]:
    """Rule 4: (the records `peer_origin` owns, the records it does not)."""
    owned: list[NodeRecord] = []
    foreign: list[NodeRecord] = []
    for record in records:
        (owned if record.origin == peer_origin else foreign).append(record)
    return owned, foreign


def split_pushed(
    records: Iterable[NodeRecord], peer_origin: str
) -> tuple[list[NodeRecord], list[NodeRecord]]:
    """Rule 4 for a push: (owned or owner-signed, to be checked further; unsigned foreign)."""
    kept: list[NodeRecord] = []
    refused: list[NodeRecord] = []
    for record in records:
        ok = record.origin == peer_origin or record.signed is not None
        (kept if ok else refused).append(record)
    return kept, refused


def needs_owner_signature(record: NodeRecord, peer_origin: str) -> bool:
    """Rule 4: a record that `peer_origin` relays for another owner must be owner-signed."""
    return record.origin != peer_origin


def tombstone_admitted(
    state: CatalogState,
    datacenter: str,
    node: str,
    peer_origin: str,
    alive: Callable[[str], bool],
) -> bool:
    """Rule 5: whether a tombstone for `node` relayed by `peer_origin` may be applied here."""
    record = state.records.get(datacenter, {}).get(node)
    owner = record.origin if record is not None else node
    return owner == peer_origin or not alive(owner)


def absorb(
    state: CatalogState, records: Iterable[NodeRecord], *, self_origin: str
) -> tuple[CatalogState, list[tuple[str, str]]]:
    """Merge records a peer sent; returns the new state and the sorted (dc, node) that changed."""
    return merge.apply_many(state, (r for r in records if taken_from_peer(r, self_origin)))


def held_version(state: CatalogState, datacenter: str, node: str) -> int:
    """Rule 3: the newest version known here for `node`: its record's or its tombstone's."""
    record = state.records.get(datacenter, {}).get(node)
    tomb = state.tombstones.get(datacenter, {}).get(node)
    return max(record.version if record else 0, tomb.version if tomb else 0)


def buries(state: CatalogState, datacenter: str, node: str, version: int) -> bool:
    """Rule 2 for one tombstone (not this agent's own node; the caller checks that)."""
    record = state.records.get(datacenter, {}).get(node)
    if record is not None:
        return record.version <= version
    tomb = state.tombstones.get(datacenter, {}).get(node)
    return tomb is None or tomb.version < version


def bury(
    state: CatalogState,
    datacenter: str,
    tombstones: Iterable[tuple[str, int]],
    *,
    self_origin: str,
    at_ms: int,
) -> tuple[CatalogState, list[str]]:
    """Apply tombstones a peer relayed; returns the new state and the nodes removed here.

    A node counts as removed when its record went, or when its tombstone is
    new or newer here (no record was held); the order is the peer's.
    """
    removed: list[str] = []
    for node, version in tombstones:
        if node == self_origin or not buries(state, datacenter, node, version):
            continue
        state, _ = merge.remove(
            state, datacenter, node, RELAYED_REMOVAL, at_ms=at_ms, version=version
        )
        removed.append(node)
    return state, removed
