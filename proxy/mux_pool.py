"""The upstream side's sidecar connections: muxes (mux.py) per instance, shared by streams.

A client connection to an instance becomes a stream on a live mux to it,
made with a TLS connection only when there is none: the first client makes
it, the ones that come while it is being made wait for it, and those past
its `MAX_STREAMS` (a burst to a cold instance) go on to another mux with
room, else the next new one. A mux takes new streams only while
- it was made with the current client context (a new leaf or new roots
  make a new one: older ones finish their streams and close);
- it is younger than `MAX_AGE_S` and has fewer than `MAX_STREAMS` streams;
- its server still passes the caller's check (the server's SPIFFE ID and
  the current trust, a lookup once its chain was verified).
A mux with no stream is closed after the upstream's `pool_idle_s` (at
most `MAX_IDLE_S`, below the inbound side's idle time, so that side does
not close one as it is taken); at most `pool_idle` muxes are kept per
instance. The inbound side decides every stream again. A mux that ends
without its peer's close (reset, timed out, judged dead) cuts its clients:
counted (`outbound.connection_lost`) and logged once a minute per instance
(`connection_lost`).

A client's stream on one of these muxes, and what each answer to its OPEN
means: mux_open.py.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from gossamer.gossip.host_port import host_port
from gossamer.proxy.authorize import Refused, server_service
from gossamer.proxy.ca.verified_chain import ChainMemory
from gossamer.proxy.dial import bound_unacknowledged, dead_after_s, dial
from gossamer.proxy.identity import Identity
from gossamer.proxy.mux import Mux, StreamSide, checked_peer, is_mux
from gossamer.proxy.side import Side
from gossamer.proxy.tls_side import TlsSide

if TYPE_CHECKING:
    from gossamer.proxy.health_rows import Instance
    from gossamer.proxy.outbound import UpstreamListener

log = logging.getLogger("gossamer.proxy")
MAX_AGE_S: Final = 60.0
MAX_IDLE_S: Final = 30.0  # below the inbound side's INBOUND_IDLE_S whatever the config says
MAX_STREAMS: Final = 1024


class MuxPool:
    def __init__(self, idle_s: float, capacity: int) -> None:
        self.muxes: dict[Hashable, list[Mux]] = {}
        self.contexts: dict[Mux, ssl.SSLContext] = {}
        self._making: dict[Hashable, asyncio.Future[Mux | TlsSide | None]] = {}
        # Muxes with an OPEN unanswered in time and nothing read since (`quiet`): their reads
        # then, and the check that closes them if none come.
        self._quiet: dict[Mux, tuple[int, asyncio.TimerHandle]] = {}
        self._idle_s = min(idle_s, MAX_IDLE_S)
        self._capacity = max(1, capacity)
        self._sweep: asyncio.TimerHandle | None = None
        self._ours: set[Mux] = set()  # closed by the pool (idle, refused, the end): not lost

    def take(
        self, instance: Hashable, identity: Identity, service: str, known: ChainMemory
    ) -> Mux | None:
        """A live mux to `instance` fit for a new stream to `service`, or None."""
        now = time.monotonic()
        quiet = self._quiet
        for mux in self.muxes.get(instance, ()):
            if (mux.full or self.contexts.get(mux) is not identity.client_tunnel
                    or now - mux.born >= MAX_AGE_S or len(mux.streams) >= MAX_STREAMS):  # fmt: skip
                continue
            if quiet and mux in quiet:
                if mux.reads == quiet[mux][0]:  # maybe dead: nothing read since
                    continue
                quiet.pop(mux)[1].cancel()  # alive after all
            wire = mux.wire
            if checked_peer(wire, identity.trust, now) == service:
                return mux
            try:
                server_service(wire.pipe.peer_certificates(), identity.trust,
                               datetime.now(UTC), service, known)  # fmt: skip
            except Refused:
                continue
            wire.peer_checked = (identity.trust, service, now)
            return mux
        return None

    async def make(
        self, listener: UpstreamListener, instance: Instance, service: str
    ) -> tuple[Mux | TlsSide | None, bool]:
        """A new connection to `instance`: a mux (shared with those who asked meanwhile), a
        plain TLS connection when the peer takes no frames, or None; and whether this caller
        made it (a TLS connection is only the maker's)."""
        making = self._making.get(instance)
        if making is not None:
            return await asyncio.shield(making), False
        making = self._making[instance] = asyncio.get_running_loop().create_future()
        try:
            server = await dial(listener, instance, service, tunnel=True)
        except BaseException:  # cancelled (shutdown): those waiting are not left hanging
            making.set_result(None)
            raise
        finally:
            del self._making[instance]
        made: Mux | TlsSide | None = server
        if server is not None and is_mux(server):
            bound_unacknowledged(
                server.transport, dead_after_s(listener.upstream.connect_timeout_s)
            )
            made = self._add(listener, instance, server)
        making.set_result(made)
        return made, True

    def current(self, side: Side, identity: Identity | None, now: float) -> bool:
        """Whether a pooled HTTP connection (http_upstream.py) may carry another request: a
        stream on a mux `take` would still give out by its age and context, or a TLS
        connection made with the current context. Else the request opens a new stream, so a
        busy pool moves to a new leaf or roots, and a mux ends at `MAX_AGE_S`, as it would
        for new clients; the old mux closes once its streams have."""
        if identity is None:
            return True
        if isinstance(side, StreamSide):
            mux = side.mux
            return (self.contexts.get(mux) is identity.client_tunnel
                    and now - mux.born < MAX_AGE_S)  # fmt: skip
        return not isinstance(side, TlsSide) or side.pipe.tls.context is identity.client_tunnel

    def quiet(self, mux: Mux, seen: int, stream: StreamSide, after_s: float) -> None:
        """`stream`'s OPEN was not answered in time and nothing was read on `mux` since it went
        out (`seen`: its reads then). The far side may be gone, or only slow with every other
        stream quiet: `mux` takes no new stream until something is read, `stream` waits on for
        its answer (then it is reset: the client has gone), which a live peer sends, and `mux`
        is closed, with every stream on it, if nothing at all is read within `after_s`."""
        assert stream.answer is not None
        stream.answer.add_done_callback(lambda _: stream.close())
        earlier = self._quiet.get(mux)
        if earlier is not None:
            if earlier[0] == seen:  # nothing read since an earlier such OPEN: judged from it
                return
            earlier[1].cancel()
        loop = asyncio.get_running_loop()
        self._quiet[mux] = (seen, loop.call_later(after_s, self._judge, mux, seen))

    def _judge(self, mux: Mux, seen: int) -> None:
        self._quiet.pop(mux, None)
        if mux.reads == seen:
            mux.close(abort=True)  # dead: its streams with it (their relays end their clients)

    def _add(self, listener: UpstreamListener, instance: Instance, wire: TlsSide) -> Mux:
        def lost(mux: Mux) -> None:
            if mux in self._ours:
                self._ours.discard(mux)
            elif not mux.closed_cleanly:
                connection_lost(listener, instance)
            self.contexts.pop(mux, None)
            if mux in self._quiet:
                self._quiet.pop(mux)[1].cancel()
            conns = self.muxes.get(instance, [])
            if mux in conns:
                conns.remove(mux)
                if not conns:
                    del self.muxes[instance]

        def idle(mux: Mux) -> None:
            conns = self.muxes.get(instance, [])
            spare = sum(1 for m in conns if not m.streams)
            if time.monotonic() - mux.born >= MAX_AGE_S or spare > self._capacity:
                self._close(mux)
            elif self._sweep is None:
                self._sweep = asyncio.get_running_loop().call_later(self._idle_s, self._swept)

        mux = Mux(wire, opener=True, on_idle=idle, on_lost=lost)
        self.contexts[mux] = wire.pipe.tls.context
        self.muxes.setdefault(instance, []).append(mux)
        return mux

    def _swept(self) -> None:
        self._sweep = None
        self.drop_where(lambda s: False, idle_before=time.monotonic() - self._idle_s)
        if any(not m.streams for conns in self.muxes.values() for m in conns):
            self._sweep = asyncio.get_running_loop().call_later(self._idle_s / 2, self._swept)

    def drop_where(self, refused: Callable[[TlsSide], bool], idle_before: float = -1.0) -> int:
        """Close the muxes whose server `refused` names (with their streams: counted), and
        those with no stream since before `idle_before`."""
        cut = 0
        for conns in list(self.muxes.values()):
            for mux in list(conns):
                if refused(mux.wire):
                    cut += len(mux.streams)
                    self._close(mux, abort=bool(mux.streams))
                elif not mux.streams and mux.idle_since < idle_before:
                    self._close(mux)
        return cut

    def _close(self, mux: Mux, *, abort: bool = False) -> None:
        if not mux.lost:  # (one being lost is closed too, as it was: its wire with it)
            self._ours.add(mux)
        mux.close(abort=abort)

    def close_all(self) -> None:
        for conns in list(self.muxes.values()):
            for mux in list(conns):
                self._close(mux)
        for _, judge in self._quiet.values():
            judge.cancel()
        self._quiet.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None


def connection_lost(listener: UpstreamListener, instance: Instance) -> None:
    """A shared connection to `instance` ended without its sidecar's close: reset, timed out
    (keepalive, dial.py), judged dead (`quiet`) or broken; the client connections on it were
    cut with it. Counted, and logged once a minute per instance: the clients saw a reset,
    and before this nothing told the operator why."""
    name, shown = listener.upstream.name, host_port(instance[0], instance[1])
    listener.tally.add("outbound.connection_lost")
    if listener.tally.limiter.allow(f"lost/{name}/{shown}", time.time_ns() // 1_000_000):
        log.warning("proxy: upstream %s: connection to instance %s lost (reset, timed out or "
                    "judged dead); the client connections on it were cut", name, shown)  # fmt: skip
