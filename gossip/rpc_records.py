"""Typed values for Serf RPC response bodies and stream records.

Serf sends Go structs as msgpack maps; these functions turn them into frozen
dataclasses. They are lenient on purpose: a missing field gets a neutral
default (Go's zero value, which is what serf would have sent), so a newer or
older serf does not break the client. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gossamer.gossip.members import Member

MEMBER_EVENTS = frozenset(
    {"member-join", "member-leave", "member-failed", "member-update", "member-reap"}
)


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    return value if isinstance(value, int) else 0


def _float(body: Mapping[str, Any], key: str) -> float:
    value = body.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


def _bytes(body: Mapping[str, Any], key: str) -> bytes:
    value = body.get(key)
    if isinstance(value, str):  # an older encoder may send raw as str
        return value.encode()
    return bytes(value) if isinstance(value, bytes | bytearray) else b""


def _str_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in _map(value).items()}


@dataclass(frozen=True, slots=True)
class KeyResponse:
    """Outcome of a keyring operation, gathered by serf from every node.

    `keys` (list-keys only) maps each base64 key to how many nodes hold it;
    `messages` maps node name to that node's complaint, if any.
    """

    messages: dict[str, str]
    keys: dict[str, int]
    num_nodes: int
    num_err: int
    num_resp: int


@dataclass(frozen=True, slots=True)
class Coordinate:
    """A Vivaldi network coordinate; RTT estimates come from pairs of these."""

    vec: tuple[float, ...]
    error: float
    adjustment: float
    height: float


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """Members joined, left, failed, were updated or reaped (`event` says which)."""

    event: str
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class UserEvent:
    """A custom event fired with `event`; `ltime` orders events cluster-wide."""

    ltime: int
    name: str
    payload: bytes
    coalesce: bool


@dataclass(frozen=True, slots=True)
class QueryEvent:
    """A query addressed to this node; answer it with `respond(id, ...)`.

    `id` is only valid on the connection that received the event and until
    the query's timeout.
    """

    id: int
    ltime: int
    name: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """One step of a running query: an "ack", a "response", or the final "done"."""

    type: str
    from_: str
    payload: bytes


StreamEvent = MemberEvent | UserEvent | QueryEvent


def members(body: object) -> list[Member]:
    """The `Members` list of a members / members-filtered response."""
    raw = _map(body).get("Members")
    if not isinstance(raw, list):
        return []
    return [Member.from_rpc(m) for m in raw if isinstance(m, Mapping)]


def join_count(body: object) -> int:
    """The join response's `Num`: how many nodes were contacted successfully."""
    return _int(_map(body), "Num")


def key_response(body: object) -> KeyResponse:
    """A keyring operation's body; `Keys` is nil except for list-keys."""
    b = _map(body)
    keys = {str(k): int(v) for k, v in _map(b.get("Keys")).items() if isinstance(v, int)}
    return KeyResponse(
        messages=_str_map(b.get("Messages")),
        keys=keys,
        num_nodes=_int(b, "NumNodes"),
        num_err=_int(b, "NumErr"),
        num_resp=_int(b, "NumResp"),
    )


def coordinate(body: object) -> Coordinate | None:
    """The get-coordinate body; None when serf has no coordinate (Ok false)."""
    b = _map(body)
    if not b.get("Ok"):
        return None
    c = _map(b.get("Coord"))
    vec = c.get("Vec")
    return Coordinate(
        vec=tuple(float(v) for v in vec) if isinstance(vec, list) else (),
        error=_float(c, "Error"),
        adjustment=_float(c, "Adjustment"),
        height=_float(c, "Height"),
    )


def stats(body: object) -> dict[str, dict[str, str]]:
    """The stats body: sections (agent, runtime, serf, tags, ...) of string values."""
    return {str(k): _str_map(v) for k, v in _map(body).items()}


def stream_event(body: object) -> StreamEvent | None:
    """A record of an event stream; None for a kind this client does not know."""
    b = _map(body)
    kind = b.get("Event")
    if kind in MEMBER_EVENTS:
        return MemberEvent(event=str(kind), members=tuple(members(b)))
    if kind == "user":
        return UserEvent(
            ltime=_int(b, "LTime"),
            name=str(b.get("Name", "")),
            payload=_bytes(b, "Payload"),
            coalesce=bool(b.get("Coalesce")),
        )
    if kind == "query":
        return QueryEvent(
            id=_int(b, "ID"),
            ltime=_int(b, "LTime"),
            name=str(b.get("Name", "")),
            payload=_bytes(b, "Payload"),
        )
    return None


def query_record(body: object) -> QueryRecord | None:
    """A record of a query's response stream; None for an ack or response from no node.

    serf (0.8.x) closes a query's ack and response channels on one timer and
    ends the RPC stream on another; when the first fires first (seen under
    load), its stream loop reads the closed channels and sends records with
    an empty `From`. No node sent them, so they are dropped.
    """
    b = _map(body)
    record = QueryRecord(
        type=str(b.get("Type", "")), from_=str(b.get("From", "")), payload=_bytes(b, "Payload")
    )
    return None if record.type in ("ack", "response") and not record.from_ else record


def log_line(body: object) -> str | None:
    """The text of a monitor record."""
    line = _map(body).get("Log")
    return line if isinstance(line, str) else None
