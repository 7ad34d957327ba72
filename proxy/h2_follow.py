"""The calls of an h2c connection followed on the calling side, nothing decided. Pure.

An upstream with `protocol: http2` or `grpc` carries its app's bytes to the
far sidecar as they came (the far sidecar's gate decides each call); this
reads along so that the calling side's outbound edge counts each call too,
as Linkerd counts both ends of an edge. It changes nothing, holds nothing
and never ends a connection: bytes it cannot follow are the far side's to
judge, and it just stops recording.

The app's (client's) frames are cut by their headers only: HEADERS on a new
stream opens a call, RST_STREAM ends one, SETTINGS bound the HPACK table the
answers may use. No request block is decoded: the call book reads all it
needs (status, gRPC or not) from the answers, which are read as the gate
reads its app's (h2_app.AppSide: each header block decoded with a table of
its own, ends of streams). Not the HTTP/2 preface (h2 inside the apps' own
TLS, or not HTTP/2): `opaque`, nothing followed.
"""

from __future__ import annotations

from gossamer.proxy.h2_app import AppSide
from gossamer.proxy.h2_calls import CANCELLED, CallBook, Done
from gossamer.proxy.h2_frames import (
    ACK,
    HEADERS,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    parse_head,
    table_allowed,
)


class ClientFrames(AppSide):
    """The client's frames, cut as AppSide cuts the app's, read for what they mean instead."""

    def __init__(self, calls: CallBook, answers: AppSide) -> None:
        super().__init__(calls, None)
        self.reader = None  # the client's blocks are not read
        self.answers = answers
        self.last = 0  # the highest stream the client opened

    def _start(self) -> None:
        length, kind, flags, stream = parse_head(self._head)
        self._head.clear()
        self._frame, self._left, self._gather = (kind, flags, stream), length, None
        if kind == HEADERS and stream > self.last and stream % 2:
            self.last = stream
            self.calls.opened(stream, "", self.now)
        elif kind == RST_STREAM:  # the client cancelled the call
            self.calls.closed(stream, self.now, CANCELLED)
        elif kind == SETTINGS and not flags & ACK:
            self._gather = bytearray()
        if length == 0:
            self._end()

    def _end(self) -> None:
        gathered, self._gather = self._gather, None
        reader = self.answers.reader  # the client's SETTINGS bound the app's encoder's table
        if gathered is not None and reader is not None:
            reader.max_allowed = table_allowed(bytes(gathered), reader.max_allowed)


class H2Follower:
    """One connection's follower; `done(status, route, seconds)` gets each call's outcome
    (route ""). Each side's bytes come in with the time they were read, in seconds."""

    def __init__(self, done: Done) -> None:
        self.calls = CallBook(done)
        self.answers = AppSide(self.calls, None)  # the client's blocks are not read
        self.client = ClientFrames(self.calls, self.answers)
        self.opaque = False
        self.speaking = False  # the preface came
        self._matched = 0  # preface bytes seen so far

    def from_client(self, data: bytes, now: float) -> None:
        if self.opaque:
            return
        if not self.speaking:
            piece = data[: len(PREFACE) - self._matched]
            if PREFACE[self._matched : self._matched + len(piece)] != piece:
                self.opaque = True
                return
            self._matched += len(piece)
            if self._matched < len(PREFACE):
                return
            self.speaking = True
            data = data[len(piece) :]
        self.client.feed(data, now)

    def from_app(self, data: bytes, now: float) -> None:
        if not self.opaque:
            self.answers.feed(data, now)

    def side_ended(self, client: bool) -> None:
        """A side of the connection ended or was lost (`client`: the client's, else the
        upstream's): the first charges the calls the connection's end cuts (h2_calls.py)."""
        self.calls.side_ended(client)

    def close(self, now: float) -> None:
        """The connection ended: calls still open are recorded as far as they got."""
        self.calls.close(now)
