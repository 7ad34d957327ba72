"""Joining the gossip ring: once (`--join`) or until it works (`--retry-join`).

The backoff schedule is a plain function so it is tested without clocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence

from gossamer.gossip.addresses import format_host_port, parse_host_port
from gossamer.gossip.rpc import SerfConnectionError, SerfRpcClient, SerfRpcError

log = logging.getLogger("gossamer.join")

FIRST_RETRY = 1.0  # seconds; doubles up to retry_interval (Consul's default cap: 30 s)


class JoinError(RuntimeError):
    """No address answered; the message lists what was tried."""


def backoff_schedule(cap: float, first: float = FIRST_RETRY) -> Iterator[float]:
    delay = min(first, cap)
    while True:
        yield delay
        delay = min(delay * 2, cap)


def join_targets(addresses: Sequence[str], serf_port: int) -> list[str]:
    return [format_host_port(*parse_host_port(a, serf_port)) for a in addresses]


async def join_once(serf: SerfRpcClient, targets: Sequence[str]) -> int:
    """Join through any of `targets`; JoinError when none answered."""
    try:
        joined = await serf.join(list(targets))
    except (SerfRpcError, SerfConnectionError) as exc:
        raise JoinError(f"could not join {', '.join(targets)}: {exc}") from None
    if joined < 1:
        raise JoinError(f"could not join {', '.join(targets)}: no node answered")
    return joined


async def retry_join(
    serf: SerfRpcClient, targets: Sequence[str], *, cap: float, max_attempts: int
) -> int:
    """Keep trying with backoff; `max_attempts` 0 means forever."""
    attempt = 0
    for delay in backoff_schedule(cap):
        attempt += 1
        try:
            joined = await join_once(serf, targets)
        except JoinError as exc:
            if max_attempts and attempt >= max_attempts:
                raise JoinError(f"{exc} (gave up after {attempt} attempts)") from None
            log.warning("%s; retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            continue
        log.info("joined the cluster through %s (%d nodes answered)", ", ".join(targets), joined)
        return joined
    raise AssertionError("unreachable")
