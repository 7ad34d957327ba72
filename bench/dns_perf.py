"""DNS throughput and latency on every query path: dnsperf against gossamer, dnsmasq, unbound.

Printed, not asserted. One real agent (with its serf child) gets service
`web` with 5 instances on 5 addresses (127.0.1.1-5, ports 8001-8005, TTL
checks set passing); the bench waits until the agent answers
`web.service.consul A` with all 5. The agent is then asked every path of
bench/dns_paths.py once: A plain, with EDNS, with EDNS and a cookie option;
SRV with glue (two name forms); NXDOMAIN; NODATA; a node's A; an `.addr.`
A; PTR of an instance's address; A over TCP. From those replies dnsmasq
(`-k --no-resolv --no-hosts`, one process, `local=/consul/`) and unbound
(one thread, static local zones, no query log) are configured to serve the
very same records; a reference server takes part in a path only when its
answer has the agent's rcode and answer records (else a note says why).

For each path and each server, dnsperf runs R times for D seconds
(interleaved, the order rotating) and the median run by queries/s is
shown: queries/s, lost queries, average and max latency, the server's CPU
time per answered query (utime+stime of its process; the agent's serf
child excluded; dnsmasq's forked TCP children not counted), the answer
size, and on each reference server's row the ratio gossamer/that server
(queries/s: the median of each round's ratio, the runs of a round being
back to back).
Then, for gossamer only, one run per path rate-limited (`-Q`) at 80% of
its measured peak: the lost queries there should be zero.

On 2 or more cores the servers run on one CPU (`taskset -c 1`, the agent
with its serf child, dnsmasq, unbound) and dnsperf on another (`-c 0`, one
thread), so the load generator does not take the server's CPU.

    .venv/bin/python bench/dns_perf.py [--duration 3] [--runs 3] [--clients 4]
        [--outstanding 100] [--instances 5] [--service web] [--paths LABEL,...]
        [--no-unbound] [--no-pin]

`--service consul` measures the agents' own service (the agent registers
itself as `consul`; nothing is registered).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.rcode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.dns_paths import (  # noqa: E402
    BenchUnbound,
    QueryPath,
    ask,
    dnsmasq_options,
    paths,
    same_answer,
    unbound_local_data,
)
from bench.dnsperf_runs import (  # noqa: E402
    Run,
    Target,
    code_state,
    dnsperf,
    http,
    load_average,
    tool_version,
    uvloop_state,
)
from tests.harness.binaries import find_binary, missing_reason  # noqa: E402
from tests.harness.cluster import AgentProc, Cluster, free_port  # noqa: E402
from tests.harness.resolvers import ChildServer, Dnsmasq  # noqa: E402

# -- the agent and its records ----------------------------------------------------------


def register(agent: AgentProc, service: str, count: int) -> None:
    for i in range(1, count + 1):
        body = {
            "ID": f"{service}-{i}",
            "Name": service,
            "Address": f"127.0.1.{i}",  # need not exist: nothing connects to them
            "Port": 8000 + i,
            "Check": {"TTL": "10m"},
        }
        http(agent, "PUT", "/v1/agent/service/register", body)
        http(agent, "PUT", f"/v1/agent/check/pass/service:{service}-{i}")


def wait_for_answers(target: Target, path: QueryPath, count: int, timeout: float) -> int:
    """Poll until the path's answer has `count` records; returns how many it last had."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        try:
            reply = ask(target.ip, target.port, path)
            seen = sum(len(rrset) for rrset in reply.answer)
        except (OSError, dns.exception.DNSException):
            seen = 0
        if seen >= count or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def agent_replies(
    gossamer: Target, chosen: list[QueryPath], notes: list[str]
) -> dict[QueryPath, dns.message.Message]:
    """The agent's reply on each path; a path whose rcode is not the expected one is skipped."""
    replies = {}
    for path in chosen:
        reply = ask(gossamer.ip, gossamer.port, path)
        rcode = dns.rcode.to_text(reply.rcode())
        if rcode != path.rcode:
            notes.append(f"skipped {path.label}: gossamer answers {rcode}, not {path.rcode}")
            continue
        if reply.flags & dns.flags.TC:
            notes.append(f"{path.label}: gossamer's answer is truncated (TC)")
        replies[path] = reply
    return replies


def participants(
    servers: list[Target], replies: dict[QueryPath, dns.message.Message], notes: list[str]
) -> dict[QueryPath, list[Target]]:
    """Per path, gossamer and each reference server whose answer matches the agent's."""
    taking: dict[QueryPath, list[Target]] = {}
    for path, reply in replies.items():
        taking[path] = [servers[0]]
        for server in servers[1:]:
            try:
                differs = same_answer(reply, ask(server.ip, server.port, path))
            except (OSError, dns.exception.DNSException) as exc:
                differs = f"no answer ({type(exc).__name__})"
            if differs is None:
                taking[path].append(server)
            else:
                notes.append(f"{path.label}: {server.name} left out, it {differs}")
    return taking


# -- main -------------------------------------------------------------------------------


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:7.3f}"


def bench(cluster: Cluster, workdir: Path, args: argparse.Namespace) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    pin_ok = not args.no_pin and len(cpus) >= 2
    server_pin = ["taskset", "-c", str(args.server_cpu)] if pin_ok else []
    load_pin = ["taskset", "-c", str(args.load_cpu)] if pin_ok else []

    agent = cluster.new_agent("dnsbench")
    agent.prefix = server_pin
    agent.log_level = "info"
    agent.start()
    assert agent.proc is not None
    gossamer = Target("gossamer", agent.ip, agent.dns_port, agent.proc.pid)

    svc = args.service
    want = 1 if svc == "consul" else args.instances
    if svc != "consul":
        register(agent, svc, args.instances)
    address = agent.ip if svc == "consul" else "127.0.1.1"
    every = paths(svc, "dnsbench", address)
    seen = wait_for_answers(gossamer, every[0], want, args.wait)
    if seen < want:
        raise SystemExit(
            f"the agent answers {svc}.service.consul A with {seen} records, not {want}, "
            f"after {args.wait:.0f}s"
        )
    # comma-separated labels; the whole string counts as one too, since labels hold commas
    wanted = [p.strip().lower() for p in [*args.paths.split(","), args.paths]] if args.paths else []
    chosen = [p for p in every if not wanted or p.label.lower() in wanted]
    notes: list[str] = []
    replies = agent_replies(gossamer, chosen, notes)
    references = start_references(cluster.net, workdir, server_pin, replies, args)
    try:
        servers = [gossamer] + [Target(r.name, r.ip, r.port, r.pid) for r in references]
        taking = participants(servers, replies, notes)
        print_setup(args, agent, references, pin_ok, cpus)
        peaks = run_paths(args, taking, servers, workdir, load_pin, notes)
        run_limited(args, gossamer, taking, peaks, workdir, load_pin)
    finally:
        for server in references:
            server.stop()


def start_references(
    net: str,
    workdir: Path,
    pin: list[str],
    replies: dict[QueryPath, dns.message.Message],
    args: argparse.Namespace,
) -> list[ChildServer]:
    """dnsmasq (and unbound unless --no-unbound) serving the agent's records."""
    ip = f"{net}.200"
    dnsmasq = Dnsmasq("dnsmasq", workdir / "dnsmasq", ip, free_port(ip), prefix=pin)
    dnsmasq.options = dnsmasq_options(list(replies.values()))
    dnsmasq.log_queries = False
    started: list[ChildServer] = [dnsmasq.start()]
    if not args.no_unbound and find_binary("unbound"):
        ip = f"{net}.201"
        unbound = BenchUnbound("unbound", workdir / "unbound", ip, free_port(ip), prefix=pin)
        unbound.local = unbound_local_data(list(replies.values()))
        try:
            started.append(unbound.start())
        except RuntimeError as exc:
            print(f"note: unbound did not start, left out: {exc}")
    return started


def print_setup(
    args: argparse.Namespace,
    agent: AgentProc,
    references: list[ChildServer],
    pin_ok: bool,
    cpus: list[int],
) -> None:
    print("DNS: dnsperf on every query path; one query name per file, looped")
    print(f"machine: nproc {os.cpu_count()}, affinity {cpus}, Python {sys.version.split()[0]}")
    print(uvloop_state(agent))
    versions = [tool_version(["dnsperf", "-h"]).replace("Version", "dnsperf")]
    for server in references:
        flag = "-V" if server.name == "unbound" else "--version"
        versions.append(tool_version([server.argv()[0], flag]).split("Copyright")[0].strip())
    print("; ".join(versions))
    print(code_state())
    print(f"load average at start: {load_average()}")
    if pin_ok:
        print(
            f"pinned: servers on CPU {args.server_cpu} (the agent with its serf child, "
            f"{', '.join(r.name for r in references)}), dnsperf on CPU {args.load_cpu}"
        )
    else:
        print("not pinned (--no-pin or fewer than 2 CPUs): dnsperf shares the servers' CPUs")
    print(
        f"dnsperf: {args.clients} clients, {args.outstanding} outstanding, {args.duration:g}s "
        f"per run, median of {args.runs} runs (by queries/s), interleaved, order rotating"
    )
    print()


def query_file(workdir: Path, index: int, path: QueryPath) -> Path:
    qfile = workdir / f"q{index}.txt"
    qfile.write_text(f"{path.name} {path.rdtype}\n")
    return qfile


def run_paths(
    args: argparse.Namespace,
    taking: dict[QueryPath, list[Target]],
    servers: list[Target],
    workdir: Path,
    load_pin: list[str],
    notes: list[str],
) -> dict[QueryPath, float]:
    """The interleaved runs on every path; gossamer's median queries/s per path."""

    def perf(target: Target, path: QueryPath, qfile: Path, duration: float) -> Run:
        return dnsperf(target, qfile, duration, args.clients, args.outstanding, load_pin,
                       flags=path.dnsperf_flags())  # fmt: skip

    if taking:
        first = next(iter(taking))
        for target in servers:
            perf(target, first, query_file(workdir, 99, first), 1)
    header = (
        f"{'path':22} {'server':8} {'queries/s':>9} {'(min-max)':>13} {'lost':>5} "
        f"{'avg ms':>7} {'max ms':>7} {'CPU us/q':>8} {'bytes':>5}  {'q/s':>5} {'CPU':>5}"
    )
    print(f"{'':{len(header) - 18}}gossamer / this server")
    print(header)
    print("-" * len(header))
    peaks: dict[QueryPath, float] = {}
    for index, (path, targets) in enumerate(taking.items()):
        qfile = query_file(workdir, index, path)
        results: dict[str, list[Run]] = {t.name: [] for t in targets}
        for run in range(args.runs):
            shift = run % len(targets)
            for target in targets[shift:] + targets[:shift]:
                results[target.name].append(perf(target, path, qfile, args.duration))
        peaks[path] = print_path(path, results)
    print(
        "queries/s, avg ms: the median run by queries/s; lost: the most in any run; max ms: the\n"
        "largest in any run; CPU us/q: the server process's CPU time per answered query, median\n"
        "of the runs; ratios on a reference server's row: gossamer/that server queries/s (the\n"
        "median of each round's ratio: the runs of a round are back to back, so load from\n"
        "other work moves both), and that server/gossamer CPU per query (above 1: gossamer\n"
        "spends less CPU per answer)."
    )
    for note in notes:
        print(f"note: {note}")
    print()
    return peaks


def print_path(path: QueryPath, results: dict[str, list[Run]]) -> float:
    """The rows of one path; returns gossamer's median queries/s."""
    medians = {s: sorted(runs, key=lambda r: r.qps)[len(runs) // 2] for s, runs in results.items()}
    cpu = {s: statistics.median(r.cpu_us_per_query for r in runs) for s, runs in results.items()}
    mine = medians["gossamer"]  # ratios pair each round's runs (run back to back): load moves both
    label = path.label
    for server, runs in results.items():
        r = medians[server]
        spread = f"{min(x.qps for x in runs) / 1e3:.0f}k-{max(x.qps for x in runs) / 1e3:.0f}k"
        ratios = ""
        if server != "gossamer":
            cpu_ratio = cpu[server] / cpu["gossamer"] if cpu["gossamer"] else float("nan")
            paired = [g.qps / t.qps for g, t in zip(results["gossamer"], runs, strict=True)]
            ratios = f"  {statistics.median(paired):5.2f} {cpu_ratio:5.2f}"
        print(
            f"{label:22} {server:8} {r.qps:9,.0f} {spread:>13} "
            f"{max(x.lost for x in runs):5d} {fmt_ms(r.avg_latency)} "
            f"{fmt_ms(max(x.max_latency for x in runs))} {cpu[server]:8.1f} "
            f"{r.response_size:5d}{ratios}"
        )
        if not r.rcodes.startswith(path.rcode) or "," in r.rcodes:
            print(f"{'':22} {'':8} response codes: {r.rcodes}")
        label = ""
    return mine.qps


def run_limited(
    args: argparse.Namespace,
    gossamer: Target,
    taking: dict[QueryPath, list[Target]],
    peaks: dict[QueryPath, float],
    workdir: Path,
    load_pin: list[str],
) -> None:
    """gossamer alone at a fraction of its peak on each path: lost queries should be zero."""
    print(f"gossamer rate-limited at {args.fraction:.0%} of its peak (dnsperf -Q), one run each")
    header = (
        f"{'path':24} {'-Q rate':>9} {'queries/s':>10} {'sent':>9} {'lost':>6} "
        f"{'avg ms':>7} {'max ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for index, path in enumerate(taking):
        rate = int(peaks[path] * args.fraction)
        r = dnsperf(gossamer, query_file(workdir, index, path), args.duration, args.clients,
                    args.outstanding, load_pin, rate=rate, flags=path.dnsperf_flags())  # fmt: skip
        print(
            f"{path.label:24} {rate:9,d} {r.qps:10,.0f} {r.sent:9,d} "
            f"{r.lost:6d} {fmt_ms(r.avg_latency)} {fmt_ms(r.max_latency)}"
        )
    print(f"\nload average at the end: {load_average()} (1, 5, 15 min; other work on the machine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per dnsperf run")
    parser.add_argument("--runs", type=int, default=3, help="runs per server and query")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--service", default="web", help="'consul': the agent's own service")
    parser.add_argument("--fraction", type=float, default=0.8, help="rate-limited run: of peak")
    parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait for answers")
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--load-cpu", type=int, default=0)
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--no-unbound", action="store_true", help="dnsmasq as the only reference")
    parser.add_argument("--paths", default="", help="comma-separated path labels (default: all)")
    args = parser.parse_args()
    missing = missing_reason("dnsperf", "dnsmasq") or (
        None if find_binary("taskset") or args.no_pin else "taskset not installed (util-linux)"
    )
    if missing:
        raise SystemExit(missing)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gossamer-bench-dns-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            bench(cluster, Path(tmp), args)
        finally:
            leftovers = cluster.close()
    print(f"\n(bench took {time.monotonic() - started:.0f}s)")
    if leftovers:
        raise RuntimeError(f"left behind: {leftovers}")


if __name__ == "__main__":
    main()
