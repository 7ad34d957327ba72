"""An HTTP session's app connection: taken, made, given back, lost; a request sent again.

The part of `HttpSession` (http1.py) that deals with its app connection: a
pooled host's idle one taken at once, else one opened in a task
(`_connect`); none to be had is `503`, or, for a client sidecar's stream,
a RESET UNREACHABLE (`_unreachable`), which only a sidecar can send, so
that sidecar may send the request elsewhere whatever its method. A
connection that ended an answer and may serve again goes back to its
host (`reusable`); one that closed or broke is forgotten, a broken one
counted against its instance (`_forget_app`). A request whose connection
failed before its answer is sent again on another (`retry`) when it is
kept (its body at most http1.KEPT_BODY), idempotent or known to have reached
no app, within MAX_RETRIES and the host's retry budget; else `502`
(`_app_gone`). A retry first waits Envoy's back-off (retry_backoff.py) on a
timer (`_backoff`): the session is taken for connecting meanwhile, so no
request of its goes on, and its close, or its client's end, drops the
retry (nor does one wait for a client that has ended its side). One that
reached no app goes at once when another instance may take it; one whose
wait would pass the request's deadline is not made. They went at once, and
a request to one failing instance spent all its tries within milliseconds.
"""

from __future__ import annotations

import asyncio
from math import inf
from random import random
from typing import TYPE_CHECKING, Final

from gossamer.proxy import http_codec as codec
from gossamer.proxy.http_joint import HttpJoint
from gossamer.proxy.retry_backoff import delay_s
from gossamer.proxy.side import Side

if TYPE_CHECKING:
    from gossamer.proxy.relay import Relay

MAX_RETRIES: Final = 2  # per request, within the host's budget


class HttpAppLink(HttpJoint):
    """What an HTTP session does with its app connection (module docstring); `HttpSession`
    (http1.py) is the one subclass."""

    loop: asyncio.AbstractEventLoop
    tunnel: Relay | None
    _connecting: bool  # a connection is being made, or a retry waits its back-off
    _opening: asyncio.Task[None] | None
    _backoff: asyncio.TimerHandle | None  # a retry waiting its back-off

    def _connect(self) -> None:
        if self._connecting:
            return
        ex = self.queue[0]  # (pump calls it for the oldest request)
        idle = self.host.take_idle(ex)  # a pooled connection ready now: no task, no loop turn
        if idle is not None:
            self._use_app(idle)
            return
        self._connecting = True
        self._opening = self.loop.create_task(self._open_app(ex))  # held

    async def _open_app(self, ex: codec.Exchange) -> None:
        # The task is let go once the open ends: compiled, its finished coroutine kept this
        # session alive in a cycle the collector never freed (bench/README.md, "Proxy RSS").
        try:
            app: Side | None = await self.host.open_backend(ex)
        except (OSError, TimeoutError):
            app = None
        self._connecting, self._opening = False, None
        if app is None:
            self._unreachable()
        else:
            self._use_app(app)

    def _unreachable(self) -> None:
        """No connection to the app: 503, and close. A client sidecar's stream is reset
        UNREACHABLE instead, which its app cannot forge, so that sidecar may send the request
        to another instance whatever its method (it reached no app), or answer 503 itself."""
        if not self.client.say_unreached():
            self.fail(503)
            return
        if self.queue:
            self._record(self.queue.popleft(), 503)
        self.close(abort=True)

    def reusable(self, status: int) -> None:
        """The app connection ended an answer (`status`) and may serve another: a pooling host
        takes it."""
        if self.host.pooled and self.app is not None and self.tunnel is None:
            app, self.app = self.app, None
            if self._reply is not None:
                self._reply.let_go(self)
            self.host.release_backend(app, status=status)

    def drop_app(self, status: int = 0) -> None:
        """Forget the app connection (it said close after an answer, `status`)."""
        self._forget_app(status=status)
        if self.queue:
            self.pump()

    def _forget_app(self, *, abort: bool = False, failed: bool = False, status: int = 0) -> None:
        app, self.app = self.app, None
        if self._reply is not None:
            self._reply.let_go(self)
        if app is not None:
            app.relay = None
            app.close(abort=abort)
            if self.host.pooled:  # closed: only its bookkeeping
                instance = self.host.release_backend(app, failed=failed, status=status,
                                                     timed=self.tunnel is None)  # fmt: skip
                if failed and self.queue:
                    self.queue[0].failed_on += (instance,)

    def retry(self, *, unreached: bool = False, status: int = 0, lost: bool = False) -> bool:
        """Send the oldest request again on another connection, when it is not yet answered,
        kept (`_to_app`), idempotent or `unreached` (it reached no app), and the host's retry
        budget allows; False when it may not. `status`: the answer that asks for it (0:
        none); `lost`: its try ended with no answer. A service-router route's rules
        (`ex.rules`, route_rules.py) may allow more, or fewer, than the host's."""
        ex = self.queue[0] if self.queue else None
        if ex is None or ex.answered or ex.replay is None:
            return False
        rules = ex.rules
        if rules is None:
            if ex.retries >= MAX_RETRIES or not (ex.idempotent or unreached):
                return False
            if status and status not in codec.RETRY_STATUSES:
                return False
        elif not rules.may_retry(ex.retries, MAX_RETRIES, ex.idempotent or unreached, status,
                                 lost):  # fmt: skip
            return False
        host = self.host
        if not host.pooled:
            return False
        deadlines = self.deadlines  # the request's deadline, once it went whole (inf: none)
        left = deadlines.deadline - self.loop.time() if deadlines.timed is ex else inf
        wait = delay_s(ex.retries + 1, random(), left, at_once=unreached and host.elsewhere(ex))
        if wait is None:  # no time for it: the answer it has stands
            host.http_event("retry_past_deadline")
            return False
        if wait and self._client_ended:  # its client ended its side: gone (`_client_end`),
            host.http_event("retry_dropped")  # or it half-closed and reads this answer
            return False
        if not host.may_retry():
            return False
        # an answer below 500 (a route's 409) says nothing against its instance
        self._forget_app(abort=True, failed=not 0 < status < 500)
        ex.retries += 1
        ex.sent, ex.out = False, list(ex.replay)
        if not wait:
            self.pump()
            return True
        host.http_event("retry_backoff")
        self._connecting = True  # (`_connect`: nothing goes until the wait is over)
        self._backoff = self.loop.call_later(wait, self._backed_off)
        return True

    def _backed_off(self) -> None:
        self._backoff, self._connecting = None, False
        self.pump()

    def _client_end(self) -> None:
        """A client that ends its side while its request waits out a retry's back-off has
        gone (a client that gives up closes its connection, and Envoy takes a client's FIN
        for its going): the retry is dropped and the session closed, rather than tries
        going on for nobody, spending the app's time and the retry budget."""
        if self._backoff is not None and not self.requests.in_message:
            self._client_ended = True
            self.close()  # (which drops the retry)
            return
        super()._client_end()

    def _drop_backoff(self) -> None:
        """The session closes: a retry waiting its back-off is dropped (the timer let go of,
        and with it the session)."""
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff, self._connecting = None, False
            self.host.http_event("retry_dropped")

    def _app_gone(self, *, lost: bool) -> None:
        """The app connection ended (`lost`: reset, cut, or a TLS end with no close_notify)."""
        if self.app is None or self.tunnel is not None:
            return
        early = self.queue[0].early if self.queue else None
        if early is not None:  # answered early, then closed: the request's rest has nowhere to go
            self._forget_app(status=early[0])
            self.finish(early[0])
            self.close()
            return
        unreached = self.app.unreached()  # the far sidecar's word: its app was not reached
        complete = self._reply is None or self._reply.ended_by_close(lost=lost)
        self._forget_app(failed=not complete)
        if not complete and not self.retry(unreached=unreached, lost=True):
            self.fail(503 if unreached else 502)

    def _use_app(self, app: Side) -> None:
        """Serve the oldest request with `app` (http1.py: its answer parser is the session's)."""
        raise NotImplementedError

    def finish(self, status: int) -> None:
        raise NotImplementedError
