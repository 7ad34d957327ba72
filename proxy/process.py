"""The proxy process's signals: one sidecar (`serve`) or every sidecar of an agent (`serve_node`).

Both modes answer the same signals (runtime.py and node.py say what each
step does): SIGTERM or SIGINT stops listening, drains open connections up to
the drain timeout and exits 0; SIGHUP asks the agent again for everything it
told the proxy; SIGUSR1 logs the counters. `__main__.py` runs one of the two.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from gossamer.proxy import heap, native
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.config import ProxyConfig
from gossamer.proxy.node import NodeProxies
from gossamer.proxy.runtime import ProxyRuntime

log = logging.getLogger("gossamer.proxy")


async def serve(config: ProxyConfig, base_url: str) -> int:
    """Run a proxy until SIGTERM/SIGINT; 0 after a drain."""
    runtime = ProxyRuntime(config, AgentHttp(base_url))
    stop = _on_signals(runtime.reload, runtime.log_counts)
    await runtime.start()
    heap.start_trimming()  # for the process's life: its timer goes with the loop
    log.info("proxy: running for %s; %s", config.service, data_path())
    await stop.wait()
    log.info("proxy: SIGTERM: draining")
    await runtime.drain()
    runtime.log_counts()
    return 0


async def serve_node(base_url: str, drain_s: float) -> int:
    """Serve every sidecar of the agent until SIGTERM/SIGINT; 0 after a drain.

    `drain_s` < 0: each registration's own drain timeout."""
    node = NodeProxies(AgentHttp(base_url), drain_s if drain_s >= 0 else None)
    stop = _on_signals(node.reload, node.log_counts)
    heap.start_trimming()  # for the process's life: its timer goes with the loop
    log.info("proxy: serving every sidecar of %s; %s", base_url, data_path())
    await node.run(stop)
    log.info("proxy: SIGTERM: draining %d sidecar(s)", len(node.runtimes))
    await node.drain()
    node.log_counts()
    return 0


def _on_signals(reload: Callable[[], None], log_counts: Callable[[], None]) -> asyncio.Event:
    """Install the handlers on the running loop; the event is set by SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGUSR1, log_counts)
    return stop


def data_path() -> str:
    """The start-up line's word on how the data path runs (native.py)."""
    mode = native.MODE
    return "data path compiled (mypyc)" if mode == "fresh" else f"data path in Python ({mode})"
