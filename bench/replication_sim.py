"""Simulated anti-entropy: rounds and bytes until one changed record reaches every node.

Printed, not asserted. No sockets and no clock: N simulated nodes run the
real replication code: the asking side is the `DigestExchange` and
`PullExchange` objects that the agent's client drives over TCP, the
answering side `sync_answer.answer` as the agent's server calls it, and
effects are applied with `catalog.absorb`; every message is encoded with
`sync_protocol.encode` to count its bytes (frame header included). All
nodes start with the same N records (one per node, each node owning its
own); node 0 publishes a new version of its record. Each round, every node
in a random order runs one exchange with a uniformly random other node:

    A -> B digest              B -> A delta (records + want)
    A absorbs the delta;       if B wants records:  A -> B push, B -> A ok

Only anti-entropy runs (no serf `cv` tag pulls) unless --pull-k: then k random
nodes first pull the record from its owner (a PullExchange), as the nodes
that saw the owner's `cv` tag first would, and anti-entropy does the rest.
Exchanges are sequential within a round, so a record can travel further than
one hop per round (as with the real, unsynchronised timers).

The merge and sync functions are pure functions of immutable states, so a
node's state is interned (nodes holding equal catalogs share one object) and
the digest of a state, and the answer of one state to another's digest, are
computed once and reused. That is what keeps 10,000 nodes fast; the cost of
one real, unshared exchange at each N is printed separately.

The pushed path (bench/push_sim.py) is printed last: messages per change
per agent when the owner pushes a change and every node that takes it as
news passes it on.

    .venv/bin/python bench/replication_sim.py [--nodes 1000,10000] [--reps 20]
        [--big-reps 10] [--pull-k 0,4,32] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.push_sim import report as push_report  # noqa: E402
from gossamer.catalog import merge  # noqa: E402
from gossamer.catalog.absorb import absorb  # noqa: E402
from gossamer.catalog.merge import CatalogState  # noqa: E402
from gossamer.catalog.model import Check, NodeRecord, Service, next_version  # noqa: E402
from gossamer.catalog.sync_answer import Served, answer  # noqa: E402
from gossamer.catalog.sync_exchange import DigestExchange, PullExchange  # noqa: E402
from gossamer.catalog.sync_protocol import NO_EFFECTS, Effects, digest_request, encode  # noqa: E402

DC = "dc1"
BASE_MS = 1_700_000_000_000
BIG = 2_000  # from this many nodes on, run --big-reps repetitions


def node_name(i: int) -> str:
    return f"node-{i:05d}"


def make_record(i: int, version: int, port: int = 8080) -> NodeRecord:
    """A record like an agent's own: `consul` and one app service with a check."""
    name = node_name(i)
    return NodeRecord(
        node=name,
        node_id=f"{i:08x}-0000-4000-8000-000000000000",
        datacenter=DC,
        address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
        version=version,
        origin=name,
        services=(
            Service(id="consul", name="consul", port=8300),
            Service(id="web", name="web", port=port, tags=("v1",)),
        ),
        checks=(
            Check(
                check_id="service:web",
                name="Service 'web' check",
                status="passing",
                service_id="web",
                service_name="web",
                type="ttl",
            ),
        ),
    )


class Sim:
    """Interned states and memoised pure answers, with byte counters."""

    def __init__(self) -> None:
        self.states: list[CatalogState] = []  # distinct states; keeps their ids valid
        self._digests: dict[int, tuple[dict[str, Any], int]] = {}
        self._deltas: dict[tuple[int, int], tuple[dict[str, Any], int]] = {}
        self.bytes = 0
        self.record_bytes = 0  # bytes of messages that carried at least one record

    def intern(self, state: CatalogState) -> CatalogState:
        for known in self.states:
            if known is state or known == state:
                return known
        self.states.append(state)
        return state

    def digest(self, state: CatalogState) -> tuple[dict[str, Any], int]:
        key = id(state)
        if key not in self._digests:
            msg = digest_request(state, DC)
            self._digests[key] = (msg, len(encode(msg)))
        return self._digests[key]

    def delta(self, server: CatalogState, client: CatalogState) -> tuple[dict[str, Any], int]:
        key = (id(server), id(client))
        if key not in self._deltas:
            result = answer(self.digest(client)[0], Served(server, DC))
            assert result.reply["t"] == "delta" and result.effects == NO_EFFECTS, result.reply
            self._deltas[key] = (result.reply, len(encode(result.reply)))
        return self._deltas[key]

    def count(self, message: dict[str, Any]) -> None:
        size = len(encode(message))
        self.bytes += size
        if message.get("records"):
            self.record_bytes += size

    def absorb(self, states: list[CatalogState], node: int, effects: Effects) -> None:
        """Apply what a message brought to node `node`'s state (re-interned if it changed)."""
        if effects.records:
            new, changed = absorb(states[node], effects.records, self_origin=node_name(node))
            if changed:
                states[node] = self.intern(new)

    def exchange(self, states: list[CatalogState], a: int, b: int) -> None:
        """Node a runs one anti-entropy round with node b, as the agent's client does."""
        digest, digest_bytes = self.digest(states[a])
        conversation = DigestExchange(states[a], DC, digest=digest)
        conversation.first_request()
        reply, reply_bytes = self.delta(states[b], states[a])
        self.bytes += digest_bytes + reply_bytes
        if reply["records"]:
            self.record_bytes += reply_bytes
        step = conversation.receive(reply)
        self.absorb(states, a, step.effects)
        if step.request is not None:
            self.count(step.request)
            result = answer(step.request, Served(states[b], DC))
            self.count(result.reply)
            self.absorb(states, b, result.effects)
            conversation.receive(result.reply)

    def pull(self, states: list[CatalogState], a: int, owner: int) -> None:
        """Node a pulls the owner's record from the owner (the `cv` tag path)."""
        conversation = PullExchange(DC, [node_name(owner)])
        request = conversation.first_request()
        result = answer(request, Served(states[owner], DC))
        self.count(request)
        self.count(result.reply)
        self.absorb(states, a, conversation.receive(result.reply).effects)


def run_once(
    base: CatalogState, n: int, k: int, rng: random.Random, max_rounds: int
) -> tuple[int, int, int, float]:
    """(rounds, bytes, record bytes, seconds) until every node holds node 0's new version."""
    sim = Sim()
    states = [sim.intern(base)] * n
    old = merge.get(base, DC, node_name(0))
    assert old is not None
    new_version = next_version(old.version, old.version)
    states[0] = sim.intern(merge.apply(base, make_record(0, new_version, port=9090))[0])

    def holds(state: CatalogState) -> bool:
        rec = merge.get(state, DC, node_name(0))
        return rec is not None and rec.version == new_version

    start = time.perf_counter()
    for peer in rng.sample(range(1, n), min(k, n - 1)):
        sim.pull(states, peer, 0)
    rounds = 0
    while True:
        holding = {id(s) for s in sim.states if holds(s)}
        if all(id(s) in holding for s in states):
            break
        if rounds >= max_rounds:
            raise RuntimeError(f"not converged after {max_rounds} rounds")
        rounds += 1
        order = list(range(n))
        rng.shuffle(order)
        for a in order:
            b = rng.randrange(n - 1)
            sim.exchange(states, a, b + (b >= a))
    return rounds, sim.bytes, sim.record_bytes, time.perf_counter() - start


def exchange_cost(base: CatalogState, reps: int = 3) -> tuple[float, float, int]:
    """Seconds for one real, unshared exchange between two equal catalogs; digest bytes.

    (digest_request + encode on the asking side, answer + encode on the other.)
    """
    other = CatalogState(dict(base.records), dict(base.tombstones), base.failed)
    ask, ans = [], []
    size = 0
    for _ in range(reps):
        t0 = time.perf_counter()
        msg = digest_request(base, DC)
        size = len(encode(msg))
        t1 = time.perf_counter()
        encode(answer(msg, Served(other, DC)).reply)
        t2 = time.perf_counter()
        ask.append(t1 - t0)
        ans.append(t2 - t1)
    return min(ask), min(ans), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1000,10000", help="comma-separated cluster sizes")
    parser.add_argument("--reps", type=int, default=20, help=f"repetitions below {BIG} nodes")
    parser.add_argument("--big-reps", type=int, default=10, help=f"repetitions from {BIG} nodes")
    parser.add_argument("--pull-k", default="0,4,32", help="owner pulls before anti-entropy")
    parser.add_argument("--max-rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(x) for x in args.nodes.split(",")]
    ks = [int(x) for x in args.pull_k.split(",")]
    rng = random.Random(args.seed)

    rows = []
    costs = []
    for n in sizes:
        records = [make_record(i, BASE_MS + i) for i in range(n)]
        base, _ = merge.apply_many(CatalogState(), records)
        ask, ans, digest_bytes = exchange_cost(base)
        costs.append((n, ask, ans, digest_bytes))
        reps = args.reps if n < BIG else args.big_reps
        for k in ks:
            runs = [run_once(base, n, k, rng, args.max_rounds) for _ in range(reps)]
            rows.append((n, k, reps, runs))
            r = [x[0] for x in runs]
            print(
                f"  N={n} k={k}: rounds {r}, {statistics.mean(x[3] for x in runs):.1f}s per run",
                flush=True,
            )

    print()
    print("anti-entropy simulation (real merge + sync_protocol code): one changed record")
    print(
        f"{'N':>6} {'log2N':>6} {'k':>4} {'reps':>4} {'rounds med':>10} {'min-max':>8} "
        f"{'rounds/log2N':>12} {'MB total':>9} {'KB/node/rnd':>11} {'record KB':>9}"
    )
    for n, k, reps, runs in rows:
        rounds = [x[0] for x in runs]
        total = statistics.median(x[1] for x in runs)
        rec = statistics.median(x[2] for x in runs)
        med = statistics.median(rounds)
        per_node_round = statistics.median(x[1] / (n * x[0]) for x in runs)
        print(
            f"{n:6} {math.log2(n):6.2f} {k:4} {reps:4} {med:10.1f} "
            f"{f'{min(rounds)}-{max(rounds)}':>8} {med / math.log2(n):12.2f} "
            f"{total / 1e6:9.1f} {per_node_round / 1e3:11.1f} {rec / 1e3:9.1f}"
        )
    print(
        "k: nodes that pulled the record from its owner before anti-entropy (cv-tag path); "
        "bytes count whole rounds; record KB = messages that carried the record"
    )
    print()
    print("one exchange between equal catalogs, real code, not memoised (best of 3)")
    print(f"{'N':>6} {'digest KB':>10} {'ask ms':>8} {'answer ms':>10}")
    for n, ask, ans, size in costs:
        print(f"{n:6} {size / 1e3:10.1f} {ask * 1e3:8.1f} {ans * 1e3:10.1f}")
    print("ask = digest_request + encode; answer = answer(digest) + encode of the delta")
    print()
    push_report(sizes, args.reps, args.seed, make_record(1, BASE_MS))


if __name__ == "__main__":
    main()
