"""`gossamer connect proxy --node`: one process serving every sidecar of a real agent.

The same mesh as test_proxy_agents.py (web -> db through two sidecars), but
both sidecars are served by one process; a third sidecar registered later
starts being served, and stops when it is deregistered, without touching
the others. SIGTERM drains and exits 0. A sidecar whose service is
re-registered under another name is restarted for the new name (its runtime
cannot change service), again without touching the others.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.harness.cluster import Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    listening,
    register_pair,
    roundtrip,
    set_intention,
    wait_listening,
    web_body,
)


def test_one_process_serves_every_sidecar_and_follows_registrations(
    cluster: Cluster, tmp_path: Path
) -> None:
    (agent,) = cluster.start(1, prefix="nd")
    db_app = App("127.0.0.1").start()
    up_port = free_port("127.0.0.1")
    db_in, web_in = register_pair(agent, db_app.port, up_port)
    set_intention(agent, "web", "db", "allow")
    node = ProxyProc(["--node", "--http-addr", agent.http], tmp_path / "node.log").start()
    try:
        wait_listening(agent.ip, db_in, node)
        wait_listening("127.0.0.1", up_port, node)
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        eventually(lambda: roundtrip(("127.0.0.1", up_port), b"n") == b"n<eof>", 20,
                   what="web -> db through one node proxy")  # fmt: skip
        cache_in = free_port(agent.ip)
        sidecar = {"SidecarService": {"Port": cache_in, "Address": agent.ip}}
        agent.put("/v1/agent/service/register",
                  {"Name": "cache", "Port": db_app.port, "Connect": sidecar})  # fmt: skip
        wait_listening(agent.ip, cache_in, node)  # a new sidecar is served...
        agent.put("/v1/agent/service/deregister/cache")  # and with it its sidecar
        eventually(lambda: not listening(agent.ip, cache_in), 10, what="cache's port closed")
        queue_in = free_port(agent.ip)
        with socket.create_server((agent.ip, queue_in)):  # one whose port is taken at first
            queue = {"SidecarService": {"Port": queue_in, "Address": agent.ip}}
            agent.put("/v1/agent/service/register",
                      {"Name": "queue", "Port": db_app.port, "Connect": queue})  # fmt: skip
            eventually(lambda: "queue-sidecar-proxy cannot be served" in node.log(), 20,
                       what="the taken port")  # fmt: skip
        wait_listening(agent.ip, queue_in, node, timeout=20)  # tried again, served once free
        agent.put("/v1/agent/service/deregister/queue")
        assert roundtrip(("127.0.0.1", up_port), b"m") == b"m<eof>"  # ...the others untouched
        assert listening(agent.ip, web_in)
        node.signal(signal.SIGTERM)
        assert node.proc is not None and node.proc.wait(20) == 0
        assert "serving sidecar db-sidecar-proxy for db" in node.log()
    finally:
        node.stop()
        db_app.stop()


def test_a_sidecar_whose_service_is_renamed_is_restarted_for_the_new_name(
    cluster: Cluster, tmp_path: Path
) -> None:
    (agent,) = cluster.start(1, prefix="nr")
    db_app = App("127.0.0.1").start()
    up_port, up2_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    db_in, web_in = register_pair(agent, db_app.port, up_port)
    upstreams: list[dict[str, object]] = [
        {"DestinationName": "db", "LocalBindPort": up_port},
        {"DestinationName": "db2", "LocalBindPort": up2_port},
    ]
    agent.put("/v1/agent/service/register", web_body(agent, web_in, upstreams))
    set_intention(agent, "web", "db", "allow")
    set_intention(agent, "web", "db2", "allow")
    node = ProxyProc(["--node", "--http-addr", agent.http], tmp_path / "node.log").start()
    try:
        wait_listening(agent.ip, db_in, node)
        wait_listening("127.0.0.1", up2_port, node)
        eventually(lambda: roundtrip(("127.0.0.1", up_port), b"a") == b"a<eof>", 30,
                   what="web -> db through the node proxy")  # fmt: skip
        # the same service ID under a new name: its sidecar (same ID) now serves db2
        agent.put("/v1/agent/service/register", {
            "Name": "db2", "ID": "db", "Port": db_app.port, "Address": agent.ip,
            "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip}},
        })  # fmt: skip

        def db2_answers() -> bool:  # before the fix: db's certificate (wrong-server) for ever
            got = roundtrip(("127.0.0.1", up2_port), b"b", 5)
            assert got == b"b<eof>", f"got {got!r}; node log:\n{node.log()[-3000:]}"
            return True

        eventually(db2_answers, 30, what="web -> db2 on the renamed sidecar")
        log = node.log()
        assert "sidecar db-sidecar-proxy now serves db2, not db: draining it" in log
        assert "serving sidecar db-sidecar-proxy for db2" in log
        assert log.count("serving sidecar web-sidecar-proxy") == 1  # the others untouched
        assert listening(agent.ip, web_in)
    finally:
        node.stop()
        db_app.stop()
