"""Parked blocking queries (catalog/waiters.py): woken by their keys, timed out in shared slots."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.catalog.waiters import SLOT, Waiters


def empty(table: Waiters) -> bool:
    return len(table) == 0 and table.timers == 0 and table.keys == 0


async def test_a_wake_answers_exactly_the_queries_reading_a_changed_key() -> None:
    table = Waiters()
    web = table.park(["service:web"], 60, lambda: "web")
    both = table.park(["service:web", "nodes"], 60, lambda: "both")
    db = table.park(["service:db"], 60, lambda: "db")
    table.wake({"service:web"})
    assert await web == "web" and await both == "both"
    assert not db.done() and len(table) == 1 and table.keys == 1
    table.release_all()
    assert await db == "db"
    assert empty(table)


async def test_answers_run_after_the_waking_step_and_read_what_came_after_it() -> None:
    table = Waiters()
    state = {"v": 1}
    future = table.park(["k"], 60, lambda: state["v"])
    table.wake({"k"})
    state["v"] = 2  # the caller finishes its change after waking
    assert not future.done()
    assert await future == 2


async def test_queries_due_in_one_slot_share_one_timer_and_time_out_on_time() -> None:
    table = Waiters()
    loop = asyncio.get_running_loop()
    start = loop.time()
    futures = [table.park([f"k{i}"], 0.2, lambda: "timed out") for i in range(500)]
    assert table.timers <= 2  # 500 deadlines within a few microseconds: one or two slots
    assert await asyncio.gather(*futures) == ["timed out"] * 500
    assert 0.2 <= loop.time() - start < 0.2 + SLOT + 0.5
    assert empty(table)


async def test_what_an_answer_raises_is_raised_by_awaiting_it() -> None:
    table = Waiters()

    def bad() -> str:
        raise ValueError("filter: no such field")

    future = table.park(["k"], 60, bad)
    table.wake({"k"})
    with pytest.raises(ValueError, match="no such field"):
        await future
    assert empty(table)


async def test_a_cancelled_query_is_dropped_without_an_answer() -> None:
    table = Waiters()
    called = []
    future = table.park(["k"], 60, lambda: called.append(1))
    future.cancel()
    table.wake({"k"})
    await asyncio.sleep(0)  # the answers' callback runs
    assert called == [] and empty(table)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sets(st.sampled_from("abcd"), min_size=1), st.sampled_from([0.0, 0.01, 60])),
        max_size=30,
    ),
    st.lists(st.sets(st.sampled_from("abcde")), max_size=8),
    st.integers(0, 2**32),
)
def test_every_query_is_answered_once_and_the_table_ends_empty(
    parked: list[tuple[set[str], float]], wakes: list[set[str]], seed: int
) -> None:
    async def run() -> None:
        table = Waiters()
        answered: list[int] = []
        futures = [
            table.park(sorted(keys), timeout, lambda i=i: answered.append(i) or i)
            for i, (keys, timeout) in enumerate(parked)
        ]
        rng = random.Random(seed)
        for keys in wakes:
            table.wake(keys)
            if rng.random() < 0.5:
                await asyncio.sleep(0)
        table.release_all()
        assert await asyncio.gather(*futures) == list(range(len(parked)))
        assert sorted(answered) == list(range(len(parked)))
        assert empty(table)

    asyncio.run(run())
