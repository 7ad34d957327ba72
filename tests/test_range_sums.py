"""Ranged anti-entropy (range_sums.py): a hash when agents agree, the differing ranges if not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.catalog import merge
from gossamer.catalog.absorb import held_version
from gossamer.catalog.merge import Stamp
from gossamer.catalog.range_sums import (
    bucket_of,
    buckets_for,
    differing,
    state_sums,
    sums_of,
)
from gossamer.catalog.sync_answer import Served, answer
from gossamer.catalog.sync_exchange import DigestExchange
from gossamer.catalog.sync_protocol import Message, encode
from tests.harness.replication import DC, MemoryPeer, node_record

CONVERGED_ROUND_BYTES = 200  # sums + empty delta, frame headers included, at any size


def state_of(*versions: tuple[str, int]) -> merge.CatalogState:
    return merge.apply_many(merge.CatalogState(), [node_record(n, v) for n, v in versions])[0]


def many(count: int, changed: int | None = None) -> merge.CatalogState:
    return state_of(*((f"node-{i:05d}", 2 if i == changed else 1) for i in range(count)))


class OldPeer(MemoryPeer):
    """An agent that predates `sums`: it answers it as its `sync_answer` did, an error."""

    def serve(self, request: Message) -> Message:
        if request["t"] == "sums" or "ranges" in request:
            reply = {"t": "error", "msg": f"unknown request type {request['t']!r}"}
            self.transcript.append((request, reply))
            return reply
        return super().serve(request)


def round_bytes(peer: MemoryPeer) -> int:
    return sum(len(encode(request)) + len(encode(reply)) for request, reply in peer.transcript)


def test_equal_digests_have_equal_roots_and_one_change_moves_one_range() -> None:
    stamps = {f"n{i}": Stamp(1, f"id-{i}") for i in range(500)}
    changed = stamps | {"n7": Stamp(2, "id-7")}
    same, other = sums_of(dict(reversed(stamps.items()))), sums_of(changed)
    assert same.root == sums_of(stamps).root != other.root
    buckets = buckets_for(len(stamps))
    assert buckets == 16
    ranges = differing(same.bucket_sums(buckets), other.bucket_sums(buckets))
    assert ranges == [bucket_of("n7", buckets)]


def test_a_converged_round_is_a_hash_and_an_empty_delta_at_2000_nodes() -> None:
    a, b = MemoryPeer("a", many(2000)), MemoryPeer("b", many(2000))
    a.run(DigestExchange(a.state, DC), b)
    assert [(q["t"], r["t"]) for q, r in b.transcript] == [("sums", "delta")]
    assert round_bytes(b) <= CONVERGED_ROUND_BYTES


def test_one_change_in_2000_nodes_sends_one_range_of_stamps() -> None:
    a, b = MemoryPeer("a", many(2000)), MemoryPeer("b", many(2000, changed=1234))
    a.run(DigestExchange(a.state, DC), b)
    kinds = [(q["t"], r["t"]) for q, r in b.transcript]
    assert kinds == [("sums", "sums"), ("digest", "delta")]
    ranged = b.transcript[1][0]
    assert ranged["ranges"] == [bucket_of("node-01234", ranged["buckets"])]
    assert len(ranged["digest"]) < 100  # ~32 of 2,000 stamps
    assert held_version(a.state, DC, "node-01234") == 2
    assert round_bytes(b) < 6_000  # the full digest of 2,000 nodes is ~100 KB


def test_a_peer_that_predates_sums_gets_the_full_digest() -> None:
    a, b = MemoryPeer("a", state_of(("x", 3), ("y", 1))), OldPeer("b", state_of(("y", 4)))
    a.run(DigestExchange(a.state, DC), b)
    assert [(q["t"], r["t"]) for q, r in b.transcript][:2] == [
        ("sums", "error"),
        ("digest", "delta"),
    ]
    assert a.state.records == b.state.records


def test_bad_sums_requests_get_an_error_naming_the_field() -> None:
    served = MemoryPeer("b", state_of(("x", 1)))
    cases = {
        "root": {"t": "sums", "dc": DC, "root": "abc", "buckets": 1},
        "buckets": {"t": "sums", "dc": DC, "root": b"\0" * 16, "buckets": 0},
        "ranges": {"t": "digest", "dc": DC, "digest": {}, "buckets": 2, "ranges": [5]},
    }
    for field, request in cases.items():
        reply = answer(request, Served(served.state, DC)).reply
        assert reply["t"] == "error" and reply["msg"].startswith(f"{field}:"), reply


def test_a_bad_sums_reply_is_an_exchange_error() -> None:
    ex = DigestExchange(state_of(("x", 1)), DC)
    ex.first_request()
    try:
        ex.receive({"t": "sums", "buckets": 1, "sums": b"\0" * 3})
    except ValueError as exc:
        assert "sums: expected 8 bytes" in str(exc)
    else:
        raise AssertionError("a short sums reply was taken")


def test_state_sums_are_remembered_per_state() -> None:
    state = many(50)
    assert state_sums(state, DC) is state_sums(state, DC)
    assert state_sums(many(50), DC).root == state_sums(state, DC).root


NAMES = [f"n{i}" for i in range(40)]
names = st.sampled_from(NAMES)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(names, st.integers(1, 9)), max_size=40),
    st.lists(st.tuples(names, st.integers(1, 9)), max_size=40),
    st.lists(st.tuples(names, st.integers(10, 19)), max_size=6),
    st.booleans(),
)
def test_the_ranged_round_converges_from_any_pair_of_states(
    left: list[tuple[str, int]],
    right: list[tuple[str, int]],
    removed: list[tuple[str, int]],
    old_peer: bool,
) -> None:
    """One round makes any two catalogs agree (with an old peer too); the next one is small."""
    b_state = state_of(*right)
    for node, version in removed:
        b_state = merge.remove(b_state, DC, node, "left", at_ms=1, version=version)[0]
    a = MemoryPeer("agent-a", state_of(*left))
    b = (OldPeer if old_peer else MemoryPeer)("agent-b", b_state)
    a.run(DigestExchange(a.state, DC), b)
    assert a.state.records == b.state.records
    for node in NAMES:
        assert held_version(a.state, DC, node) == held_version(b.state, DC, node)
    b.transcript.clear()
    a.run(DigestExchange(a.state, DC), b)
    if not old_peer:
        assert [(q["t"], r["t"]) for q, r in b.transcript] == [("sums", "delta")]
        assert round_bytes(b) <= CONVERGED_ROUND_BYTES
