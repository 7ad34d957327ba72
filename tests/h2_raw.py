"""Raw HTTP/2 frames for the balancing splitter's table tests (h2_balanced_guard.py,
h2_balanced_replay.py): a gRPC-like call's head, a client's start, and the frames a run of
bytes holds."""

from __future__ import annotations

from gossamer.proxy.h2_frames import (
    END_HEADERS,
    END_STREAM,
    HEAD,
    PREFACE,
    SETTINGS,
    frame,
    parse_head,
)

CALL = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/t.T/Fine"),
        (b":authority", b"db"), (b"content-type", b"application/grpc")]  # fmt: skip
START = PREFACE + frame(SETTINGS, 0, 0)  # a client's preface and its SETTINGS
BOTH = END_HEADERS | END_STREAM
Frames = list[tuple[int, int, int, bytes]]  # kind, flags, stream, payload


def frames_of(data: bytes) -> Frames:
    """The whole frames at the start of `data`."""
    out = []
    while len(data) >= HEAD:
        length, kind, flags, stream = parse_head(data[:HEAD])
        out.append((kind, flags, stream, data[HEAD : HEAD + length]))
        data = data[HEAD + length :]
    return out
