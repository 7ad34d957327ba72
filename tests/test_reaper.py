"""DeregisterCriticalServiceAfter on a LocalNode with a real store, on the runner's clock."""

from __future__ import annotations

from pathlib import Path

from gossamer.agent.local.node import LocalNode
from gossamer.agent.local.own_record import NodeIdentity
from gossamer.agent.local.reaper import reap_once
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore


def make_local(tmp_path: Path) -> LocalNode:
    store = CatalogStore.open(tmp_path / "c.db")
    catalog = LiveCatalog("dc1", store, wall_ms=lambda: 1_000)
    identity = NodeIdentity(node="n1", node_id="id-1", datacenter="dc1", address="127.0.0.1")
    return LocalNode(identity, store, catalog, wall_ms=lambda: 1_000, on_version=lambda v: None)


async def test_a_service_critical_past_its_setting_is_deregistered(tmp_path: Path) -> None:
    local = make_local(tmp_path)
    local.restore()
    ttl = {"TTL": "1h", "DeregisterCriticalServiceAfter": "1m"}
    local.register_service({"Name": "doomed", "Port": 1, "Check": ttl})
    local.register_service({"Name": "kept", "Port": 2, "Check": {"TTL": "1h"}})
    local.update_ttl("service:doomed", "critical", "down")
    local.update_ttl("service:kept", "critical", "down")
    start = local.runner.now()
    assert reap_once(local, start + 30) == []  # not yet: a minute has not passed
    assert reap_once(local, start + 61) == ["doomed"]
    assert set(local.services()) == {"kept"}
    await local.stop()
