"""The catalog across real agents: registrations replicate, health follows, failures drop out."""

from __future__ import annotations

import os
import signal
import time

import consul

from tests.harness.cluster import AgentProc, Cluster
from tests.harness.poll import eventually


def client(agent: AgentProc) -> consul.Consul:
    return consul.Consul(host=agent.ip, port=agent.http_port)


def instances(agent: AgentProc, service: str, passing: bool = False) -> list[str]:
    _, rows = client(agent).health.service(service, passing=passing)
    return sorted(f"{r['Node']['Node']}/{r['Service']['ID']}" for r in rows)


def test_register_on_one_agent_is_seen_by_all(cluster: Cluster) -> None:
    a, b, c = cluster.start(3)
    client(a).agent.service.register("web", service_id="web-a", port=80, tags=["blue"])
    for peer in (b, c):
        eventually(lambda p=peer: instances(p, "web") == ["node1/web-a"], 10, what="web on peers")
    _, rows = client(c).catalog.service("web", tag="blue")
    assert rows[0]["ServiceAddress"] == "" and rows[0]["Address"] == a.ip
    assert sorted(client(b).catalog.services()[1]) == ["consul", "web"]
    assert len(client(b).catalog.service("consul")[1]) == 3

    client(a).agent.service.deregister("web-a")
    for peer in (b, c):
        eventually(lambda p=peer: instances(p, "web") == [], 10, what="deregistration on peers")


def test_check_changes_reach_peers_and_a_killed_host_drops_out(cluster: Cluster) -> None:
    a, b, c = cluster.start(3)
    client(a).agent.service.register("api", service_id="api-a", port=80,
                                     check=consul.Check.ttl("1h"))  # fmt: skip
    client(b).agent.service.register("api", service_id="api-b", port=80)
    eventually(lambda: instances(c, "api") == ["node1/api-a", "node2/api-b"], 10, what="both")
    assert instances(c, "api", passing=True) == ["node2/api-b"]  # TTL starts critical
    client(a).agent.check.ttl_pass("service:api-a")
    eventually(
        lambda: instances(c, "api", passing=True) == ["node1/api-a", "node2/api-b"],
        10,
        what="api-a passing on node3",
    )
    assert a.proc is not None
    killed_at = time.monotonic()
    os.kill(a.proc.pid, signal.SIGKILL)
    a.wait_exit()
    eventually(lambda: c.members()["node1"] == 4, 15, what="node1 failed in serf")
    eventually(lambda: instances(c, "api", passing=True) == ["node2/api-b"], 2, what="drop out")
    assert time.monotonic() - killed_at < 17
    # The failed node keeps its record (serfHealth critical) until it returns.
    assert instances(c, "api") == ["node1/api-a", "node2/api-b"]
    a.start()
    eventually(
        lambda: instances(c, "api", passing=True) == ["node1/api-a", "node2/api-b"],
        20,
        what="node1 back and passing",
    )


def test_external_node_registration_and_removal_reach_every_agent(cluster: Cluster) -> None:
    a, b, c = cluster.start(3)
    body = {"Node": "ext-db", "Address": "198.18.9.9",
            "Service": {"Service": "legacy-db", "Port": 5432}}  # fmt: skip
    a.put("/v1/catalog/register", body)
    for peer in (b, c):
        eventually(
            lambda p=peer: (
                [r["Node"] for r in p.get("/v1/catalog/service/legacy-db")] == ["ext-db"]
            ),
            15,
            what="external node on peers",
        )
    a.put("/v1/catalog/deregister", {"Node": "ext-db"})
    for peer in (b, c):
        eventually(
            lambda p=peer: p.get("/v1/catalog/service/legacy-db") == [],
            15,
            what="external node removal relayed as a tombstone",
        )
