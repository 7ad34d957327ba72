"""Last-writer-wins maps in the peer digest exchange: the message parts, without I/O.

Cluster-wide maps (intentions; later the CA bundle and config entries) ride
on the catalog's anti-entropy messages (sync_protocol.py) as an optional
`"lww"` field, one part per map name:

    digest  A -> B  "lww": {map: hash}            hash of A's digest {key: stamp}
    delta   B -> A  "lww": {map: {key: stamp}}    B's digest, only where the hashes differ
    push    A -> B  "lww": {map: {"entries": [entries B lacks], "want": [keys A lacks]}}
    ok      B -> A  "lww": {map: [the entries A wanted]}

So a round between agents that agree costs one short hash per map, and one
that disagrees still takes the catalog's two round trips. A push carrying
`entries` only (no `want`) is also how an agent hands fresh writes to a few
peers at once, without waiting for the next round.

Tolerance both ways: a message without `"lww"`, or a map name this agent
does not hold (a newer peer's), is simply not synced; an older peer ignores
the field. A malformed part is an `LwwSyncError`, answered as an error.
Entries pass `lww.entry_from_wire`; what a value means is the map owner's
business (the intention store decodes and validates its own).

The HLC bound (`split_ahead`): an entry stamped more than
MAX_CLOCK_OFFSET_MS ahead of the receiver's wall clock is refused, so one
peer with a broken (or hostile) clock can neither pin a value for days (its
stamp would beat every honest write until the clocks caught up) nor drag
every agent's clock forward (the HLC follows the stamps it takes in). A
refused entry is not lost: the digests still differ, so every later round
offers it again, and it is taken once the receiver's clock is within the
bound — an honest writer whose clock runs ahead is only delayed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gossamer.catalog import lww
from gossamer.catalog.hlc import StampError, Timestamp

MAX_KEYS = 100_000  # per map and message; far beyond any real intention set

# Serf's reconnect_timeout: a member away longer than this is reaped, so no
# peer can still hold a value older than a tombstone that has outlived it.
TOMBSTONE_GRACE_MS = 72 * 3600 * 1000

# The HLC bound. CockroachDB refuses more than 500 ms, but it also stops a node
# whose clock drifts that far; gossamer does not manage anyone's clock, and
# agents run on hosts and VMs that are NTP-synced to within tens of ms but
# may be seconds off after a suspend or without NTP. 60 s keeps that honest
# range working (time in flight does not count against it: an entry only
# gets older on the way), while a bad clock can win a key for at most a
# minute; it is also below the 5 minutes beyond which the agent's own clock
# already refuses to follow a peer (agent/replicated/hlc_clock.py).
MAX_CLOCK_OFFSET_MS = 60_000

Entries = list[tuple[str, lww.Entry]]


class LwwSyncError(ValueError):
    """A peer's `lww` part is malformed; the message says where."""


@dataclass(frozen=True)
class Snapshot:
    """One map at one instant with its digest hash (computed once per change, not per round)."""

    entries: lww.LwwMap
    hash: str

    @classmethod
    def of(cls, m: lww.LwwMap) -> Snapshot:
        return cls(m, map_hash(m))


Snapshots = Mapping[str, Snapshot]


def map_hash(m: lww.LwwMap) -> str:
    """A short hash of `{key: stamp}` (tombstones included): equal maps, equal hashes."""
    h = hashlib.sha256()
    for key, stamp in lww.digest(m).items():
        h.update(f"{key}\0{stamp.wall_ms}\0{stamp.logical}\0{stamp.node}\n".encode())
    return h.hexdigest()[:16]


# -- building and answering ---------------------------------------------------------------


def offer(snaps: Snapshots) -> dict[str, str]:
    """The `lww` part of a digest request."""
    return {name: s.hash for name, s in sorted(snaps.items())}


def answer_offer(snaps: Snapshots, raw: object) -> dict[str, dict[str, list[Any]]]:
    """The `lww` part of the delta: our digest of each map whose hash differs from theirs."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise LwwSyncError("lww: expected a map of map name to hash")
    return {
        name: {k: s.to_wire() for k, s in lww.digest(snaps[name].entries).items()}
        for name, theirs in sorted(raw.items())
        if name in snaps and snaps[name].hash != theirs
    }


def plan(snaps: Snapshots, raw: object) -> dict[str, dict[str, Any]]:
    """The `lww` part of the push, from the delta's: what the peer lacks, and what we lack."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise LwwSyncError("lww: expected a map of map name to digest")
    out: dict[str, dict[str, Any]] = {}
    for name, digest in sorted(raw.items()):
        if name not in snaps:
            continue
        theirs = parse_digest(digest, name)
        ours = snaps[name].entries
        newer = lww.newer_than(ours, theirs)
        want = [k for k, s in theirs.items() if k not in ours.entries or s > ours.entries[k].stamp]
        if newer or want:
            out[name] = {"entries": [lww.entry_to_wire(k, e) for k, e in newer], "want": want}
    return out


def push_part(name: str, entries: Entries) -> dict[str, dict[str, Any]]:
    """The `lww` part of a push that hands `entries` of map `name` to a peer."""
    return {name: {"entries": [lww.entry_to_wire(k, e) for k, e in entries], "want": []}}


def answer_push(snaps: Snapshots, raw: object) -> tuple[dict[str, list[Any]], dict[str, Entries]]:
    """The `lww` part of the ok reply (the entries asked for), and the entries pushed to us."""
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict):
        raise LwwSyncError("lww: expected a map of map name to entries and wants")
    reply: dict[str, list[Any]] = {}
    incoming: dict[str, Entries] = {}
    for name, part in sorted(raw.items()):
        if name not in snaps:
            continue
        if not isinstance(part, dict):
            raise LwwSyncError(f"lww.{name}: expected an object with entries and want")
        incoming[name] = parse_entries(part.get("entries"), name)
        want = _keys(part.get("want"), name)
        held = snaps[name].entries.entries
        found = [(k, held[k]) for k in sorted(set(want)) if k in held]
        if found:
            reply[name] = [lww.entry_to_wire(k, e) for k, e in found]
    return reply, incoming


def receive_ok(snaps: Snapshots, raw: object) -> dict[str, Entries]:
    """The entries in an ok reply's `lww` part, for the maps we hold."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise LwwSyncError("lww: expected a map of map name to entries")
    return {name: parse_entries(v, name) for name, v in sorted(raw.items()) if name in snaps}


# -- parsing ------------------------------------------------------------------------------


def parse_digest(raw: object, name: str) -> dict[str, Timestamp]:
    if not isinstance(raw, dict) or len(raw) > MAX_KEYS:
        raise LwwSyncError(f"lww.{name}: expected a map of key to [wall_ms, logical, node]")
    out: dict[str, Timestamp] = {}
    for key, stamp in raw.items():
        if not isinstance(key, str):
            raise LwwSyncError(f"lww.{name}: keys must be strings")
        try:
            out[key] = Timestamp.from_wire(stamp)
        except StampError as exc:
            raise LwwSyncError(f"lww.{name}[{key!r:.80}]: {exc}") from None
    return out


def parse_entries(raw: object, name: str) -> Entries:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_KEYS:
        raise LwwSyncError(f"lww.{name}: expected a list of entries")
    out: Entries = []
    for item in raw:
        try:
            out.append(lww.entry_from_wire(item))
        except lww.EntryError as exc:
            raise LwwSyncError(f"lww.{name}: {exc}") from None
    return out


def _keys(raw: object, name: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_KEYS:
        raise LwwSyncError(f"lww.{name}.want: expected a list of keys")
    if not all(isinstance(k, str) for k in raw):
        raise LwwSyncError(f"lww.{name}.want: keys must be strings")
    return list(raw)


def split_ahead(
    entries: Entries, now_ms: int, bound_ms: int = MAX_CLOCK_OFFSET_MS
) -> tuple[Entries, Entries]:
    """(entries within the bound, entries stamped more than `bound_ms` after `now_ms`)."""
    kept: Entries = []
    ahead: Entries = []
    for key, entry in entries:
        (ahead if entry.stamp.wall_ms - now_ms > bound_ms else kept).append((key, entry))
    return kept, ahead


def expired(entry: lww.Entry, now_ms: int, grace_ms: int = TOMBSTONE_GRACE_MS) -> bool:
    """`lww.expired` with the agents' grace as the default."""
    return lww.expired(entry, now_ms, grace_ms)
