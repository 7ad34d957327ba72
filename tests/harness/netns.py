"""Separate "hosts" for multi-host tests: one network namespace per host on a bridge.

Loopback clusters (tests/harness/cluster.py) share one network stack, so a
test cannot cut a single host off. Here every host is a network namespace
with its own `eth0` (one end of a veth pair; the other end is a port of a
bridge in the root namespace) and its own address. The bridge holds `.1`,
so the test process in the root namespace reaches every host's HTTP API.

Addresses come only from the RFC 2544 benchmarking range 198.18.0.0/15,
which no real network uses; each run picks a /24 in it that no interface
or route on this machine uses yet.

Every run writes a state file (owner pid and its start time) before it
creates anything, so `cleanup_leftovers()` can remove the namespaces,
bridge and processes of a run that crashed, without touching the ones of
another run going on at the same time.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness import workers
from tests.harness.cluster import AgentProc, pid_alive, serf_pids_for

PREFIX = "gs"  # every bridge (gsbr…), veth (gsv…) and namespace (gsns…) of ours
STATE_DIR = Path("/run/gossamer-test-netns")
BENCH_NET = ((198, 18), (198, 19))  # RFC 2544: 198.18.0.0/15 and nothing else

DEFAULT_PORTS = {"http": 8500, "dns": 8600, "serf": 8301, "rpc": 8300}
_RNG = random.Random()  # its own: a seeded global generator must not pick the same /24 each run


class NetnsError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


@functools.cache
def netns_available() -> tuple[bool, str]:
    """Whether this machine lets us make namespaces, veths and bridges, and if not, why.

    It really tries (a namespace, a veth pair moved into it, a bridge),
    because being root is not enough inside some containers.
    """
    if shutil.which("ip") is None:
        return False, "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return False, "network namespaces need root (run the tests as root)"
    tag = secrets.token_hex(3)
    ns, br, veth = f"{PREFIX}probe{tag}", f"{PREFIX}pbr{tag}", f"{PREFIX}pv{tag}"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", br, "type", "bridge")
        _ip("link", "add", veth, "type", "veth", "peer", "name", veth + "p")
        _ip("link", "set", veth + "p", "netns", ns)
        _ip("link", "set", veth, "master", br)
        _ip("-n", ns, "link", "set", "lo", "up")
        return True, ""
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return False, f"cannot make network namespaces here: {exc}"
    finally:
        _ip("link", "del", veth, check=False)
        _ip("link", "del", br, check=False)
        _ip("netns", "del", ns, check=False)


def _proc_start_time(pid: int) -> str | None:
    """Start time of `pid` in clock ticks, so a reused pid is not taken for its owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _ns_pids(ns: str) -> list[int]:
    proc = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def _kill_ns(ns: str, timeout: float = 5.0) -> None:
    """SIGKILL every process in namespace `ns` (all of them were started by the harness)."""
    deadline = time.monotonic() + timeout
    while pids := [p for p in _ns_pids(ns) if pid_alive(p)]:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise NetnsError(f"processes {pids} in namespace {ns} do not die")
        time.sleep(0.05)


def _delete(names: list[str], bridges: list[str]) -> None:
    for ns in names:
        with contextlib.suppress(NetnsError):
            _kill_ns(ns)
        _ip("netns", "del", ns, check=False)  # takes its end of the veth, and so the pair
    for br in bridges:
        _ip("link", "del", br, check=False)


def _our_names() -> tuple[list[str], list[str], list[str]]:
    """Namespaces, bridges and veths on this machine named with our prefix."""
    ns = [
        line.split()[0]
        for line in _ip("netns", "list", check=False).stdout.splitlines()
        if line.startswith(PREFIX + "ns")
    ]
    links = re.findall(r"^\d+: ([^:@\s]+)", _ip("-o", "link", "show", check=False).stdout, re.M)
    bridges = [name for name in links if name.startswith(PREFIX + "br")]
    veths = [name for name in links if name.startswith(PREFIX + "v")]
    return ns, bridges, veths


def run_of(name: str) -> str | None:
    """The run id (6 hex digits) in one of our names."""
    m = re.match(rf"{PREFIX}(?:ns|br|v)([0-9a-f]{{6}})", name)
    return m.group(1) if m else None


def live_runs(*, forget_dead: bool = False) -> set[str]:
    """The ids of runs whose owner is still alive (its pid, started when the state file
    says); `forget_dead` removes the other state files."""
    live = set()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    for state in STATE_DIR.glob("*.json"):
        try:
            info = json.loads(state.read_text())
            owner_alive = _proc_start_time(int(info["pid"])) == info["start"]
        except (OSError, ValueError, KeyError):
            owner_alive = False
        if owner_alive:
            live.add(state.stem)
        elif forget_dead:
            state.unlink(missing_ok=True)
    return live


def cleanup_leftovers() -> list[str]:
    """Remove what runs that crashed left behind: their processes, namespaces, bridges.

    A run is dead when the pid in its state file is gone (or reused by
    another process); a name of ours with no state file at all is an
    orphan too, since a run writes its state file before it makes anything.
    Returns what it removed.
    """
    if not netns_available()[0]:
        return []
    live = live_runs(forget_dead=True)
    ns, bridges, veths = _our_names()
    dead_ns = [n for n in ns if run_of(n) not in live]
    dead_br = [b for b in bridges if run_of(b) not in live]
    dead_veth = [v for v in veths if run_of(v) not in live]
    _delete(dead_ns, dead_br)
    for veth in dead_veth:
        _ip("link", "del", veth, check=False)
    return dead_ns + dead_br + dead_veth


def _used_subnets() -> set[tuple[int, int]]:
    """(second, third) octets of 198.18-19.x.0/24 networks already on this machine."""
    text = _ip("-4", "-o", "addr", check=False).stdout + _ip("-4", "route", check=False).stdout
    return {(int(a), int(b)) for a, b in re.findall(r"\b198\.(18|19)\.(\d+)\.\d+", text)}


@dataclass
class Host:
    """One simulated machine: a namespace with eth0 on the bridge."""

    index: int  # 1-based
    name: str  # short host name, also the default agent node name (h1, h2, …)
    netns: str
    ip: str
    veth: str  # the bridge-side end; taking it down cuts the host off

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]


class Hosts:
    """`count` hosts on one bridge, for one test (or one module); `close()` removes all.

    Hosts are numbered from 1: host(i) is `h<i>` at <net>.<10+i>, the bridge
    is <net>.1.
    """

    def __init__(self, count: int, root: Path) -> None:
        ok, why = netns_available()
        if not ok:
            raise NetnsError(why)
        self.root = root
        self.run_id = secrets.token_hex(3)
        self.bridge = f"{PREFIX}br{self.run_id}"
        self.hosts: list[Host] = []
        self.agents: list[AgentProc] = []
        self._closed = False
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self._state = STATE_DIR / f"{self.run_id}.json"
        self._state.write_text(
            json.dumps({"pid": os.getpid(), "start": _proc_start_time(os.getpid())})
        )
        atexit.register(self.close)
        try:
            self._build(count)
        except BaseException:
            self.close()
            raise

    def _build(self, count: int) -> None:
        used = _used_subnets()
        free = [(b, c) for (a, b) in BENCH_NET for c in range(256)
                if (b, c) not in used and workers.owns(c)]  # fmt: skip
        if not free:
            raise NetnsError("no free /24 left in 198.18.0.0/15")
        second, third = _RNG.choice(free)
        self.net = f"198.{second}.{third}"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.net}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(1, count + 1):
            self.add_host(i)

    def add_host(self, i: int) -> Host:
        host = Host(
            index=i,
            name=f"h{i}",
            netns=f"{PREFIX}ns{self.run_id}-{i}",
            ip=f"{self.net}.{10 + i}",
            veth=f"{PREFIX}v{self.run_id}h{i}",
        )
        inner = f"{PREFIX}v{self.run_id}n{i}"
        _ip("netns", "add", host.netns)
        self.hosts.append(host)
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", host.netns)
        _ip("-n", host.netns, "link", "set", inner, "name", "eth0")
        _ip("-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        _ip("-n", host.netns, "link", "set", "eth0", "up")
        _ip("link", "set", host.veth, "master", self.bridge)
        _ip("link", "set", host.veth, "up")
        return host

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, i: int) -> Host:
        return self.hosts[i - 1]

    def cut(self, i: int) -> None:
        """Take host i's link down: nothing gets in or out, its processes keep running."""
        _ip("link", "set", self.host(i).veth, "down")

    def restore(self, i: int) -> None:
        _ip("link", "set", self.host(i).veth, "up")

    def kill(self, i: int) -> None:
        """Host i dies at once: SIGKILL every process in its namespace."""
        _kill_ns(self.host(i).netns)

    def run(self, i: int, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Run a command on host i (e.g. `ping`) and return its result."""
        return subprocess.run(
            [*self.host(i).prefix, *argv], capture_output=True, text=True, timeout=timeout
        )

    def agent(
        self,
        i: int,
        *extra: str,
        name: str | None = None,
        ports: dict[str, int] | None = None,
        env: dict[str, str] | None = None,
    ) -> AgentProc:
        """An agent (not started) on host i, bound to its address with the default ports.

        Each host has its own address, so the Consul/Serf default ports do not
        clash. The data dir is per host, so a second agent made for the same
        host (a restart) finds the first one's node id.
        """
        host = self.host(i)
        p = {**DEFAULT_PORTS, **(ports or {})}
        agent = AgentProc(
            name=name or host.name,
            ip=host.ip,
            data_dir=self.root / host.name,
            http_port=p["http"],
            dns_port=p["dns"],
            serf_port=p["serf"],
            rpc_port=p["rpc"],
            log_path=self.root / f"{host.name}.log",
            extra=list(extra),
            env=env,
            prefix=host.prefix,
        )
        self.agents.append(agent)
        return agent

    def close(self) -> list[str]:
        """Stop agents, kill what is left in the namespaces, delete all; return leftovers.

        Leftovers are serf processes that outlived their agent (a bug worth
        failing a test for); they are killed anyway.
        """
        if self._closed:
            return []
        self._closed = True
        atexit.unregister(self.close)
        # SIGTERM all first and then wait: graceful leaves take ~2 s each, in parallel.
        running = [a for a in self.agents if a.proc is not None and a.proc.poll() is None]
        for agent in running:
            with contextlib.suppress(ProcessLookupError):
                agent.signal(signal.SIGTERM)
        for agent in running:
            assert agent.proc is not None
            try:
                agent.proc.wait(20)
            except subprocess.TimeoutExpired:
                agent.proc.kill()
                agent.proc.wait(5)
        leftovers = []
        for agent in self.agents:
            for pid in serf_pids_for(agent.data_dir):
                if pid_alive(pid):
                    leftovers.append(f"serf pid {pid} of {agent.name}")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        _delete([h.netns for h in self.hosts], [self.bridge])
        for host in self.hosts:
            _ip("link", "del", host.veth, check=False)
        self._state.unlink(missing_ok=True)
        return leftovers
