"""Where each pair's CPU per request goes: user time against system (kernel) time.

Printed, not asserted. The pairs of bench/proxy_pair.py (gossamer, HAProxy,
Envoy when installed), started the same way and pinned the same way, each
loaded in turn by wrk at one connection count; per request, the user and
the system CPU time of the pair's two proxies (utime and stime from /proc).
proxy_pair.py prints their sum; the split says whether a gap is in the
kernel (system calls, wake-ups: the same for every proxy doing the same
I/O) or in the proxy's own code. Rounds interleave the pairs.

    .venv/bin/python bench/proxy_cpu_split.py [--conns 1] [--http] [--seconds 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.proxy_pair import (  # noqa: E402
    _number,
    _requests,
    gossamer_pair,
    start_peers,
    user_system,
    wrk,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpus", default="0,1", help="wrk and nginx's CPU, the pairs' CPU")
    args = parser.parse_args()
    load_cpu, proxy_cpu = args.cpus.split(",")
    with gossamer_pair("cpu-split-", (load_cpu, proxy_cpu), args.http) as pair:
        paths = start_peers(pair, proxy_cpu, args.http)
        print(f"{'HTTP (L7)' if args.http else 'TCP (L4)'} pairs at {args.conns} connection(s), "
              f"{args.seconds} s each; CPU µs per request of the pair's two proxies")  # fmt: skip
        print(f"{'pair':<10} {'req/s':>9} {'user':>8} {'system':>8}")
        for _ in range(args.rounds):
            for name, (port, pids) in paths.items():
                wrk(port, "/small", args.conns, 1, load_cpu)  # warm
                user0, system0 = user_system(pids)
                text = wrk(port, "/small", args.conns, args.seconds, load_cpu)
                user1, system1 = user_system(pids)
                n = _requests(text)
                rate = _number(r"Requests/sec:\s+([\d.]+)", text)
                print(f"{name:<10} {rate:>9,.0f} {(user1 - user0) / n * 1e6:>8.1f} "
                      f"{(system1 - system0) / n * 1e6:>8.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
