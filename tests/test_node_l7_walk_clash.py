"""A worker started again must give a contested port to the sidecar the others gave it to.

Two sidecars of one `connect proxy --node --workers 2` given one upstream
port: the one served first keeps it, the later one is refused, in every
worker. A worker that dies and is started again saw both at once and gave
the port to the first by proxy ID, which need not be the one the others
serve: the port then went out as two identities, the kernel handing each
new connection to one worker or the other.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from gossamer.proxy.workers import served_of
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    refused,
    roundtrip,
    set_intention,
    wait_listening,
)


def _register(agent: AgentProc, name: str, app_port: int, inbound: int,
              upstreams: list[dict[str, object]]) -> None:  # fmt: skip
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": app_port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Upstreams": upstreams}}},
    })  # fmt: skip


def _worker_1_pids(log: str) -> list[int]:
    return [int(p) for p in re.findall(r"worker 1 started, pid (\d+)", log)]


def test_a_restarted_worker_gives_a_contested_port_to_the_sidecar_serving_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    (agent,) = cluster.start(1, prefix="nc")
    app = App("127.0.0.1").start()
    db_in, x_in, web_in = (free_port(agent.ip) for _ in range(3))
    up = free_port("127.0.0.1")
    _register(agent, "db", app.port, db_in, [])
    # x first (it sorts after web by proxy ID), whom db denies
    _register(agent, "x", app.port, x_in, [{"DestinationName": "db", "LocalBindPort": up}])
    set_intention(agent, "x", "db", "deny")
    set_intention(agent, "web", "db", "allow")
    node = ProxyProc(["--node", "--http-addr", agent.http, "--workers", "2"],
                     tmp_path / "node.log").start()  # fmt: skip
    try:
        wait_listening("127.0.0.1", up, node)
        eventually(lambda: all(f"[worker {w}] proxy: serving sidecar x-sidecar-proxy" in node.log()
                               for w in (0, 1)), 20, what="both workers serving x")  # fmt: skip
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        _register(agent, "web", app.port, web_in, [{"DestinationName": "db", "LocalBindPort": up}])
        eventually(lambda: all(f"[worker {w}] proxy: sidecar web-sidecar-proxy cannot be served"
                               in node.log() for w in (0, 1)), 20,
                   what="web refused by both workers")  # fmt: skip
        (first,) = _worker_1_pids(node.log())
        os.kill(first, signal.SIGKILL)
        eventually(lambda: len(_worker_1_pids(node.log())) == 2, 15, what="worker 1 again")
        eventually(lambda: node.log().count("[worker 1] proxy: serving sidecar db-sidecar-proxy")
                   == 2, 20, what="worker 1 serving again")  # fmt: skip
        eventually(lambda: node.log().count("[worker 1] proxy: serving sidecar ") >= 4, 20,
                   what="worker 1 done starting sidecars")  # fmt: skip
        for i in range(40):  # spread over both workers: the port is x's in each
            assert refused(("127.0.0.1", up), b"%d" % i), f"connection {i} went out as web"
    finally:
        node.stop()
        app.stop()


@pytest.mark.parametrize(("value", "ids"), [
    ('["web-sidecar-proxy", "x,y"]', {"web-sidecar-proxy", "x,y"}),
    ("[]", set()), (None, set()), ("", set()), ("nope", set()), ('[1]', set()), ('{}', set()),
])  # fmt: skip
def test_the_sidecars_worker_0_serves_are_read_or_none(value: str | None, ids: set[str]) -> None:
    assert served_of(value) == ids


def test_a_restarted_worker_leaves_a_held_change_held(cluster: Cluster, tmp_path: Path) -> None:
    """api's registration moved onto web's upstream port is held while web serves it (node.py,
    in every worker). A worker started again saw api's moved registration among the sidecars
    worker 0 serves, started api first (by proxy ID) on web's port and refused web: the port
    then went out as web in worker 0 and as api (whom db denies) in worker 1."""
    (agent,) = cluster.start(1, prefix="nh")
    app = App("127.0.0.1").start()
    db_in, api_in, web_in = (free_port(agent.ip) for _ in range(3))
    api_up, web_up = free_port("127.0.0.1"), free_port("127.0.0.1")
    _register(agent, "db", app.port, db_in, [])
    _register(agent, "api", app.port, api_in, [{"DestinationName": "db", "LocalBindPort": api_up}])
    _register(agent, "web", app.port, web_in, [{"DestinationName": "db", "LocalBindPort": web_up}])
    set_intention(agent, "api", "db", "deny")
    set_intention(agent, "web", "db", "allow")
    node = ProxyProc(["--node", "--http-addr", agent.http, "--workers", "2"],
                     tmp_path / "node.log").start()  # fmt: skip
    try:
        wait_listening("127.0.0.1", web_up, node)
        eventually(lambda: all(f"[worker {w}] proxy: serving sidecar web-sidecar-proxy"
                               in node.log() for w in (0, 1)), 20,
                   what="both serving web")  # fmt: skip
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        eventually(lambda: roundtrip(("127.0.0.1", web_up), b"a") == b"a<eof>", 20,
                   what="web -> db")  # fmt: skip
        _register(agent, "api", app.port, api_in, [{"DestinationName": "db",
                                                    "LocalBindPort": web_up}])  # fmt: skip
        held = "[api-sidecar-proxy] proxy: registration changed but cannot be used yet"
        eventually(lambda: all(f"[worker {w}] {held}" in node.log() for w in (0, 1)), 20,
                   what="api's change held in both workers")  # fmt: skip
        (first,) = _worker_1_pids(node.log())
        os.kill(first, signal.SIGKILL)
        eventually(lambda: len(_worker_1_pids(node.log())) == 2, 15, what="worker 1 again")
        eventually(lambda: node.log().count("[worker 1] proxy: serving sidecar web-sidecar-proxy")
                   == 2 or node.log().count("[worker 1] proxy: sidecar web-sidecar-proxy "
                                            "cannot be served") >= 1, 20,
                   what="worker 1 done with web")  # fmt: skip
        eventually(lambda: node.log().count("[worker 1] proxy: serving sidecar db-sidecar-proxy")
                   == 2, 20, what="worker 1 serving db again")  # fmt: skip
        for i in range(40):  # spread over both workers: the port is web's in each
            assert roundtrip(("127.0.0.1", web_up), b"%d" % i) == b"%d<eof>" % i, i
    finally:
        node.stop()
        app.stop()
