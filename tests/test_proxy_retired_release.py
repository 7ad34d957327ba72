"""What a registration change or a deregistration ends is let go, and says nothing more.

Found by the soak (bench/soak.py): a sidecar whose registration gained and lost
an upstream a few hundred times held every removed upstream listener, with
its pools, session and chain caches, alive: each one's idle sweep
(idle_sweep.py) had a timer armed for half the idle timeout (30 min by
default), and that timer held the listener. The same for an inbound listener
that a new port or local app retired. Each is in-process here (no agent:
WARM_S cut short, the runtime's watches' answers handed in).

Also found by the soak: a --node sidecar deregistered (drained) went on saying,
once its last leaf reached 75 % of its life and again at its end, that the leaf
was overdue and had expired ("peers refuse new connections"), of a sidecar no
longer served.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gossamer.proxy import tally, warm
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.config import ProxyConfig, Upstream
from gossamer.proxy.edge_metrics import EdgeMetrics
from gossamer.proxy.runtime import ProxyRuntime
from gossamer.proxy.upstream_set import UpstreamSet
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async
from tests.proxy_pki import Pki
from tests.proxy_support import echo_until_end


async def _collected(ref: weakref.ref[object]) -> bool:
    """Whether `ref`'s object is gone once the loop has run what was scheduled."""
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()
    return ref() is None


async def test_a_removed_upstream_listener_is_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warm, "WARM_S", 0.05)  # no agent answers here: listen at once
    identity = Pki().identity("web")
    retired: list[object] = []
    upstreams = UpstreamSet(AgentHttp("http://127.0.0.1:1"), lambda: identity, tally.Tally(),
                            EdgeMetrics(""), lambda: None, retired)  # fmt: skip
    try:
        refs = []
        for _ in range(3):  # an upstream added, then removed by the next edit
            upstream = Upstream("db", free_port("127.0.0.1"))
            await upstreams.change([upstream])
            refs.append(weakref.ref(upstreams.current[upstream][0]))
            await upstreams.change([])
        retired.clear()  # (the runtime keeps only those with connections open)
        assert [await _collected(ref) for ref in refs] == [True, True, True]
    finally:
        upstreams.stop()
        upstreams.stop_watches()


async def test_a_retired_inbound_listener_is_let_go() -> None:
    app = await asyncio.start_server(echo_until_end, "127.0.0.1", 0)
    config = ProxyConfig(service="db", bind_address="127.0.0.1",
                         bind_port=free_port("127.0.0.1"),
                         local_port=app.sockets[0].getsockname()[1])  # fmt: skip
    runtime = ProxyRuntime(config, AgentHttp("http://127.0.0.1:1"))
    runtime.trust.identity = Pki().identity("db")
    runtime.policy.known = True
    try:
        await runtime._apply(config, first=True)
        assert runtime.inbound is not None
        first = weakref.ref(runtime.inbound)
        await runtime._apply(replace(config, bind_port=free_port("127.0.0.1")))  # moved
        assert runtime.retired == []  # nothing open on it
        assert await _collected(first)
    finally:
        for listener in runtime._listeners():
            listener.stop_listening()
            listener.terminate_all()
        if runtime.metrics_server is not None:
            runtime.metrics_server.close()
        app.close()


async def test_a_drained_sidecar_says_nothing_of_its_leaf_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pki = Pki()
    pki.now = datetime.now(UTC) - timedelta(hours=1) + timedelta(seconds=1)  # 1 s to live
    leaf = pki.leaf_json("db", ttl=timedelta(hours=1))  # (the mesh signs 1 h at least)
    runtime = ProxyRuntime(ProxyConfig(service="db"), AgentHttp("http://127.0.0.1:1"))
    said = lambda: [r.getMessage() for r in caplog.records if "the leaf for db" in r.getMessage()]  # noqa: E731
    with caplog.at_level(logging.INFO, logger="gossamer.proxy"):
        runtime.trust.on_roots(pki.roots_json())
        runtime.trust.on_leaf(leaf)  # past 75 % of its life: said overdue while served
        await eventually_async(lambda: len(said()) == 1, 5)
        await runtime.drain()  # (a --node sidecar deregistered)
        await asyncio.sleep(1.5)  # the absence itself: past the leaf's expiry
    assert "overdue" in said()[0] and len(said()) == 1  # nothing about its expiry
