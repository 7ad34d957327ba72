"""A last-writer-wins map for cluster-wide state that any agent may write.

Intentions, the CA trust bundle and config entries have no owner node, so
unlike node records they cannot be decided by an owner's version. Each key
(the natural key: "source→destination" for an intention, "kind/name" for a
config entry) holds the entry with the greatest hybrid-logical-clock stamp;
a delete is an entry too (a tombstone), so a delete that happened after a
write wins over it wherever the two meet.

Rules:
- Entries of one key are ordered by `(stamp, deleted, canonical value)`.
  Stamps from HLC clocks are unique per writer, so only a buggy writer
  produces a tie; the rest of the key still picks the same winner
  everywhere. A delete beats a write with the same stamp.
- `merge` is a join: commutative, associative, idempotent. Agents may
  exchange whole maps or digests in any order and still converge.
- Tombstones are kept for a grace period and then collected (`gc`). The
  grace must outlast the longest partition, or a peer still holding the old
  value could bring a deleted key back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.catalog.hlc import StampError, Timestamp
from gossamer.catalog.plain_json import json_problem


class EntryError(ValueError):
    """An entry from a peer is malformed; says which part."""


@dataclass(frozen=True)
class Entry:
    """The latest write of one key: a JSON value, or a tombstone (`deleted`, value None)."""

    stamp: Timestamp
    value: Any = None
    deleted: bool = False

    def rank(self) -> tuple[Timestamp, bool, str]:
        """The total order that decides which write wins (see the module docstring)."""
        return self.stamp, self.deleted, json.dumps(self.value, sort_keys=True)


@dataclass(frozen=True)
class LwwMap:
    """Key -> winning entry, tombstones included. Treat as immutable."""

    entries: Mapping[str, Entry] = field(default_factory=dict)


def merge_entries(m: LwwMap, incoming: Iterable[tuple[str, Entry]]) -> tuple[LwwMap, list[str]]:
    """Fold entries in; returns the map and the sorted keys whose entry changed."""
    out = dict(m.entries)
    changed: set[str] = set()
    for key, entry in incoming:
        current = out.get(key)
        if current is None or entry.rank() > current.rank():
            out[key] = entry
            changed.add(key)
    if not changed:
        return m, []
    return LwwMap(dict(sorted(out.items()))), sorted(changed)


def merge(a: LwwMap, b: LwwMap) -> LwwMap:
    """The join of two maps: for every key, the winning entry of either."""
    return merge_entries(a, b.entries.items())[0]


def put(m: LwwMap, key: str, value: Any, stamp: Timestamp) -> LwwMap:
    """Write a value; a no-op if the key already holds a later entry."""
    return merge_entries(m, [(key, Entry(stamp, value))])[0]


def delete(m: LwwMap, key: str, stamp: Timestamp) -> LwwMap:
    """Delete by writing a tombstone; a no-op if the key already holds a later entry."""
    return merge_entries(m, [(key, Entry(stamp, None, deleted=True))])[0]


def get(m: LwwMap, key: str) -> Any | None:
    """The live value of a key, or None when absent or deleted."""
    entry = m.entries.get(key)
    return None if entry is None or entry.deleted else entry.value


def items(m: LwwMap) -> list[tuple[str, Any]]:
    """Live (key, value) pairs sorted by key."""
    return [(k, e.value) for k, e in sorted(m.entries.items()) if not e.deleted]


def digest(m: LwwMap) -> dict[str, Timestamp]:
    """`{key: stamp}` sorted by key, tombstones included (so deletes propagate too)."""
    return {k: e.stamp for k, e in sorted(m.entries.items())}


def newer_than(m: LwwMap, theirs: Mapping[str, Timestamp]) -> list[tuple[str, Entry]]:
    """What a peer with digest `theirs` lacks: entries whose stamps beat (or are missing in) it.

    Equal stamps count as the same write; see the tie rule for writer bugs.
    """
    return [(k, e) for k, e in sorted(m.entries.items()) if k not in theirs or e.stamp > theirs[k]]


def expired(entry: Entry, now_ms: int, tombstone_grace_ms: int) -> bool:
    """A tombstone past its grace: collected here, and not taken back from a peer."""
    return entry.deleted and entry.stamp.wall_ms + tombstone_grace_ms <= now_ms


def gc(m: LwwMap, now_ms: int, tombstone_grace_ms: int) -> LwwMap:
    """Drop tombstones whose stamp is older than the grace; live entries always stay."""
    kept = {k: e for k, e in m.entries.items() if not expired(e, now_ms, tombstone_grace_ms)}
    return m if len(kept) == len(m.entries) else LwwMap(kept)


# --- wire -----------------------------------------------------------------------------------


def entry_to_wire(key: str, entry: Entry) -> dict[str, Any]:
    """One entry as JSON-able data for the digest exchange."""
    return {
        "key": key,
        "stamp": entry.stamp.to_wire(),
        "deleted": entry.deleted,
        "value": entry.value,
    }


def entry_from_wire(data: object) -> tuple[str, Entry]:
    """Decode and validate a peer's entry; raises EntryError, never anything else."""
    if not isinstance(data, dict):
        raise EntryError("entry: expected an object")
    key, deleted, value = data.get("key"), data.get("deleted"), data.get("value")
    if not isinstance(key, str):
        raise EntryError("key: expected a string")
    if not isinstance(deleted, bool):
        raise EntryError("deleted: expected true or false")
    if deleted and value is not None:
        raise EntryError("value: a deleted entry carries no value")
    try:
        stamp = Timestamp.from_wire(data.get("stamp"))
    except StampError as err:
        raise EntryError(str(err)) from None
    if problem := json_problem(value, "value"):
        raise EntryError("{}: {}".format(*problem))
    return key, Entry(stamp, value, deleted)
