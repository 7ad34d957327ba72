"""Soak: agents and `--node` sidecars running for minutes under churn; what grows.

Printed, not asserted (each fault found has its own short test). Two real
agents: a1 holds db (L4 echo), api (HTTP, with a WebSocket route) and rpc
(gRPC); a2 holds web (upstreams to all three) and bad (an upstream to db
that an intention denies). Each agent runs one `connect proxy --node
--workers 2`. While the soak runs, client threads make short connections
(allowed and denied), HTTP one-shot and keep-alive requests, WebSocket
upgrades and gRPC calls, and a control thread flips intentions, adds and
removes an upstream of web, registers and deregisters instances of db
(external nodes, and a second local instance `db-b` whose sidecar a1's node
proxy starts and drains), opens blocking queries and drops them, and
(every `--restart-every` seconds) restarts one agent under its sidecars
(rejoining the other: a SIGTERM leaves the cluster, so the services of the
agent restarted are gone from the catalog, and their callers refused, for
the ~10-20 s the restart takes, as with Consul's `leave_on_terminate`).
Leaves live 10 s (`test_leaf_cert_ttl`, `--leaf-ttl`), so they renew all the
time. `--only` runs some churn kinds alone (`--only control --leaf-ttl 1h`:
registration and intention churn without renewals or connections), to tell
which one a growth follows.

Every `--sample` seconds it reads, for each process (agents, serf children,
each proxy worker): open fds, RSS, threads, the RSS of the C heap
(`[heap]`) and of anonymous mappings; each agent's SQLite file and
WAL size; each sidecar's metrics series count; log bytes. At the end it
prints each resource's growth per 1,000 operations between the first
sample after `--warmup` seconds and the last.

RSS alone does not tell a leak from garbage the cyclic GC has not reached
yet, nor from free space a fragmented C heap keeps: to see which objects
grow, `PYTHONPATH=bench/soak_probe SOAK_PROBE_DIR=<dir>` has every proxy
worker write, every minute, a count of `gc.get_objects()` by type after a
`gc.collect()`, glibc's mallinfo2 (the C heap in use and free) and, with
`SOAK_PROBE_TRACEMALLOC=8`, the tracebacks whose allocations grew
(bench/soak_probe/sitecustomize.py); compare two lines of the same process.

    GOSSAMER_NATIVE=0 .venv/bin/python bench/soak.py [--seconds 300] [--sample 15]
        [--warmup 30] [--restart-every 90] [--leaf-ttl 10s] [--only KIND,...]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from tests.harness.cluster import AgentProc, Cluster, free_port, http_json  # noqa: E402
from tests.harness.poll import eventually  # noqa: E402
from tests.http_app import HttpApp  # noqa: E402
from tests.proxy_support import App, ProxyProc, listening, roundtrip  # noqa: E402

WS_UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: api\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (mask 0: the payload goes as it is)."""
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


class Counts:
    """Operations done, by kind, from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done: dict[str, int] = {}

        self.first: dict[str, str] = {}  # each kind's first failure, to say why

    def add(self, kind: str, n: int = 1, why: BaseException | None = None) -> None:
        with self._lock:
            self.done[kind] = self.done.get(kind, 0) + n
            if why is not None and kind not in self.first:
                detail = why.read().decode(errors="replace")[:200] if isinstance(
                    why, urllib.error.HTTPError) else ""  # fmt: skip
                self.first[kind] = f"{why!r} {detail}"

    def total(self) -> int:
        with self._lock:
            return sum(self.done.values())


def proc_figures(pid: int) -> dict[str, float]:
    """fds, RSS (KiB), threads of `pid`; empty when it is gone."""
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    got = {"fds": float(fds)}
    for line in status:
        if line.startswith("VmRSS"):
            got["rss_kib"] = float(line.split()[1])
        elif line.startswith("Threads"):
            got["threads"] = float(line.split()[1])
    got.update(heap_figures(pid))
    return got


def heap_figures(pid: int) -> dict[str, float]:
    """RSS (KiB) of `pid`'s C heap (glibc's main arena, `[heap]`) and of its anonymous
    mappings (pymalloc's arenas, other malloc arenas, large buffers): RSS growing in the heap
    alone, with Python objects level, is malloc's free space (fragmentation) or C memory."""
    got = {"heap_kib": 0.0, "anon_kib": 0.0}
    where = ""
    try:
        with open(f"/proc/{pid}/smaps") as smaps:
            for line in smaps:
                head = line.split(maxsplit=5)
                if "-" in head[0] and not head[0].endswith(":"):
                    name = head[5].strip() if len(head) > 5 else ""
                    where = "heap_kib" if name == "[heap]" else "anon_kib" if not name else ""
                elif where and head[0] == "Rss:":
                    got[where] += float(head[1])
    except OSError:
        return {}
    return got


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(p) for p in (task / "children").read_text().split()]
    return out


def series_count(addr: str) -> float:
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return float("nan")
    return float(sum(1 for line in text.splitlines() if line and not line.startswith("#")))


def agent_figures(agent: AgentProc) -> dict[str, float]:
    """The agent's series count and parked blocking queries, from its own metrics."""
    try:
        with urllib.request.urlopen(
            f"{agent.http}/v1/agent/metrics?format=prometheus", timeout=10
        ) as response:
            lines = [x for x in response.read().decode().splitlines() if x and x[0] != "#"]
    except OSError:
        return {}
    got = {"series": float(len(lines))}
    for line in lines:
        if line.startswith("gossamer_http_blocking_queries "):
            got["blocking_parked"] = float(line.split()[1])
    return got


class Soak:
    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root = root
        self.args = args
        self.counts = Counts()
        self.errors = Counts()
        self.stop = threading.Event()
        config = root / "ttl.yaml"
        config.write_text(f"test_leaf_cert_ttl: {args.leaf_ttl}\n")
        self.cluster = Cluster(root)
        self.a1, self.a2 = self.cluster.start(2, prefix="sk", extra=("--config-file", str(config)))
        for agent in (self.a1, self.a2):
            agent.log_level = "info"  # restarts log as production would
        self.echo = App("127.0.0.1").start()
        self.http_app = HttpApp().start()
        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        unary = grpc.unary_unary_rpc_method_handler(lambda request, _: request)
        self.grpc_server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("echo.Echo", {"Unary": unary})]
        )
        grpc_port = self.grpc_server.add_insecure_port("127.0.0.1:0")
        self.grpc_server.start()
        self.metrics: dict[str, str] = {}
        apps = (("db", self.echo.port, "tcp"), ("api", self.http_app.port, "http"),
                ("rpc", grpc_port, "grpc"), ("kv", self.echo.port, "tcp"))  # fmt: skip
        for name, port, protocol in apps:
            self.register(self.a1, name, port, protocol, [])
        self.up = {n: free_port("127.0.0.1") for n in ("db", "api", "rpc", "bad", "extra")}
        self.web_ups = [{"DestinationName": n, "LocalBindPort": self.up[n]}
                        for n in ("db", "api", "rpc")]  # fmt: skip
        self.register(self.a2, "web", 1, "tcp", self.web_ups)
        self.register(self.a2, "bad", 1, "tcp",
                      [{"DestinationName": "db", "LocalBindPort": self.up["bad"]}])  # fmt: skip
        for src, dst in (("web", "db"), ("web", "api"), ("web", "rpc"), ("web", "kv")):
            self.intention(src, dst, "allow")
        self.intention("bad", "db", "deny")
        self.proxies = [
            ProxyProc(["--node", "--workers", "2", "--http-addr", a.http],
                      root / f"proxy-{a.name}.log").start()
            for a in (self.a1, self.a2)
        ]  # fmt: skip
        for port in self.up.values():
            if port != self.up["extra"]:
                eventually(lambda p=port: listening("127.0.0.1", p), 60, what=f"port {port}")
        eventually(lambda: roundtrip(("127.0.0.1", self.up["db"]), b"x") == b"x<eof>", 30,
                   what="web to reach db")  # fmt: skip

    def register(self, agent: AgentProc, name: str, port: int, protocol: str,
                 ups: list[dict[str, Any]]) -> None:  # fmt: skip
        metrics = self.metrics.setdefault(name, f"127.0.0.1:{free_port('127.0.0.1')}")
        agent.put("/v1/agent/service/register", {
            "Name": name, "ID": name, "Port": port, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {
                "Port": self.sidecar_port(name), "Address": agent.ip,
                "Proxy": {"Config": {"protocol": protocol,
                                     "gossamer_metrics_bind_addr": metrics},
                          "Upstreams": ups}}},
        })  # fmt: skip

    _ports: dict[str, int] = {}

    def sidecar_port(self, name: str) -> int:
        return self._ports.setdefault(name, free_port("0.0.0.0"))

    def intention(self, src: str, dst: str, action: str) -> None:
        for _ in range(40):  # either agent may be restarting
            agent = random.choice((self.a1, self.a2))
            try:
                agent.put(f"/v1/connect/intentions/exact?source={src}&destination={dst}",
                          {"Action": action})  # fmt: skip
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.25)

    # -- clients ---------------------------------------------------------------------------
    def loop(self, kind: str, step: Callable[[], None], pause: float) -> None:
        while not self.stop.is_set():
            try:
                step()
                self.counts.add(kind)
            except Exception as exc:  # (counted: a soak goes on through failures)
                self.errors.add(kind, why=exc)
            time.sleep(pause)

    def l4(self) -> None:
        got = roundtrip(("127.0.0.1", self.up["db"]), b"ping", timeout=5)
        if got != b"ping<eof>":
            raise RuntimeError(got)

    def denied(self) -> None:
        with contextlib.suppress(OSError):
            roundtrip(("127.0.0.1", self.up["bad"]), b"ping", timeout=5)

    def http_one(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.up["api"], timeout=5)
        try:
            conn.request("GET", f"/echo/{random.randrange(1 << 30)}")
            conn.getresponse().read()
        finally:
            conn.close()

    def http_keepalive(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.up["api"], timeout=5)
        try:
            for i in range(20):
                conn.request("POST", f"/echo/k{i}", body=b"body")
                conn.getresponse().read()
        finally:
            conn.close()
        self.counts.add("http_keepalive_requests", 20)

    def websocket(self) -> None:
        with socket.create_connection(("127.0.0.1", self.up["api"]), timeout=5) as s:
            s.sendall(WS_UPGRADE)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("closed before 101")
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(head[:40])
            s.sendall(ws_frame(1, b"hi"))
            s.recv(4096)
            s.sendall(ws_frame(8, b"\x03\xe8"))

    def grpc_calls(self) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.up['rpc']}") as channel:
            unary = channel.unary_unary("/echo.Echo/Unary")
            for _ in range(10):
                unary(b"x", timeout=5)
        self.counts.add("grpc_unary", 10)

    # -- control churn ---------------------------------------------------------------------
    def flip(self) -> None:
        self.intention(f"src{random.randrange(50)}", "db", random.choice(("allow", "deny")))
        self.intention("bad", "api", random.choice(("allow", "deny")))

    def edit(self) -> None:
        ups = list(self.web_ups)
        if random.random() < 0.5:
            ups.append({"DestinationName": "kv", "LocalBindPort": self.up["extra"]})
        self.register(self.a2, "web", 1, "tcp", ups)

    def instance(self) -> None:
        i = random.randrange(20)
        node = f"ext{i}"
        if random.random() < 0.5:
            http_json(f"{self.a1.http}/v1/catalog/register", "PUT", {
                "Node": node, "Address": f"127.98.0.{i + 1}",
                "Service": {"ID": "dbp", "Service": "db-sidecar-proxy", "Kind": "connect-proxy",
                            "Port": 1, "Proxy": {"DestinationServiceName": "db"}},
                "Check": {"CheckID": "c", "Name": "c", "ServiceID": "dbp", "Status": "critical"},
            })  # fmt: skip
        else:
            http_json(f"{self.a1.http}/v1/catalog/deregister", "PUT", {"Node": node})

    def sidecar_churn(self) -> None:
        """A second instance of db, with a sidecar a1's node proxy starts serving, or its
        deregistration (that sidecar drains)."""
        if random.random() < 0.5:
            self.a1.put("/v1/agent/service/register", {
                "Name": "db", "ID": "db-b", "Port": self.echo.port, "Address": "127.0.0.1",
                "Connect": {"SidecarService": {"Port": self.sidecar_port("db-b"),
                                               "Address": self.a1.ip}},
            })  # fmt: skip
        else:
            self.a1.put("/v1/agent/service/deregister/db-b")

    def abandoned_blocking(self) -> None:
        agent = random.choice((self.a1, self.a2))
        path = random.choice(("/v1/health/service/db?index={i}&wait=5m",
                              "/v1/catalog/services?index={i}&wait=5m",
                              "/v1/agent/services?hash=x&wait=5m"))  # fmt: skip
        with socket.create_connection((agent.ip, agent.http_port), timeout=5) as s:
            path = path.format(i=10**9)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            time.sleep(0.05)

    def control(self) -> None:
        steps = [(self.flip, "intention_flips"), (self.edit, "registration_edits"),
                 (self.instance, "instance_changes"), (self.sidecar_churn, "sidecar_changes"),
                 (self.abandoned_blocking, "blocking_abandoned")]  # fmt: skip
        last_restart = time.monotonic()
        which = 0
        while not self.stop.is_set():
            step, kind = random.choice(steps)
            try:
                step()
                self.counts.add(kind)
            except Exception as exc:  # (counted)
                self.errors.add(kind, why=exc)
            every = self.args.restart_every
            if every and time.monotonic() - last_restart > every:
                agent, other = (self.a1, self.a2)[which % 2], (self.a2, self.a1)[which % 2]
                which += 1
                agent.stop()  # a graceful leave: it must be told where to join again
                agent.extra = [*agent.extra[:2], "--join", other.serf_addr]
                agent.start(wait=False)
                with contextlib.suppress(Exception):
                    agent.wait_ready(60)
                self.counts.add("agent_restarts")
                last_restart = time.monotonic()
            time.sleep(0.2)

    # -- sampling --------------------------------------------------------------------------
    def sample(self) -> dict[str, float]:
        row: dict[str, float] = {"ops": float(self.counts.total())}
        procs: dict[str, int] = {}
        for agent in (self.a1, self.a2):
            if agent.proc is not None:
                procs[agent.name] = agent.proc.pid
                for pid in agent.serf_pids():
                    procs[f"{agent.name}.serf"] = pid
        for agent, proxy in zip((self.a1, self.a2), self.proxies, strict=True):
            assert proxy.proc is not None
            procs[f"px-{agent.name}.w0"] = proxy.proc.pid
            for i, child in enumerate(sorted(children(proxy.proc.pid)), 1):
                procs[f"px-{agent.name}.w{i}"] = child
        for name, pid in procs.items():
            for key, value in proc_figures(pid).items():
                row[f"{name}.{key}"] = value
        for agent in (self.a1, self.a2):
            for f in agent.data_dir.rglob("*.db*"):
                row[f"{agent.name}.{f.name}_kib"] = f.stat().st_size / 1024
        for name, addr in self.metrics.items():
            row[f"series.{name}"] = series_count(addr)
        for agent in (self.a1, self.a2):
            for key, value in agent_figures(agent).items():
                row[f"{agent.name}.{key}"] = value
        for f in self.root.glob("*.log"):
            row[f"log.{f.stem}_kib"] = f.stat().st_size / 1024
        return row

    def run(self) -> None:
        a = self.args
        clients = [
            ("l4_allowed", self.l4, 0.0), ("l4_denied", self.denied, 0.02),
            ("http_oneshot", self.http_one, 0.0), ("http_keepalive", self.http_keepalive, 0.05),
            ("websocket", self.websocket, 0.05), ("grpc_channel", self.grpc_calls, 0.1),
        ]  # fmt: skip
        only = set(a.only.split(",")) if a.only else None
        clients = [c for c in clients if only is None or c[0] in only]
        threads = [threading.Thread(target=self.loop, args=c, daemon=True) for c in clients]
        if only is None or "control" in only:
            threads.append(threading.Thread(target=self.control, daemon=True))
        for t in threads:
            t.start()
        started = time.monotonic()
        rows: list[tuple[float, dict[str, float]]] = []
        while time.monotonic() - started < a.seconds:
            time.sleep(a.sample)
            row = self.sample()
            rows.append((time.monotonic() - started, row))
            print(f"t={rows[-1][0]:6.0f}s ops={row['ops']:.0f} errors={self.errors.done}",
                  flush=True)  # fmt: skip
        self.stop.set()
        for t in threads:
            t.join(30)
        self.report(rows)

    def report(self, rows: list[tuple[float, dict[str, float]]]) -> None:
        base = next((r for t, r in rows if t >= self.args.warmup), rows[0])
        last = rows[-1][1]
        ops = last["ops"] - base["ops"]
        print(f"\noperations: {dict(sorted(self.counts.done.items()))}")
        print(f"failed: {dict(sorted(self.errors.done.items()))}")
        for kind, why in sorted(self.errors.first.items()):
            print(f"  first {kind} failure: {why}")
        print(f"\n{'resource':44} {'first':>10} {'last':>10} {'per 1k ops':>11}  samples")
        for key in sorted(k for k in last if k != "ops"):
            if key not in base:
                continue
            trail = " ".join(f"{r.get(key, float('nan')):.0f}" for _, r in rows)
            per_k = (last[key] - base[key]) / ops * 1000 if ops else 0.0
            print(f"{key:44} {base[key]:10.0f} {last[key]:10.0f} {per_k:11.2f}  {trail}")

    def close(self) -> None:
        """Stop what was started, also after a start that failed half-way."""
        for proxy in getattr(self, "proxies", []):
            with contextlib.suppress(Exception):
                proxy.stop()
        for name in ("grpc_server", "http_app", "echo"):
            if hasattr(self, name):
                thing = getattr(self, name)
                thing.stop(0) if name == "grpc_server" else thing.stop()
        if hasattr(self, "cluster"):
            self.cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--sample", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=30)
    parser.add_argument("--restart-every", type=float, default=90)
    parser.add_argument("--keep", action="store_true", help="keep the logs' directory")
    parser.add_argument("--leaf-ttl", default="10s", help="the agents' leaf TTL (renewals)")
    parser.add_argument(
        "--only",
        default="",
        help="churn kinds to run, comma-separated: "
        "l4_allowed, l4_denied, http_oneshot, http_keepalive, websocket, "
        "grpc_channel, control (default: all)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="soak"))
    print(f"logs in {root}", flush=True)
    soak = Soak.__new__(Soak)
    try:
        soak.__init__(root, args)  # type: ignore[misc]
        soak.run()
    finally:
        soak.close()
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
