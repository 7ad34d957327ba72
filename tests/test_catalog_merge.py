"""Catalog merge: which record wins (tables); order independence, convergence (Hypothesis)."""

from __future__ import annotations

import dataclasses
import functools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.catalog.merge import (
    SERF_FAILED_OUTPUT,
    CatalogState,
    Stamp,
    apply,
    apply_many,
    datacenters,
    diff,
    digest,
    gc_tombstones,
    get,
    is_failed,
    mark_alive,
    mark_failed,
    node_checks,
    nodes,
    owned_by,
    records_for,
    remove,
    serf_health,
    service_checks,
)
from gossamer.catalog.model import Check, NodeRecord, OwnerSignature, Service
from tests.test_catalog_model import records

EMPTY = CatalogState()


def rec(node: str = "a", version: int = 1, node_id: str = "id-a", **kw: object) -> NodeRecord:
    fields: dict[str, object] = {"datacenter": "dc1", "address": "10.0.0.1", "origin": node} | kw
    return NodeRecord(node=node, node_id=node_id, version=version, **fields)  # type: ignore[arg-type]


def fold(state: CatalogState, recs: list[NodeRecord]) -> CatalogState:
    return functools.reduce(lambda s, r: apply(s, r)[0], recs, state)


# --- which record wins ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "winner", "changed"),
    [
        (rec(version=1), rec(version=2, address="x"), 1, True),  # newer version wins
        (rec(version=2), rec(version=1, address="x"), 0, False),  # older is dropped
        (rec(version=2), rec(version=2), 0, False),  # equal: no-op
        (rec(version=2, node_id="a"), rec(version=2, node_id="b"), 1, True),  # id breaks ties
        (rec(version=2, node_id="b"), rec(version=2, node_id="a"), 0, False),
        (rec(version=3, node_id="z"), rec(version=4, node_id="a"), 1, True),  # version first
    ],
)
def test_record_rules(first: NodeRecord, second: NodeRecord, winner: int, changed: bool) -> None:
    state, _ = apply(EMPTY, first)
    state, did = apply(state, second)
    assert did is changed
    assert get(state, "dc1", "a") == (first, second)[winner]


def test_equal_stamp_with_different_content_is_settled_by_content() -> None:
    x, y = rec(version=5, address="10.0.0.1"), rec(version=5, address="10.0.0.2")
    assert fold(EMPTY, [x, y]) == fold(EMPTY, [y, x])


def test_new_node_applies_and_reports_change() -> None:
    state, changed = apply(EMPTY, rec())
    assert changed and nodes(state, "dc1") == [rec()] and datacenters(state) == ["dc1"]


def test_datacenters_are_kept_apart() -> None:
    state = fold(EMPTY, [rec(datacenter="dc1"), rec(datacenter="dc2", version=9)])
    assert get(state, "dc1", "a") == rec() and get(state, "dc2", "a") == rec(
        datacenter="dc2", version=9
    )
    assert datacenters(state) == ["dc1", "dc2"]


def test_apply_many_reports_sorted_changes_and_keeps_state_when_nothing_changed() -> None:
    state, changed = apply_many(EMPTY, [rec("b"), rec("a"), rec("a")])
    assert changed == [("dc1", "a"), ("dc1", "b")]
    again, changed = apply_many(state, [rec("b"), rec("a")])
    assert again is state and changed == []


# --- removal and tombstones -------------------------------------------------------------


def test_left_node_is_not_resurrected_by_an_older_relayed_record() -> None:
    state = fold(EMPTY, [rec(version=5)])
    state, removed = remove(state, "dc1", "a", "left", at_ms=100)
    assert removed and get(state, "dc1", "a") is None
    for late in (rec(version=5), rec(version=4), rec(version=5, node_id="zzz")):
        assert apply(state, late) == (state, False)


def test_rejoined_node_with_a_higher_version_replaces_its_tombstone() -> None:
    state, _ = remove(fold(EMPTY, [rec(version=5)]), "dc1", "a", "left", at_ms=100)
    state, changed = apply(state, rec(version=6))
    assert changed and get(state, "dc1", "a") == rec(version=6) and not state.tombstones


def test_tombstone_takes_the_version_from_serf_tags_for_a_record_never_seen() -> None:
    state, removed = remove(EMPTY, "dc1", "a", "left", at_ms=1, version=7)
    assert not removed
    assert apply(state, rec(version=7))[1] is False
    assert apply(state, rec(version=8))[1] is True


def test_remove_clears_the_failed_overlay() -> None:
    state, _ = mark_failed(fold(EMPTY, [rec()]), "dc1", "a")
    state, _ = remove(state, "dc1", "a", "reaped", at_ms=1)
    assert not is_failed(state, "dc1", "a")


def test_gc_forgets_tombstones_after_the_grace() -> None:
    state, _ = remove(fold(EMPTY, [rec(version=5)]), "dc1", "a", "left", at_ms=1000)
    assert gc_tombstones(state, now_ms=1500, grace_ms=1000) == state
    assert gc_tombstones(state, now_ms=2000, grace_ms=1000) == EMPTY


# --- digest exchange --------------------------------------------------------------------


def test_digest_lists_records_and_tombstones_sorted() -> None:
    state = fold(EMPTY, [rec("b", 3, "id-b"), rec("a", 2), rec("c", 1, "id-c")])
    state, _ = remove(state, "dc1", "c", "left", at_ms=0)
    assert list(digest(state, "dc1").items()) == [
        ("a", Stamp(2, "id-a")),
        ("b", Stamp(3, "id-b")),
        ("c", Stamp(1, "id-c")),
    ]
    assert digest(state, "dc9") == {}


def test_diff_table() -> None:
    mine = {"a": Stamp(2, "x"), "b": Stamp(1, "x"), "c": Stamp(1, "x"), "e": Stamp(1, "x")}
    theirs = {"a": Stamp(1, "x"), "b": Stamp(2, "x"), "c": Stamp(1, "x"), "d": Stamp(1, "x")}
    assert diff(mine, theirs) == (["b", "d"], ["a", "e"])


def test_records_for_skips_unknown_and_tombstoned_names() -> None:
    state = fold(EMPTY, [rec("a"), rec("b", node_id="id-b")])
    state, _ = remove(state, "dc1", "b", "left", at_ms=0)
    assert records_for(state, "dc1", ["b", "a", "zz", "a"]) == [rec("a")]


# --- gossip health overlay --------------------------------------------------------------

WEB = Service(id="web", name="web")
WEB_CHECK = Check("service:web", "web", status="passing", service_id="web", service_name="web")
DB_CHECK = Check("service:db", "db", status="passing", service_id="db", service_name="db")
NODE_CHECK = Check("mem", "memory", status="warning")


def test_failed_node_keeps_its_record_with_serf_health_critical() -> None:
    record = rec(services=(WEB,), checks=(WEB_CHECK, DB_CHECK, NODE_CHECK))
    state, changed = mark_failed(fold(EMPTY, [record]), "dc1", "a")
    assert changed and mark_failed(state, "dc1", "a") == (state, False)
    assert get(state, "dc1", "a") == record
    health = serf_health(state, record)
    assert health is not None and health.status == "critical"
    assert health.output == SERF_FAILED_OUTPUT
    assert [c.check_id for c in service_checks(state, record, "web")] == [
        "mem",
        "serfHealth",
        "service:web",
    ]
    state, changed = mark_alive(state, "dc1", "a")
    assert changed and mark_alive(state, "dc1", "a") == (state, False)
    alive = serf_health(state, record)
    assert alive is not None and alive.status == "passing"


def test_owner_cannot_decide_its_own_serf_health() -> None:
    forged = Check("serfHealth", "Serf Health Status", status="passing")
    state, _ = mark_failed(fold(EMPTY, [rec(checks=(forged,))]), "dc1", "a")
    record = get(state, "dc1", "a")
    assert record is not None
    assert [c.status for c in node_checks(state, record)] == ["critical"]


def test_external_nodes_get_no_serf_health() -> None:
    ext = rec("ext", origin="agent-1", node_id="id-ext", checks=(NODE_CHECK,))
    state = fold(EMPTY, [ext, rec("agent-1", node_id="id-1")])
    assert serf_health(state, ext) is None and node_checks(state, ext) == (NODE_CHECK,)
    assert owned_by(state, "dc1", "agent-1") == ["agent-1", "ext"]


# --- properties -------------------------------------------------------------------------

# Few names, ids and versions, so conflicts, ties and duplicates are common.
conflicting = records(
    node=st.sampled_from(["a", "b", "c"]),
    node_id=st.sampled_from(["id1", "id2"]),
    datacenter=st.sampled_from(["dc1", "dc2"]),
    version=st.integers(0, 4),
)


@given(st.lists(conflicting, max_size=12), st.randoms(use_true_random=False))
def test_any_order_with_duplicates_gives_the_same_state(
    recs: list[NodeRecord], rnd: random.Random
) -> None:
    shuffled = recs + rnd.sample(recs, k=len(recs) // 2)
    rnd.shuffle(shuffled)
    assert fold(EMPTY, shuffled) == fold(EMPTY, recs)
    assert apply_many(EMPTY, shuffled)[0] == fold(EMPTY, recs)


@given(st.lists(conflicting, max_size=12), st.permutations(range(12)))
def test_order_independence_after_a_removal(recs: list[NodeRecord], order: list[int]) -> None:
    base, _ = remove(EMPTY, "dc1", "a", "left", at_ms=0, version=2)
    reordered = [recs[i] for i in order if i < len(recs)]
    assert fold(base, reordered) == fold(base, recs)
    survivor = get(fold(base, recs), "dc1", "a")
    assert survivor is None or survivor.version > 2


def _stamped(node: str, node_id: str, dc: str, version: int) -> NodeRecord:
    """Content fixed by the stamp, as owners guarantee (a new version for every change)."""
    return NodeRecord(node, node_id, dc, f"{node_id}/{version}", version, origin=node)


stamped = st.builds(
    _stamped,
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["id1", "id2"]),
    st.sampled_from(["dc1", "dc2"]),
    st.integers(0, 4),
)


@given(st.lists(stamped, max_size=10), st.lists(stamped, max_size=10))
def test_one_digest_exchange_converges_two_agents(
    left: list[NodeRecord], right: list[NodeRecord]
) -> None:
    a, b = fold(EMPTY, left), fold(EMPTY, right)
    for dc in ("dc1", "dc2"):
        a_needs, b_needs = diff(digest(a, dc), digest(b, dc))
        a, _ = apply_many(a, records_for(b, dc, a_needs))
        b, _ = apply_many(b, records_for(a, dc, b_needs))
    assert a == b


def test_a_signed_copy_replaces_an_unsigned_one_of_equal_content_and_not_back() -> None:
    plain = rec("a", 3)
    signed = dataclasses.replace(plain, signed=OwnerSignature(b"sig", (b"cert",)))
    state, changed = apply(CatalogState(), plain)
    state, changed = apply(state, signed)
    assert changed and get(state, "dc1", "a") is not None
    held = get(state, "dc1", "a")
    assert held is not None and held.signed == signed.signed
    state2, changed = apply(state, plain)
    assert not changed and state2 is state
    other = dataclasses.replace(plain, signed=OwnerSignature(b"other", (b"cert",)))
    _, changed = apply(state, other)
    assert not changed  # one signature is as good as another: no churn between copies
