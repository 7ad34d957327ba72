"""Hybrid logical clock and last-writer-wins map: tables, and the lattice laws under Hypothesis."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.catalog import lww
from gossamer.catalog.hlc import Clock, ClockSkewError, StampError, Timestamp, now, update
from gossamer.catalog.lww import Entry, EntryError, LwwMap
from tests.test_catalog_model import json_values

# --- HLC --------------------------------------------------------------------------------


def test_now_follows_the_wall_clock_and_counts_within_a_millisecond() -> None:
    clock = Clock("a")
    clock, t1 = now(clock, 1000)
    clock, t2 = now(clock, 1000)
    clock, t3 = now(clock, 1005)
    assert (t1, t2, t3) == (
        Timestamp(1000, 0, "a"),
        Timestamp(1000, 1, "a"),
        Timestamp(1005, 0, "a"),
    )


def test_now_never_goes_back_when_the_wall_clock_does() -> None:
    clock, t1 = now(Clock("a"), 5000)
    clock, t2 = now(clock, 10)
    assert t2 == Timestamp(5000, 1, "a") and t2 > t1


@pytest.mark.parametrize(
    ("last", "remote", "wall", "expected"),
    [
        (Timestamp(10, 3, "a"), Timestamp(10, 7, "b"), 5, Timestamp(10, 8, "a")),  # same ms
        (Timestamp(20, 3, "a"), Timestamp(10, 7, "b"), 5, Timestamp(20, 4, "a")),  # ours ahead
        (Timestamp(10, 3, "a"), Timestamp(20, 7, "b"), 5, Timestamp(20, 8, "a")),  # theirs ahead
        (Timestamp(10, 3, "a"), Timestamp(20, 7, "b"), 30, Timestamp(30, 0, "a")),  # wall ahead
    ],
)
def test_update_table(last: Timestamp, remote: Timestamp, wall: int, expected: Timestamp) -> None:
    clock, stamp = update(Clock("a", last), remote, wall)
    assert stamp == expected and clock.last == expected


def test_update_refuses_a_peer_far_in_the_future() -> None:
    with pytest.raises(ClockSkewError, match="ahead"):
        update(Clock("a"), Timestamp(100_000, 0, "b"), 1000, max_skew_ms=60_000)
    _, stamp = update(Clock("a"), Timestamp(50_000, 0, "b"), 1000, max_skew_ms=60_000)
    assert stamp == Timestamp(50_000, 1, "a")


def test_node_breaks_ties_so_the_order_is_total() -> None:
    assert Timestamp(1, 1, "a") < Timestamp(1, 1, "b") < Timestamp(1, 2, "a") < Timestamp(2, 0, "a")


@pytest.mark.parametrize(
    "data", [None, [1, 2], [1, 2, 3], [-1, 0, "a"], [1, True, "a"], [1, 2**40, "a"], "1,2,a"]
)
def test_stamp_from_wire_rejects_malformed(data: object) -> None:
    with pytest.raises(StampError):
        Timestamp.from_wire(data)


walls = st.integers(0, 2**40)
events = st.lists(
    st.tuples(walls, st.none() | st.tuples(walls, st.integers(0, 1000), st.sampled_from("abc"))),
    min_size=1,
    max_size=40,
)


@given(events)
def test_hlc_is_strictly_monotonic_under_arbitrary_wall_clock_jumps(
    steps: list[tuple[int, tuple[int, int, str] | None]],
) -> None:
    clock, previous = Clock("a"), Timestamp(0, 0, "")
    for wall, remote in steps:
        if remote is None:
            clock, stamp = now(clock, wall)
        else:
            clock, stamp = update(clock, Timestamp(*remote), wall)
            assert stamp > Timestamp(*remote)
        assert stamp > previous and stamp.wall_ms >= wall and stamp.node == "a"
        previous = stamp


# --- LWW map ----------------------------------------------------------------------------


def ts(wall: int, node: str = "a", logical: int = 0) -> Timestamp:
    return Timestamp(wall, logical, node)


def test_later_write_wins_and_earlier_is_a_no_op() -> None:
    m = lww.put(LwwMap(), "web→db", {"Action": "allow"}, ts(2))
    assert lww.put(m, "web→db", {"Action": "deny"}, ts(1)) == m
    m = lww.put(m, "web→db", {"Action": "deny"}, ts(3))
    assert lww.get(m, "web→db") == {"Action": "deny"}


def test_delete_is_a_tombstone_that_beats_older_writes_in_any_order() -> None:
    a = lww.delete(lww.put(LwwMap(), "k", 1, ts(1)), "k", ts(2))
    b = lww.put(LwwMap(), "k", 1, ts(1))
    assert lww.get(a, "k") is None and lww.items(a) == []
    assert lww.merge(a, b) == lww.merge(b, a) == a
    assert lww.digest(a) == {"k": ts(2)}


def test_delete_beats_a_write_with_the_same_stamp() -> None:
    m = lww.put(LwwMap(), "k", 1, ts(5))
    assert lww.get(lww.delete(m, "k", ts(5)), "k") is None


def test_merge_entries_reports_changed_keys_sorted() -> None:
    m = lww.put(LwwMap(), "b", 1, ts(5))
    m2, changed = lww.merge_entries(m, [("c", Entry(ts(1), 1)), ("b", Entry(ts(1), 2))])
    assert changed == ["c"] and lww.items(m2) == [("b", 1), ("c", 1)]
    assert lww.merge_entries(m2, [("c", Entry(ts(1), 1))]) == (m2, [])


def test_newer_than_sends_only_what_the_peer_lacks() -> None:
    m = lww.put(lww.put(lww.put(LwwMap(), "a", 1, ts(1)), "b", 2, ts(5)), "c", 3, ts(5))
    theirs = {"a": ts(1), "b": ts(4), "c": ts(6)}
    assert [k for k, _ in lww.newer_than(m, theirs)] == ["b"]
    assert [k for k, _ in lww.newer_than(m, {})] == ["a", "b", "c"]


def test_gc_collects_old_tombstones_only() -> None:
    m = lww.delete(lww.put(LwwMap(), "live", 1, ts(0)), "gone", ts(1000))
    assert lww.gc(m, now_ms=1500, tombstone_grace_ms=1000) == m
    collected = lww.gc(m, now_ms=2000, tombstone_grace_ms=1000)
    assert list(collected.entries) == ["live"]


def test_entry_wire_round_trip() -> None:
    for entry in (Entry(ts(7, "b", 2), {"x": [1, 2.5, None]}), Entry(ts(8), None, deleted=True)):
        assert lww.entry_from_wire(lww.entry_to_wire("k", entry)) == ("k", entry)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ([], "expected an object"),
        ({"key": 1, "stamp": [1, 0, "a"], "deleted": False}, "key"),
        ({"key": "k", "stamp": [1, 0, "a"], "deleted": 0}, "deleted"),
        ({"key": "k", "stamp": [1, 0, "a"], "deleted": True, "value": 1}, "no value"),
        ({"key": "k", "stamp": "now", "deleted": False}, "stamp"),
        ({"key": "k", "stamp": [1, 0, "a"], "deleted": False, "value": float("inf")}, "finite"),
    ],
)
def test_entry_from_wire_rejects_malformed(data: object, error: str) -> None:
    with pytest.raises(EntryError, match=error):
        lww.entry_from_wire(data)


@given(
    json_values
    | st.dictionaries(st.sampled_from(["key", "stamp", "deleted", "value"]), json_values)
)
def test_entry_from_wire_fuzz_gives_an_entry_or_entry_error(data: Any) -> None:
    try:
        key, entry = lww.entry_from_wire(data)
    except EntryError:
        return
    assert isinstance(key, str) and isinstance(entry, Entry)


# Small key/stamp spaces so that writes collide, including equal stamps.
ops = st.lists(
    st.tuples(
        st.sampled_from(["k1", "k2", "k3"]),
        st.builds(ts, st.integers(0, 3), st.sampled_from("ab"), st.integers(0, 1)),
        st.none() | st.integers(0, 3) | st.text(max_size=2),
        st.booleans(),
    ),
    max_size=10,
)


def build(steps: list[tuple[str, Timestamp, Any, bool]]) -> LwwMap:
    def step(m: LwwMap, op: tuple[str, Timestamp, Any, bool]) -> LwwMap:
        key, stamp, value, deleted = op
        return lww.delete(m, key, stamp) if deleted else lww.put(m, key, value, stamp)

    return functools.reduce(step, steps, LwwMap())


maps = ops.map(build)


@given(maps, maps)
def test_merge_is_commutative(a: LwwMap, b: LwwMap) -> None:
    assert lww.merge(a, b) == lww.merge(b, a)


@given(maps, maps, maps)
def test_merge_is_associative(a: LwwMap, b: LwwMap, c: LwwMap) -> None:
    assert lww.merge(lww.merge(a, b), c) == lww.merge(a, lww.merge(b, c))


@given(maps, maps)
def test_merge_is_idempotent(a: LwwMap, b: LwwMap) -> None:
    ab = lww.merge(a, b)
    assert lww.merge(a, a) == a and lww.merge(ab, b) == ab


@given(ops, st.permutations(range(10)))
def test_writes_in_any_order_give_the_same_map(steps: list[Any], order: list[int]) -> None:
    assert build([steps[i] for i in order if i < len(steps)]) == build(steps)


@given(maps, maps)
def test_digest_exchange_converges(a: LwwMap, b: LwwMap) -> None:
    a2, _ = lww.merge_entries(a, lww.newer_than(b, lww.digest(a)))
    b2, _ = lww.merge_entries(b, lww.newer_than(a, lww.digest(b)))
    assert lww.digest(a2) == lww.digest(b2)
