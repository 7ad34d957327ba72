"""Peer sync protocol: framing, answers, and convergence of two catalogs, without sockets."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.catalog import merge
from gossamer.catalog.absorb import absorb
from gossamer.catalog.model import NodeRecord
from gossamer.catalog.sync_answer import Served, answer
from gossamer.catalog.sync_exchange import DigestExchange
from gossamer.catalog.sync_protocol import (
    MAX_FRAME,
    FrameDecoder,
    ProtocolError,
    digest_request,
    encode,
    pull_request,
    push_request,
)
from tests.harness.replication import MemoryPeer, node_record

DC = "dc1"


def record(node: str, version: int, *services: str, dc: str = DC) -> NodeRecord:
    return node_record(node, version, *services, dc=dc, address="198.18.0.1")


def state_of(*records: NodeRecord) -> merge.CatalogState:
    return merge.apply_many(merge.CatalogState(), records)[0]


def test_frames_round_trip_in_any_split() -> None:
    wire = encode({"t": "pull", "dc": DC, "nodes": ["a"]}) + encode({"t": "ok", "applied": 1})
    for cut in range(len(wire) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert [m["t"] for m in got] == ["pull", "ok"]


@pytest.mark.parametrize(
    "data",
    [
        (MAX_FRAME + 1).to_bytes(4, "big"),
        (3).to_bytes(4, "big") + b"\xc1\xc1\xc1",  # 0xc1 is never valid msgpack
        (1).to_bytes(4, "big") + msgpack.packb(5),
        (6).to_bytes(4, "big") + msgpack.packb({"x": 1}).ljust(6, b"\x00"),
    ],
)
def test_bad_frames_raise_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        for message in FrameDecoder().feed(data):
            assert isinstance(message["t"], str)
    except ProtocolError:
        pass


def exchange(a: merge.CatalogState, b: merge.CatalogState) -> tuple[merge.CatalogState, ...]:
    """One anti-entropy round from A to B, driven as the agents drive it over a socket."""
    asking, answering = MemoryPeer("a-agent", a), MemoryPeer("b-agent", b)
    asking.run(DigestExchange(asking.state, DC), answering)
    kinds = [(request["t"], reply["t"]) for request, reply in answering.transcript]
    assert kinds[:1] == [("sums", "delta")] or kinds[:2] == [("sums", "sums"), ("digest", "delta")]
    pushed = [(request, reply) for request, reply in answering.transcript if request["t"] == "push"]
    assert len(pushed) == len(kinds) - (1 if kinds[0] == ("sums", "delta") else 2)
    for push, ok in pushed:
        assert ok == {"t": "ok", "applied": len(push["records"])}
    return asking.state, answering.state


def test_one_exchange_makes_two_catalogs_equal() -> None:
    a = state_of(record("n1", 3, "web"), record("n2", 1), record("n3", 7))
    b = state_of(record("n1", 2), record("n2", 5, "db"), record("n4", 1))
    a, b = exchange(a, b)
    assert a == b
    assert {n: r.version for n, r in a.records[DC].items()} == {"n1": 3, "n2": 5, "n3": 7, "n4": 1}


def test_pull_returns_only_what_exists() -> None:
    s = state_of(record("n1", 1))
    reply = answer(pull_request(DC, ["n1", "ghost"]), Served(s, DC)).reply
    assert [r["node"] for r in reply["records"]] == ["n1"]


def test_a_peer_cannot_overwrite_our_own_record() -> None:
    mine = state_of(record("me", 4, "web"))
    forged = record("me", 99)
    after, changed = absorb(mine, [forged], self_origin="me")
    assert changed == [] and after.records[DC]["me"].version == 4


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        ({"t": "digest", "dc": "dc2", "digest": {}}, "datacenter 'dc2'"),
        ({"t": "digest", "dc": DC, "digest": {"n": [1]}}, "bad entry for node 'n'"),
        ({"t": "digest", "dc": DC, "digest": {"n": [True, "x"]}}, "bad entry"),
        ({"t": "pull", "dc": DC, "nodes": "n1"}, "expected a list of node names"),
        ({"t": "push", "dc": DC, "records": [{"v": 1}]}, ""),
        ({"t": "push", "dc": DC, "records": "x"}, "expected a list"),
        ({"t": "dance", "dc": DC}, "unknown request type 'dance'"),
    ],
)
def test_bad_requests_get_an_error_reply(message: dict[str, object], needle: str) -> None:
    result = answer(message, Served(state_of(), DC))
    reply, records = result.reply, result.effects.records
    assert reply["t"] == "error" and needle in reply["msg"] and records == ()


def test_records_of_another_datacenter_are_refused() -> None:
    other = push_request(state_of(record("x", 1, dc="dc2")), "dc2", ["x"])
    other["dc"] = DC
    result = answer(other, Served(state_of(), DC))
    reply, records = result.reply, result.effects.records
    assert reply["t"] == "error" and "datacenter 'dc2'" in reply["msg"] and records == ()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(1, 9)), max_size=12),
    st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(1, 9)), max_size=12),
)
def test_exchange_converges_for_any_pair_of_catalogs(
    left: list[tuple[str, int]], right: list[tuple[str, int]]
) -> None:
    a = state_of(*(record(n, v) for n, v in left))
    b = state_of(*(record(n, v) for n, v in right))
    a, b = exchange(a, b)
    assert a == b


def test_tombstones_travel_in_delta_and_push() -> None:
    from gossamer.catalog.sync_protocol import parse_tombstones

    gone = merge.remove(state_of(record("ext", 3)), DC, "ext", "deregistered", at_ms=1, version=4)[
        0
    ]
    stale = state_of(record("ext", 3))
    delta = answer(digest_request(stale, DC), Served(gone, DC)).reply
    assert delta["records"] == [] and parse_tombstones(delta["tombstones"]) == [("ext", 4)]
    push = push_request(gone, DC, ["ext"])
    assert parse_tombstones(push["tombstones"]) == [("ext", 4)]


@pytest.mark.parametrize("raw", ["x", [["n"]], [["n", -1]], [["n", True]], [[1, 2]]])
def test_bad_tombstone_lists_are_record_errors(raw: object) -> None:
    from gossamer.catalog.sync_protocol import parse_tombstones
    from gossamer.catalog.wire import RecordError

    with pytest.raises(RecordError):
        parse_tombstones(raw)
