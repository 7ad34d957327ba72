"""The agent's intention history: every change kept (local or replicated), bounded, persisted.

Real IntentionStores on their own SQLite files with a fake wall clock;
replication hands entries over with the pure sync parts (as in
test_intentions_store.py), so the trail is tested without sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gossamer.agent.replicated.intention_history import HISTORY_MAP, IntentionHistory
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.store import CatalogStore
from gossamer.intentions import HTTPMatch, Intention, Permission
from tests.test_intentions_store import Clock, Node, sync


@pytest.fixture
def node(tmp_path: Path) -> Callable[..., Node]:
    return lambda name="a", clock=None: Node(name, tmp_path, clock)


def ops(records: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(r["Op"], r["Node"], r["Source"], r["Destination"]) for r in records]


def test_every_change_is_kept_newest_first_with_before_and_after(node: Callable[..., Node]) -> None:
    a = node("a")
    a.store.upsert(Intention("web", "db", "allow"))
    a.clock.ms += 1000
    perms = (Permission("allow", HTTPMatch(path_prefix="/v1")),)
    a.store.upsert(Intention("web", "db", permissions=perms, description="L7 now"))
    a.clock.ms += 1000
    a.store.delete("web", "db")
    records = a.store.history.records()
    assert ops(records) == [
        ("delete", "a", "web", "db"),
        ("update", "a", "web", "db"),
        ("create", "a", "web", "db"),
    ]
    update = records[1]
    assert update["Before"]["Action"] == "allow"  # type: ignore[index]
    assert update["After"]["Permissions"][0]["HTTP"] == {"PathPrefix": "/v1"}  # type: ignore[index]
    assert records[0]["After"] is None and records[2]["Before"] is None
    assert records[2]["Time"] == "2023-11-14T22:13:20.000Z"


def test_a_rewrite_with_the_same_content_leaves_no_record(node: Callable[..., Node]) -> None:
    a = node("a")
    a.store.upsert(Intention("web", "db", "allow"))
    a.store.upsert(Intention("web", "db", "allow"))
    a.store.delete("nothing", "here")  # a tombstone for nothing held
    assert len(a.store.history.records()) == 1


def test_a_replicated_change_is_kept_with_the_node_that_wrote_it(
    node: Callable[..., Node],
) -> None:
    clock = Clock()
    a, b = node("a", clock), node("b", clock)
    b.store.upsert(Intention("api", "db", "deny"))
    sync(b, a)
    assert ops(a.store.history.records()) == [("create", "b", "api", "db")]
    assert a.store.history.records("api", "db") == b.store.history.records("api", "db")
    assert a.store.history.records("web", "db") == []


def test_the_history_survives_a_restart_and_loading_is_no_change(
    node: Callable[..., Node],
) -> None:
    a = node("a")
    a.store.upsert(Intention("web", "db", "allow"))
    a.restart()
    assert ops(a.store.history.records()) == [("create", "a", "web", "db")]


def test_the_history_is_bounded_and_drops_the_oldest(tmp_path: Path) -> None:
    db = CatalogStore.open(tmp_path / "h.db")
    history = IntentionHistory(db, limit=3)
    for i in range(5):
        history.add([(None, Intention(f"s{i}", "db", "allow"), Timestamp(1000 + i, 0, "n"))])
    assert [r["Source"] for r in history.records()] == ["s4", "s3", "s2"]
    assert len(db.lww_entries(HISTORY_MAP).entries) == 3
    assert [r["Source"] for r in IntentionHistory(db, limit=3).records()] == ["s4", "s3", "s2"]
