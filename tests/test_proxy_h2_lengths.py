"""A request's content-length on the h2c gate (h2_fields.body_length, h2_client.py, RFC 9113
§8.1.1): a body longer or shorter than it says is malformed and never reaches the app
whole. python-hyper's `h2` server checks the length of what it receives and raises when it
differs, so every request it takes without raising kept to its length."""

from __future__ import annotations

import pytest
from h2.events import DataReceived, StreamEnded, StreamReset
from h2.settings import SettingCodes

from gossamer.proxy import h2_fields
from gossamer.proxy.h2_frames import DATA, ENHANCE_YOUR_CALM, PADDED, PROTOCOL_ERROR, H2Error
from tests.test_proxy_h2_gate import Pair, _request


def _open(pair: Pair, length: str | None, *, ended: bool = False) -> int:
    stream = pair.client.get_next_available_stream_id()
    extra = (("content-length", length),) if length is not None else ()
    pair.client.send_headers(stream, _request("/echo/x", extra=extra), end_stream=ended)
    pair.pump()
    return stream


def _app_body(pair: Pair, stream: int) -> bytes:
    return b"".join(e.data for e in pair.server_events
                    if isinstance(e, DataReceived) and e.stream_id == stream)  # fmt: skip


def _resets(events: list[object], stream: int) -> list[int]:
    return [e.error_code for e in events if isinstance(e, StreamReset) and e.stream_id == stream]


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "", "9" * 16])
def test_a_content_length_that_is_no_length_is_refused(value: str) -> None:
    pair = Pair()
    stream = _open(pair, value)
    assert pair.responses()[stream][":status"] == "400"
    assert stream not in pair.requests()


def test_two_that_disagree_or_one_with_no_body_to_follow_are_refused() -> None:
    assert h2_fields.body_length([(b"content-length", b"5"), (b"content-length", b"5")]) == 5
    assert h2_fields.body_length([(b"content-length", b"5"), (b"content-length", b"6")]) == -2
    pair = Pair()
    stream = _open(pair, "5", ended=True)  # says 5 bytes, ends with its headers
    assert pair.responses()[stream][":status"] == "400"
    assert stream not in pair.requests()
    empty = _open(pair, "0", ended=True)
    assert empty in pair.requests()


@pytest.mark.parametrize("chunk", [0, 1, 7])
def test_a_body_of_its_length_goes_through_whole_padded_or_not(chunk: int) -> None:
    pair = Pair(chunk=chunk)
    stream = _open(pair, "30")
    pair.client.send_data(stream, b"a" * 10)
    pair.client.send_data(stream, b"b" * 10, pad_length=7)
    pair.client.send_data(stream, b"c" * 10, pad_length=0, end_stream=True)
    pair.pump()
    assert _app_body(pair, stream) == b"a" * 10 + b"b" * 10 + b"c" * 10
    assert any(isinstance(e, StreamEnded) and e.stream_id == stream for e in pair.server_events)
    free = _open(pair, None)  # no length said: any body
    pair.client.send_data(free, b"z" * 99, end_stream=True)
    pair.pump()
    assert _app_body(pair, free) == b"z" * 99


@pytest.mark.parametrize("case", ["longer", "longer-padded", "shorter", "short-then-trailers"])
def test_a_body_that_breaks_its_length_is_reset_both_ways_and_others_go_on(case: str) -> None:
    pair = Pair()
    stream = _open(pair, "10")
    window = pair.client.outbound_flow_control_window
    if case == "longer":
        pair.client.send_data(stream, b"x" * 11, end_stream=True)
    elif case == "longer-padded":
        pair.client.send_data(stream, b"x" * 6)
        pair.client.send_data(stream, b"y" * 6, pad_length=20)
    elif case == "shorter":
        pair.client.send_data(stream, b"x" * 9, end_stream=True)
    else:
        pair.client.send_data(stream, b"x" * 4)
        pair.client.send_headers(stream, [("x-checksum", "1")], end_stream=True)
    pair.pump()
    assert len(_app_body(pair, stream)) < 10 or case == "shorter", "past its length"
    assert _resets(pair.server_events, stream) == [PROTOCOL_ERROR]
    assert _resets(pair.client_events, stream) == [PROTOCOL_ERROR]
    assert [o[0] for o in pair.outcomes] == [400]
    if case in ("longer", "shorter"):  # the whole frame was dropped, its window given back
        assert pair.client.outbound_flow_control_window == window
    later = _open(pair, "2")  # the connection goes on, both HPACK tables in step
    pair.client.send_data(later, b"ok", end_stream=True)
    pair.pump()
    assert _app_body(pair, later) == b"ok"
    assert later in pair.requests() and not _resets(pair.server_events, later)


def test_the_app_never_sees_a_body_end_short_of_its_length() -> None:
    """The short body's last frame (with END_STREAM) is dropped, so the app sees a body
    that has not ended, then the reset: never a request that ended short."""
    pair = Pair()
    stream = _open(pair, "10")
    pair.client.send_data(stream, b"x" * 9, end_stream=True)
    pair.pump()
    assert _app_body(pair, stream) == b""
    assert not any(isinstance(e, StreamEnded) and e.stream_id == stream
                   for e in pair.server_events)  # fmt: skip
    assert stream in pair.requests()  # (its headers reached the app before its body)


def test_requests_made_malformed_at_once_count_as_a_rapid_reset() -> None:
    """CVE-2023-44487 by another road: each request reaches the app, then breaks its
    content-length at once (0, then a byte), so the gate resets it at the app. The app
    started work the client never let finish, as if the client had reset the stream."""
    pair = Pair(server_settings={SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    with pytest.raises(H2Error) as caught:
        for _ in range(700):
            stream = _open(pair, "0")
            pair.client.send_data(stream, b"x", end_stream=True)
            pair.pump()
    assert caught.value.code == ENHANCE_YOUR_CALM
    assert 250 < len(pair.requests()) <= 300


def test_a_padded_frame_streams_on_and_is_never_held_whole() -> None:
    """A padded frame's first byte says how much of it is body: it is judged then, and the
    rest streams to the app as it comes. A head that says 16 MiB makes the gate hold no
    more than itself (the app holds the frame to its own SETTINGS_MAX_FRAME_SIZE)."""
    pair = Pair()
    stream = _open(pair, "100000000")
    head = ((1 << 24) - 1).to_bytes(3, "big") + bytes((DATA, PADDED)) + stream.to_bytes(4, "big")
    to_app, _ = pair.gate.from_client(head + b"\0")  # no padding
    assert b"".join(to_app) == head + b"\0"
    for _ in range(4):
        to_app, _ = pair.gate.from_client(b"A" * 65536)
        assert b"".join(to_app) == b"A" * 65536
    other = Pair()
    held = _open(other, "10")
    with pytest.raises(H2Error) as caught:  # a pad length past the frame's end
        other.gate.from_client(b"\0\0\1" + bytes((DATA, PADDED)) + held.to_bytes(4, "big") + b"\5")
    assert caught.value.code == PROTOCOL_ERROR


def test_a_body_is_held_to_its_length_after_the_app_answered() -> None:
    """An app may answer before the request's body ends: the body that goes on is still
    held to its content-length (the call stays in the book until the client's side ends)."""
    pair = Pair()
    stream = _open(pair, "5")
    pair.server.send_headers(stream, [(":status", "200")], end_stream=True)  # an early answer
    pair.pump()
    pair.client.send_data(stream, b"A" * 1000)  # (still sending: it is told to stop)
    pair.pump()  # (h2's server raises on a body past its length)
    assert _app_body(pair, stream) == b""
    assert _resets(pair.server_events, stream) == [PROTOCOL_ERROR]
    assert _resets(pair.client_events, stream) == [PROTOCOL_ERROR]
    assert [o[0] for o in pair.outcomes] == [200]  # (recorded once, at the answer)
    kept = _open(pair, "2")  # one that keeps to its length still reaches the app whole
    pair.server.send_headers(kept, [(":status", "200")], end_stream=True)
    pair.pump()
    pair.client.send_data(kept, b"ok", end_stream=True)
    pair.pump()
    assert _app_body(pair, kept) == b"ok"
    assert any(isinstance(e, StreamEnded) and e.stream_id == kept for e in pair.server_events)
