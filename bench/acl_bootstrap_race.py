"""ACL bootstrap race: how often `--agents` agents bootstrapped in the same instant end with
exactly one winner, and what asking the cluster first costs a bootstrap.

Printed, not asserted. A loopback cluster of real agents with `acl.enabled`.
Rounds alternate, re-armed each time with Consul's reset procedure (the
reset index written to every agent's `acl-bootstrap-reset`):
- contended: every agent gets `PUT /v1/acl/bootstrap` at once (threads
  released by one barrier); counts rounds won by exactly one, by none, by
  more than one (the race this guards against: before the serf query, all
  of them won), and the winner's response time;
- alone: one random agent is asked; its response time (one serf query to
  every peer, then the write).

    .venv/bin/python bench/acl_bootstrap_race.py [--agents 3] [--rounds 20]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.catalog_convergence import row  # noqa: E402
from tests.harness.cluster import AgentProc, Cluster  # noqa: E402
from tests.harness.poll import eventually  # noqa: E402
from tests.test_acl_bootstrap_race import bootstrap, reset_index  # noqa: E402


def timed(agent: AgentProc, barrier: threading.Barrier | None, out: dict[str, tuple]) -> None:
    if barrier is not None:
        barrier.wait()
    start = time.perf_counter()
    status, _ = bootstrap(agent)
    out[agent.name] = (status, time.perf_counter() - start)


def rearm(agents: list[AgentProc]) -> None:
    def one_index() -> int:
        indexes = {reset_index(a) for a in agents}
        assert len(indexes) == 1, indexes
        return indexes.pop()

    index = eventually(one_index, 20, what="one reset index everywhere")
    for agent in agents:
        (agent.data_dir / "acl-bootstrap-reset").write_text(str(index))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp:
        config = Path(tmp) / "acl.yaml"
        config.write_text("acl: {enabled: true}\n")
        cluster = Cluster(Path(tmp))
        try:
            agents = cluster.start(args.agents, prefix="b", extra=("--config-file", str(config)))
            outcomes = {0: 0, 1: 0, 2: 0}
            contended: list[float] = []
            alone: list[float] = []
            for _ in range(args.rounds):
                rearm(agents)
                barrier, got = threading.Barrier(len(agents)), {}
                threads = [threading.Thread(target=timed, args=(a, barrier, got)) for a in agents]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                won = [took for status, took in got.values() if status == 200]
                outcomes[min(len(won), 2)] += 1
                contended += won
                rearm(agents)
                one: dict[str, tuple] = {}
                timed(rng.choice(agents), None, one)
                alone += [took for status, took in one.values() if status == 200]
        finally:
            cluster.close()
    print(f"{args.agents} agents, {args.rounds} contended rounds (all at once), each followed "
          "by one uncontended bootstrap")  # fmt: skip
    print(f"rounds won by exactly one: {outcomes[1]}, by none: {outcomes[0]}, "
          f"by two or more: {outcomes[2]}")  # fmt: skip
    print(f"{'bootstrap response (ms)':28} {'n':>5} {'median':>9} {'p99':>9} {'min':>9} {'max':>9}")
    print(row("winner, contended", contended))
    print(row("alone", alone))


if __name__ == "__main__":
    main()
