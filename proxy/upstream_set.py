"""A sidecar's upstream listeners, as its registration changes them. Shell.

An `Upstream` is a value: any change to one is the old one removed and a
new one added. Rules this module keeps:

- An upstream added opens its listener once its instances are known and
  its split is resolved (warm.py): the service-splitter and
  service-resolver entries heard of and, when it is split or resolved
  elsewhere, its targets' instances (split_targets.py; the
  splits are handed to it before it listens), at most `warm.WARM_S`.
- One removed stops listening; its open connections go on, in `retired`,
  which the runtime's drain waits for and cuts as it does the others. When
  the registration no longer leads its port to its service (removed, or its
  `DestinationName` changed), what is still open after the drain timeout
  is cut, as Envoy cuts a draining listener's connections after its drain
  time: a client's pooled connections would otherwise reach the old
  service for as long as they live. A change that keeps the port's
  service (a timeout, the protocol) lets them live on. An
  HTTP one's keep-alive clients are told to go with their next answer
  (outbound.retire); until the last has, its instances are still watched
  (`retiring`), so that answer comes from an instance there now.
- One replaced by another on the same address and port keeps serving
  until its successor is warm, which then takes over its listening socket
  (listen.take_over), so no connect is refused in between; then it is
  retired as a removed one. A successor that never listens (removed again
  meanwhile, or its port lost) still retires it, once nothing else warms
  for that port.
- One whose port cannot be had is tried again every `warm.RETRY_S` while
  the registration wants it.
- After `stop` (the drain) nothing more opens.
- A retired listener's idle sweep (idle_sweep.py) is stopped once nothing
  of it is open: its timer, armed for half the idle timeout (30 min by
  default), held the listener, its pools and caches that long. A sidecar
  whose registration gained and lost an upstream a few hundred times
  (bench/soak.py) held every removed listener.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from gossamer.gossip.host_port import host_port
from gossamer.proxy import tally, warm
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.config import Upstream
from gossamer.proxy.edge_metrics import EdgeMetrics
from gossamer.proxy.identity import Identity
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.shared_watch import Subscription
from gossamer.proxy.split_targets import Splitters

log = logging.getLogger("gossamer.proxy")
Port = tuple[str, int]  # a listener's bind address and port


class Retired(Protocol):
    def append(self, listener: UpstreamListener, /) -> None: ...


class UpstreamSet:
    """The upstream listeners of one sidecar, current and being replaced."""

    def __init__(self, agent: AgentHttp, identity: Callable[[], Identity | None],
                 counts: tally.Tally, metrics: EdgeMetrics, on_close: Callable[[], None],
                 retired: Retired, grace_s: Callable[[], float] = lambda: 15.0
                 ) -> None:  # fmt: skip
        """`grace_s`: how long the connections of a listener whose service changed go on
        (the sidecar's drain timeout)."""
        self.agent = agent
        self._grace_s = grace_s
        self._kept: list[UpstreamListener] = []  # retired, connections open, service kept

        self._identity = identity
        self._tally = counts
        self._metrics = metrics
        self._on_close = on_close  # a relayed connection closed (the runtime's drain listens)
        self._retired = retired  # where listeners no longer wanted go, connections and all
        self.splitters = Splitters(agent)
        self.current: dict[Upstream, tuple[UpstreamListener, Subscription]] = {}
        self.replaced: dict[Port, tuple[UpstreamListener, Subscription]] = {}  # serving until taken
        self._opening: dict[Upstream, UpstreamListener] = {}  # waiting to be warm (warm.py)
        self._wanted: tuple[Upstream, ...] = ()
        self._again_tasks: set[asyncio.Task[None]] = set()  # ports tried again (`_again`)
        # Retired HTTP listeners with clients still on them, and their watches (module doc)
        self.retiring: list[tuple[UpstreamListener, Subscription]] = []
        self._sweeping: list[UpstreamListener] = []  # retired, their idle sweep still armed
        self.stopped = False

    async def change(self, wanted: Sequence[Upstream]) -> None:
        """Make the listeners those of `wanted`: others removed or replaced, new ones opened
        (returns once they listen)."""
        self.release(wanted)
        added = [u for u in wanted if u not in self.current and u not in self._opening]
        await asyncio.gather(*(self._open(upstream) for upstream in added))

    def release(self, wanted: Sequence[Upstream]) -> None:
        """Stop the listeners `wanted` has no more (one replaced on its port serves on until
        its successor takes it over): the runtime calls it before it opens its other
        listeners, so a port an edit moves from an upstream to one of those is free."""
        self._wanted = tuple(wanted)
        self._judge_kept()
        for upstream in [u for u in self.current if u not in wanted]:
            listener, watch = self.current.pop(upstream)
            if any(u.listen == upstream.listen for u in wanted):
                self.replaced[upstream.listen] = (listener, watch)
                log.info("proxy: upstream %s changed", upstream.name)
            else:
                self._retire(listener, watch)
                log.info("proxy: upstream %s removed", upstream.name)

    def listeners(self) -> list[UpstreamListener]:
        """Every listener still serving: current and being replaced."""
        return [listener for listener, _ in (*self.current.values(), *self.replaced.values())]

    def stop(self) -> None:
        """Stop listening (the drain): their connections go on; nothing more opens."""
        self.stopped = True
        for listener in [*self.listeners(), *(r for r, _ in self.retiring)]:
            listener.stop_listening()  # (a retiring one's idle clients closed now)

    def stop_watches(self) -> None:
        for _, watch in (*self.current.values(), *self.replaced.values(), *self.retiring):
            watch.stop()
        self.splitters.stop()

    def on_splitters(self, body: object) -> None:
        """The service-splitter entries changed (split_targets.py): listeners still warming
        get theirs too."""
        self.splitters.on_entries(body, [*self.listeners(), *self._opening.values()])

    def on_resolvers(self, body: object) -> None:
        """The service-resolver entries changed (split_targets.py), for warming ones too."""
        self.splitters.on_resolvers(body, [*self.listeners(), *self._opening.values()])

    def on_routers(self, body: object) -> None:
        """The service-router entries changed (split_targets.py), for warming ones too."""
        self.splitters.on_routers(body, [*self.listeners(), *self._opening.values()])

    async def _open(self, upstream: Upstream) -> None:
        listener = UpstreamListener(upstream, self._identity, self._tally, metrics=self._metrics)
        listener.on_close = self._closed
        self._opening[upstream] = listener
        port = upstream.listen
        if self.splitters.known:  # (else they are handed over when they come: on_splitters)
            self.splitters.apply(listener)
        watch = None
        try:
            watch = await warm.open_upstream(
                self.agent, listener, lambda: upstream in self._wanted and not self.stopped,
                lambda: self.replaced.get(port, (None,))[0],
                lambda: self.splitters.resolved(listener))  # fmt: skip
        finally:
            del self._opening[upstream]
            if watch is None:  # it never listened: its targets' watches go
                self.splitters.forget(listener)
            replaced = None
            if not any(u.listen == port for u in self._opening):  # (none else warms for it)
                replaced = self.replaced.pop(port, None)
            if replaced is not None:
                self._retire(*replaced)
        if watch is None:  # no longer wanted, or its port could not be had (logged)
            if upstream in self._wanted and not self.stopped:
                asyncio.get_running_loop().call_later(warm.RETRY_S, self._again, upstream)
            return
        self.current[upstream] = (listener, watch)

    def _again(self, upstream: Upstream) -> None:
        """Open an upstream whose port could not be had (another program held it, or a
        listener of a sidecar still draining), while the registration still wants it: as the
        inbound port, it used to be given up for good after one error."""
        if (self.stopped or upstream not in self._wanted or upstream in self.current
                or upstream in self._opening):  # fmt: skip
            return
        task = asyncio.ensure_future(self._open(upstream))
        self._again_tasks.add(task)
        task.add_done_callback(self._again_tasks.discard)

    def _retire(self, listener: UpstreamListener, watch: Subscription) -> None:
        listener.retire()
        self._retired.append(listener)
        self._sweeping.append(listener)
        self._end_sweeps()
        if listener.open_count():
            self._kept.append(listener)
            self._judge_kept()
        if listener.http is not None and listener.open_count():
            self.retiring.append((listener, watch))
        else:
            self._let_go(listener, watch)

    def _judge_kept(self) -> None:
        """Retired listeners whose port no longer leads to their service (now, or since a
        later change) get the drain timeout's grace, then are cut (`_cut`)."""
        self._kept = [k for k in self._kept if k.open_count()]
        for listener in list(self._kept):
            was = listener.upstream
            if not any(u.listen == was.listen and u.name == was.name for u in self._wanted):
                self._kept.remove(listener)
                grace = self._grace_s()
                asyncio.get_running_loop().call_later(grace, self._cut, listener, grace)

    def _cut(self, listener: UpstreamListener, grace: float) -> None:
        """The grace of a listener whose service changed is over: what is left is cut."""
        left = listener.open_count()
        if left and not self.stopped:  # (after `stop` the runtime's drain cuts it)
            log.info("proxy: upstream %s on %s changed or went %g s ago: cutting its %d "
                     "connection(s) left", listener.upstream.name,
                     host_port(*listener.upstream.listen), grace, left)  # fmt: skip
            listener.terminate_all()

    def _closed(self) -> None:
        """A relayed connection or HTTP client closed: a retiring listener left with none
        needs its instances no more."""
        self._on_close()
        if self._sweeping:
            self._end_sweeps()
        for listener, watch in [r for r in self.retiring if not r[0].open_count()]:
            self.retiring.remove((listener, watch))
            self._let_go(listener, watch)

    def _end_sweeps(self) -> None:
        """Stop the idle sweeps of retired listeners with nothing open left (module doc)."""
        for listener in [x for x in self._sweeping if not x.open_count()]:
            self._sweeping.remove(listener)
            listener.idle.stop()

    def _let_go(self, listener: UpstreamListener, watch: Subscription) -> None:
        watch.stop()
        self.splitters.forget(listener)
