"""The timeouts of one HTTP session (http1.py): per request, and between requests.

Three limits (`Limits`, read from the config by protocol.py; 0.0 turns one off):
- `request_s`: a request must have its whole answer within this of having
  been sent whole to the app (as Envoy's route timeout, which starts when the
  request is complete, so a long upload is bounded by `idle_s` alone); it is
  the whole request's, its retries included (as Envoy's route timeout and
  Linkerd's are): a retry after a fast failure has the time left, and a
  request that runs out of it is not retried, there being no time left. Each
  try used to start its own clock, so a GET every instance was slow to
  answer got its 504 after three times the configured limit;
- `idle_s`: while a try is in flight, no byte either way for this long (per
  try, as Envoy's per-try idle timeout; a service-router route's
  `IdleTimeout` replaces it for the requests it takes, route_rules.py);
- `client_idle_s`: between requests, the client connection idle this long.
An upgraded connection (a WebSocket after its 101) is a byte relay with no
request to time: it is closed after `idle_s` with no byte either way, as
Envoy's stream idle timeout closes an upgraded stream (`tunneled`).
A try that goes idle is sent again under the host's retry rules, else
answered `504`; a request out of time is answered `504` (either cuts its
connection when the answer has begun); an idle client connection is closed.
Each is counted as the host's HTTP event.

Rules kept here, so the data path stays cheap: one timer per session, armed
when it fires or when a request needs it sooner (a request costs a clock
read and a comparison, no timer calls in the steady state); idleness is
seen by comparing the session's byte counts from one wake to the next
(nothing is stamped per chunk), so an idle limit trips between 1x and 1.5x
its value after the last byte.
"""

from __future__ import annotations

import asyncio
from math import inf
from typing import TYPE_CHECKING

from gossamer.proxy.http_limits import CLIENT_IDLE, IDLE_TIMEOUT, REQUEST_TIMEOUT, Limits

if TYPE_CHECKING:
    from gossamer.proxy.http1 import HttpSession


class Deadlines:
    """The one timer of an `HttpSession` (see the module rules)."""

    __deletable__ = ("s",)  # http_joint.unlink deletes it (mypyc: declared)

    __slots__ = ("deadline", "handle", "limits", "loop", "quiet_since", "s", "seen", "timed")

    def __init__(self, session: HttpSession, limits: Limits) -> None:
        self.s, self.limits = session, limits
        self.loop = session.loop
        self.handle: asyncio.TimerHandle | None = None
        self.seen = -1  # the session's bytes both ways at the last look
        self.quiet_since = self.deadline = 0.0
        self.timed: object = None  # the request `deadline` is for (its retries keep it)

    def sent(self, *, complete: bool) -> None:
        """A request (or a retry of it) went to the app, or the rest of its body did
        (`complete`): idleness is watched from now, and the request timeout once complete,
        from the first try that completed it (a retry keeps that deadline)."""
        lim, now = self.limits, self.loop.time()
        self.seen, self.quiet_since = self.s.moved_total(), now
        ex = self.s.queue[0] if self.s.queue else None
        if ex is None or ex is not self.timed:
            self.deadline = inf
            request_s = lim.request_s if ex is None or not ex.request_s else ex.request_s
            if complete and request_s:  # (a routed request may have its own)
                self.deadline, self.timed = now + request_s, ex
        idle_s = lim.idle_s if ex is None or ex.rules is None else ex.rules.idle_s or lim.idle_s
        due = min(self.deadline, now + idle_s / 2 if idle_s else inf)
        if due == inf and lim.client_idle_s:
            due = now + lim.client_idle_s / 2
        handle = self.handle
        if due != inf and (handle is None or handle.when() > due):
            self._arm(due)

    def answered(self) -> None:
        """The last request in flight has its whole answer: the client connection is idle
        from now, so its limit is due from here, and the quiet is counted from here (the
        answer's bytes are in the count already). Counted from the next wake instead, as
        it was, the wake that sees the answer's bytes started the quiet late: with an
        800 ms request timeout a 1.2 s client-idle limit closed the connection 2.6 s after
        the answer. The timer was armed for that request's deadline, which may be far
        later (a 15 s request timeout made a 1 s client-idle limit take 15.7 s); re-armed
        only when it is due later than this, so with the default limits (an hour) a
        request costs no timer call."""
        lim = self.limits
        self.timed = None  # that request is done
        if not lim.client_idle_s:
            return
        now = self.loop.time()
        self.seen, self.quiet_since = self.s.moved_total(), now
        due = now + lim.client_idle_s
        handle = self.handle
        if handle is not None and handle.when() <= due:
            return  # that wake-up sees the idleness from here
        self._arm(due)

    def tunneled(self) -> None:
        """The session is now a byte relay (`HttpSession.upgraded`): its quiet is watched
        from here, against `idle_s` alone."""
        self.timed = None
        if self.limits.idle_s:
            now = self.loop.time()
            self.seen, self.quiet_since = self._relayed(), now
            self._arm(now + self.limits.idle_s / 2)

    def _relayed(self) -> int:
        sent, back = self.s.bytes_each_way()
        return sent + back

    def stop(self) -> None:
        self.timed = None  # (an exchange may point back at its session: no cycle kept)
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _arm(self, when: float) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.handle = None
        s, lim, now = self.s, self.limits, self.loop.time()
        if s.closed:
            return
        if s.tunnel is not None:  # a byte relay: no request to time, only its quiet
            self._tunnel_quiet(now)
            return
        moved = s.moved_total()
        if moved != self.seen:
            self.seen, self.quiet_since = moved, now
        quiet = now - self.quiet_since
        ex = s.queue[0] if s.queue else None
        if ex is not None and ex.sent:
            if now >= self.deadline:  # the request's own time is up: none left for a retry
                s.host.http_event(REQUEST_TIMEOUT)
                s.fail(504)
                return
            idle_s = lim.idle_s if ex.rules is None else ex.rules.idle_s or lim.idle_s
            if idle_s and quiet >= idle_s:  # this try went silent: another may not
                s.host.http_event(IDLE_TIMEOUT)
                if not s.retry(lost=True):
                    s.fail(504)
                return
            due = min(self.deadline, now + idle_s / 2 if idle_s else inf)
            if due == inf and lim.client_idle_s:  # no limit on the request: look again as
                due = now + lim.client_idle_s / 2  # `sent` did, for the idleness after it
        elif ex is None:
            if lim.client_idle_s and quiet >= lim.client_idle_s:
                s.host.http_event(CLIENT_IDLE)
                s.close_between()  # (a request crossing the close goes elsewhere)
                return
            due = now + lim.client_idle_s / 2 if lim.client_idle_s else inf
        else:  # waiting for a connection, or for the rest of a denied request
            due = now + lim.recheck_s()
        if due != inf:
            self._arm(due)

    def _tunnel_quiet(self, now: float) -> None:
        idle_s = self.limits.idle_s
        if not idle_s:
            return
        moved = self._relayed()
        if moved != self.seen:
            self.seen, self.quiet_since = moved, now
        if now - self.quiet_since >= idle_s:
            self.s.host.http_event(IDLE_TIMEOUT)
            self.s.close()
            return
        self._arm(min(now + idle_s / 2, self.quiet_since + idle_s))
