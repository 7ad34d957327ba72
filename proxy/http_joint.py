"""Where the HTTP path's bytes go: the `HttpSession` (http1.py) as a `Joint` (side.py).

The client's plaintext feeds its request parser (http_request.py), or waits
after an Upgrade request until the app answers; the app's feeds the answer
parser (http_reply.py), but what an app connection reads after the session
let go of it (its answer ended, or a retry moved on) is passed on to its
new owner (`_pass_on`). The client ending mid-request fails that request
(400); ending between requests closes the connection once the queue is
answered. The app ending or being lost is the session's `_app_gone` (an
answer ended by close, a retry, or a 502). Bytes each way are counted for
the edge's metrics. A request that cannot go on is answered and the
session closed (`fail`; one the client broke, in its turn: `client_fault`);
every request's outcome is recorded in one place (`_record`). The client
is not read while something holds its bytes back (`may_read_client`: a
request queued behind the one in flight, a held body, a full app
connection, its own connection full between requests), nor parsed further
than a bound ahead of the request in flight (a read of tiny pipelined
requests holds thousands: fed in slices, the rest kept, `_feed`), and the answers
given here (403s) wait for room in the client's connection (`pump`,
`resumed`). `HttpSession` is the one subclass: the attributes and methods
declared here are its own (http1.py).
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Final

from gossamer.proxy import http_codec as codec
from gossamer.proxy.side import Joint, Side, reset_at_close

# A request's body bytes kept while its app connection is being made; past this the client
# is not read until the connection takes them (a stream's credit: mux_frames.WINDOW_BYTES).
HELD_BODY: Final = 256 * 1024
# A read of tiny pipelined requests holds thousands (httptools parses all it is fed, and each
# request parsed is an exchange kept until its answer, ~1 KB): a read longer than FEED_SLICE
# is fed a slice at a time, and once more than QUEUED_MAX requests, or AHEAD_MAX bytes of
# them, wait behind the one in flight, the rest of the read is kept and the client not read
# until they are answered (`_feed`): at most QUEUED_MAX and a slice's worth (~150) wait.
# Most reads are one request, or the body of one with a Content-Length (up to its end): fed
# whole as they came; a chunked body read in long reads goes in 4 KiB slices.
FEED_SLICE: Final = 4 * 1024
QUEUED_MAX: Final = 64
AHEAD_MAX: Final = 64 * 1024

if TYPE_CHECKING:
    from gossamer.intentions.model import Decision
    from gossamer.proxy.http_deadlines import Deadlines
    from gossamer.proxy.http_host import HttpHost
    from gossamer.proxy.http_reply import Reply
    from gossamer.proxy.http_request import Requests


class HttpJoint(Joint):
    """The bytes from either side of one HTTP session (module docstring)."""

    host: HttpHost
    source: str  # the client's service
    client: Side
    app: Side | None
    closed: bool
    queue: deque[codec.Exchange]
    requests: Requests
    deadlines: Deadlines
    _reply: Reply | None  # the app connection's answer parser, once it has one
    _moved: list[int]  # plaintext bytes from the client, from the app (the edge's bytes)
    _held: list[bytes] | None  # after an Upgrade request: raw bytes for the app
    _client_ended: bool
    _unsent: int  # body bytes waiting for the app connection (past HELD_BODY: client paused)
    _rest: list[bytes] | None  # the client's bytes read, not yet fed (`_feed`), in order
    _rest_at: int  # how much of _rest[0] was fed
    _rest_eof: bool  # the client ended after them
    _ahead: int  # bytes fed while requests waited behind the one in flight (`_feed`)
    _feeding: bool

    def peer_of(self, side: Side) -> Side:
        return self.app if side is self.client and self.app is not None else self.client

    def paused(self, side: Side) -> None:
        """`side` takes no more for now: what feeds it stops being read. The client too, when
        it is the client and between requests: no more of its requests (their answers would
        pile up); one still sending a body is read on (it may read only once it is sent)."""
        self.peer_of(side).pause_reading()
        if side is self.client and not self.requests.in_message:
            self.client.pause_reading()

    def resumed(self, side: Side) -> None:
        """`side` takes more again (it was paused as any relay's side is: what feeds it stops
        being read). The client: the answers given here that waited for room go now."""
        if side is self.client:
            if self.app is not None:
                self.app.resume_reading()
            self.pump()  # answers given here that waited for room
        if not self.closed and self.may_read_client():
            self.client.resume_reading()

    def may_read_client(self) -> bool:
        """Nothing holds the client's reading back: no request waits behind the one in
        flight, no part of a read waits to be parsed (`_feed`), no body past HELD_BODY waits
        for its connection, no upgrade for its answer, the app connection's writing is not
        full, and the client's is not, between requests.
        (Inside one, a full client is read on: one that reads only once it has sent its whole
        body would wait for ever. The answers given here wait for room, `pump`.)"""
        app = self.app
        return (
            len(self.queue) <= 1
            and self._rest is None
            and self._unsent <= HELD_BODY
            and self._held is None
            and (app is None or not app.full)
            and not (self.client.full and not self.requests.in_message)
        )

    def bytes_each_way(self) -> tuple[int, int]:
        return self._moved[0], self._moved[1]

    def moved_total(self) -> int:
        return self._moved[0] + self._moved[1]

    def answer_here(self, data: bytes) -> None:
        """An answer of the proxy's own (a denial, a 502) to the client: it counts in the
        edge's bytes back, as an app's answer does (the client's sidecar counts it too)."""
        self._moved[1] += len(data)
        self.client.send(data)

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        # What one read brings goes on in one write: from the app, an answer's head and body
        # (or several answers) to the client; from the client, the TLS records of one read
        # (16 KiB each) to the app, which took a write each.
        if side is not self.client:
            to: Side | None = self.client
        else:
            to = self.app if len(chunks) > 1 else None
        held = to is not None and to.hold()
        try:
            self._carry(side, chunks, eof)
        finally:
            if held and to is not None:
                to.flush()

    def _carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        self._moved[side is not self.client] += sum(map(len, chunks))
        if side is self.client:
            fed = 0  # (no chunk is held before one is kept: `_held` stays once set)
            for data in chunks:
                if self._held is not None:
                    self._held.append(data)
                elif self.closed:
                    return
                elif (
                    len(self.queue) <= 1
                    and self._rest is None
                    and (len(data) <= FEED_SLICE or self.requests.body_left() >= len(data))
                ):  # a read's one request, or a few, or a body's bytes: fed as they came
                    self.requests.feed(data)
                    fed += 1
                else:  # a long read, or requests wait already: fed a slice at a time
                    if self._rest is None:
                        self._rest = chunks[fed:]
                    else:  # (in place: `_feed` may be reading it)
                        self._rest += chunks[fed:]
                    self._rest_eof = self._rest_eof or eof
                    self._feed()
                    return
            if eof and not self.closed:
                self._client_end()
        else:
            for i, data in enumerate(chunks):
                # let go of mid-batch (its answer ended, or a retry moved on), or joined to
                # the client byte for byte (a 101): the rest is not an answer's
                if side is not self.app or side.relay is not self:
                    _pass_on(side, chunks[i:], eof)
                    return
                if self._reply is not None:  # set with the app connection (_use_app)
                    self._reply.feed(data)
            if side is not self.app or side.relay is not self:
                _pass_on(side, [], eof)
            elif eof or side.lost:
                self._app_gone(lost=not eof)

    def _client_end(self) -> None:
        self._client_ended = True
        if self.requests.in_message:  # it ended mid-request: that request cannot go on
            self.client_fault(400)
        elif not self.queue:
            self.close()

    def _feed(self) -> None:
        """Feed the client's bytes kept in `_rest` to its request parser a slice at a time,
        until none is left or QUEUED_MAX requests (or AHEAD_MAX bytes of them) wait behind
        the one in flight: then the client is not read, and the rest waits for the queue to
        drain (`finish`). httptools parses all it is fed: its callbacks cannot stop it."""
        if self._feeding:  # (a request answered here while a slice is parsed: `finish`)
            return
        rest, queue = self._rest, self.queue
        if rest is None:
            return
        self._feeding = True
        try:
            while rest and not self.closed:
                if self._held is not None:  # after an Upgrade request: for the app, as it came
                    self._held.append(rest[0][self._rest_at :])
                    self._held += rest[1:]
                    rest.clear()
                    break
                if len(queue) <= 1:
                    self._ahead = 0
                elif len(queue) > QUEUED_MAX or self._ahead > AHEAD_MAX:
                    self.client.pause_reading()
                    return
                data, at = rest[0], self._rest_at
                end = at + max(FEED_SLICE, self.requests.body_left())  # a body's: at once
                if end >= len(data):
                    del rest[0]
                    self._rest_at = 0
                    piece: bytes | memoryview = memoryview(data)[at:] if at else data
                else:
                    self._rest_at = end
                    piece = memoryview(data)[at:end]
                if len(queue) > 1:
                    self._ahead += len(piece)
                self.requests.feed(piece)
        finally:
            self._feeding = False
        self._rest, self._rest_at = None, 0
        if self.closed:
            return
        if self._rest_eof:
            self._rest_eof = False
            self._client_end()
        elif self.may_read_client():
            self.client.resume_reading()

    def side_lost(self, side: Side) -> None:
        if side is self.client:
            self.close(abort=True)
        elif side is self.app:
            self._app_gone(lost=True)

    def fail(self, status: int, body: bytes = b"", *, linger: bool = True) -> None:
        """Answer `status` for the oldest request (unless its answer began) and close
        (`linger`: as `close` says)."""
        if self.closed:
            return
        ex = self.queue[0] if self.queue else None
        if ex is not None and ex.answered:
            self.close(abort=True)
            return
        self.answer_here(
            codec.local_response(
                status, body, close=True, bodiless=ex is not None and ex.method == "HEAD"
            )
        )
        self._record(ex, status)
        if ex is not None:
            self.queue.popleft()  # (counted: the close counts those left, `_record_cut`)
        self.close(linger=linger)

    def reset_if_cut(self) -> None:
        """Closing now with an answer under way whose body only the app's close ends (no
        length, no chunks): the client's connection is reset, as a FIN would end that body
        whole for it (a stream's abort is a RESET already). It was closed with a FIN, and a
        slow reader cut at a timeout took 3 of 64 MiB for the whole answer (found by the
        flow walk)."""
        reply, transport = self._reply, self.client.transport
        if (self.queue and self.queue[0].answered and reply is not None
                and reply.ends_by_close() and transport is not None):  # fmt: skip
            reset_at_close(transport)

    def client_fault(self, status: int) -> None:
        """The request being read cannot go on (malformed, too big, too slow with its head,
        cut short): it is answered `status` in its turn, after the requests before it (a 400
        in place of the answer to one the app is working on would pass for that one's), and
        the connection then closes. Nothing more of the client's is read."""
        if self.closed:
            return
        ex = self.requests.current  # its head was whole: it is queued, the last
        if not self.queue or ex is self.queue[0]:
            self.fail(status, linger=status != 408)  # too slow with its head: no more time
            return
        if ex is None:  # no head yet: a stand-in takes its place in the queue
            ex = codec.Exchange("", b"", False, False, None, time.perf_counter(), False)
            self.queue.append(ex)
        ex.fault, ex.replay = status, None
        ex.out.clear()
        self.requests.said_close = True
        self.requests.stop()

    def withdraw(self, ex: codec.Exchange, decision: Decision) -> None:
        """A request queued, not sent, that the intentions no longer allow: it never goes to
        the app and is answered `403` in its turn, as a request denied on arrival."""
        ex.decision, ex.replay = decision, None
        ex.out.clear()
        if ex is self.queue[0] and len(self.queue) == 1 and self._unsent:
            self._unsent = 0  # its body is now dropped as it comes: read on
            if self.may_read_client():
                self.client.resume_reading()

    def _record(self, ex: codec.Exchange | None, status: int) -> None:
        """The one place a request's outcome is known: status, seconds, route."""
        if ex is None:
            outcome = codec.Outcome(self.source, "", status, 0.0)
        else:
            outcome = codec.Outcome(self.source, ex.route, status, time.perf_counter() - ex.started)
        self.host.http_outcome(outcome)

    def close(self, *, abort: bool = False, linger: bool = True) -> None:
        raise NotImplementedError

    def pump(self) -> None:
        raise NotImplementedError

    def _app_gone(self, *, lost: bool) -> None:
        raise NotImplementedError


def _pass_on(side: Side, rest: list[bytes], eof: bool) -> None:
    """What an app connection read after its session let go of it goes to its new owner (the
    pool's idle state ends it: an idle connection may not speak), or is held while it has
    none. A connection closed by a retry drops it."""
    if (rest or eof) and side.is_open():
        side.deliver(rest, eof)


def unlink(session: HttpJoint, pooled: bool) -> None:
    """Break a closed session's reference cycles, a loop turn after it closed (no parser
    callback runs by then): its parts point back at it and each parser at its callbacks, so
    closed sessions that had lived through a young collection waited for the collector's
    rare full pass, and a sidecar's RSS grew with the new connections it served; compiled,
    the collector never freed them at all. The answer parser of a pooled connection stays
    whole: it serves that connection's next borrower (side.py `drop_parser` breaks it when
    that connection is over)."""
    requests = session.requests
    del requests.parser, requests.s, session.deadlines.s
    reply, session._reply = session._reply, None  # a pooled one still points back: a cycle
    if reply is not None and not pooled:
        reply.release()
