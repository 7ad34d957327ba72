"""One HTTP/2 connection the splitter ends itself (h2_split.py): the client's, where it is
the server, or one to an upstream instance, where it is the client. Pure.

What is the connection's own and not a call's is done here: the preface and
SETTINGS (acknowledged, and ours acknowledged), PING answered, PRIORITY
dropped, header blocks gathered across CONTINUATION and decoded with the
peer's HPACK context, padding stripped (and credited back at once), and the
windows of what the peer may send us. What is a call's comes out as events
(`feed`), in frame order, for the splitter to act on before the next frame
is read.

Receiving windows. The connection window is credited as bytes arrive, not as
they leave: were it credited on leaving, one call whose far side stopped
reading would hold the whole connection window and stop every other call of
the connection (head-of-line blocking). A stream's window is credited only
for bytes that left the splitter's buffer (`consumed`), so what one stream
can make us hold is bounded by its window: the larger of 65535 (what a peer
may send before it has read our SETTINGS) and the `stream_window` we
advertise. Credit goes out in WINDOW_UPDATEs of half a window or more, not one
per frame.

Sending. The peer's SETTINGS are acknowledged before any DATA sent on the
windows they set (h2, for one, takes a larger window as in force only from
our ACK), and no DATA goes before its first SETTINGS has come (`settled`: its
windows may be under the 65535 assumed until then).

Header blocks are written again as literals that touch no HPACK table
(h2_frames.literal_block); the first block sent on each connection opens with
a table size update to 0 (`opening`), so our encoder's table is empty
whatever SETTINGS the peer sends later (RFC 7541 §4.2 asks nothing more of an
encoder at size 0; nghttp2's decoder does expect an update after a lowered
SETTINGS_HEADER_TABLE_SIZE, which this one gave in advance).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from gossamer.proxy.h2_frames import (
    ACK,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    HEAD,
    HEADERS,
    PING,
    PREFACE,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    H2Error,
    fragment,
    frame,
    size_update,
    window_update,
)
from gossamer.proxy.h2_split_wire import (
    DEFAULT_WINDOW,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME_SIZE,
    MAX_WINDOW,
    Data,
    Event,
    Frame,
    FrameReader,
    GoAway,
    Headers,
    Initial,
    Reset,
    StreamError,
    Window,
    error_code,
    settings,
    settings_frame,
    unpadded,
    word,
)
from gossamer.proxy.hpack_reader import HeaderReader, HpackError

GOAWAY_KIND: Final = 7


class Peer:
    def __init__(self, *, server: bool, ours: dict[int, int], conn_window: int,
                 max_list: int) -> None:  # fmt: skip
        self._reader = FrameReader(preface=server)
        self._hpack = HeaderReader(max_list, checked=True)  # (a bad field: that call only)
        self._max_block = 2 * max_list + 4096  # a header block's bytes, before decoding
        self.out = bytearray()  # bytes for the peer, taken by the splitter
        self.send_conn = DEFAULT_WINDOW  # what the peer lets us send, the connection's
        self.send_peak = DEFAULT_WINDOW  # the most it ever let us send at once: what it may
        # have unread of ours at any time (the shell bounds what waits for it so: h2_balanced)
        self.initial_send = DEFAULT_WINDOW  # its SETTINGS_INITIAL_WINDOW_SIZE
        self.max_frame = 16384  # its SETTINGS_MAX_FRAME_SIZE
        self.max_streams = MAX_WINDOW  # its SETTINGS_MAX_CONCURRENT_STREAMS
        self._ours = ours.get(INITIAL_WINDOW_SIZE, DEFAULT_WINDOW)
        self.recv_initial = DEFAULT_WINDOW  # ours once the peer acknowledged it
        self._unacked = 1
        self._conn_window = self._recv_conn = max(conn_window, DEFAULT_WINDOW)
        self._conn_owed = 0
        self._recv: dict[int, int] = {}  # what each stream may still send us
        self._owed: dict[int, int] = {}  # bytes it sent that left our buffer, not yet credited
        self._block: tuple[int, bool, list[bytes]] | None = None
        self._taken = 0  # the bytes of the block's frames so far, heads included
        self.settled = False  # its first frame, SETTINGS, came: DATA may go (it says the windows)
        self._fresh = True  # no header block of ours sent yet
        if not server:
            self.out += PREFACE
        self.out += settings_frame(ours)
        if self._conn_window > DEFAULT_WINDOW:
            self.out += window_update(0, self._conn_window - DEFAULT_WINDOW)

    def feed(self, data: bytes) -> Iterator[Event]:
        """The calls' events in `data`; H2Error when the peer broke the connection."""
        for got in self._reader.feed(data):
            if not self.settled:
                if got.kind != SETTINGS or got.flags & ACK:
                    raise H2Error(PROTOCOL_ERROR, "the first frame is not SETTINGS")
                self.settled = True
                yield from self._settings(got.flags, got.payload)
                yield Initial(0)  # (whatever it said: DATA held for it may go now)
                continue
            if self._block is not None and (got.kind != CONTINUATION
                                            or got.stream != self._block[0]):  # fmt: skip
                raise H2Error(PROTOCOL_ERROR, "a header block broken by another frame")
            yield from self._frame(got)

    def _frame(self, got: Frame) -> Iterator[Event]:
        kind, flags, stream, payload = got
        if kind == DATA:
            yield from self._data(got)
        elif kind in (HEADERS, CONTINUATION):
            yield from self._headers(got)
        elif kind == RST_STREAM:
            self.close_stream(stream)
            yield Reset(stream, error_code(payload))
        elif kind == SETTINGS:
            yield from self._settings(flags, payload)
        elif kind == PUSH_PROMISE:
            raise H2Error(PROTOCOL_ERROR, "PUSH_PROMISE, which we neither allow nor take")
        elif kind == PING and not flags & ACK:
            self.out += frame(PING, ACK, 0, payload)
        elif kind == GOAWAY_KIND:
            yield GoAway(word(payload), error_code(payload, 4))
        elif kind == WINDOW_UPDATE:
            yield from self._window(stream, word(payload))
        # PRIORITY, a PING's ACK, unknown types: nothing to do (RFC 9113 §5.5, §9.2)

    def _data(self, got: Frame) -> Iterator[Event]:
        data, pad = unpadded(got.payload, got.flags)
        size = len(got.payload)
        if size > self._recv_conn:
            raise H2Error(FLOW_CONTROL_ERROR, "DATA past the connection's window")
        self._recv_conn -= size
        self._conn_owed += size
        if self._conn_owed >= self._conn_window // 2:
            self.out += window_update(0, self._conn_owed)
            self._recv_conn += self._conn_owed
            self._conn_owed = 0
        window = self._recv.get(got.stream)
        if window is not None:
            if size > window:
                raise H2Error(FLOW_CONTROL_ERROR, f"DATA past stream {got.stream}'s window")
            self._recv[got.stream] = window - size
            self.consumed(got.stream, pad)
        if got.flags & END_STREAM:
            self.close_stream(got.stream)
        yield Data(got.stream, data, bool(got.flags & END_STREAM))

    def _headers(self, got: Frame) -> Iterator[Event]:
        piece, _ = fragment(got.kind, got.flags, got.payload)
        if got.kind == HEADERS:
            self._block, self._taken = (got.stream, bool(got.flags & END_STREAM), [piece]), 0
        elif self._block is None:
            raise H2Error(PROTOCOL_ERROR, "CONTINUATION with no header block open")
        else:
            self._block[2].append(piece)
        stream, end, pieces = self._block
        # frame heads count too, as the gate counts them (h2_client.py): a flood of empty
        # CONTINUATIONs (CVE-2024-27316) grows no piece and would never reach the limit
        self._taken += HEAD + len(got.payload)
        if self._taken > self._max_block:
            raise H2Error(ENHANCE_YOUR_CALM, "a header block too large to gather")
        if got.flags & END_HEADERS:
            self._block = None
            try:
                fields = self._hpack.read(b"".join(pieces))
            except HpackError as exc:
                raise H2Error(COMPRESSION_ERROR, str(exc)) from exc
            if end:
                self.close_stream(stream)
            yield Headers(stream, fields, end, self._hpack.malformed, self._hpack.over)

    def _settings(self, flags: int, payload: bytes) -> Iterator[Event]:
        if flags & ACK:
            if self._unacked:
                self._unacked -= 1
                delta, self.recv_initial = self._ours - self.recv_initial, self._ours
                for stream in self._recv:
                    self._recv[stream] += delta
            return
        moved = []
        for ident, value in settings(payload):
            if ident == INITIAL_WINDOW_SIZE:
                moved.append(value - self.initial_send)
                self.initial_send = value
            elif ident == MAX_FRAME_SIZE:
                self.max_frame = value
            elif ident == MAX_CONCURRENT_STREAMS:
                self.max_streams = value
        # The ACK goes before any DATA sent on the new windows: a peer (h2, for one) takes
        # its new window as in force from when it reads our ACK.
        self.out += frame(SETTINGS, ACK, 0)
        for delta in moved:
            yield Initial(delta)

    def _window(self, stream: int, increment: int) -> Iterator[Event]:
        if not stream:
            if not increment:
                raise H2Error(PROTOCOL_ERROR, "a WINDOW_UPDATE of 0 on the connection")
            self.send_conn += increment
            self.send_peak = max(self.send_peak, self.send_conn)
            if self.send_conn > MAX_WINDOW:
                raise H2Error(FLOW_CONTROL_ERROR, "the connection's window over 2^31-1")
            yield Window(0, increment)
        elif not increment:
            yield StreamError(stream, PROTOCOL_ERROR)
        else:
            yield Window(stream, increment)

    def open_stream(self, stream: int) -> None:
        """`stream` opened: the peer may send on it, within the window we advertised."""
        self._recv[stream] = self.recv_initial

    def close_stream(self, stream: int) -> None:
        """The peer sends no more on `stream` (it ended or was reset): no credit for it."""
        self._recv.pop(stream, None)
        self._owed.pop(stream, None)

    def consumed(self, stream: int, size: int) -> None:
        """`size` bytes the peer sent on `stream` left our buffer: credit them, in steps of
        half a window or more."""
        if stream not in self._recv or not size:
            return
        owed = self._owed.get(stream, 0) + size
        if owed < max(1, min(self.recv_initial, self._ours) // 2):
            self._owed[stream] = owed
            return
        self._owed[stream] = 0
        self._recv[stream] += owed
        self.out += window_update(stream, owed)

    def opening(self) -> bytes:
        """What our next header block to the peer opens with: a table size update to 0 on
        the connection's first (the module's docstring says why), else nothing."""
        if self._fresh:
            self._fresh = False
            return size_update(0)
        return b""
