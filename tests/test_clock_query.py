"""The `gossamer-clock` serf query through real serf processes, with a peer's clock skewed.

The agents of test_check_cli.py share this host's clock, so a skew can only
be made here: b answers with a clock 45 s ahead (its clock is injected), c
runs no responder (an agent from before the query). What the asker measures
is what `gossamer check` judges.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gossamer.agent.preflight.cluster_checks import judge_clock
from gossamer.agent.preflight.result import Status
from gossamer.gossip import clock_query
from tests.harness.binaries import needs
from tests.harness.poll import eventually_async as eventually
from tests.serf_fixture import SerfCluster

pytestmark = needs("serf")
SKEW_NS = 45 * 10**9


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[SerfCluster]:
    c = SerfCluster(tmp_path)
    try:
        yield c
    finally:
        await c.aclose()


async def test_a_skewed_peer_is_measured_and_a_silent_one_named(cluster: SerfCluster) -> None:
    a, b, c = [await cluster.start(n) for n in ("a", "b", "c")]
    ca, cb = await cluster.client(a), await cluster.client(b)
    assert await ca.join([b.bind_addr, c.bind_addr]) == 2

    async def all_alive() -> bool:
        return [m.status for m in await ca.members()] == ["alive"] * 3

    await eventually(all_alive)
    responder = asyncio.create_task(
        clock_query.answer_forever(lambda: cb, clock=lambda: time.time_ns() + SKEW_NS)
    )
    try:

        async def answered() -> clock_query.ClockReport:
            report = await clock_query.ask(ca, "a")
            assert "b" in report.peers  # the responder's stream may open after the first ask
            return report

        report = await eventually(answered)
    finally:
        responder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await responder
    measured = report.peers["b"]
    assert abs(measured.offset_s - 45.0) <= measured.uncertainty_s + 0.05
    assert measured.uncertainty_s < 2.0  # one query: bounded by its 1 s timeout
    assert report.missing == ("c",)
    verdict = judge_clock({"b": measured.offset_s}, report.missing, "")
    assert verdict.status is Status.FAIL and "(b)" in verdict.detail
