"""The calls of one h2c connection, from the request the gate let in to the app's last frame:
each call's outcome for the golden metrics. Pure.

An outcome is (status, route, seconds), as the HTTP/1 path records its
requests (http1.py `_record`): the status is the app's final `:status`, or
for a gRPC call its
`grpc-status` mapped to the HTTP status Google's API design gives it (0 →
200, 7 → 403, 14 → 503, …), so a failed call counts as a failure in the
success rate even though gRPC answers `200` (a gRPC answer is one whose
`content-type` is `application/grpc…`, as every gRPC server sends it, so
the call book needs nothing from the request). Status 0: no answer (reset,
or the connection ended first). A gRPC answer owes a `grpc-status` (in its
trailers, or its head when trailers-only): one that ends its stream with
none, whatever its `:status`, is an error at the client (grpcio and gRPC
core report UNKNOWN, grpc-go INTERNAL when no trailers came at all), so it
counts as UNKNOWN (500); a plain HTTP/2 answer keeps its `:status`. A gRPC
answer cut before its `grpc-status` failed too: it gets the code a gRPC
client reports for it, CANCELLED (499) when the client reset it, INTERNAL
(500) when the app did; when the connection ended under it, CANCELLED if
the client's side of the connection ended or was lost first (its process
exited, it closed its channel: Envoy's downstream disconnect), else
UNAVAILABLE (503: the app's side, or the wire to it, went first, or the
proxy cut both). A denied call is a `403` at once, like a denied HTTP/1
request. Times come in from the shell (`now`, seconds).
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Sequence
from math import inf
from typing import Final

from gossamer.intentions.model import Decision
from gossamer.proxy.h2_frames import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    PROTOCOL_ERROR,
    STREAM_CLOSED,
)

GRPC_HTTP: Final = {0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400,
             10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401}  # fmt: skip
MAX_CALLS: Final = 4096  # calls open at once per connection: more are refused (an app allows fewer)
# Rapid reset (CVE-2023-44487): a client that opens streams and resets them at once makes the
# app start work it never finishes, at no cost to itself. A connection is ended once the
# client reset, before any answer and within PREMATURE_S of opening it, more than half of
# its calls and more than half of this many (the shape of Envoy's premature-reset limit,
# whose minimum stream lifetime is 1 s: a unary gRPC call cancelled at its deadline, which
# a slow app had not answered yet, is no attack). A call the gate resets at the app for the
# client's fault (a body that breaks its content-length) counts as the client's reset.
RAPID_CALLS: Final = 500
PREMATURE_S: Final = 1.0
# MadeYouReset (CVE-2025-8671): a client can have the app reset its calls instead (a
# WINDOW_UPDATE of 0 on a stream, DATA after its end: stream errors, RFC 9113 §5.4.2), and
# an app whose HTTP/2 stack frees the stream at once while its work goes on is rapid-reset
# all the same. A reset of the app's whose code blames the client counts as the client's.
BLAMING: Final = frozenset(
    (PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR, ENHANCE_YOUR_CALM)
)
# A gRPC answer with no grpc-status, why: the code a gRPC client reports for it.
UNKNOWN: Final = 2  # it ended its stream without one
CANCELLED: Final = 1  # the client reset the stream, or its side of the connection ended first
INTERNAL: Final = 13  # the app reset it
UNAVAILABLE: Final = 14  # the connection ended under it, the client's side not first
# `Call.cut` for a call that ran out of time (h2_deadlines.py): reset at the app with CANCEL,
# answered 504 (gRPC: DEADLINE_EXCEEDED). Not an HTTP/2 error code: those fit in 32 bits.
TIMED_OUT: Final = 1 << 32
Done = Callable[[int, str, float], None]  # (status, route, seconds)
Fields = list[tuple[bytes, bytes]]  # a request's header fields, decoded


def uncounted(status: int, route: str, seconds: float) -> None:
    """A `Done` that keeps nothing."""


class Call:
    __slots__ = ("answered", "client_ended", "complete", "cut", "fields", "grpc", "grpc_status",
                 "remaining", "route", "seen", "started", "status")  # fmt: skip

    def __init__(self, route: str, started: float, fields: Fields | None) -> None:
        self.route = route
        self.started = started
        self.seen = started  # its last frame either way (h2_deadlines.py: the idle limit)
        self.complete = inf  # when the client's side ended (the request timeout runs from it)
        self.fields = fields  # the request's, as decided: a policy change decides it again
        self.client_ended = False  # the client's side of the stream ended (END_STREAM)
        self.answered = False  # the app's side ended (END_STREAM): the outcome is recorded
        self.cut = 0  # why it was cut (h2_cut.py): CANCEL (policy), PROTOCOL_ERROR, TIMED_OUT
        self.remaining = -1  # body bytes its content-length still promises; -1: none said
        self.grpc = False  # the answer is gRPC's
        self.status = 0  # the final :status
        self.grpc_status = -1  # none yet

    def outcome(self, cut_by: int) -> int:
        """The status to record; `cut_by`: the gRPC code for an answer that ended, or was
        cut, without its grpc-status."""
        if not self.grpc:
            return self.status
        if self.grpc_status < 0:
            self.grpc_status = cut_by
        return GRPC_HTTP.get(self.grpc_status, 500)


class CallBook:
    def __init__(self, done: Done, *, held: bool = False, request_s: float = 0.0,
                 idle_s: float = 0.0) -> None:  # fmt: skip
        self._done = done
        # The calls' limits (h2_deadlines.py; 0.0: none): `due` is the soonest time one may
        # run out that the shell's timer has not been told of yet (inf: none).
        self.request_s, self.idle_s = request_s, idle_s
        self.due = inf
        # `held` (the gate's book): a call stays until the client's side ends too, not just
        # the app's, so a body that goes on after the answer is still held to its length
        self._held = held
        self._calls: dict[int, Call] = {}
        self.count = 0  # calls opened
        self.early = 0  # of those, reset for the client's doing before the app's answer began
        self.gone = 0  # who cut the calls open when the connection ends (`side_ended`); 0: none

    def opened(self, stream: int, route: str, now: float, fields: Fields | None = None,
               *, ended: bool = False, length: int = -1) -> None:  # fmt: skip
        """A call the app got (`ended`: its request's side ended with its headers; `length`:
        its content-length)."""
        self.count += 1
        if len(self._calls) < MAX_CALLS:  # (the gate refuses past it; h2_follow.py counts less)
            call = self._calls[stream] = Call(route, now, fields)
            call.remaining = length
            if self.idle_s and now + self.idle_s < self.due:
                self.due = now + self.idle_s
            if ended:
                self._complete(call, now)

    def _complete(self, call: Call, now: float) -> None:
        """The client's side of `call` ended: its request timeout runs from now."""
        call.client_ended, call.complete = True, now
        if self.request_s and now + self.request_s < self.due:
            self.due = now + self.request_s

    def touch(self, stream: int, now: float) -> None:
        """A frame, or part of one, on `stream`: the call is not idle."""
        call = self._calls.get(stream)
        if call is not None:
            call.seen = now

    def open_items(self) -> ItemsView[int, Call]:
        """The calls open, by stream (h2_deadlines.py looks them over)."""
        return self._calls.items()

    def full(self) -> bool:
        """Whether MAX_CALLS are open: the gate refuses another until one ends."""
        return len(self._calls) >= MAX_CALLS

    def recheck(self, judge: Callable[[Fields], Decision]) -> list[tuple[int, Decision]]:
        """A policy change: each open call's request decided again by `judge`; those now
        denied (stream, decision), each only once (it is being cut: no longer `live`)."""
        denied = []
        for stream, call in self._calls.items():
            if call.fields is not None and not call.cut:
                decision = judge(call.fields)
                if not decision.allowed:
                    call.cut = CANCEL
                    denied.append((stream, decision))
        return denied

    def live(self, stream: int) -> bool:
        """Whether the client's frames on `stream`, a stream it opened, are the app's: the app
        got its request, and neither side has ended it both ways nor has the gate cut it.
        (Streams the app never saw are never in the book.)"""
        call = self._calls.get(stream)
        return call is not None and not call.cut

    def tracks(self, stream: int) -> bool:
        """Whether `stream`'s body is held to a content-length."""
        call = self._calls.get(stream)
        return call is not None and call.remaining >= 0

    def body(self, stream: int, length: int, end: bool, now: float) -> bool:
        """`length` bytes of the client's body on `stream` (padding aside; `end`: its side
        ends), at `now`: whether they keep to its content-length (RFC 9113 §8.1.1)."""
        call = self._calls.get(stream)
        if call is None:
            return True
        call.seen = now
        if end:
            self._complete(call, now)
            if call.answered:  # (both sides ended)
                del self._calls[stream]
        if call.remaining < 0:
            return True
        call.remaining -= length
        return call.remaining == 0 if end else call.remaining >= 0

    def malformed(self, stream: int) -> bool:
        """`stream`'s request broke its content-length: it is cut (h2_cut.py).
        Whether the connection is being rapid-reset: a call the gate resets for the client's
        fault before its answer cost the app as much as one the client reset itself."""
        call = self._calls.get(stream)
        if call is not None:
            call.cut = PROTOCOL_ERROR
        return self._premature(call)

    def cut(self, stream: int, now: float) -> Call | None:
        """A call cut, its wait over (h2_cut.py): recorded as denied (`403`), timed out
        (`504`) or malformed (`400`) unless the app's answer ended first; None when both
        sides had ended."""
        call = self._calls.pop(stream, None)
        if call is not None and not call.answered:
            status = 403 if call.cut == CANCEL else 504 if call.cut == TIMED_OUT else 400
            self._done(status, call.route, now - call.started)
        return call

    def refused(self, status: int, route: str) -> None:
        """A call answered by the gate (`403` denied, `400` malformed) that the app never saw."""
        self._done(status, route, 0.0)

    def headers(self, stream: int, fields: Sequence[tuple[bytes, bytes]], end: bool,
                now: float) -> None:  # fmt: skip
        """A header block of the app's on `stream` (the response's, or trailers)."""
        call = self._calls.get(stream)
        if call is None:
            return
        for name, value in fields:  # (a bound on digits first: int() refuses 4,300 of them)
            if name == b":status" and len(value) == 3 and value.isdigit() and value >= b"200":
                call.status = int(value)  # not an interim 1xx
            elif name == b"grpc-status" and len(value) <= 2 and value.isdigit():
                call.grpc_status = int(value)
            elif name == b"content-type" and value.startswith(b"application/grpc"):
                call.grpc = True
        if end:
            self.ended(stream, now)

    def reset_by_client(self, stream: int, now: float) -> bool:
        """The client reset `stream`; whether the connection is being rapid-reset."""
        call = self._calls.get(stream)
        rapid = self._premature(call if call is None or now - call.started < PREMATURE_S
                                else None)  # fmt: skip
        self.closed(stream, now, CANCELLED)
        return rapid

    def reset_by_app(self, stream: int, now: float, code: int) -> None:
        """The app reset `stream` with `code`: one that blames the client (BLAMING), within
        PREMATURE_S of the call's start, counts as the client's reset (`rapid`)."""
        call = self._calls.get(stream)
        if code in BLAMING and call is not None and now - call.started < PREMATURE_S:
            self._premature(call)
        self.closed(stream, now)

    def _premature(self, call: Call | None) -> bool:
        """`call` ended early by the client's doing, counted in `early` when its answer had
        not begun; whether the connection is past the rapid-reset limit."""
        if call is not None and call.status == 0:
            self.early += 1
        return self.rapid()

    def rapid(self) -> bool:
        """Whether the connection is past the rapid-reset limit: over half its calls, and
        over half of RAPID_CALLS, reset early by the client's doing."""
        return self.early * 2 > max(self.count, RAPID_CALLS)

    def ended(self, stream: int, now: float) -> None:
        """The app's side of `stream` ended: the call's outcome, UNKNOWN for a gRPC answer
        that never said its grpc-status (a held book keeps the call while the client's
        side goes on)."""
        call = self._calls.get(stream)
        if call is None or call.answered:
            return
        call.answered = True
        self._done(call.outcome(UNKNOWN), call.route, now - call.started)
        if call.client_ended or not self._held:
            del self._calls[stream]

    def forget(self, stream: int) -> None:
        """`stream` leaves this book unrecorded: its instance refused it unbegun, and it is
        made again on another (h2_balanced_replay.py), whose book records its outcome."""
        self._calls.pop(stream, None)

    def closed(self, stream: int, now: float, cut_by: int = INTERNAL) -> None:
        """Either side reset `stream` (`cut_by`: the client, CANCELLED; the app, INTERNAL): the
        call ends both ways."""
        call = self._calls.pop(stream, None)
        if call is not None and not call.answered:  # (one that ran out stays so)
            status = 504 if call.cut == TIMED_OUT else call.outcome(cut_by)
            self._done(status, call.route, now - call.started)

    def side_ended(self, client: bool) -> None:
        """A side of the connection ended or was lost (`client`: the client's): the first of
        them says who cut the calls still open when the connection ends, the client
        (CANCELLED) or the app (UNAVAILABLE)."""
        if not self.gone:
            self.gone = CANCELLED if client else UNAVAILABLE

    def close(self, now: float) -> None:
        """The connection ended: every call still open ends with it, cut by whichever side
        ended first (none said: the proxy cut both, UNAVAILABLE)."""
        cut_by = self.gone or UNAVAILABLE
        for stream in list(self._calls):
            self.closed(stream, now, cut_by)
