"""Table tests of the sans-IO Serf RPC codec: requests -> bytes, bytes -> frames.

The wire shapes in these tables were checked against serf 0.8.2 (see
tests/test_serf_rpc.py, which talks to the real binary).
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.gossip.rpc_codec import (
    COMMANDS,
    Frame,
    LocalProtocolError,
    ProtocolError,
    RpcCodec,
    Stray,
    is_header,
)
from gossamer.gossip.rpc_records import QueryRecord, query_record


def pack(*objs: object) -> bytes:
    return b"".join(msgpack.packb(o, use_bin_type=True) for o in objs)


def H(seq: int, error: str = "") -> dict[str, Any]:
    return {"Seq": seq, "Error": error}


def codec_for(*requests: tuple[str, int]) -> RpcCodec:
    codec = RpcCodec()
    for command, seq in requests:
        has_body, _ = COMMANDS[command]
        codec.send(command, seq, {} if has_body else None)
    return codec


# -- encoding --------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "seq", "body", "wire"),
    [
        ("handshake", 0, {"Version": 1}, pack({"Command": "handshake", "Seq": 0}, {"Version": 1})),
        ("members", 7, None, pack({"Command": "members", "Seq": 7})),
        ("leave", 2**64 - 1, None, pack({"Command": "leave", "Seq": 2**64 - 1})),
        (
            "event",
            3,
            {"Name": "deploy", "Payload": b"\x00\xff", "Coalesce": False},
            b"\x82\xa7Command\xa5event\xa3Seq\x03"
            b"\x83\xa4Name\xa6deploy\xa7Payload\xc4\x02\x00\xff\xa8Coalesce\xc2",
        ),
    ],
)
def test_send_encodes_header_then_body(
    command: str, seq: int, body: dict[str, Any] | None, wire: bytes
) -> None:
    assert RpcCodec().send(command, seq, body) == wire


@pytest.mark.parametrize(
    ("command", "seq", "body", "why"),
    [
        ("frobnicate", 1, None, "unknown command"),
        ("members", 1, {"x": 1}, "takes no"),
        ("join", 1, None, "needs"),
        ("stats", -1, None, "out of range"),
        ("stats", 2**64, None, "out of range"),
        ("event", 1, {"Payload": object()}, "cannot encode"),
    ],
)
def test_send_rejects_what_the_protocol_cannot_say(
    command: str, seq: int, body: dict[str, Any] | None, why: str
) -> None:
    with pytest.raises(LocalProtocolError, match=why):
        RpcCodec().send(command, seq, body)


def test_send_rejects_a_seq_still_in_flight() -> None:
    codec = codec_for(("members", 1))
    with pytest.raises(LocalProtocolError, match="still in use"):
        codec.send("stats", 1)
    codec.feed(pack(H(1), {"Members": []}))
    codec.send("stats", 1)  # answered, so reusable


# -- decoding: (requests sent, objects serf sends) -> frames out -------------

MEMBERS = {"Members": [{"Name": "a"}]}
KEYS = {"Keys": None, "Messages": {"a": "no"}, "NumErr": 1, "NumNodes": 1, "NumResp": 1}

DECODE_TABLE: list[tuple[str, list[tuple[str, int]], list[object], list[object]]] = [
    ("header-only reply", [("handshake", 1)], [H(1)], [Frame(1, "", None, True)]),
    ("body on success", [("members", 1)], [H(1), MEMBERS], [Frame(1, "", MEMBERS, True)]),
    (
        "gatekeeper error has no body",
        [("members", 1), ("stats", 2)],
        [H(1, "Authentication required"), H(2, "Authentication required")],
        [
            Frame(1, "Authentication required", None, True),
            Frame(2, "Authentication required", None, True),
        ],
    ),
    (
        "key ops keep their body on error",
        [("remove-key", 4)],
        [H(4, "1/1 nodes reported failure"), KEYS],
        [Frame(4, "1/1 nodes reported failure", KEYS, True)],
    ),
    (
        "join error carries Num",
        [("join", 5)],
        [H(5, "dial tcp: refused"), {"Num": 0}],
        [Frame(5, "dial tcp: refused", {"Num": 0}, True)],
    ),
    (
        "interleaved replies by seq",
        [("members", 1), ("event", 2)],
        [H(2), H(1), MEMBERS],
        [Frame(2, "", None, True), Frame(1, "", MEMBERS, True)],
    ),
    (
        "stream: bare header, then records",
        [("stream", 6)],
        [H(6), H(6), {"Event": "user"}, H(6), {"Event": "member-join"}],
        [
            Frame(6, "", None, False),
            Frame(6, "", {"Event": "user"}, False),
            Frame(6, "", {"Event": "member-join"}, False),
        ],
    ),
    (
        "refused stream is over",
        [("stream", 6)],
        [H(6, "Invalid event filter"), H(6)],
        [Frame(6, "Invalid event filter", None, True), Frame(6, "", None, True)],
    ),
    (
        "query ends with done",
        [("query", 9)],
        [H(9), H(9), {"Type": "ack", "From": "a"}, H(9), {"Type": "done"}, H(9)],
        [
            Frame(9, "", None, False),
            Frame(9, "", {"Type": "ack", "From": "a"}, False),
            Frame(9, "", {"Type": "done"}, True),
            Frame(9, "", None, True),
        ],
    ),
    (
        "unexpected seq, then its body as stray",
        [],
        [H(42), {"Log": "late"}],
        [Frame(42, "", None, True), Stray({"Log": "late"})],
    ),
    (
        "not header-shaped where a header is due",
        [("handshake", 1)],
        [7, "x", [1], {"Seq": 1}, {"Seq": 1, "Error": "", "More": 1}, H(1)],
        [
            Stray(7),
            Stray("x"),
            Stray([1]),
            Stray({"Seq": 1}),
            Stray({"Seq": 1, "Error": "", "More": 1}),
            Frame(1, "", None, True),
        ],
    ),
    (
        "header where a body is due: the body never came",
        [("members", 1), ("event", 2)],
        [H(1), H(2)],
        [Frame(1, "", None, True), Frame(2, "", None, True)],
    ),
]


@pytest.mark.parametrize(
    ("requests", "received", "expected"),
    [case[1:] for case in DECODE_TABLE],
    ids=[case[0] for case in DECODE_TABLE],
)
def test_feed_table(
    requests: list[tuple[str, int]], received: list[object], expected: list[object]
) -> None:
    assert codec_for(*requests).feed(pack(*received)) == expected


@pytest.mark.parametrize(
    ("requests", "received", "expected"),
    [case[1:] for case in DECODE_TABLE],
    ids=[case[0] for case in DECODE_TABLE],
)
def test_feed_byte_by_byte_gives_the_same_frames(
    requests: list[tuple[str, int]], received: list[object], expected: list[object]
) -> None:
    codec = codec_for(*requests)
    out = []
    for byte in pack(*received):
        out += codec.feed(bytes([byte]))
    assert out == expected


def test_partial_objects_wait_for_more_bytes() -> None:
    codec = codec_for(("members", 1))
    wire = pack(H(1), MEMBERS)
    header_len = len(pack(H(1)))
    assert codec.feed(wire[: header_len - 1]) == []
    assert codec.feed(wire[header_len - 1 : header_len]) == []  # header done, body due
    assert codec.feed(wire[header_len:-1]) == []
    assert codec.feed(wire[-1:]) == [Frame(1, "", MEMBERS, True)]


def test_forget_turns_late_records_into_orphans() -> None:
    codec = codec_for(("monitor", 3))
    assert codec.feed(pack(H(3), H(3), {"Log": "a"})) == [
        Frame(3, "", None, False),
        Frame(3, "", {"Log": "a"}, False),
    ]
    assert codec.in_flight == {3}
    codec.forget(3)
    assert codec.in_flight == set()
    assert codec.feed(pack(H(3), {"Log": "b"})) == [Frame(3, "", None, True), Stray({"Log": "b"})]


def test_in_flight_drops_finished_requests() -> None:
    codec = codec_for(("members", 1), ("stream", 2), ("query", 3))
    codec.feed(pack(H(1), MEMBERS, H(2), H(3)))
    assert codec.in_flight == {2, 3}
    codec.feed(pack(H(3), {"Type": "done"}))
    assert codec.in_flight == {2}


@pytest.mark.parametrize(
    "obj",
    [
        H(0),
        H(2**64 - 1),
        {"Seq": True, "Error": ""},
        {"Seq": -1, "Error": ""},
        {"Seq": 1, "Error": None},
        {"Error": "", "Seq": "1"},
    ],
)
def test_is_header(obj: dict[str, Any]) -> None:
    expected = obj in (H(0), H(2**64 - 1))
    assert is_header(obj) is expected


# -- garbage ------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xc1",  # the one byte msgpack never uses
        b"\x81\x01\x02",  # map with an int key (serf keys are strings)
        b"\xd4\xff\x00",  # timestamp ext of invalid length
    ],
)
def test_garbage_raises_protocol_error_and_stays_broken(garbage: bytes) -> None:
    codec = codec_for(("members", 1))
    with pytest.raises(ProtocolError):
        codec.feed(garbage)
    with pytest.raises(ProtocolError):
        codec.feed(pack(H(1), MEMBERS))


def test_oversized_frame_is_a_protocol_error() -> None:
    codec = RpcCodec(max_buffer=1024)
    with pytest.raises(ProtocolError):
        codec.feed(pack({"Log": "x" * 4096}))


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    codec = codec_for(("monitor", 1))
    raw = b"\xa2\xff\xfe"  # fixstr of two bytes that are not UTF-8
    frames = codec.feed(pack(H(1), H(1)) + b"\x81\xa3Log" + raw)
    assert frames[-1] == Frame(1, "", {"Log": "\ufffd\ufffd"}, False)


@settings(max_examples=400, deadline=None)
@given(chunks=st.lists(st.binary(max_size=64), max_size=8))
def test_fuzz_arbitrary_bytes_decode_or_raise_protocol_error(chunks: list[bytes]) -> None:
    codec = codec_for(("members", 0), ("stream", 1), ("query", 2), ("list-keys", 3))
    try:
        for chunk in chunks:
            for event in codec.feed(chunk):
                assert isinstance(event, Frame | Stray)
    except ProtocolError:
        pass


wire_objects = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    objs=st.lists(
        st.one_of(wire_objects, st.builds(H, st.integers(0, 4), st.sampled_from(["", "boom"]))),
        max_size=10,
    ),
    cut=st.integers(0, 4096),
)
def test_fuzz_valid_msgpack_never_raises_and_split_point_does_not_matter(
    objs: list[object], cut: int
) -> None:
    wire = pack(*objs)
    whole = codec_for(("members", 0), ("stream", 1), ("query", 2), ("join", 3)).feed(wire)
    split = codec_for(("members", 0), ("stream", 1), ("query", 2), ("join", 3))
    cut = min(cut, len(wire))
    assert split.feed(wire[:cut]) + split.feed(wire[cut:]) == whole


def test_query_records_from_no_node_are_dropped() -> None:
    """serf's closed-channel race sends acks/responses with an empty From: not records."""
    assert query_record({"Type": "ack", "From": ""}) is None
    assert query_record({"Type": "response", "From": "", "Payload": b""}) is None
    assert query_record({"Type": "ack", "From": "qa"}) == QueryRecord("ack", "qa", b"")
    assert query_record({"Type": "done"}) == QueryRecord("done", "", b"")
