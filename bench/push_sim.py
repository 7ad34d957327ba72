"""Simulated pushed catalog changes: messages per change per agent at 1,000 and 10,000 nodes.

Printed, not asserted. No sockets: one changed record spreads as the agent
pushes it (agent/sync/record_push.py). The owner hands it to fanout(n)
random peers (replicator.fanout), and every node that takes it as news
passes it on to `record_news.relay_fanout(n)` random peers; a node that
already holds it stays quiet (the epidemic ends). With the `told` hint (as
agents do now) each push names whom its sender told (`record_news.told_hint`,
at most MAX_TOLD names) and a relay picks only among peers not named in the
push it took the change from; without it (before), among all peers. Both
are printed side by side. Counted per change: push messages (each one frame
of `RecordPush`, its bytes measured with the real encoder on a record like
an agent's own), hops until the last node had it, and nodes never reached
(they get the change by the Serf `cv` tag pull or anti-entropy instead).
Peers fail or are slow in real clusters; here every push arrives.

    .venv/bin/python bench/push_sim.py [--nodes 10,1000,10000] [--reps 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gossamer.agent.sync.replicator import fanout  # noqa: E402
from gossamer.catalog import record_news  # noqa: E402
from gossamer.catalog.model import NodeRecord  # noqa: E402
from gossamer.catalog.sync_exchange import RecordPush  # noqa: E402
from gossamer.catalog.sync_protocol import encode  # noqa: E402


def pick(n: int, me: int, told: frozenset[str], count: int, rng: random.Random) -> list[int]:
    """`count` random nodes of `n`, not `me` and not named in `told` (fewer if fewer are left)."""
    if n - len(told) <= 4 * count:  # few left: list them
        names = [i for i in range(n) if i != me]
        untold = record_news.targets(names, [str(i) for i in names], told)
        return rng.sample(untold, min(count, len(untold)))
    chosen: set[int] = set()
    while len(chosen) < count:  # many left: draw until enough untold ones
        peer = rng.randrange(n)
        if peer != me and str(peer) not in told:
            chosen.add(peer)
    return list(chosen)


def spread(n: int, rng: random.Random, hinted: bool) -> tuple[int, int, int]:
    """One change from node 0 among `n` nodes: (messages, hops, nodes never reached)."""
    informed = {0}
    wave: list[tuple[int, frozenset[str]]] = [(0, frozenset())]  # (node, the hint it took)
    messages, hops = 0, 0
    while wave:
        nxt = []
        for node, told in wave:
            count = (fanout if node == 0 else record_news.relay_fanout)(n - 1)
            chosen = pick(n, node, told if hinted else frozenset(), count, rng)
            hint = record_news.told_hint(told, map(str, chosen), str(node))
            for peer in chosen:
                messages += 1
                if peer not in informed:
                    informed.add(peer)
                    nxt.append((peer, hint))
        wave = nxt
        hops += 1 if wave else 0
    return messages, hops, n - len(informed)


def report(sizes: list[int], reps: int, seed: int, record: NodeRecord) -> None:
    """The table; `record` is what one push carries (its frame is measured)."""
    rng = random.Random(seed)
    frame = len(encode(RecordPush(record.datacenter, [record]).first_request()))
    print(f"pushed changes, simulated: one changed record ({frame} B push frame), {reps} reps")
    print(
        f"{'N':>6} {'fanout':>6} {'relay':>5} {'told':>5} {'msgs/agent':>10} {'KB/agent':>8} "
        f"{'hops med':>8} {'max':>4} {'missed/run':>10}"
    )
    for n in sizes:
        for hinted in (True, False):
            runs = [spread(n, rng, hinted) for _ in range(reps)]
            per_agent = statistics.mean(m for m, _, _ in runs) / n
            hops = [h for _, h, _ in runs]
            print(
                f"{n:6} {fanout(n - 1):6} {record_news.relay_fanout(n - 1):5} "
                f"{'yes' if hinted else 'no':>5} {per_agent:10.2f} "
                f"{per_agent * frame / 1e3:8.2f} {statistics.median(hops):8.1f} {max(hops):4} "
                f"{statistics.mean(x for _, _, x in runs):10.3f}"
            )
    print("msgs/agent: push messages sent per change, averaged over all agents; told: the hint")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="10,1000,10000", help="comma-separated cluster sizes")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from bench.replication_sim import make_record  # a record like an agent's own

    report([int(x) for x in args.nodes.split(",")], args.reps, args.seed, make_record(1, 2))


if __name__ == "__main__":
    main()
