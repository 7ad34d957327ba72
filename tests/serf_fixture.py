"""Real `serf agent` processes for integration tests, plus `eventually`.

Each agent gets its own loopback address (127.0.0.x), free ports found by
binding port 0, its own work dir, and an rpc_auth key in a JSON config file
(serf reads rpc_auth only from a file). Readiness is a polled TCP connect to
the RPC port with a deadline; `SerfCluster.aclose` always kills everything.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gossamer.gossip.rpc import SerfRpcClient
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async

T = TypeVar("T")

SERF = shutil.which("serf")
AUTH_KEY = "test-rpc-secret"
# Spread loopback addresses across runs so a dying serf from one test never
# shares an address with the next test's agents.
_ips = itertools.cycle(range(2, 250))
for _ in range(os.getpid() % 240):
    next(_ips)


@dataclass
class SerfAgent:
    """One serf process; ports are fixed at creation so it can be restarted."""

    node: str
    workdir: Path
    extra_args: Sequence[str] = ()
    auth_key: str | None = AUTH_KEY
    bind_ip: str = field(default_factory=lambda: f"127.0.0.{next(_ips)}")
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.bind_port = free_port(self.bind_ip)
        self.rpc_port = free_port("127.0.0.1")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {"rpc_auth": self.auth_key} if self.auth_key else {}
        (self.workdir / "config.json").write_text(json.dumps(config))

    @property
    def rpc_addr(self) -> str:
        return f"127.0.0.1:{self.rpc_port}"

    @property
    def bind_addr(self) -> str:
        return f"{self.bind_ip}:{self.bind_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert SERF is not None, "serf binary not installed"
        argv = [
            SERF, "agent",
            f"-node={self.node}",
            f"-bind={self.bind_addr}",
            f"-rpc-addr={self.rpc_addr}",
            f"-config-file={self.workdir / 'config.json'}",
            "-profile=local",  # fast failure detection on loopback
            "-log-level=debug",
            *self.extra_args,
        ]  # fmt: skip
        log = (self.workdir / "serf.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll until the RPC port accepts connections; fail early if serf exits."""

        async def accepting() -> bool:
            if not self.running:
                raise RuntimeError(f"serf {self.node} exited:\n{self.log_text()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.rpc_port)
            except OSError:
                return False
            writer.close()
            return True

        await eventually_async(accepting, timeout, interval=0.02)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def pause(self) -> None:
        """SIGSTOP, then wait until every thread is stopped (the signal is async)."""
        assert self.proc is not None
        self.signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.proc.pid}/task")

        def all_stopped() -> bool:  # each task/<tid>/stat reads "tid (comm) STATE ..."
            states = [
                (t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()
            ]
            return all(state in ("T", "t") for state in states)

        await eventually_async(all_stopped, retry_on=(AssertionError, OSError), interval=0.01)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: no leave message, peers see the node fail."""
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_text(self) -> str:
        path = self.workdir / "serf.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


class SerfCluster:
    """Starts agents and clients for one test and cleans all of them up."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.agents: list[SerfAgent] = []
        self.clients: list[SerfRpcClient] = []

    async def start(
        self, node: str, *, extra_args: Sequence[str] = (), auth_key: str | None = AUTH_KEY
    ) -> SerfAgent:
        agent = SerfAgent(node, self.root / node, extra_args, auth_key)
        self.agents.append(agent)
        agent.start()
        await agent.wait_ready()
        return agent

    async def client(self, agent: SerfAgent, **kwargs: Any) -> SerfRpcClient:
        """A connected client for `agent`, closed at teardown."""
        kwargs.setdefault("timeout", 10.0)
        client = SerfRpcClient(agent.rpc_addr, kwargs.pop("auth_key", agent.auth_key), **kwargs)
        self.clients.append(client)
        await client.connect()
        return client

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()
        for agent in self.agents:
            agent.kill()
