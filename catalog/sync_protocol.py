"""Peer sync over agent RPC: frames, messages, their limits and their parsing, without I/O.

One exchange (scuttlebutt anti-entropy) between agents A and B:

    A -> B  {"t": "digest", "dc": dc, "digest": {node: [version, node_id]}}
    B -> A  {"t": "delta", "records": [newer records A lacks], "want": [nodes B lacks]}
    A -> B  {"t": "push", "dc": dc, "records": [the records B wanted]}
    B -> A  {"t": "ok", "applied": n}

Agents since the ranged round (range_sums.py) open with sums instead, and
send the digest only for the ranges whose sums differ:

    A -> B  {"t": "sums", "dc": dc, "root": 16 bytes, "buckets": n}
    B -> A  {"t": "delta", ...} (empty: same root) or {"t": "sums", "buckets": n, "sums": 8n bytes}
    A -> B  {"t": "digest", "dc": dc, "digest": {stamps in the ranges}, "buckets": n, "ranges": [i]}
    B -> A  {"t": "delta", ...} limited to those ranges, then push -> ok as above

An agent that predates it answers `sums` with an error ("unknown request
type"), and the asking side sends the full digest instead: the two mix.

and a direct pull when a member's serf tags show a newer record version:

    A -> B  {"t": "pull", "dc": dc, "nodes": [node, ...]}
    B -> A  {"t": "records", "records": [...]}

Both `delta` and `push` also carry `"tombstones": [[node, version], ...]` for
wanted names this agent knows were removed (an external node deregistered
through the catalog API has no serf leave to announce it), so a removal
spreads like a record does.

A `push` made at once on a change (record_news.py) may carry `"told": [node
names]`, the peers its sender handed the same records to; it changes
nothing here, only whom this agent passes them on to, and an agent that
does not know it ignores it (a bad one is an error reply, as any field).

`digest`, `delta`, `push` and `ok` may also carry an `"lww"` field: the
last-writer-wins maps (intentions) synced in the same round, see
`lww_sync.py`. It is optional both ways: a message without it is answered
as before, and an agent that does not know it ignores it.

Who does what: `sync_exchange.py` is the asking side (one object per
conversation), `sync_answer.py` the answering side (one function); both
hand back `Effects`, what a message brought to apply here. The sockets in
`agent/sync/` only move frames and apply effects.

Limits, all enforced here: a frame is a 4-byte big-endian length then one
msgpack map of at most MAX_FRAME bytes; a frame over it, or bytes that are
not msgpack, is a ProtocolError and the connection is closed. Every list or
map of nodes (digest, names, records, tombstones) holds at most
MAX_NODES_PER_REQUEST entries, or it is bad content. A well-formed request
with bad content is answered with {"t": "error", "msg": ...} and the
connection stays usable. Every record from a peer passes `record_from_wire`,
and records of another datacenter are refused: datacenters do not mix.
A peer relays records of other nodes as freely as its own, so the owner is
not hit by N pulls and updates that one path missed arrive by another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from gossamer.catalog.lww_sync import Entries
from gossamer.catalog.merge import CatalogState, Stamp, digest, records_for
from gossamer.catalog.model import NodeRecord
from gossamer.catalog.wire import RecordError, record_from_wire, record_to_wire

MAX_FRAME = 16 * 1024 * 1024  # a 10,000-node digest is well under 1 MiB
MAX_NODES_PER_REQUEST = 100_000  # ten times the largest cluster gossamer is built for

Message = dict[str, Any]


class ProtocolError(ValueError):
    """The byte stream cannot be trusted any more: close the connection."""


class RequestError(ValueError):
    """A well-framed request with bad content: answer with an error message."""


@dataclass(frozen=True)
class Effects:
    """What one message brought, for the shell to apply here (in this order).

    `records` go through `absorb.absorb` (never our own), `tombstones`
    through `absorb.bury`, `lww` to the owner of each map. `told` is a
    push's hint of the agents that were handed its records too
    (record_news.py): it applies nothing, it only spares them a relay.
    """

    records: tuple[NodeRecord, ...] = ()
    tombstones: tuple[tuple[str, int], ...] = ()
    lww: Mapping[str, Entries] = field(default_factory=dict)
    told: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.records or self.tombstones or any(self.lww.values()))


NO_EFFECTS = Effects()


def encode(message: Message) -> bytes:
    """One frame; ProtocolError if it would exceed MAX_FRAME (no peer would take it)."""
    body: bytes = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return len(body).to_bytes(4, "big") + body


class FrameDecoder:
    """Feed bytes as they arrive; complete messages come out in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        out: list[Message] = []
        while len(self._buffer) >= 4:
            size = int.from_bytes(self._buffer[:4], "big")
            if size > MAX_FRAME:
                raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME}")
            if len(self._buffer) < 4 + size:
                break
            body = bytes(self._buffer[4 : 4 + size])
            del self._buffer[: 4 + size]
            out.append(_unpack(body))
        return out


def _unpack(body: bytes) -> Message:
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"frame is not msgpack: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError('frame is not a message map with a "t" field')
    return message


# -- requests ---------------------------------------------------------------------------


def digest_request(state: CatalogState, datacenter: str) -> Message:
    """The opening of an anti-entropy round: our `{node: [version, node_id]}`."""
    stamps = digest(state, datacenter)
    return {"t": "digest", "dc": datacenter, "digest": {n: list(s) for n, s in stamps.items()}}


def pull_request(datacenter: str, nodes: list[str]) -> Message:
    """Ask for the records of `nodes` (the serf `cv` tag path)."""
    return {"t": "pull", "dc": datacenter, "nodes": sorted(set(nodes))}


def push_request(state: CatalogState, datacenter: str, nodes: list[str]) -> Message:
    """Hand a peer the records (or tombstones) of the `nodes` it said it lacks."""
    records = records_for(state, datacenter, nodes)
    return {
        "t": "push",
        "dc": datacenter,
        "records": [record_to_wire(r) for r in records],
        "tombstones": tombstones_for(state, datacenter, nodes),
    }


def tombstones_for(state: CatalogState, datacenter: str, nodes: list[str]) -> list[list[Any]]:
    """[[node, version], ...] for the asked names that this agent holds as removed."""
    tombs = state.tombstones.get(datacenter, {})
    return [[n, tombs[n].version] for n in sorted(set(nodes)) if n in tombs]


def parse_tombstones(raw: object) -> list[tuple[str, int]]:
    """A peer's tombstone list; absent means none. RecordError names a bad entry."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RecordError("tombstones: expected a list of [node, version]")
    if len(raw) > MAX_NODES_PER_REQUEST:
        raise RecordError(f"tombstones: more than {MAX_NODES_PER_REQUEST} entries")
    out = []
    for entry in raw:
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], int)
            and not isinstance(entry[1], bool)
            and 0 <= entry[1] < 2**63
        ):
            raise RecordError(f"tombstones: bad entry {entry!r:.80}")
        out.append((entry[0], entry[1]))
    return out


# -- parsing what a peer sent ------------------------------------------------------------


def parse_records(raw: object, datacenter: str) -> list[NodeRecord]:
    """Records from a peer's `delta`, `records` or `push`; RecordError names the bad one."""
    if not isinstance(raw, list):
        raise RecordError("records: expected a list")
    if len(raw) > MAX_NODES_PER_REQUEST:
        raise RecordError(f"records: more than {MAX_NODES_PER_REQUEST} records")
    records = [record_from_wire(item) for item in raw]
    for record in records:
        if record.datacenter != datacenter:
            raise RecordError(
                f"record of node {record.node!r} is in datacenter {record.datacenter!r}, "
                f"not {datacenter!r}"
            )
    return records


def parse_names(raw: object, what: str) -> list[str]:
    """A list of node names (a pull's `nodes`, a delta's `want`); RequestError if bad."""
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise RequestError(f"{what}: expected a list of node names")
    if len(raw) > MAX_NODES_PER_REQUEST:
        raise RequestError(f"{what}: more than {MAX_NODES_PER_REQUEST} names")
    return list(raw)


def parse_stamps(raw: object) -> dict[str, Stamp]:
    """A digest's `{node: [version, node_id]}`; RequestError names a bad entry."""
    if not isinstance(raw, dict):
        raise RequestError("digest: expected a map of node name to [version, node_id]")
    if len(raw) > MAX_NODES_PER_REQUEST:
        raise RequestError(f"digest: more than {MAX_NODES_PER_REQUEST} nodes")
    out: dict[str, Stamp] = {}
    for node, stamp in raw.items():
        if not (
            isinstance(node, str)
            and isinstance(stamp, list)
            and len(stamp) == 2
            and isinstance(stamp[0], int)
            and not isinstance(stamp[0], bool)
            and 0 <= stamp[0] < 2**63
            and isinstance(stamp[1], str)
        ):
            raise RequestError(f"digest: bad entry for node {node!r}")
        out[node] = Stamp(stamp[0], stamp[1])
    return out
