"""The client's side of the inbound HTTP path: requests parsed, limited and decided.

One `Requests` per client connection (httptools' request parser keeps
state between requests). A request's head is counted as it arrives (more
than `max_header_bytes` -> 431; so are reads that complete nothing, since
httptools gathers a field's value whole) and must be complete within
`headers_timeout_s` of its first byte, or of the connection (slowloris ->
408). An upgrade other than WebSocket is taken out of the request, which
goes on as a plain one, and CONNECT gets `501` (http_upgrade.py). The
target is normalized (http_target.py: what is judged is what the app gets;
one that is no path gets `400`). What the app could read otherwise than
the proxy is refused: HTTP/0.9, an HTTP/1.1 request without a Host or
with two, a Host that is no host and port, an HTTP/1.0 request with a
Transfer-Encoding (`400`), a transfer coding besides `chunked` (`501`,
RFC 9112 §6.1). A client's
X-Forwarded-Client-Cert is dropped; on the inbound sidecar the caller's
verified one is added (xfcc.py), and no Connection field may name it, nor
the body's framing or Host, to the next hop (`Connection:
X-Forwarded-Client-Cert` had an app, or a proxy in front of it, drop the
caller's name). On an HTTP upstream's pooled hop the
hop-by-hop fields go, but an HTTP/1.0 client's keep-alive is said again
(`Connection: keep-alive`), for the far sidecar and the app to keep theirs. A complete head is
decided by the intentions (`HttpHost.decide_request`, which builds the
`HttpRequest` only when an L7 rule applies) and handed to the session as
an `Exchange`; any llhttp error is a 400. The session then answers,
forwards or queues it (http1.py). What follows a request that said
`Connection: close` is not read: that request is answered, then the
connection closed.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import httptools

from gossamer.intentions.model import HttpRequest
from gossamer.proxy import http_codec as codec
from gossamer.proxy import http_target, http_upgrade

if TYPE_CHECKING:
    from gossamer.proxy.http1 import HttpSession


class _Reject(Exception):
    """The client's request cannot go on: answer `status` and close."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Framed:
    """The callbacks of a parser that first reads the body of a request whose head was
    parsed already, framed by a head made for it (`Requests.body_framing`) that the
    callbacks skip, then the requests after it as any parser does."""

    __slots__ = ("head", "r")

    def __init__(self, requests: Requests) -> None:
        self.r = requests
        self.head = True  # the made-up head is being read: not the client's

    def on_message_begin(self) -> None:
        if not self.head:
            self.r.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self.head:
            self.r.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head:
            self.r.on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.head:
            self.head = False
        else:
            self.r.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.r.on_body(body)

    def on_message_complete(self) -> None:
        self.r.on_message_complete()


def body_framing(chunked: bool, length: int, keep_alive: bool) -> bytes:
    """A head that frames a body as the client's head did (for a parser that reads only the
    body): chunked, or `length` bytes, with the client's keep-alive (HTTP/1.1's way of
    saying it whatever the client's version: an HTTP/1.0 request's keep-alive holds)."""
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % length
    close = b"" if keep_alive else b"Connection: close\r\n"
    return b"POST / HTTP/1.1\r\nHost: x\r\n%s\r\n%s\r\n" % (framing, close)


class Requests:
    """Parses one client connection's requests and hands each to its session."""

    __deletable__ = ("parser", "s")  # http_joint.unlink deletes them (mypyc: declared)

    def __init__(self, session: HttpSession) -> None:
        self.s = session
        self.parser = httptools.HttpRequestParser(self)
        self.in_message = False  # a request has begun and is not complete
        self.current: codec.Exchange | None = None  # that request, once its head is queued
        # The last complete request said close (or was HTTP/1.0): it is answered, then the
        # connection closes, and nothing the client sent after it is read (RFC 9112 §9.6).
        self.said_close = False
        self._url = bytearray()
        self._head: list[bytes] = []  # flat, http_codec.add_header
        self._head_bytes = 0
        self._head_end = 0
        self._length = -1  # the body's Content-Length, once asked (`body_left`) ...
        self._length_of: codec.Exchange | None = None  # ... of this request
        self._body_got = 0  # the bytes of the body being read so far
        # Bytes that moved no request on (no head complete, no body, no end) are bounded as
        # a head is: a field's value arriving without end is gathered whole by httptools.
        self._moved = 0  # such events so far
        self._stalled = 0  # bytes fed since the last
        # The request just parsed offered an upgrade that was taken out (http_upgrade.py):
        # llhttp still stops after it, as after any upgrade request.
        self._upgrade_ignored = False
        # ... and it has a body, which llhttp skips after an upgrade request (httptools tells
        # it no body follows one): the head that frames it for a fresh parser.
        self._framing: bytes | None = None
        self._timeout = session.host.headers_timeout_s
        self._limit = session.host.max_header_bytes
        self._loop = session.loop
        # When the head being read began (the connection, then each request's first byte);
        # None between requests. One timer, re-armed when it fires early (not per request).
        self._head_since: float | None = self._loop.time()
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(
            self._head_since + self._timeout, self._late
        )

    def feed(self, data: bytes | memoryview) -> None:
        """`data`: a read, or a slice of one (http_joint.py `_feed`)."""
        if self.said_close:
            return
        moved = self._moved
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as up:
            offset = int(up.args[0]) if up.args else len(data)
            if self._upgrade_ignored:  # llhttp stops after it all the same: a fresh parser
                self._upgrade_ignored = False  # reads the requests that follow
                framing, self._framing = self._framing, None
                if framing is None:
                    self.parser = httptools.HttpRequestParser(self)
                else:  # its body first, as the body: never read as the next request
                    self.parser = httptools.HttpRequestParser(_Framed(self))
                    self.parser.feed_data(framing)
                self.feed(data[offset:])
                return
            self.s.upgrading(bytes(data[offset:]))
            return
        except httptools.HttpParserError as exc:
            if self.said_close:  # llhttp refuses data after `Connection: close`: dropped
                return
            cause = exc.__context__
            self.s.client_fault(cause.status if isinstance(cause, _Reject) else 400)
            return
        if self._moved != moved:
            self._stalled = 0
            return
        self._stalled += len(data)  # all of it into a head (or trailer fields) not complete,
        if self._stalled > self._limit:  # whose field httptools gathers without bound
            self.s.client_fault(431)

    def body_left(self) -> int:
        """What is still to come of the body being read when its head gave its length, else
        0 (none is being read, or it is chunked): bytes that are no request's head, which the
        session may feed whole (http_joint.py `_feed`)."""
        current = self.current
        if not self.in_message or current is None:
            return 0
        if self._length_of is not current:
            self._length_of, self._length = current, codec.content_length(self._head)
        return self._length - self._body_got if self._length > 0 else 0

    def stop(self) -> None:
        self._head_since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _late(self) -> None:
        self._timer = None
        since = self._head_since
        if since is None:
            return  # no head being read: the next one arms the timer again
        due = since + self._timeout
        if due > self._loop.time():  # a later head than the one the timer was set for
            self._timer = self._loop.call_at(due, self._late)
            return
        self.s.headers_late()

    def on_message_begin(self) -> None:
        self.in_message = True
        self.current = None
        self._url.clear()
        self._head = []
        self._head_bytes = 0
        self._body_got = 0
        self._head_since = now = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._timeout, self._late)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head += (name, codec.SEP, value, codec.CRLF)  # codec.add_header, without a call
        self._head_bytes += len(name) + len(value) + 4  # _count's, without a call per header
        if self._head_bytes > self._limit:
            raise _Reject(431)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._limit:
            raise _Reject(431)

    def on_headers_complete(self) -> None:
        self._moved += 1
        self._head_end = len(self._head)  # what llhttp reports after it are trailer fields
        self._head_since = None  # the timer, if armed, finds nothing to time and lapses
        parser, head, url = self.parser, self._head, bytes(self._url)
        method = parser.get_method().decode("latin-1")
        facts = codec.head_facts(head)
        upgrade = parser.should_upgrade()
        if upgrade or facts & codec.UPGRADE:
            if method == "CONNECT":
                raise _Reject(501)  # a tunnel to wherever the client names: `tcp`, not L7
            if not http_upgrade.passes(head):  # h2c and the rest: a plain request
                head = http_upgrade.without_upgrade(head)
                self._upgrade_ignored, upgrade = upgrade, False
                length = codec.content_length(head)
                if self._upgrade_ignored and (facts & codec.CHUNKED or length > 0):
                    self._framing = body_framing(bool(facts & codec.CHUNKED), length,
                                                 parser.should_keep_alive())  # fmt: skip
        if facts & (codec.TWO_HOSTS | codec.CODED):  # read one way here, another by the app
            raise _Reject(400 if facts & codec.TWO_HOSTS else 501)
        version = parser.get_http_version()
        if version != "1.1":
            if version != "1.0":
                raise _Reject(400)  # HTTP/0.9: no head to judge or re-write
            if facts & (codec.CHUNKED | codec.CODED):  # no transfer codings in HTTP/1.0:
                raise _Reject(400)  # its framing is faulty (RFC 9112 §6.1), as nginx has it
        if url == b"*" and method != "OPTIONS":
            raise _Reject(400)  # the asterisk-form is OPTIONS's only (RFC 9110 §7.1)
        try:
            url, authority = http_target.normalize(url)  # judged and sent on as normalized
        except http_target.BadTarget:
            raise _Reject(400) from None
        if authority is not None:
            head = http_target.with_host(head, authority)
        elif version == "1.1" and not facts & codec.HOST:
            raise _Reject(400)  # RFC 9112 §3.2: a server MUST
        elif facts & codec.HOST and not http_target.valid_host(http_target.host_of(head)):
            raise _Reject(400)  # `Host: s/admin`: another site, or path, to whoever splits it
        if facts & codec.XFCC:  # only the inbound sidecar says who called
            head = codec.without(head, codec.XFCC_NAMES)
        if facts & codec.HOP:  # naming what goes on, or the caller's name, as hop-by-hop
            head = codec.connection_unnaming(head, codec.NEVER_HOP)
        if self.s.xfcc:
            head += (codec.XFCC_NAME, codec.SEP, self.s.xfcc, codec.CRLF)
            self._head_end = len(self._head)  # trailer fields come after what it had

        fields = head  # as decided (`head` may lose its hop-by-hop fields below)

        def built() -> HttpRequest:  # only when an L7 rule applies (decide_request)
            return codec.judged_request(method, url.decode("latin-1"), codec.pairs(fields))

        request_of = built
        if upgrade:  # built once, and kept: a policy change decides it again (no request follows)
            request = built()
            request_of = lambda: request  # noqa: E731
        decision = self.s.host.decide_request(self.s.source, request_of)
        ex = codec.Exchange(method, url, parser.should_keep_alive(), bool(facts & codec.CHUNKED),
                            decision, time.perf_counter(), upgrade)  # fmt: skip
        ex.expect_continue = bool(facts & codec.EXPECT)
        ex.request_of = request_of  # a policy change while it is in flight decides it again
        ex.http10 = version == "1.0"
        if ex.allowed:
            if facts & codec.HOP and self.s.host.pooled and not ex.upgrade:  # the hop stays open
                head = codec.end_to_end(head)
                if ex.http10 and ex.keep_alive:  # said only in a hop-by-hop field: said again,
                    head = [*head, *codec.KEEP_ALIVE]  # or the far sidecar and the app close
            ex.out.append(codec.request_head(method, url, version, head))
            if self.s.host.pooled and not ex.upgrade:  # it may be sent again elsewhere
                ex.replay = list(ex.out)
                ex.idempotent = method in codec.IDEMPOTENT
        self.current = ex
        self.s.admit(ex)

    def on_body(self, body: bytes) -> None:
        self._moved += 1
        self._body_got += len(body)
        self.s.body(body)

    def on_message_complete(self) -> None:
        if self._framing is not None:  # llhttp's end of a head whose body it would skip: the
            return  # request ends with its body, read by the next parser (`feed`)
        self._moved += 1
        self.in_message = False
        self.current = None
        self.said_close = not self.parser.should_keep_alive()
        head, end = self._head, self._head_end
        # trailer fields as they came, but a caller's name: only the sidecar may give one
        trailers = codec.without(head[end:], codec.XFCC_NAMES) if len(head) > end else []
        self.s.request_complete(trailers)
