"""catalog.absorb: what a peer's records and tombstones do here, and the version held."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.catalog import merge
from gossamer.catalog.absorb import (
    RELAYED_REMOVAL,
    absorb,
    bury,
    held_version,
    needs_owner_signature,
    tombstone_admitted,
)
from gossamer.catalog.merge import CatalogState
from tests.harness.replication import DC, node_record


def state_of(records: dict[str, int], tombs: dict[str, int]) -> CatalogState:
    """Records at the given versions, then nodes removed at the given tombstone versions."""
    state = merge.apply_many(CatalogState(), [node_record(n, v) for n, v in records.items()])[0]
    for node, version in tombs.items():
        state = merge.remove(state, DC, node, "left", at_ms=1, version=version)[0]
    return state


def test_our_own_record_is_never_taken_from_a_peer_but_our_writes_are() -> None:
    mine = state_of({"me": 4}, {})
    after, changed = absorb(mine, [node_record("me", 99), node_record("x", 1)], self_origin="me")
    assert changed == [(DC, "x")] and after.records[DC]["me"].version == 4
    after, changed = absorb(mine, [node_record("me", 5)], self_origin="")
    assert changed == [(DC, "me")]


@pytest.mark.parametrize(
    ("records", "tombs", "node", "held"),
    [
        ({}, {}, "n", 0),
        ({"n": 3}, {}, "n", 3),
        ({}, {"n": 7}, "n", 7),
        ({"n": 3}, {"n": 5}, "n", 5),  # removed: the tombstone took over the record
        ({"other": 9}, {}, "n", 0),
    ],
)
def test_held_version_is_the_records_or_the_tombstones(
    records: dict[str, int], tombs: dict[str, int], node: str, held: int
) -> None:
    assert held_version(state_of(records, tombs), DC, node) == held


@pytest.mark.parametrize(
    ("records", "tombs", "relayed", "removed", "tomb_after"),
    [
        ({"n": 3}, {}, ("n", 3), ["n"], 3),  # equal version: the tombstone wins (merge rule 3)
        ({"n": 3}, {}, ("n", 5), ["n"], 5),
        ({"n": 6}, {}, ("n", 5), [], None),  # registered again since: the record stays
        ({}, {}, ("n", 5), ["n"], 5),  # never seen: kept as a tombstone
        ({}, {}, ("n", 0), ["n"], 0),
        ({}, {"n": 5}, ("n", 5), [], 5),  # already held
        ({}, {"n": 5}, ("n", 4), [], 5),
        ({}, {"n": 5}, ("n", 8), ["n"], 8),
        ({"me": 1}, {}, ("me", 9), [], None),  # our own node is never buried by a peer
    ],
)
def test_bury_table(
    records: dict[str, int],
    tombs: dict[str, int],
    relayed: tuple[str, int],
    removed: list[str],
    tomb_after: int | None,
) -> None:
    after, got = bury(state_of(records, tombs), DC, [relayed], self_origin="me", at_ms=2)
    assert got == removed
    tomb = after.tombstones.get(DC, {}).get(relayed[0])
    assert (tomb.version if tomb else None) == tomb_after
    if removed:
        assert merge.get(after, DC, relayed[0]) is None
        assert tomb is not None and tomb.reason == RELAYED_REMOVAL and tomb.at_ms == 2


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.sampled_from("abcd"), st.integers(1, 9)),
    st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 9)), max_size=8),
)
def test_after_bury_no_record_is_older_than_a_relayed_tombstone(
    records: dict[str, int], relayed: list[tuple[str, int]]
) -> None:
    after, removed = bury(state_of(records, {}), DC, relayed, self_origin="", at_ms=1)
    for node, version in relayed:
        record = merge.get(after, DC, node)
        assert record is None or record.version > version
        assert held_version(after, DC, node) >= version
    assert set(removed) <= {n for n, _ in relayed}


@pytest.mark.parametrize(
    ("held", "peer", "alive", "admitted"),
    [
        ("x", "x", {"x"}, True),  # the owner itself removes its record
        ("x", "b", {"x"}, False),  # x is alive: b may not remove its record
        ("x", "b", set(), True),  # x is gone from Serf: anyone relays its removal
        (None, "b", {"x"}, False),  # nothing held, but x is alive: its name is the owner
        (None, "b", set(), True),
        ("ext-by-o", "b", {"o"}, False),  # an external node: its owning agent o is alive
        ("ext-by-o", "o", {"o"}, True),
        ("ext-by-o", "b", set(), True),
    ],
)
def test_a_relayed_tombstone_is_admitted_only_from_the_owner_or_for_an_owner_gone(
    held: str | None, peer: str, alive: set[str], admitted: bool
) -> None:
    state = CatalogState()
    if held == "x":
        state = merge.apply(state, node_record("x", 2))[0]
    elif held == "ext-by-o":
        state = merge.apply(state, dataclasses.replace(node_record("x", 2), origin="o"))[0]
    assert tombstone_admitted(state, DC, "x", peer, alive.__contains__) is admitted


def test_only_records_of_another_owner_need_a_signature() -> None:
    assert not needs_owner_signature(node_record("b", 1), "b")
    assert needs_owner_signature(node_record("x", 1), "b")
