"""A running sidecar proxy: its watches, its listeners, its signals.

Start order: the configuration (a sidecar registration, read once to fail
fast with exit 2, then watched by content hash; or an ad-hoc config), the
leaf and roots watches (no listener is useful before the first leaf), the
intentions watch (`match?by=destination`), whose answers carry the agent's
default policy (`X-Gossamer-Default-Policy`; a reload of the agent that
changes it wakes the watch, so a new default applies like an intention
change; without it the default is deny; an answer without a list for the
service is not applied), the service-splitter and service-resolver entries
(`/v1/config/service-splitter`, `/v1/config/service-resolver`,
split_targets.py), then, once serving can
succeed (warm.py), the inbound listener and one listener per upstream, each
with its health watch (and one per other target of its split). Revoked agents
(`/v1/connect/ca/revoked`) go into the peers' trust; a new one also cuts open
connections it issued a leaf of.

A registration change applies without a restart: upstreams are added,
removed or replaced (upstream_set.py; open connections finish, and a drain
waits for them and cuts them as it does the others), others are not
touched; a changed inbound port or local app restarts the inbound listener
only. What a change closes is closed before what it opens is opened, so a
port one edit moves between the proxy's listeners is free for its new one;
`gossamer_metrics` applies from the next connection. SIGTERM/SIGINT
(process.py): stop listening, let open connections finish for up to the
drain timeout, cut the rest, exit 0. SIGHUP: read the registration, the
default policy, the leaf, the roots and the intentions again. SIGUSR1: log
the counters. Denied connections are reported to the agent about once a
second while there are new ones (denial_report.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gossamer.gossip.host_port import host_port
from gossamer.intentions.validate import IntentionError
from gossamer.proxy import tally, warm
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.config import ConfigError, ProxyConfig
from gossamer.proxy.config_flags import keep_pinned
from gossamer.proxy.config_registration import config_from_registration
from gossamer.proxy.config_unused import unused_keys
from gossamer.proxy.denial_report import DenialReporter, batch_table
from gossamer.proxy.edge_metrics import EdgeMetrics
from gossamer.proxy.identity import Identity
from gossamer.proxy.identity_watch import IdentityWatch
from gossamer.proxy.inbound import Inbound
from gossamer.proxy.intention_memo import IntentionMemo
from gossamer.proxy.intention_read import let_go, read_intentions
from gossamer.proxy.json_items import NoSuchArray
from gossamer.proxy.metrics_server import Fleet, MetricsLike, open_metrics
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.policy import Policy
from gossamer.proxy.split_targets import PATH as SPLITTERS
from gossamer.proxy.split_targets import RESOLVERS, ROUTERS
from gossamer.proxy.upstream_set import UpstreamSet
from gossamer.proxy.warm import RETRY_S  # one period for every port not had
from gossamer.proxy.watch import Watch

if TYPE_CHECKING:
    from gossamer.proxy.expose_set import ExposeSet

log = logging.getLogger("gossamer.proxy")
DEFAULT_POLICY = "x-gossamer-default-policy"  # on intentions match answers (lower-cased)
# Every sidecar of the process reads its intentions through this one: --node's sidecars
# share the rows their answers have in common (intention_memo.py).
INTENTION_ROWS = IntentionMemo()


class ProxyRuntime:
    """One sidecar proxy in this event loop."""

    def __init__(self, config: ProxyConfig, agent: AgentHttp, fleet: Fleet | None = None) -> None:
        self.config = config
        self.agent = agent
        self.fleet = fleet  # with worker processes: who serves the metrics port (workers.py)
        self.tally = tally.Tally()
        # The proxy's start, shared by every metrics listener it opens (metrics_server.py)
        self.metrics = EdgeMetrics(config.service, enabled=config.metrics, started_s=time.time())
        self.metrics_server: MetricsLike | None = None
        self.denials = DenialReporter(agent, batch_table())
        self.policy = Policy()
        self.inbound: Inbound | None = None
        # Listeners a registration change closed whose connections go on: drain waits for
        # them and cuts what is left of them as it does for the current ones.
        self.retired: list[Inbound | UpstreamListener] = []
        self.closed_one = asyncio.Event()  # set whenever a relayed connection closes
        self.upstreams = UpstreamSet(agent, lambda: self.identity, self.tally, self.metrics,
                                     self.closed_one.set, self.retired,
                                     lambda: self.config.timeouts.drain_s)  # fmt: skip
        self.trust = IdentityWatch(config.service, self._recheck_peers)
        self.exposed: ExposeSet | None = None  # made once a registration exposes a path
        self.policy_known = asyncio.Event()  # the first intentions answer came
        self.warm = False  # both came: the ports are opened (warm.py)
        self._watches: list[Watch] = []
        self._intentions: Watch | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.draining = False  # from SIGTERM on, a registration change opens nothing
        self.node_managed = False  # one of --node's: node.py restarts it for a renamed service
        # What keeps a usable registration change from being applied yet (node.py: a port
        # another sidecar of the process serves), in words; the change is held until
        # `vet_again` finds it gone, rather than opened to fail and be retried for good.
        self.vet: Callable[[ProxyConfig], str | None] = lambda _config: None
        self._held: dict[str, Any] | None = None  # the registration held back, and why
        self._held_why: str | None = None
        self._unused_said: list[str] = []  # the registration's ignored keys, last logged

    async def start(self) -> None:
        """Watch the identity and the intentions, then open the listeners once they came."""
        svc = self.config.service
        self._watch(f"/v1/agent/connect/ca/leaf/{svc}", self.trust.on_leaf)
        self._watch("/v1/agent/connect/ca/roots", self.trust.on_roots)
        self._watch("/v1/connect/ca/revoked", self.trust.on_revoked)
        match = f"/v1/connect/intentions/match?by=destination&name={svc}"
        self._intentions = self._watch(match, self._on_intentions, raw=True)
        self._watch(SPLITTERS, self._on_splitters)
        self._watch(RESOLVERS, self.upstreams.on_resolvers)
        self._watch(ROUTERS, self.upstreams.on_routers)
        if self.config.proxy_id:
            self._watch(f"/v1/agent/service/{self.config.proxy_id}", self._on_registration,
                        by_hash=True)  # fmt: skip
        await warm.serving(self.trust.ready, self.policy_known)
        self.warm = True
        await self._apply(self.config, first=True)
        self.denials.start()

    def _watch(self, path: str, on_change: Any, *, by_hash: bool = False,
               raw: bool = False) -> Watch:  # fmt: skip
        watch = Watch(self.agent, path, on_change, by_hash=by_hash, raw=raw)
        watch.start()
        self._watches.append(watch)
        return watch

    @property
    def identity(self) -> Identity | None:
        return self.trust.identity

    def _recheck_peers(self) -> int:
        """Trust was taken away: every open connection checked again; how many were cut."""
        return sum(listener.recheck_peers() for listener in self._listeners())  # retired too

    async def _on_intentions(self, body: bytes) -> None:
        # Read a few rows at a time, the policy in force deciding meanwhile (intention_read.py).
        # An agent's match answer always names the service asked about (`{"db": []}` when
        # nothing matches). One that does not is not about us: taken as "no intentions",
        # it cut every open connection under the default deny.
        headers = self._intentions.headers if self._intentions else {}  # (this answer's)
        before = self.policy.intentions
        try:
            intentions = await read_intentions(body, self.config.service, INTENTION_ROWS,
                                               before)  # fmt: skip
        except NoSuchArray:
            log.error("proxy: intentions answer unusable, keeping the previous one: it has no "
                      "list for %s", self.config.service)  # fmt: skip
            return
        except (IntentionError, TypeError) as exc:  # (bad JSON: the watch asks again)
            log.error("proxy: intentions answer unusable, keeping the previous one: %s", exc)
            return
        self.policy.intentions = intentions
        allow = headers.get(DEFAULT_POLICY) == "allow"
        if self.policy.known and self.policy.default_allow != allow:
            log.info("proxy: the agent's default intention policy is now %s",
                     "allow" if allow else "deny")  # fmt: skip
        self.policy.default_allow = allow
        self.policy.known = True
        self.policy_known.set()
        self.tally.add("intentions.updates")
        for listener in self._listeners():  # a retired inbound's connections are decided too
            if isinstance(listener, Inbound):
                listener.recheck()
        replaced = [before]
        del before
        await let_go(replaced)  # (the watch asks again after: the agent keeps what comes)

    def _on_splitters(self, body: Any) -> None:
        self.upstreams.on_splitters(body)

    def _on_registration(self, body: dict[str, Any]) -> None:
        self._held = None
        if (unused := unused_keys(body)) != self._unused_said:  # said once, not per answer
            self._unused_said = unused
            if unused:
                log.warning("proxy: the registration sets keys this proxy does not use, "
                            "ignored: %s", ", ".join(unused))  # fmt: skip
        try:
            config = keep_pinned(config_from_registration(body, self.config.proxy_id), self.config)
        except ConfigError as exc:
            log.error("proxy: registration changed but cannot be used, keeping the last: %s", exc)
            return
        if config == self.config:
            return
        if self.draining:
            log.info("proxy: draining: the registration changed, nothing more is opened")
            return
        if config.service != self.config.service:  # its leaf and intentions are watched by name
            if self.node_managed:  # (node.py starts a new sidecar for it)
                return
            log.error("proxy: the registration now names service %r, not %r: restart the proxy "
                      "to serve it; keeping %r", config.service, self.config.service,
                      self.config.service)  # fmt: skip
            return
        if (why := self.vet(config)) is not None:  # (node.py: a port another sidecar serves)
            if why != self._held_why:
                log.error("proxy: registration changed but cannot be used yet, keeping the "
                          "last: %s", why)  # fmt: skip
            self._held, self._held_why = body, why
            return
        self._held_why = None
        if self.warm:
            self._spawn(self._apply(config))
        else:  # no port open yet (warm.py): the first _apply takes it
            self.config = config

    @property
    def holding(self) -> bool:
        """A registration change is held back (`vet`): it serves the one before, not the one
        registered now (a worker started anew must not take the registered one as served)."""
        return self._held is not None

    def vet_again(self) -> None:
        """A change `vet` held back is tried again: what stood in its way may be gone."""
        if self._held is not None:
            self._on_registration(self._held)

    async def _apply(self, config: ProxyConfig, *, first: bool = False) -> None:
        old, self.config = self.config, config
        self.metrics.switch(config.metrics)  # (read from the next connection on)
        if not first:
            self._release(old, config)
        wanted = bool(config.bind_port and config.local_port)
        if first or _inbound_of(old) != _inbound_of(config) or (wanted and self.inbound is None):
            known = None  # the chains verified: a resumed session's lone leaf needs its own
            # On the same address and port (a new local app, protocol or limit), the new
            # listener takes over the old one's socket: no client is refused in between.
            same_port = _bound(old) == _bound(config) and self.inbound is not None
            replacing = self.inbound if wanted and same_port else None
            if self.inbound is not None:
                if replacing is None:
                    self.inbound.stop_listening()
                self.retired.append(self.inbound)
                known, self.inbound = self.inbound.chains, None
            if wanted:
                inbound = Inbound(config, lambda: self.identity, self.policy, self.tally,
                                  self.denials.table, self.metrics)  # fmt: skip
                inbound.chains = known or inbound.chains
                inbound.on_close = self.closed_one.set
                try:
                    await inbound.start(replacing)
                except OSError as exc:
                    if first:
                        raise
                    # the rest of the change applies; the port is tried again until it opens
                    where = host_port(config.bind_address, config.bind_port)
                    log.error("proxy: inbound %s cannot be opened (%s); trying again in %g s",
                              where, exc, RETRY_S)  # fmt: skip
                    asyncio.get_running_loop().call_later(RETRY_S, self._again)
                else:
                    self.inbound = inbound
                finally:
                    if replacing is not None:
                        replacing.stop_listening()
        elif self.inbound is not None:
            # Its listener stays; what it reads per connection (the handshake and local
            # connect timeouts) is the new registration's from the next connection on.
            self.inbound.config = config
        if first or old.metrics_addr != config.metrics_addr:
            await self._serve_metrics(config.metrics_addr)
        for listener in [r for r in self.retired if not r.open_count()]:
            listener.idle.stop()  # its timer held it for half the idle timeout (upstream_set)
        self.retired[:] = [r for r in self.retired if r.open_count()]
        await self.upstreams.change(config.upstreams)
        if config.expose or self.exposed is not None:
            await self._expose(config)

    async def _expose(self, config: ProxyConfig) -> None:
        """The exposed paths' listeners (expose_set.py), imported on the first one."""
        if self.exposed is None:
            from gossamer.proxy.expose_set import ExposeSet

            self.exposed = ExposeSet(self.tally, self.closed_one.set)
        await self.exposed.change(config)

    def _release(self, old: ProxyConfig, config: ProxyConfig) -> None:
        """Close what the change ends before anything opens: a port an edit moves from one
        listener to another (an upstream's to the inbound or metrics one, the metrics one to
        the inbound) is then free for it; opened first, the new one failed and waited out
        its retry. (The inbound listener closes next, before its successor opens.)"""
        self.upstreams.release(config.upstreams)
        if self.exposed is not None:
            self.exposed.release(config)
        if old.metrics_addr != config.metrics_addr and self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None

    def _again(self) -> None:
        """A listener that could not be opened: the current config applied again."""
        if not self.draining and self.inbound is None:
            self._spawn(self._apply(self.config))

    async def _serve_metrics(self, addr: str) -> None:
        if self.metrics_server is not None:
            self.metrics_server.close()
        self.metrics_server = await open_metrics(addr, self.served, self._metrics_tls, self.fleet)
        if self.metrics_server is None and addr:  # its port taken (logged): tried again, as
            # when the sidecar it replaces (--node) still drains on it
            asyncio.get_running_loop().call_later(RETRY_S, self._metrics_again, addr)

    def _metrics_again(self, addr: str) -> None:
        if not self.draining and self.metrics_server is None and self.config.metrics_addr == addr:
            self._spawn(self._serve_metrics(addr))

    def _metrics_tls(self) -> Identity | None:  # what a metrics peer from elsewhere must pass
        return self.identity

    def served(self) -> list[tuple[EdgeMetrics, tally.Tally]]:
        """What this proxy's metrics listener renders."""
        return [(self.metrics, self.tally)]

    def reload(self) -> None:
        """SIGHUP: ask the agent again for everything it told us."""
        log.info("proxy: SIGHUP: reading registration, identity, intentions and policy again")
        for watch in self._watches:
            watch.restart()

    def _listeners(self) -> list[Inbound | UpstreamListener]:
        """Every listener with connections of this proxy: current, then retired."""
        current = self.upstreams.listeners()
        return [*([self.inbound] if self.inbound else []), *current, *self.retired]

    def open_connections(self) -> int:
        """Open and in-flight (handshake, app connect) connections: what a drain waits for."""
        exposed = self.exposed.open_count() if self.exposed is not None else 0
        return exposed + sum(listener.open_count() for listener in self._listeners())

    def drain_s(self) -> float:
        """The drain timeout: how long a drain may take."""
        return self.config.timeouts.drain_s

    async def drain(self) -> None:
        """Stop listening, let open connections finish up to the drain timeout, cut the rest."""
        self.draining = True
        if self.inbound is not None:
            self.inbound.stop_listening()
        self.upstreams.stop()
        if self.exposed is not None:
            self.exposed.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeouts.drain_s
        log.info("proxy: draining %d open connection(s), at most %.0f s",
                 self.open_connections(), self.config.timeouts.drain_s)  # fmt: skip
        while self.open_connections() and (left := deadline - loop.time()) > 0:
            self.closed_one.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed_one.wait(), min(left, 0.5))
        left = self.open_connections()
        if left:
            log.warning("proxy: drain timeout: cutting %d connection(s)", left)
        for each in self._listeners():
            each.terminate_all()
        if self.exposed is not None:
            self.exposed.terminate_all()
        self.retired.clear()
        self.stop_watches()
        if self.metrics_server is not None:
            self.metrics_server.close()
        self.denials.stop()
        await self.denials.flush()

    def stop_watches(self) -> None:
        for watch in self._watches:
            watch.stop()
        self.upstreams.stop_watches()
        self.trust.stop()  # its leaf's overdue and expiry lines

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def log_counts(self) -> None:
        shown = ", ".join(f"{k}={v}" for k, v in self.tally.snapshot().items() if v)
        log.info("proxy: counters for %s: %s", self.config.service, shown or "(all zero)")


def _bound(config: ProxyConfig) -> tuple[str, int]:
    return (config.bind_address, config.bind_port)


def _inbound_of(config: ProxyConfig) -> tuple[object, ...]:
    return (config.bind_address, config.bind_port, config.local_address, config.local_port,
            config.protocol, config.headers_timeout_s, config.max_header_bytes,
            config.request_timeout_s, config.request_idle_s, config.client_idle_s)  # fmt: skip
