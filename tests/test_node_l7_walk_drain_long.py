"""SIGTERM while a deregistered sidecar of a node proxy with workers is still draining.

Worker 0 waits for the other workers up to the drain timeout plus 10 s, then
kills them as wedged and exits 1. With `--node` and no `--drain-timeout`,
each registration's own `drain_timeout_s` applies, and worker 0 took the
longest of the sidecars it still served: a sidecar deregistered just
before (draining on, with a longer timeout) was not among them, so worker 1,
draining it as told, was killed as wedged and the node proxy exited 1,
cutting that sidecar's connections early. Now it waits for the longest drain
of the sidecars served or still draining.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import App, ProxyProc, roundtrip, set_intention, wait_listening


def _register(agent: AgentProc, name: str, app_port: int, drain_s: int,
              upstreams: list[dict[str, object]]) -> None:  # fmt: skip
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": app_port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": free_port(agent.ip), "Address": agent.ip,
                                       "Proxy": {"Config": {"drain_timeout_s": drain_s},
                                                 "Upstreams": upstreams}}},
    })  # fmt: skip


def test_sigterm_waits_for_a_deregistered_sidecar_still_draining(
    cluster: Cluster, tmp_path: Path
) -> None:
    a1, a2 = cluster.start(2, prefix="nd")
    app = App("127.0.0.1").start()
    up = free_port("127.0.0.1")
    _register(a2, "db", app.port, 1, [])  # db on another node, with a sidecar of its own
    db = ProxyProc(["--sidecar-for", "db", "--http-addr", a2.http], tmp_path / "db.log").start()
    _register(a1, "web", 1, 11, [{"DestinationName": "db", "LocalBindPort": up}])
    _register(a1, "api", 1, 0, [])
    set_intention(a1, "web", "db", "allow")
    node = ProxyProc(["--node", "--http-addr", a1.http, "--workers", "2"],
                     tmp_path / "node.log").start()  # fmt: skip
    held: list[socket.socket] = []
    try:
        wait_listening("127.0.0.1", up, node)
        eventually(lambda: all(f"[worker {w}] proxy: serving sidecar {s}" in node.log()
                               for w in (0, 1) for s in ("web-sidecar-proxy", "api-sidecar-proxy")),
                   20, what="both workers serving web and api")  # fmt: skip
        # (each worker learns db's instance on its own: a run of new connections gets through)
        eventually(lambda: all(roundtrip(("127.0.0.1", up), b"a") == b"a<eof>" for _ in range(8)),
                   30, what="web -> db in both workers")  # fmt: skip
        for n in range(12):  # in both workers (all in one: a 1 in 2,048 chance)
            held.append(socket.create_connection(("127.0.0.1", up), timeout=10))
            held[-1].sendall(b"%d" % n)
            assert held[-1].recv(10) == b"%d" % n
        a1.put("/v1/agent/service/deregister/web")  # web drains for 11 s; api would at once
        eventually(lambda: all(f"[worker {w}] [web-sidecar-proxy] proxy: draining"
                               in node.log() for w in (0, 1)), 10,
                   what="web draining in both workers")  # fmt: skip
        node.signal(signal.SIGTERM)
        signalled = time.monotonic()
        for s in held:  # web's connections relay on through the drain
            s.sendall(b"d")
            assert s.recv(10) == b"d"
        assert node.proc is not None
        assert node.proc.wait(30) == 0, node.log()[-3000:]
        assert 10 < time.monotonic() - signalled < 18
        assert "killing them" not in node.log()
    finally:
        for s in held:
            s.close()
        node.stop()
        db.stop()
        app.stop()
