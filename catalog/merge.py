"""The replicated catalog as one immutable value, and the rules that merge records into it.

Every agent holds a `CatalogState`: per datacenter, the newest `NodeRecord`
it has seen for each node name, tombstones for nodes that left, and an
overlay of which nodes Serf currently reports failed. Functions take a state
and return a new one; nothing here does I/O, reads a clock or picks a peer.

Which record wins (so every agent picks the same one, in any order of arrival):
1. Records of one node name are ordered by `(version, node_id)`. For one
   owner that is its version; for two machines claiming one name (a node was
   replaced and the new one reuses the name) the higher version wins, and
   because owners floor versions at the wall clock (`model.next_version`) the
   newer machine normally does; equal versions fall to the larger node id.
2. Equal `(version, node_id)` with equal content is a no-op, except that a
   copy carrying its owner's signature replaces one without (the signature
   is not content: `wire.record_body_to_wire`), so relays can pass it on.
   With different content (an owner bug: versions must grow on every
   change) the larger canonical encoding wins, so agents still agree.
3. A tombstone (node left, was force-left or reaped) buries every record of
   that name whose version is <= the tombstone's, whatever its node id: a
   record relayed late by a peer that has not heard of the leave must not
   bring the node back. A record with a higher version (the node rejoined
   and published again) replaces the tombstone.

Why gossip health is an overlay and not part of the record: a failed node
cannot publish its own failure, and if observers wrote it into the record
they would be writing a record they do not own, racing the owner's versions
(two writers per record breaks rule 1). Each agent already learns failures
from its own Serf, which converges them, so it derives `serfHealth` locally:
no replication traffic, and it flips on the Serf event rather than a pull.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from gossamer.catalog.model import SERF_HEALTH_ID, SERF_HEALTH_NAME, Check, NodeRecord
from gossamer.catalog.wire import record_body_to_wire

# Consul's outputs for the serfHealth check (agent/consul/leader.go), which
# some dashboards and scripts match on.
SERF_ALIVE_OUTPUT = "Agent alive and reachable"
SERF_FAILED_OUTPUT = "Agent not live or unreachable"


V = TypeVar("V")


class Stamp(NamedTuple):
    """What a digest says about one node: enough to tell who has the newer record."""

    version: int
    node_id: str


@dataclass(frozen=True)
class Tombstone:
    """A node removed at `version`; `at_ms` is the local wall time, used only for GC."""

    version: int
    node_id: str
    reason: str
    at_ms: int


Records = Mapping[str, Mapping[str, NodeRecord]]
Tombstones = Mapping[str, Mapping[str, Tombstone]]


@dataclass(frozen=True)
class CatalogState:
    """Records and tombstones per datacenter, plus the Serf-failed overlay.

    Treat as immutable. Empty inner maps are never stored, so equal catalogs
    compare equal whatever history produced them.
    """

    records: Records = field(default_factory=dict)
    tombstones: Tombstones = field(default_factory=dict)
    failed: frozenset[tuple[str, str]] = frozenset()


def _canonical(record: NodeRecord) -> str:
    return json.dumps(record_body_to_wire(record), sort_keys=True, separators=(",", ":"))


def _beats(new: NodeRecord, current: NodeRecord | None, tomb: Tombstone | None) -> bool:
    """Rules 1-3 of the module docstring."""
    if tomb is not None and new.version <= tomb.version:
        return False
    if current is None:
        return True
    if (new.version, new.node_id) != (current.version, current.node_id):
        return (new.version, new.node_id) > (current.version, current.node_id)
    if new == current:  # equal content: a signed copy replaces an unsigned one (rule 2)
        return current.signed is None and new.signed is not None
    return _canonical(new) > _canonical(current)


def beats(state: CatalogState, record: NodeRecord) -> bool:
    """Whether merging `record` into `state` would change it (rules 1-3), without merging."""
    dc, node = record.datacenter, record.node
    return _beats(
        record, state.records.get(dc, {}).get(node), state.tombstones.get(dc, {}).get(node)
    )


def _without_empty(maps: Mapping[str, Mapping[str, V]]) -> dict[str, Mapping[str, V]]:
    return {dc: inner for dc, inner in sorted(maps.items()) if inner}


def apply_many(
    state: CatalogState, records: Iterable[NodeRecord]
) -> tuple[CatalogState, list[tuple[str, str]]]:
    """Merge a batch of records; returns the new state and the sorted (dc, node) that changed.

    One batch copies each touched datacenter's map once, which is what makes
    a digest exchange that pulls many records cheap.
    """
    recs = {dc: dict(m) for dc, m in state.records.items()}
    tombs = {dc: dict(m) for dc, m in state.tombstones.items()}
    changed: set[tuple[str, str]] = set()
    for record in records:
        dc, name = record.datacenter, record.node
        dc_recs, dc_tombs = recs.setdefault(dc, {}), tombs.setdefault(dc, {})
        if _beats(record, dc_recs.get(name), dc_tombs.get(name)):
            dc_recs[name] = record
            dc_tombs.pop(name, None)
            changed.add((dc, name))
    if not changed:
        return state, []
    new = CatalogState(_without_empty(recs), _without_empty(tombs), state.failed)
    return new, sorted(changed)


def apply(state: CatalogState, record: NodeRecord) -> tuple[CatalogState, bool]:
    """Merge one record; `changed` is False when it was stale, a duplicate or buried."""
    new, changed = apply_many(state, [record])
    return new, bool(changed)


def remove(
    state: CatalogState, datacenter: str, node: str, reason: str, *, at_ms: int, version: int = 0
) -> tuple[CatalogState, bool]:
    """Drop a node that left or was reaped, leaving a tombstone; `changed` if a record went.

    The tombstone takes the highest version known: the record's, an earlier
    tombstone's, or `version` (the one in the node's Serf tags), so a record
    this agent never saw still cannot resurrect the node later.
    """
    current = state.records.get(datacenter, {}).get(node)
    old_tomb = state.tombstones.get(datacenter, {}).get(node)
    versions = [version, current.version if current else 0, old_tomb.version if old_tomb else 0]
    node_id = current.node_id if current else (old_tomb.node_id if old_tomb else "")
    tomb = Tombstone(max(versions), node_id, reason, at_ms)
    recs = {dc: dict(m) for dc, m in state.records.items()}
    tombs = {dc: dict(m) for dc, m in state.tombstones.items()}
    recs.get(datacenter, {}).pop(node, None)
    tombs.setdefault(datacenter, {})[node] = tomb
    failed = state.failed - {(datacenter, node)}
    new = CatalogState(_without_empty(recs), _without_empty(tombs), failed)
    return new, current is not None


def gc_tombstones(state: CatalogState, now_ms: int, grace_ms: int) -> CatalogState:
    """Forget tombstones older than the grace period.

    The grace must outlast the longest time a peer can hold a stale record
    unnoticed (a partition up to `reconnect_timeout`), or that peer could
    relay the record back after its tombstone is gone.
    """
    tombs = {
        dc: {n: t for n, t in m.items() if t.at_ms + grace_ms > now_ms}
        for dc, m in state.tombstones.items()
    }
    return CatalogState(state.records, _without_empty(tombs), state.failed)


# --- anti-entropy ------------------------------------------------------------------------


def digest(state: CatalogState, datacenter: str) -> dict[str, Stamp]:
    """`{node: Stamp}` for one datacenter, sorted by node; tombstones included.

    Listing tombstones keeps a peer that still has a left node's record from
    offering it back every round (equal stamps mean nothing to pull).
    """
    out = {n: Stamp(t.version, t.node_id) for n, t in state.tombstones.get(datacenter, {}).items()}
    out |= {n: Stamp(r.version, r.node_id) for n, r in state.records.get(datacenter, {}).items()}
    return dict(sorted(out.items()))


def diff(mine: Mapping[str, Stamp], theirs: Mapping[str, Stamp]) -> tuple[list[str], list[str]]:
    """(what I should pull from them, what they should pull from me), each sorted.

    A name missing on one side counts as older than anything the other has.
    """
    i_need = sorted(n for n, s in theirs.items() if n not in mine or tuple(s) > tuple(mine[n]))
    they_need = sorted(n for n, s in mine.items() if n not in theirs or tuple(s) > tuple(theirs[n]))
    return i_need, they_need


def records_for(state: CatalogState, datacenter: str, nodes: Iterable[str]) -> list[NodeRecord]:
    """The records a peer asked for that this agent has (tombstoned names are skipped)."""
    dc_recs = state.records.get(datacenter, {})
    return [dc_recs[n] for n in sorted(set(nodes)) if n in dc_recs]


# --- reading -----------------------------------------------------------------------------


def get(state: CatalogState, datacenter: str, node: str) -> NodeRecord | None:
    """The live record of a node, if any."""
    return state.records.get(datacenter, {}).get(node)


def nodes(state: CatalogState, datacenter: str) -> list[NodeRecord]:
    """All live records of a datacenter, sorted by node name."""
    return [r for _, r in sorted(state.records.get(datacenter, {}).items())]


def datacenters(state: CatalogState) -> list[str]:
    """Datacenters with at least one live record, sorted."""
    return sorted(dc for dc, m in state.records.items() if m)


def owned_by(state: CatalogState, datacenter: str, origin: str) -> list[str]:
    """Names of the nodes an agent serves (itself and its external nodes), sorted."""
    return sorted(n for n, r in state.records.get(datacenter, {}).items() if r.origin == origin)


# --- gossip health overlay ---------------------------------------------------------------


def mark_failed(state: CatalogState, datacenter: str, node: str) -> tuple[CatalogState, bool]:
    """Serf reports the node failed: its serfHealth turns critical; the record stays."""
    key = (datacenter, node)
    if key in state.failed:
        return state, False
    return CatalogState(state.records, state.tombstones, state.failed | {key}), True


def mark_alive(state: CatalogState, datacenter: str, node: str) -> tuple[CatalogState, bool]:
    """Serf reports the node alive again: its serfHealth turns passing."""
    key = (datacenter, node)
    if key not in state.failed:
        return state, False
    return CatalogState(state.records, state.tombstones, state.failed - {key}), True


def is_failed(state: CatalogState, datacenter: str, node: str) -> bool:
    """Whether Serf currently reports the node failed."""
    return (datacenter, node) in state.failed


def serf_health(state: CatalogState, record: NodeRecord) -> Check | None:
    """The node's serfHealth check as this agent sees it; None for external nodes.

    External nodes run no agent and are no Serf members, so like Consul they
    get no serfHealth check.
    """
    if record.is_external:
        return None
    failed = is_failed(state, record.datacenter, record.node)
    return Check(
        check_id=SERF_HEALTH_ID,
        name=SERF_HEALTH_NAME,
        status="critical" if failed else "passing",
        output=SERF_FAILED_OUTPUT if failed else SERF_ALIVE_OUTPUT,
    )


def node_checks(state: CatalogState, record: NodeRecord) -> tuple[Check, ...]:
    """The record's checks with serfHealth from the overlay, sorted by check id.

    A serfHealth check inside an agent's own record is replaced: only gossip
    decides it, never the (possibly failed) owner.
    """
    health = serf_health(state, record)
    if health is None:
        return record.checks
    kept = [c for c in record.checks if c.check_id != SERF_HEALTH_ID]
    return tuple(sorted([*kept, health], key=lambda c: c.check_id))


def service_checks(state: CatalogState, record: NodeRecord, service_id: str) -> tuple[Check, ...]:
    """The checks that decide one instance's health: node-level (incl. serfHealth) and its own."""
    return tuple(c for c in node_checks(state, record) if c.service_id in ("", service_id))
