"""Pushed catalog changes between real agents (each with its serf child, over agent RPC TLS)."""

from __future__ import annotations

import time
from typing import Any

from tests.harness.cluster import AgentProc, Cluster
from tests.harness.poll import eventually


def pushes(agent: AgentProc) -> dict[str, Any]:
    counts: dict[str, Any] = agent.get("/v1/agent/self")["Gossamer"]["RecordPushes"]
    return counts


def instances(agent: AgentProc, service: str) -> list[str]:
    rows = agent.get(f"/v1/catalog/service/{service}")
    return sorted(f"{r['Node']}/{r['ServiceID']}" for r in rows)


def test_a_registration_is_pushed_to_every_agent(cluster: Cluster) -> None:
    agents = cluster.start(4)
    first, others = agents[0], agents[1:]
    before = pushes(first)
    first.put("/v1/agent/service/register", {"ID": "web-1", "Name": "web", "Port": 80})
    registered = time.monotonic()
    for peer in others:  # Serf's cv tag and anti-entropy alone took ~0.6 s median (bench)
        eventually(lambda p=peer: instances(p, "web") == ["node1/web-1"], 5, interval=0.005)
    took = time.monotonic() - registered
    after = pushes(first)
    assert after["Waves"] > before["Waves"]  # the owner pushed it
    assert after["Pushes"] >= before["Pushes"] + len(others)  # 3 peers: fanout(3) = all
    assert after["Failures"] == before["Failures"]
    assert took < 5
    first.put("/v1/agent/service/deregister/web-1")
    for peer in others:
        eventually(lambda p=peer: instances(p, "web") == [], 5, interval=0.005)
    # An external node's removal is pushed by the agent that owns it (record_push.py).
    ext = {"Node": "ext-db", "Address": "10.0.0.9", "Service": {"Service": "db", "Port": 5432}}
    first.put("/v1/catalog/register", ext)
    for peer in others:
        eventually(lambda p=peer: instances(p, "db") == ["ext-db/db"], 5, interval=0.005)
    removals = pushes(first)["Removals"]
    first.put("/v1/catalog/deregister", {"Node": "ext-db"})
    for peer in others:  # anti-entropy alone: a round every ~2 s with a random peer
        eventually(lambda p=peer: instances(p, "db") == [], 5, interval=0.005)
    assert pushes(first)["Removals"] == removals + len(others)  # fanout(3): every peer
