"""A sidecar's control plane at scale and under churn, with a real agent and real sidecars.

Printed, not asserted (tests/test_proxy_scale_walk*.py hold the behaviour).
Instances are external nodes registered through `PUT /v1/catalog/register`
(`127.99.x.y`, all reaching db's one real sidecar, bound on 0.0.0.0), each
with its own check. Scenarios (`--only` one of them; each well under a
minute at the defaults, except the time the agent takes to store thousands
of intentions):

- upstreams: web's sidecar with `--upstreams` upstreams: time until all
  listen, RSS, connections open to the agent (one blocking query each), and
  one upstream's port changed while a connection through another is open.
- flap: db of `--instances` instances, three checks flipped every 100 ms for
  `--seconds`: CPU of web's sidecar and of the agent, without traffic and
  then with a client making new connections (how many, any failed, p99).
- big: db of `--big` instances (MBs of health answer), ten single changes a
  second apart, a byte echoed on an open connection through web's sidecar:
  its p50/p99/max round trip, CPU per change, RSS.
- node: `--sidecars` sidecars of one `--node` proxy, each with an upstream
  db of `--instances` instances whose checks flip as in flap: CPU and RSS of
  the node proxy and the agent's CPU (one watch of db serves them all).
- intentions: `--intentions` sources in db's service-intentions entry (two
  in three L7, three regexes each): the longest echo on an open connection
  while an unrelated source changes, db sidecar CPU per change, and how long
  after the agent answered the PUT of a deny of web an open connection is cut.

    .venv/bin/python bench/proxy_churn.py [--only flap] [--instances 1000]
        [--big 5000] [--intentions 3000] [--upstreams 80] [--sidecars 30] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.cluster import AgentProc, Cluster, free_port, http_json  # noqa: E402
from tests.harness.poll import eventually  # noqa: E402
from tests.proxy_support import (  # noqa: E402
    App,
    ProxyProc,
    listening,
    roundtrip,
    set_intention,
    wait_listening,
)

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def connections_to(port: int) -> int:
    """Established TCP connections to local `port` (IPv4)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for r in rows if int(r.split()[1].split(":")[1], 16) == port
               and r.split()[3] == "01")  # fmt: skip


def pid(proc: ProxyProc | AgentProc) -> int:
    assert proc.proc is not None
    return proc.proc.pid


class Mesh:
    """One agent; db (its sidecar on 0.0.0.0) and web (upstreams `ups`), both sidecars."""

    def __init__(self, root: Path, ups: list[dict[str, Any]] | None = None) -> None:
        self.cluster = Cluster(root)
        (self.agent,) = self.cluster.start(1, prefix="pc")
        self.app = App("127.0.0.1").start()
        self.db_in = free_port("0.0.0.0")
        self.up = free_port("127.0.0.1")
        self.agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": self.app.port, "Address": self.agent.ip,
            "Connect": {"SidecarService": {"Port": self.db_in, "Address": self.agent.ip,
                                           "Proxy": {"Config": {"bind_address": "0.0.0.0"}}}},
        })  # fmt: skip
        self.web_body: dict[str, Any] = {
            "Name": "web", "ID": "web", "Port": 1, "Address": self.agent.ip,
            "Connect": {"SidecarService": {"Port": free_port(self.agent.ip),
                                           "Address": self.agent.ip, "Proxy": {"Upstreams": (
                ups or [{"DestinationName": "db", "LocalBindPort": self.up}])}}},
        }  # fmt: skip
        self.agent.put("/v1/agent/service/register", self.web_body)
        self.root = root
        self.proxies: list[ProxyProc] = []

    def instance(self, i: int, status: str) -> None:
        http_json(f"{self.agent.http}/v1/catalog/register", "PUT", {
            "Node": f"ext{i}", "Address": f"127.99.{i // 250}.{i % 250 + 1}",
            "Service": {"ID": "dbp", "Service": "db-sidecar-proxy", "Kind": "connect-proxy",
                        "Port": self.db_in, "Proxy": {"DestinationServiceName": "db"}},
            "Check": {"CheckID": "c", "Name": "c", "ServiceID": "dbp", "Status": status},
        })  # fmt: skip

    def sidecar(self, name: str) -> ProxyProc:
        proxy = ProxyProc(["--sidecar-for", name, "--http-addr", self.agent.http],
                          self.root / f"{name}.log").start()  # fmt: skip
        self.proxies.append(proxy)
        return proxy

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.stop()
        self.app.stop()
        self.cluster.close()


@contextmanager
def mesh(ups: list[dict[str, Any]] | None = None) -> Iterator[Mesh]:
    with tempfile.TemporaryDirectory(prefix="proxy_churn") as tmp:
        m = Mesh(Path(tmp), ups)
        try:
            yield m
        finally:
            m.close()


class Echoes:
    """A byte echoed back and forth on one open connection; each round trip's seconds."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            started = time.monotonic()
            try:
                self.sock.sendall(b"p")
                if self.sock.recv(10) != b"p":
                    return
            except OSError:
                return
            self.times.append(time.monotonic() - started)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join(15)
        self.sock.close()
        return sorted(self.times) or [0.0]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def upstreams(n: int) -> None:
    ports = [free_port("127.0.0.1") for _ in range(n)]
    ups = [{"DestinationName": "db" if i == 0 else f"u{i}", "LocalBindPort": p}
           for i, p in enumerate(ports)]  # fmt: skip
    with mesh(ups) as m:
        set_intention(m.agent, "web", "db", "allow")
        m.sidecar("db")
        started = time.monotonic()
        web = m.sidecar("web")
        eventually(lambda: all(listening("127.0.0.1", p) for p in ports), 120, what="listening")
        took = time.monotonic() - started
        eventually(lambda: roundtrip(("127.0.0.1", ports[0]), b"a") == b"a<eof>", 60)
        print(f"upstreams: {n} listening {took:.2f} s after start; web RSS "
              f"{rss_mib(pid(web)):.0f} MiB; {connections_to(m.agent.http_port)} connections "
              "open to the agent (both sidecars)")  # fmt: skip
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=10) as kept:
            kept.sendall(b"1")
            assert kept.recv(10) == b"1"
            moved = free_port("127.0.0.1")
            ups[n // 2] = {"DestinationName": f"u{n // 2}", "LocalBindPort": moved}
            before, started = cpu_s(pid(web)), time.monotonic()
            m.agent.put("/v1/agent/service/register", m.web_body)
            eventually(lambda: listening("127.0.0.1", moved), 30, what="the moved upstream")
            took, cpu = time.monotonic() - started, cpu_s(pid(web)) - before
            kept.sendall(b"2")
            print(f"upstreams: one moved in {took:.2f} s ({cpu:.2f} s CPU); the open connection "
                  f"through another {'flows' if kept.recv(10) == b'2' else 'BROKE'}")  # fmt: skip


def flap(n: int, seconds: float) -> None:
    with mesh() as m:
        set_intention(m.agent, "web", "db", "allow")
        for i in range(n):
            m.instance(i, "passing")
        m.sidecar("db")
        web = m.sidecar("web")
        wait_listening("127.0.0.1", m.up, web, 60)
        eventually(lambda: roundtrip(("127.0.0.1", m.up), b"a") == b"a<eof>", 60)
        for traffic in (False, True):
            _flap_round(m, web, n, seconds, traffic)


def _flap_round(m: Mesh, web: ProxyProc, n: int, seconds: float, traffic: bool) -> None:
    stop, done, failed, took = threading.Event(), [0], [0], []

    def client() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                ok = roundtrip(("127.0.0.1", m.up), b"x", 5) == b"x<eof>"
            except OSError:
                ok = False
            done[0] += ok
            failed[0] += not ok
            took.append(time.monotonic() - started)

    thread = threading.Thread(target=client, daemon=True)
    if traffic:
        thread.start()
    rng, down, flips = random.Random(1), set(), 0
    web0, agent0, started = cpu_s(pid(web)), cpu_s(pid(m.agent)), time.monotonic()
    while time.monotonic() - started < seconds:
        for _ in range(3):
            i = rng.randrange(n)
            m.instance(i, "passing" if i in down else "critical")
            down ^= {i}
            flips += 1
        time.sleep(0.1)
    web_cpu, agent_cpu = cpu_s(pid(web)) - web0, cpu_s(pid(m.agent)) - agent0
    stop.set()
    if traffic:
        thread.join(10)
    line = (f"flap: {n} instances, {flips} checks flipped in {seconds:g} s: web's sidecar "
            f"{web_cpu:.2f} s CPU, the agent {agent_cpu:.2f} s")  # fmt: skip
    if traffic:
        took.sort()
        p99 = took[int(len(took) * 0.99)] if took else 0.0
        line += f"; with traffic: {done[0]} connections, {failed[0]} failed, p99 {ms(p99)}"
    print(line)


def node(sidecars: int, n: int, seconds: float) -> None:
    with mesh() as m:
        ports = [free_port("127.0.0.1") for _ in range(sidecars)]
        for i, port in enumerate(ports):
            m.agent.put("/v1/agent/service/register", {
                "Name": f"svc{i}", "ID": f"svc{i}", "Port": m.app.port, "Address": m.agent.ip,
                "Connect": {"SidecarService": {"Port": free_port(m.agent.ip),
                                               "Address": m.agent.ip, "Proxy": {"Upstreams": [
                    {"DestinationName": "db", "LocalBindPort": port}]}}},
            })  # fmt: skip
            set_intention(m.agent, f"svc{i}", "db", "allow")
        for i in range(n):
            m.instance(i, "passing")
        proxy = ProxyProc(["--node", "--http-addr", m.agent.http], m.root / "node.log").start()
        m.proxies.append(proxy)
        eventually(lambda: all(listening("127.0.0.1", p) for p in ports), 120, what="listening")
        eventually(lambda: roundtrip(("127.0.0.1", ports[0]), b"a") == b"a<eof>", 60)
        rng, down, flips = random.Random(1), set(), 0
        node0, agent0, started = cpu_s(pid(proxy)), cpu_s(pid(m.agent)), time.monotonic()
        while time.monotonic() - started < seconds:
            for _ in range(3):
                i = rng.randrange(n)
                m.instance(i, "passing" if i in down else "critical")
                down ^= {i}
                flips += 1
            time.sleep(0.1)
        print(f"node: {sidecars} sidecars calling db of {n} instances, {flips} checks flipped "
              f"in {seconds:g} s: the node proxy {cpu_s(pid(proxy)) - node0:.2f} s CPU, "
              f"{rss_mib(pid(proxy)):.0f} MiB; the agent {cpu_s(pid(m.agent)) - agent0:.2f} s "
              "CPU (with the flips' registrations)")  # fmt: skip


def big(n: int) -> None:
    with mesh() as m:
        set_intention(m.agent, "web", "db", "allow")
        for i in range(n):
            m.instance(i, "passing")
        m.sidecar("db")
        web = m.sidecar("web")
        wait_listening("127.0.0.1", m.up, web, 60)
        eventually(lambda: roundtrip(("127.0.0.1", m.up), b"a") == b"a<eof>", 60)
        with urllib.request.urlopen(f"{m.agent.http}/v1/health/connect/db?passing") as r:
            size = len(r.read())
        echoes = Echoes(m.up)
        time.sleep(1)
        before = cpu_s(pid(web))
        for k in range(10):
            m.instance(k, "critical" if k % 2 == 0 else "passing")
            time.sleep(1)
        cpu = cpu_s(pid(web)) - before
        times = echoes.stop()
        print(f"big: {n} instances ({size / 1e6:.1f} MB of answer): echoes p50 "
              f"{ms(times[len(times) // 2])}, p99 {ms(times[int(len(times) * 0.99)])}, max "
              f"{ms(times[-1])}; {cpu / 10 * 1000:.0f} ms CPU a change (with the echoes); "
              f"RSS {rss_mib(pid(web)):.0f} MiB")  # fmt: skip


def _sources(n: int, web: str, changed: int = -1) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"Name": "web", "Action": web}]
    for i in range(n):
        if i == changed or i % 3 == 0:
            out.append({"Name": f"s{i}", "Action": "deny" if i == changed else "allow"})
            continue
        out.append({"Name": f"s{i}", "Permissions": [
            {"Action": "allow", "HTTP": {"PathRegex": f"/api/v{i}/.*", "Methods": ["GET"]}},
            {"Action": "deny", "HTTP": {"PathPrefix": "/admin",
                                        "Header": [{"Name": "x-user", "Regex": f"u{i}.*"}]}},
            {"Action": "deny", "HTTP": {"PathRegex": f"/v{i}/(a|b|c)+/[0-9]{{1,8}}"}},
        ]})  # fmt: skip
    return [*out, {"Name": "*", "Action": "deny"}]


def intentions(n: int) -> None:
    with mesh() as m:
        write: Callable[[list[dict[str, Any]]], Any] = lambda sources: http_json(  # noqa: E731
            f"{m.agent.http}/v1/config",
            "PUT",
            {"Kind": "service-intentions", "Name": "db", "Sources": sources},
            timeout=300,
        )
        started = time.monotonic()
        write(_sources(n, "allow"))
        print(f"intentions: the agent stored {n} in {time.monotonic() - started:.1f} s")
        db = m.sidecar("db")
        web = m.sidecar("web")
        wait_listening("127.0.0.1", m.up, web, 60)
        eventually(lambda: roundtrip(("127.0.0.1", m.up), b"a") == b"a<eof>", 120)
        for rnd in range(3):
            echoes = Echoes(m.up)
            time.sleep(0.5)
            before = cpu_s(pid(db))
            write(_sources(n, "allow", changed=rnd + 1))
            time.sleep(3)
            cpu, times = cpu_s(pid(db)) - before, echoes.stop()
            with socket.create_connection(("127.0.0.1", m.up), timeout=10) as kept:
                kept.sendall(b"1")
                assert kept.recv(10) == b"1"
                write(_sources(n, "deny", changed=rnd + 1))
                answered = time.monotonic()
                kept.settimeout(30)
                cut = kept.recv(10) == b""
                after = time.monotonic() - answered
            print(f"intentions: {n}: an unrelated change: longest echo {ms(times[-1])}, db "
                  f"sidecar {cpu:.2f} s CPU; a deny of web: open connection "
                  f"{'cut' if cut else 'NOT cut'} {after:.2f} s after the PUT's answer; RSS "
                  f"{rss_mib(pid(db)):.0f} MiB")  # fmt: skip
            write(_sources(n, "allow", changed=rnd + 1))
            eventually(lambda: roundtrip(("127.0.0.1", m.up), b"a") == b"a<eof>", 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("upstreams", "flap", "big", "node", "intentions"))
    parser.add_argument("--upstreams", type=int, default=80)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--big", type=int, default=5000)
    parser.add_argument("--intentions", type=int, default=3000)
    parser.add_argument("--sidecars", type=int, default=30)
    args = parser.parse_args()
    runs: dict[str, Callable[[], None]] = {
        "upstreams": lambda: upstreams(args.upstreams),
        "flap": lambda: flap(args.instances, args.seconds),
        "big": lambda: big(args.big),
        "node": lambda: node(args.sidecars, args.instances, args.seconds),
        "intentions": lambda: intentions(args.intentions),
    }
    for name, run in runs.items():
        if args.only in (None, name):
            run()


if __name__ == "__main__":
    main()
