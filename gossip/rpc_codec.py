"""Sans-IO core of Serf's agent RPC protocol (msgpack over TCP).

Bytes go in through `RpcCodec.feed`, decoded frames come out; requests turn
into bytes through `RpcCodec.send`. Nothing here touches a socket, a clock or
asyncio, so every wire rule can be tested with plain tables.

The wire: each request is a msgpack map {"Command", "Seq"}, followed by a
body map for commands that take arguments. Each response is a header map
{"Seq", "Error"}, followed by a body only for some commands, and a response
does not say whether a body follows. So the codec must remember, per Seq,
what the request was; that knowledge lives in `COMMANDS` and nowhere else.

Rules this module keeps:

* Whether a body follows a header is decided by `COMMANDS` and the header's
  Error (see `Reply`). Serf's gatekeeper errors (`GATE_ERRORS`) are sent
  before the command runs and never carry a body.
* Streams (`stream`, `monitor`, `query`) answer with one bare header, then
  repeat header+record pairs on the same Seq until stopped; a query record of
  Type "done" is the last one.
* Tolerance: an object that is not header-shaped (keys exactly Seq and
  Error) where a header is due is handed out as `Stray` and skipped; a
  header-shaped object where a body is due is taken as the next header (the
  body never came). Either way the codec stays in sync with the peer.
* Bytes that are not msgpack at all raise `ProtocolError`; the connection
  cannot be resynchronised and must be dropped. It is the only exception
  `feed` raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgpack

MAX_SEQ = 2**64 - 1  # Serf's Seq is a Go uint64
# One decoded frame may not exceed this; a members list of 10k nodes is ~2 MB.
MAX_BUFFER = 64 * 1024 * 1024


class CodecError(Exception):
    """Base of the codec's errors."""


class ProtocolError(CodecError):
    """The peer sent bytes that are not a msgpack stream; drop the connection."""


class LocalProtocolError(CodecError):
    """The caller asked for something the protocol cannot express."""


class Reply(Enum):
    """Shape of the response to a command."""

    NONE = "none"  # header only
    BODY = "body"  # body after a successful header only
    ALWAYS = "always"  # body even when Error is set (except gatekeeper errors)
    STREAM = "stream"  # bare header, then header+record pairs until stopped
    QUERY = "query"  # like STREAM, ends with a record of Type "done"


# command -> (request carries a body, response shape); checked against serf 0.8.2.
COMMANDS: dict[str, tuple[bool, Reply]] = {
    "handshake": (True, Reply.NONE),
    "auth": (True, Reply.NONE),
    "event": (True, Reply.NONE),
    "force-leave": (True, Reply.NONE),
    "join": (True, Reply.ALWAYS),
    "members": (False, Reply.BODY),
    # A malformed regex makes serf drop the connection without any answer.
    "members-filtered": (True, Reply.BODY),
    "stream": (True, Reply.STREAM),
    "monitor": (True, Reply.STREAM),
    "stop": (True, Reply.NONE),
    "leave": (False, Reply.NONE),
    "install-key": (True, Reply.ALWAYS),
    "use-key": (True, Reply.ALWAYS),
    "remove-key": (True, Reply.ALWAYS),
    "list-keys": (False, Reply.ALWAYS),
    "tags": (True, Reply.NONE),
    "query": (True, Reply.QUERY),
    "respond": (True, Reply.NONE),
    "stats": (False, Reply.ALWAYS),
    "get-coordinate": (True, Reply.ALWAYS),
}

# Sent by serf's dispatcher before any command handler runs: header only.
GATE_ERRORS = frozenset({"Handshake required", "Authentication required", "Unsupported command"})


@dataclass(frozen=True, slots=True)
class Frame:
    """One response header with its body (None when none follows).

    `last` is True when no further frame will come for this Seq; a frame for
    a Seq the codec was not expecting is reported with `last` True as well.
    """

    seq: int
    error: str
    body: Any
    last: bool


@dataclass(frozen=True, slots=True)
class Stray:
    """A decoded object that fits no frame; skipped so the stream stays in sync."""

    obj: object


Event = Frame | Stray


def is_header(obj: object) -> bool:
    """True when `obj` is shaped like a response header: keys exactly Seq, Error."""
    if not isinstance(obj, dict) or obj.keys() != {"Seq", "Error"}:
        return False
    seq, error = obj["Seq"], obj["Error"]
    return (
        isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= MAX_SEQ
    ) and isinstance(error, str)


@dataclass(slots=True)
class _Expect:
    reply: Reply
    started: bool = False  # streams: the bare first header has arrived


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A header that has been read and whose body is due next."""

    seq: int
    error: str
    reply: Reply
    last: bool


class RpcCodec:
    """Client side of one RPC connection. Not thread-safe; one per connection."""

    def __init__(self, max_buffer: int = MAX_BUFFER) -> None:
        self._unpacker = msgpack.Unpacker(
            raw=False, unicode_errors="replace", max_buffer_size=max_buffer
        )
        self._expect: dict[int, _Expect] = {}
        self._waiting: _Waiting | None = None
        self._broken = False

    def send(self, command: str, seq: int, body: dict[str, Any] | None = None) -> bytes:
        """Encode a request and remember what its response will look like."""
        spec = COMMANDS.get(command)
        if spec is None:
            raise LocalProtocolError(f"unknown command {command!r}")
        has_body, reply = spec
        if has_body != (body is not None):
            need = "needs" if has_body else "takes no"
            raise LocalProtocolError(f"command {command!r} {need} a body")
        if not 0 <= seq <= MAX_SEQ:
            raise LocalProtocolError(f"seq {seq} out of range")
        if seq in self._expect:
            raise LocalProtocolError(f"seq {seq} is still in use")
        try:
            data = msgpack.packb({"Command": command, "Seq": seq}, use_bin_type=True)
            if body is not None:
                data += msgpack.packb(body, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise LocalProtocolError(f"cannot encode {command!r} body: {exc}") from exc
        self._expect[seq] = _Expect(reply)
        return bytes(data)

    def forget(self, seq: int) -> None:
        """Stop expecting frames for `seq` (a stopped stream, a timed-out call).

        Anything serf still sends for it is reported as an unexpected frame.
        """
        self._expect.pop(seq, None)

    @property
    def in_flight(self) -> frozenset[int]:
        """Seqs whose response (or stream records) may still arrive."""
        return frozenset(self._expect)

    def feed(self, data: bytes) -> list[Event]:
        """Take received bytes and return every event they complete.

        Raises ProtocolError (and keeps raising it) once the byte stream is
        not msgpack; a partial object is simply kept until more bytes come.
        """
        if self._broken:
            raise ProtocolError("connection already failed to decode")
        events: list[Event] = []
        try:
            self._unpacker.feed(data)
            for obj in self._unpacker:
                self._take(obj, events)
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
            self._broken = True
            raise ProtocolError(f"undecodable data from serf: {exc}") from exc
        return events

    def _take(self, obj: object, events: list[Event]) -> None:
        waiting = self._waiting
        if waiting is not None:
            self._waiting = None
            if not is_header(obj):
                events.append(self._with_body(waiting, obj))
                return
            # The body never came: close the frame and read obj as a header.
            events.append(Frame(waiting.seq, waiting.error, None, waiting.last))
        if not is_header(obj):
            events.append(Stray(obj))
            return
        assert isinstance(obj, dict)
        self._header(obj["Seq"], obj["Error"], events)

    def _header(self, seq: int, error: str, events: list[Event]) -> None:
        expect = self._expect.get(seq)
        if expect is None:
            events.append(Frame(seq, error, None, True))
            return
        reply = expect.reply
        if reply in (Reply.STREAM, Reply.QUERY) and not expect.started:
            expect.started = True
            body_follows, last = False, bool(error)
        elif reply in (Reply.STREAM, Reply.QUERY):
            body_follows, last = True, False
        elif reply is Reply.BODY:
            body_follows, last = not error, True
        elif reply is Reply.ALWAYS:
            body_follows, last = error not in GATE_ERRORS, True
        else:
            body_follows, last = False, True
        if last:
            del self._expect[seq]
        if body_follows:
            self._waiting = _Waiting(seq, error, reply, last)
        else:
            events.append(Frame(seq, error, None, last))

    def _with_body(self, waiting: _Waiting, body: object) -> Frame:
        last = waiting.last
        if waiting.reply is Reply.QUERY and isinstance(body, dict) and body.get("Type") == "done":
            last = True
            self._expect.pop(waiting.seq, None)
        return Frame(waiting.seq, waiting.error, body, last)
