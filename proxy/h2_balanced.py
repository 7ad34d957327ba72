"""The relay of an upstream's `http2` or `grpc` connection, each call balanced. Shell.

A gRPC channel is one h2c connection: carried byte for byte to one
instance (h2_followed.py), every call of it went there for the channel's
life, however many instances there were. Here the proxy ends the client's
connection itself (h2_split.py, the pure core) and sends each new stream to
the instance the chooser names for it, as Linkerd and Consul's Envoy do.
On by default; `Upstreams[].Config.gossamer_balance_calls: false` opts out.

`Preface` reads the client's first bytes: the HTTP/2 preface makes a
`Balanced`, anything else (h2 inside the app's own TLS, not HTTP/2 at all)
goes back to the listener's byte relay, unread. `Balanced` is one client
connection and its connections to instances: each `Open(key)` is a stream
of the pooled mTLS mux to that instance's sidecar (mux_open.open_side: its
SPIFFE ID checked, resumption, failures counted and fed to outlier
detection), or a TLS connection of its own to a peer without frames. The
far sidecar's gate sees each as an h2c connection and decides each call; a
connection it refuses (intentions) answers its calls PERMISSION_DENIED.

The chooser draws the target as HTTP/1 does per request (split weights,
resolver chains: `pick_target`), then an instance of it by power of two
choices over calls in flight (balance.py), skipping instances set aside by
outlier detection (all set aside: the least bad). Calls in flight are the
listener's `outstanding`, kept in step with every splitter's own counts, so
channels of one listener see each other's load. Not peak-EWMA (as HTTP/1):
one channel's calls come one after the other, and p2c over latency never
picks the slowest of three until its estimate decays (seconds), so an
instance a hair slower than the others got no call of a burst at all.

The client's connection stops being read while its own write buffer is
full, and only it (the core's docstring says why). What goes to an instance
whose connection is full (a mux stream out of credit, a TLS connection's
buffer over its mark) waits here, in pieces of PIECE, until it drains: a
mux stream sent past its credit is a broken peer to the far sidecar, which
closes the shared connection and every stream on it, and the instances'
HTTP/2 windows (grpc's grow to MiBs) do not stop that. That connection is
read on meanwhile: its answers are what the far side waits to send before
it reads more of ours (a grpc server writing a call's answer reads no more
of it), so a sidecar that stopped reading it stalled every call on it until
the request timeout, whenever the calls it carried outran the mux credit.
What waits is bounded by the largest HTTP/2 connection window the instance
gave (its promise to read that much) plus CONTROL_SLACK for frames outside
flow control (ACKs of its PINGs and SETTINGS, header blocks); past that,
as from a peer that sends PINGs and never reads, it is not read until it
drains. An upstream connection with no
call for `pool_idle_s`, or to an instance no longer in the catalog, is
retired (closed once its calls end). The upstream's request and idle
timeouts: h2_split_timed.py.

What only the whole client connection shows (rapid reset, MadeYouReset, a
request on a stream below one opened) is answered here, as the far gate
answers it on a followed connection (h2_balanced_guard.py). A client's FIN
ends its connection and cancels its calls (Envoy and gRPC servers do the
same): a followed connection carries the FIN to the app instead, whose own
HTTP/2 stack decides.

With a service-router for the upstream's service, each call takes the
first route that fits its :method, :path, fields and query (h2_routes.py,
h2_split_routed.py): the route's destination, its PrefixRewrite and header
edits, its timeouts, and its `route` label on the outbound edge.

A call an instance refuses unbegun (its GOAWAY, as when it shuts down, or
RST_STREAM REFUSED_STREAM) is sent again, to an instance chosen anew
(h2_balanced_replay.py): followed, the instance's GOAWAY reaches the client,
which makes the call again itself.

Not yet: its connections to instances are not shared between client
connections (nor rechecked by `recheck_peers` when they are TLS connections
of their own; muxes are).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from math import inf
from typing import TYPE_CHECKING, Final

from gossamer.proxy import balance, tally
from gossamer.proxy.h2_frames import PREFACE
from gossamer.proxy.h2_split_calls import Close, CloseClient, Command, Open, ToClient, ToUpstream
from gossamer.proxy.h2_split_routed import CallRoute, RoutedSplitter
from gossamer.proxy.h2_split_wire import Fields
from gossamer.proxy.http_limits import CLIENT_IDLE, Limits
from gossamer.proxy.linger import linger
from gossamer.proxy.mux_open import open_side
from gossamer.proxy.relay import Relay
from gossamer.proxy.relay_state import Halves
from gossamer.proxy.side import Joint, PlainSide, Side

if TYPE_CHECKING:
    from gossamer.proxy.health_rows import Instance
    from gossamer.proxy.outbound import UpstreamListener

# (target, instance, generation): the target says which SPIFFE ID the instance carries; a
# new generation is a second connection to the instance, when its first takes no new call
Key = tuple[str, "Instance", int]
SWEEP_MAX_S: Final = 5.0  # the longest between two looks at idle upstream connections
PIECE: Final = 64 * 1024  # what is sent to an instance's connection at once (a mux frame's)
CONTROL_SLACK: Final = 1024 * 1024  # what may wait for an instance past its window


def accept(
    listener: UpstreamListener, client: PlainSide, relay_bytes: Callable[[PlainSide], None]
) -> None:
    """Read `client`'s first bytes: an h2c client is balanced per call, anything else goes to
    `relay_bytes` (the listener's byte relay) with those bytes held, unread."""
    client.relay = Preface(listener, client, relay_bytes)
    client.joined()


class Preface(Joint):
    """The client's bytes until they are, or cannot be, the HTTP/2 preface."""

    def __init__(self, listener: UpstreamListener, client: PlainSide,
                 relay_bytes: Callable[[PlainSide], None]) -> None:  # fmt: skip
        self.listener, self.client, self.relay_bytes = listener, client, relay_bytes
        self.seen = b""

    def peer_of(self, side: Side) -> Side:
        return side

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        self.seen += b"".join(chunks)
        n = min(len(self.seen), len(PREFACE))
        if self.seen[:n] != PREFACE[:n] or (eof and n < len(PREFACE)):
            side.relay = None
            side.deliver([self.seen], eof)  # held again (and not read) until joined
            self.relay_bytes(self.client)
        elif n == len(PREFACE):
            balanced(self.listener, side, self.seen, eof)

    def side_lost(self, side: Side) -> None:
        """Gone before it said what it speaks: nothing was opened for it."""

    def paused(self, side: Side) -> None:
        side.pause_reading()

    def resumed(self, side: Side) -> None:
        side.resume_reading()


def balanced(listener: UpstreamListener, client: Side, first: bytes, eof: bool) -> Balanced:
    """`client`'s connection balanced per call (its `first` bytes read already), counted on
    the outbound edge as a connection and each call as a request."""
    edge = listener.metrics.outbound(listener.upstream.name)

    def closed(relay: Relay) -> None:
        listener.open.discard(relay)
        edge.disconnected(relay, time.monotonic() - relay.started)
        listener.on_close()

    made = Balanced(listener, client, closed)
    listener.open.add(made)
    listener.tally.add("outbound.connections")
    edge.connected(made, 0.0)
    made.carry(client, [first], eof)
    return made


class Balanced(Relay):
    """One client connection, its calls each sent to an instance of its own (h2_split.py).
    A `Relay` to the listener (drain, terminate, metrics); its `sides` are the client's
    twice: the upstream connections are many, and come and go."""

    def __init__(self, listener: UpstreamListener, client: Side,
                 on_close: Callable[[Relay], None]) -> None:  # fmt: skip
        # (not Relay.__init__: that joins two sides)
        self.sides = (client, client)
        self.client = client
        self.started = time.monotonic()
        self.halves = Halves()
        self._on_close = on_close
        self.listener = listener
        self.ups: dict[Key, Side] = {}
        self.waiting: dict[Side, list[bytes]] = {}  # for an instance's full connection
        self.held: dict[Side, int] = {}  # the bytes of `waiting`'s lists
        self.stopped: set[Side] = set()  # instances' connections not read: too much waits
        self.keys: dict[Side, Key] = {}
        self.dials: dict[Key, asyncio.Task[None]] = {}
        self.counted: dict[Instance, int] = {}  # what this adds to listener.outstanding
        self.idle_since: dict[Key, float] = {}
        self.generation: dict[tuple[str, Instance], int] = {}  # the connection new calls take
        self.sent = self.received = 0  # bytes to and from the instances (what the far
        # sidecars count too: the client's own bytes are not what goes, header blocks are
        # written anew)
        self.draining = False
        self.quiet_since = time.monotonic()  # when a call was last seen open (client idle)
        self.client_ended = False  # its EOF came
        self.over = False
        self.edge = listener.metrics.outbound(listener.upstream.name)
        u = listener.upstream
        # (a service-resolver's RequestTimeout, when it gives one: outbound.set_routing)
        limits = Limits(listener.request_timeout_s, u.request_idle_s, u.client_idle_s)
        self.split: RoutedSplitter[Key] = RoutedSplitter(
            self._choose, clock=time.monotonic, route_of=self._route_of, outcome=self._done,
            limits=limits)  # fmt: skip
        self._look_at = inf  # when the deadline timer fires
        self._deadline: asyncio.TimerHandle | None = None
        client.index = 0
        client.relay = self
        self._timer: asyncio.TimerHandle | None = None
        self._arm()
        self.run(self.split.start())

    # -- the listener's view (Relay) --

    def bytes_each_way(self) -> tuple[int, int]:
        return self.sent, self.received

    def peer_of(self, side: Side) -> Side:
        return side

    def paused(self, side: Side) -> None:
        """`side`'s own write buffer is full. The client's is not read until it drains (a
        peer that sends PINGs and never reads), and nothing else stops; an instance's is
        read on while what waits for it stays within its window (`_send_up`)."""
        if side is self.client:
            side.pause_reading()

    def resumed(self, side: Side) -> None:
        waiting = self.waiting.pop(side, None)
        self.held.pop(side, None)
        self.stopped.discard(side)
        for data in waiting or ():
            self._send_up(side, data)  # (full again: the rest waits again)
        if side not in self.stopped:
            side.resume_reading()

    def drain(self) -> None:
        """The listener stopped (a change, SIGTERM): GOAWAY, calls under way go on; closed
        once none is left."""
        if not self.over:
            self.draining = True
            self.run(self.split.drain())

    def terminate(self) -> None:
        if self.over:
            return
        self.client.shut()
        for side in list(self.ups.values()):
            side.shut()
        self.run(self.split.client_closed())
        self._finish()

    # -- bytes in --

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        if self.over:
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if side is self.client:
            self.client_ended = self.client_ended or eof
            side.moved += len(data)
            if data:
                self.run(self.split.from_client(data))
            if eof and not self.over:
                self.run(self.split.client_closed())
            return
        key = self.keys.get(side)
        if key is None:
            return
        self.received += len(data)
        if data:
            self.run(self.split.from_upstream(key, data))
        if eof and self.keys.get(side) == key:
            self._forget(key)
            side.close()
            self.run(self.split.upstream_closed(key))

    def side_lost(self, side: Side) -> None:
        if self.over:
            return
        if side is self.client:
            self.run(self.split.client_closed())
            self._finish()
            return
        key = self.keys.get(side)
        if key is not None:
            self._forget(key)
            self.run(self.split.upstream_closed(key))

    # -- commands out --

    def run(self, commands: list[Command[Key]]) -> None:
        for command in commands:
            if isinstance(command, ToClient):
                self.client.send(command.data)
            elif isinstance(command, ToUpstream):
                up = self.ups.get(command.key)
                if up is not None:
                    self.sent += len(command.data)
                    self._send_up(up, command.data)
            elif isinstance(command, Open):
                self.idle_since.pop(command.key, None)
                task = asyncio.get_running_loop().create_task(self._dial(command.key))
                self.dials[command.key] = task
            elif isinstance(command, Close):
                self.dials.pop(command.key, None)  # a dial under way: its side is closed
                up = self.ups.get(command.key)
                self._forget(command.key)
                if up is not None:
                    up.close()
            elif isinstance(command, CloseClient):
                self._close_client()
        if self.over:
            return
        self._count()
        if self.draining and self.split.open_calls == 0:
            self._close_client()
        elif self.split.open_calls and self.split.shortest < inf:
            due = time.monotonic() + self.split.shortest  # (the soonest a call opened now may
            # run out: the upstream's limits, or a route's shorter ones)
            if due < self._look_at:
                self._look(due)

    def _send_up(self, side: Side, data: bytes) -> None:
        """`data` to an instance's connection, a piece at a time while it takes them; once it
        is full, the rest waits for `resumed`."""
        waiting = self.waiting.get(side)
        if waiting is not None:
            waiting.append(data)
            self._hold(side, len(data))
            return
        for at in range(0, len(data), PIECE):
            if side.full:
                self.waiting[side] = [data[at:]]
                self._hold(side, len(data) - at)
                return
            side.send(data[at : at + PIECE] if len(data) > PIECE else data)

    def _hold(self, side: Side, size: int) -> None:
        """`size` more bytes wait for an instance's connection: past its window and the
        slack, it is not read until they drain (`resumed`)."""
        held = self.held[side] = self.held.get(side, 0) + size
        key = self.keys.get(side)
        if side in self.stopped or key is None:
            return
        if held > self.split.window_peak(key) + CONTROL_SLACK:
            self.stopped.add(side)
            side.pause_reading()

    def _look(self, when: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._look_at = when
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(max(0.0, when - time.monotonic()), self._timed)

    def _timed(self) -> None:
        """Calls past the upstream's request or idle timeout are cut (h2_split_timed.py)."""
        self._deadline, self._look_at = None, inf
        if self.over:
            return
        commands, names, soonest = self.split.time_out()
        for name in names:
            self.listener.tally.add(f"outbound.http.{name}")
        self.run(commands)
        if not self.over and soonest < self._look_at:
            self._look(soonest)

    def _close_client(self) -> None:
        """The proxy ends the client's connection (after its GOAWAY): one still sending is
        read on for a while (linger.py), so it gets the GOAWAY, not a reset."""
        self._finish()
        if self.client_ended:
            self.client.close()
        else:
            linger(self.client)

    async def _dial(self, key: Key) -> None:
        target, instance, _ = key
        side = await open_side(self.listener, instance, target)
        if self.dials.get(key) is not asyncio.current_task() or self.over:
            if isinstance(side, Side):  # abandoned while it was made
                side.close()
            return
        del self.dials[key]
        if side == "refused":  # the intentions: no instance of it would take the call
            self.run(self.split.open_denied(key))
            return
        if not isinstance(side, Side):
            self.run(self.split.open_failed(key))
            return
        self.listener.outliers.succeeded(instance)
        self.ups[key], self.keys[side] = side, key
        side.index = 1
        self.run(self.split.opened(key))
        if self.over or self.ups.get(key) is not side:
            return
        side.relay = self
        side.joined()  # what it read while it was made, now (read on while full: `paused`)

    def _forget(self, key: Key) -> None:
        side = self.ups.pop(key, None)
        if side is not None:
            self.keys.pop(side, None)
            self.waiting.pop(side, None)
            self.held.pop(side, None)
            self.stopped.discard(side)
        self.idle_since.pop(key, None)

    def _finish(self) -> None:
        """Over: every upstream connection closes, its counts leave the listener's."""
        if self.over:
            return
        self.over = True
        for timer in (self._timer, self._deadline):
            if timer is not None:
                timer.cancel()
        self._timer = self._deadline = None
        self.dials.clear()  # (each closes what it makes)
        for side in list(self.ups.values()):
            side.close()
        self.ups.clear()
        self.keys.clear()
        self.waiting.clear()
        self.held.clear()
        self.stopped.clear()
        for instance, n in self.counted.items():
            for _ in range(n):
                self.listener.drop_outstanding(instance)
        self.counted.clear()
        self.halves.lost()
        self.client.relay = None
        self._on_close(self)

    # -- choosing, counting --

    def _route_of(self, fields: Fields) -> CallRoute | None:
        """The service-router route a new call takes (h2_routes.py); None: none, or no
        router. The router in force now binds it (a changed entry, the next call)."""
        plan = self.listener.call_routes
        if plan is None:
            return None
        from gossamer.proxy.h2_routes import call_route  # (only with a router)

        return call_route(plan, self.listener, fields)

    def _choose(self, exclude: set[Key], target: str = "") -> Key | None:
        """An instance for a new call: its route's target, else the target drawn as for an
        HTTP request; then p2c over calls in flight among its instances not excluded nor set
        aside."""
        lst = self.listener
        target = target or lst.pick_target()
        candidates = lst.instances_for(target)
        if not candidates:  # (counted as a followed connection with none is: per call here)
            lst.refuse(tally.NO_HEALTHY_INSTANCE, lst.tried(0, target),
                       "call answered 503 (gRPC UNAVAILABLE)", target)  # fmt: skip
            return None
        # An instance whose connection is excluded but open (its GOAWAY came, or it has as
        # many calls as it takes) gets a connection of its own for the call; one excluded
        # with no connection is one this call's dial failed at. One whose GOAWAY came (it
        # may be shutting down: a call it refused is being sent again) is the last choice.
        tried, going = set(), set()
        for i in candidates:
            if (key := self._key(target, i)) in exclude:
                if not self._live(key):
                    tried.add(i)
                elif key in self.split.going_away:
                    going.add(i)
        costs = lst.outstanding
        ejected = lst.outliers.ejected(time.monotonic_ns() // 1_000_000)
        instance = balance.choose(candidates, costs, lst.rng, tried | going | ejected)
        if instance is None:  # all set aside: the least bad of those not tried
            instance = balance.choose(candidates, costs, lst.rng, tried | going)
        if instance is None:  # each one left said GOAWAY: a new connection to one
            instance = balance.choose(candidates, costs, lst.rng, tried)
        if instance is None:
            return None
        key = self._key(target, instance)
        if key in exclude:
            gen = self.generation[(target, instance)] = key[2] + 1
            key = (target, instance, gen)
        return key

    def _key(self, target: str, instance: Instance) -> Key:
        return (target, instance, self.generation.get((target, instance), 0))

    def _live(self, key: Key) -> bool:
        return key in self.ups or key in self.dials

    def _done(self, status: int, route: str, seconds: float) -> None:
        """One call's outcome, on the edge with its route's label (as each request of an
        HTTP upstream), a 431 answered here too."""
        self.edge.answered(status, seconds, route)

    def _count(self) -> None:
        """The listener's calls in flight per instance follow this connection's."""
        now: dict[Instance, int] = {}
        for (_, instance, _), n in self.split.outstanding.items():
            now[instance] = now.get(instance, 0) + n
        lst, counted = self.listener, self.counted
        for instance in set(now) | set(counted):
            diff = now.get(instance, 0) - counted.get(instance, 0)
            for _ in range(diff):
                lst.add_outstanding(instance)
            for _ in range(-diff):
                lst.drop_outstanding(instance)
        self.counted = now
        clock = time.monotonic()
        busy = {key for key in self.split.outstanding}
        for key in self.ups:
            if key in busy:
                self.idle_since.pop(key, None)
            else:
                self.idle_since.setdefault(key, clock)

    # -- timers --

    def _arm(self) -> None:
        u = self.listener.upstream
        wake = min(u.pool_idle_s / 2, u.client_idle_s / 2 if u.client_idle_s else SWEEP_MAX_S)
        wake = min(max(wake, 0.05), SWEEP_MAX_S)
        self._timer = asyncio.get_running_loop().call_later(wake, self._sweep)

    def _sweep(self) -> None:
        """Retire upstream connections idle for `pool_idle_s`, or to an instance that left
        the catalog (each closes once its calls end); a client connection with no call for
        `client_idle_s` (`idle_timeout_ms`) is told GOAWAY and closed, as a followed one is."""
        self._timer = None
        if self.over:
            return
        lst, now = self.listener, time.monotonic()
        client_idle_s = lst.upstream.client_idle_s
        if self.split.open_calls or self.draining:
            self.quiet_since = now
        elif client_idle_s and now - self.quiet_since >= client_idle_s:
            lst.tally.add(f"outbound.http.{CLIENT_IDLE}")
            self.drain()
            if self.over:
                return
        idle_s = lst.upstream.pool_idle_s
        for key in list(self.ups):
            target, instance, _ = key
            gone = instance not in lst.instances_for(target)
            since = self.idle_since.get(key)
            if gone or (since is not None and now - since >= idle_s):
                self.run(self.split.retire(key))
                if self.over:
                    return
        self._arm()
