"""Leaves issued per second on one agent, and CPU per leaf. Printed, not asserted.

1. In-process: `proxy/ca/leaf.issue_leaf` (a new EC P-256 key + an ECDSA
   signature by an agent intermediate), N times; wall time and this
   process's CPU time (time.process_time) per leaf.
2. Via HTTP: one real agent (with its serf child); N services registered,
   then `GET /v1/agent/connect/ca/leaf/<service>` once each, sequentially:
   the first request issues the leaf, writes it to disk (fsync) and answers
   it. Wall time per leaf, and the agent's CPU per leaf from
   /proc/<pid>/stat (utime + stime) before and after.
3. Via HTTP, again for the same services: leaves already held, so the cost of
   serving one (the HTTP request and the JSON).

    .venv/bin/python bench/ca_leaf.py [--leaves 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossamer.proxy.ca.intermediate import sign_intermediate
from gossamer.proxy.ca.keys import generate_key
from gossamer.proxy.ca.leaf import issue_leaf
from gossamer.proxy.ca.profile import Issuer
from gossamer.proxy.ca.root import create_root, trust_domain
from tests.harness.cluster import AgentProc, Cluster

TICKS = os.sysconf("SC_CLK_TCK")


def in_process(count: int) -> tuple[float, float]:
    """(leaves per second, CPU ms per leaf) for issue_leaf alone."""
    now = datetime.now(UTC)
    root = create_root(generate_key(), trust_domain("bench-0000"), now)
    key = generate_key()
    inter = Issuer(sign_intermediate(root, key.public_key(), now, name="bench"), key)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        issue_leaf(inter, "dc1", f"svc{i}", now)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, cpu / count * 1000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def via_http(agent: AgentProc, count: int) -> tuple[float, float]:
    """(leaves per second, agent CPU ms per leaf) for `count` sequential leaf GETs."""
    assert agent.proc is not None
    cpu, wall = cpu_seconds(agent.proc.pid), time.perf_counter()
    for i in range(count):
        body = agent.get(f"/v1/agent/connect/ca/leaf/svc{i}")
        assert body["Service"] == f"svc{i}"
    wall = time.perf_counter() - wall
    cpu = cpu_seconds(agent.proc.pid) - cpu
    return count / wall, cpu / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leaves", type=int, default=300)
    args = parser.parse_args()
    rate, cpu = in_process(args.leaves)
    rows = [("in-process issue_leaf (key + sign)", rate, cpu)]
    with tempfile.TemporaryDirectory(prefix="bench-ca-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            (agent,) = cluster.start(1, prefix="ca")
            for i in range(args.leaves):
                agent.put("/v1/agent/service/register", {"Name": f"svc{i}", "Port": 1000 + i})
            rate, cpu = via_http(agent, args.leaves)
            rows.append(("HTTP, first request: issue + fsync + answer", rate, cpu))
            rate, cpu = via_http(agent, args.leaves)
            rows.append(("HTTP, leaf already held: answer only", rate, cpu))
        finally:
            cluster.close()
    print(f"{args.leaves} leaves, EC P-256, on {os.cpu_count()} cores")
    print(f"{'':46} {'leaves/s':>9} {'CPU ms/leaf':>12}")
    for name, rate, cpu in rows:
        print(f"{name:46} {rate:9.0f} {cpu:12.2f}")


if __name__ == "__main__":
    main()
