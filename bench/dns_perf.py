"""DNS throughput and latency: dnsperf against a gossamer agent and dnsmasq, same run, same records.

Printed, not asserted. One real agent (with its serf child) gets service
`web` with 5 instances on 5 addresses (127.0.1.1-5, ports 8001-8005, TTL
checks set passing); the bench waits until the agent answers
`web.service.consul A` with all 5. dnsmasq then gets the very records the
agent answers, from its own config (`--host-record`, `--srv-host`, targets'
A records included so its SRV answers carry the same additional section),
and answers them itself: `-k --no-resolv --no-hosts`, one thread.

For each query (`web.service.consul A`, `_web._tcp.service.consul SRV`,
`web.service.consul SRV`) and each server, dnsperf runs R times for D
seconds (interleaved, the order alternating) and the median run by
queries/s is shown: queries/s, lost queries, average and max latency, the
server's CPU time per answered query (utime+stime of its process, the
agent's serf child excluded), the answer size, and the ratio
gossamer/dnsmasq. Then, for gossamer only, one run per query rate-limited
(`-Q`) at 80% of its measured peak: the lost queries there should be zero.

On 2 or more cores the servers run on one CPU (`taskset -c 1`, the agent
with its serf child, and dnsmasq) and dnsperf on another (`-c 0`, one
thread), so the load generator does not take the server's CPU.

    .venv/bin/python bench/dns_perf.py [--duration 4] [--runs 3] [--clients 4]
        [--outstanding 100] [--instances 5] [--service web] [--no-pin]

`--service consul` measures the agents' own service (the agent registers
itself as `consul`; nothing is registered), for DNS cores that do not
answer catalog services yet.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.binaries import find_binary, missing_reason  # noqa: E402
from tests.harness.cluster import AgentProc, Cluster, free_port  # noqa: E402
from tests.harness.resolvers import Dnsmasq  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    """A DNS server under test: where it listens and the process whose CPU we count."""

    name: str
    ip: str
    port: int
    pid: int


@dataclass
class Run:
    qps: float
    sent: int
    completed: int
    lost: int
    avg_latency: float  # seconds
    max_latency: float
    rcodes: str
    response_size: int
    cpu_us_per_query: float


# -- dnsperf ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _number(pattern: str, text: str, cast: type[float] | type[int] = float) -> Any:
    m = re.search(pattern, text)
    if not m:
        raise RuntimeError(f"dnsperf output without {pattern!r}:\n{text}")
    return cast(m.group(1))


def dnsperf(
    target: Target,
    query_file: Path,
    duration: float,
    clients: int,
    outstanding: int,
    pin: list[str],
    rate: int | None = None,
) -> Run:
    argv = [
        *pin,
        find_binary("dnsperf") or "dnsperf",
        "-s", target.ip, "-p", str(target.port),
        "-d", str(query_file),
        "-l", str(duration),
        "-c", str(clients),
        "-q", str(outstanding),
        "-t", "1",
    ]  # fmt: skip
    if rate is not None:
        argv += ["-Q", str(rate)]
    cpu_before = cpu_seconds(target.pid)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    cpu = cpu_seconds(target.pid) - cpu_before
    out = proc.stdout
    if proc.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({proc.returncode}):\n{out}\n{proc.stderr}")
    completed = _number(r"Queries completed:\s+(\d+)", out, int)
    codes = re.search(r"Response codes:\s+(.*)", out)
    return Run(
        qps=_number(r"Queries per second:\s+([\d.]+)", out),
        sent=_number(r"Queries sent:\s+(\d+)", out, int),
        completed=completed,
        lost=_number(r"Queries lost:\s+(\d+)", out, int),
        avg_latency=_number(r"Average Latency \(s\):\s+([\d.]+)", out),
        max_latency=_number(r"Average Latency \(s\):.*max ([\d.]+)\)", out),
        rcodes=codes.group(1).strip() if codes else "?",
        response_size=_number(r"Average packet size:.*response (\d+)", out, int),
        cpu_us_per_query=cpu / completed * 1e6 if completed else float("nan"),
    )


# -- the agent and its records ----------------------------------------------------------


def http(agent: AgentProc, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(agent.http + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


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


def ask(target: Target, name: str, rdtype: str) -> dns.message.Message:
    """The question as dnsperf sends it: no EDNS, so the 512-byte UDP limit applies."""
    query = dns.message.make_query(name, rdtype, use_edns=False)
    return dns.query.udp(query, target.ip, port=target.port, timeout=2)


def wait_for_answers(target: Target, name: str, count: int, timeout: float) -> int:
    """Poll until `name` A has `count` records; returns how many it last had."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        try:
            reply = ask(target, name, "A")
            seen = sum(len(rrset) for rrset in reply.answer)
        except (OSError, dns.exception.DNSException):
            seen = 0
        if seen >= count or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def dnsmasq_records(replies: list[dns.message.Message]) -> list[str]:
    """dnsmasq options that make it answer what the agent answered."""
    options: list[str] = []

    def add(line: str) -> None:
        if line not in options:
            options.append(line)

    for reply in replies:
        for rrset in [*reply.answer, *reply.additional]:
            owner = rrset.name.to_text(omit_final_dot=True)
            for rd in rrset:
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    add(f"host-record={owner},{rd.address}")
                elif rrset.rdtype == dns.rdatatype.SRV:
                    target = rd.target.to_text(omit_final_dot=True)
                    add(f"srv-host={owner},{target},{rd.port},{rd.priority},{rd.weight}")
    return options


def _loop_keys(value: Any, path: str = "") -> list[str]:
    """`key=value` of every key mentioning the event loop in a JSON document."""
    found = []
    if isinstance(value, dict):
        for key, inner in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "loop" in str(key).lower() and not isinstance(inner, dict | list):
                found.append(f"{where}={inner}")
            found += _loop_keys(inner, where)
    elif isinstance(value, list):
        for inner in value:
            found += _loop_keys(inner, path)
    return found


def uvloop_state(agent: AgentProc) -> str:
    """Whether the agent runs on uvloop: what /v1/agent/self says, else whether it is mapped."""
    try:
        said = _loop_keys(http(agent, "GET", "/v1/agent/self"))
    except OSError:
        said = []
    if said:
        return f"uvloop: /v1/agent/self says {', '.join(said)}"
    assert agent.proc is not None
    try:
        maps = Path(f"/proc/{agent.proc.pid}/maps").read_text()
    except OSError:
        return "uvloop: unknown"
    if "uvloop" in maps:
        return "uvloop: its module is loaded in the agent process (/v1/agent/self does not say)"
    return "uvloop: not loaded in the agent process, so the default asyncio loop"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    text = (out.stdout + out.stderr).strip()
    for line in text.splitlines():
        if re.search(r"\d+\.\d+", line):
            return line.strip()
    return "?"


def code_state() -> str:
    """Which agent code ran: the folder `gossamer.agent` imports from, and its git state."""
    spec = importlib.util.find_spec("gossamer.agent")
    if spec is None or spec.origin is None:
        return "agent code: gossamer.agent not importable"
    src = Path(spec.origin).resolve().parent  # through the editable install or a symlink farm

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(src), *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except OSError:
            return ""

    head = git("log", "-1", "--format=%h %s")
    if not head:
        return f"agent code: {src} (not a git checkout)"
    dns_core = git("log", "-1", "--format=%h %s", "--", "dns")
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "dns") else ""
    return (
        f"agent code: {src}, at {head[:80]}\n"
        f"DNS core (last commit to agent/dns): {dns_core[:80]}{dirty}"
    )


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
    if svc == "consul":
        want = 1
    else:
        register(agent, svc, args.instances)
        want = args.instances
    seen = wait_for_answers(gossamer, f"{svc}.service.consul", want, args.wait)
    if seen < want:
        raise SystemExit(
            f"the agent answers {svc}.service.consul A with {seen} records, not {want}, "
            f"after {args.wait:.0f}s (a DNS core without catalog services? "
            "try --service consul)"
        )

    queries = [
        (f"{svc}.service.consul", "A"),
        (f"_{svc}._tcp.service.consul", "SRV"),
        (f"{svc}.service.consul", "SRV"),
    ]
    replies: dict[tuple[str, str], dns.message.Message] = {}
    notes = []
    for name, rdtype in queries:
        reply = ask(gossamer, name, rdtype)
        if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
            notes.append(
                f"skipped {name} {rdtype}: gossamer answers "
                f"{dns.rcode.to_text(reply.rcode())} with {len(reply.answer)} answer rrsets"
            )
            continue
        if reply.flags & dns.flags.TC:
            notes.append(f"{name} {rdtype}: gossamer's answer is truncated (TC) at 512 bytes")
        replies[(name, rdtype)] = reply

    ip = f"{cluster.net}.200"
    dnsmasq = Dnsmasq("dnsmasq", workdir / "dnsmasq", ip, free_port(ip), prefix=server_pin)
    dnsmasq.options = dnsmasq_records(list(replies.values()))
    dnsmasq.log_queries = False
    dnsmasq.start()
    try:
        run_all(args, gossamer, dnsmasq, replies, notes, workdir, load_pin, pin_ok, cpus, agent)
    finally:
        dnsmasq.stop()


def run_all(
    args: argparse.Namespace,
    gossamer: Target,
    dnsmasq: Dnsmasq,
    replies: dict[tuple[str, str], dns.message.Message],
    notes: list[str],
    workdir: Path,
    load_pin: list[str],
    pin_ok: bool,
    cpus: list[int],
    agent: AgentProc,
) -> None:
    local = Target("dnsmasq", dnsmasq.ip, dnsmasq.port, dnsmasq.pid)
    for (name, rdtype), reply in replies.items():
        theirs = ask(local, name, rdtype)
        mine = sorted(rd.to_text() for rrset in reply.answer for rd in rrset)
        them = sorted(rd.to_text() for rrset in theirs.answer for rd in rrset)
        if mine != them:
            notes.append(f"{name} {rdtype}: dnsmasq answers {them}, gossamer {mine}")

    print("DNS: dnsperf, UDP, no EDNS; one query name per file, looped")
    print(f"machine: nproc {os.cpu_count()}, affinity {cpus}, Python {sys.version.split()[0]}")
    print(uvloop_state(agent))
    print(tool_version(["dnsperf", "-h"]).replace("Version", "dnsperf"), end="; ")
    print(tool_version([dnsmasq.argv()[0], "--version"]).split("Copyright")[0].strip())
    print(code_state())
    print(f"load average at start: {load_average()}")
    if pin_ok:
        print(
            f"pinned: servers on CPU {args.server_cpu} (the agent with its serf child, dnsmasq), "
            f"dnsperf on CPU {args.load_cpu}"
        )
    else:
        print("not pinned (--no-pin or fewer than 2 CPUs): dnsperf shares the servers' CPUs")
    print(
        f"dnsperf: {args.clients} clients, {args.outstanding} outstanding, {args.duration:g}s "
        f"per run, median of {args.runs} runs (by queries/s), interleaved"
    )
    print()

    def perf(target: Target, qfile: Path, duration: float, rate: int | None = None) -> Run:
        return dnsperf(target, qfile, duration, args.clients, args.outstanding, load_pin, rate=rate)

    qfiles = {}
    for i, (name, rdtype) in enumerate(replies):
        qfiles[(name, rdtype)] = workdir / f"q{i}.txt"
        qfiles[(name, rdtype)].write_text(f"{name} {rdtype}\n")
    if qfiles:
        warm = next(iter(qfiles.values()))
        for target in (gossamer, local):
            perf(target, warm, 1)

    header = (
        f"{'query':30} {'server':8} {'queries/s':>9} {'(min-max)':>15} {'lost':>5} "
        f"{'avg ms':>7} {'max ms':>7} {'CPU us/q':>8} {'bytes':>5}  {'q/s':>5} {'CPU':>5}"
    )
    print(f"{'':{len(header) - 12}}ratio to dnsmasq")
    print(header)
    print("-" * len(header))
    peaks: dict[tuple[str, str], float] = {}
    for key, qfile in qfiles.items():
        results: dict[str, list[Run]] = {"gossamer": [], "dnsmasq": []}
        for run in range(args.runs):
            order = (gossamer, local) if run % 2 == 0 else (local, gossamer)
            for target in order:
                results[target.name].append(perf(target, qfile, args.duration))
        medians = {}
        cpu = {}
        for server, runs in results.items():
            ordered = sorted(runs, key=lambda r: r.qps)
            medians[server] = ordered[len(ordered) // 2]
            cpu[server] = statistics.median(r.cpu_us_per_query for r in runs)
        ratio = medians["gossamer"].qps / medians["dnsmasq"].qps
        cpu_ratio = cpu["dnsmasq"] / cpu["gossamer"] if cpu["gossamer"] else float("nan")
        peaks[key] = medians["gossamer"].qps
        label = f"{key[0]} {key[1]}"
        for server in ("gossamer", "dnsmasq"):
            r, runs = medians[server], results[server]
            spread = f"{min(x.qps for x in runs) / 1e3:.0f}k-{max(x.qps for x in runs) / 1e3:.0f}k"
            print(
                f"{label:30} {server:8} {r.qps:9,.0f} {spread:>15} "
                f"{max(x.lost for x in runs):5d} {fmt_ms(r.avg_latency)} "
                f"{fmt_ms(max(x.max_latency for x in runs))} {cpu[server]:8.1f} "
                f"{r.response_size:5d}"
                + (f"  {ratio:5.2f} {cpu_ratio:5.2f}" if server == "gossamer" else "")
            )
            if not r.rcodes.startswith("NOERROR") or "," in r.rcodes:
                print(f"{'':30} {'':8} response codes: {r.rcodes}")
            label = ""
    print(
        "queries/s, avg ms: the median run by queries/s; lost: the most in any run; max ms: the\n"
        "largest in any run; CPU us/q: the server process's CPU time per answered query, median\n"
        "of the runs; ratios: gossamer/dnsmasq queries/s, and dnsmasq/gossamer CPU per query\n"
        "(above 1: gossamer spends less CPU per answer). Other load on the machine moves\n"
        "queries/s more than CPU per query."
    )
    for note in notes:
        print(f"note: {note}")
    print()

    if qfiles:
        print(
            f"gossamer rate-limited at {args.fraction:.0%} of its peak (dnsperf -Q), one run each"
        )
        header = (
            f"{'query':32} {'-Q rate':>9} {'queries/s':>10} {'sent':>9} {'lost':>6} "
            f"{'avg ms':>7} {'max ms':>7}"
        )
        print(header)
        print("-" * len(header))
        for key, qfile in qfiles.items():
            rate = int(peaks[key] * args.fraction)
            r = perf(gossamer, qfile, args.duration, rate=rate)
            print(
                f"{key[0] + ' ' + key[1]:32} {rate:9,d} {r.qps:10,.0f} {r.sent:9,d} "
                f"{r.lost:6d} {fmt_ms(r.avg_latency)} {fmt_ms(r.max_latency)}"
            )
    print(f"\nload average at the end: {load_average()} (1, 5, 15 min; other work on the machine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per dnsperf run")
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
