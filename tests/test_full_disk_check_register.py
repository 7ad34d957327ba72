"""A check registration the disk refuses leaves nothing behind (README: "change nothing").

Before, `PUT /v1/agent/check/register` on a full data dir answered 500 `not
stored` but the check stayed in the agent's registry: /v1/agent/checks
listed it (critical, never run), the catalog did not, and a TTL update to it
was an unhandled 500 ("internal error"), since the runner never had it. A
check for a service whose sidecar exposes its checks also kept the exposed
port and path it had been given.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.agent.local.node import LocalNode, UnknownCheckId
from gossamer.agent.local.own_record import NodeIdentity
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore, StoreError
from tests.harness.full_disk import disk_full


def _local(path: Path) -> LocalNode:
    store = CatalogStore.open(path)
    catalog = LiveCatalog("dc1", store, wall_ms=lambda: 1_000)
    identity = NodeIdentity(node="n1", node_id="id-1", datacenter="dc1", address="127.0.0.1")
    return LocalNode(identity, store, catalog, wall_ms=lambda: 1_000, on_version=lambda v: None)


async def test_a_refused_check_registration_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = _local(tmp_path / "c.db")
    local.restore()
    with disk_full(local._store, monkeypatch), pytest.raises(StoreError):
        local.register_check({"Name": "t", "TTL": "30s"})
    assert "t" not in {d.check_id for d in local._registry.all_checks()}
    with pytest.raises(UnknownCheckId):  # a 404, as for any unknown check
        local.update_ttl("t", "passing", "")
    local.register_check({"Name": "t", "TTL": "30s"})  # the disk has room again
    local.update_ttl("t", "passing", "ok")
    await local.stop()


async def test_a_refused_exposed_check_gives_back_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = _local(tmp_path / "c.db")
    local.restore()
    local.register_service({
        "Name": "web", "ID": "web", "Port": 8080,
        "Connect": {"SidecarService": {"Proxy": {"Expose": {"Checks": True}}}},
    })  # fmt: skip

    def paths() -> list[str]:
        sidecar = local._registry.registrations["web"].sidecar
        assert sidecar is not None and sidecar.proxy is not None
        proxy = sidecar.proxy
        return [p["Path"] for p in (proxy.get("Expose") or {}).get("Paths") or []]

    check = {"Name": "h", "ServiceID": "web", "HTTP": "http://127.0.0.1:8080/h", "Interval": "10s"}
    with disk_full(local._store, monkeypatch), pytest.raises(StoreError):
        local.register_check(check)
    assert paths() == []
    assert "h" not in {d.check_id for d in local._registry.all_checks()}
    local.register_check(check)
    assert paths() == ["/h"]
    await local.stop()


async def test_the_last_exposed_check_deregistered_takes_its_path(tmp_path: Path) -> None:
    """The same gap without a full disk: the sidecar kept listening for a check gone."""
    local = _local(tmp_path / "c.db")
    local.restore()
    local.register_service({
        "Name": "web", "ID": "web", "Port": 8080,
        "Connect": {"SidecarService": {"Proxy": {"Expose": {"Checks": True}}}},
    })  # fmt: skip
    local.register_check(
        {"Name": "h", "ServiceID": "web", "HTTP": "http://127.0.0.1:8080/h", "Interval": "10s"}
    )
    sidecar = local._registry.registrations["web"].sidecar
    assert sidecar is not None and [p["Path"] for p in sidecar.proxy["Expose"]["Paths"]] == ["/h"]
    local.deregister_check("h")
    sidecar = local._registry.registrations["web"].sidecar
    assert sidecar is not None and "Paths" not in sidecar.proxy["Expose"]
    await local.stop()
