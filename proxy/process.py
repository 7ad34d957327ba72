"""The proxy process's signals: one sidecar (`serve`) or every sidecar of an agent (`serve_node`).

Both modes answer the same signals (runtime.py and node.py say what each
step does): SIGTERM or SIGINT stops listening, drains open connections up to
the drain timeout and exits 0; SIGHUP asks the agent again for everything it
told the proxy; SIGUSR1 logs the counters. `__main__.py` runs one of the two.
A sidecar whose inbound port cannot be had at start (taken, say by another
proxy serving the same registration) exits 1 with one line saying where and
why (listen.CannotListen), as an agent it cannot reach does.
With worker processes (workers.py, `crew`), worker 0 passes each signal on
and exits once every worker has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable

from gossamer.proxy import heap, native
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.config import ProxyConfig
from gossamer.proxy.listen import CannotListen
from gossamer.proxy.node import NodeProxies
from gossamer.proxy.runtime import ProxyRuntime
from gossamer.proxy.workers import Crew

log = logging.getLogger("gossamer.proxy")


async def serve(config: ProxyConfig, base_url: str, crew: Crew) -> int:
    """Run a proxy until SIGTERM/SIGINT; 0 after a drain."""
    stop = asyncio.Event()
    await crew.join(stop)
    runtime = ProxyRuntime(config, AgentHttp(base_url), crew.fleet)
    _on_signals(stop, crew, runtime.reload, runtime.log_counts)
    try:
        started = await _started(runtime, stop)
    except CannotListen as exc:  # the inbound's (an upstream's or the metrics port is logged)
        runtime.stop_watches()
        await crew.stop()  # (none started yet: crew.start comes once the ports are open)
        if stop.is_set():  # told to stop already: a port it will not serve is no failure
            log.info("proxy: SIGTERM before the ports opened (inbound %s: %s)", exc.where,
                     exc.reason)  # fmt: skip
            return 0
        print(f"gossamer proxy: inbound {exc.where}: {exc.reason}", file=sys.stderr)
        return 1
    if not started:
        log.info("proxy: SIGTERM before the ports opened")
        _, code = await asyncio.gather(runtime.drain(), crew.stop(runtime.drain_s()))
        return code
    crew.start()
    heap.start_trimming()  # for the process's life: its timer goes with the loop
    log.info("proxy: running for %s; %s", config.service, data_path())
    await stop.wait()
    log.info("proxy: SIGTERM: draining")
    _, code = await asyncio.gather(runtime.drain(), crew.stop(runtime.drain_s()))
    runtime.log_counts()
    return code


async def serve_node(base_url: str, drain_s: float, crew: Crew) -> int:
    """Serve every sidecar of the agent until SIGTERM/SIGINT; 0 after a drain.

    `drain_s` < 0: each registration's own drain timeout."""
    stop = asyncio.Event()
    await crew.join(stop)
    node = NodeProxies(AgentHttp(base_url), drain_s if drain_s >= 0 else None, crew.fleet,
                       served_first=crew.served_first)  # fmt: skip
    crew.served = node.served  # (told to the workers it starts: workers.py)
    _on_signals(stop, crew, node.reload, node.log_counts)
    crew.start()
    heap.start_trimming()  # for the process's life: its timer goes with the loop
    log.info("proxy: serving every sidecar of %s; %s", base_url, data_path())
    await node.run(stop)
    log.info("proxy: SIGTERM: draining %d sidecar(s)", len(node.runtimes))
    # what worker 0 waits for the others (workers.py): the longest drain any of them has
    longest = node.drain_s(default=max(drain_s, 0.0))
    _, code = await asyncio.gather(node.drain(), crew.stop(longest))
    node.log_counts()
    return code


async def _started(runtime: ProxyRuntime, stop: asyncio.Event) -> bool:
    """Start `runtime` (its ports open once warm, warm.py, which may take long when the agent
    cannot issue a leaf); False when `stop` came first, the start called off."""
    starting = asyncio.ensure_future(runtime.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if starting.done():
        starting.result()  # the inbound port that cannot be had ends the process (serve)
        return True
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    return False


def _on_signals(
    stop: asyncio.Event, crew: Crew, reload: Callable[[], None], log_counts: Callable[[], None]
) -> None:
    """Install the handlers on the running loop: SIGTERM or SIGINT sets `stop`; SIGHUP and
    SIGUSR1 act here and in every other worker. Then SIGTERM and SIGINT, held pending since
    the process started, are let through."""
    loop = asyncio.get_running_loop()

    def passed_on(sig: signal.Signals, act: Callable[[], None]) -> None:
        act()
        crew.forward(sig)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, passed_on, signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGUSR1, passed_on, signal.SIGUSR1, log_counts)
    # held since the process started (__main__.py): one that came meanwhile is taken now
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})


def data_path() -> str:
    """The start-up line's word on how the data path runs (native.py)."""
    mode = native.MODE
    return "data path compiled (mypyc)" if mode == "fresh" else f"data path in Python ({mode})"
