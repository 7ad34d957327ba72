"""A `--node` proxy's registrations edited live: one sidecar given a port another serves.

Real agent, one real node proxy process serving three sidecars (db, web, api; web and api
call db), a real echo app. At start such a clash is refused naming both sidecars
(node_ports.py); a change to a running sidecar was applied unchecked: its listener failed
with a bare "address already in use" and was tried again every 5 s for good, its old port
closed meanwhile. Convergence is polled with deadlines, never slept for.
"""

from __future__ import annotations

from pathlib import Path

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    listening,
    register_pair,
    roundtrip,
    set_intention,
    wait_listening,
)


def caller(agent: AgentProc, name: str, inbound: int, upstream_port: int) -> None:
    """`name` registered with a sidecar on `inbound` whose upstream `db` is on `upstream_port`."""
    up = {"DestinationName": "db", "LocalBindPort": upstream_port}
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": 1, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Upstreams": [up]}}},
    })  # fmt: skip


def test_a_change_onto_another_sidecars_port_is_held_until_that_port_is_free(
    cluster: Cluster, tmp_path: Path
) -> None:
    (agent,) = cluster.start(1, prefix="lcn")
    app = App("127.0.0.1").start()
    web_up, api_up, api_moved = (free_port("127.0.0.1") for _ in range(3))
    _, web_in = register_pair(agent, app.port, web_up)
    api_in = free_port(agent.ip)
    caller(agent, "api", api_in, api_up)
    set_intention(agent, "*", "db", "allow")
    node = ProxyProc(["--node", "--http-addr", agent.http], tmp_path / "node.log").start()
    try:
        for port in (web_up, api_up):
            wait_listening("127.0.0.1", port, node)
            eventually(lambda p=port: roundtrip(("127.0.0.1", p), b"a") == b"a<eof>", 30,
                       what=f"db through 127.0.0.1:{port}")  # fmt: skip
        caller(agent, "web", web_in, api_up)  # web's upstream onto api's port
        said = (f"[web-sidecar-proxy] proxy: registration changed but cannot be used yet, "
                f"keeping the last: its upstream 'db' on 127.0.0.1:{api_up} clashes with "
                f"sidecar api-sidecar-proxy's upstream 'db' on 127.0.0.1:{api_up}")  # fmt: skip
        eventually(lambda: said in node.log(), 15, what=f"the refusal; log:\n{node.log()[-3000:]}")
        assert roundtrip(("127.0.0.1", web_up), b"kept") == b"kept<eof>"  # the last config
        caller(agent, "api", api_in, api_moved)  # api gives the port up: web's change applies
        wait_listening("127.0.0.1", api_moved, node)
        eventually(lambda: not listening("127.0.0.1", web_up), 15, what="web's old port closed")
        eventually(lambda: roundtrip(("127.0.0.1", api_up), b"b") == b"b<eof>", 15,
                   what="web's upstream on the freed port")  # fmt: skip
        assert f"[web-sidecar-proxy] proxy: upstream db listening on 127.0.0.1:{api_up}" in (
            node.log()
        )
        assert node.log().count(said) == 1  # said once, not at each look
    finally:
        node.stop()
        app.stop()
