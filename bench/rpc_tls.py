"""Agent-RPC sync round trip with mutual TLS 1.3, next to the same round over plain TCP.

Printed, not asserted. Two agents' sync sides in one process on 127.0.0.1
(LiveCatalog on SQLite, as tests/harness/replication.py builds them): agent
b serves, agent a runs `exchange` against it, one new connection per round
as the Replicator does. Two workloads per catalog size:
- "steady": both hold the same N node records (the usual round: digests
  match, nothing moves);
- "1 change": b's own record gets a new version before each round (one
  record travels).
The TLS rows are the real `agent.sync` client and server (handshake, both
chains verified by OpenSSL and by gossamer's `verify_chain`); the plain rows
run the same pure conversation (`DigestExchange`, `sync_answer.respond`,
`apply_effects`) over a bare TCP twin of the server loop defined here — the
product has no plaintext mode, so the baseline lives in the bench. Each is
run with a new connection per round (TLS: the pool emptied first, so a full
handshake every round; plain: what agents did before TLS) and with the
connection kept (what the TLS client does now, pool.py). Prints the median
and p90 per round and, on each TLS row, the ratio of its median to the
plain row above it (the goal: TLS no more than 10 % slower). The agents'
real cost of TLS is "TLS, kept conn" against "plain, new conn".

    .venv/bin/python bench/rpc_tls.py [--rounds 200] [--nodes 10,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gossamer.agent.sync.client import exchange  # noqa: E402
from gossamer.agent.sync.peer_link import apply_effects, snapshots  # noqa: E402
from gossamer.catalog.sync_answer import Served, respond  # noqa: E402
from gossamer.catalog.sync_exchange import DigestExchange  # noqa: E402
from gossamer.catalog.sync_protocol import FrameDecoder, Message, encode  # noqa: E402
from tests.harness.replication import SyncPeer, SyncPeers, node_record  # noqa: E402


class PlainTwin:
    """The server loop of agent.sync.server without TLS: the bench's baseline only."""

    def __init__(self, peer: SyncPeer) -> None:
        self.peer = peer
        self.server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[:2]  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder, peer = FrameDecoder(), self.peer
        while data := await reader.read(65536):  # until the client closes
            for message in decoder.feed(data):
                served = Served(peer.catalog.state, "dc1", snapshots(peer.replicas))
                frame, effects = respond(message, served)
                apply_effects(
                    peer.catalog, peer.replicas, effects, self_origin=peer.name,
                    tls=peer.tls, peer="bench", peer_node="a",
                )  # fmt: skip
                writer.write(frame)
                await writer.drain()
        writer.close()


class PlainClient:
    """`client.exchange` over bare TCP: the same conversation and effects; `keep` reuses the
    connection across rounds as the TLS client's pool does."""

    def __init__(self, addr: tuple[str, int], a: SyncPeer, *, keep: bool) -> None:
        self.addr, self.a, self.keep = addr, a, keep
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def exchange(self) -> None:
        a = self.a
        reader, writer = self.conn or await asyncio.open_connection(*self.addr)
        conversation = DigestExchange(a.catalog.state, "dc1", snapshots(a.replicas))
        decoder, pending = FrameDecoder(), list[Message]()
        request: Message | None = conversation.first_request()
        while request is not None:
            writer.write(encode(request))
            while not pending:
                pending += decoder.feed(await reader.read(65536))
            step = conversation.receive(pending.pop(0))
            apply_effects(
                a.catalog, a.replicas, step.effects, self_origin="a", tls=a.tls, peer="b",
                peer_node="b",
            )  # fmt: skip
            request = step.request
        if self.keep:
            self.conn = (reader, writer)
        else:
            writer.close()
            await writer.wait_closed()


async def timed(
    rounds: int, before: Callable[[int], None], once: Callable[[], Awaitable[object]]
) -> list[float]:
    out = []
    for n in range(rounds):
        before(n)
        start = time.perf_counter()
        await once()
        out.append((time.perf_counter() - start) * 1000)
    return out


async def measure(nodes: int, rounds: int, root: Path) -> list[tuple[str, list[float]]]:
    async with SyncPeers(root) as make:
        a, b = make("a"), await make("b").start()
        records = [node_record(f"n{i}", 1, "web") for i in range(nodes - 2)]
        for peer in (a, b):
            peer.catalog.apply(records)
        a.catalog.apply([node_record("a", 1)])
        b.catalog.apply([node_record("b", 1)])
        plain = PlainTwin(b)
        twin = await plain.start()
        kept = PlainClient(twin, a, keep=True)

        async def tls_new() -> None:
            a.tls.pool.close_all()  # a handshake every round
            await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls)

        transports = [
            ("plain, new conn", PlainClient(twin, a, keep=False).exchange),
            ("TLS,   new conn", tls_new),
            ("plain, kept conn", kept.exchange),
            ("TLS,   kept conn", lambda: exchange(b.addr, a.catalog, self_origin="a", tls=a.tls)),
        ]
        for _, once in transports:  # warm every path; the catalogs agree from here on
            await once()
        version = iter(range(2, 10**9))

        def still(_: int) -> None:
            pass

        def change(_: int) -> None:
            b.catalog.apply([node_record("b", next(version), "db")])

        rows = []
        for label, before in (("steady", still), ("1 change", change)):
            for transport, once in transports:
                values = await timed(rounds, before, once)
                rows.append((f"{nodes:>5} nodes, {label:<8} {transport}", values))
        if kept.conn is not None:
            kept.conn[1].close()
            await kept.conn[1].wait_closed()
        plain.stop()
        return rows


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.9 * len(values)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--nodes", default="10,1000")
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="uvloop: as agents run"
    )
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    with tempfile.TemporaryDirectory() as tmp:
        for nodes in (int(n) for n in args.nodes.split(",")):
            (where := Path(tmp, str(nodes))).mkdir()
            rows = asyncio.run(measure(nodes, args.rounds, where))
            print(f"{'round trip (ms)':<42} {'median':>8} {'p90':>8} {'ratio':>7}")
            for index, (label, values) in enumerate(rows):
                median = statistics.median(values)
                ratio = ""
                if index % 2:
                    ratio = f"{median / statistics.median(rows[index - 1][1]):.2f}x"
                print(f"{label:<42} {median:8.2f} {p90(values):8.2f} {ratio:>7}")
            for before, now in ((0, 3), (4, 7)):  # plain new conn (before TLS) -> TLS kept (now)
                change = statistics.median(rows[now][1]) / statistics.median(rows[before][1])
                print(f"{rows[now][0].split(' TLS')[0]}: agents before TLS -> now: {change:.2f}x")
            print()


if __name__ == "__main__":
    main()
