"""`connect proxy --node --workers 2`: a sidecar's metrics when the node proxy replaces it.

A node proxy drains a sidecar and starts it anew when its service is
renamed (node.py). The new one offers its figures for the same metrics
address in every worker while the old one is still draining; the old one's
drain, ending later, withdrew that address in worker 1, taking the new
one's figures with it: from then on worker 0 served only its own half of
the new sidecar's counts, and `gossamer stat` said the same.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

from gossamer.proxy.worker_link import Offered, WorkerLink
from tests.harness.cli import cli_env
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import App, ProxyProc, roundtrip, series, set_intention, wait_listening


def _register_caller(agent: AgentProc, name: str, inbound: int, up: int, metrics: str) -> None:
    """`name` (service ID `web` whatever its name) with a tcp upstream `db` on `up`."""
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": "web", "Port": 1, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip, "Proxy": {
            "Config": {"gossamer_metrics_bind_addr": metrics},
            "Upstreams": [{"DestinationName": "db", "LocalBindPort": up}]}}},
    })  # fmt: skip


def _stat_opened(agent: AgentProc, source: str) -> object:
    argv = [sys.executable, "-m", "gossamer.agent", "stat", "--json", "--http-addr", agent.http]
    done = subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=30)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    return next((r["requests"] for r in rows
                 if (r["direction"], r["source"]) == ("outbound", source)), None)  # fmt: skip


def test_a_renamed_sidecars_figures_are_summed_over_both_workers(
    cluster: Cluster, tmp_path: Path
) -> None:
    (agent,) = cluster.start(1, prefix="nm")
    app = App("127.0.0.1").start()
    db_in, web_in = free_port(agent.ip), free_port(agent.ip)
    up, metrics = free_port("127.0.0.1"), f"127.0.0.1:{free_port('127.0.0.1')}"
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": app.port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip}},
    })  # fmt: skip
    _register_caller(agent, "web", web_in, up, metrics)
    set_intention(agent, "web", "db", "allow")
    set_intention(agent, "web2", "db", "allow")
    node = ProxyProc(["--node", "--http-addr", agent.http, "--workers", "2",
                      "--drain-timeout", "30"], tmp_path / "node.log").start()  # fmt: skip
    held: list[socket.socket] = []
    try:
        wait_listening("127.0.0.1", up, node)
        eventually(lambda: all(f"[worker {w}] proxy: serving sidecar web-sidecar-proxy for web"
                               in node.log() for w in (0, 1)), 20,
                   what="both workers serving web")  # fmt: skip
        # (each worker learns db's instance on its own: a run of new connections gets through)
        eventually(lambda: all(roundtrip(("127.0.0.1", up), b"a") == b"a<eof>" for _ in range(8)),
                   30, what="web -> db in both workers")  # fmt: skip
        # Connections that keep web's old sidecar draining in both workers (spread by the
        # kernel: 16 all on one worker is a 1 in 32,768 chance).
        for n in range(16):
            held.append(socket.create_connection(("127.0.0.1", up), timeout=10))
            held[-1].sendall(b"h%d" % n)
            assert held[-1].recv(100) == b"h%d" % n
        _register_caller(agent, "web2", web_in, up, metrics)  # web renamed: drained, anew
        eventually(lambda: all(f"[worker {w}] proxy: serving sidecar web-sidecar-proxy for web2"
                               in node.log() for w in (0, 1)), 20,
                   what="both workers serving web2")  # fmt: skip
        for s in held:  # the old sidecar's drain ends now, after the new one's start
            s.close()
        held.clear()
        eventually(lambda: series(metrics, "gossamer_proxy_tcp_open_total", source="web") == 0,
                   20, what="web2's figures on the metrics port")  # fmt: skip
        eventually(lambda: roundtrip(("127.0.0.1", up), b"b") == b"b<eof>", 20,
                   what="web2 -> db")  # fmt: skip
        for i in range(40):
            assert roundtrip(("127.0.0.1", up), b"%d" % i) == b"%d<eof>" % i
        opened = series(metrics, "gossamer_proxy_tcp_open_total", direction="outbound",
                        source="web2", destination="db")  # fmt: skip
        assert opened == 41, node.log()[-3000:]
        assert _stat_opened(agent, "web2") == 41
    finally:
        for s in held:
            s.close()
        node.stop()
        app.stop()


def test_a_withdrawn_offer_leaves_a_later_one_at_the_same_address() -> None:
    """The pure part of the above: the old sidecar's `Offered.close` after the new one's
    `start` leaves the new one's figures offered."""
    ours, theirs = socket.socketpair()
    try:
        link = WorkerLink(theirs.detach(), lambda: None)
        old = Offered(link, "127.0.0.1:9102", lambda: [])
        new = Offered(link, "127.0.0.1:9102", lambda: [])
        asyncio.run(old.start())
        asyncio.run(new.start())
        old.close()
        assert link._offered == {"127.0.0.1:9102": new.source}
        new.close()
        assert link._offered == {}
    finally:
        ours.close()
