"""The one timer of an h2 relay's calls: it looks when h2_deadlines.py says. Shell.

Armed at the join for the connection's idle limit, and again after a read
only when a call's new stamp may run out sooner than the time already set
(`check`: an attribute read and a comparison per read). When it fires, the
calls that ran out are counted (`event`, the HTTP/1 path's names) and cut
by the relay (`H2Relay.time_out`), and an idle connection is closed
(`H2Relay.idle_close`). Times are `time.perf_counter()`'s, as the call
book's stamps are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from math import inf
from typing import TYPE_CHECKING

from gossamer.proxy.h2_calls import CallBook
from gossamer.proxy.h2_deadlines import CallClock
from gossamer.proxy.http_limits import CLIENT_IDLE, Limits

if TYPE_CHECKING:
    from gossamer.proxy.h2_relay import H2Relay


class CallTimer:
    __slots__ = ("calls", "clock", "event", "handle", "relay", "when")

    def __init__(self, relay: H2Relay, calls: CallBook, limits: Limits,
                 event: Callable[[str], None]) -> None:  # fmt: skip
        now = time.perf_counter()
        self.relay, self.calls, self.event = relay, calls, event
        self.clock = CallClock(limits, now)
        self.handle: asyncio.TimerHandle | None = None
        self.when = inf  # when it is set to fire (inf: not set)
        # (the calls the client's first bytes opened, carried as the relay was joined, before
        # this timer was: their stamps count too; found by a review)
        self._arm(min(self.clock.first_look(now), calls.due))

    def check(self) -> None:
        """After a read: a call opened or its request ended, so one may run out sooner."""
        if self.calls.due < self.when:
            self._arm(self.calls.due)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.when = -inf  # (`check` never arms it again)

    def _arm(self, when: float) -> None:
        if when == inf:
            return
        if self.handle is not None:
            self.handle.cancel()
        self.when = when
        delay = max(0.0, when - time.perf_counter())
        self.handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self.handle, self.when = None, inf
        relay = self.relay
        if relay.halves.closed or relay.opaque():
            return  # (h2 inside the apps' own TLS, or not HTTP/2: a byte relay, no calls)
        expired, idle, due = self.clock.look(self.calls, relay.moved_total(),
                                             time.perf_counter())  # fmt: skip
        if expired:
            for _, name in expired:
                self.event(name)
            relay.time_out([stream for stream, _ in expired])
        if idle:
            self.event(CLIENT_IDLE)
            relay.idle_close()
            return
        self._arm(min(due, self.calls.due))
