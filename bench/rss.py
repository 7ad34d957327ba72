"""Resident memory of idle agents and their serf children in a 3-member cluster.

Printed, not asserted. RSS is VmRSS from /proc/<pid>/status, sampled a few
times over a short idle period (the largest sample is shown, as that is what
the machine has to hold).

    .venv/bin/python bench/rss.py [--idle 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.cluster import Cluster, rss_kib  # noqa: E402


def mib(kib: float) -> str:
    return f"{kib / 1024:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before sampling")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gossamer-bench-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            agents = cluster.start(3)
            pids = {}
            for agent in agents:
                assert agent.proc is not None
                (serf,) = agent.serf_pids()
                pids[agent.name] = (agent.proc.pid, serf)
            peak = {name: [0, 0] for name in pids}
            end = time.monotonic() + args.idle
            while True:  # let the cluster settle, sampling as it idles
                for name, (agent_pid, serf_pid) in pids.items():
                    peak[name][0] = max(peak[name][0], rss_kib(agent_pid))
                    peak[name][1] = max(peak[name][1], rss_kib(serf_pid))
                if time.monotonic() > end:
                    break
                time.sleep(0.5)
        finally:
            leftovers = cluster.close()
    if leftovers:
        raise RuntimeError(f"left behind: {leftovers}")
    print(f"RSS, idle 3-member cluster, after {args.idle:.0f}s idle (MiB)")
    print(f"{'agent':8} {'gossamer':>8} {'serf':>8} {'total':>8}")
    for name, (agent_kib, serf_kib) in peak.items():
        print(f"{name:8} {mib(agent_kib)} {mib(serf_kib)} {mib(agent_kib + serf_kib)}")
    cols = list(zip(*peak.values(), strict=True))
    med = [statistics.median(c) for c in cols]
    print(f"{'median':8} {mib(med[0])} {mib(med[1])} {mib(med[0] + med[1])}")
    print(f"ratio gossamer/serf (median): {med[0] / med[1]:.1f}")


if __name__ == "__main__":
    main()
