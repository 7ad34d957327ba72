"""The refusal log limiter under a flood from many sources: each refusal costs O(1).

Once the limiter's memory (4,096 sources) is full of sources logged within
the minute, each refusal from a new source had it scan every entry twice
(the stale ones, then the oldest): ~150 us of CPU per refusal, more than
accepting and closing the connection itself, so a flood of plaintext from
many addresses (an IPv6 prefix) cost the inbound port (and agent RPC,
which shares it) several times its own refusals.
"""

from __future__ import annotations

import time

from gossamer.proxy.log_limit import LogLimiter


def test_a_new_source_costs_the_same_when_the_memory_is_full() -> None:
    limiter = LogLimiter()
    for n in range(limiter.capacity):
        assert limiter.allow(f"10.0.{n // 256}.{n % 256}", n)
    started = time.perf_counter()
    for n in range(5_000):
        assert limiter.allow(f"2001:db8::{n:x}", 10_000 + n)  # full of recent ones
    spent = time.perf_counter() - started
    assert spent < 0.1, f"{spent * 1e6 / 5_000:.0f} us per new source"  # ~1 us; it was ~150
    assert len(limiter._last) == limiter.capacity


def test_the_oldest_noted_goes_first_and_a_source_noted_again_is_young() -> None:
    limiter = LogLimiter(interval_ms=100, capacity=3)
    for n, source in enumerate(("a", "b", "c")):
        assert limiter.allow(source, n)
    assert limiter.allow("a", 150)  # its minute passed: logged again, now the youngest
    assert limiter.allow("d", 160)  # full: b (stale, the oldest noted) and c go, not a
    assert not limiter.allow("a", 170)
    assert limiter.allow("b", 171) and limiter.allow("c", 172)  # forgotten: may log again
    assert len(limiter._last) == 3
