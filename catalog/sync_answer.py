"""The answering side of peer sync: a request and this agent's state in, a reply and effects out.

The agent RPC server, the tests and the simulation all answer through
`answer` (the server through `respond`, which also keeps the reply within
one frame), so what a peer's request may do here is decided once.

Rules this module keeps:
- The request's datacenter must be ours; then its type picks the handler
  (`sums`, `digest`, `pull`, `push`); anything else is an error reply.
- `sums` (range_sums.py): equal roots get an empty delta at once; otherwise
  the reply is our sum of every range, for the bucket count the peer chose.
  A `digest` with `ranges` is answered from our stamps in those ranges only.
- Bad content anywhere in a request (a record, a tombstone, the `lww` part)
  gets an error reply and brings nothing: a push is taken whole or not at
  all, so a peer never sees an error for a push that half happened.
- The `lww` part is read only when this agent holds LWW maps; without them
  it is ignored, as an agent that predates it would.
- `ok.applied` counts the records the push carried, our own included (they
  are dropped when the effects are applied, see `absorb.py`).
- A reply too large for one frame (MAX_FRAME) becomes an error reply, and
  the request's effects are dropped with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gossamer.catalog.lww_sync import (
    Entries,
    LwwSyncError,
    Snapshots,
    answer_offer,
    answer_push,
)
from gossamer.catalog.merge import CatalogState, diff, digest, records_for
from gossamer.catalog.range_sums import (
    in_ranges,
    parse_buckets,
    parse_ranges,
    parse_root,
    state_sums,
)
from gossamer.catalog.sync_protocol import (
    NO_EFFECTS,
    Effects,
    Message,
    ProtocolError,
    RequestError,
    encode,
    parse_names,
    parse_records,
    parse_stamps,
    parse_tombstones,
    tombstones_for,
)
from gossamer.catalog.wire import RecordError, record_to_wire


@dataclass(frozen=True)
class Served:
    """What this agent answers from: its catalog, its datacenter, and its LWW maps."""

    catalog: CatalogState
    datacenter: str
    maps: Snapshots = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """The reply to send, and what the request brought to apply here."""

    reply: Message
    effects: Effects = NO_EFFECTS


def error(message: str) -> Message:
    """An error reply: the request was not taken, the connection stays."""
    return {"t": "error", "msg": message}


def answer(request: Message, served: Served) -> Answer:
    """The reply to one request and its effects; bad content is an error reply."""
    try:
        if request.get("dc") != served.datacenter:
            raise RequestError(
                f"datacenter {request.get('dc')!r} does not match this agent's "
                f"{served.datacenter!r}"
            )
        handler = _HANDLERS.get(request["t"])
        if handler is None:
            raise RequestError(f"unknown request type {request['t']!r}")
        return handler(request, served)
    except (RequestError, RecordError, LwwSyncError) as exc:
        return Answer(error(str(exc)))


def respond(request: Message, served: Served) -> tuple[bytes, Effects]:
    """`answer`, encoded as one frame; a reply over the frame limit is an error instead."""
    result = answer(request, served)
    try:
        return encode(result.reply), result.effects
    except ProtocolError as exc:
        return encode(error(f"reply to {request['t']!r} too large: {exc}")), NO_EFFECTS


def _lww_offer_answered(reply: Message, request: Message, served: Served) -> Message:
    if served.maps:
        part = answer_offer(served.maps, request.get("lww"))
        if part:
            reply["lww"] = part
    return reply


def _sums(request: Message, served: Served) -> Answer:
    root, buckets = parse_root(request.get("root")), parse_buckets(request.get("buckets"))
    sums = state_sums(served.catalog, served.datacenter)
    if sums.root == root:
        reply: Message = {"t": "delta", "records": [], "tombstones": [], "want": []}
    else:
        reply = {"t": "sums", "buckets": buckets, "sums": sums.bucket_sums(buckets)}
    return Answer(_lww_offer_answered(reply, request, served))


def _digest(request: Message, served: Served) -> Answer:
    dc, state = served.datacenter, served.catalog
    theirs, mine = parse_stamps(request.get("digest")), digest(state, dc)
    if "ranges" in request:
        buckets = parse_buckets(request.get("buckets"))
        mine = in_ranges(mine, buckets, parse_ranges(request.get("ranges"), buckets))
    they_need, i_need = diff(theirs, mine)
    reply: Message = {
        "t": "delta",
        "records": [record_to_wire(r) for r in records_for(state, dc, they_need)],
        "tombstones": tombstones_for(state, dc, they_need),
        "want": i_need,
    }
    return Answer(_lww_offer_answered(reply, request, served))


def _pull(request: Message, served: Served) -> Answer:
    found = records_for(
        served.catalog, served.datacenter, parse_names(request.get("nodes"), "nodes")
    )
    return Answer({"t": "records", "records": [record_to_wire(r) for r in found]})


def _push(request: Message, served: Served) -> Answer:
    records = parse_records(request.get("records"), served.datacenter)
    tombstones = parse_tombstones(request.get("tombstones"))
    told = parse_names(request.get("told", []), "told")
    reply: Message = {"t": "ok", "applied": len(records)}
    incoming: Mapping[str, Entries] = {}
    if served.maps:
        wanted, incoming = answer_push(served.maps, request.get("lww"))
        if wanted:
            reply["lww"] = wanted
    lww = {name: entries for name, entries in incoming.items() if entries}
    return Answer(reply, Effects(tuple(records), tuple(tombstones), lww, tuple(told)))


_HANDLERS: dict[str, Callable[[Message, Served], Answer]] = {
    "sums": _sums,
    "digest": _digest,
    "pull": _pull,
    "push": _push,
}
