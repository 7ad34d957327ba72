"""The catalog under a data dir that refuses writes (full, or gone read-only): the crash walk.

With the disk full, a TTL check failed through the API (answered 200) was
`critical` in /v1/agent/checks but stayed `passing` in /v1/health, DNS and
what sidecars read, even after the disk had room again: the check's state
could not be stored, and the catalog took no change it could not write first.
Consul's agent keeps health in memory and tells of it whatever its disk does.
Now a change is applied and published in memory, and the first write that
works again stores everything missed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.agent.local.external_nodes import ExternalNodes
from gossamer.agent.local.node import LocalNode
from gossamer.agent.local.own_record import NodeIdentity
from gossamer.catalog import merge
from gossamer.catalog.blocking import service_key
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore, StoreError
from tests.harness.full_disk import disk_full


def _local(path: Path) -> tuple[LocalNode, LiveCatalog]:
    store = CatalogStore.open(path)
    catalog = LiveCatalog("dc1", store, wall_ms=lambda: 1_000)
    identity = NodeIdentity(node="n1", node_id="id-1", datacenter="dc1", address="127.0.0.1")
    local = LocalNode(identity, store, catalog, wall_ms=lambda: 1_000, on_version=lambda v: None)
    return local, catalog


def _status(catalog: LiveCatalog, check_id: str) -> str:
    record = catalog.record("n1")
    assert record is not None
    return next(c.status for c in record.checks if c.check_id == check_id)


async def test_a_check_gone_critical_on_a_full_disk_reaches_the_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, catalog = _local(tmp_path / "c.db")
    local.restore()
    local.register_service({"Name": "web", "ID": "web", "Port": 1, "Check": {"TTL": "1h"}})
    local.update_ttl("service:web", "passing", "ok")
    assert _status(catalog, "service:web") == "passing"
    index = catalog.index([service_key("web")])
    store = local._store
    with disk_full(store, monkeypatch):
        local.update_ttl("service:web", "critical", "down")
        assert _status(catalog, "service:web") == "critical"  # what /v1/health and DNS read
        assert catalog.index([service_key("web")]) > index  # blocking health queries wake
        with pytest.raises(StoreError):  # a registration is still refused, not half done
            local.register_service({"Name": "db", "Port": 2})
    local.update_ttl("service:web", "warning", "slow")  # the disk has room again
    await local.stop()
    stored = merge.get(CatalogStore.open(tmp_path / "c.db").load_state(), "dc1", "n1")
    assert stored is not None
    assert {c.check_id: c.status for c in stored.checks}["service:web"] == "warning"
    assert [s.id for s in stored.services] == ["web"]


async def test_the_version_published_on_a_full_disk_is_not_gone_back_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, catalog = _local(tmp_path / "c.db")
    local.restore()
    local.register_service({"Name": "web", "ID": "web", "Port": 1, "Check": {"TTL": "1h"}})
    before = local.version
    with disk_full(local._store, monkeypatch):
        local.update_ttl("service:web", "critical", "down")
    record = catalog.record("n1")
    assert record is not None and record.version == local.version > before
    await local.stop()


def test_an_external_node_is_acknowledged_only_once_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`PUT /v1/catalog/register`: the record in the file is the registration itself, so it
    is refused (500 "not stored") on a full disk rather than kept in memory only."""
    store = CatalogStore.open(tmp_path / "c.db")
    catalog = LiveCatalog("dc1", store, wall_ms=lambda: 1_000)
    external = ExternalNodes(catalog, owner="n1", wall_ms=lambda: 1_000)
    body = {"Node": "ext", "Address": "10.0.0.9", "Service": {"Service": "db", "Port": 5432}}
    with disk_full(store, monkeypatch):
        with pytest.raises(StoreError):
            external.register(body)
        assert catalog.record("ext") is None
    external.register(body)
    with disk_full(store, monkeypatch):
        with pytest.raises(StoreError):
            external.deregister({"Node": "ext"})
        assert catalog.record("ext") is not None
    assert merge.get(CatalogStore.open(tmp_path / "c.db").load_state(), "dc1", "ext") is not None
