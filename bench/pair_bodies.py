"""MiB/s with 1 MiB bodies alone: gossamer's, HAProxy's and Envoy's pairs, more rounds, CPU per MiB.

Printed, not asserted. `proxy_pair.py` measures 1 MiB bodies as one figure
among seven, three rounds of 3 s; from run to run its MiB/s moves as much
as a change worth a tenth of the CPU per MiB. This runs that one load only
(wrk, 4 connections, `/big`) on the same pairs, started the same way and
pinned the same way, for more interleaved rounds: each pair's median MiB/s
and its range, the CPU its two proxies spent per MiB (utime + stime from
/proc), and gossamer's ratio to each. `--upload` sends the 1 MiB the other
way: each request a POST of 1 MiB (wrk with a Lua script) that nginx answers
`204` at once and then reads to its end (an early answer), so the request
bodies cross the pairs.

    .venv/bin/python bench/pair_bodies.py [--http] [--upload] [--rounds 7] [--seconds 3]
        [--installed]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.installed import FLAG, reexec_if_asked  # noqa: E402
from bench.proxy_pair import (  # noqa: E402
    _number,
    cpu_seconds,
    gossamer_pair,
    start_peers,
    wrk,
)

# wrk: every request a POST of 1 MiB (nginx's /upload reads it and answers 204)
UPLOAD = """wrk.method = "POST"
wrk.body = string.rep("x", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
"""


def main() -> None:
    reexec_if_asked(sys.argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(FLAG, action="store_true", help="as `pip install .` runs (installed.py)")
    parser.add_argument("--http", action="store_true", help="every pair parses HTTP (L7)")
    parser.add_argument("--upload", action="store_true", help="POST 1 MiB bodies to nginx")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    load_cpu, proxy_cpu = "0", "1"
    with gossamer_pair("bodies", (load_cpu, proxy_cpu), args.http) as pair:
        paths = start_peers(pair, proxy_cpu, args.http)
        path, extra = "/big", []
        if args.upload:
            script = pair.tmp / "upload.lua"
            script.write_text(UPLOAD)
            path, extra = "/upload", ["-s", str(script)]
        rates: dict[str, list[float]] = {name: [] for name in paths}
        cpu_ms: dict[str, list[float]] = {name: [] for name in paths}
        failed: dict[str, int] = {name: 0 for name in paths}
        for port, _ in paths.values():
            wrk(port, path, 4, 2, load_cpu, *extra)  # warm-up: pools full, buffers grown
        for _ in range(args.rounds):
            for name, (port, pids) in paths.items():
                before = cpu_seconds(pids)
                out = wrk(port, path, 4, args.seconds, load_cpu, *extra)
                used = cpu_seconds(pids) - before
                rate = _number(r"Requests/sec:\s+([\d.]+)", out)  # 1 MiB per request
                failed[name] += int(_number(r"Non-2xx or 3xx responses:\s+(\d+)", out))
                rates[name].append(rate)
                cpu_ms[name].append(used * 1000 / max(rate * args.seconds, 1e-9))
    layer = "HTTP (L7)" if args.http else "TCP (L4)"
    way = "uploaded (POST)" if args.upload else "downloaded"
    print(f"{layer} pairs, 1 MiB bodies {way} at 4 connections, {args.rounds} interleaved rounds"
          f" of {args.seconds} s; medians (range)")  # fmt: skip
    ours = statistics.median(rates["gossamer"])
    for name in paths:
        mid = statistics.median(rates[name])
        ratio = f"  gossamer/{name} {ours / mid:.2f}x" if name != "gossamer" else ""
        print(f"  {name:9} {mid:6.0f} MiB/s ({min(rates[name]):.0f}-{max(rates[name]):.0f})"
              f"  CPU {statistics.median(cpu_ms[name]):.2f} ms/MiB{ratio}")  # fmt: skip
        if failed[name]:
            print(f"  {name}: {failed[name]} answers were not 2xx: its figure is not a transfer")


if __name__ == "__main__":
    main()
