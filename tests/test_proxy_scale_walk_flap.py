"""An upstream whose instances' health flaps while clients connect, with a real agent.

db has 40 live instances (external nodes on 127.99.0.x, all reaching db's
one real sidecar, bound on 0.0.0.0) and 40 dead ones (127.98.0.x, a port
where nothing listens), each with its own check set through the catalog
API. While live ones flip between passing and critical and dead ones
between critical and warning, a client keeps connecting through web's
sidecar: every connection gets through, and no attempt ever goes to a dead
instance (web's counters show no failed attempt), so the sidecar only
uses instances the agent says pass, whatever it coalesces
(watch.py `settle_s`) and however it reads the answer (`item`).
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from pathlib import Path

from tests.harness.cluster import AgentProc, Cluster, free_port, http_json
from tests.harness.poll import eventually
from tests.proxy_support import App, ProxyProc, roundtrip, set_intention, stop_mesh, wait_listening

LIVE = 40
DEAD = 40


def _instance(agent: AgentProc, node: str, address: str, port: int, status: str) -> None:
    http_json(f"{agent.http}/v1/catalog/register", "PUT", {
        "Node": node, "Address": address,
        "Service": {"ID": "dbp", "Service": "db-sidecar-proxy", "Kind": "connect-proxy",
                    "Port": port, "Proxy": {"DestinationServiceName": "db"}},
        "Check": {"CheckID": "c", "Name": "c", "ServiceID": "dbp", "Status": status},
    })  # fmt: skip


def _counters(proxy: ProxyProc) -> str:
    proxy.signal(signal.SIGUSR1)
    return str(eventually(lambda: re.findall(r"counters for web: (.*)", proxy.log())[-1:], 5))


def test_connections_flow_and_reach_only_passing_instances_while_health_flaps(
    cluster: Cluster, tmp_path: Path
) -> None:
    (agent,) = cluster.start(1, prefix="sf")
    app = App("127.0.0.1").start()
    db_in, dead, up = free_port("0.0.0.0"), free_port("127.98.0.1"), free_port("127.0.0.1")
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": app.port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip,
                                       "Proxy": {"Config": {"bind_address": "0.0.0.0"}}}},
    })  # fmt: skip
    agent.put("/v1/agent/service/register", {
        "Name": "web", "ID": "web", "Port": 1, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": free_port(agent.ip), "Address": agent.ip,
                                       "Proxy": {"Upstreams": [{"DestinationName": "db",
                                                                "LocalBindPort": up}]}}},
    })  # fmt: skip
    set_intention(agent, "web", "db", "allow")
    for i in range(LIVE):
        _instance(agent, f"live{i}", f"127.99.0.{i + 1}", db_in, "passing")
    for i in range(DEAD):
        _instance(agent, f"dead{i}", f"127.98.0.{i + 1}", dead, "critical")
    db = ProxyProc(["--sidecar-for", "db", "--http-addr", agent.http], tmp_path / "db.log").start()
    web = ProxyProc(["--sidecar-for", "web", "--http-addr", agent.http],
                    tmp_path / "web.log").start()  # fmt: skip
    try:
        wait_listening("127.0.0.1", up, web)
        eventually(lambda: roundtrip(("127.0.0.1", up), b"a") == b"a<eof>", 30, what="web -> db")
        stop = threading.Event()

        def flap() -> None:
            rng, down = random.Random(7), set[int]()
            while not stop.wait(0.03):
                i = rng.randrange(LIVE)
                if i in down or len(down) < LIVE // 2:  # (half of them pass, at least)
                    _instance(agent, f"live{i}", f"127.99.0.{i + 1}", db_in,
                              "passing" if i in down else "critical")  # fmt: skip
                    down ^= {i}
                k = rng.randrange(DEAD)
                _instance(agent, f"dead{k}", f"127.98.0.{k + 1}", dead,
                          rng.choice(("critical", "warning")))  # fmt: skip

        flapper = threading.Thread(target=flap, daemon=True)
        flapper.start()
        got = []
        try:
            deadline = time.monotonic() + 4.0  # (a stretch of flapping, not a wait)
            while time.monotonic() < deadline:
                got.append(roundtrip(("127.0.0.1", up), b"x"))
        finally:
            stop.set()
            flapper.join(10)
        assert len(got) > 20 and set(got) == {b"x<eof>"}, {g for g in got if g != b"x<eof>"}
        assert "attempt_failed" not in _counters(web)
    finally:
        assert not stop_mesh(cluster, [web, db], [app])
