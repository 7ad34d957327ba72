"""The asking side of peer sync (catalog.sync_exchange), as playbooks: replies in, steps out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.catalog import lww, merge
from gossamer.catalog.absorb import held_version
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.lww_sync import Snapshot
from gossamer.catalog.sync_exchange import (
    DigestExchange,
    ExchangeError,
    HandOver,
    PullExchange,
    Step,
)
from gossamer.catalog.sync_protocol import (
    MAX_NODES_PER_REQUEST,
    NO_EFFECTS,
    Effects,
    digest_request,
)
from gossamer.catalog.wire import record_to_wire
from tests.harness.replication import DC, MemoryPeer, node_record


def state_of(*versions: tuple[str, int]) -> merge.CatalogState:
    return merge.apply_many(merge.CatalogState(), [node_record(n, v) for n, v in versions])[0]


def delta(**fields: Any) -> dict[str, Any]:
    return {"t": "delta", "records": [], "tombstones": [], "want": []} | fields


def started(conversation: DigestExchange) -> DigestExchange:
    conversation.first_request()
    return conversation


# -- anti-entropy round -----------------------------------------------------------------


def test_a_round_between_equal_catalogs_ends_after_the_delta() -> None:
    ex = DigestExchange(state_of(("a", 1)), DC, ranged=False)
    assert ex.first_request() == digest_request(state_of(("a", 1)), DC)
    assert ex.receive(delta()) == Step(NO_EFFECTS, None)


def test_the_delta_brings_records_and_tombstones_and_the_push_carries_what_was_wanted() -> None:
    ex = started(DigestExchange(state_of(("a", 4), ("b", 2)), DC))
    newer = record_to_wire(node_record("c", 3))
    step = ex.receive(delta(records=[newer], tombstones=[["d", 5]], want=["a", "ghost"]))
    assert step.effects == Effects((node_record("c", 3),), (("d", 5),))
    assert step.request is not None and step.request["t"] == "push"
    assert [r["node"] for r in step.request["records"]] == ["a"]
    assert ex.receive({"t": "ok", "applied": 1}) == Step()


def test_a_push_carries_our_tombstones_too() -> None:
    gone = merge.remove(state_of(("x", 2)), DC, "x", "left", at_ms=1, version=3)[0]
    step = started(DigestExchange(gone, DC)).receive(delta(want=["x"]))
    assert step.request is not None
    assert step.request["records"] == [] and step.request["tombstones"] == [["x", 3]]


def test_a_cached_digest_is_sent_as_given() -> None:
    cached = digest_request(state_of(("a", 1)), DC)
    ex = DigestExchange(state_of(("a", 1)), DC, digest=cached, ranged=False)
    assert ex.first_request() == cached


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        ({"t": "error", "msg": "datacenter 'dc2'"}, "peer refused digest: datacenter 'dc2'"),
        ({"t": "records", "records": []}, "expected 'delta' in reply to 'digest', got 'records'"),
        (delta(want="a"), "want: expected a list of node names"),
        (delta(want=None), "want: expected a list of node names"),
        (delta(want=["n"] * (MAX_NODES_PER_REQUEST + 1)), "want: more than"),
        (delta(records="x"), "records: expected a list"),
        (delta(records=[0] * (MAX_NODES_PER_REQUEST + 1)), "records: more than"),
        (delta(records=[record_to_wire(node_record("z", 1, dc="dc2"))]), "datacenter 'dc2'"),
        (delta(tombstones=[["n", -1]]), "tombstones: bad entry"),
        (delta(tombstones=[["n", 1]] * (MAX_NODES_PER_REQUEST + 1)), "tombstones: more than"),
    ],
)
def test_an_unusable_delta_is_an_exchange_error(reply: dict[str, Any], needle: str) -> None:
    ex = started(DigestExchange(state_of(("a", 1)), DC, ranged=False))
    with pytest.raises(ExchangeError, match=needle):
        ex.receive(reply)


def test_a_reply_without_a_request_is_an_exchange_error() -> None:
    ex = DigestExchange(state_of(), DC)
    with pytest.raises(ExchangeError, match="no request"):
        ex.receive(delta())
    ex.first_request()
    ex.receive(delta())
    with pytest.raises(ExchangeError, match="no request"):
        ex.receive(delta())  # the round is over


# -- LWW maps in the round --------------------------------------------------------------


def snap(**entries: int) -> dict[str, Snapshot]:
    m = lww.LwwMap({k: lww.Entry(Timestamp(ms, 0, "w"), {"v": k}) for k, ms in entries.items()})
    return {"m": Snapshot.of(m)}


def test_lww_maps_ride_on_the_round_both_ways() -> None:
    mine, theirs = snap(a=5), snap(a=3, b=7)
    ex = DigestExchange(state_of(), DC, mine)
    assert ex.first_request()["lww"] == {"m": mine["m"].hash}
    their_digest = {k: s.to_wire() for k, s in lww.digest(theirs["m"].entries).items()}
    step = ex.receive(delta(lww={"m": their_digest}))
    assert step.request is not None  # no records to push, but entries to trade
    part = step.request["lww"]["m"]
    assert [e["key"] for e in part["entries"]] == ["a"] and part["want"] == ["b"]
    b = lww.entry_to_wire("b", theirs["m"].entries.entries["b"])
    done = ex.receive({"t": "ok", "applied": 0, "lww": {"m": [b]}})
    assert done.request is None and [k for k, _ in done.effects.lww["m"]] == ["b"]


def test_without_maps_a_peers_lww_part_is_ignored() -> None:
    ex = DigestExchange(state_of(), DC)
    assert "lww" not in ex.first_request()
    assert ex.receive(delta(lww={"m": "not even a digest"})) == Step()


# -- pull and hand-over -----------------------------------------------------------------


def test_pull_asks_once_per_name_and_brings_what_came() -> None:
    ex = PullExchange(DC, ["b", "a", "b"])
    assert ex.first_request() == {"t": "pull", "dc": DC, "nodes": ["a", "b"]}
    step = ex.receive({"t": "records", "records": [record_to_wire(node_record("a", 2))]})
    assert step == Step(Effects((node_record("a", 2),)))
    with pytest.raises(ExchangeError, match="expected 'records'"):
        ex2 = PullExchange(DC, ["a"])
        ex2.first_request()
        ex2.receive({"t": "ok"})


def test_hand_over_pushes_entries_only_and_ends_on_ok() -> None:
    entries = list(snap(a=1)["m"].entries.entries.items())
    ex = HandOver(DC, "m", entries)
    request = ex.first_request()
    assert request["t"] == "push" and request["records"] == [] and request["tombstones"] == []
    assert request["lww"] == {"m": {"entries": [lww.entry_to_wire("a", entries[0][1])], "want": []}}
    assert ex.receive({"t": "ok", "applied": 0}) == Step()


# -- properties -------------------------------------------------------------------------

names = st.sampled_from("abcdef")


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(names, st.integers(1, 9)), max_size=10),
    st.lists(st.tuples(names, st.integers(1, 9)), max_size=10),
    st.lists(st.tuples(names, st.integers(10, 19)), max_size=4),
)
def test_one_round_makes_any_two_catalogs_agree_tombstones_included(
    left: list[tuple[str, int]], right: list[tuple[str, int]], removed: list[tuple[str, int]]
) -> None:
    """Removals above every record version, as a deregistration publishes them.

    (A removal at a record's own version, a serf leave, has the record's
    stamp, so anti-entropy leaves it to serf, which tells every agent.)
    """
    b_state = state_of(*right)
    for node, version in removed:
        b_state = merge.remove(b_state, DC, node, "left", at_ms=1, version=version)[0]
    a, b = MemoryPeer("agent-a", state_of(*left)), MemoryPeer("agent-b", b_state)
    a.run(DigestExchange(a.state, DC), b)
    assert a.state.records == b.state.records
    for node in "abcdef":
        assert held_version(a.state, DC, node) == held_version(b.state, DC, node)


wire_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["delta", "ok", "error", "records"]),
    st.dictionaries(st.sampled_from(["records", "tombstones", "want", "lww", "msg"]), wire_values),
)
def test_any_reply_gives_a_step_or_an_exchange_error(kind: str, fields: dict[str, Any]) -> None:
    ex = DigestExchange(state_of(("a", 1)), DC, snap(a=1))
    ex.first_request()
    try:
        step = ex.receive({**fields, "t": kind})
    except ExchangeError:
        return
    assert isinstance(step, Step)
