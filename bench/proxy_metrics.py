"""What golden metrics cost the proxy: per operation, and a sidecar pair with them on and off.

Printed, not asserted. Two parts:
- in-process: ns per histogram observation (ours: `bisect` + a list
  increment; prometheus-client's `Histogram.observe` beside it when that
  package is installed: `.venv/bin/pip install prometheus-client`), per
  connection counted on an edge (connected + disconnected), per HTTP
  response counted (`Edge.answered`), and the time to render a scrape of
  100 edges with 10 routes each;
- a pair: wrk -> web's sidecar -> (mTLS) -> db's sidecar -> nginx, as
  bench/proxy_pair.py runs it, started with metrics on (the default, with a
  metrics listener) and with `--no-metrics`, alternating `--rounds` times;
  medians of req/s at 64 connections, the pair's CPU µs per request, and
  new connections/s (`Connection: close`), where per-connection counting
  shows most.

    .venv/bin/python bench/proxy_metrics.py [--seconds 4] [--rounds 3] [--cpus 0,1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pair_peers import LOCAL, http_ok, pinned  # noqa: E402
from bench.proxy_pair import _number, _requests, cpu_seconds, mesh_setup, start_nginx, wrk  # noqa: E402
from gossamer.proxy.edge_metrics import EdgeMetrics, Histogram  # noqa: E402
from gossamer.proxy.metrics_families import families  # noqa: E402
from gossamer.proxy.prom_text import render  # noqa: E402
from gossamer.proxy.tally import Tally  # noqa: E402
from tests.harness.cluster import Cluster, free_port  # noqa: E402
from tests.harness.poll import eventually  # noqa: E402
from tests.proxy_support import listening  # noqa: E402

N = 200_000


def per_call_ns(fn: Callable[[], None], n: int = N) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / n)
    return best


class _Conn:
    def bytes_each_way(self) -> tuple[int, int]:
        return 100, 200


def in_process() -> None:
    h = Histogram()
    print(f"histogram observe, list buckets:   {per_call_ns(lambda: h.observe(0.003)):7.0f} ns")
    try:
        import prometheus_client  # type: ignore[import-not-found]

        ph = prometheus_client.Histogram("bench_seconds", "b", registry=None)
        print(
            f"prometheus-client Histogram.observe: {per_call_ns(lambda: ph.observe(0.003)):5.0f} ns"
        )
    except ImportError:
        print("prometheus-client not installed: no side-by-side (pip install prometheus-client)")
    edge = EdgeMetrics("db").inbound("web")
    conn = _Conn()

    def one_connection() -> None:
        edge.connected(conn, 0.002)
        edge.disconnected(conn, 1.0)

    print(f"one connection counted on an edge: {per_call_ns(one_connection):7.0f} ns")
    print(f"one HTTP response (Edge.answered): "
          f"{per_call_ns(lambda: edge.answered(200, 0.004, '/api')):7.0f} ns")  # fmt: skip
    m = EdgeMetrics("db")
    for i in range(100):
        e = m.inbound(f"svc{i}")
        for r in range(10):
            e.answered(200, 0.004, f"/r{r}")
    start = time.perf_counter()
    for _ in range(20):
        text = render(families([(m, Tally())], 0.0))
    ms = (time.perf_counter() - start) / 20 * 1000
    print(f"a scrape of 100 edges x 10 routes:  {ms:7.1f} ms ({len(text) // 1024} KiB)")


def start_pair(
    agent_http: str, tmp: Path, cpu: str, ports: tuple[int, int], *extra: str
) -> list[subprocess.Popen[bytes]]:
    procs = []
    for service in ("db", "web"):
        argv = [sys.executable, "-m", "gossamer.agent", "connect", "proxy", "--sidecar-for",
                service, "--http-addr", agent_http, "--log-level", "warning", *extra]  # fmt: skip
        procs.append(pinned(cpu, argv, tmp / f"{service}.log"))
    return procs


def measure(port: int, pids: list[int], seconds: int, cpu: str) -> tuple[float, float, float]:
    """(req/s at c64, CPU µs per request of the pair, new connections/s)."""
    wrk(port, "/small", 8, 1, cpu)  # warm-up
    before = cpu_seconds(pids)
    text = wrk(port, "/small", 64, seconds, cpu)
    cpu_us = (cpu_seconds(pids) - before) / max(_requests(text), 1) * 1e6
    rps = _number(r"Requests/sec:\s+([\d.]+)", text)
    close = wrk(port, "/small", 16, seconds, cpu, "-H", "Connection: close")
    return rps, cpu_us, _number(r"Requests/sec:\s+([\d.]+)", close)


def pair(seconds: int, rounds: int, cpus: tuple[str, str]) -> None:
    load_cpu, proxy_cpu = cpus
    results: dict[str, list[tuple[float, float, float]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="proxy-metrics-") as raw:
        tmp = Path(raw)
        (tmp / "cluster").mkdir()
        cluster = Cluster(tmp / "cluster")
        nginx: subprocess.Popen[bytes] | None = None
        try:
            (agent,) = cluster.start(1, prefix="pm")
            nginx, nginx_port = start_nginx(tmp, load_cpu)
            db_in, upstream = mesh_setup(agent, nginx_port)
            for _ in range(rounds):
                for mode in ("on", "off"):
                    extra = ("--no-metrics",) if mode == "off" else (
                        "--metrics-addr", f"127.0.0.1:{free_port('127.0.0.1')}")  # fmt: skip
                    procs = start_pair(agent.http, tmp, proxy_cpu, (db_in, upstream), *extra)
                    try:
                        eventually(lambda: listening(agent.ip, db_in) and listening(LOCAL, upstream)
                                   and http_ok(upstream), 30, what="the pair")  # fmt: skip
                        results[mode].append(measure(upstream, [p.pid for p in procs], seconds,
                                                     load_cpu))  # fmt: skip
                    finally:
                        for p in procs:
                            p.terminate()
                            p.wait(20)
                        eventually(lambda: not listening(LOCAL, upstream), 20, what="pair gone")
        finally:
            if nginx is not None:
                nginx.terminate()
                nginx.wait(20)
            cluster.close()
    print(f"\npair, medians of {rounds} alternating rounds of {seconds} s "
          f"(wrk+nginx on CPU {load_cpu}, proxies on CPU {proxy_cpu}):")  # fmt: skip
    print(f"{'metrics':>8} {'req/s c64':>10} {'CPU us/req':>11} {'new conn/s':>11}")
    med = {m: [statistics.median(r[i] for r in results[m]) for i in range(3)] for m in results}
    for mode, (rps, cpu_us, conns) in med.items():
        print(f"{mode:>8} {rps:>10,.0f} {cpu_us:>11.1f} {conns:>11,.0f}")
    on, off = med["on"], med["off"]
    print(f"cost of metrics: req/s {on[0] / off[0] - 1:+.1%}, CPU per request "
          f"{on[1] - off[1]:+.1f} us ({on[1] / off[1] - 1:+.1%}), new conn/s "
          f"{on[2] / off[2] - 1:+.1%}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", default="0,1", help="LOAD,PROXIES")
    parser.add_argument("--in-process-only", action="store_true")
    args = parser.parse_args()
    in_process()
    if not args.in_process_only:
        load_cpu, proxy_cpu = args.cpus.split(",")
        pair(args.seconds, args.rounds, (load_cpu, proxy_cpu))


if __name__ == "__main__":
    main()
