"""A client's stream on a pooled mux (mux_pool.py): the OPEN, and what its answer means.

`open_stream` gives a client connection its stream: OPEN, then the
client's bytes wait for the ACK (`connect_timeout_s`). A REFUSED reset is
the inbound side's no (intentions): no retry. UNREACHABLE (its app did not
take the connection), or any other reset before the ACK, is a failed
attempt at that instance, counted, and the client goes to another; the mux
stays. AWAY (a draining inbound side, or one with as many streams on that
mux as it takes), or a mux that ends cleanly with no answer (closed idle
as it was taken), is no failure: the client goes to a new connection, or
to the next instance if that mux was made for it (at most `OPENS` muxes);
if that mux had resumed a TLS session, the session is dropped (an inbound
side that no longer remembers the chain its leaf was verified with refuses
it, and would refuse every connection that offered it again).
A mux lost before the answer is a failed attempt, followed the same way.
No answer in time is a failed attempt too, but not always a dead mux: an
L4 inbound side ACKs once its app connection is made, which may take its
own local_connect_timeout, while other streams flow. So the stream alone
is given up (reset) when anything was read on its mux since the OPEN went
out, and the client goes to another instance. When nothing was, the mux
may be dead (a host cut off) or only quiet: it takes no new stream until
something is read, the stream waits on for its answer (reset then), and
the mux is closed, with every stream on it, if nothing at all is read
within `QUIET_S` more (or the connect timeout, if longer); the client goes
to the next instance when there is one it may try (`elsewhere`) or that
mux was made for it, else to a new connection to the same instance.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final, Literal

from gossamer.proxy import tally
from gossamer.proxy.config import LOCAL_CONNECT_TIMEOUT_S
from gossamer.proxy.dial import dial, failed
from gossamer.proxy.mux import ACKED, Mux
from gossamer.proxy.mux_frames import AWAY, REFUSED, UNREACHABLE
from gossamer.proxy.mux_pool import MAX_STREAMS
from gossamer.proxy.side import PlainSide, Side
from gossamer.proxy.tls_side import TlsSide

if TYPE_CHECKING:
    from gossamer.proxy.health_rows import Instance
    from gossamer.proxy.outbound import UpstreamListener

# A live L4 inbound side answers every OPEN once its app connection is made or has failed, within
# its local_connect_timeout (1 s unless set): a mux on which nothing at all is read for this long
# after an OPEN's answer is overdue (or the connect timeout, if longer) is judged dead, not slow.
QUIET_S: Final = 2 * LOCAL_CONNECT_TIMEOUT_S
# Connections one client's stream tries at one instance: one it found there or waited for, which
# may turn it away (a draining peer, one full already), then the next; one this client made for
# itself ends it. Bounded, so a peer turning every stream away costs a burst a few rounds.
OPENS: Final = 3


async def open_stream(
    listener: UpstreamListener, client: PlainSide, instance: Instance, target: str,
    started: float, *, elsewhere: bool = False,
) -> Literal["joined", "refused", "failed"]:  # fmt: skip
    """Join `client` to a stream to `instance` (see the module's docstring); `elsewhere`:
    the client has another instance to go to."""
    server = await _stream(listener, instance, target, elsewhere)
    if isinstance(server, Side):
        listener.join(client, server, instance, started)
        return "joined"
    return server


async def backend_stream(
    listener: UpstreamListener, instance: Instance, target: str
) -> Side | None:
    """A pooled HTTP connection to `instance` (http_upstream.py): a new stream, or a TLS
    connection of its own to a peer without frames; None when refused or failed."""
    server = await _stream(listener, instance, target)
    if isinstance(server, Side):
        return server
    if server == "refused":  # the certificate, not a request: a failed attempt here
        failed(listener, instance, tally.CONNECT_FAILED, ConnectionError("stream refused"))
    return None


async def open_side(
    listener: UpstreamListener, instance: Instance, target: str
) -> Side | Literal["refused", "failed"]:
    """A stream to `instance` for one client connection's calls (h2_balanced.py): "refused"
    when its sidecar's intentions refuse this service, as an L4 client is (no failure)."""
    return await _stream(listener, instance, target)


async def _stream(
    listener: UpstreamListener, instance: Instance, target: str, elsewhere: bool = False
) -> Side | Literal["refused", "failed"]:
    target = listener.service_of(target)  # (a resolver subset's key: the service's ID)
    identity = listener.identity()
    pool = listener.tunnels
    mux: Mux | None = None
    if identity is not None and pool.muxes:
        mux = pool.take(instance, identity, target, listener.chains)
    reused, mine = mux is not None, False
    for _ in range(OPENS):
        if mux is None:
            made, mine = await _made(listener, instance, target)
            if isinstance(made, TlsSide) and not mine:  # a peer without frames: our own
                made = await dial(listener, instance, target, tunnel=True)
            if made is None or isinstance(made, TlsSide):  # TLS: one connection per client
                return made or "failed"
            mux, reused = made, False
        stream, seen = mux.open(), mux.reads
        assert stream.answer is not None
        timeout_s = listener.connect_timeout_for(target)
        try:
            answer = await asyncio.wait_for(asyncio.shield(stream.answer), timeout_s)
        except TimeoutError:
            if mux.reads != seen:  # the wire lives, only this answer is slow (its app)
                stream.close()
                failed(listener, instance, tally.CONNECT_FAILED,
                       TimeoutError("no answer to OPEN; its connection answers"))  # fmt: skip
                return "failed"
            pool.quiet(mux, seen, stream, max(timeout_s, QUIET_S))  # dead, or all quiet
            failed(listener, instance, tally.CONNECT_FAILED,
                   TimeoutError("no answer to OPEN, nothing read since"))  # fmt: skip
            # A silent wire is most often a host gone: a new connection to it would cost the
            # client a second connect timeout (20 s in all by default) before the next one.
            if mine or elsewhere:
                return "failed"
            mux = None  # a new connection: this one may be dead
            continue
        if not reused and answer is not None:  # the server's ticket came before its answer
            keep_session(listener, instance, mux)
        if answer == ACKED:  # even if cut at once after: the relay closes the client
            if reused:
                listener.tally.add("outbound.reused")
            return stream
        stream.close()
        if answer == REFUSED:
            return "refused"
        if answer is not None and answer != AWAY:  # UNREACHABLE (or a cut): the wire is sound
            why = "its app did not take the connection" if answer == UNREACHABLE else "cut"
            failed(listener, instance, tally.CONNECT_FAILED, ConnectionError(why))
            return "failed"
        if answer is None and not reused and mux.wire.pipe.resumed:
            # closed before any answer, resumed: the inbound side may no longer know the chain
            # the session's leaf was verified with (it refuses it): the next one is full
            listener.sessions.drop(instance)
        if answer is None and not mux.closed_cleanly:  # lost under it (a reset, an error)
            failed(listener, instance, tally.CONNECT_FAILED, ConnectionError("connection lost"))
        if mine:  # turned away (draining) or closed, on a connection made for this client:
            return "failed"  # the next instance (counted only if lost)
        mux = None  # draining, full, closed idle as it was taken, or lost: a new connection
    return "failed"


async def _made(
    listener: UpstreamListener, instance: Instance, target: str
) -> tuple[Mux | TlsSide | None, bool]:
    """`MuxPool.make` for one more stream. A burst of clients to a cold instance all wait for
    the one connection being made; those past its `MAX_STREAMS` (the inbound side would turn
    them away) take another one with room, as `take` would, else the next new one."""
    pool = listener.tunnels
    while True:  # each round, the waiters before this one fill a new connection at most
        made, mine = await pool.make(listener, instance, target)
        if mine or not isinstance(made, Mux) or made.full or len(made.streams) < MAX_STREAMS:
            return made, mine
        identity = listener.identity()
        if identity is not None:
            room = pool.take(instance, identity, target, listener.chains)
            if room is not None:
                return room, False


def keep_session(listener: UpstreamListener, instance: Instance, mux: Mux) -> None:
    """Offer the session of `mux`'s connection to the next new connection to `instance`."""
    tls, now = mux.wire.pipe.tls, time.monotonic()
    if listener.sessions.wants(instance, tls.context, now):
        listener.sessions.keep(instance, tls.context, tls.session, now)
