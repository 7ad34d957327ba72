"""Parked blocking queries: one table per catalog, one future per query, shared timers.

A held blocking query used to cost a future, `asyncio.wait_for` (a second
future, a timer handle, callbacks), `asyncio.shield` (a third future) and
two coroutine frames; at 10,000 held queries that was a good third of their
memory. Here a query is one small `Waiter` (keys, deadline slot, the future
its handler awaits, the function that answers it) and:

- every key a query reads maps to the set of waiters reading it, so a change
  wakes exactly the queries that read a changed key;
- deadlines are rounded up to a SLOT of 50 ms and every slot has one timer
  for all the waiters due in it (the wait jitter spreads 10,000 queries of
  `wait=5m` over ~19 s, so a few hundred timers instead of 10,000);
- a woken waiter is answered by calling its `answer` function and setting
  the future to what it returns (or to the exception it raises), so the
  handler can simply return the awaited response: no frame of ours waits.

Rules this table keeps:
- Answers run in a callback scheduled after the step that woke them (never
  inside the caller of `wake`), so a caller may finish updating what the
  answers read right after waking them, and every answer of one wake reads
  the same state.
- A waiter leaves every set it is in when it is answered, so the table
  holds only parked queries. A waiter whose future was cancelled (its
  request was cancelled) stays until its slot's timer or a change of one of
  its keys finds it, and is then dropped without calling `answer`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable
from typing import Any

SLOT = 0.05  # seconds; a query may be answered up to this much after its wait ran out


class Waiter:
    """One parked query."""

    __slots__ = ("answer", "future", "keys", "slot")

    def __init__(
        self, keys: list[str], slot: int, future: asyncio.Future[Any], answer: Callable[[], Any]
    ) -> None:
        self.keys = keys
        self.slot = slot
        self.future = future
        self.answer = answer


class Waiters:
    """The parked queries of one catalog, by key and by deadline slot."""

    def __init__(self) -> None:
        self._by_key: dict[str, set[Waiter]] = {}
        self._by_slot: dict[int, set[Waiter]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._due: list[Waiter] = []  # woken, to be answered in the next callback

    def __len__(self) -> int:
        return sum(len(w) for w in self._by_slot.values())

    @property
    def timers(self) -> int:
        """Timers pending: one per deadline slot in use, however many queries share it."""
        return len(self._timers)

    @property
    def keys(self) -> int:
        """Keys some parked query reads."""
        return len(self._by_key)

    def park(
        self, keys: list[str], timeout: float, answer: Callable[[], Any]
    ) -> asyncio.Future[Any]:
        """A future set to `answer()` once a key in `keys` is woken, or after `timeout` s."""
        loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + max(timeout, 0.0)) / SLOT)
        waiter = Waiter(keys, slot, loop.create_future(), answer)
        for key in keys:
            self._by_key.setdefault(key, set()).add(waiter)
        due = self._by_slot.get(slot)
        if due is None:
            due = self._by_slot[slot] = set()
            self._timers[slot] = loop.call_at(slot * SLOT, self._time_out, slot)
        due.add(waiter)
        return waiter.future

    def wake(self, keys: Iterable[str]) -> None:
        """Answer, after this step, every query reading one of `keys`."""
        woken = [w for key in keys for w in self._by_key.pop(key, ())]
        if woken:
            self._schedule(woken)

    def release_all(self) -> None:
        """Answer every parked query (the agent is stopping)."""
        self._schedule([w for due in self._by_slot.values() for w in due])

    def _time_out(self, slot: int) -> None:
        self._timers.pop(slot, None)
        self._answer(list(self._by_slot.get(slot, ())))

    def _schedule(self, woken: list[Waiter]) -> None:
        if not self._due:
            asyncio.get_running_loop().call_soon(self._answer_due)
        self._due += woken

    def _answer_due(self) -> None:
        due, self._due = self._due, []
        self._answer(due)

    def _answer(self, waiters: list[Waiter]) -> None:
        for waiter in waiters:
            if not self._forget(waiter) or waiter.future.done():
                continue
            try:
                waiter.future.set_result(waiter.answer())
            except Exception as exc:  # the handler raises it, and the error table maps it
                waiter.future.set_exception(exc)

    def _forget(self, waiter: Waiter) -> bool:
        """Drop `waiter` from every set; False if it was already gone (answered)."""
        due = self._by_slot.get(waiter.slot)
        if due is None or waiter not in due:
            return False
        due.discard(waiter)
        if not due:
            del self._by_slot[waiter.slot]
            timer = self._timers.pop(waiter.slot, None)
            if timer is not None:
                timer.cancel()
        for key in waiter.keys:
            watching = self._by_key.get(key)
            if watching is not None:
                watching.discard(waiter)
                if not watching:
                    del self._by_key[key]
        return True
