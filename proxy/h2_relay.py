"""The relay of an `http2` or `grpc` connection through an h2c gate, and what it shares
with the followed one (h2_followed.py). Shell.

On the inbound port (`gated`): a `Relay` (relay.py) whose bytes pass
through `H2Gate` (h2_gate.py) on their way: the client's to the app, the
app's to the client, the gate's own answers to the client. Those answers
are called for by the client's own frames, so a client whose connection is
full is not read until it drains (`paused`), as the app is not: what the
gate writes on its own waits for room like the app's answers. Each call's
outcome goes to the port's golden metrics as an HTTP/1 request's does
(`http_outcome`). When the first bytes are not HTTP/2's preface (`opaque`:
h2 inside the apps' own TLS), `on_opaque()` says whether the connection may
go on byte for byte (no L7 rule applies to its source) or is cut. A client
that breaks HTTP/2 gets GOAWAY and loses the connection, once it stops
sending (linger.py); `on_error(message)` counts and logs it.

On an upstream's listener the relay is h2_followed.py's, on the same
`H2Relay` base: what both share (cuts that wait for the far side's PING
ACK, the calls' timer) is here.

Either way, the side whose connection ends or is lost first (or a client
that broke HTTP/2) is told to the call book: the calls still open when the
connection ends are charged to it (h2_calls.py: the client's, CANCELLED).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from gossamer.intentions.model import Decision, HttpRequest
from gossamer.proxy import tally
from gossamer.proxy.authorize import admit, decided_by
from gossamer.proxy.h2_app import AppSide
from gossamer.proxy.h2_calls import CallBook
from gossamer.proxy.h2_frames import ENHANCE_YOUR_CALM, H2Error
from gossamer.proxy.h2_gate import H2Gate
from gossamer.proxy.h2_timer import CallTimer
from gossamer.proxy.http_codec import Outcome
from gossamer.proxy.http_limits import Limits
from gossamer.proxy.inbound_http import now_ms
from gossamer.proxy.relay import Relay
from gossamer.proxy.side import Side

if TYPE_CHECKING:
    from gossamer.proxy.inbound import Inbound

log = logging.getLogger("gossamer.proxy")
BROKEN = "http2.broken"  # counted: clients whose HTTP/2 the gate could not follow
CUT_WAIT_S: Final = 1.0  # for the app's answer to the PING behind a cut (h2_cut.py)


class H2Relay(Relay):
    """What both h2 relays share: calls cut (a policy change's deny, a timeout) wait for the
    far side's ACK of a PING (h2_cut.py), within CUT_WAIT_S; a `CallTimer` (h2_timer.py),
    set by the maker, keeps their calls' timeouts."""

    timer: CallTimer | None = None

    def app_side(self) -> AppSide:
        """The far side's half, as followed (its frames' ends, the cuts waiting on it)."""
        raise NotImplementedError

    def opaque(self) -> bool:
        """Whether the connection is not h2c (a byte relay: no calls to time)."""
        raise NotImplementedError

    def moved_total(self) -> int:
        return self.sides[0].moved + self.sides[1].moved

    def time_out(self, streams: list[int]) -> None:
        """Cut calls that ran out of time (the book marked them cut): the timer's callback."""
        try:
            self.cut_timed_out(streams)
        except H2Error as error:
            self.overwhelmed(error)

    def cut_timed_out(self, streams: list[int]) -> None:
        raise NotImplementedError

    def can_send(self, side: Side) -> bool:
        """Whether `side` may still be written to: the pair is open, and the other side's
        end was not passed on to it (its TLS is shut for writing then, its TCP too)."""
        return not self.halves.closed and not self.halves.ended[1 - side.index]

    def send_to(self, side: Side, pieces: list[bytes]) -> None:
        """The proxy's own frames (answers, resets, GOAWAY) for `side`, if it may still be
        written to: an end passed on already is the last it gets."""
        if pieces and self.can_send(side):
            if side is self.sides[0]:  # answers of its own count in the edge's bytes back
                self.sides[1].moved += sum(map(len, pieces))
            send_pieces(side, pieces)

    def cutting(self, pieces: list[bytes], cut: bool) -> None:
        """The frames of the proxy's for the far side (`pieces`; `cut`: behind calls it just
        cut, each reset and a PING, h2_cut.py). A far side that can no longer be written
        to (the client's end was passed on to it) never reads the resets: the connection
        goes now, the cut calls told their ends (`give_up_cuts`)."""
        far = self.sides[1]
        if self.can_send(far):
            send_pieces(far, pieces)
            if cut:
                self.watch_cut()
        elif cut and not self.halves.closed:
            self.give_up_cuts("calls were cut after the client's end reached the far side")

    def give_up_cuts(self, why: str) -> None:
        """The connection goes, the calls cut on it told their ends first where they can be
        (h2_app.AppSide.give_up): until the far side reads their resets, its frames on
        them would still go to the client."""
        log.warning("proxy: HTTP/2 connection closed: %s", why)
        self.send_to(self.sides[0], self.app_side().give_up(time.perf_counter()))
        self.terminate()

    def pass_through(self, side: Side, chunks: list[bytes], eof: bool,
                     through: Callable[[bytes, float], list[bytes]], to: Side) -> None:  # fmt: skip
        """`side`'s `chunks`, read by `through` (the gate's or the follower's half), on to
        `to`, then its end; its calls' timer looks again."""
        now = time.perf_counter()
        try:
            for chunk in chunks:
                side.moved += len(chunk)
                send_pieces(to, through(chunk, now))
        except H2Error as error:  # (the ends of cuts, behind a side stuck in a frame)
            self.overwhelmed(error)
            return
        if self.timer is not None:
            self.timer.check()
        if eof:
            self.ended(side)

    def overwhelmed(self, error: H2Error) -> None:
        """A side stuck inside one frame while over h2_app.MAX_WAITING of the proxy's own
        frames wait for its end (cuts, GOAWAY): the connection goes, the cut calls told their
        ends where they can be. (It raised out of the timer's callback or a read, and left
        later calls uncut, found by a re-read.)"""
        if self.halves.closed:
            return
        self.give_up_cuts(str(error))

    def idle_close(self) -> None:
        """The connection has been idle past its limit: GOAWAY, then closed."""
        raise NotImplementedError

    def watch_cut(self) -> None:
        """Cuts just began: the far side must answer their PING within CUT_WAIT_S."""
        waiting = list(self.app_side().cuts.waiting)
        asyncio.get_running_loop().call_later(CUT_WAIT_S, self._overdue, waiting)

    def _overdue(self, tokens: list[bytes]) -> None:
        """The far side has not answered the PING behind a cut: until it does, its frames on
        the cut calls still go to the client, so the whole connection goes instead, the cut
        calls told their ends first where they can be (h2_app.AppSide.give_up)."""
        app = self.app_side()
        if not self.halves.closed and any(t in app.cuts.waiting for t in tokens):
            self.give_up_cuts(f"the far side did not answer within {CUT_WAIT_S:g} s of a "
                              "call cut")  # fmt: skip

    def _close(self, end: Callable[[Side], None], *, linger: bool = False) -> None:
        # The relay lets go of its timer, which refers to it: compiled, the collector never
        # frees that cycle, and with it the sides and their TLS buffers (found by a re-read).
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.stop()
        super()._close(end, linger=linger)


class GatedRelay(H2Relay):
    def __init__(
        self,
        a: Side,
        b: Side,
        on_close: Callable[[Relay], None],
        gate: H2Gate,
        on_opaque: Callable[[], bool],
        on_error: Callable[[str], None],
    ) -> None:
        self.gate = gate
        self._on_opaque = on_opaque
        self._on_error = on_error
        # The client's bytes read while its own writing was full, and whether its end came
        # behind them: a mux stream still delivers what its peer's credit allows once it is
        # not read, a TLS read several records. They reach the gate once the client drains.
        self._unread: list[bytes] = []
        self._unread_eof = False
        super().__init__(a, b, on_close)  # may carry what a side held already

    def per_request(self) -> bool:
        return self.gate.speaking

    def first_gone(self, side: Side) -> None:
        self.gate.side_ended(side.index == 0)

    def drain(self) -> None:
        self.send_to(self.sides[0], self.gate.drain())

    def app_side(self) -> AppSide:
        return self.gate.app

    def opaque(self) -> bool:
        return self.gate.opaque

    def recheck(self, judge: Callable[[HttpRequest], Decision]) -> list[Decision]:
        to_app, cut = self.gate.recheck(judge)
        self.cutting(to_app, bool(cut))
        return cut

    def cut_timed_out(self, streams: list[int]) -> None:
        self.cutting(self.gate.cut(streams), True)

    def idle_close(self) -> None:
        self.drain()  # (new streams refused, GOAWAY)
        self.lost_lingering()  # the GOAWAY goes first, then the client's end

    def paused(self, side: Side) -> None:
        """`side`'s writing is full: what feeds it stops being read. The client is fed by
        the app and by the gate, whose own answers (403s, resets, window given back) the
        client's frames call for: so a full client is not read either, until it drains.
        Else one that floods denied calls and reads nothing has them pile up in its
        transport without bound, or run past the credit of the mux stream it came on, and
        the peer sidecar then closes their shared connection, every other caller's calls
        with it."""
        self.sides[1 - side.index].pause_reading()
        if side.index == 0:
            side.pause_reading()

    def resumed(self, side: Side) -> None:
        """`side` takes more again. The client: what it sent while full goes to the gate
        first (which may fill it again), then the app is read again. Either: the client is
        read again only once neither is full."""
        client, app = self.sides
        if side is client:
            if self._unread or self._unread_eof:
                chunks, eof = self._unread, self._unread_eof
                self._unread, self._unread_eof = [], False
                self._from_client(chunks, eof)
            if client.full or self.halves.closed:
                return
            app.resume_reading()
        if not client.full and not app.full and not self.halves.closed:
            client.resume_reading()

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        if side.index == 0:
            if self._unread or self._unread_eof or side.full:  # (answered once it drains)
                self._unread += chunks
                self._unread_eof = self._unread_eof or eof
            else:
                self._from_client(chunks, eof)
            return
        # (not read while the client is full: at most one read's worth)
        self.pass_through(side, chunks, eof, self.gate.from_app, self.sides[0])
        if self.gate.calls.rapid() and not self.halves.closed:  # (the app's resets, h2_calls.py)
            self._broken(H2Error(ENHANCE_YOUR_CALM, "over half the calls reset before an "
                                 "answer, by the app for the client's fault"))  # fmt: skip

    def _broken(self, error: H2Error) -> None:
        """The client broke HTTP/2 (`error`): GOAWAY with its code, where it can go, and the
        connection ends once the client stops sending (linger.py)."""
        client = self.sides[0]
        if (goaway := self.gate.goaway_for(error)) and self.can_send(client):
            client.send(goaway)
        self._on_error(str(error))
        self.gate.side_ended(True)  # the client's doing: its calls open are its own cut
        self.lost_lingering()  # the GOAWAY goes first, then the client's end

    def _from_client(self, chunks: list[bytes], eof: bool) -> None:
        """The client's `chunks` through the gate, until its writing is full: the rest, and
        its end, wait for it to drain (`resumed`). The window of DATA the gate dropped goes
        back with the last chunk, one WINDOW_UPDATE for the read."""
        gate, client, app = self.gate, self.sides[0], self.sides[1]
        now = time.perf_counter()
        last = len(chunks) - 1
        for at, chunk in enumerate(chunks):
            if client.full:
                self._unread, self._unread_eof = chunks[at:], eof
                return
            client.moved += len(chunk)
            opaque = gate.opaque
            try:
                to_app, to_client = gate.from_client(chunk, now, at == last)
            except H2Error as error:
                self._broken(error)
                return
            if gate.opaque and not opaque and not self._on_opaque():
                self.terminate()
                return
            self.send_to(app, to_app)
            self.send_to(client, to_client)
        if self.timer is not None:
            self.timer.check()
        if eof:
            self.ended(client)


def send_pieces(side: Side, pieces: list[bytes]) -> None:
    if len(pieces) == 1:
        side.send(pieces[0])
    elif pieces:
        side.send(b"".join(pieces))


def gated(inbound: Inbound, client: Side, app: Side, source: str, peer: str,
          xfcc: bytes) -> GatedRelay:  # fmt: skip
    """`client` (from `source`'s sidecar) joined to the local `app` through a gate whose
    requests `inbound` decides, as its HTTP/1 ones (`decide_request`); each allowed one
    gets `xfcc` as its X-Forwarded-Client-Cert."""
    service = inbound.config.service

    def decide(request: HttpRequest) -> Decision:
        return inbound.decide_request(source, lambda: request)

    def opaque() -> bool:
        """Not h2c: byte for byte only when `source` needs no request to be decided."""
        decision = admit(inbound.policy.intentions, source, service,
                         default_allow=inbound.policy.default_allow)  # fmt: skip
        if decision.allowed:  # (the policy is known: the connection was let in)
            return True
        inbound.record_denial(source, decision)
        inbound.refuse(tally.DENIED, peer, f"{source} -> {service}: not h2c, so no request "
                       f"to decide; {decided_by(decision)}")  # fmt: skip
        return False

    def broken(message: str) -> None:
        inbound.tally.add(BROKEN)
        if inbound.tally.limiter.allow(f"{BROKEN}/{source}", now_ms()):
            log.warning("proxy: HTTP/2 from %s (%s) ended: %s", source, peer, message)

    def done(status: int, route: str, seconds: float) -> None:
        inbound.http_outcome(Outcome(source, route, status, seconds))

    def closed(relay: Relay) -> None:
        gate.close(time.perf_counter())
        inbound._closed(relay)

    gate = H2Gate(decide, inbound.max_header_bytes, done, xfcc, inbound.limits)
    made = GatedRelay(client, app, closed, gate, opaque, broken)
    with_timer(made, gate.calls, inbound.limits, inbound.http_event)
    return made


def with_timer(relay: H2Relay, calls: CallBook, limits: Limits,
               event: Callable[[str], None]) -> None:  # fmt: skip
    """`relay`'s calls get `limits` (h2_timer.py), when it has any and is still open."""
    if (limits.request_s or limits.idle_s or limits.client_idle_s) and not relay.halves.closed:
        relay.timer = CallTimer(relay, calls, limits, event)
