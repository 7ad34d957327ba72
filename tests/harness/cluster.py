"""Real gossamer agents (each with its real serf child) on 127.0.0.x addresses.

Every agent gets its own loopback address, its own free ports and its own
data dir, so a test can run several on one machine. `Cluster.close()` stops
them all and the fixture then checks that no serf or agent process is left.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import workers
from tests.harness.poll import eventually

READY_TIMEOUT = 30.0
# Its own generator, seeded from the OS: a test (or pytest-randomly) seeding the
# global one must not make every cluster of every run pick the same addresses.
_RNG = random.Random()


_HANDED_OUT: set[tuple[str, int]] = set()


def free_port(ip: str) -> int:
    """A port free for TCP and UDP on `ip` (serf needs both), never one handed out before in
    this process: the kernel may give a port just closed to the next bind, and an agent's
    http and rpc ports picked one after the other once came out the same (a CI failure);
    nor one another test process may pick (tests/harness/workers.py)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for _ in range(200):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((ip, 0))
            port = int(tcp.getsockname()[1])
            if (ip, port) in _HANDED_OUT or not workers.owns_port(port):  # (another test process's)
                continue
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((ip, port))
                except OSError:
                    continue
                _HANDED_OUT.add((ip, port))
                return port
    raise RuntimeError(f"no free port on {ip}")


def http_json(
    url: str, method: str = "GET", body: Any = None, timeout: float = 10.0, token: str = "",
    cafile: str | None = None,
) -> Any:  # fmt: skip
    data = None if body is None else json.dumps(body).encode()
    headers = {"X-Consul-Token": token} if token else {}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    context = ssl.create_default_context(cafile=cafile) if url.startswith("https:") else None
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


@dataclass
class AgentProc:
    name: str
    ip: str
    data_dir: Path
    http_port: int
    dns_port: int
    serf_port: int
    rpc_port: int
    log_path: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None
    prefix: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", "h1"]
    log_level: str | None = "debug"  # None: leave it to the config files
    token: str = ""  # sent as X-Consul-Token by get/put (an agent with ACLs on)
    https_port: int | None = None  # with http_port -1, get/put go over HTTPS here
    cafile: str | None = None  # what verifies the agent's HTTPS certificate

    @property
    def host(self) -> str:
        """The address as a URL or host:port writes it: an IPv6 one in brackets."""
        return f"[{self.ip}]" if ":" in self.ip else self.ip

    @property
    def http(self) -> str:
        if self.http_port == -1:
            return f"https://{self.host}:{self.https_port}"
        return f"http://{self.host}:{self.http_port}"

    @property
    def serf_addr(self) -> str:
        return f"{self.host}:{self.serf_port}"

    def argv(self) -> list[str]:
        return [
            *self.prefix,
            sys.executable, "-m", "gossamer.agent", "agent",
            "--node", self.name,
            "--bind", self.ip,
            "--client", self.ip,
            "--http-port", str(self.http_port),
            "--dns-port", str(self.dns_port),
            "--serf-port", str(self.serf_port),
            "--rpc-port", str(self.rpc_port),
            "--data-dir", str(self.data_dir),
            *(["--log-level", self.log_level] if self.log_level else []),
            *self.extra,
        ]  # fmt: skip

    def start(self, wait: bool = True) -> AgentProc:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def enrolled(self) -> bool:
        """Whether this agent holds a valid agent certificate (it can sync over agent RPC)."""
        identity = self.get("/v1/agent/self")["Gossamer"]["Identity"]
        return bool(identity["AgentCertificate"]["Valid"])

    def get(self, path: str) -> Any:
        return http_json(self.http + path, token=self.token, cafile=self.cafile)

    def put(self, path: str, body: Any = None) -> Any:
        return http_json(self.http + path, "PUT", body, token=self.token, cafile=self.cafile)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"agent {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                return bool(self.get("/v1/agent/self")["Gossamer"]["Ready"])
            except (OSError, urllib.error.URLError, KeyError, ValueError):
                return False

        eventually(ready, timeout, what=f"agent {self.name} to be ready")

    def members(self) -> dict[str, int]:
        return {m["Name"]: m["Status"] for m in self.get("/v1/agent/members")}

    def serf_pids(self) -> list[int]:
        return serf_pids_for(self.data_dir)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def serf_pids_for(data_dir: Path) -> list[int]:
    """Serf processes whose snapshot lives in `data_dir` (i.e. that agent's child)."""
    needle = f"-snapshot={data_dir}/".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"serf\0agent" in cmdline and needle in cmdline:
            pids.append(int(entry.name))
    return pids


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


class Cluster:
    """A set of agents on 127.<a>.<b>.x for one test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.net = f"127.{_RNG.randint(20, 250)}.{_RNG.randint(1, 250)}"
        self.agents: list[AgentProc] = []

    def new_agent(self, name: str, *extra: str, index: int | None = None) -> AgentProc:
        ip = f"{self.net}.{(index if index is not None else len(self.agents)) + 1}"
        agent = AgentProc(
            name=name,
            ip=ip,
            data_dir=self.root / name,
            http_port=free_port(ip),
            dns_port=free_port(ip),
            serf_port=free_port(ip),
            rpc_port=free_port(ip),
            log_path=self.root / f"{name}.log",
            extra=list(extra),
        )
        self.agents.append(agent)
        return agent

    def start(
        self, count: int, prefix: str = "node", extra: tuple[str, ...] = (), token: str = ""
    ) -> list[AgentProc]:
        """Start `count` agents, the later ones joining the first; wait until all see all.

        `extra` flags go to every agent; `token` is what get/put send (ACLs on)."""
        first = self.new_agent(f"{prefix}1", *extra)
        first.token = token
        first.start(wait=False)
        rest = [
            self.new_agent(f"{prefix}{i}", *extra, "--join", first.serf_addr)
            for i in range(2, count + 1)
        ]
        for agent in rest:
            agent.token = token
        first.wait_ready()
        for agent in rest:
            agent.start(wait=False)
        for agent in rest:
            agent.wait_ready()
        agents = [first, *rest]
        names = {a.name for a in agents}
        for agent in agents:
            eventually(
                lambda a=agent: {n for n, s in a.members().items() if s == 1} == names,
                15,
                what=f"{agent.name} to see all {count} alive",
            )
        for agent in agents:  # agent RPC (sync) needs each agent's certificate
            eventually(agent.enrolled, 20, what=f"{agent.name} to hold its agent certificate")
        return agents

    def close(self) -> list[str]:
        """Kill every agent at once; return descriptions of processes left behind: a serf
        still alive 5 s after its agent died (the kernel owes it a SIGKILL then,
        gossip/process.py). A test's teardown needs no graceful leave, which took 1-2.5 s an
        agent, one at a time (agents leaving together cannot ack each other's leave and
        serf then waits out its 5 s broadcast timeout): ~150 s of the suite. Tests of a
        SIGTERM's leave stop their agents themselves (`AgentProc.stop`)."""
        running = [a.proc for a in self.agents if a.proc is not None and a.proc.poll() is None]
        for proc in running:
            proc.kill()
        for proc in running:
            proc.wait(10)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(
            pid_alive(pid) for agent in self.agents for pid in agent.serf_pids()
        ):
            time.sleep(0.02)
        leftovers = []
        for agent in self.agents:
            for pid in agent.serf_pids():
                if pid_alive(pid):
                    leftovers.append(f"serf pid {pid} of {agent.name}")
                    os.kill(pid, signal.SIGKILL)
        return leftovers


def exact(agent: AgentProc, source: str, destination: str) -> dict[str, Any] | None:
    """The intention `source => destination` as `agent` serves it; None when it has none."""
    query = urllib.parse.urlencode({"source": source, "destination": destination})
    try:
        found: dict[str, Any] = agent.get(f"/v1/connect/intentions/exact?{query}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return found


def put_exact(agent: AgentProc, source: str, destination: str, body: dict[str, Any]) -> None:
    """Write the intention `source => destination` on `agent` (asserting it said true)."""
    query = urllib.parse.urlencode({"source": source, "destination": destination})
    assert http_json(f"{agent.http}/v1/connect/intentions/exact?{query}", "PUT", body) is True
