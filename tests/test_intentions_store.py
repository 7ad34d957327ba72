"""The replicated intention store without sockets: keys and values, the LWW sync parts, SQLite.

Each store here is a real IntentionStore on its own SQLite file with a fake
wall clock; "replication" between stores is done by handing entries over
with the pure sync functions, so the merge rules are tested without I/O.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.agent.replicated.intention_entries import (
    MAP_NAME,
    decode,
    pair_key,
    rfc3339,
    split_key,
    to_value,
)
from gossamer.agent.replicated.intention_store import (
    INTENTIONS,
    DuplicateIntention,
    IntentionNotFound,
    IntentionStore,
)
from gossamer.catalog import lww
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.lww_sync import (
    TOMBSTONE_GRACE_MS,
    LwwSyncError,
    Snapshot,
    answer_offer,
    answer_push,
    map_hash,
    offer,
    plan,
    push_part,
    receive_ok,
)
from gossamer.catalog.store import CatalogStore
from gossamer.intentions import HTTPMatch, Intention, IntentionError, Permission

HOUR_MS = 3600 * 1000


class Clock:
    def __init__(self, ms: int = 1_700_000_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


class Node:
    """One agent's intention store, its SQLite file, its LiveCatalog and a settable wall clock."""

    def __init__(self, name: str, root: Path, clock: Clock | None = None) -> None:
        self.name, self.path = name, root / f"{name}.db"
        self.clock = clock or Clock()
        self.news: list[list[tuple[str, lww.Entry]]] = []
        self.open()

    def open(self) -> None:
        self.db = CatalogStore.open(self.path)
        self.catalog = LiveCatalog("dc1", self.db, wall_ms=self.clock)
        self.store = IntentionStore(
            self.db, node=self.name, wall_ms=self.clock, notify=self.catalog.touch
        )
        self.store.announce = self.news.append

    def restart(self) -> None:
        self.db.close()
        self.open()

    def pairs(self) -> dict[tuple[str, str], str]:
        return {i.pair: i.action or "L7" for i in self.store.current}


@pytest.fixture
def node(tmp_path: Path) -> Callable[..., Node]:
    return lambda name="a", clock=None: Node(name, tmp_path, clock)


def ixn(source: str, destination: str, action: str = "allow", **kw: object) -> Intention:
    return Intention(source, destination, action=action, **kw)  # type: ignore[arg-type]


def sync(a: Node, b: Node) -> None:
    """One anti-entropy round a -> b through the pure message parts (what peer_rpc sends)."""
    snaps_a = {MAP_NAME: a.store.snapshot()}
    delta = answer_offer({MAP_NAME: b.store.snapshot()}, offer(snaps_a))
    push = plan(snaps_a, delta)
    wanted, incoming = answer_push({MAP_NAME: b.store.snapshot()}, push)
    for entries in incoming.values():
        b.store.absorb(entries)
    for entries in receive_ok(snaps_a, wanted).values():
        a.store.absorb(entries)


# --- keys, values, decoding -----------------------------------------------------------------


def test_keys_are_the_pair_and_split_back() -> None:
    assert pair_key("web", "db") == "web => db"
    assert split_key("web => db") == ("web", "db")
    assert split_key("* => *") == ("*", "*")
    for bad in ("web=>db", "a => b => c", "we b => db", " => db", "web => d*b"):
        assert split_key(bad) is None, bad


def test_values_drop_what_each_agent_computes_and_decode_back() -> None:
    original = ixn(
        "web",
        "db",
        "deny",
        id="0b5c5e1c-7a5e-4bd7-9d2b-2b7b7a4a8a11",
        description="no",
        meta={"team": "a"},
        create_index=7,
        modify_index=9,
    )
    value = to_value(original)
    assert not {"Precedence", "CreateIndex", "ModifyIndex"} & set(value)
    decoded, problem = decode("web => db", lww.Entry(Timestamp(1, 0, "a"), value))
    assert problem == "" and decoded is not None
    assert (
        decoded.pair == ("web", "db") and decoded.action == "deny" and decoded.meta == {"team": "a"}
    )


@pytest.mark.parametrize(
    "value",
    [
        {"SourceName": "web", "DestinationName": "db", "Action": "maybe"},
        {"SourceName": "web", "DestinationName": "db", "Action": "allow", "FutureField": 1},
        {"SourceName": "api", "DestinationName": "db", "Action": "allow"},  # not its key's pair
        "not an object",
    ],
)
def test_an_unreadable_value_fails_closed_as_a_deny(value: object) -> None:
    decoded, problem = decode("web => db", lww.Entry(Timestamp(1, 0, "a"), value))
    assert problem and decoded is not None
    assert (decoded.pair, decoded.action) == (("web", "db"), "deny")
    assert decoded.description.startswith("unreadable replicated intention")


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"


# --- the sync message parts -----------------------------------------------------------------


def entry(ms: int, node: str, value: object = None, deleted: bool = False) -> lww.Entry:
    return lww.Entry(Timestamp(ms, 0, node), None if deleted else value, deleted)


def test_equal_maps_exchange_only_a_hash() -> None:
    m = lww.put(lww.LwwMap(), "a => b", {"x": 1}, Timestamp(5, 0, "n"))
    snaps = {MAP_NAME: Snapshot.of(m)}
    assert offer(snaps) == {MAP_NAME: map_hash(m)}
    assert answer_offer(snaps, offer(snaps)) == {}
    assert map_hash(m) != map_hash(lww.LwwMap())


def test_one_round_moves_entries_both_ways_including_tombstones() -> None:
    a = lww.LwwMap({"x => y": entry(5, "a", {"v": 1}), "d => e": entry(9, "a", deleted=True)})
    b = lww.LwwMap(
        {
            "x => y": entry(3, "b", {"v": 0}),
            "p => q": entry(4, "b", {"v": 2}),
            "d => e": entry(2, "b", {"v": 3}),
        }
    )
    sa, sb = {MAP_NAME: Snapshot.of(a)}, {MAP_NAME: Snapshot.of(b)}
    push = plan(sa, answer_offer(sb, offer(sa)))
    assert sorted(push[MAP_NAME]["want"]) == ["p => q"]
    wanted, incoming = answer_push(sb, push)
    b2 = lww.merge_entries(b, incoming[MAP_NAME])[0]
    a2 = lww.merge_entries(a, receive_ok(sa, wanted)[MAP_NAME])[0]
    assert a2 == b2
    assert b2.entries["d => e"].deleted and lww.get(b2, "x => y") == {"v": 1}


def test_messages_without_the_part_or_for_unknown_maps_are_fine() -> None:
    snaps = {MAP_NAME: Snapshot.of(lww.LwwMap())}
    assert answer_offer(snaps, None) == {} and plan(snaps, None) == {}
    assert answer_push(snaps, None) == ({}, {}) and receive_ok(snaps, None) == {}
    assert answer_offer(snaps, {"ca-bundle": "abc"}) == {}  # a newer peer's map: not ours
    assert plan(snaps, {"ca-bundle": {"k": [1, 0, "n"]}}) == {}
    assert answer_push(snaps, push_part("ca-bundle", [("k", entry(1, "n", 1))])) == ({}, {})


@pytest.mark.parametrize(
    ("fn", "raw", "needle"),
    [
        (answer_offer, ["not", "a", "map"], "map name to hash"),
        (plan, {MAP_NAME: {"k": [1, 0]}}, "stamp"),
        (plan, {MAP_NAME: "x"}, "key to"),
        (answer_push, {MAP_NAME: []}, "entries and want"),
        (answer_push, {MAP_NAME: {"entries": [{"key": 1}]}}, "key"),
        (answer_push, {MAP_NAME: {"want": [1]}}, "want"),
        (
            receive_ok,
            {MAP_NAME: [{"key": "k", "stamp": [1, 0, "n"], "deleted": True, "value": 1}]},
            "deleted",
        ),
    ],
)
def test_malformed_parts_are_sync_errors(
    fn: Callable[..., object], raw: object, needle: str
) -> None:
    snaps = {MAP_NAME: Snapshot.of(lww.LwwMap())}
    with pytest.raises(LwwSyncError, match=needle):
        fn(snaps, raw)


# --- the store --------------------------------------------------------------------------------


def test_upsert_keeps_id_and_created_at_and_bumps_the_index(node: Callable[..., Node]) -> None:
    a = node()
    first = a.store.upsert(ixn("web", "db"))
    assert first.id and first.created_at == first.updated_at and first.create_index > 0
    a.clock.ms += 1500
    second = a.store.upsert(ixn("web", "db", "deny", description="changed"))
    assert (second.id, second.created_at, second.create_index) == (
        first.id,
        first.created_at,
        first.create_index,
    )
    assert second.updated_at > first.updated_at and second.modify_index > first.modify_index
    assert a.catalog.index([INTENTIONS]) == second.modify_index
    assert a.pairs() == {("web", "db"): "deny"}
    assert [k for batch in a.news for k, _ in batch] == ["web => db", "web => db"]


def test_legacy_create_refuses_a_taken_pair_and_update_moves_to_a_free_one(
    node: Callable[..., Node],
) -> None:
    a = node()
    made = a.store.create(ixn("web", "db"))
    with pytest.raises(DuplicateIntention, match="duplicate intention found: web => db"):
        a.store.create(ixn("web", "db", "deny"))
    a.store.create(ixn("api", "db"))
    with pytest.raises(DuplicateIntention):
        a.store.update(made.id, ixn("api", "db"))
    moved = a.store.update(made.id, ixn("web", "cache", "deny"))
    assert moved.id == made.id and moved.created_at == made.created_at
    assert a.pairs() == {("api", "db"): "allow", ("web", "cache"): "deny"}
    assert a.store.by_id(made.id) == moved
    with pytest.raises(IntentionNotFound):
        a.store.update("00000000-0000-0000-0000-000000000000", ixn("x", "y"))
    with pytest.raises(IntentionNotFound):
        a.store.delete_id("nope")


def test_bad_names_are_refused_before_anything_is_written(node: Callable[..., Node]) -> None:
    a = node()
    with pytest.raises(IntentionError) as err:
        a.store.delete("we b", "d*b")
    assert {p.field for p in err.value.problems} == {"SourceName", "DestinationName"}
    assert a.store.snapshot().entries.entries == {}


def test_delete_writes_a_tombstone_even_for_a_pair_not_held_yet(node: Callable[..., Node]) -> None:
    a, b = node("a"), node("b")
    b.store.upsert(ixn("web", "db"))  # not yet replicated to a
    a.clock.ms += 10
    assert a.store.delete("web", "db") is None
    sync(a, b)
    assert a.pairs() == b.pairs() == {}
    assert b.store.delete("web", "db") is None  # already a tombstone: nothing new written


def test_writes_survive_a_restart_and_the_clock_never_goes_back(node: Callable[..., Node]) -> None:
    a = node()
    kept = a.store.upsert(ixn("web", "db", "deny"))
    a.store.upsert(ixn("api", "db"))
    a.store.delete("api", "db")
    last = a.store.clock_last
    a.clock.ms -= HOUR_MS  # the wall clock stepped back while the agent was down
    a.restart()
    assert a.pairs() == {("web", "db"): "deny"}
    assert a.store.get("web", "db") is not None
    assert a.store.get("web", "db").id == kept.id  # type: ignore[union-attr]
    assert a.store.upsert(ixn("web", "db")).updated_at >= kept.updated_at
    assert a.store.clock_last > last


def test_writes_are_committed_with_fsync_and_the_connection_goes_back_to_normal(
    node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = node()
    seen: list[str] = []
    conn = a.db._conn
    assert conn is not None
    real = conn

    class Spy:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            seen.append(sql)
            return real.execute(sql, *args)

        def executemany(self, sql: str, rows: object) -> sqlite3.Cursor:
            seen.append(sql)
            return real.executemany(sql, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(a.db, "_conn", Spy())
    a.store.upsert(ixn("web", "db"))
    full = seen.index("PRAGMA synchronous=FULL")
    commit = seen.index("COMMIT", full)
    assert seen[full + 1] == "BEGIN IMMEDIATE" and seen[commit + 1] == "PRAGMA synchronous=NORMAL"
    assert any(sql.startswith("INSERT INTO lww") for sql in seen[full:commit])
    assert real.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_concurrent_writes_of_one_pair_converge_to_one_winner(node: Callable[..., Node]) -> None:
    shared = Clock()
    a, b, c = node("a", shared), node("b", shared), node("c", shared)
    a.store.upsert(ixn("web", "db", "allow", description="from a"))
    b.store.upsert(ixn("web", "db", "deny", description="from b"))  # same millisecond
    for x, y in ((a, b), (b, c), (c, a), (a, b)):
        sync(x, y)
    winners = {n.store.get("web", "db") for n in (a, b, c)}
    assert len({(w.id, w.action, w.description) for w in winners if w}) == 1
    assert a.store.get("web", "db").description == "from b"  # type: ignore[union-attr]  # "b" > "a"
    assert a.store.snapshot().hash == b.store.snapshot().hash == c.store.snapshot().hash


def test_a_later_write_wins_over_a_peer_stamp_from_the_future(node: Callable[..., Node]) -> None:
    a, b = node("a"), node("b", Clock(Clock().ms + 24 * HOUR_MS))  # b's clock is a day ahead
    b.store.upsert(ixn("web", "db", "deny"))
    sync(b, a)
    assert a.pairs() == {("web", "db"): "deny"}
    assert a.store.clock_last.wall_ms < b.clock.ms  # a did not follow b's broken clock ...
    a.store.upsert(ixn("web", "db", "allow"))  # ... yet its own later write still wins
    sync(a, b)
    assert a.pairs() == b.pairs() == {("web", "db"): "allow"}


def test_tombstones_are_collected_after_the_grace_and_not_taken_back(
    node: Callable[..., Node],
) -> None:
    shared = Clock()
    a, b = node("a", shared), node("b", shared)
    a.store.upsert(ixn("web", "db"))
    a.store.delete("web", "db")
    sync(a, b)
    assert "web => db" in b.store.snapshot().entries.entries
    shared.ms += TOMBSTONE_GRACE_MS - 1
    assert a.store.collect() == 0
    shared.ms += 1
    assert a.store.collect() == 1
    assert a.store.snapshot().entries.entries == {}
    sync(b, a)  # b has not collected yet: a does not take the expired tombstone back
    assert a.store.snapshot().entries.entries == {}
    a.restart()
    assert a.store.snapshot().entries.entries == {}
    b.restart()  # collected at start too
    assert b.store.snapshot().entries.entries == {}


def test_absorb_refuses_keys_that_are_no_pair_and_keeps_unreadable_values_as_deny(
    node: Callable[..., Node],
) -> None:
    a = node()
    t = Timestamp(a.clock.ms, 0, "peer")
    changed = a.store.absorb(
        [
            ("garbage", lww.Entry(t, {"x": 1})),
            (
                "web => db",
                lww.Entry(
                    t,
                    {
                        "SourceName": "web",
                        "DestinationName": "db",
                        "Action": "allow",
                        "NewerField": True,
                    },
                ),
            ),
        ]
    )
    assert changed == ["web => db"]
    assert a.pairs() == {("web", "db"): "deny"}
    assert a.store.decide("web", "db", default_allow=True).allowed is False


def test_l7_intentions_decide_with_a_request(node: Callable[..., Node]) -> None:
    a = node()
    perm = Permission("allow", HTTPMatch(path_prefix="/api", methods=("GET",)))
    a.store.upsert(Intention("web", "api", permissions=(perm,)))
    assert not a.store.decide("web", "api", default_allow=True).allowed
    from gossamer.intentions import HttpRequest

    assert a.store.decide(
        "web", "api", request=HttpRequest("GET", "/api/x"), default_allow=False
    ).allowed
    assert not a.store.decide(
        "web", "api", request=HttpRequest("POST", "/api/x"), default_allow=False
    ).allowed


names = st.sampled_from(["web", "db", "api", "*"])
ops = st.lists(
    st.tuples(
        st.sampled_from("abc"),
        names,
        names,
        st.sampled_from(["allow", "deny", "delete"]),
        st.integers(0, 3),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(ops=ops, order=st.permutations([0, 1, 2]))
def test_any_writes_then_any_sync_order_converge(
    tmp_path_factory: pytest.TempPathFactory,
    ops: list[tuple[str, str, str, str, int]],
    order: list[int],
) -> None:
    root = tmp_path_factory.mktemp("conv")
    shared = Clock()
    nodes = {n: Node(n, root, shared) for n in "abc"}
    for who, src, dst, what, step in ops:
        shared.ms += step
        store = nodes[who].store
        if what == "delete":
            store.delete(src, dst)
        else:
            store.upsert(ixn(src, dst, what))
    ring = [nodes["abc"[i]] for i in order]
    for _ in range(2):
        for x, y in zip(ring, ring[1:] + ring[:1], strict=True):
            sync(x, y)
    digests = {lww.digest(n.store.snapshot().entries).__repr__() for n in nodes.values()}
    assert len(digests) == 1
    assert len({frozenset(n.pairs().items()) for n in nodes.values()}) == 1
    for n in nodes.values():
        n.db.close()


def test_entries_that_cannot_be_stored_are_applied_in_memory(node: Callable[..., Node]) -> None:
    """The replicator must not die on the StoreError, and a deny written elsewhere must not
    wait for this agent's disk (test_crash_replicated_disk.py): applied, stored later."""
    a = node()
    a.db.close()  # every write now fails with StoreError
    t = Timestamp(a.clock.ms, 0, "peer")
    value = {"SourceName": "web", "DestinationName": "db", "Action": "deny"}
    assert a.store.absorb([("web => db", lww.Entry(t, value))]) == ["web => db"]
    assert a.pairs() == {("web", "db"): "deny"}
    assert [k for batch in a.news for k, _ in batch] == ["web => db"]
