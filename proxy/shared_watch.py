"""A service's passing instances, watched once per process however many listeners want them. Shell.

Each upstream listener (warm.py) and each split target (split_targets.py)
used to keep a blocking query of its own on `/v1/health/connect/<name>`.
Under `--node` many sidecars call the same services, and each change of
such a service was answered, fetched, read and applied once per sidecar:
walked with a real agent, 30 sidecars calling db (2,000 instances, three
checks flipping every 100 ms) had the node proxy at 86% of a core and the
agent at 67%, for one service's health. Now one watch per agent and
service serves every `Subscription` to it in the process:

- a subscription started while the watch already has an answer gets that
  answer at once (on the next turn of the loop), then every later one, in
  order; the watch is started by the first subscription and stopped with
  the last one (the next starts it afresh);
- each subscriber's callback runs in the context it was started in
  (`--node`: its sidecar's, so its log lines name it); one that raises is
  logged and the others still get the answer;
- the watch itself (watch.py, with `settle_s` and `item`) runs in no
  sidecar's context: its lines are about the agent, not one sidecar.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable

from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.health_rows import Instance, instance_of
from gossamer.proxy.watch import INSTANCES_SETTLE_S, Watch

log = logging.getLogger("gossamer.proxy")
OnInstances = Callable[[list[Instance]], None]


class _Hub:
    """One watch and the subscriptions it serves."""

    def __init__(self, agent: AgentHttp, path: str) -> None:
        self.path = path
        self.readers: list[Subscription] = []
        self.latest: list[Instance] = []
        self.answers = 0  # how many answers came: a reader that has seen fewer is behind
        self.watch = Watch(agent, path, self._answered, settle_s=INSTANCES_SETTLE_S,
                           item=instance_of)  # fmt: skip
        contextvars.Context().run(self.watch.start)  # (in no sidecar's context)

    def _answered(self, instances: list[Instance]) -> None:
        self.latest, self.answers = instances, self.answers + 1
        for reader in list(self.readers):
            reader.deliver(self)


_HUBS: dict[tuple[AgentHttp, str], _Hub] = {}


class Subscription:
    """One reader of a service's passing instances: `start`, then `stop` when done."""

    def __init__(self, agent: AgentHttp, service: str, on_change: OnInstances,
                 query: str = "passing") -> None:  # fmt: skip
        """`query`: the health query (a resolver subset's adds its filter, resolver_chain.py)."""
        self.path = f"/v1/health/connect/{service}?{query}"
        self._agent = agent
        self._on_change = on_change
        self._context = contextvars.copy_context()
        self._hub: _Hub | None = None
        self._seen = 0  # answers of the hub delivered to this reader

    def start(self) -> None:
        key = (self._agent, self.path)
        hub = _HUBS.get(key)
        if hub is None:
            hub = _HUBS[key] = _Hub(self._agent, self.path)
        self._hub, self._seen = hub, 0
        self._context = contextvars.copy_context()  # whose work this is (--node: a sidecar's)
        hub.readers.append(self)
        if hub.answers:  # (what it has, once start has returned, as a watch's first answer)
            asyncio.get_running_loop().call_soon(self.deliver, hub)

    def stop(self) -> None:
        hub, self._hub = self._hub, None
        if hub is None:
            return
        hub.readers.remove(self)
        if not hub.readers:
            hub.watch.stop()
            del _HUBS[(self._agent, self.path)]

    def deliver(self, hub: _Hub) -> None:
        """Hand on the hub's latest answer, unless this reader has it already or stopped."""
        if hub is not self._hub or self._seen >= hub.answers:
            return
        self._seen = hub.answers
        try:
            self._context.run(self._on_change, hub.latest)
        except Exception:  # one reader's fault: the others still get the answer
            log.exception("proxy: watching %s: an answer could not be applied", self.path)
