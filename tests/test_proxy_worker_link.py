"""The link between worker 0 and another worker (`--workers N`, proxy/worker_link.py).

Worker 0's `Asker` against a real `WorkerLink` over a real socket pair, the
worker on its own event loop in a thread as it runs in its own process, so
it can be stalled (its figures' source blocks, as a long GC pause or a CPU
hog holds a worker's loop) while worker 0's loop runs on. A review found
that a late answer made worker 0 close the link, which the worker read as
"worker 0 is gone": it drained and was restarted. Now a late answer is
discarded, the link stays, and the next question gets its own answer.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Sequence

import pytest

from gossamer.proxy import tally, worker_link
from gossamer.proxy.edge_metrics import EdgeMetrics
from gossamer.proxy.fleet_sum import Snapshot
from gossamer.proxy.metrics_families import Proxy
from gossamer.proxy.worker_link import MAX_ANSWER, Asker, WorkerLink, answer_frame, take_answers
from tests.harness.poll import eventually_async


class _Worker:
    """A worker's end on its own loop and thread. Address "a" answers `asked=<n>`, n
    counting its questions; `stall` holds the worker's loop inside the next one until
    `release`. Address "b" is another proxy (cache)."""

    def __init__(self, sock: socket.socket) -> None:
        self.asked = 0
        self.orphaned = threading.Event()
        self._free = threading.Event()
        self._free.set()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._done: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._main(sock.detach()),), daemon=True)  # fmt: skip
        self._thread.start()
        assert self._ready.wait(10)

    async def _main(self, fd: int) -> None:
        self._done = asyncio.Event()
        link = WorkerLink(fd, self.orphaned.set)
        await link.start()
        link.offer("a", self._counting)
        link.offer("b", lambda: [(EdgeMetrics("cache"), tally.Tally())])
        self._ready.set()
        await self._done.wait()

    def _counting(self) -> Sequence[Proxy]:
        self.asked += 1
        assert self._free.wait(10), "the test never released the stalled worker"
        counts = tally.Tally()
        counts.add("asked", self.asked)
        return [(EdgeMetrics("db"), counts)]

    def stall(self) -> None:
        self._free.clear()

    def release(self) -> None:
        self._free.set()

    def stop(self) -> None:
        self.release()
        if self._done is not None:
            self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
async def link() -> AsyncIterator[tuple[Asker, _Worker]]:
    ours, theirs = socket.socketpair()
    worker = _Worker(theirs)
    asker = Asker(ours)
    try:
        yield asker, worker
    finally:
        asker.close()
        worker.stop()


def _asked(answer: list[Snapshot] | None) -> int:
    assert answer is not None, "no answer"
    (snap,) = answer
    assert snap["Stats"]["Service"] == "db"
    return int(snap["Counts"]["asked"])


async def test_a_late_answer_is_discarded_and_the_link_kept(
    link: tuple[Asker, _Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    asker, worker = link
    assert _asked(await asker.ask("a")) == 1
    worker.stall()
    monkeypatch.setattr(worker_link, "ASK_TIMEOUT_S", 0.3)
    assert await asker.ask("a") is None  # the worker is stalled: this scrape goes without it
    monkeypatch.setattr(worker_link, "ASK_TIMEOUT_S", 30.0)  # (so a loaded machine is no flake)
    worker.release()  # the stalled worker answers question 2, late, then question 3
    assert _asked(await asker.ask("a")) == 3  # its own answer; the late one was dropped
    assert _asked(await asker.ask("a")) == 4
    assert not worker.orphaned.is_set()  # it kept serving: worker 0 is not gone


async def test_concurrent_questions_each_get_their_own_answer(
    link: tuple[Asker, _Worker],
) -> None:
    asker, _ = link
    a, b, a2 = await asyncio.gather(asker.ask("a"), asker.ask("b"), asker.ask("a"))
    assert b is not None and [s["Stats"]["Service"] for s in b] == ["cache"]
    assert sorted([_asked(a), _asked(a2)]) == [1, 2]
    assert await asker.ask("nothing here") == []


async def test_the_worker_drains_only_when_worker_0s_end_closes(
    link: tuple[Asker, _Worker],
) -> None:
    asker, worker = link
    assert _asked(await asker.ask("a")) == 1
    asker.close()  # as when worker 0's process is gone, however it went
    await eventually_async(worker.orphaned.is_set, timeout=10)
    assert await asker.ask("a") is None


async def test_a_worker_gone_fails_its_question_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = socket.socketpair()
    asker = Asker(ours)
    monkeypatch.setattr(worker_link, "ASK_TIMEOUT_S", 60.0)
    theirs.close()
    assert await asyncio.wait_for(asker.ask("a"), 10) is None  # not after the timeout
    asker.close()


def test_answers_are_framed_by_length_and_named_by_question() -> None:
    third = answer_frame(3, b"[2]")
    pending = bytearray(answer_frame(7, b"[1]") + answer_frame(9, b"[]") + third[:6])
    assert take_answers(pending) == [(7, b"[1]"), (9, b"[]")]
    assert len(pending) == 6  # a partial answer waits for the rest
    pending += third[6:]
    assert take_answers(pending) == [(3, b"[2]")] and not pending
    with pytest.raises(ValueError, match="bytes"):
        take_answers(bytearray((MAX_ANSWER + 1).to_bytes(4) + bytes(4)))
