"""The serf query `gossamer-acl-bootstrap`: asking every peer before an ACL bootstrap wins,
and answering peers that ask (the rules are agent/acl/bootstrap_race.py).

Every agent answers, with ACLs on or off, from its own replica of the ACL
map, so a cluster where only some agents enable ACLs still decides once.
An asker waits for every peer serf shows alive, at most ASK_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gossamer.agent.acl.bootstrap_race import (
    ASK_TIMEOUT_S,
    QUERY,
    Answer,
    Claim,
    Verdict,
    decode_answer,
    decode_claim,
)
from gossamer.agent.replicated.acl_store import AclStore
from gossamer.gossip.errors import SerfError
from gossamer.gossip.rpc import QueryEvent, SerfRpcClient

log = logging.getLogger("gossamer.acl")

RETRY_S = 1.0


async def answer_forever(
    serf: Callable[[], SerfRpcClient],
    store: AclStore,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Answer every bootstrap claim until cancelled (a lost stream is opened again)."""
    while True:
        try:
            client = serf()
            async with client.stream(f"query:{QUERY}") as queries:
                async for query in queries:
                    claim = decode_claim(query.payload) if isinstance(query, QueryEvent) else None
                    if claim is None or not isinstance(query, QueryEvent):
                        continue
                    lock = store.bootstrap_lock
                    answer = lock.answer(claim, store.bootstrapped_index(), monotonic())
                    await client.respond(query.id, answer.encode())
        except (SerfError, RuntimeError) as exc:  # RuntimeError: serf (re)starting
            log.debug("bootstrap query stream interrupted: %s", exc)
        await asyncio.sleep(RETRY_S)


async def ask(
    serf: SerfRpcClient,
    store: AclStore,
    reset_index: int,
    clock: Callable[[], int] = time.time_ns,
    monotonic: Callable[[], float] = time.monotonic,
) -> Verdict:
    """Claim the bootstrap and ask every alive peer; a win stays pending until `lock.end()`."""
    lock = store.bootstrap_lock
    claim = Claim(clock(), lock.node, reset_index)
    refused = lock.begin(claim, monotonic(), store.bootstrapped_index())
    if refused is not None:
        return refused
    answers: dict[str, Answer] = {}
    try:
        expected = {m.name for m in await serf.members() if m.status == "alive"} - {lock.node}
        if expected:
            async with serf.query(QUERY, claim.encode(), timeout=ASK_TIMEOUT_S) as records:
                async for record in records:
                    got = decode_answer(record.payload) if record.type == "response" else None
                    if got is not None and record.from_ != lock.node:
                        answers[record.from_] = got
                    if expected <= answers.keys():
                        break
    except (SerfError, RuntimeError) as exc:  # fail closed: nobody was asked
        lock.end()
        log.warning("ACL bootstrap refused: asking the peers failed: %s", exc)
        return Verdict(False, f"cannot ask the other agents ({exc})")
    verdict = lock.decide(answers, expected, monotonic())
    if not verdict.won:
        log.warning("ACL bootstrap refused: %s", verdict.reason)
    return verdict
