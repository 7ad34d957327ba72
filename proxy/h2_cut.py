"""Calls in flight on an h2c connection that are cut: a policy change no longer allows
them, or they ran out of time. Pure.

The gate (h2_gate.py `recheck`) decides each open call again; one now
denied, or one past a timeout (h2_deadlines.py, on the gate or on the
calling side's follower), is reset at the app at once (RST_STREAM CANCEL),
and the client's later frames on it are dropped. The client's answer waits until the app
can send nothing more on the stream: a PING goes to the app right behind
the resets, and its ACK comes back after every frame the app sent before
it read them (frames keep their order). Until then the app's frames on the
stream go to the client as they come: its header blocks must, since they
keep the client's HPACK table in step with the app's encoder, and a few
more bytes of an answer that was under way leak nothing new. On the ACK
(h2_app.py) the client gets the call's end (`ending`). An app that does not
answer in time loses the whole connection (h2_relay.py `CUT_WAIT_S`).
"""

from __future__ import annotations

import os
from typing import Final

from gossamer.proxy import h2_fields
from gossamer.proxy.h2_calls import TIMED_OUT, Call
from gossamer.proxy.h2_frames import (
    CANCEL,
    NO_ERROR,
    PING,
    PROTOCOL_ERROR,
    frame,
    header_frames,
    literal_block,
    rst_stream,
)

TOKEN: Final = b"g"  # the first byte of the gate's PINGs' payload (8 bytes in all)
_GRPC_DENIED: Final = [(b"grpc-status", b"7"), (b"grpc-message", b"RBAC: access denied")]
_GRPC_TIMED_OUT: Final = [(b"grpc-status", b"4"), (b"grpc-message", b"upstream request timeout")]


class Cuts:
    """The resets a connection's app has not answered yet, by their PING's payload."""

    def __init__(self) -> None:
        self.waiting: dict[bytes, list[int]] = {}
        self._sent = 0

    def start(self, streams: list[int], code: int = CANCEL) -> bytes:
        """The frames for the app that cut `streams`: a reset each (`code`), then the PING."""
        self._sent += 1  # (unique) and random: a client's PING cannot pass for the gate's
        token = TOKEN + self._sent.to_bytes(3, "big") + os.urandom(4)
        self.waiting[token] = streams
        return b"".join([rst_stream(s, code) for s in streams]) + frame(PING, 0, 0, token)

    def acked(self, payload: bytes) -> list[int] | None:
        """The streams whose wait the ACK of `payload` ends (None: not one of ours)."""
        return self.waiting.pop(payload, None)


def ending(stream: int, call: Call | None, known: bool, update: bytes = b"") -> bytes:
    """The frames that end a cut call for the client. None: both sides had ended it (the
    app's last frame reached the client); the app's side only: a reset, as the client is
    still sending. `known`: the app's header blocks were all read, so
    the call says whether an answer began; when they were not, only a reset is safe. A
    call with no answer yet gets the cut's answer (`403` for a deny, `504` for a timeout;
    for gRPC trailers-only PERMISSION_DENIED or DEADLINE_EXCEEDED); a gRPC answer under way
    gets trailers with that grpc-status (7, 4); any other, a reset. After an answer that
    ends the stream, a client still sending is told to stop (RST_STREAM NO_ERROR, RFC 9113
    §8.1). A block opens with `update`, the HPACK table size update the client's decoder
    may wait for (h2_app.AppSide.table_update)."""
    if call is None:
        return b""
    timed_out = call.cut == TIMED_OUT
    if call.cut == PROTOCOL_ERROR or call.answered:  # a malformed request (h2_client.py):
        # a stream error; an answer whole: stop sending
        return rst_stream(stream, CANCEL if timed_out else call.cut)
    if not known or (call.status and not call.grpc):
        return rst_stream(stream, CANCEL)
    # a gRPC answer under way: its trailers; none yet: the cut's answer (to the request's kind)
    if call.status:
        fields = _GRPC_TIMED_OUT if timed_out else _GRPC_DENIED
    else:
        fields = h2_fields.answer(504 if timed_out else 403, call.fields or ())
    end = header_frames(stream, update + literal_block(fields), end_stream=True)
    return end if call.client_ended else end + rst_stream(stream, NO_ERROR)
