"""The calls of an h2c connection followed on the calling side, nothing decided. Pure.

An upstream with `protocol: http2` or `grpc` carries its app's bytes to the
far sidecar as they came (the far sidecar's gate decides each call); this
reads along so that the calling side's outbound edge counts each call too,
as Linkerd counts both ends of an edge. It decides nothing: bytes it cannot
follow are the far side's to judge, and it just stops recording. It does
keep the upstream's timeouts (h2_deadlines.py): a call that runs out is
reset at the far side and answered `504` (gRPC: DEADLINE_EXCEEDED) as the
gate cuts one (h2_cut.py: the answer waits for the ACK of a PING sent
behind the reset), and an idle connection gets GOAWAY; only then are frames
of its own put in, between whole frames, and a PING ACK held back.

The app's (client's) frames are cut by their headers only: HEADERS on a new
stream opens a call, DATA or trailers with END_STREAM end its request,
RST_STREAM ends it, SETTINGS bound the HPACK table the answers may use. No
request block is decoded: the call book reads all it needs (status, gRPC
or not) from the answers, which are read as the gate reads its app's
(h2_app.AppSide: each header block decoded with a table of its own, ends
of streams). Not the HTTP/2 preface (h2 inside the apps' own TLS, or not
HTTP/2): `opaque`, nothing followed.
"""

from __future__ import annotations

from typing import Final

from gossamer.proxy.h2_app import AppSide
from gossamer.proxy.h2_calls import CANCELLED, CallBook, Done, Fields
from gossamer.proxy.h2_cut import Cuts
from gossamer.proxy.h2_frames import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    NO_ERROR,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    goaway,
    parse_head,
)
from gossamer.proxy.http_limits import NO_LIMITS, Limits

# What the follower knows of a call's request on a `grpc` upstream (it reads no request
# block): that it is gRPC's, so a call it times out is answered as gRPC (h2_fields.answer).
GRPC_REQUEST: Final[Fields] = [(b"content-type", b"application/grpc")]


class ClientFrames(AppSide):
    """The client's frames, cut as AppSide cuts the app's, read for what they mean instead;
    the follower's own frames for the far side (a call's reset) go between them."""

    def __init__(self, calls: CallBook, answers: AppSide, request: Fields | None) -> None:
        super().__init__(calls, None)
        self.blocks.reader = None  # the client's blocks are not read
        self.answers = answers
        self.request = request  # what each call's request is known to be (GRPC_REQUEST)
        self.last = 0  # the highest stream the client opened

    def _start(self) -> None:
        length, kind, flags, stream = parse_head(self._head)
        self._head.clear()
        self._ready = True  # (a frame of the follower's may go after a whole one)
        self._frame, self._left, self._gather = (kind, flags, stream), length, None
        if kind in (HEADERS, CONTINUATION):
            self._in_block = not flags & END_HEADERS  # (never inside a header block)
            if kind == HEADERS and stream > self.last and stream % 2:
                self.last = stream
                self.calls.opened(stream, "", self.now, self.request,
                                  ended=bool(flags & END_STREAM))  # fmt: skip
            elif kind == HEADERS and flags & END_STREAM:  # trailers: the request's end
                self.calls.body(stream, 0, True, self.now)
        elif kind == DATA:  # (the call is not idle; END_STREAM: its request ended)
            self.calls.body(stream, 0, bool(flags & END_STREAM), self.now)
        elif kind == RST_STREAM:  # the client cancelled the call
            self.calls.closed(stream, self.now, CANCELLED)
        elif kind == SETTINGS and not flags & ACK:
            self._gather = bytearray()
        if length == 0:
            self._end()

    def _end(self) -> None:
        gathered, self._gather = self._gather, None
        if gathered is not None:  # the client's SETTINGS bound the app's encoder's table
            self.answers.client_settings(bytes(gathered))


class H2Follower:
    """One connection's follower; `done(status, route, seconds)` gets each call's outcome
    (route ""). Each side's bytes come in with the time they were read, in seconds, and
    go out as the lists these return: the same bytes, with the follower's own frames put
    in when a call is cut (`cut`: a call that ran out of time, h2_deadlines.py)."""

    def __init__(self, done: Done, limits: Limits = NO_LIMITS, *, grpc: bool = False) -> None:
        self.calls = CallBook(done, request_s=limits.request_s, idle_s=limits.idle_s)
        self.cuts = Cuts()
        self.answers = AppSide(self.calls, None, self.cuts)  # the client's blocks are not read
        self.answers.lowers = False
        self.client = ClientFrames(self.calls, self.answers, GRPC_REQUEST if grpc else None)
        self.opaque = False
        self.speaking = False  # the preface came
        self._matched = 0  # preface bytes seen so far

    def from_client(self, data: bytes, now: float) -> list[bytes]:
        if self.opaque:
            return [data]
        if not self.speaking:
            piece = data[: len(PREFACE) - self._matched]
            if PREFACE[self._matched : self._matched + len(piece)] != piece:
                self.opaque = True
                return [data]
            self._matched += len(piece)
            if self._matched < len(PREFACE):
                return [data]
            self.speaking = True
            rest = data[len(piece) :]
            return [piece, *self.client.feed(rest, now)] if rest else [piece]
        return self.client.feed(data, now)

    def from_app(self, data: bytes, now: float) -> list[bytes]:
        return [data] if self.opaque else self.answers.feed(data, now)

    def cut(self, streams: list[int]) -> list[bytes]:
        """Cut `streams`, calls the book has marked cut, as the gate cuts one (h2_cut.py):
        a reset each and a PING for the far side, now or between the client's next frames
        (the bytes for now); the client's answer goes when the PING's ACK comes back."""
        out: list[bytes] = []
        self.client.answer(self.cuts.start(streams), out)
        return out

    def goaway(self) -> list[bytes]:
        """GOAWAY for the client (an idle connection is closed): now, or after the far
        side's frame under way."""
        out: list[bytes] = []
        if self.speaking:
            self.answers.answer(goaway(self.client.last, NO_ERROR), out)
        return out

    def side_ended(self, client: bool) -> None:
        """A side of the connection ended or was lost (`client`: the client's, else the
        upstream's): the first charges the calls the connection's end cuts (h2_calls.py)."""
        self.calls.side_ended(client)

    def close(self, now: float) -> None:
        """The connection ended: calls still open are recorded as far as they got."""
        self.calls.close(now)
