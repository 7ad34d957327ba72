"""LiveCatalog: persistence, per-key indexes and blocking waits, with a real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gossamer.catalog.blocking import service_key
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import NodeRecord
from gossamer.catalog.store import CatalogStore
from tests.harness.poll import eventually_async
from tests.harness.replication import node_record


def record(node: str, version: int, *services: str) -> NodeRecord:
    return node_record(node, version, *services, address="198.18.0.2")


def live(tmp_path: Path) -> LiveCatalog:
    return LiveCatalog("dc1", CatalogStore.open(tmp_path / "c.db"), wall_ms=lambda: 1_000)


async def test_a_watcher_wakes_for_its_service_only(tmp_path: Path) -> None:
    cat = live(tmp_path)
    cat.apply([record("n1", 1, "web", "db")])
    web_index = cat.index([service_key("web")])
    woke = asyncio.create_task(cat.wait([service_key("web")], web_index, 5))
    await eventually_async(lambda: cat.watchers == 1)  # the watcher is registered
    cat.apply([record("n1", 2, "web", "db", "cache")])  # web's rows did not change
    await asyncio.sleep(0)  # a wrong wake-up gets its turn on the loop before the check
    assert not woke.done()
    cat.apply([record("n1", 3, "db", "cache")])  # web is gone
    await asyncio.wait_for(woke, 1)
    assert cat.index([service_key("web")]) > web_index
    assert cat.watchers == 0


async def test_stale_index_returns_at_once_and_timeout_returns(tmp_path: Path) -> None:
    cat = live(tmp_path)
    cat.apply([record("n1", 1, "web")])
    current = cat.index([service_key("web")])
    await asyncio.wait_for(cat.wait([service_key("web")], current - 1, 5), 0.5)
    await asyncio.wait_for(cat.wait([service_key("web")], current + 10, 5), 0.5)
    await asyncio.wait_for(cat.wait([service_key("web")], current, 0.05), 1)
    assert cat.watchers == 0


async def test_state_survives_reopening(tmp_path: Path) -> None:
    cat = live(tmp_path)
    cat.apply([record("n1", 1, "web"), record("n2", 4, "db")])
    cat.remove("n1", "left")
    cat.set_failed("n2", True)
    again = live(tmp_path)
    assert [r.node for r in again.records()] == ["n2"]
    assert again.record("n2") == record("n2", 4, "db")


async def test_peers_cannot_publish_our_record(tmp_path: Path) -> None:
    cat = live(tmp_path)
    cat.apply([record("me", 5, "web")])
    assert cat.apply([record("me", 9)], self_origin="me") == []
    assert cat.record("me") == record("me", 5, "web")
