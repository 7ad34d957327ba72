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

    A -> B sums (root hash)    B -> A empty delta (same root) or its range sums
    A -> B digest of the differing ranges    B -> A delta (records + want)
    A absorbs the delta;       if B wants records:  A -> B push, B -> A ok

Both the ranged round ("ranged", range_sums.py) and the full digest it
replaced ("full", still what an agent sends a peer that predates `sums`) run
on the same random draws, interleaved, and are printed side by side.

Only anti-entropy runs (no serf `cv` tag pulls) unless --pull-k: then k random
nodes first pull the record from its owner (a PullExchange), as the nodes
that saw the owner's `cv` tag first would, and anti-entropy does the rest.
Exchanges are sequential within a round, so a record can travel further than
one hop per round (as with the real, unsynchronised timers).

The merge and sync functions are pure functions of immutable states, so a
node's state is interned (nodes holding equal catalogs share one object) and
the whole conversation between two states is computed once and reused. That
is what keeps 10,000 nodes fast; the cost of one real, unshared exchange
between equal catalogs at each N is printed separately.

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
from dataclasses import dataclass
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
from gossamer.catalog.sync_protocol import Effects, encode  # noqa: E402

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


@dataclass(frozen=True)
class Talk:
    """One whole anti-entropy conversation between two states: its bytes and its effects."""

    bytes: int
    record_bytes: int  # bytes of messages that carried at least one record
    asker: tuple[Effects, ...]  # what each reply brought to the asking node
    answerer: tuple[Effects, ...]  # what each request brought to the answering node


class Sim:
    """Interned states and memoised conversations, with byte counters."""

    def __init__(self, ranged: bool) -> None:
        self.ranged = ranged
        self.states: list[CatalogState] = []  # distinct states; keeps their ids valid
        self._talks: dict[tuple[int, int], Talk] = {}
        self.bytes = 0
        self.record_bytes = 0

    def intern(self, state: CatalogState) -> CatalogState:
        for known in self.states:
            if known is state or known == state:
                return known
        self.states.append(state)
        return state

    def talk(self, asker: CatalogState, answerer: CatalogState) -> Talk:
        """The conversation `asker` opens with `answerer` (pure, so computed once per pair)."""
        key = (id(asker), id(answerer))
        if key not in self._talks:
            self._talks[key] = converse(asker, answerer, self.ranged)
        return self._talks[key]

    def absorb(self, states: list[CatalogState], node: int, effects: Effects) -> None:
        """Apply what a message brought to node `node`'s state (re-interned if it changed)."""
        if effects.records:
            new, changed = absorb(states[node], effects.records, self_origin=node_name(node))
            if changed:
                states[node] = self.intern(new)

    def exchange(self, states: list[CatalogState], a: int, b: int) -> None:
        """Node a runs one anti-entropy round with node b, as the agent's client does."""
        talk = self.talk(states[a], states[b])
        self.bytes += talk.bytes
        self.record_bytes += talk.record_bytes
        for effects in talk.answerer:
            self.absorb(states, b, effects)
        for effects in talk.asker:
            self.absorb(states, a, effects)

    def pull(self, states: list[CatalogState], a: int, owner: int) -> None:
        """Node a pulls the owner's record from the owner (the `cv` tag path)."""
        conversation = PullExchange(DC, [node_name(owner)])
        request = conversation.first_request()
        result = answer(request, Served(states[owner], DC))
        for message in (request, result.reply):
            size = len(encode(message))
            self.bytes += size
            self.record_bytes += size if message.get("records") else 0
        self.absorb(states, a, conversation.receive(result.reply).effects)


def converse(asker: CatalogState, answerer: CatalogState, ranged: bool) -> Talk:
    """Drive one `DigestExchange` against `sync_answer.answer`, counting every frame."""
    conversation = DigestExchange(asker, DC, ranged=ranged)
    total = records = 0
    mine: list[Effects] = []
    theirs: list[Effects] = []
    request: dict[str, Any] | None = conversation.first_request()
    while request is not None:
        result = answer(request, Served(answerer, DC))
        for message in (request, result.reply):
            size = len(encode(message))
            total += size
            records += size if message.get("records") else 0
        theirs.append(result.effects)
        step = conversation.receive(result.reply)
        mine.append(step.effects)
        request = step.request
    return Talk(total, records, tuple(mine), tuple(theirs))


def run_once(
    base: CatalogState, n: int, k: int, rng: random.Random, max_rounds: int, ranged: bool
) -> tuple[int, int, int, float]:
    """(rounds, bytes, record bytes, seconds) until every node holds node 0's new version."""
    sim = Sim(ranged)
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


PROTOCOLS = {"full": False, "ranged": True}  # name -> DigestExchange(ranged=...)


def exchange_cost(base: CatalogState, ranged: bool, reps: int = 3) -> tuple[float, int]:
    """Seconds for one real exchange between equal catalogs (fresh copies, so nothing is
    remembered between reps; agents remember a state's sums); its bytes."""
    times, size = [], 0
    for _ in range(reps):
        a, b = (CatalogState(dict(base.records), dict(base.tombstones), base.failed) for _ in "ab")
        t0 = time.perf_counter()
        size = converse(a, b, ranged).bytes
        times.append(time.perf_counter() - t0)
    return min(times), size


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

    rows = []
    costs = []
    for n in sizes:
        records = [make_record(i, BASE_MS + i) for i in range(n)]
        base, _ = merge.apply_many(CatalogState(), records)
        for name, ranged in PROTOCOLS.items():
            costs.append((n, name, *exchange_cost(base, ranged)))
        reps = args.reps if n < BIG else args.big_reps
        for k in ks:
            runs: dict[str, list[tuple[int, int, int, float]]] = {name: [] for name in PROTOCOLS}
            for rep in range(reps):  # interleaved, each protocol on the same random draws
                for name, ranged in PROTOCOLS.items():
                    rng = random.Random(f"{args.seed}-{n}-{k}-{rep}")
                    runs[name].append(run_once(base, n, k, rng, args.max_rounds, ranged))
            for name in PROTOCOLS:
                rows.append((n, k, name, reps, runs[name]))
                r = [x[0] for x in runs[name]]
                secs = statistics.mean(x[3] for x in runs[name])
                print(f"  N={n} k={k} {name}: rounds {r}, {secs:.1f}s per run", flush=True)

    print()
    print("anti-entropy simulation (real merge + sync code): one changed record")
    print(
        f"{'N':>6} {'k':>3} {'digest':>7} {'reps':>4} {'rounds med':>10} {'min-max':>8} "
        f"{'rounds/log2N':>12} {'MB total':>9} {'KB/node/rnd':>11} {'record KB':>9}"
    )
    for n, k, name, reps, runs in rows:
        rounds = [x[0] for x in runs]
        total = statistics.median(x[1] for x in runs)
        rec = statistics.median(x[2] for x in runs)
        med = statistics.median(rounds)
        per_node_round = statistics.median(x[1] / (n * x[0]) for x in runs)
        print(
            f"{n:6} {k:3} {name:>7} {reps:4} {med:10.1f} "
            f"{f'{min(rounds)}-{max(rounds)}':>8} {med / math.log2(n):12.2f} "
            f"{total / 1e6:9.1f} {per_node_round / 1e3:11.2f} {rec / 1e3:9.1f}"
        )
    print(
        "k: nodes that pulled the record from its owner before anti-entropy (cv-tag path); "
        "bytes count whole rounds; record KB = messages that carried the record"
    )
    print()
    print("converged: one exchange between equal catalogs, real code (best of 3)")
    print(f"{'N':>6} {'digest':>7} {'bytes/node/round':>16} {'ms':>7}")
    for n, name, secs, size in costs:
        print(f"{n:6} {name:>7} {size:16} {secs * 1e3:7.1f}")
    print(
        "bytes/node/round: each node opens one exchange per round (both directions counted); "
        "ms: both sides, sums or digest computed afresh (agents remember a state's sums)"
    )
    print()
    push_report(sizes, args.reps, args.seed, make_record(1, BASE_MS))


if __name__ == "__main__":
    main()
