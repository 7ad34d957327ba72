"""How long `gossamer check` takes, and how precise its clock offsets are, on a 3-agent cluster.

Printed, not asserted. Two figures, each the median (min-max) of `--rounds`:
- `GET /v1/agent/clock`: the serf query `gossamer-clock` round trip (what the
  check waits for) and the largest |offset| and uncertainty it reports; the
  agents share one host clock, so every true offset is 0 and the reported
  offset is the measurement error;
- `gossamer check` end to end as a subprocess (Python start-up included),
  and the same with `--pre` (no agent asked).
There is no reference to set them against (linkerd check talks to Kubernetes).

    .venv/bin/python bench/check_run.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.cli import cli_env  # noqa: E402
from tests.harness.cluster import Cluster, free_port, http_json  # noqa: E402


def shown(values: list[float], unit: str, scale: float = 1.0) -> str:
    v = [x * scale for x in values]
    return f"{statistics.median(v):8.1f} {unit} ({min(v):.1f}-{max(v):.1f})"


def timed_check(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "gossamer.agent", "check", *args],
        capture_output=True,
        env=cli_env(),
        check=False,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    trips, offsets, uncertainty, full, pre = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="gossamer-bench-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            first = cluster.start(3)[0]
            ip = first.ip
            pre_flags = ["--pre", "--data-dir", f"{tmp}/fresh", "--bind", ip, "--client", ip]
            for flag in ("--http-port", "--dns-port", "--serf-port", "--rpc-port"):
                pre_flags += [flag, str(free_port(ip))]
            for _ in range(args.rounds):
                start = time.perf_counter()
                clock = http_json(first.http + "/v1/agent/clock")
                trips.append(time.perf_counter() - start)
                offsets.append(max(abs(x) for x in clock["Offsets"].values()))
                uncertainty.append(max(clock["Uncertainty"].values()))
                full.append(timed_check("--http-addr", first.http))
                pre.append(timed_check(*pre_flags))
        finally:
            leftovers = cluster.close()
    if leftovers:
        raise RuntimeError(f"left behind: {leftovers}")
    print(f"3 agents on one host, {args.rounds} rounds: median (min-max)")
    print(f"GET /v1/agent/clock round trip   {shown(trips, 'ms', 1e3)}")
    print(f"largest |offset| (true: 0)       {shown(offsets, 'ms', 1e3)}")
    print(f"largest uncertainty reported     {shown(uncertainty, 'ms', 1e3)}")
    print(f"gossamer check (subprocess)      {shown(full, 's')}")
    print(f"gossamer check --pre             {shown(pre, 's')}")


if __name__ == "__main__":
    main()
