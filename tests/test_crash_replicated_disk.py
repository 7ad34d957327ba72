"""Replicated maps (intentions, ACL tokens, config entries, CA) on a disk that refuses writes.

With one agent's disk full, an intention turned to deny on another agent
never took effect there: the entries a peer sent could not be stored and so
were not applied ("could not store 1 replicated intention(s)", every round),
and that agent's sidecars went on letting the source in. Consul's agents get
intentions and tokens from the servers into memory, whatever their own disk
does. Now an absorbed entry is applied at once and stored with the next
absorb that the disk takes; a local write is still refused until it is
stored.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gossamer.agent.replicated.lww_replica import LwwReplica
from gossamer.catalog import lww
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.store import CatalogStore
from tests.harness.full_disk import disk_full

LOG = logging.getLogger("test.replica")


def _replica(store: CatalogStore) -> LwwReplica:
    return LwwReplica(store, "intentions", node="n1", wall_ms=lambda: 5_000, log=LOG,
                      what="intention")  # fmt: skip


def _entry(at: int, action: str) -> lww.Entry:
    return lww.Entry(Timestamp(at, 0, "n2"), {"Action": action})


def test_a_peers_entry_is_applied_when_the_disk_is_full_and_stored_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CatalogStore.open(tmp_path / "c.db")
    replica = _replica(store)
    assert replica.absorb([("web=>db", _entry(1_000, "allow"))]) == ["web=>db"]
    with disk_full(store, monkeypatch):
        assert replica.absorb([("web=>db", _entry(2_000, "deny"))]) == ["web=>db"]
        held = replica.snapshot().entries.entries["web=>db"]
        assert held.value == {"Action": "deny"}  # what the agent decides by, at once
    assert replica.absorb([("api=>db", _entry(3_000, "allow"))]) == ["api=>db"]  # disk back
    stored = CatalogStore.open(tmp_path / "c.db").lww_entries("intentions").entries
    assert stored["web=>db"].value == {"Action": "deny"}
    assert stored["api=>db"].value == {"Action": "allow"}
