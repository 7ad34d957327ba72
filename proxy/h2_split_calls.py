"""The splitter's commands to its shell, its calls and its upstream connections
(h2_split.py). Pure.

A call is one stream of the client's, carried on a stream of the same id on
one upstream connection: each upstream connection sees an increasing run of
the client's odd ids, which RFC 9113 §5.1.1 allows (the ids it skips are
idle, closed by implication), so nothing is renumbered and a frame's stream
id says its call on either side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from gossamer.proxy.h2_split_flow import Leg
from gossamer.proxy.h2_split_peer import Peer
from gossamer.proxy.h2_split_wire import MAX_WINDOW

K = TypeVar("K")
# An upstream's last stream before it sent GOAWAY: none yet. Above any stream id: a server
# that shuts down gracefully first says GOAWAY with 2^31-1 (grpc-go, Envoy, nginx), and that
# one must stop new calls too.
NEVER: int = MAX_WINDOW + 1
MAX_INTERIM = 8  # 1xx heads an answer may have (they are not flow-controlled: they must end)


@dataclass(frozen=True)
class ToClient:
    """Write these bytes to the client's connection."""

    data: bytes


class _Keyed(Generic[K]):
    """A command about one upstream connection. Plain classes, not frozen dataclasses, for
    these generic ones: mypyc cannot compile a generic dataclass (its module fails to load),
    and the splitter runs compiled (native.py). Equal, hashed and shown as a dataclass."""

    __slots__ = ("key",)

    def __init__(self, key: K) -> None:
        self.key = key

    def parts(self) -> tuple[object, ...]:
        return (self.key,)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, _Keyed) and (
            other.parts() == self.parts())  # fmt: skip

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self.parts()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.parts()))})"


class ToUpstream(_Keyed[K]):
    """Write these bytes to the connection to `key` (only ever after `opened(key)`)."""

    __slots__ = ("data",)

    def __init__(self, key: K, data: bytes) -> None:
        super().__init__(key)
        self.data = data

    def parts(self) -> tuple[object, ...]:
        return (self.key, self.data)


class Open(_Keyed[K]):
    """Dial `key`; then say `opened(key)` or `open_failed(key)`."""

    __slots__ = ()


class Close(_Keyed[K]):
    """Close the connection to `key` once the bytes before this command are written, or
    abandon its dial if it is still under way. Report nothing more of it (not even that
    dial's outcome): the splitter has forgotten it, and an `Open(key)` may follow."""

    __slots__ = ()


@dataclass(frozen=True)
class CloseClient:
    """Close the client's connection once the bytes before this command are written."""


Command = ToClient | ToUpstream[K] | Open[K] | Close[K] | CloseClient


class Call(Generic[K]):
    __slots__ = ("answered", "client_ended", "down", "grpc", "heads", "key", "started",
                 "stream", "tried", "up", "upstream_ended")  # fmt: skip

    def __init__(self, stream: int, started: float, grpc: bool = False) -> None:
        self.stream = stream
        self.started = started
        self.grpc = grpc  # the request's content-type is gRPC's
        self.key: K | None = None  # its instance, once chosen
        self.tried: set[K] = set()  # instances chosen for it (one retry after a failed open)
        self.up = Leg(stream)  # to the upstream: the request
        self.down = Leg(stream)  # to the client: the answer
        self.client_ended = False  # the client's END_STREAM came
        self.upstream_ended = False  # the upstream's END_STREAM came
        self.answered = False  # the upstream's final (not 1xx) head came
        self.heads = 0  # its interim (1xx) heads

    def done(self) -> bool:
        """Nothing more goes either way: the call can be forgotten."""
        return self.up.ended and self.down.ended


class Upstream(Generic[K]):
    __slots__ = ("calls", "goaway", "last", "opened", "peer")

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.opened = False  # the shell said `opened`: bytes may go
        self.calls: dict[int, Call[K]] = {}  # by stream; before `opened`, those waiting
        self.last = 0  # the highest stream opened on it
        self.goaway = NEVER  # the last stream it said it may process (GOAWAY)

    def takes(self, stream: int) -> bool:
        """Whether a new call on `stream` may go on this connection."""
        return (self.goaway == NEVER and self.last < stream
                and len(self.calls) < self.peer.max_streams)  # fmt: skip


def answer_fault(call: Call[K], fields: list[tuple[bytes, bytes]], end: bool) -> str:
    """Why an instance's header block on `call` must not go on to the client ('' when it may
    go), as RFC 9113 §8.1 has the client's HTTP/2 stack judge it: passed on, a bad one would
    end the client's whole connection, every call on it, where resetting this call ends
    only it. Counts the head in `call` when it goes."""
    names = [name for name, _ in fields]
    pseudo = [name for name in names if name[:1] == b":"]
    if names[: len(pseudo)] != pseudo:
        return "a pseudo-header after a field"
    if call.answered:
        return "" if end and not pseudo else "a header block after the answer's, not trailers"
    status = [value for name, value in fields if name == b":status"]
    if pseudo != [b":status"] or not (len(status[0]) == 3 and status[0].isdigit()):
        return "an answer's head without one :status"
    if status[0] == b"101" or status[0] < b"100":
        return f"status {status[0].decode()} in an HTTP/2 answer"
    if status[0] >= b"200":
        call.answered = True
        return ""
    call.heads += 1
    if end or call.heads > MAX_INTERIM:
        return "an interim (1xx) head that ends the stream, or one too many"
    return ""
