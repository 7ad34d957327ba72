"""The app's side of the inbound HTTP path: its answers parsed and passed to the client.

One `Reply` per app connection (httptools' response parser keeps state
between answers); a pooled connection keeps its `Reply` from one borrowing
session to the next (`rebind`), only between two answers of a parser in a
sound state. A final answer's head goes to the client once parsed
(re-serialized, http_codec.py), its body framed as it came (a chunked
one with its trailer fields); interim answers (`100 Continue`) pass
through without ending the request (one that says a body follows is
garbage: none may); a 204 or 304 ends at its head, whatever its framing
says; a `101` to an upgrade request hands
the connections over to a byte relay (`HttpSession.upgraded`), and to any
other is refused like garbage; a HEAD answer ends at its head (a fresh
parser takes the next answer: the app connection serves on). An HTTP/1.0
client kept alive is told so in each answer (`Connection: keep-alive`),
as it keeps its connection only then. Anything
llhttp cannot parse, and more bytes than a request's head may have
(`max_header_bytes`) that move no answer on (a head or trailer fields
without end: llhttp sets no bound), is retried under the session's rules,
else a 502 (or a cut once the answer began). Bytes in the read that ended
an answer, past its end, answer nothing (the next request goes to the app
only once that answer ended): the answer ends as one that said close, so
they go with the app connection and reach no client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import httptools

from gossamer.proxy import http_codec as codec

if TYPE_CHECKING:
    from gossamer.proxy.http1 import HttpSession

# A body with more than this left to come once its head is parsed goes on past the parser: it
# is counted off here and each read passed on as it came, not copied by llhttp's callback.
PAST_PARSER: Final = 64 * 1024


class UnaskedSwitch(Exception):
    """A `101` to a request that offered no upgrade (or one taken out, http_upgrade.py)."""


class InterimBody(Exception):
    """A `1xx` that says a body follows it: none may (RFC 9110 §15.2)."""


class Unasked(Exception):
    """Another answer begun in the read that ended one: no request was waiting for it (the
    next request goes to the app only once the answer before it has ended)."""


class BadStatus(Exception):
    """A status outside 100-599 (RFC 9110 §15): no client knows what it says."""


class Reply:
    """Parses the app's answers on one app connection and passes them to the client."""

    __deletable__ = ("parser",)  # http_joint.unlink deletes it (mypyc: declared)

    def __init__(self, session: HttpSession) -> None:
        self.s = session
        self.parser = httptools.HttpResponseParser(self)
        self._reason = bytearray()
        self._head: list[bytes] = []  # flat, http_codec.add_header
        self._head_end = 0  # where the head ends in _head; trailer fields follow
        self._chunked = False
        self._interim = False
        self._until_close = False  # neither length nor chunks: the body ends when the app closes
        self.dead = False  # the session has let go of this app connection
        self._between = True  # no answer begun since the last one ended
        self._broken = False  # llhttp refused the stream (or it was upgraded)
        self._left = 0  # body bytes still to come of an answer with a Content-Length
        self._past = False  # they are counted here, not by the parser (PAST_PARSER)
        # Bytes that moved no answer on (no head complete, no body, no end): what llhttp
        # gathers into a head or trailer fields, bounded as a request's (max_header_bytes).
        self._moved = 0  # such events so far
        self._stalled = 0  # bytes fed since the last
        # A final answer that ended in the read being fed: (status, keep-alive), told to the
        # session once the read is parsed, so that bytes after it in the same read (an answer
        # nobody asked for) are seen before the next request is sent on this connection.
        self._ending: tuple[int, bool] | None = None
        self._headed = False  # ... and it answered HEAD: the parser waits for a body it has not

    def rebind(self, session: HttpSession) -> bool:
        """Serve `session` now (a pooled connection borrowed again); False when this parser
        is mid-answer or broken, and the connection needs a fresh one."""
        if not self._between or self._broken:
            return False
        self.s, self.dead = session, False
        return True

    def let_go(self, session: object) -> None:
        """`session` stops listening (unless the parser serves another session by now: only
        who it serves is compared, so the session's app-connection half may call it too)."""
        if self.s is session:
            self.dead = True

    def feed(self, data: bytes) -> None:
        s = self.s
        if self.dead:
            return
        if self._past:
            self._body_past(data)
            return
        if not s.queue:
            s.drop_app()  # an answer nobody asked for
            return
        moved = self._moved
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as up:
            self._broken = True
            offset = int(up.args[0]) if up.args else len(data)
            s.upgraded(data[offset:])
            return
        except httptools.HttpParserError:  # sent again elsewhere, else 502 (cut once answered)
            if self._ending is not None:  # past a whole answer: the answer ends, the app goes
                self._end(unasked=True)
                return
            self._refused()
            return
        if self._moved == moved:  # all of it into a head or trailer fields, not complete
            self._stalled += len(data)
            if self._stalled > s.host.max_header_bytes:  # llhttp (httptools) keeps it all
                self._refused()
                return
        else:
            self._stalled = 0
            ending = self._ending
            if ending is not None:  # (`_end`, without a call on every answer)
                self._ending = None
                if self._headed:  # a HEAD answer: its parser still waits for a body
                    self._headed = False
                    self.parser = httptools.HttpResponseParser(self)
                self._ended(ending[0], ending[1])
                return
        if self._left > PAST_PARSER and not self.dead:
            self._past = True  # the parser is left mid-body: a new one takes the next answer

    def _refused(self) -> None:
        """An answer that cannot go on: sent again elsewhere, else a 502 (a cut once the
        client has the head of it). Bytes no request was waiting for (past a whole answer)
        cost the app connection only."""
        self._broken = True
        s = self.s
        if self.dead:  # its session let go of it: nobody to answer
            return
        if not (s.queue and s.queue[0].sent):
            s.drop_app()
            return
        if not s.retry():
            if s.queue:
                s.fail(502)
            else:
                s.close(abort=True)

    def _body_past(self, data: bytes) -> None:
        """The rest of a long body, read by read; at its end, the answer's end as the parser
        would have reported it (it still holds the head's status and keep-alive), and what
        follows to a fresh parser."""
        left = self._left
        if len(data) < left:
            self._left = left - len(data)
            self.s.client.send(data)
            return
        self._left, self._past = 0, False
        self.s.client.send(data if len(data) == left else data[:left])
        parser, self.parser = self.parser, httptools.HttpResponseParser(self)
        unasked = len(data) > left  # in the read that ended the answer: nobody asked for it
        self._broken = unasked
        self._ended(parser.get_status_code(), parser.should_keep_alive() and not unasked)

    def _end(self, *, unasked: bool) -> None:
        """The final answer that ended in the read just parsed ends now; `unasked`: bytes
        followed it in that read, which no request was waiting for. They are dropped with
        the app connection (the answer ends as one that said close), and the client's
        connection goes on: its next request goes to a new one."""
        ending, self._ending = self._ending, None
        if ending is None:
            return
        if unasked:
            self._broken = True
        self._ended(ending[0], ending[1] and not unasked)

    def release(self) -> None:
        """Its connection is over, or its session (a connection of its own): the parser lets
        go of this object's callbacks (side.py `drop_parser`, http_joint.unlink)."""
        if hasattr(self, "parser"):
            del self.parser

    def ends_by_close(self) -> bool:
        """The answer under way has neither a length nor chunks: the app's close ends it."""
        return self._until_close

    def ended_by_close(self, *, lost: bool = False) -> bool:
        """The app closed: was that the end of an answer whose length is 'until close'? Not
        when it was `lost` (a reset, a stream's RESET): an answer cut short there is a loss
        for the client too, or it takes the part it got for the whole (a clean close is all
        that ends such an answer); it was passed on as a clean close (found by the flow
        walk: a slow reader cut at db's request timeout got a FIN after 3 of 64 MiB)."""
        if self._until_close and self.s.queue and self.s.queue[0].answered and not lost:
            status = self.parser.get_status_code()
            self.s.drop_app(status)  # first: a pooled connection's host is told its answer
            self.s.finish(status)
            self.s.close()
            return True
        if self.dead:
            return True
        return not (self.s.queue and self.s.queue[0].sent)

    def on_message_begin(self) -> None:
        if self._ending is not None:
            raise Unasked  # begun in the read that ended the last answer
        self._between = False
        self._left = 0
        self._reason.clear()
        self._head = []

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head += (name, codec.SEP, value, codec.CRLF)  # codec.add_header, without a call

    def on_headers_complete(self) -> None:
        self._moved += 1
        self._head_end = len(self._head)  # what llhttp reports after it are trailer fields
        if self.dead or not self.s.queue:
            return
        status = self.parser.get_status_code()
        if not 100 <= status <= 599:
            raise BadStatus(status)
        if status == 101 and not self.s.queue[0].upgrade:
            raise UnaskedSwitch  # a tunnel the request did not ask for: 502
        ex = self.s.queue[0]
        rules = ex.rules  # a service-router route's (route_rules.py), else None
        retried = status in codec.RETRY_STATUSES or (rules is not None and status >= 200)
        if retried and self.s.retry(status=status):
            return  # sent again elsewhere; this connection is dropped with what follows
        self._interim = interim = 100 <= status < 200 and status != 101
        facts = codec.head_facts(self._head)
        headed = not interim and ex.method == "HEAD"  # its head is all of it (RFC 9110 §9.3.2)
        # whatever the head says (RFC 9112 §6.3)
        bodiless = interim or headed or status in (101, 204, 304)
        if interim and (facts & codec.CHUNKED or codec.content_length(self._head) > 0):
            raise InterimBody  # what llhttp would read as its body, a client as the next answer
        self._chunked = bool(facts & codec.CHUNKED) and not bodiless
        self._until_close = not (self._chunked or bodiless or facts & codec.LENGTH)
        head = self._head if rules is None or interim else rules.answer_head(self._head)
        # The app keeps its connection after this answer (llhttp reads one to HEAD with no
        # length as running to the close: it was not told the request was HEAD).
        keep = codec.keeps_alive(self.parser.get_http_version(), head) if headed else None
        if self.s.host.draining and not self._interim and status != 101:  # (wind_down)
            ex.keep_alive = False  # the client is told, so it sends its next request elsewhere
        # An HTTP/1.0 client whose connection stays open after this answer is told so: it
        # keeps its connection only when the answer says keep-alive.
        kept10 = ex.http10 and ex.keep_alive and not (interim or self._until_close)
        if not ex.keep_alive and (self.s.host.pooled or self.s.host.draining):
            head = [*codec.end_to_end(head), *codec.CONNECTION_CLOSE]  # the client's close
        else:
            if facts & codec.HOP:
                app_keeps = self.parser.should_keep_alive() if keep is None else keep
                if status != 101 and not app_keeps:
                    head = codec.end_to_end(head)  # the app's close ends its hop, not the client's
                else:
                    kept10 = False  # the app's own Connection field goes on, keep-alive in it
            if kept10:
                head = [*head, *codec.KEEP_ALIVE]
        self.s.answered(codec.response_head(status, bytes(self._reason), head),
                        final=not self._interim)  # fmt: skip
        if keep is not None:  # a HEAD answer ends at its head, once the read is parsed
            # (`feed`); httptools cannot be told no body follows, so a fresh parser takes the
            # next answer, and a byte after the head in this read answers nothing
            self._headed = True
            self._ending = (status, keep)
        elif facts & codec.LENGTH and not (self._chunked or bodiless):
            self._left = codec.content_length(self._head)

    def on_body(self, body: bytes) -> None:
        if self._ending is not None:
            raise Unasked  # a body after a HEAD answer's head: it has none
        self._moved += 1
        self._left -= len(body)
        if self.dead:
            return
        self.s.client.send(codec.chunk(body) if self._chunked else body)

    def on_message_complete(self) -> None:
        self._moved += 1
        self._left = 0
        parser = self.parser
        status = parser.get_status_code()
        if self._interim or status == 101 or self.dead:
            self._ended(status, parser.should_keep_alive())  # (which tells nobody)
        else:  # told once the read is parsed (`_end`)
            self._ending = (status, parser.should_keep_alive())

    def _ended(self, status: int, keep: bool) -> None:
        self._between = True
        if self.dead or self._interim or status == 101:
            return
        if self._chunked:
            self.s.client.send(codec.last_chunk(self._head[self._head_end :]))
        self.s.answer_ended(status, keep)
