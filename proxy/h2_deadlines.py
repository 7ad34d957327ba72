"""The timeouts of the calls on one h2c connection, gated or followed. Pure.

The same three limits as the HTTP/1 path (http_deadlines.Limits), per call
where HTTP/1 has one request at a time:
- `request_s`: a call must have its whole answer within this of its
  request's end (the client's END_STREAM), as Envoy's route timeout, which
  bounds a gRPC stream the same way (so a long-lived stream wants it off);
- `idle_s`: a call with no frame either way for this long (Envoy's stream
  idle timeout);
- `client_idle_s`: the connection, with no call open, idle this long.
A call that runs out is cut as a policy change cuts one (h2_cut.py): reset
at the app, then answered `504` (gRPC: DEADLINE_EXCEEDED) once the app can
say nothing more on it. A connection idle past its limit is told GOAWAY and
closed.

The call book stamps each call (`Call.seen`, `Call.complete`) and keeps
`due`, the soonest a new stamp may run out, so the shell arms its one timer
only when that is sooner than the timer already set (with the default
limits, about once per look, not once per call). `look` finds what ran out
and when to look next. The connection's idleness is seen by comparing its
byte count from one look to the next, as http_deadlines.py does, so the
client-idle limit trips between 1x and 1.5x its value.
"""

from __future__ import annotations

from math import inf

from gossamer.proxy.h2_calls import TIMED_OUT, CallBook
from gossamer.proxy.http_limits import IDLE_TIMEOUT, REQUEST_TIMEOUT, Limits


class CallClock:
    """What ran out on one connection, and when to look again."""

    __slots__ = ("limits", "quiet_since", "seen")

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.seen = 0  # the connection's bytes both ways at the last look
        self.quiet_since = now  # when they last changed, as far as the looks saw

    def first_look(self, now: float) -> float:
        """When to look first on a new connection (inf: no limit to watch yet)."""
        client_idle = self.limits.client_idle_s
        return now + client_idle / 2 if client_idle else inf

    def look(self, calls: CallBook, moved: int, now: float
             ) -> tuple[list[tuple[int, str]], bool, float]:  # fmt: skip
        """(The calls that ran out, each with the limit's event name, now marked cut; whether
        the connection has been idle past its limit with no call open; when to look next,
        inf: no need.) Calls already cut or answered are not timed: their end is under way."""
        lim = self.limits
        if moved != self.seen:
            self.seen, self.quiet_since = moved, now
        out: list[tuple[int, str]] = []
        soonest = inf
        waiting = False  # a call still open: the connection is not idle
        for stream, call in calls.open_items():
            if call.cut or call.answered:
                continue
            waiting = True
            request_due = call.complete + lim.request_s if lim.request_s else inf
            idle_due = call.seen + lim.idle_s if lim.idle_s else inf
            if now >= request_due or now >= idle_due:
                call.cut = TIMED_OUT
                out.append((stream, REQUEST_TIMEOUT if now >= request_due else IDLE_TIMEOUT))
            else:
                soonest = min(soonest, request_due, idle_due)
        calls.due = inf  # (the shell arms for `soonest`, which covers every stamp so far)
        if not lim.client_idle_s:
            return out, False, soonest
        if not waiting and now - self.quiet_since >= lim.client_idle_s:
            return out, True, inf
        # (a call open now may end with no stamp the timer hears of: look again for the
        # connection's idleness after it, as a look with no call open would; found by a review)
        return out, False, min(soonest, now + lim.client_idle_s / 2)
