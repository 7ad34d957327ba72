"""Per-request intentions on h2c: a gate between a client and its app, deciding each stream. Pure.

Bytes in, bytes out, for one connection of an `http2` or `grpc` service: what
the client sent goes in `from_client`, what the app sent in `from_app`; each
says what to write to the app and to the client. No full HTTP/2 stack (the
`h2` library costs ~385 µs a request): frames are cut by their headers, DATA
and the rest stream through untouched, and only header blocks are read
(hpack_reader.py), since HPACK's tables need every block in order.

A new stream's request headers are decided (`decide`, the intentions' L7
permissions). Allowed: its frames go to the app as they came. Denied: the
app never sees it; the client gets an answer made here (gRPC: trailers-only,
`grpc-status` 7 PERMISSION_DENIED; else `403`), written between the app's
frames (after its first, the SETTINGS of its preface), never inside one of
its header blocks, and as literals that leave
the client's HPACK table alone; a client still sending gets RST_STREAM
NO_ERROR (RFC 9113 §8.1); its DATA is dropped and the connection window it
used given back (WINDOW_UPDATE). The block the app missed may have added to
the client's table, so from the first deny on each block for the app is
written again as literals (h2_frames.literal_block), which never refer to
the app's table, now behind.

Header names and values are bytes on the wire; the intentions see them as
Latin-1 text, as on the HTTP/1 path, so any octet decodes.

The first bytes decide the rest: the HTTP/2 preface makes the connection
gated; anything else (h2 inside the apps' own TLS, or not HTTP/2 at all)
makes it `opaque`, carried byte for byte, and the shell decides whether that
may go on. A client that breaks HTTP/2 so that the gate cannot follow raises
`H2Error` (the shell ends the connection with `goaway_for`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gossamer.intentions.model import Decision, HttpRequest
from gossamer.proxy.h2_frames import (
    ACK,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    HEAD,
    HEADER_TABLE_SIZE,
    HEADERS,
    NO_ERROR,
    PREFACE,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    H2Error,
    fragment,
    goaway,
    header_frames,
    literal_block,
    parse_head,
    rst_stream,
    settings,
    window_update,
)
from gossamer.proxy.hpack_reader import HeaderReader, HpackError

DENIED_KEPT = 1024  # denied streams remembered per connection, so late frames on them are dropped
MAX_WAITING = 256  # answers held for the end of the app's frame; a client past this is cut
PASS, DROP, COLLECT = 0, 1, 2  # what happens to the payload of the client's current frame
GRPC_DENIED = [(b":status", b"200"), (b"content-type", b"application/grpc"),
               (b"grpc-status", b"7"), (b"grpc-message", b"RBAC: access denied")]  # fmt: skip
HTTP_DENIED = [(b":status", b"403"), (b"content-length", b"0")]


class H2Gate:
    """One h2c connection's gate."""

    def __init__(self, decide: Callable[[HttpRequest], Decision], max_block: int = 65536) -> None:
        self._decide = decide
        self.max_block = max_block  # a longer header block ends the connection
        self.opaque = False  # no preface: carried byte for byte
        self.speaking = False  # the preface came: each stream is decided
        self._matched = 0  # preface bytes seen so far
        self._reader = HeaderReader(max_block)
        self._literal = False  # from the first deny on: blocks written again as literals
        self._denied: dict[int, None] = {}  # oldest first
        self.last = 0  # the highest stream the client opened
        self._head = bytearray()  # client to app: the frame header being read
        self._left = 0  # its payload bytes still to come
        self._in_frame = False
        self._mode = PASS
        self._frame = (0, 0, 0)  # kind, flags, stream of the current frame
        self._payload = bytearray()  # a HEADERS or CONTINUATION payload being gathered
        self._raw: list[bytes] = []  # the current header block's frames, as they came
        self._block = bytearray()
        self._block_of = (0, 0)  # its stream, its HEADERS frame's flags
        self._priority = b""
        self._in_block = False
        self._credit = 0  # connection window used by dropped DATA, to give back
        self._app_ready = False  # the app's SETTINGS went first, as its preface must
        self._app_head = bytearray()  # app to client: the same, to find frame boundaries
        self._app_left = 0
        self._app_in_block = False
        self._app_settings: bytearray | None = None
        self._pending: list[bytes] = []  # answers waiting for a boundary in the app's frames

    def from_client(self, data: bytes) -> tuple[list[bytes], list[bytes]]:
        """(bytes for the app, bytes for the client) after the client sent `data`."""
        if self.opaque:
            return [data], []
        to_app: list[bytes] = []
        to_client: list[bytes] = []
        at = 0
        if not self.speaking:
            piece = data[: len(PREFACE) - self._matched]
            if PREFACE[self._matched : self._matched + len(piece)] != piece:
                self.opaque = True
                return [PREFACE[: self._matched] + data], []
            self._matched += len(piece)
            if self._matched < len(PREFACE):
                return [], []
            self.speaking, at = True, len(piece)
            to_app.append(PREFACE)
        view, n = memoryview(data), len(data)
        while at < n:
            if not self._in_frame:
                take = min(HEAD - len(self._head), n - at)
                self._head += view[at : at + take]
                at += take
                if len(self._head) == HEAD:
                    self._start_frame(to_app)
                    if self._left == 0:
                        self._end_frame(to_app, to_client)
                continue
            take = min(self._left, n - at)
            if self._mode == PASS:
                to_app.append(data[at : at + take] if take < n else data)
            elif self._mode == COLLECT:
                self._payload += view[at : at + take]
            at += take
            self._left -= take
            if self._left == 0:
                self._end_frame(to_app, to_client)
        if self._credit:
            self._answer(window_update(0, self._credit), to_client)
            self._credit = 0
        return to_app, to_client

    def from_app(self, data: bytes) -> list[bytes]:
        """The bytes for the client after the app sent `data`: the same, with any answers
        made here put in where the app's frames allow."""
        if self.opaque:
            return [data]
        out: list[bytes] = []
        view, n, at, start = memoryview(data), len(data), 0, 0
        while at < n:
            if self._pending and self._app_at_boundary():
                if at > start:
                    out.append(data[start:at])
                    start = at
                out += self._pending
                self._pending = []
            if self._app_left == 0:
                take = min(HEAD - len(self._app_head), n - at)
                self._app_head += view[at : at + take]
                at += take
                if len(self._app_head) == HEAD:
                    self._app_frame()
                continue
            take = min(self._app_left, n - at)
            if self._app_settings is not None:
                self._app_settings += view[at : at + take]
            at += take
            self._app_left -= take
            if self._app_left == 0 and self._app_settings is not None:
                self._settings_read()
        if start < n:
            out.append(data if start == 0 else data[start:])
        if self._pending and self._app_at_boundary():
            out += self._pending
            self._pending = []
        return out

    def goaway_for(self, error: H2Error) -> bytes:
        """GOAWAY for a client that broke HTTP/2, when it can go now (else b"": just close)."""
        if not self._app_at_boundary():
            return b""
        return b"".join(self._pending) + goaway(self.last, error.code, str(error).encode()[:200])

    def _start_frame(self, to_app: list[bytes]) -> None:
        length, kind, flags, stream = parse_head(self._head)
        self._frame, self._left, self._in_frame = (kind, flags, stream), length, True
        if self._in_block and (kind != CONTINUATION or stream != self._block_of[0]):
            raise H2Error(PROTOCOL_ERROR, "a header block was interrupted by another frame")
        if kind in (HEADERS, CONTINUATION):
            if kind == CONTINUATION and not self._in_block:
                raise H2Error(PROTOCOL_ERROR, "a CONTINUATION frame with no header block open")
            if kind == HEADERS:
                if stream == 0 or stream % 2 == 0:
                    raise H2Error(PROTOCOL_ERROR, f"HEADERS on stream {stream}, not a client's")
                self._in_block, self._block_of, self._priority = True, (stream, flags), b""
                self._raw, self._block = [], bytearray()
            if len(self._block) + length > self.max_block:
                raise H2Error(ENHANCE_YOUR_CALM, f"a header block over {self.max_block} bytes")
            self._mode, self._payload = COLLECT, bytearray(self._head)
        elif kind == PUSH_PROMISE:
            raise H2Error(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        elif stream in self._denied:  # the app never saw this stream
            self._mode = DROP
            if kind == DATA:
                self._credit += length
            elif kind == RST_STREAM:
                del self._denied[stream]
        else:
            self._mode = PASS
            to_app.append(bytes(self._head))
        self._head.clear()

    def _end_frame(self, to_app: list[bytes], to_client: list[bytes]) -> None:
        self._in_frame = False
        if self._mode != COLLECT:
            return
        kind, flags, _ = self._frame
        raw = bytes(self._payload)
        self._raw.append(raw)
        block, priority = fragment(kind, flags, raw[HEAD:])
        if kind == HEADERS:
            self._priority = priority
        self._block += block
        if flags & END_HEADERS:
            self._in_block = False
            self._block_done(to_app, to_client)

    def _block_done(self, to_app: list[bytes], to_client: list[bytes]) -> None:
        stream, flags = self._block_of
        try:
            fields = self._reader.read(bytes(self._block))
        except HpackError as exc:
            raise H2Error(COMPRESSION_ERROR, f"a header block HPACK cannot read: {exc}") from exc
        if stream in self._denied:
            return  # trailers of a denied stream: read for the table's sake, dropped
        end_stream = bool(flags & END_STREAM)
        if stream > self.last:  # a new stream: a request
            self.last = stream
            if not self._decide(request_of(fields)).allowed:
                self._deny(stream, fields, end_stream, to_client)
                return
        if not self._literal:
            to_app += self._raw
        else:
            block = literal_block(fields)
            to_app.append(header_frames(stream, block, end_stream=end_stream,
                                        priority=self._priority))  # fmt: skip

    def _deny(self, stream: int, fields: Sequence[tuple[bytes, bytes]], ended: bool,
              to_client: list[bytes]) -> None:  # fmt: skip
        self._denied[stream] = None
        if len(self._denied) > DENIED_KEPT:
            del self._denied[next(iter(self._denied))]
        self._literal = True  # the app's table now lacks what this block added
        grpc = any(n == b"content-type" and v.startswith(b"application/grpc") for n, v in fields)
        answer = header_frames(stream, literal_block(GRPC_DENIED if grpc else HTTP_DENIED),
                               end_stream=True)  # fmt: skip
        self._answer(answer if ended else answer + rst_stream(stream, NO_ERROR), to_client)

    def _answer(self, frames: bytes, to_client: list[bytes]) -> None:
        if self._app_at_boundary() and not self._pending:
            to_client.append(frames)
        elif len(self._pending) < MAX_WAITING:
            self._pending.append(frames)
        else:  # the app is stuck inside a frame and the client keeps being refused
            raise H2Error(ENHANCE_YOUR_CALM, f"over {MAX_WAITING} answers wait for the app")

    def _app_at_boundary(self) -> bool:
        """Whether a frame of ours may go to the client now: after the app's preface, between
        its frames, outside its header blocks."""
        return (self._app_ready and not self._app_head and self._app_left == 0
                and not self._app_in_block)  # fmt: skip

    def _app_frame(self) -> None:
        length, kind, flags, _ = parse_head(self._app_head)
        self._app_head.clear()
        self._app_left = length
        if kind in (HEADERS, PUSH_PROMISE, CONTINUATION):
            self._app_in_block = not flags & END_HEADERS
        self._app_ready = True  # (a first frame that is not SETTINGS: the client will say so)
        is_settings = kind == SETTINGS and not flags & ACK
        self._app_settings = bytearray() if is_settings and length else None

    def _settings_read(self) -> None:
        """The app's HEADER_TABLE_SIZE bounds the table the client's encoder may use."""
        assert self._app_settings is not None
        for ident, value in settings(bytes(self._app_settings)):
            if ident == HEADER_TABLE_SIZE:
                self._reader.max_allowed = max(self._reader.max_allowed, value)
        self._app_settings = None


def request_of(fields: Sequence[tuple[bytes, bytes]]) -> HttpRequest:
    """What the intentions see of a request: pseudo-headers too, repeats joined with ","."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in fields:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return HttpRequest(headers.get(":method", ""), headers.get(":path", ""), headers)
