"""One proxy process for every sidecar registered on its agent (`connect proxy --node`).

Each sidecar gets its own `ProxyRuntime` — its own listeners, identity,
intentions and upstream watches — so it behaves exactly as a process of
its own would; they share the event loop, the agent client and nothing
else. The set of sidecars is watched as the sidecar mode watches its own
registration: a hash-blocking `GET /v1/agent/services` (connect-proxy kinds
only, `?hash=&wait=`), answered as soon as the list changes. A sidecar
registered starts being served, one deregistered stops listening and its
open connections get the drain timeout; a change inside a registration is
applied by its runtime's own watch, except one that makes the sidecar serve
another service (its service re-registered under the same ID with another
Name): the runtime watches its leaf and intentions by name and keeps the
old one, which a process of its own would leave to a restart, but here
nothing else restarts it, so that sidecar alone is drained and started
anew. The drain stops listening before the new runtime waits for its leaf,
so the inbound port is free when it binds (were it not, the runtime tries a
taken port again every RETRY_S). Changes are applied one list at a
time, the latest one seen. A registration the proxy cannot use is logged
once and skipped, and so is one with a listener on a port that a sidecar
served already listens on (node_ports.py: the log names both; it starts once
the list changes so that the port is free); the others keep running. Of
several that want one port and start together, the first by proxy ID gets
it, as in every worker starting with it; a worker started again later is
told the sidecars worker 0 serves (`served_first`, workers.py) and starts
those first, so that it makes worker 0's choices rather than its own.
Each sidecar's work runs in a context naming it, so each of its log lines
says whose it is (log_sidecar.py).
With ACLs on, the list holds only the sidecars the token may read; one the
agent left out (`X-Consul-Results-Filtered-By-ACLs: true`) is not served,
and that is logged once while it lasts (it went unserved without a word).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.config import ProxyConfig
from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_flags import with_drain
from gossamer.proxy.config_registration import config_from_registration
from gossamer.proxy.listen import CannotListen
from gossamer.proxy.log_sidecar import tagged
from gossamer.proxy.metrics_server import Fleet
from gossamer.proxy.node_ports import clash
from gossamer.proxy.runtime import ProxyRuntime
from gossamer.proxy.warm import RETRY_S
from gossamer.proxy.watch import Watch

log = logging.getLogger("gossamer.proxy")
FILTERED = "x-consul-results-filtered-by-acls"  # (Watch.headers: names lower-cased)
SERVICES = "/v1/agent/services?filter=Kind%20%3D%3D%20%22connect-proxy%22"


class NodeProxies:
    """The runtimes of every sidecar of one agent."""

    def __init__(
        self, agent: AgentHttp, drain_s: float | None = None, fleet: Fleet | None = None,
        served_first: frozenset[str] = frozenset(),
    ) -> None:  # fmt: skip
        self.agent = agent
        self._served_first = served_first  # (for the first list only: module docstring)
        self.fleet = fleet  # with worker processes (workers.py)
        self.runtimes: dict[str, ProxyRuntime] = {}
        self._drain_s = drain_s
        self._refused: dict[str, str] = {}  # proxy id -> the problem last logged
        self._stopping: dict[asyncio.Task[None], ProxyRuntime] = {}  # drains under way
        self._starting: dict[str, asyncio.Task[None]] = {}  # runtimes whose ports are not open
        self._latest: dict[str, Any] | None = None  # the last list the watch delivered
        self._changed = asyncio.Event()
        self._watch = Watch(agent, SERVICES, self._on_services, by_hash=True)
        self._hidden = False  # the agent's last list left out what the token may not read

    def _on_services(self, body: object) -> None:
        if not isinstance(body, dict):
            log.error("proxy: the agent's service list is not an object; keeping the last")
            return
        hidden = self._watch.headers.get(FILTERED, "").lower() == "true"
        if hidden and not self._hidden:
            log.warning("proxy: the agent hid sidecar registrations from this token (ACLs: "
                        "X-Consul-Results-Filtered-By-ACLs); those are not served: give the "
                        "token service:read on every service, and service:write on each "
                        "sidecar's service")  # fmt: skip
        elif self._hidden and not hidden:
            log.info("proxy: the agent no longer hides sidecar registrations from this token")
        self._hidden = hidden
        self._latest = body
        self._changed.set()

    async def sync(self, found: dict[str, Any]) -> None:
        """Start runtimes for new sidecars, stop those whose registration is gone, restart
        those that now serve another service (a runtime cannot change its service)."""
        for proxy_id in [p for p in self.runtimes if p not in found]:
            self._stop(proxy_id, "deregistered")
        for proxy_id in [p for p in self._refused if p not in found]:
            del self._refused[proxy_id]  # (registered again as it was: said again)
        configs = {proxy_id: _config_of(body, proxy_id) for proxy_id, body in found.items()}
        first, self._served_first = self._served_first, frozenset()
        for proxy_id, body in sorted(found.items(), key=lambda item: (item[0] not in first,
                                                                      item[0])):  # fmt: skip
            runtime = self.runtimes.get(proxy_id)
            config = configs[proxy_id]
            service = config.service if config is not None else None
            if runtime is not None and service not in (None, runtime.config.service):
                self._stop(proxy_id, f"now serves {service}, not {runtime.config.service}")
            if proxy_id not in self.runtimes:
                self._start(proxy_id, body, configs)
        for proxy_id, runtime in list(self.runtimes.items()):  # a port freed: a held change
            tagged(proxy_id).run(runtime.vet_again)

    def _clash_of(self, proxy_id: str, config: ProxyConfig) -> str | None:
        """What of a running sidecar's changed `config` would listen where another sidecar
        does (as registered now, else as served), in words naming both; None: nothing. Applied
        unchecked, the listener failed with a bare "address already in use", tried again
        every 5 s for good, where the same registration at start is refused naming both."""
        found = self._latest or {}
        served = [(other, (_config_of(found[other], other) if other in found else None)
                   or runtime.config)
                  for other, runtime in self.runtimes.items() if other != proxy_id]  # fmt: skip
        return clash(config, served)

    def _start(self, proxy_id: str, body: dict[str, Any],
               configs: dict[str, ProxyConfig | None]) -> None:  # fmt: skip
        try:
            config = with_drain(config_from_registration(body, proxy_id), self._drain_s)
        except (ConfigError, ValueError, TypeError) as exc:  # (one sidecar's, not the node's)
            self._refuse(proxy_id, str(exc))
            return
        # The ports of those served as their registrations have them now (their runtimes may
        # not have applied a change yet: one that frees a port must let this one start).
        served = [(other, configs.get(other) or runtime.config)
                  for other, runtime in self.runtimes.items()]  # fmt: skip
        if (why := clash(config, served)) is not None:
            self._refuse(proxy_id, why)  # (tried again on the next change of the list)
            return
        self._refused.pop(proxy_id, None)
        runtime = ProxyRuntime(config, self.agent, self.fleet)
        runtime.node_managed = True
        runtime.vet = lambda changed: self._clash_of(proxy_id, changed)
        self.runtimes[proxy_id] = runtime
        # Each on its own: a sidecar waiting for its leaf (warm.py) holds up no other one.
        starting = asyncio.create_task(runtime.start(), context=tagged(proxy_id))
        self._starting[proxy_id] = starting
        starting.add_done_callback(lambda task: self._started(proxy_id, runtime, task))

    def _refuse(self, proxy_id: str, why: str) -> None:
        if self._refused.get(proxy_id) != why:  # logged once a problem
            log.error("proxy: sidecar %s cannot be served: %s", proxy_id, why)
            self._refused[proxy_id] = why

    def _started(self, proxy_id: str, runtime: ProxyRuntime, task: asyncio.Task[None]) -> None:
        if self._starting.get(proxy_id) is task:
            del self._starting[proxy_id]
        # stopped (or replaced by a runtime for another service) before this came: not ours
        if task.cancelled() or self.runtimes.get(proxy_id) is not runtime:
            return
        if (exc := task.exception()) is not None:
            # let go of it (its watches too), and try again: a port still taken is freed, a
            # leaf still missing comes (the next look at the registrations starts it anew)
            why = f"inbound {exc.where}: {exc.reason}" if isinstance(exc, CannotListen) else exc
            log.error("proxy: sidecar %s cannot be served: %s; trying again in %g s",
                      proxy_id, why, RETRY_S)  # fmt: skip
            del self.runtimes[proxy_id]
            self._stopping_one(runtime)
            asyncio.get_running_loop().call_later(RETRY_S, self._changed.set)
            return
        log.info("proxy: serving sidecar %s for %s", proxy_id, runtime.config.service)

    def _stop(self, proxy_id: str, why: str) -> None:
        runtime = self.runtimes.pop(proxy_id)
        starting = self._starting.pop(proxy_id, None)
        if starting is not None:
            starting.cancel()  # (its ports never opened; drain stops its watches)
        log.info("proxy: sidecar %s %s: draining it", proxy_id, why)
        self._stopping_one(runtime)

    def _stopping_one(self, runtime: ProxyRuntime) -> None:
        task = asyncio.create_task(runtime.drain(), context=tagged(runtime.config.proxy_id))
        self._stopping[task] = runtime
        task.add_done_callback(lambda done: self._stopping.pop(done, None))

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the set of runtimes in step with the agent until `stop` is set."""
        self._watch.start()
        stopped = asyncio.create_task(stop.wait())
        try:
            while True:
                changed = asyncio.create_task(self._changed.wait())
                await asyncio.wait({changed, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if stopped.done():
                    changed.cancel()
                    return
                self._changed.clear()
                if self._latest is not None:
                    await self.sync(self._latest)
        finally:
            self._watch.stop()
            stopped.cancel()

    async def drain(self) -> None:
        for starting in self._starting.values():
            starting.cancel()
        draining = [asyncio.create_task(r.drain(), context=tagged(proxy_id))
                    for proxy_id, r in self.runtimes.items()]  # fmt: skip
        await asyncio.gather(*draining, *self._stopping)

    def served(self) -> list[str]:
        """The sidecars served as registered, for a worker started anew to serve first: not
        one holding a change (its registration names a port another one serves here; served
        first there, it would take that port from the one that has it here)."""
        return [proxy_id for proxy_id, r in self.runtimes.items() if not r.holding]

    def drain_s(self, default: float) -> float:
        """The longest drain timeout of the sidecars served or still draining (one
        deregistered just before SIGTERM drains on, in every worker); `default` with none."""
        runtimes = [*self.runtimes.values(), *self._stopping.values()]
        return max((r.drain_s() for r in runtimes), default=default)

    def reload(self) -> None:
        self._watch.restart()
        for proxy_id, runtime in self.runtimes.items():
            tagged(proxy_id).run(runtime.reload)

    def log_counts(self) -> None:
        for proxy_id, runtime in self.runtimes.items():
            tagged(proxy_id).run(runtime.log_counts)


def _config_of(body: dict[str, Any], proxy_id: str) -> ProxyConfig | None:
    """The config a registration describes; None when it is unusable (a running sidecar's
    own watch logs that and keeps the last, so it is no reason to restart it)."""
    try:
        return config_from_registration(body, proxy_id)
    except (ConfigError, ValueError, TypeError):
        return None
