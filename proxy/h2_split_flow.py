"""One direction of one call through the splitter (h2_split.py): what waits to go, and the
receiver's window on the stream. Pure.

A leg holds header blocks, DATA and a closing RST_STREAM in the order they came
from the sender, and lets DATA go only as the receiver's windows (the stream's
here, the connection's on its Peer) allow, in frames no larger than the
receiver's SETTINGS_MAX_FRAME_SIZE. Header blocks and resets are not
flow-controlled, but they keep their place behind DATA: trailers never pass
the body they end. `pump` sends one frame per leg per round, so the calls of a
connection share its window by turns and a call whose window is shut (its
reader stalled) holds back nothing but itself.

An empty DATA frame that ends the stream may go into a window of 0 (RFC 9113
§6.9), but not into one a lowered SETTINGS_INITIAL_WINDOW_SIZE took under 0:
§6.9.2 has the sender wait for WINDOW_UPDATE then, and h2 takes even an empty
frame as a flow-control error that ends the whole connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from gossamer.proxy.h2_frames import DATA, HEADERS, RST_STREAM, header_frames, rst_stream
from gossamer.proxy.h2_split_peer import Peer
from gossamer.proxy.h2_split_wire import MAX_WINDOW, data_frame

Item = tuple[int, bytes | bytearray, bool]  # (frame type, payload, END_STREAM); RST: its code


class Leg:
    __slots__ = ("ended", "items", "queued", "sent", "started", "stream", "window")

    def __init__(self, stream: int) -> None:
        self.stream = stream
        self.items: deque[Item] = deque()
        self.queued = 0  # DATA bytes waiting
        self.started = False  # the stream is open at the receiver: DATA may go
        self.window = 0  # the receiver's window on the stream, once started
        self.ended = False  # END_STREAM or RST_STREAM went: nothing more will
        self.sent = 0  # DATA bytes sent by the last `step` (to credit the sender)

    def put(self, kind: int, payload: bytes, end: bool) -> None:
        """Queue a frame's worth; DATA joins the DATA waiting before it, so that a sender of
        one-byte frames costs a byte each, not an item each (the window bounds bytes only)."""
        if kind == DATA:
            self.queued += len(payload)
            last = self.items[-1] if self.items else None
            if last is not None and last[0] == DATA and not last[2]:
                joined = last[1] if isinstance(last[1], bytearray) else bytearray(last[1])
                joined += payload
                self.items[-1] = (DATA, joined, end)
                return
        self.items.append((kind, payload, end))

    def start(self, window: int) -> None:
        self.started, self.window = True, window

    def grow(self, increment: int) -> bool:
        """The receiver's window on the stream grew (or shrank, SETTINGS); False when past
        2^31-1 (RFC 9113 §6.9.1: FLOW_CONTROL_ERROR)."""
        self.window += increment
        return self.window <= MAX_WINDOW

    def drop(self) -> int:
        """Forget what waits (the call ended under it); the DATA bytes forgotten."""
        dropped, self.queued = self.queued, 0
        self.items.clear()
        self.ended = True
        return dropped

    def step(self, peer: Peer) -> bytes:
        """The next frame (or header block) that may go to `peer`, b"" when none may;
        `sent` tells the DATA bytes in it."""
        self.sent = 0
        if not self.items or not self.started or self.ended:
            return b""
        kind, payload, end = self.items[0]
        if kind == HEADERS:
            self.items.popleft()
            self.ended = end and not self.items  # (a reset may follow an answer: it still goes)
            return header_frames(self.stream, peer.opening() + payload, end_stream=end)
        if kind == RST_STREAM:
            self.items.popleft()
            self.ended = True
            return rst_stream(self.stream, int.from_bytes(payload, "big"))
        if not peer.settled:  # its windows may be under the 65535 a SETTINGS would show
            return b""
        size = min(len(payload), self.window, peer.send_conn, peer.max_frame)
        if (size <= 0 and payload) or self.window < 0:  # (even an empty END_STREAM)
            return b""
        self.window -= size
        peer.send_conn -= size
        self.queued -= size
        self.sent = size
        if size < len(payload):
            self.items[0] = (kind, payload[size:], end)
            return data_frame(self.stream, bytes(payload[:size]), False)
        self.items.popleft()
        self.ended = end and not self.items
        return data_frame(self.stream, bytes(payload), end)


def pump(legs: Iterable[Leg], peer: Peer) -> list[Leg]:
    """Send to `peer` all that its windows allow of `legs`, a frame per leg per round; the
    legs that sent DATA, each with `sent` the bytes it sent in all (its sender is owed
    that credit)."""
    active = [leg for leg in legs if leg.items and leg.started and not leg.ended]
    moved: dict[int, Leg] = {}
    totals: dict[int, int] = {}
    while active:
        still = []
        for leg in active:
            out = leg.step(peer)
            if not out:
                continue
            peer.out += out
            if leg.sent:
                moved[leg.stream] = leg
                totals[leg.stream] = totals.get(leg.stream, 0) + leg.sent
            if leg.items and not leg.ended:
                still.append(leg)
        active = still
    for stream, leg in moved.items():
        leg.sent = totals[stream]
    return list(moved.values())
