"""Catalog store: every table round-trips through a real SQLite file, survives reopening and
`kill -9` mid-write, and a damaged, foreign or too-new file is refused with a StoreError
naming it (never a raw sqlite3 error)."""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.catalog import lww, store_file
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.merge import CatalogState, Tombstone, apply, gc_tombstones, remove
from gossamer.catalog.model import NodeRecord, Service, next_version
from gossamer.catalog.store import CatalogStore, CheckState, Maintenance, StoredCheck, StoreError
from gossamer.catalog.store_schema import APPLICATION_ID, SCHEMA_VERSION
from tests.test_catalog_model import json_values, records, words

EMPTY = CatalogState()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "catalog.db"


@pytest.fixture
def cs(db: Path) -> Iterator[CatalogStore]:
    s = CatalogStore.open(db)
    yield s
    s.close()


def reopen(s: CatalogStore) -> CatalogStore:
    s.close()
    return CatalogStore.open(s.path)


def rec(node: str, version: int = 1, dc: str = "dc1", **kw: object) -> NodeRecord:
    fields: dict[str, object] = {"address": "10.0.0.1", "origin": node, "node_id": f"id-{node}"}
    return NodeRecord(node=node, datacenter=dc, version=version, **(fields | kw))  # type: ignore[arg-type]


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None)


# --- opening ------------------------------------------------------------------------------


def test_new_file_is_wal_with_current_schema(cs: CatalogStore) -> None:
    conn = raw(cs.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert int(row[0]) == SCHEMA_VERSION
    conn.close()


def test_random_bytes_are_refused_naming_the_file(db: Path) -> None:
    db.write_bytes(random.Random(1).randbytes(16384))
    with pytest.raises(StoreError) as err:
        CatalogStore.open(db)
    assert str(db) in str(err.value)
    assert "not a database" in str(err.value)
    assert err.value.__suppress_context__  # no sqlite3 traceback chained onto it


def test_damaged_pages_are_found_at_open(db: Path) -> None:
    with CatalogStore.open(db) as s:
        s.save_records(rec(f"n{i}", address="x" * 500) for i in range(200))
    # Fold the WAL into the main file, then scribble over pages in the middle of it.
    conn = raw(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    data[5 * page : 15 * page] = random.Random(2).randbytes(10 * page)
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError) as err:
        CatalogStore.open(db)
    assert str(db) in str(err.value)


@pytest.mark.parametrize("where", ["dir", "missing_parent"])
def test_unopenable_path_is_a_store_error(tmp_path: Path, where: str) -> None:
    path = tmp_path if where == "dir" else tmp_path / "nope" / "catalog.db"
    with pytest.raises(StoreError, match="cannot open") as err:
        CatalogStore.open(path)
    assert str(path) in str(err.value)


def test_newer_schema_is_refused_and_left_untouched(db: Path) -> None:
    CatalogStore.open(db).close()
    conn = raw(db)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError, match=r"schema version 99 is newer .* \(1\)") as err:
        CatalogStore.open(db)
    assert str(db) in str(err.value)
    conn = raw(db)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("99",)
    conn.close()


def test_someone_elses_database_is_refused(db: Path) -> None:
    conn = raw(db)
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.close()
    with pytest.raises(StoreError, match="not a gossamer catalog"):
        CatalogStore.open(db)


def test_closed_store_and_double_close(cs: CatalogStore) -> None:
    cs.close()
    cs.close()
    with pytest.raises(StoreError, match="closed"):
        cs.services()


def test_a_locked_file_gives_a_store_error(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_file, "BUSY_TIMEOUT_S", 0.05)
    with CatalogStore.open(db) as s:
        other = raw(db)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked") as err:
            s.put_service("web", {"Name": "web"})
        assert str(db) in str(err.value)
        other.execute("ROLLBACK")
        other.close()
        s.put_service("web", {"Name": "web"})  # the failed call left no transaction open
        assert list(s.services()) == ["web"]


# --- local registrations ------------------------------------------------------------------


WEB = {"Name": "web", "Port": 80, "Tags": ["a", "ü"], "Meta": {"z": "1", "a": "2"}, "Check": None}


def test_services_round_trip_as_given(cs: CatalogStore) -> None:
    cs.put_service("web-1", WEB)
    cs.put_service("db", {"Name": "db"})
    cs.put_service("web-1", WEB | {"Port": 81})  # re-register replaces
    cs = reopen(cs)
    got = cs.services()
    assert list(got) == ["db", "web-1"]
    assert got["web-1"] == WEB | {"Port": 81}
    assert list(got["web-1"]) == list(WEB)  # key order kept: it is the registration as given
    assert cs.delete_service("db") and not cs.delete_service("db")
    assert list(cs.services()) == ["web-1"]
    cs.close()


def test_service_with_checks_and_replace_existing_checks(cs: CatalogStore) -> None:
    cs.put_service("web", WEB, {"c1": {"TTL": "10s"}, "c2": {"HTTP": "http://x"}})
    cs.put_check("node-disk", {"Args": ["df"]})
    assert cs.checks() == {
        "c1": StoredCheck("web", {"TTL": "10s"}),
        "c2": StoredCheck("web", {"HTTP": "http://x"}),
        "node-disk": StoredCheck("", {"Args": ["df"]}),
    }
    cs.put_service("web", WEB, {"c3": {"TCP": "x:1"}})  # without the flag, old checks stay
    assert set(cs.checks()) == {"c1", "c2", "c3", "node-disk"}
    cs.put_service("web", WEB, {"c2": {"TTL": "5s"}}, replace_checks=True)
    assert cs.checks() == {
        "c2": StoredCheck("web", {"TTL": "5s"}),
        "node-disk": StoredCheck("", {"Args": ["df"]}),
    }
    cs.put_service("web", WEB, replace_checks=True)
    assert set(cs.checks()) == {"node-disk"}


def test_deleting_a_service_takes_its_checks_states_and_maintenance(cs: CatalogStore) -> None:
    cs.put_service("web", WEB, {"c1": {"TTL": "10s"}})
    cs.put_service("db", {"Name": "db"}, {"c2": {"TTL": "10s"}})
    cs.put_check_states({"c1": CheckState("passing"), "c2": CheckState("warning")})
    cs.set_maintenance("web", "upgrading")
    cs.set_maintenance("db", "backup")
    cs.put_service("web", WEB)
    assert set(cs.check_states()) == {"c1", "c2"}
    assert cs.delete_service("web")
    assert set(cs.checks()) == {"c2"}
    assert set(cs.check_states()) == {"c2"}
    assert cs.maintenance() == Maintenance(None, {"db": "backup"})


def test_a_check_for_an_unknown_service_is_refused_and_nothing_written(cs: CatalogStore) -> None:
    with pytest.raises(StoreError, match="'ghost' not stored"):
        cs.put_check("c1", {"TTL": "1s"}, service_id="ghost")
    assert cs.checks() == {}


def test_check_states_round_trip(cs: CatalogStore) -> None:
    cs.put_check("ttl", {"TTL": "30s"})
    cs.put_check("http", {"HTTP": "http://x"})
    assert cs.put_check_state("ttl", CheckState("passing", "ok", ttl_updated_ms=1_700_000_000_123))
    states = {"http": CheckState("critical", "refused" * 500, critical_since_ms=1_700_000_000_000)}
    assert cs.put_check_states(states) == 1
    cs.put_check("ttl", {"TTL": "60s"})  # redefining the check keeps its state
    cs = reopen(cs)
    assert cs.check_states() == {
        "http": CheckState("critical", "refused" * 500, None, 1_700_000_000_000),
        "ttl": CheckState("passing", "ok", 1_700_000_000_123, None),
    }
    assert cs.delete_check("ttl") and not cs.delete_check("ttl")
    assert set(cs.check_states()) == {"http"}
    cs.close()


def test_state_of_a_deregistered_check_is_dropped_not_refused(cs: CatalogStore) -> None:
    assert cs.put_check_state("gone", CheckState("passing")) is False
    assert cs.check_states() == {}


def test_check_state_refuses_unknown_status() -> None:
    with pytest.raises(ValueError, match="status 'ok'"):
        CheckState("ok")


def test_maintenance_modes_survive_reopen(cs: CatalogStore) -> None:
    assert cs.maintenance() == Maintenance()
    cs.put_service("web", WEB)
    cs.set_maintenance(None, "rebooting")
    cs.set_maintenance("web", "")  # no reason given is still maintenance
    cs = reopen(cs)
    assert cs.maintenance() == Maintenance("rebooting", {"web": ""})
    cs.set_maintenance(None, None)
    cs.set_maintenance("web", None)
    cs.set_maintenance("web", None)  # turning off twice is fine
    assert cs.maintenance() == Maintenance()
    with pytest.raises(StoreError, match="maintenance: service 'ghost'"):
        cs.set_maintenance("ghost", "x")
    cs.close()


# --- replicated records -------------------------------------------------------------------


def test_records_and_tombstones_round_trip(cs: CatalogStore) -> None:
    a = rec("a", 5, services=(Service(id="web", name="web", proxy={"x": [1, 2.5, None]}),))
    b, c = rec("b", 7), rec("c", 1, dc="dc2")
    cs.save_records([a, b, c])
    cs.save_tombstones([("dc1", "b", Tombstone(7, "id-b", "left", 1234))])  # drops b's record
    state = reopen(cs).load_state()
    assert state == CatalogState(
        records={"dc1": {"a": a}, "dc2": {"c": c}},
        tombstones={"dc1": {"b": Tombstone(7, "id-b", "left", 1234)}},
    )


def test_a_saved_record_replaces_its_tombstone(cs: CatalogStore) -> None:
    cs.save_tombstones([("dc1", "a", Tombstone(3, "id-a", "left", 1))])
    cs.save_records([rec("a", 4)])
    assert cs.load_state() == CatalogState(records={"dc1": {"a": rec("a", 4)}})


def test_delete_record(cs: CatalogStore) -> None:
    cs.save_records([rec("a"), rec("b")])
    assert cs.delete_record("dc1", "a") and not cs.delete_record("dc1", "a")
    assert cs.load_state() == CatalogState(records={"dc1": {"b": rec("b")}})


def test_a_failing_batch_writes_nothing(cs: CatalogStore) -> None:
    def batch() -> Iterator[NodeRecord]:
        yield rec("a")
        yield rec("b")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cs.save_records(batch())
    assert cs.load_state() == EMPTY


def test_undecodable_rows_are_skipped_with_a_warning(
    cs: CatalogStore, caplog: pytest.LogCaptureFixture
) -> None:
    cs.save_records([rec("a"), rec("b")])
    conn = raw(cs.path)
    conn.execute("UPDATE records SET wire = '{\"v\": 2}' WHERE node = 'b'")
    conn.close()
    assert cs.load_state() == CatalogState(records={"dc1": {"a": rec("a")}})
    assert "skipping stored record dc1/b" in caplog.text


ops = st.lists(
    st.one_of(
        records(node=st.sampled_from("abcd"), node_id=st.sampled_from(["x", "y"]),
                datacenter=st.sampled_from(["dc1", "dc2"]), version=st.integers(0, 6)),
        st.tuples(st.sampled_from(["dc1", "dc2"]), st.sampled_from("abcd"), st.integers(0, 6)),
    ),
    max_size=25,
)  # fmt: skip


def step(state: CatalogState, op: NodeRecord | tuple[str, str, int], at_ms: int) -> CatalogState:
    if isinstance(op, NodeRecord):
        return apply(state, op)[0]
    dc, node, version = op
    return remove(state, dc, node, "left", at_ms=at_ms, version=version)[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_load_state_equals_what_merge_produced_when_every_step_is_synced(
    steps: list[NodeRecord | tuple[str, str, int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = CatalogStore.open(Path(tmp) / "catalog.db")
        state = EMPTY
        for i, op in enumerate(steps):
            new = step(state, op, at_ms=i)
            s.sync_state(state, new)
            state = new
        state_gc = gc_tombstones(state, now_ms=len(steps), grace_ms=len(steps) // 2)
        s.sync_state(state, state_gc)
        s = reopen(s)
        assert s.load_state() == state_gc
        s.close()


@settings(max_examples=40, deadline=None)
@given(ops)
def test_load_state_equals_merge_with_save_records_and_save_tombstones(
    steps: list[NodeRecord | tuple[str, str, int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = CatalogStore.open(Path(tmp) / "catalog.db")
        state = EMPTY
        for i, op in enumerate(steps):
            if isinstance(op, NodeRecord):
                state, changed = apply(state, op)
                if changed:
                    s.save_records([op])
            else:
                state = step(state, op, at_ms=i)
                dc, node, _ = op
                s.save_tombstones([(dc, node, state.tombstones[dc][node])])
        s = reopen(s)
        assert s.load_state() == state
        s.close()


def test_sync_state_skips_unchanged_records(cs: CatalogStore) -> None:
    s1 = functools.reduce(lambda s, r: apply(s, r)[0], [rec("a"), rec("b")], EMPTY)
    assert cs.sync_state(EMPTY, s1) == 2
    s2 = apply(s1, rec("a", 2))[0]
    assert cs.sync_state(s1, s2) == 1
    assert cs.sync_state(s2, s2) == 0


# --- LWW maps -----------------------------------------------------------------------------


def test_lww_maps_round_trip_with_tombstones(cs: CatalogStore) -> None:
    t = functools.partial(Timestamp, node="n1")
    m = lww.put(lww.LwwMap(), "web→db", {"Action": "allow", "Precedence": 9, "x": [1.5]}, t(5, 0))
    m = lww.put(m, "api→db", {"Action": "deny"}, t(5, 1))
    m = lww.delete(m, "api→db", t(6, 0))
    cs.save_lww(m.entries.items(), map_name="intentions")
    cs.save_lww([("ca/roots", lww.Entry(t(7, 0), "PEM"))], map_name="ca")
    cs = reopen(cs)
    assert cs.lww_entries("intentions") == m
    assert lww.items(cs.lww_entries("intentions")) == lww.items(m)
    assert cs.lww_entries("ca").entries == {"ca/roots": lww.Entry(t(7, 0), "PEM")}
    assert cs.lww_entries() == lww.LwwMap()
    gced = lww.gc(m, now_ms=100, tombstone_grace_ms=10)
    cs.delete_lww(set(m.entries) - set(gced.entries), map_name="intentions")
    assert cs.lww_entries("intentions") == gced
    cs.close()


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(words, st.tuples(json_values, st.booleans(), st.integers(0, 2**40))))
def test_lww_entries_round_trip_any_json(data: dict[str, tuple[object, bool, int]]) -> None:
    entries = {
        k: lww.Entry(Timestamp(w, 0, "n"), None if d else v, d) for k, (v, d, w) in data.items()
    }
    with tempfile.TemporaryDirectory() as tmp:
        with CatalogStore.open(Path(tmp) / "c.db") as s:
            s.save_lww(entries.items())
        with CatalogStore.open(Path(tmp) / "c.db") as s:
            assert s.lww_entries().entries == entries


# --- clocks -------------------------------------------------------------------------------


def test_last_version_only_grows_across_restarts(cs: CatalogStore) -> None:
    assert cs.last_version() == 0
    assert (
        cs.save_last_version(next_version(cs.last_version(), 1_700_000_000_000))
        == 1_700_000_000_000
    )
    assert cs.save_last_version(5) == 1_700_000_000_000  # a stale writer cannot move it back
    cs = reopen(cs)
    assert cs.last_version() == 1_700_000_000_000
    assert next_version(cs.last_version(), 1_600_000_000_000) == 1_700_000_000_001
    cs.close()


def test_hlc_stamp_survives_and_never_goes_back(cs: CatalogStore) -> None:
    assert cs.hlc_last() is None
    assert cs.save_hlc(Timestamp(10, 3, "n1")) == Timestamp(10, 3, "n1")
    assert cs.save_hlc(Timestamp(10, 2, "n1")) == Timestamp(10, 3, "n1")
    assert cs.save_hlc(Timestamp(11, 0, "n1")) == Timestamp(11, 0, "n1")
    cs = reopen(cs)
    assert cs.hlc_last() == Timestamp(11, 0, "n1")
    cs.close()


# --- concurrency and crashes --------------------------------------------------------------


def test_calls_from_many_threads_are_serialized(cs: CatalogStore) -> None:
    def work(t: int) -> None:
        for i in range(50):
            cs.put_service(f"s{t}-{i}", {"Name": "x"}, {f"c{t}-{i}": {"TTL": "1s"}})
            cs.save_last_version(t * 1000 + i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(cs.services()) == len(cs.checks()) == 300
    assert cs.last_version() == 5049


CHILD = r"""
import sys
from pathlib import Path
from gossamer.catalog.model import NodeRecord
from gossamer.catalog.store import CatalogStore, CheckState

s = CatalogStore.open(Path(sys.argv[1]))
start = s.last_version()  # the first iteration not known to be complete
for i in range(start, start + 100_000):
    s.put_service(f"s{i}", {"Name": "web", "Port": i}, {f"c{i}": {"TTL": "10s"}})
    s.put_check_state(f"c{i}", CheckState("passing", "x" * 200, ttl_updated_ms=i))
    s.save_records(
        NodeRecord(node=f"b{i}-{j}", node_id="id", datacenter="dc1", address="a" * 300,
                   version=i, origin=f"b{i}-{j}")
        for j in range(10)
    )
    s.save_last_version(i + 1)
    print(i, flush=True)
"""


def test_kill_9_mid_write_keeps_every_commit_and_a_sound_file(db: Path) -> None:
    CatalogStore.open(db).close()
    rng = random.Random(3)
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    last = -1
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True, env=env
        )
        assert child.stdout is not None
        target = last + rng.randint(20, 60)
        for line in child.stdout:
            last = int(line)
            if last >= target:
                break
        # Let it run on into its next transactions before killing it mid-way.
        threading.Event().wait(rng.uniform(0, 0.02))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        child.stdout.close()

        with CatalogStore.open(db) as s:  # open runs quick_check
            services, checks, states = s.services(), s.checks(), s.check_states()
            state = s.load_state()
            version = s.last_version()
        # Every iteration the child saw finish is on disk; the one it was in may be
        # partly there (several calls), but each call is all or nothing.
        assert version >= last + 1
        assert set(services) in ({f"s{i}" for i in range(k)} for k in (version, version + 1))
        assert set(checks) == {f"c{i}" for i in range(len(services))}
        assert set(states) <= set(checks) and len(states) >= version
        nodes = set(state.records.get("dc1", {}))
        assert len(nodes) % 10 == 0 and len(nodes) // 10 in (version, version + 1)
        last = version - 1
    conn = raw(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_stored_json_is_plain_and_readable_by_hand(cs: CatalogStore) -> None:
    cs.save_records([rec("a", 3)])
    conn = raw(cs.path)
    dc, node, version, node_id, wire = conn.execute("SELECT * FROM records").fetchone()
    assert (dc, node, version, node_id) == ("dc1", "a", 3, "id-a")
    assert json.loads(wire)["v"] == 1
    conn.close()
