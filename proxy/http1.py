"""The HTTP/1.1 path: each request parsed, decided, forwarded; each answer parsed back.

One `HttpSession` per client connection, served by an `HttpHost`: inbound (an mTLS
peer; one keep-alive connection to the local app, each request decided with the L7
permissions: denied -> `403 RBAC: access denied`, the connection kept) or an HTTP
upstream (a local client; each request borrows a pooled mTLS connection, http_upstream.py).
A request goes on re-serialized (http_codec.py) once its head parsed (http_request.py),
its body streamed (until the app connection is there, at most HELD_BODY of it is kept and
the client is not read past that); pipelined requests wait in order behind the one in
flight, and each goes on once the one before it is answered (`pump`).
The answer is parsed too (http_reply.py): garbled or none -> `502`.
`Expect: 100-continue`, interim answers pass; a `101` joins the connections byte for byte;
a HEAD answer ends at its head (a fresh answer parser takes the next: http_reply.py).
Bad input (llhttp error 400, big head 431, slow head 408) is answered, then closed (linger.py).
The app connection (taken from a pool, opened, given back, lost) and the retries of a
request whose connection failed are http_app_link.py's; a request is kept for them (`_to_app`)
while its body is at most KEPT_BODY (Linkerd keeps 64 KiB). A try that goes silent
(http_deadlines.py) is retried too, else answered `504`, as is a request out of its time
(retries included); a client connection idle between requests is closed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from gossamer.proxy import http_codec as codec
from gossamer.proxy.http_app_link import HttpAppLink
from gossamer.proxy.http_deadlines import Deadlines
from gossamer.proxy.http_joint import HELD_BODY, unlink
from gossamer.proxy.http_reply import Reply
from gossamer.proxy.http_request import Requests
from gossamer.proxy.linger import linger as lingering
from gossamer.proxy.relay import Relay
from gossamer.proxy.side import Side

if TYPE_CHECKING:
    from gossamer.intentions.model import HttpRequest
    from gossamer.proxy.http_host import HttpHost

KEPT_BODY: Final = 64 * 1024  # body bytes kept to send a request again (a longer one is not)


class HttpSession(HttpAppLink):
    """One client connection on the HTTP path."""

    def __init__(self, host: HttpHost, client: Side, source: str, xfcc: bytes = b"") -> None:
        self.host, self.client, self.source = host, client, source
        self.xfcc = xfcc  # X-Forwarded-Client-Cert for each request (inbound: xfcc.py)
        self.loop = asyncio.get_running_loop()  # once: each call is a getpid() system call
        self.app: Side | None = None
        self.tunnel: Relay | None = None
        self.tunneled: Callable[[], HttpRequest] | None = None  # `tunnel`'s upgrade request
        self.queue: deque[codec.Exchange] = deque()
        self.started = time.monotonic()
        self._moved = [0, 0]  # plaintext bytes from the client, from the app (the edge's bytes)
        self.closed = self._connecting = False
        self._opening: asyncio.Task[None] | None = None
        self._backoff: asyncio.TimerHandle | None = None  # a retry waiting (http_app_link.py)
        self.requests = Requests(self)
        self._reply: Reply | None = None  # the app connection's answer parser, once it has one
        self._held: list[bytes] | None = None  # after an Upgrade request: raw bytes for the app
        self._client_ended = False
        self._unsent = 0  # body bytes waiting for the app connection (past HELD_BODY: not read)
        self._rest: list[bytes] | None = None  # a read's bytes not yet parsed (`_feed`)
        self._rest_at, self._rest_eof, self._ahead, self._feeding = 0, False, 0, False
        self.deadlines = Deadlines(self, host.limits)

    def start(self) -> None:
        """Take over the client's connection (and what it sent during the handshake)."""
        self.client.relay = self
        self.client.joined()

    # the client's requests (parsed by Requests)
    def admit(self, ex: codec.Exchange) -> None:
        """A request whose head is complete (and decided): queue it, move the oldest on."""
        self.queue.append(ex)
        if len(self.queue) > 1:
            self.client.pause_reading()
        self.pump()

    def body(self, data: bytes) -> None:
        ex = self.queue[-1]
        if ex.allowed:
            self._to_app(ex, codec.chunk(data) if ex.chunked else data)

    def request_complete(self, trailers: list[bytes]) -> None:
        ex = self.queue[-1]
        ex.complete = True
        if self.client.full:  # read on while it sent its body; its next request waits for room
            self.client.pause_reading()
        if ex.allowed and ex.chunked:
            self._to_app(ex, codec.last_chunk(trailers))  # (kept too: a retry sends it)
        if ex is self.queue[0]:
            if ex.early is not None:  # answered before its end: the exchange ends now
                self.answer_ended(*ex.early)
                return
            if ex.sent:
                self.deadlines.sent(complete=True)  # the request timeout runs from here
            self.pump()

    def upgrading(self, rest: bytes) -> None:
        """An Upgrade request: hold what follows its head until the app answers."""
        self._held = [rest] if rest else []
        self.client.pause_reading()

    def _to_app(self, ex: codec.Exchange, data: bytes) -> None:
        replay = ex.replay
        if replay is not None:  # kept for a retry, up to KEPT_BODY
            ex.kept += len(data)
            if ex.kept > KEPT_BODY:
                ex.replay = None
            else:
                replay.append(data)
        if ex.sent and self.app is not None:
            self.app.send(data)
            return
        ex.out.append(data)
        unsent = self._unsent + len(data)  # a count, not a sum of ex.out: tiny chunks stay linear
        if self._unsent <= HELD_BODY < unsent:
            self.client.pause_reading()
        self._unsent = unsent

    def pump(self) -> None:
        """Move the oldest request on: answer a denied one, or send an allowed one to the app."""
        while self.queue and not self.closed:
            ex = self.queue[0]
            if ex.fault:  # the client broke it: its turn has come
                self.fail(ex.fault, linger=ex.fault != 408)
                return
            if not ex.allowed:
                if not (ex.complete or ex.expect_continue or ex.upgrade) or self.client.full:
                    return  # (a full client: answered once it has room, `resumed`)
                closing = ex.expect_continue or ex.upgrade or not ex.keep_alive
                status, body = self.host.refusal  # (inbound: 403; an exposed path's: 404)
                self.answer_here(codec.local_response(status, body, close=closing,
                                                      bodiless=ex.method == "HEAD"))  # fmt: skip
                self.finish(status)
                continue
            if ex.sent:
                return
            if self.app is None:
                self._connect()
                return
            ex.sent = True
            self.deadlines.sent(complete=ex.complete)
            held, self._unsent = self._unsent > HELD_BODY, 0
            if held and self.may_read_client():  # before the send: an app that fills up
                self.client.resume_reading()  # pauses the client again
            if ex.out:  # a head and what came of the body with it: one write
                self.app.send(ex.out[0] if len(ex.out) == 1 else b"".join(ex.out))
                ex.out.clear()
            return

    def _use_app(self, app: Side) -> None:
        self.app = app
        if self.closed:
            self._forget_app(abort=True)
            return
        reply = app.parser  # a pooled connection's, kept: no new parser<->Reply cycle a request
        if not (isinstance(reply, Reply) and reply.rebind(self)):
            reply = app.parser = Reply(self)
        self._reply = reply
        app.index, app.relay = 1, self
        if app.full:  # a pooled connection whose writing is full (no credit): no edge is due
            self.client.pause_reading()
        app.joined()
        self.pump()

    def answered(self, data: bytes, *, final: bool) -> None:
        """A response head (interim or final) for the oldest request."""
        self.client.send(data)
        if final:  # no retry now: what was kept for one goes (a slow answer held it)
            ex = self.queue[0]
            ex.answered, ex.replay = True, None

    def answer_ended(self, status: int, keep: bool) -> None:
        """The app's answer to the oldest request ended (`keep`: its connection may serve on).
        An early one waits for the request's end: the rest of its body goes on to this app."""
        ex = self.queue[0] if self.queue else None
        if ex is not None and ex.answered and ex.sent and not ex.complete:
            ex.early = (status, keep)
            return
        if keep:
            self.reusable(status)  # before the next request is moved on: it may take another
        if ex is not None and ex.answered:
            self.finish(status)
        if not keep:
            self.drop_app(status)  # and the next request goes on a new connection
        else:
            self.pump()  # a request pipelined behind this one goes on

    def finish(self, status: int) -> None:
        """The oldest request has its whole answer: record it, then move on."""
        ex = self.queue.popleft()
        self._record(ex, status)
        if (
            not ex.keep_alive
            or (ex.upgrade and status != 101)
            or (ex.expect_continue and (status == 403 or not ex.allowed))
        ):
            self.close()
            return
        if self.may_read_client():
            self.client.resume_reading()
        if not self.queue:
            if self._client_ended and status != 101:  # (a tunnel carries it)
                self.close()
                return
            self.deadlines.answered()
        if self._rest is not None and len(self.queue) <= 1:
            self._feed()  # the rest of a read, parsed as far as a bound ahead again

    def bytes_each_way(self) -> tuple[int, int]:
        """The edge's bytes: those parsed, then a tunnel's (a WebSocket's after its 101)."""
        sent, back = self._moved
        if self.tunnel is not None:
            more, more_back = self.tunnel.bytes_each_way()
            return sent + more, back + more_back
        return sent, back

    def upgraded(self, rest: bytes) -> None:
        """The app answered 101: join the two connections byte for byte."""
        app, held = self.app, self._held or []
        if app is None:
            return
        self.tunneled = self.queue[0].request_of  # what a policy change decides again
        self.finish(101)
        if self.closed:
            return
        if rest:
            self.client.send(rest)
        for data in held:
            app.send(data)
        self._held = None
        self.tunnel = Relay(self.client, app, lambda _: self.close())
        self.deadlines.tunneled()  # its quiet is bounded by the idle limit (http_deadlines.py)
        if self._client_ended:  # it ended its side while the 101 was awaited: the app is told
            self.tunnel.ended(self.client)

    def wind_down(self) -> None:
        """The host drains: closed now if between requests, else after the answer under way
        (which says `Connection: close`: http_reply.py), so the drain need not wait for a
        keep-alive client to go idle, nor cut it mid-request at its timeout. A connection
        that has sent nothing yet is not between requests: its first one is on the way (a
        new connection, which no client sends again), and is answered, then closed. A
        client sidecar's pooled stream is told that nothing sent on it from now on reaches
        the app (RESET BETWEEN): a request it has just lent that stream for, crossing
        this close, goes to another instance (`close_between`)."""
        idle = not self.queue and not self.requests.in_message and self.tunnel is None
        if idle and self._moved[0]:
            self.close_between()

    def close_between(self) -> None:
        """Closed with no request under way (draining, or idle past the client-idle limit):
        a client sidecar's pooled stream is told first that nothing sent on it from now on
        reaches the app (RESET BETWEEN; a plain connection cannot say it: just closed),
        so a request it lends the stream for as the close crosses it goes elsewhere, POST
        or not, instead of ending in a 502. (A client idle in the middle of a request head
        is only closed: it is read on for a while, linger.py.)"""
        if not self.requests.in_message:
            self.client.say_unreached(between=True)
        self.close()

    def _record_cut(self) -> None:
        """Requests the connection's end leaves without a whole answer still count, as Envoy
        counts a client gone or an app cut off mid-answer: with the status of an answer
        that began (its head went to the client), else none (0). They were dropped
        uncounted (found by the metrics walkthrough)."""
        reply = self._reply
        for ex in self.queue:
            status = 0
            if ex.early is not None:
                status = ex.early[0]
            elif ex.answered and reply is not None and hasattr(reply, "parser"):
                status = reply.parser.get_status_code()
            self._record(ex, status)
        self.queue.clear()

    def headers_late(self) -> None:
        if not self.closed and self._held is None:
            self.client_fault(408)  # too slow with its head to be given more time

    def close(self, *, abort: bool = False, linger: bool = True) -> None:
        """`linger`: a client cut off inside a request may still be sending it, so it is read
        on for a while first (linger.py)."""
        if self.closed:
            return
        self.closed = True
        self._rest = None
        self.requests.stop()
        self.deadlines.stop()
        if self._backoff is not None:
            self._drop_backoff()
        if abort:
            self.reset_if_cut()  # (before the queue goes)
        if self.queue:
            self._record_cut()
        if self.tunnel is not None and abort:
            self.tunnel.terminate()
        self._forget_app(abort=True)
        mid_request = self.requests.in_message and self.tunnel is None
        if linger and mid_request and not (abort or self._client_ended):
            lingering(self.client)  # a close with its bytes unread would reset the answer
        else:
            self.client.close(abort=abort)
        self.host.http_closed(self)
        if not self.loop.is_closed():  # closed at exit: nothing left to free early
            self.loop.call_soon(unlink, self, self.host.pooled)
