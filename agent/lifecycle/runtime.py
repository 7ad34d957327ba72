"""The composition root: open the parts in start order, serve, stop them in order.

Start order (parts.py) is chosen so that every failure that a person must
fix (data dir in use, port taken, serf cannot bind, name taken, join
impossible) happens before the agent reports ready, with one clear line and
exit code 1. Shutdown order is: stop answering, leave the ring (so peers see
`left`, not `failed`), stop serf, release the data dir. Signals are handled
from the first moment, so a SIGTERM while a retry-join is still waiting stops
the agent cleanly too; SIGHUP reloads once the parts are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

from gossamer.agent.config import AgentConfig
from gossamer.agent.lifecycle import bootstrap_query, systemd
from gossamer.agent.lifecycle.datadir import DataDirError
from gossamer.agent.lifecycle.describe import banner, status_line
from gossamer.agent.lifecycle.listeners import ListenError
from gossamer.agent.lifecycle.parts import Parts, RootHooks, open_parts
from gossamer.agent.lifecycle.status import AgentStatus
from gossamer.agent.lifecycle.tasks import TaskSet
from gossamer.agent.local.reaper import reap_forever
from gossamer.catalog.store import StoreError
from gossamer.gossip import clock_query
from gossamer.gossip.joining import JoinError
from gossamer.gossip.process import SerfFatalError

log = logging.getLogger("gossamer.agent")

EXIT_OK = 0
EXIT_FAILURE = 1

# Faults a person must fix; each is reported as one line and exit code 1.
_STARTUP_ERRORS = (StoreError, DataDirError, ListenError, SerfFatalError, JoinError)

T = TypeVar("T")


class Agent:
    def __init__(self, config: AgentConfig, reload_config: Callable[[], AgentConfig]) -> None:
        self.status = AgentStatus(config)
        self._tasks = TaskSet()
        self._shutdown = asyncio.Event()
        self._leave_on_shutdown = config.leave_on_terminate
        self._exit_code = EXIT_OK
        self._on_sighup: Callable[[], None] = self._sighup_while_starting
        self._hooks = RootHooks(
            tasks=self._tasks,
            load_config=reload_config,
            fail=self.fail,
            request_shutdown=lambda leave: self.request_shutdown(leave=leave),
            leave_on_stop=lambda: self._shutdown.is_set() and self._leave_on_shutdown,
        )

    def request_shutdown(self, *, leave: bool) -> None:
        self._leave_on_shutdown = leave
        self._shutdown.set()

    def fail(self, message: str) -> None:
        """A fault after start-up that ends the agent (e.g. serf's name conflict)."""
        log.error("%s", message)
        self._exit_code = EXIT_FAILURE
        self._leave_on_shutdown = False
        self._shutdown.set()

    async def run(self) -> int:
        """Start, serve until a signal or a fatal fault, stop; returns the exit code."""
        self._install_signal_handlers()
        try:
            parts = await self._unless_stopped(open_parts(self.status, self._hooks))
        except _STARTUP_ERRORS as exc:  # what opened is closed again
            log.error("%s", exc)
            return EXIT_FAILURE
        if parts is None:  # stopped while opening, which closed what it opened
            return self._exit_code
        self._on_sighup = partial(self._reload, parts)
        self._start_loops(parts)
        try:
            ready = await self._unless_stopped(self._join(parts))
        except JoinError as exc:
            log.error("%s", exc)
            await self._stop(parts, leave=False)
            return EXIT_FAILURE
        if ready:
            await self._shutdown.wait()
            systemd.notify("STOPPING=1", "STATUS=leaving the cluster")
        await self._stop(parts, leave=self._leave_on_shutdown)
        return self._exit_code

    async def _unless_stopped(self, step: Coroutine[Any, Any, T]) -> T | None:
        """Run a start-up step; None if a signal (or a fatal fault) asked to stop first.

        systemd hears STOPPING before the step is cancelled, as after a full start.
        """
        starting = asyncio.create_task(step, name="start")
        stopping = asyncio.create_task(self._shutdown.wait(), name="shutdown")
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if starting.done():
            return starting.result()  # raises what the step raised
        systemd.notify("STOPPING=1", "STATUS=leaving the cluster")
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, *_STARTUP_ERRORS):
            await starting
        return None

    def _start_loops(self, parts: Parts) -> None:
        spawn = self._tasks.spawn
        spawn(parts.members.run(), "members")
        spawn(parts.replicator.run(), "replication")
        spawn(reap_forever(parts.local), "reaper")
        spawn(parts.intentions.collect_forever(), "intention-gc")
        spawn(parts.ca.collect_forever(), "ca-gc")
        spawn(parts.acl.collect_forever(), "acl-gc")
        spawn(parts.config_entries.collect_forever(), "config-entries-gc")
        spawn(parts.identity_loop.run(), "identity")
        spawn(clock_query.answer_forever(lambda: parts.serf.client), "clock-answers")
        spawn(bootstrap_query.answer_forever(lambda: parts.serf.client, parts.acl), "acl-bootstrap")

    async def _join(self, parts: Parts) -> bool:
        """Join, then tell systemd, the log and the terminal that the agent is ready."""
        await parts.joins.at_start()
        self.status.ready = True
        config = self.status.config
        systemd.notify("READY=1", f"STATUS={status_line(config)}")
        log.info("agent ready: %s", status_line(config))
        print(banner(config, parts.node_id), flush=True)
        return True

    async def _stop(self, parts: Parts, *, leave: bool) -> None:
        """Stop answering, leave the ring, stop serf, release the data dir."""
        self._tasks.cancel_all()
        parts.catalog.release_all()  # parked blocking queries would hold up the shutdown
        await parts.http.cleanup()
        parts.replicator.stop()
        parts.peer_rpc.close()
        await parts.peer_rpc.wait_closed()
        parts.dns.close()
        await parts.local.stop()
        await parts.serf.stop(leave=leave)
        if leave:
            parts.joins.forget_peers()
            log.info("left the cluster")
        parts.store.close()
        parts.data_dir.close()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_shutdown_signal, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_shutdown_signal, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, lambda: self._on_sighup())

    def request_shutdown_signal(self, name: str) -> None:
        if self._shutdown.is_set():
            return
        log.info("%s received: leaving the cluster and stopping", name)
        self.request_shutdown(leave=self.status.config.leave_on_terminate)

    def _reload(self, parts: Parts) -> None:
        self._tasks.spawn(parts.reloader.reload_logged(), "reload")

    def _sighup_while_starting(self) -> None:
        log.warning("SIGHUP received while starting: ignored (reload once the agent runs)")
