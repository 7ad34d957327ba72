"""Intentions as entries of the replicated last-writer-wins map. Pure: no I/O.

- The key is the pair, `"web => db"` (Consul's own spelling of an intention;
  names cannot hold spaces or `=`, so it splits back unambiguously). At most
  one intention per pair exists, so a key is the natural identity that two
  concurrent writers fight over.
- The value is the intention as Consul JSON (intentions/codec.py) without
  what each agent computes itself: `Precedence`, `CreateIndex`, `ModifyIndex`.
- A value that no longer decodes (written by a newer gossamer, or damaged)
  is not skipped: skipping a deny would allow. It decodes as a deny for its
  key's pair, with the reason in its description, until someone rewrites it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gossamer.catalog import lww
from gossamer.intentions.codec import intention_from_json, intention_to_json
from gossamer.intentions.model import DENY, Intention
from gossamer.intentions.validate import DESCRIPTION_MAX, IntentionError, validate

MAP_NAME = "intentions"
SEPARATOR = " => "
_LOCAL_FIELDS = ("Precedence", "CreateIndex", "ModifyIndex")


def pair_key(source: str, destination: str) -> str:
    return f"{source}{SEPARATOR}{destination}"


def split_key(key: str) -> tuple[str, str] | None:
    """The (source, destination) of a key, None unless both are valid names."""
    parts = key.split(SEPARATOR)
    if len(parts) != 2:
        return None
    probe = Intention(parts[0], parts[1], action="allow")
    bad = {p.field for p in validate(probe)} & {"SourceName", "DestinationName"}
    return None if bad else (parts[0], parts[1])


def to_value(ixn: Intention) -> dict[str, Any]:
    """What the map stores for `ixn`: its Consul JSON minus the locally computed fields."""
    value = intention_to_json(ixn)
    for name in _LOCAL_FIELDS:
        value.pop(name, None)
    return value


def decode(key: str, entry: lww.Entry) -> tuple[Intention | None, str]:
    """The intention a live entry holds, and a problem ("" when none).

    None only when the key itself is not a pair: such an entry governs
    nothing. A value that does not decode gives a deny for the key's pair.
    """
    pair = split_key(key)
    if pair is None:
        return None, f"key {key!r:.100} is not 'source => destination'"
    try:
        ixn = intention_from_json(entry.value)
    except IntentionError as exc:
        problem = "; ".join(str(p) for p in exc.problems)
        return unreadable(pair, problem), problem
    if ixn.pair != pair:
        problem = f"value is for {pair_key(*ixn.pair)!r}, not its key"
        return unreadable(pair, problem), problem
    return ixn, ""


def unreadable(pair: tuple[str, str], why: str) -> Intention:
    """The fail-closed stand-in for an entry this agent cannot read."""
    text = f"unreadable replicated intention, denied until rewritten: {why}"
    return Intention(pair[0], pair[1], action=DENY, description=text[:DESCRIPTION_MAX])


def rfc3339(wall_ms: int) -> str:
    """`2024-05-01T12:00:00.123Z`: CreatedAt/UpdatedAt as Consul prints them (UTC)."""
    seconds, millis = divmod(wall_ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"
