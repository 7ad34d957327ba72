"""Per-request intentions on h2c: a gate between a client and its app, deciding each stream. Pure.

Bytes in, bytes out, for one connection of an `http2` or `grpc` service:
the client's go in `from_client`, the app's in `from_app`; each says what
to write to either side. No full HTTP/2 stack (`h2` costs ~385 µs a
request): frames are cut by their headers (the client's: h2_client.py; the
app's: h2_app.py), DATA and the rest stream through, and only header blocks
are read (hpack_reader.py: every block, in order).

A new stream's request is checked (h2_fields.py: malformed `400`, CONNECT
`501`) and decided (`decide`: the L7 permissions, on fields as the HTTP/1
path's, `:path` normalized, a client's X-Forwarded-Client-Cert dropped; the
app gets them so; trailers carrying one are malformed, the stream reset
both ways, as h2_fields.py says). Allowed: it goes on, with the caller's XFCC (`xfcc`)
added. Refused: the app never sees it; the client gets an answer made here
(gRPC: trailers-only `grpc-status` 7; else `403`; `refusal` 404, an exposed
path's: UNIMPLEMENTED, `404`) between the app's frames,
never inside one of its header blocks, as literals that leave the client's
HPACK table alone, and RST_STREAM NO_ERROR if still sending (RFC 9113 §8.1);
its DATA is dropped, the window it used given back. The app's table missed
that block, so from then on each block for the app is written again as
literals (h2_frames.literal_block). A policy change decides each call in
flight again (`recheck`); one now denied is cut (h2_cut.py). Each allowed
call is followed to the app's last frame for the golden metrics
(h2_calls.py, h2_app.py); `now` comes with the bytes, in seconds. (The
calling side's sidecar only follows its calls: h2_follow.py.)

The HTTP/2 preface makes a connection gated; anything else (h2 inside the
apps' own TLS, or not HTTP/2) makes it `opaque`, carried byte for byte if
the shell allows. A client that breaks HTTP/2 so the gate cannot follow (a
block on an open stream that is not trailers, and h2_client.py's) raises
`H2Error`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from gossamer.intentions.model import Decision, HttpRequest
from gossamer.proxy import h2_fields
from gossamer.proxy.h2_app import AppSide
from gossamer.proxy.h2_calls import CallBook, Done, uncounted
from gossamer.proxy.h2_client import ClientFrames
from gossamer.proxy.h2_cut import Cuts
from gossamer.proxy.h2_frames import (
    COMPRESSION_ERROR,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    H2Error,
    appended,
    goaway,
    header_frames,
    literal_block,
    rst_stream,
)
from gossamer.proxy.hpack_reader import HeaderReader, HpackError
from gossamer.proxy.http_codec import XFCC_NAME
from gossamer.proxy.http_limits import NO_LIMITS, Limits

Fields = list[tuple[bytes, bytes]]  # a header block's, in order


class H2Gate(ClientFrames):
    """One h2c connection's gate; `done(status, route, seconds)` gets each call's outcome."""

    def __init__(self, decide: Callable[[HttpRequest], Decision], max_block: int = 65536,
                 done: Done = uncounted, xfcc: bytes = b"", limits: Limits = NO_LIMITS,
                 refusal: int = 403) -> None:  # fmt: skip
        self._decide = decide
        self._refusal = refusal  # a refused request's status (an exposed path's other: 404)
        self._xfcc = literal_block([(XFCC_NAME, xfcc)]) if xfcc else b""  # for each request
        self._reader = HeaderReader(max_block, checked=True)
        calls = CallBook(done, held=True, request_s=limits.request_s, idle_s=limits.idle_s)
        self.cuts = Cuts()
        super().__init__(calls, AppSide(calls, self._reader, self.cuts), max_block)
        self._literal = False  # from the first deny on: blocks written again as literals
        # The dynamic table size updates of the client's blocks the app did not get as they
        # came (dropped, or written again): the next block written for the app opens with
        # them, so the app's decoder sees each size change the client's encoder made.
        self._resize = bytearray()
        self.last = 0  # the highest stream the client opened
        self.draining = False  # GOAWAY sent: new streams are refused

    def from_app(self, data: bytes, now: float = 0.0) -> list[bytes]:
        """The bytes for the client after the app sent `data`: the same, with any answers
        made here put in where the app's frames allow."""
        return [data] if self.opaque else self.app.feed(data, now)

    def recheck(self, judge: Callable[[HttpRequest], Decision]
                ) -> tuple[list[bytes], list[Decision]]:  # fmt: skip
        """A policy change: each call in flight decided again by `judge`; those now denied
        are cut (h2_cut.py). (Bytes for the app now, the decisions that cut.)"""
        denied = self.calls.recheck(lambda fields: judge(h2_fields.request_of(fields)))
        if not denied:
            return self._pending_now(), []
        return self.cut([stream for stream, _ in denied]), [decision for _, decision in denied]

    def cut(self, streams: list[int]) -> list[bytes]:
        """Cut `streams`, calls the book has marked cut (a policy change's deny, a timeout:
        h2_deadlines.py), as h2_cut.py says; the bytes for the app now. The client's later
        frames on them are dropped."""
        self._app_pending.append(self.cuts.start(streams))
        return self._pending_now()

    def drain(self) -> list[bytes]:
        """The proxy is stopping: GOAWAY tells the client to open its next calls elsewhere
        (those in flight go on); a stream it opens anyway is refused (REFUSED_STREAM, which
        a client may retry on another connection). Its last stream id is never above one
        the client was told before, by the app's own GOAWAY too (h2_app.py `_lowered`)."""
        self.draining = True
        to_client: list[bytes] = []
        if self.speaking:
            # (answers piled up behind a stuck app: nothing more; the drain timeout cuts it)
            with contextlib.suppress(H2Error):
                self.app.answer(goaway(self.last, NO_ERROR), to_client)
        return to_client

    def side_ended(self, client: bool) -> None:
        """A side of the connection ended or was lost (`client`: the client's, else the
        app's): the first charges the calls the connection's end cuts (h2_calls.py)."""
        self.calls.side_ended(client)

    def close(self, now: float) -> None:
        """The connection ended: calls still open are recorded as far as they got."""
        self.calls.close(now)

    def goaway_for(self, error: H2Error) -> bytes:
        """GOAWAY for a client that broke HTTP/2, when it can go now (else b"": just close).
        The connection ends with it: if the app has not spoken yet (a client quicker than
        its preface), an empty SETTINGS of the gate's is the server's preface before it,
        and nothing of the app's follows."""
        out: list[bytes] = []
        if self.app.unspoken():
            out.append(self.app.speak_first())
        elif not self.app.at_boundary():
            return b""
        self.app.flush(out)
        self.app.answer(goaway(self.last, error.code, str(error).encode()[:200]), out)
        return b"".join(out)

    def _block_done(self, to_app: list[bytes], to_client: list[bytes]) -> None:
        stream, flags = self._block_of
        try:
            fields = self._reader.read(bytes(self._block))
        except HpackError as exc:
            raise H2Error(COMPRESSION_ERROR, f"a header block HPACK cannot read: {exc}") from exc
        if self._reader.resized:  # (kept for the app's decoder, unless the block goes as it came)
            self._resize += self._block[: self._reader.resized]
        if stream <= self.opened and not self.calls.live(stream):
            self._dead_stream_block(stream, fields)
            return
        end_stream = bool(flags & END_STREAM)
        if stream > self.opened:
            self.opened = stream
            if self.draining or self.calls.full():
                # (the client may send it again on a new stream, or connection: RFC 9113 §8.7)
                self._drop(stream)
                self.app.answer(rst_stream(stream, REFUSED_STREAM), to_client)
                return
        extra = b""
        if stream <= self.last:  # a stream the client opened already
            if not self._trailers_pass(stream, fields, end_stream):
                return
        else:  # a new stream: a request
            passed = self._request(stream, fields, end_stream, to_client)
            if passed is None:
                return
            fields, extra = passed
        self._pass_block(stream, fields, extra, end_stream, to_app)

    def _dead_stream_block(self, stream: int, fields: Fields) -> None:
        """A block on a stream closed to the app, or never open there (RFC 9113 §5.1): read
        for the table's sake (the app's then lacks what it added), never passed on; a request
        there is a stream used again or opened out of order (§5.1.1)."""
        if h2_fields.has_pseudo(fields):
            raise H2Error(PROTOCOL_ERROR, f"a request on stream {stream}, not above "
                          f"stream {self.opened}, opened already")  # fmt: skip
        self._literal = True

    def _trailers_pass(self, stream: int, fields: Fields, end_stream: bool
                       ) -> bool:  # fmt: skip
        """Whether a block on an open stream goes to the app: well-formed trailers do;
        malformed ones reset the stream; anything else breaks the connection."""
        if self._reader.over:  # trailers past the list limit: malformed, as below
            self._literal = True
            self._malformed(stream)
            return False
        if self._reader.malformed or h2_fields.trailers_fault(fields, end_stream):
            raise H2Error(PROTOCOL_ERROR, f"a header block on stream {stream}, opened "
                          "already, that is not well-formed trailers")  # fmt: skip
        # fields trailers may not carry, or a body short of its length: malformed, the block
        # dropped (read for the table: the app's lacks what it added, so each block from now
        # on is written as literals, as a rewrite without the field would need)
        if h2_fields.trailers_forbidden(fields) or not self.calls.body(stream, 0, True, self._now):
            self._literal = True
            self._malformed(stream)
            return False
        return True

    def _request(self, stream: int, fields: Fields, end_stream: bool, to_client: list[bytes]
                 ) -> tuple[Fields, bytes] | None:  # fmt: skip
        """A new stream's request checked and decided: None when it is answered here (431,
        400, 501, 403), else the fields it goes on with and the block's extra field."""
        self.last = stream
        if self._reader.over:  # past the list limit: read, its fields not kept (431)
            self._refuse(stream, h2_fields.answer(h2_fields.TOO_LARGE, ()), end_stream,
                         to_client)  # fmt: skip
            self.calls.refused(h2_fields.TOO_LARGE, "")
            return None
        # (bad bytes: RFC 9113 §8.2.1)
        fault, normal, length = h2_fields.checked(fields, self._reader.malformed, end_stream)
        if fault:
            self._refuse(stream, h2_fields.answer(fault, ()), end_stream, to_client)
            self.calls.refused(fault, "")
            return None
        decision = self._decide(h2_fields.request_of(normal))
        if normal is not fields:  # written again: the app's HPACK table is behind
            self._literal = True
        if not decision.allowed:
            self._refuse(stream, h2_fields.answer(self._refusal, normal), end_stream, to_client)
            self.calls.refused(self._refusal, decision.route)
            return None
        self.calls.opened(stream, decision.route, self._now, normal, ended=end_stream,
                          length=length)  # fmt: skip
        return normal, self._xfcc  # the caller, one more field at the end of the block

    def _pass_block(self, stream: int, fields: Fields, extra: bytes,
                    end_stream: bool, to_app: list[bytes]) -> None:  # fmt: skip
        """The block for the app: as it came (plus `extra`) while the tables agree, else
        written again as literals after the size updates the app's decoder missed."""
        if not self._literal:
            to_app += appended(self._raw, stream, extra) if extra else self._raw
            if self._resize:  # (its own size updates went with it)
                self._resize.clear()
            return
        block = literal_block(fields) + extra
        if self._resize:  # the client's updates the app's decoder missed (RFC 7541 §4.2)
            block = bytes(self._resize) + block
            self._resize.clear()
        to_app.append(header_frames(stream, block, end_stream=end_stream,
                                    priority=self._priority))  # fmt: skip

    def _malformed(self, stream: int) -> None:
        if self.calls.malformed(stream):  # (the client's fault: it counts as its own reset)
            raise H2Error(ENHANCE_YOUR_CALM, "over half the calls reset before an answer")
        # cut both ways, as a stream error (RFC 9113 §8.1.1)
        self._app_pending.append(self.cuts.start([stream], PROTOCOL_ERROR))

    def _drop(self, stream: int) -> None:
        """`stream` never reaches the app: its block (so the app's table lacks what that
        block added), nor its later frames (it is not in the book: `ClientFrames.opened`)."""
        self._literal = True

    def _refuse(self, stream: int, fields: Fields, ended: bool,
                to_client: list[bytes]) -> None:  # fmt: skip
        self._drop(stream)
        block = self.app.table_update() + literal_block(fields)
        answer = header_frames(stream, block, end_stream=True)
        self.app.answer(answer if ended else answer + rst_stream(stream, NO_ERROR), to_client)
