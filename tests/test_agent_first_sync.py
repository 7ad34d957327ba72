"""An agent holds what its sidecars act on until it has caught up with its cluster.

Found by the outage walk: an agent restarted on an empty data dir that joined
its cluster answered intentions (`{"db": []}`) and roots before its first
exchange with a peer, for about a second; its db sidecar, asking then, cut
an open connection the cluster still allowed ("no intention matched").
Real agents, real sidecars, a real app (proxy_support.py). The first_sync
gate is also tested as a unit.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gossamer.agent.sync.first_sync import FirstSync, gated
from tests.harness.cluster import AgentProc, Cluster, free_port, http_json, pid_alive
from tests.harness.poll import eventually
from tests.proxy_support import App, set_intention, sidecar, stop_mesh, wait_listening, web_body
from tests.test_agent_outage_walk import echoing, still_echoes, through


def test_only_what_sidecars_act_on_is_gated() -> None:
    for path in ("/v1/connect/intentions/match", "/v1/agent/connect/ca/roots",
                 "/v1/agent/connect/ca/leaf/db", "/v1/health/connect/db"):  # fmt: skip
        assert gated(path), path
    for path in ("/v1/agent/self", "/v1/agent/service/db", "/v1/health/service/db",
                 "/v1/catalog/services", "/v1/agent/members"):  # fmt: skip
        assert not gated(path), path


def test_the_gate_opens_at_the_first_exchange_or_the_cap() -> None:
    async def run() -> None:
        alone = FirstSync(expected=False)
        assert not alone.pending()  # nobody to catch up with: in step at once
        waiting = FirstSync(expected=True, cap_s=5.0)
        assert waiting.pending()
        task = asyncio.create_task(waiting.wait())
        await asyncio.sleep(0.05)  # (a span in which it must not open: time is the point)
        assert not task.done()
        waiting.synced()
        await asyncio.wait_for(task, 1.0)
        assert not waiting.pending()
        capped = FirstSync(expected=True, cap_s=0.2)
        began = time.monotonic()
        await capped.wait()  # peers all away: the answers go out after the cap
        assert 0.15 <= time.monotonic() - began < 1.0
        assert not capped.pending()

    asyncio.run(run())


def _register(agent: AgentProc, app_port: int, db_in: int, web_in: int, web_db: int) -> None:
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": app_port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip}},
    })  # fmt: skip
    upstreams: list[dict[str, object]] = [{"DestinationName": "db", "LocalBindPort": web_db}]
    agent.put("/v1/agent/service/register", web_body(agent, web_in, upstreams))


def _first_answer(agent: AgentProc, into: list[object]) -> None:
    """Ask `agent` for db's intentions from before it starts until it answers once."""
    url = f"{agent.http}/v1/connect/intentions/match?by=destination&name=db"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            into.append(http_json(url, timeout=15))
            return
        except OSError:  # not listening yet (a refused connect is an OSError too)
            time.sleep(0.02)  # (the tick of a poll with a deadline)


def _allows(answer: list[object]) -> bool:
    match = answer[0] if answer and isinstance(answer[0], dict) else {}
    return any(i.get("SourceName") == "web" for i in match.get("db", []))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def test_a_wiped_agent_back_in_its_cluster_cuts_no_allowed_connection(
    cluster: Cluster, tmp_path: Path
) -> None:
    _, b = cluster.start(2, prefix="fs")
    app = App("127.0.0.1").start()
    proxies = []
    try:
        web_db, db_in, web_in = free_port("127.0.0.1"), free_port(b.ip), free_port(b.ip)
        _register(b, app.port, db_in, web_in, web_db)
        set_intention(b, "web", "db", "allow")
        proxies = [sidecar(b, tmp_path, "db"), web := sidecar(b, tmp_path, "web")]
        wait_listening("127.0.0.1", web_db, web)
        eventually(lambda: through(("127.0.0.1", web_db), b"a"), 20, what="web -> db")
        kept = echoing(("127.0.0.1", web_db))
        assert b.proc is not None
        b.proc.kill()
        b.proc.wait(10)
        eventually(lambda: not any(pid_alive(p) for p in b.serf_pids()), 10,
                   what="b's serf to exit")  # fmt: skip
        shutil.rmtree(b.data_dir)
        first: list[object] = []  # b's first answer to what db's sidecar asks
        asker = threading.Thread(target=_first_answer, args=(b, first), daemon=True)
        asker.start()
        b.start()  # (it joins fs1 again: the same flags)
        asker.join(20)
        assert _allows(first), f"b answered before it caught up: {first}"
        _register(b, app.port, db_in, web_in, web_db)  # as an orchestrator does
        eventually(lambda: b.get("/v1/connect/intentions/match?by=destination&name=db")["db"],
                   20, what="the allow back on b")  # fmt: skip
        # db's sidecar has asked b again by now (a refused watch retries within 0.75 s)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # the open connection is never cut meanwhile
            assert still_echoes(kept, b"on"), proxies[0].log()[-2500:]
        assert "terminated" not in proxies[0].log(), proxies[0].log()[-2500:]
        kept.close()
    finally:
        stop_mesh(cluster, proxies, [app])
