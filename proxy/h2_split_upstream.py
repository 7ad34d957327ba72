"""The splitter's state and what its upstream connections do to it (h2_split.py). Pure.

H2Splitter's base (h2_split.py adds the client's side and the routing of new
calls; h2_split_core.py holds the state both sides share). Errors, as the
calling side of a mesh should surface them:

- an upstream's GOAWAY: the calls above its last stream were never
  processed there, so the client gets RST_STREAM REFUSED_STREAM (safe to
  retry, but grpcio does not: h2_balanced_replay.py sends such a call again
  when it kept it whole), and the connection takes no new call;
  it closes once its calls end;
- an upstream that breaks HTTP/2 (a connection error) or whose connection
  is lost: REFUSED_STREAM for its calls above a GOAWAY's last stream; one
  with no answer yet is answered as Envoy answers it, 503 "upstream connect
  error or disconnect/reset before headers", for gRPC a trailers-only
  UNAVAILABLE (what gRPC retry policies retry; a reset would read INTERNAL);
  one whose answer had begun is reset, INTERNAL_ERROR; one whose answer had
  all come keeps it and only loses what was left of its request;
- an upstream's RST_STREAM goes to the client with its code; NO_ERROR after
  a whole answer (RFC 9113 §8.1: stop sending the request) goes behind the
  answer, not before it.
"""

from __future__ import annotations

from typing import Generic

from gossamer.proxy.h2_calls import UNAVAILABLE
from gossamer.proxy.h2_frames import (
    DATA,
    FLOW_CONTROL_ERROR,
    HEADERS,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    RST_STREAM,
    STREAM_CLOSED,
    H2Error,
    goaway,
    literal_block,
)
from gossamer.proxy.h2_split_calls import (
    Call,
    Close,
    Command,
    K,
    Upstream,
    answer_fault,
)
from gossamer.proxy.h2_split_core import SplitCore
from gossamer.proxy.h2_split_wire import (
    Data,
    Event,
    GoAway,
    Headers,
    Initial,
    Reset,
    StreamError,
    Window,
)

INTERNAL_ERROR = 0x2
# Envoy's words for a call whose upstream connection ended before its answer, which its
# users look for in logs and client errors
LOST_BEFORE_ANSWER = b"upstream connect error or disconnect/reset before headers. " + (
    b"reset reason: connection termination"
)


class UpstreamSide(SplitCore[K], Generic[K]):
    def opened(self, key: K) -> list[Command[K]]:
        """The connection to `key` is up: its preface, then the calls waiting for it."""
        up = self._ups.get(key)
        if up is not None and not up.opened:
            up.opened = True
            for call in sorted(up.calls.values(), key=lambda c: c.stream):
                self._start(key, up, call)
            self._pump_up(up)
        return self._commands()

    def open_failed(self, key: K) -> list[Command[K]]:
        """`key` could not be reached: its calls (nothing of them sent) try one other."""
        up = self._ups.pop(key, None)
        if up is not None and not up.opened:
            for call in sorted(up.calls.values(), key=lambda c: c.stream):
                if len(call.tried) < 2:
                    self._route(call)
                else:
                    self._reset(call, REFUSED_STREAM, None)
        return self._commands()

    def upstream_closed(self, key: K) -> list[Command[K]]:
        """The connection to `key` ended (EOF or error): its calls end with it."""
        up = self._ups.get(key)
        if up is not None and not up.opened:
            return self.open_failed(key)
        if up is not None:
            self._lose(key, up, quiet=True)
        return self._commands()

    def retire(self, key: K) -> list[Command[K]]:
        """No new call goes to `key` on the connection open to it (idle, or the instance
        left the catalog); it closes once its calls end, at once when it has none."""
        up = self._ups.get(key)
        if up is not None and up.opened:
            up.goaway = min(up.goaway, up.last)
            if not up.calls:
                self._close_up(key)
        return self._commands()

    def from_upstream(self, key: K, data: bytes) -> list[Command[K]]:
        up = self._ups.get(key)
        if up is None or not up.opened or self._closed:
            return []
        try:
            for event in up.peer.feed(data):
                self._upstream_event(key, up, event)
                if self._ups.get(key) is not up:
                    break
        except H2Error as exc:
            up.peer.out += goaway(0, exc.code, str(exc).encode()[:256])
            self._lose(key, up, quiet=False)
        return self._commands()

    def _upstream_event(self, key: K, up: Upstream[K], event: Event) -> None:
        if isinstance(event, GoAway):
            self._upstream_goaway(key, up, event.last)
        elif isinstance(event, Initial):
            if not all([c.up.grow(event.delta) for c in up.calls.values() if c.up.started]):
                raise H2Error(FLOW_CONTROL_ERROR, "a stream's window past 2^31-1")
            self._pump_up(up)
        elif isinstance(event, Window) and not event.stream:
            self._pump_up(up)
        else:
            call = up.calls.get(event.stream)
            if call is None or not call.up.started:
                if event.stream > up.last:
                    raise H2Error(PROTOCOL_ERROR, f"a frame on stream {event.stream}, never opened")
                return  # a call that ended: what was in flight is dropped
            self._upstream_call_event(key, up, call, event)

    def _upstream_call_event(self, key: K, up: Upstream[K], call: Call[K], event: Event) -> None:
        now = self._clock()
        if isinstance(event, Headers | Data) and call.upstream_ended:
            self._reset(call, INTERNAL_ERROR, STREAM_CLOSED)
        elif isinstance(event, Headers) and (
            event.malformed or event.over or answer_fault(call, event.fields, event.end)
        ):
            self._reset(call, INTERNAL_ERROR, PROTOCOL_ERROR)
        elif isinstance(event, Data) and not call.answered:
            self._reset(call, INTERNAL_ERROR, PROTOCOL_ERROR)  # (DATA before its head)
        elif isinstance(event, Headers):
            call.upstream_ended = event.end
            self._book(key).headers(call.stream, event.fields, event.end, now)
            if not call.down.ended:
                call.down.put(HEADERS, literal_block(event.fields), event.end)
                self._pump_client()
        elif isinstance(event, Data):
            call.upstream_ended = event.end
            if event.end:
                self._book(key).ended(call.stream, now)
            if call.down.ended:
                up.peer.consumed(call.stream, len(event.data))
            elif event.data or event.end:
                call.down.put(DATA, event.data, event.end)
                self._pump_client()
        elif isinstance(event, Reset):
            self._upstream_reset(key, call, event.code)
        elif isinstance(event, Window):
            if not call.up.grow(event.increment):
                self._reset(call, INTERNAL_ERROR, FLOW_CONTROL_ERROR)
            self._pump_up(up)
        elif isinstance(event, StreamError):
            self._reset(call, INTERNAL_ERROR, event.code)

    def _upstream_reset(self, key: K, call: Call[K], code: int) -> None:
        self._book(key).reset_by_app(call.stream, self._clock(), code)
        call.up.drop()
        if code == NO_ERROR and call.upstream_ended:  # the answer is whole: it goes first
            if not call.client_ended and not call.down.ended:
                call.down.put(RST_STREAM, NO_ERROR.to_bytes(4, "big"), True)
            self._pump_client()
            self._settle(call)
        else:
            self._reset(call, code, None)

    def _upstream_goaway(self, key: K, up: Upstream[K], last: int) -> None:
        up.goaway = min(up.goaway, last)
        now = self._clock()
        for call in [c for c in up.calls.values() if c.stream > up.goaway]:
            self._book(key).closed(call.stream, now, UNAVAILABLE)
            self._reset(call, REFUSED_STREAM, None)
        if not up.calls:
            self._close_up(key)

    def _lose(self, key: K, up: Upstream[K], *, quiet: bool) -> None:
        """The connection to `key` is over (`quiet`: it closed itself, no Close needed)."""
        now = self._clock()
        if quiet:
            up.peer.out.clear()  # (nowhere to write it)
        self._flush()  # (what it was owed, a GOAWAY of ours, goes before Close)
        if self._ups.get(key) is up:
            del self._ups[key]
        for call in list(up.calls.values()):
            if (
                not call.upstream_ended
                and call.stream <= up.goaway
                and not (call.answered or call.down.ended)
            ):  # counted as the answer it gets here
                self._book(key).headers(call.stream, self._answer_503(call, LOST_BEFORE_ANSWER),
                                        True, now)  # fmt: skip
            elif not call.upstream_ended:
                self._book(key).closed(call.stream, now, UNAVAILABLE)
                refused = call.stream > up.goaway
                self._reset(call, REFUSED_STREAM if refused else INTERNAL_ERROR, None)
            else:  # its answer is whole: only what its request had left is lost
                call.up.drop()
                self._settle(call)
        if not quiet:
            self._cmds.append(Close(key))

    def _answer_503(self, call: Call[K], message: bytes) -> list[tuple[bytes, bytes]]:
        """Answer `call` here, as Envoy answers a call it could not get answered: 503 with
        `message`, for gRPC a trailers-only UNAVAILABLE (14) with it as grpc-message. Its
        head's fields, for the call's book."""
        fields = [(b":status", b"503"), (b"content-type", b"text/plain")]
        if call.grpc:
            fields = [(b":status", b"200"), (b"content-type", b"application/grpc"),
                      (b"grpc-status", b"14"), (b"grpc-message", message)]  # fmt: skip
        call.down.put(HEADERS, literal_block(fields), call.grpc)
        if not call.grpc:
            call.down.put(DATA, message, True)
        if not call.client_ended:  # (RFC 9113 §8.1: answered, the rest of the request unread)
            call.down.put(RST_STREAM, NO_ERROR.to_bytes(4, "big"), True)
        call.up.drop()
        self._pump_client()
        return fields
