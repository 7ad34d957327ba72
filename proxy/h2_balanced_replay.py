"""A balanced call an instance refused unbegun, made again on another instance. Pure.

An instance that shuts down says GOAWAY: the calls sent to it above its
last stream were never begun there (RFC 9113 §6.8), and one at its limit
of streams resets a call REFUSED_STREAM. Followed (h2_followed.py), the
GOAWAY reaches the client and gRPC makes those calls again by itself; the
balancing side answered each RST_STREAM REFUSED_STREAM instead, which grpcio
does not retry (UNAVAILABLE "Stream removed"), so an instance's rolling
restart failed calls. Linkerd keeps up to 64 KiB of a request to send it
again; so does this: a call's request is kept (its header blocks and DATA)
while it is whole within REPLAY_MAX and no answer came; refused so, the
call is routed again (the chooser names an instance; the refusing one only
on a new connection of its own), at most AGAIN_MAX times, before the client
sees REFUSED_STREAM as before. Only a call whose request had ended (all of
it kept): one still sending would interleave what it sends with what is
sent again, and its window was already credited for what is kept.

Memory: at most REPLAY_MAX per call (100 calls: 6.25 MiB per client
connection), on top of the splitter's bound (h2_split.py); a request kept
is forgotten with its answer's first frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Generic

from gossamer.proxy.h2_balanced_guard import GuardedSplitter
from gossamer.proxy.h2_frames import DATA, HEADERS, REFUSED_STREAM, literal_block
from gossamer.proxy.h2_split_calls import Call, K, Upstream
from gossamer.proxy.h2_split_flow import Leg
from gossamer.proxy.h2_split_wire import Data, Event, Headers
from gossamer.proxy.http_limits import NO_LIMITS, Limits

REPLAY_MAX: Final = 65536  # a request's bytes kept to send again (Linkerd's)
AGAIN_MAX: Final = 2  # times a refused call is sent again


class ReplayingSplitter(GuardedSplitter[K], Generic[K]):
    """GuardedSplitter that sends a call refused unbegun again, to an instance chosen anew."""

    def __init__(self, choose: Callable[[set[K]], K | None], *, clock: Callable[[], float],
                 done: Callable[[K, int, float], None],
                 limits: Limits = NO_LIMITS) -> None:  # fmt: skip
        super().__init__(choose, clock=clock, done=done, limits=limits)
        self._kept: dict[int, Leg] = {}  # by stream: the request, while it may go again
        self._again: dict[int, int] = {}  # by stream: times sent again

    def _keep(self, stream: int, kind: int, payload: bytes, end: bool) -> None:
        kept = self._kept.get(stream)
        if kept is None:
            return
        if kept.queued + len(payload) > REPLAY_MAX:
            del self._kept[stream]  # (too large to keep: refused as before)
            return
        kept.put(kind, payload, end)  # (DATA joined: one item, however many frames)

    def _new_call(self, stream: int, event: Headers) -> None:
        self._kept[stream] = Leg(stream)
        self._keep(stream, HEADERS, literal_block(event.fields), event.end)
        super()._new_call(stream, event)
        if stream not in self._calls:
            self._kept.pop(stream, None)

    def _client_event(self, event: Event) -> None:
        call = self._calls.get(getattr(event, "stream", 0))
        if call is not None and not call.client_ended and not call.up.ended:
            if isinstance(event, Data):
                self._keep(call.stream, DATA, event.data, event.end)
            elif isinstance(event, Headers) and event.end:  # trailers
                self._keep(call.stream, HEADERS, literal_block(event.fields), True)
        super()._client_event(event)

    def _upstream_call_event(self, key: K, up: Upstream[K], call: Call[K], event: Event) -> None:
        if isinstance(event, Headers | Data):  # (begun: never sent again)
            self._kept.pop(call.stream, None)
        super()._upstream_call_event(key, up, call, event)

    def _upstream_reset(self, key: K, call: Call[K], code: int) -> None:
        up = self._ups.get(key)
        if code == REFUSED_STREAM and up is not None and self._replayable(call):
            self._detach(key, up, call)
            self._send_again(call)
            return
        super()._upstream_reset(key, call, code)

    def _upstream_goaway(self, key: K, up: Upstream[K], last: int) -> None:
        unbegun = min(up.goaway, last)
        again = [c for c in up.calls.values() if c.stream > unbegun and self._replayable(c)]
        for call in again:
            self._detach(key, up, call)
        super()._upstream_goaway(key, up, last)
        for call in again:
            self._send_again(call)

    def _settle(self, call: Call[K]) -> None:
        super()._settle(call)
        if call.stream not in self._calls:
            self._kept.pop(call.stream, None)
            self._again.pop(call.stream, None)

    def _replayable(self, call: Call[K]) -> bool:
        again = self._again.get(call.stream, 0)
        return (call.stream in self._kept and call.client_ended and not call.answered
                and not call.upstream_ended and again < self._again_max(call))  # fmt: skip

    def _again_max(self, call: Call[K]) -> int:
        """Times `call` may be sent again (a route's NumRetries: h2_split_routed.py)."""
        return AGAIN_MAX

    def _detach(self, key: K, up: Upstream[K], call: Call[K]) -> None:
        """`call` leaves `key`'s connection, unrecorded there."""
        if up.calls.get(call.stream) is call:
            del up.calls[call.stream]
        up.peer.close_stream(call.stream)
        self._book(key).forget(call.stream)

    def _send_again(self, call: Call[K]) -> None:
        """`call`'s kept request, routed anew."""
        self._again[call.stream] = self._again.get(call.stream, 0) + 1
        call.up = Leg(call.stream)
        for kind, payload, end in self._kept[call.stream].items:
            call.up.put(kind, bytes(payload), end)
        call.key = None
        self._route(call)
