"""What a balanced connection's client may do to wear the proxy or the instances down, answered
on the calling side. Pure.

A followed connection (h2_followed.py) reaches the far sidecar's gate
(h2_gate.py) whole, and the gate answers a client that abuses it. A
balanced one ends here (h2_split.py): the far gates each see only the calls
sent to them, on connections of the proxy's own, so this side must answer
what only the whole connection shows, with the gate's own rules:

- rapid reset (CVE-2023-44487) and MadeYouReset (CVE-2025-8671): the
  client's resets, its stream errors (a WINDOW_UPDATE of 0 on a call), and
  an instance's resets that blame the client, each before the call's answer
  began, are counted by a call book of the client's (h2_calls.CallBook, the
  gate's counts, RAPID_CALLS): past the limit, GOAWAY ENHANCE_YOUR_CALM;
- a request on a stream below one the client opened already (RFC 9113
  §5.1.1): GOAWAY PROTOCOL_ERROR, as the gate's `_dead_stream_block` (it was
  dropped unanswered, and the client waited for its deadline).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic

from gossamer.proxy.h2_calls import CallBook, uncounted
from gossamer.proxy.h2_fields import has_pseudo
from gossamer.proxy.h2_frames import ENHANCE_YOUR_CALM, PROTOCOL_ERROR, H2Error, goaway
from gossamer.proxy.h2_split_calls import NEVER, Call, K, Upstream
from gossamer.proxy.h2_split_timed import TimedSplitter
from gossamer.proxy.h2_split_wire import Event, Headers, Reset, StreamError
from gossamer.proxy.http_limits import NO_LIMITS, Limits

RAPID = "over half the calls reset before an answer"


class GuardedSplitter(TimedSplitter[K], Generic[K]):
    """TimedSplitter that answers a client's floods and out-of-order streams itself."""

    def __init__(self, choose: Callable[[set[K]], K | None], *, clock: Callable[[], float],
                 done: Callable[[K, int, float], None],
                 limits: Limits = NO_LIMITS) -> None:  # fmt: skip
        super().__init__(choose, clock=clock, done=done, limits=limits)
        self.early = CallBook(uncounted)  # the client's calls, counted as the gate counts them

    @property
    def going_away(self) -> dict[K, int]:
        """The connections to instances that take no new call (their GOAWAY came, or they
        were retired), each with the last stream it still processes."""
        return {key: up.goaway for key, up in self._ups.items() if up.goaway != NEVER}

    def _new_call(self, stream: int, event: Headers) -> None:
        self.early.opened(stream, "", self._clock(), ended=event.end)
        super()._new_call(stream, event)

    def _client_event(self, event: Event) -> None:
        live = getattr(event, "stream", 0) in self._calls
        if isinstance(event, Reset) and live:
            if self.early.reset_by_client(event.stream, self._clock()):
                raise H2Error(ENHANCE_YOUR_CALM, RAPID)
        elif isinstance(event, StreamError) and live:
            if self.early.malformed(event.stream):  # (the proxy resets it: the client's doing)
                raise H2Error(ENHANCE_YOUR_CALM, RAPID)
        elif (isinstance(event, Headers) and not live and event.stream <= self._last
              and has_pseudo(event.fields)):  # fmt: skip
            raise H2Error(PROTOCOL_ERROR, f"a request on stream {event.stream}, not above "
                          f"stream {self._last}, opened already")  # fmt: skip
        super()._client_event(event)

    def _upstream_call_event(self, key: K, up: Upstream[K], call: Call[K], event: Event) -> None:
        if isinstance(event, Headers):  # (an answer begun: its reset is no rapid one)
            self.early.headers(call.stream, event.fields, False, self._clock())
        super()._upstream_call_event(key, up, call, event)

    def _upstream_reset(self, key: K, call: Call[K], code: int) -> None:
        self.early.reset_by_app(call.stream, self._clock(), code)
        super()._upstream_reset(key, call, code)
        if self.early.rapid() and not self._closed:
            self._client.out += goaway(self._last, ENHANCE_YOUR_CALM, RAPID.encode())
            self._end_all()

    def _settle(self, call: Call[K]) -> None:
        super()._settle(call)
        if call.stream not in self._calls:
            self.early.closed(call.stream, self._clock())
