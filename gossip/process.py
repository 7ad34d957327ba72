"""The serf agent as a supervised child process: spawn, connect, restart, stop.

What serf is started with (settings, state dir files, command line) is
serf_launch.py; why it exited is read by serf_output.py. Rules this module
keeps:
- serf runs in its own session, so a Ctrl-C aimed at the gossamer agent does
  not also make serf leave on its own, behind the agent's back;
- serf gets SIGKILL from the kernel when its parent dies (PR_SET_PDEATHSIG),
  so a gossamer agent killed with SIGKILL never leaves a serf behind that
  keeps a dead host looking alive;
- the RPC listener is on loopback with a random auth key that serf reads from
  a 0600 config file (serf takes `rpc_auth` only from a file, not a flag);
- when serf dies unexpectedly it is restarted with exponential backoff, and
  the reason (its last error line) is logged; causes that a restart cannot
  cure (name conflict, port taken, missing binary) are reported as fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import secrets
import signal
import socket
from collections import deque
from collections.abc import Callable

from gossamer.gossip.keyring import KeyringFileError
from gossamer.gossip.rpc import SerfConnectionError, SerfError, SerfRpcClient
from gossamer.gossip.serf_launch import SerfSettings, serf_argv, write_launch_files
from gossamer.gossip.serf_output import classify_exit

log = logging.getLogger("gossamer.serf")

_PR_SET_PDEATHSIG = 1
RESTART_BACKOFF_START = 0.5  # seconds; doubles on every failed restart
RESTART_BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a serf that ran this long resets the backoff


class SerfFatalError(RuntimeError):
    """serf cannot run and restarting it will not help; the message says why."""


def _die_with_parent() -> None:
    """Runs in the child between fork and exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SerfProcess:
    """Starts, watches, restarts and stops one `serf agent`.

    `on_fatal` is called (once) from the supervisor task when serf exits for a
    reason that a restart cannot cure; the owner decides what to do (the
    gossamer agent exits with an error). `on_restart` is called right after a
    new serf was spawned: serf's snapshot may not hold the peers yet (it is
    written lazily), so the owner rejoins what it knew.
    """

    def __init__(
        self,
        settings: SerfSettings,
        on_fatal: Callable[[SerfFatalError], None] | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_fatal = on_fatal
        self._on_restart = on_restart
        self._auth_key = secrets.token_hex(16)
        self._rpc_port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._output: deque[str] = deque(maxlen=40)
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._client: SerfRpcClient | None = None
        self.restarts = 0

    @property
    def client(self) -> SerfRpcClient:
        if self._client is None:
            raise RuntimeError("serf is not started")
        return self._client

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def rpc_addr(self) -> str:
        return f"127.0.0.1:{self._rpc_port}"

    async def start(self, timeout: float = 20.0) -> SerfRpcClient:
        """Start serf and return a connected RPC client; SerfFatalError if it cannot run."""
        self._stopping = False
        self._rpc_port = free_loopback_port()
        await self._spawn_until_connected(timeout)
        self._supervisor = asyncio.create_task(self._supervise(), name="serf-supervisor")
        return self.client

    async def _spawn(self) -> asyncio.subprocess.Process:
        try:
            rpc_conf = write_launch_files(self.settings, self._auth_key)
        except OSError as exc:  # (once it ended the supervisor silently: no serf for good)
            raise SerfFatalError(
                f"cannot write serf's files in {self.settings.state_dir}: {exc}"
            ) from None
        except KeyringFileError as exc:
            raise SerfFatalError(str(exc)) from None
        self._output.clear()
        try:
            proc = await asyncio.create_subprocess_exec(
                *serf_argv(self.settings, self._rpc_port, rpc_conf),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except FileNotFoundError:
            raise SerfFatalError(
                f"the serf binary {self.settings.binary!r} was not found; install it "
                "(Debian: apt-get install serf)"
            ) from None
        except OSError as exc:  # out of processes or memory
            raise SerfFatalError(f"cannot start serf: {exc}") from None
        self._proc = proc
        self._reader = asyncio.create_task(self._pump_output(proc), name="serf-output")
        log.debug("started serf pid %d", proc.pid)
        return proc

    async def _spawn_until_connected(self, timeout: float) -> None:
        """Spawn serf and connect to its RPC; retries a taken RPC port once or twice."""
        for _ in range(3):
            proc = await self._spawn()
            try:
                await self._connect(proc, timeout)
                return
            except _RpcPortTaken:
                self._rpc_port = free_loopback_port()
        raise SerfFatalError("serf could not bind a loopback RPC port after 3 tries")

    async def _connect(self, proc: asyncio.subprocess.Process, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.02
        while True:
            if proc.returncode is not None:
                await self._drain_output()
                self._raise_exit_reason(proc.returncode)
            client = SerfRpcClient(self.rpc_addr, self._auth_key, reconnect=True)
            try:
                await client.connect()
            except SerfConnectionError:
                await client.close()
            else:
                if self._client is not None:
                    await self._client.close()
                self._client = client
                return
            if loop.time() > deadline:
                await self._kill(proc)
                raise SerfFatalError(f"serf did not open its RPC port within {timeout:.0f}s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), delay)
            delay = min(delay * 2, 0.25)

    def _raise_exit_reason(self, code: int) -> None:
        reason = classify_exit(list(self._output), self.settings, self.rpc_addr)
        if reason.rpc_port_taken:
            raise _RpcPortTaken()
        raise SerfFatalError(reason.message or f"serf exited with code {code}")

    async def _pump_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self._output.append(line)
            level = logging.WARNING if "[ERR]" in line else logging.DEBUG
            log.log(level, "serf: %s", line.strip())

    async def _drain_output(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), 2.0)

    async def _supervise(self) -> None:
        backoff = RESTART_BACKOFF_START
        loop = asyncio.get_running_loop()
        while not self._stopping:
            proc = self._proc
            assert proc is not None
            started = loop.time()
            code = await proc.wait()
            await self._drain_output()
            if self._stopping:
                return
            reason = classify_exit(list(self._output), self.settings, self.rpc_addr)
            if reason.fatal:
                log.error("serf exited: %s", reason.message)
                if self._on_fatal is not None:
                    self._on_fatal(SerfFatalError(reason.message))
                return
            if loop.time() - started > STABLE_AFTER:
                backoff = RESTART_BACKOFF_START
            log.warning(
                "serf exited unexpectedly (code %s: %s); restarting in %.1fs",
                code, reason.message or "no error output", backoff,
            )  # fmt: skip
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX)
            # A spawn that fails (its files cannot be written: the disk is full or read-only)
            # is tried again until it works: the agent is nothing without its serf.
            while not self._stopping and not await self._restart(backoff):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RESTART_BACKOFF_MAX)

    async def _restart(self, retry_s: float) -> bool:
        """Spawn serf again on the same RPC port and key; False (logged) when it could not be.

        The existing client reconnects by itself and re-subscribes its
        streams, so whoever watches member events keeps watching.
        """
        try:
            await self._spawn()
        except SerfFatalError as exc:
            log.error("serf restart failed: %s; trying again in %.1fs", exc, retry_s)
            return False
        self.restarts += 1
        log.info("serf restarted (pid %s)", self.pid)
        if self._on_restart is not None:
            self._on_restart()
        return True

    async def stop(self, *, leave: bool, timeout: float = 10.0) -> None:
        """Leave gracefully (peers see `left`) when asked, then make sure serf is gone."""
        self._stopping = True
        proc = self._proc
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if proc is not None and proc.returncode is None and leave and self._client is not None:
            try:
                await asyncio.wait_for(self._client.leave(), timeout)
            except (SerfError, TimeoutError, OSError) as exc:
                log.warning("graceful leave failed: %s", exc)
        if self._client is not None:
            await self._client.close()
        if proc is not None:
            await self._wait_or_kill(proc, timeout)
        if self._reader is not None:
            self._reader.cancel()

    async def _wait_or_kill(self, proc: asyncio.subprocess.Process, timeout: float) -> None:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
            return
        except TimeoutError:
            pass
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 3.0)
        except TimeoutError:
            await self._kill(proc)

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class _RpcPortTaken(Exception):
    """The random RPC port was grabbed by someone else between pick and bind."""
