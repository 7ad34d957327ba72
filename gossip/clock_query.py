"""`gossamer-clock`: a serf query each agent answers with its wall clock, to measure offsets.

How an offset is measured: the asker notes its clock when the query goes
out (t0) and when each answer comes back (t1); the peer read its clock in
between. The query spreads by gossip (a few 200 ms gossip rounds) but the
answer comes straight back in one UDP message, so the read is close to t1:
the offset is `peer - t1`, off by one direct network hop (a millisecond on
a LAN) and never by more than t1 - t0, which is reported as its
uncertainty. Both are far below the seconds that matter (replicated
writes more than 60 s ahead are refused; leaves are back-dated a minute).

The payload is the clock in nanoseconds since the epoch as ASCII digits:
no schema to version, and any serf client can read it
(`serf query gossamer-clock`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gossamer.gossip.errors import SerfError
from gossamer.gossip.rpc import QueryEvent, SerfRpcClient

log = logging.getLogger("gossamer.clock")

CLOCK_QUERY = "gossamer-clock"
ASK_TIMEOUT_S = 1.0  # answers on a LAN take milliseconds; the query ends after this
RETRY_S = 1.0


@dataclass(frozen=True)
class PeerClock:
    offset_s: float  # the peer's clock minus ours
    uncertainty_s: float  # the query's round trip: the offset is never further off


def encode(now_ns: int) -> bytes:
    return str(now_ns).encode()


def decode(payload: bytes) -> int | None:
    text = payload.decode("ascii", "replace")
    return int(text) if text.isdigit() else None


def offset(sent_ns: int, received_ns: int, peer_ns: int) -> PeerClock:
    return PeerClock((peer_ns - received_ns) / 1e9, (received_ns - sent_ns) / 1e9)


async def answer_forever(
    serf: Callable[[], SerfRpcClient], clock: Callable[[], int] = time.time_ns
) -> None:
    """Answer every `gossamer-clock` query until cancelled (a lost stream is opened again)."""
    while True:
        try:
            client = serf()
            async with client.stream(f"query:{CLOCK_QUERY}") as queries:
                async for query in queries:
                    if isinstance(query, QueryEvent):
                        await client.respond(query.id, encode(clock()))
        except (SerfError, RuntimeError) as exc:  # RuntimeError: serf (re)starting
            log.debug("clock query stream interrupted: %s", exc)
        await asyncio.sleep(RETRY_S)


async def ask(
    serf: SerfRpcClient, own: str, clock: Callable[[], int] = time.time_ns
) -> dict[str, PeerClock]:
    """Every peer's clock against ours, by node name (peers that do not answer are absent).

    Returns as soon as every alive peer answered, else when the query times out.
    """
    expected = {m.name for m in await serf.members() if m.status == "alive"} - {own}
    sent = clock()
    found: dict[str, PeerClock] = {}
    if not expected:
        return found
    async with serf.query(CLOCK_QUERY, timeout=ASK_TIMEOUT_S) as records:
        async for record in records:
            peer_ns = decode(record.payload) if record.type == "response" else None
            if peer_ns is not None and record.from_ != own:
                found[record.from_] = offset(sent, clock(), peer_ns)
            if expected <= found.keys():
                break
    return dict(sorted(found.items()))
