"""Warming: a sidecar's ports open only once serving on them can succeed. Shell.

A port that accepts before the proxy has a leaf, the intentions or its
upstream's instances fails its first clients: the connection is taken and
then closed, or answered `503`, and a sidecar's TCP check passes, so the
catalog sends callers to a sidecar that refuses them. So the listeners wait
for the leaf and roots (no TLS without them) and the first intentions
answer (no decision), without bound but logged every WARM_S, and each
upstream's listener also waits for the first answer of its health watch
and for its split to be resolved: the service-splitter entries known and,
when the upstream is split, its targets' instances (split_targets.py); at
most WARM_S for all of these together, then it opens with what it has (an
agent that never answers is its own fault to report; a split whose
targets were not heard of yet applies once they are, the upstream unsplit
until then). Until then a connect is refused at once. Envoy likewise opens
its listeners once its clusters are warm, Consul's once the discovery
chain is resolved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from gossamer.gossip.host_port import host_port
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.health_rows import Instance
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.shared_watch import Subscription

log = logging.getLogger("gossamer.proxy")
WARM_S: Final = 10.0
RETRY_S: Final = 5.0  # a port that could not be had is tried again so often


async def serving(identity: asyncio.Event, intentions: asyncio.Event) -> None:
    """Return once the proxy has an identity and the intentions."""
    while True:
        try:
            async with asyncio.timeout(WARM_S):
                await identity.wait()
                await intentions.wait()
                return
        except TimeoutError:
            missing = "a certificate" if not identity.is_set() else "the intentions"
            log.warning("proxy: no port opened yet: still waiting for %s from the agent", missing)


async def open_upstream(
    agent: AgentHttp,
    listener: UpstreamListener,
    wanted: Callable[[], bool],
    replacing: Callable[[], UpstreamListener | None] = lambda: None,
    resolved: Callable[[], Awaitable[None]] | None = None,
) -> Subscription | None:
    """Watch `listener`'s upstream's healthy instances, then, once they and `resolved()` (its
    split in force) are in, or WARM_S is out, listen (on the socket of the listener it is
    `replacing`, if any, asked then: that one serves until this one is warm); the watch, or
    None when the upstream is no longer `wanted` by then or its port cannot be had (logged)."""
    upstream, answered = listener.upstream, asyncio.Event()

    def on_rows(instances: list[Instance]) -> None:
        listener.set_instances(instances)
        answered.set()

    watch = Subscription(agent, upstream.name, on_rows)  # (one watch per process: shared_watch)
    watch.start()
    try:
        async with asyncio.timeout(WARM_S):
            await answered.wait()
            if resolved is not None:
                await resolved()
    except TimeoutError:
        missing = "its split not resolved (splitter entries or targets' instances)"
        if not answered.is_set():
            missing = "no instances"
        log.warning("proxy: upstream %s: %s from the agent in %.0f s, listening anyway",
                    upstream.name, missing, WARM_S)  # fmt: skip
    except asyncio.CancelledError:  # the proxy stops before it served
        watch.stop()
        raise
    if not wanted():  # removed from the registration meanwhile
        watch.stop()
        return None
    try:
        await listener.start(replacing())
    except OSError as exc:
        watch.stop()
        log.error("proxy: upstream %s cannot listen on %s: %s; trying again in %g s",
                  upstream.name, host_port(upstream.bind_address, upstream.bind_port),
                  exc, RETRY_S)  # fmt: skip
        return None
    return watch
