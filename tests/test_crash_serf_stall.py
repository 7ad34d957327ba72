"""A serf that stops answering (SIGSTOP, wedged, swapped out): the crash walk.

With the agent's serf stopped for 20 s, `GET /v1/agent/members` and
`GET /v1/agent/self` answered 500 "internal error; see the agent log" after
10 s: a call serf did not answer raised a bare TimeoutError, which no part
expecting a SerfError caught; the member watch's resync loop (every 0.5 s)
and the event follower died on it the same way, so the agent's member view
stopped healing for the rest of its life. The timeout is now a
SerfTimeoutError: a SerfConnectionError naming serf and the call (what
every such part copes with, and what the HTTP API answers as "serf is not
reachable: ..."), still a TimeoutError.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gossamer.gossip.errors import SerfConnectionError
from gossamer.gossip.member_watch import MemberWatch
from tests.harness.binaries import needs
from tests.harness.poll import eventually_async
from tests.serf_fixture import SerfCluster

pytestmark = needs("serf")


@pytest.fixture
async def serfs(tmp_path: Path) -> AsyncIterator[SerfCluster]:
    c = SerfCluster(tmp_path)
    try:
        yield c
    finally:
        await c.aclose()


async def test_a_call_serf_does_not_answer_is_a_connection_error_naming_it(
    serfs: SerfCluster,
) -> None:
    a = await serfs.start("st")
    client = await serfs.client(a, timeout=0.5)
    await a.pause()
    try:
        with pytest.raises(SerfConnectionError, match=r"did not answer 'members' within 0\.5s"):
            await client.members()
        with pytest.raises(TimeoutError):  # what it was before, for callers that ask
            await client.members()
    finally:
        a.resume()
    assert [m.name for m in await client.members()] == ["st"]


async def test_the_member_watch_resyncs_again_after_serf_stalled(serfs: SerfCluster) -> None:
    a = await serfs.start("mw")
    client = await serfs.client(a, timeout=0.3)
    resyncs: list[float] = []
    watch = MemberWatch(client, on_resync=lambda members: resyncs.append(time.monotonic()))
    task = asyncio.create_task(watch.run())
    try:
        await eventually_async(lambda: len(resyncs) >= 2, 10)
        await a.pause()
        try:
            # the stall itself (not a wait for anything): resyncs (every 0.5 s) time out in it
            await asyncio.sleep(1.2)
        finally:
            a.resume()
        resumed = time.monotonic()
        await eventually_async(lambda: any(t > resumed for t in resyncs), 5)
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
