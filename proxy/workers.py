"""Worker processes: one proxy on more than one core (`connect proxy --workers N`).

One Python process runs on one core at a time, so a proxy that must use N
cores runs as N processes, as nginx does. The process `connect proxy`
became (the one systemd or Nomad supervises) is worker 0; it starts N-1
more, each a fresh `python -m gossamer.proxy` with the same arguments (not
a fork: a running event loop does not survive one). Every worker runs the
whole proxy: its own watches, identity, decisions, pools and listeners,
bound with SO_REUSEPORT (listen.py) so the kernel spreads new connections
over the workers. Worker 0 alone serves the metrics port, summing the
others' figures on each scrape (worker_link.py, fleet_sum.py).

With `--node`, worker 0 tells each worker it starts which sidecars it serves
(SERVED_ENV): of two sidecars that want one port, the one served first
keeps it, and a worker started again (it died) sees both at once; it must
give the port to the one the others serve, not to the first by proxy ID,
or the port would go out as two identities (node.py).

Worker 0 passes SIGTERM, SIGINT, SIGHUP and SIGUSR1 on to every worker and,
on SIGTERM, exits once they all have (0 when each drained cleanly; one still
running 10 s past the drain timeout is killed). A
worker that dies is started again: after 1 s, doubling up to 60 s while it
keeps dying within a minute of its start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from gossamer.proxy.fleet_sum import Remembered, Snapshot
from gossamer.proxy.metrics_server import Fleet, MetricsServer, Source, Tls
from gossamer.proxy.worker_link import WORKER_ENV, Asker, Offered, WorkerLink

log = logging.getLogger("gossamer.proxy")
FIRST_DELAY_S, MAX_DELAY_S, STEADY_S = 1.0, 60.0, 60.0


SETTLING_S: Final = 2.0  # a worker started this recently gets no SIGHUP or SIGUSR1 passed on
# past the drain timeout, what a worker has to exit after SIGTERM before it is killed
KILL_GRACE_S: Final = 10.0  # (its last denial report to the agent may take 5 s)
SERVED_ENV: Final = "GOSSAMER_PROXY_SERVED"  # the proxy IDs worker 0 serves, a JSON list


def served_of(value: str | None) -> frozenset[str]:
    """The proxy IDs SERVED_ENV names; none for a value that is missing or not a list of
    strings (the worker then chooses as worker 0 did at its start: by proxy ID)."""
    try:
        ids = json.loads(value or "[]")
    except ValueError:
        return frozenset()
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return frozenset()
    return frozenset(ids)


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    pidfd: int
    asker: Asker
    started: float
    delay_s: float  # before starting it again, should it die now


class Crew:
    """This process's part among the proxy's processes. As itself, the only worker (the
    default): nothing to start, tell or wait for."""

    fleet: Fleet | None = None
    # With --node: the sidecars worker 0 serves (worker 0 reads them from its node); those a
    # worker started by it serves first, of any that want one port (SERVED_ENV)
    served: Callable[[], Sequence[str]] = staticmethod(lambda: ())
    served_first: frozenset[str] = frozenset()

    async def join(self, stop: asyncio.Event) -> None:
        pass

    def start(self) -> None:
        pass

    def forward(self, sig: signal.Signals) -> None:
        pass

    async def stop(self, drain_s: float = 0.0) -> int:
        return 0


class Workers(Crew):
    """Worker 0's view of the others: start, watch, restart, signal, ask for figures."""

    def __init__(self, argv: Sequence[str], count: int) -> None:
        self.fleet = self
        self.argv = list(argv)
        self.count = count
        self.running: dict[int, _Worker] = {}
        self.codes: dict[int, int] = {}  # exit codes of workers that ended after `stop`
        self._stopping = False
        self._all_done = asyncio.Event()
        self.memory = Remembered()  # so that summed figures never go back (fleet_sum.py)

    def start(self) -> None:
        for index in range(1, self.count):
            self._start(index, FIRST_DELAY_S)

    def _start(self, index: int, delay_s: float) -> None:
        if self._stopping:
            return
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        env = dict(os.environ, **{WORKER_ENV: f"{index}:{theirs.fileno()}",
                                  SERVED_ENV: json.dumps(sorted(self.served()))})  # fmt: skip
        try:
            proc = subprocess.Popen([sys.executable, "-m", "gossamer.proxy", *self.argv],
                                    env=env, pass_fds=(theirs.fileno(),),
                                    stdin=subprocess.DEVNULL)  # fmt: skip
        except OSError as exc:  # out of processes or memory: try again later
            ours.close()
            log.error("proxy: cannot start worker %d: %s; trying again in %.0f s", index, exc,
                      delay_s)  # fmt: skip
            loop.call_later(delay_s, self._start, index, min(delay_s * 2, MAX_DELAY_S))
            return
        finally:
            theirs.close()
        pidfd = os.pidfd_open(proc.pid)
        loop.add_reader(pidfd, self._ended, index)
        self.running[index] = _Worker(index, proc, pidfd, Asker(ours), loop.time(), delay_s)
        log.info("proxy: worker %d started, pid %d", index, proc.pid)

    def _ended(self, index: int) -> None:
        worker = self.running.pop(index)
        loop = asyncio.get_running_loop()
        loop.remove_reader(worker.pidfd)
        os.close(worker.pidfd)
        worker.asker.close()
        self.memory.ended(index)
        code = worker.proc.wait()
        if self._stopping:
            self.codes[index] = code
            if not self.running:
                self._all_done.set()
            return
        lived = loop.time() - worker.started
        delay = FIRST_DELAY_S if lived >= STEADY_S else worker.delay_s
        log.error("proxy: worker %d (pid %d) exited with %d after %.0f s; starting it again "
                  "in %.0f s", index, worker.proc.pid, code, lived, delay)  # fmt: skip
        loop.call_later(delay, self._start, index, min(delay * 2, MAX_DELAY_S))

    def forward(self, sig: signal.Signals) -> None:
        now = asyncio.get_running_loop().time()
        for worker in self.running.values():
            # SIGHUP and SIGUSR1 (read again, log the counters) mean nothing to a worker still
            # starting, which reads everything afresh; before its first lines run, one would
            # end it (their default). SIGTERM goes to all.
            if sig == signal.SIGTERM or now - worker.started >= SETTLING_S:
                worker.proc.send_signal(sig)

    async def stop(self, drain_s: float = 0.0) -> int:
        """SIGTERM every worker and wait for them: 0 when each drained, else 1. One still
        running KILL_GRACE_S past the drain timeout `drain_s` (wedged, or stopped with
        SIGSTOP) is killed: the process its supervisor watches must not hang on it."""
        self._stopping = True
        self.forward(signal.SIGTERM)
        if self.running:
            try:
                async with asyncio.timeout(drain_s + KILL_GRACE_S):
                    await self._all_done.wait()
            except TimeoutError:
                left = sorted(w.proc.pid for w in self.running.values())
                log.error("proxy: worker(s) %s still running %.0f s after SIGTERM: killing "
                          "them", left, drain_s + KILL_GRACE_S)  # fmt: skip
                for worker in self.running.values():
                    worker.proc.kill()
                await self._all_done.wait()
        # -SIGTERM: a worker still starting, before its handlers: it had nothing to drain
        failed = {i: c for i, c in self.codes.items() if c not in (0, -signal.SIGTERM)}
        if failed:
            log.error("proxy: worker(s) exited with an error: %s", failed)
        return 1 if failed else 0

    async def figures(self, addr: str) -> list[list[Snapshot]]:
        """Every worker's figures behind the metrics address `addr`: the running ones' (the
        last they gave, for one that does not answer), and what those that ended counted."""
        workers = list(self.running.values())
        answers = await asyncio.gather(*(w.asker.ask(addr) for w in workers))
        # One that exited while the others were asked has its last figures in `gone` now:
        # its answer, remembered as a running worker's, would count it twice.
        mine = [
            self.memory.answered(w.index, addr, a)
            for w, a in zip(workers, answers, strict=True)
            if self.running.get(w.index) is w
        ]
        return [*mine, self.memory.gone(addr)]

    def metrics_server(self, addr: str, source: Source, tls: Tls) -> MetricsServer:
        return MetricsServer(addr, source, others=self.figures, tls=tls)


class Worker(Crew):
    """Worker 1 to N-1: its metrics go to worker 0 over the link; it drains when worker 0 is
    gone."""

    def __init__(self, fd: int, served_first: frozenset[str] = frozenset()) -> None:
        self.fleet = self
        self.fd = fd
        self.served_first = served_first
        self.link: WorkerLink | None = None

    async def join(self, stop: asyncio.Event) -> None:
        self.link = WorkerLink(self.fd, stop.set)
        await self.link.start()

    def metrics_server(self, addr: str, source: Source, tls: Tls) -> Offered:
        assert self.link is not None
        return Offered(self.link, addr, source)
