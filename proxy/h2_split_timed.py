"""The upstream's call timeouts on a balanced connection (h2_split.py). Pure.

The same limits the followed relay keeps for an `http2`/`grpc` upstream
(h2_deadlines.py): `request_s`, a call's whole answer within this of its
request's end (Envoy's route timeout); `idle_s`, no frame either way on a
call for this long (Envoy's stream idle timeout). A call that runs out is
reset at its instance (CANCEL) and answered here as Envoy answers it:
`504`, for gRPC trailers-only DEADLINE_EXCEEDED "upstream request timeout";
a gRPC call whose answer had begun gets those as trailers after what came,
any other is reset (CANCEL). Recorded as a `504`.
The splitter is stamped as its events go by; `time_out` (the shell's timer)
cuts what ran out and says when to look next.
"""

from __future__ import annotations

from collections.abc import Callable
from math import inf
from typing import Generic

from gossamer.proxy.h2_calls import TIMED_OUT
from gossamer.proxy.h2_fields import answer
from gossamer.proxy.h2_frames import (
    CANCEL,
    HEADERS,
    NO_ERROR,
    RST_STREAM,
    literal_block,
    rst_stream,
)
from gossamer.proxy.h2_split import H2Splitter
from gossamer.proxy.h2_split_calls import Call, Command, K, Upstream
from gossamer.proxy.h2_split_wire import Data, Event, Headers
from gossamer.proxy.http_limits import IDLE_TIMEOUT, NO_LIMITS, REQUEST_TIMEOUT, Limits

GRPC_REQUEST = [(b"content-type", b"application/grpc")]


class TimedSplitter(H2Splitter[K], Generic[K]):
    """H2Splitter with its calls timed by `limits` (request_s, idle_s; 0.0: none)."""

    def __init__(self, choose: Callable[[set[K]], K | None], *, clock: Callable[[], float],
                 done: Callable[[K, int, float], None],
                 limits: Limits = NO_LIMITS) -> None:  # fmt: skip
        super().__init__(choose, clock=clock, done=done)
        self.limits = limits
        self._stamps: dict[int, tuple[float, float]] = {}  # stream -> (last frame, request end)
        self._own_limits: dict[int, Limits] = {}  # stream -> its route's, in place of `limits`

    def time_out(self) -> tuple[list[Command[K]], list[str], float]:
        """Cut the calls past a limit: (the commands, each cut's limit's event name, when the
        next may run out; inf: none open)."""
        now, lim = self._clock(), self.limits
        names: list[str] = []
        soonest = inf
        for stream in [s for s in self._stamps if s not in self._calls]:
            del self._stamps[stream]
        for stream in [s for s in self._own_limits if s not in self._stamps]:
            del self._own_limits[stream]
        for stream, (seen, complete) in list(self._stamps.items()):
            call = self._calls[stream]
            if call.down.ended or call.upstream_ended:
                continue  # its answer came whole: nothing to wait for
            lim = self._own_limits.get(stream, self.limits)
            request_due = complete + lim.request_s if lim.request_s else inf
            idle_due = seen + lim.idle_s if lim.idle_s else inf
            if now >= request_due or now >= idle_due:
                names.append(REQUEST_TIMEOUT if now >= request_due else IDLE_TIMEOUT)
                del self._stamps[stream]
                self._cut(call)
            else:
                soonest = min(soonest, request_due, idle_due)
        return self._commands(), names, soonest

    def _cut(self, call: Call[K]) -> None:
        if call.key is not None and call.up.started:
            book = self._book(call.key)
            timed = dict(book.open_items()).get(call.stream)
            if timed is not None:
                timed.cut = TIMED_OUT
            book.cut(call.stream, self._clock())
        if call.answered and not call.grpc:  # its head went: only a reset can end it now
            self._reset(call, CANCEL, CANCEL)
            return
        self._answer_here(call, 504)

    def open_denied(self, key: K) -> list[Command[K]]:
        """`key`'s sidecar refused the connection (its intentions deny this service): the
        calls waiting for it are answered `403` (gRPC: PERMISSION_DENIED), as the gate answers
        a call it denies; not sent elsewhere, every instance has the same intentions."""
        up = self._ups.get(key)
        if up is None:
            return self._commands()
        now = self._clock()
        for call in list(up.calls.values()):
            self._outcome(key, 403, self._label(call.stream), now - call.started)
            self._answer_here(call, 403)
        self._close_up(key, quiet=True)
        return self._commands()

    def _answer_here(self, call: Call[K], status: int) -> None:
        """Answer `call` `status` (h2_fields.answer) here, its instance's leg reset."""
        up = self._ups.get(call.key) if call.key is not None else None
        if up is not None and up.calls.get(call.stream) is call:
            if call.up.started and not call.upstream_ended:  # (it would answer on)
                up.peer.out += rst_stream(call.stream, CANCEL)
            del up.calls[call.stream]  # (what it still sends on the call is dropped)
            up.peer.close_stream(call.stream)
        call.up.drop()
        fields = answer(status, GRPC_REQUEST if call.grpc else [])
        if call.answered:  # a gRPC answer under way: its status, as trailers
            fields = [(n, v) for n, v in fields if n[:1] != b":" and n != b"content-type"]
        call.answered = True
        call.down.put(HEADERS, literal_block(fields), True)
        if not call.client_ended:  # (answered: the rest of the request is not read)
            call.down.put(RST_STREAM, NO_ERROR.to_bytes(4, "big"), True)
        self._pump_client()

    def _new_call(self, stream: int, event: Headers) -> None:
        now = self._clock()
        self._stamps[stream] = (now, now if event.end else inf)
        super()._new_call(stream, event)

    def _client_event(self, event: Event) -> None:
        if isinstance(event, Data | Headers) and event.stream in self._stamps:
            now = self._clock()
            complete = self._stamps[event.stream][1]
            self._stamps[event.stream] = (now, now if event.end and complete == inf else complete)
        super()._client_event(event)

    def _upstream_event(self, key: K, up: Upstream[K], event: Event) -> None:
        stream = getattr(event, "stream", 0)
        stamp = self._stamps.get(stream)
        if stamp is not None:
            self._stamps[stream] = (self._clock(), stamp[1])
        super()._upstream_event(key, up, event)
