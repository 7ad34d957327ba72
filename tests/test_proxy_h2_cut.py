"""Calls in flight that a policy change no longer allows, on the h2c gate (h2_gate.py
`recheck`, h2_cut.py, h2_app.py), between python-hyper's `h2` client and server: every byte
the gate writes, or holds back, is read by a full HTTP/2 implementation."""

from __future__ import annotations

from typing import Any

import pytest
from h2.events import (
    DataReceived,
    PingAckReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)

from gossamer.intentions.model import Decision, HttpRequest
from gossamer.proxy.h2_cut import CANCEL, Cuts
from tests.test_proxy_h2_gate import Pair, _request, _send_body


def _judge(request: HttpRequest) -> Decision:
    """The new policy: `/cut` is denied from now on."""
    return Decision(not request.path.startswith("/cut"), "cut rule", route="cut")


def _recheck(pair: Pair, *, deliver: bool = True) -> list[bytes]:
    """The policy change on the gate; its frames for the app, delivered unless not asked."""
    to_app, decisions = pair.gate.recheck(_judge)
    assert all(not d.allowed and d.route == "cut" for d in decisions)
    if deliver:
        for data in to_app:
            pair.server_events += pair.server.receive_data(data)
    return to_app


def _events(pair: Pair, kind: type, stream: int) -> list[Any]:
    return [e for e in pair.client_events if isinstance(e, kind) and e.stream_id == stream]


def _open(pair: Pair, path: str, *, grpc: bool = False, ended: bool = True) -> int:
    stream = pair.client.get_next_available_stream_id()
    pair.client.send_headers(stream, _request(path, grpc=grpc), end_stream=ended)
    pair.pump()
    return stream


@pytest.mark.parametrize("chunk", [0, 1, 5])
def test_an_http_answer_under_way_is_reset_and_another_call_goes_on(chunk: int) -> None:
    pair = Pair(chunk=chunk)
    kept, cut = _open(pair, "/keep/1"), _open(pair, "/cut/1")
    for stream in (kept, cut):
        pair.server.send_headers(stream, [(":status", "200")])
        pair.server.send_data(stream, b"first,")
    pair.pump()
    pair.server.send_data(cut, b"in flight,")  # sent before the app reads the reset
    _recheck(pair)
    assert [(e.stream_id, e.error_code) for e in pair.server_events
            if isinstance(e, StreamReset)] == [(cut, CANCEL)]  # fmt: skip
    pair.pump()  # the app's frame in flight, then its PING ACK
    assert b"".join(e.data for e in _events(pair, DataReceived, cut)) == b"first,in flight,"
    assert [e.error_code for e in _events(pair, StreamReset, cut)] == [CANCEL]
    assert not [e for e in pair.client_events if isinstance(e, PingAckReceived)]
    _send_body(pair.server, kept, b"second")
    pair.pump()
    assert b"".join(e.data for e in _events(pair, DataReceived, kept)) == b"first,second"
    assert _events(pair, StreamEnded, kept)
    assert sorted(o[0] for o in pair.outcomes) == [200, 403]  # the cut call counts as denied
    assert not _recheck(pair)  # each call is cut once


@pytest.mark.parametrize("chunk", [0, 3])
def test_a_grpc_answer_under_way_ends_with_permission_denied(chunk: int) -> None:
    pair = Pair(chunk=chunk)
    cut = _open(pair, "/cut.Feed/Watch", grpc=True, ended=False)  # the client still sends
    pair.server.send_headers(cut, [(":status", "200"), ("content-type", "application/grpc")])
    pair.server.send_data(cut, b"\0\0\0\0\1x")
    pair.pump()
    _recheck(pair)
    pair.pump()
    trailers = _events(pair, TrailersReceived, cut)
    assert [dict(t.headers)["grpc-status"] for t in trailers] == ["7"]
    assert _events(pair, StreamEnded, cut)
    assert [e.error_code for e in _events(pair, StreamReset, cut)] == [0]  # stop sending


@pytest.mark.parametrize("grpc", [False, True])
def test_a_call_with_no_answer_yet_gets_the_denys_answer(grpc: bool) -> None:
    pair = Pair()
    cut = _open(pair, "/cut/slow", grpc=grpc)
    _recheck(pair)
    pair.pump()
    answer = {k: v for e in _events(pair, ResponseReceived, cut) for k, v in e.headers}
    assert answer[":status"] == ("200" if grpc else "403")
    assert answer.get("grpc-status") == ("7" if grpc else None)
    assert _events(pair, StreamEnded, cut) and not _events(pair, StreamReset, cut)
    later = _open(pair, "/keep/after")  # the connection goes on, its tables in step
    pair.answer(later, b"fine")
    assert b"".join(e.data for e in _events(pair, DataReceived, later)) == b"fine"


def test_a_call_the_app_ends_before_it_reads_the_reset_is_left_whole() -> None:
    pair = Pair()
    cut = _open(pair, "/cut/quick")
    pair.server.send_headers(cut, [(":status", "200")])
    pair.server.send_data(cut, b"all of it", end_stream=True)  # in flight as the change comes
    _recheck(pair)
    pair.pump()
    assert b"".join(e.data for e in _events(pair, DataReceived, cut)) == b"all of it"
    assert _events(pair, StreamEnded, cut) and not _events(pair, StreamReset, cut)
    assert [o[0] for o in pair.outcomes] == [200]


def test_the_reset_waits_for_the_end_of_the_clients_frame_and_its_later_data_is_dropped(
) -> None:  # fmt: skip
    pair = Pair()
    kept = _open(pair, "/keep/upload", ended=False)
    cut = _open(pair, "/cut/upload", ended=False)
    before = pair.client.outbound_flow_control_window
    pair.client.send_data(kept, b"k" * 9000)
    up = pair.client.data_to_send()
    to_app, _ = pair.gate.from_client(up[:4000])
    for data in to_app:
        pair.server_events += pair.server.receive_data(data)
    assert _recheck(pair) == [], "nothing for the app inside the client's frame"
    to_app, _ = pair.gate.from_client(up[4000:])
    for data in to_app:
        pair.server_events += pair.server.receive_data(data)
    got = b"".join(e.data for e in pair.server_events if isinstance(e, DataReceived))
    assert got == b"k" * 9000
    assert [e.stream_id for e in pair.server_events if isinstance(e, StreamReset)] == [cut]
    pair.client.send_data(cut, b"c" * 5000)  # the client sends on before it hears
    pair.pump()
    got = b"".join(e.data for e in pair.server_events if isinstance(e, DataReceived))
    assert got == b"k" * 9000  # the cut call's data never reached the app
    # The cut call's data was given back by the gate (the kept call's is the app's to give)
    assert pair.client.outbound_flow_control_window == before - 9000


@pytest.mark.parametrize("chunk", [0, 1, 2, 7, 9, 13])
def test_the_clients_own_ping_ack_goes_through_while_a_cut_waits(chunk: int) -> None:
    pair = Pair(chunk=chunk)
    cut = _open(pair, "/cut/1")
    to_app = _recheck(pair, deliver=False)
    pair.client.ping(b"client01")
    pair.pump()  # the client's PING reaches the app, its ACK the client
    for data in to_app:  # then the gate's reset and PING
        pair.server_events += pair.server.receive_data(data)
    pair.client.ping(b"client02")
    pair.pump()
    acks = [e.ping_data for e in pair.client_events if isinstance(e, PingAckReceived)]
    assert acks == [b"client01", b"client02"]
    assert _events(pair, ResponseReceived, cut)  # the 403


def test_the_gates_ping_cannot_be_guessed_by_a_client() -> None:
    """The app's ACK of the PING behind a cut ends the wait. A client that sent a PING of the
    same payload first would have the app's ACK of its own end the wait before the app read
    the reset: the payload is random past a count, not a count a client can follow."""
    payloads = set()
    for _ in range(50):  # a new connection's first cut each time
        frames = Cuts().start([1])
        payloads.add(frames[-8:])
    assert len(payloads) == 50
    cuts = Cuts()
    frames = cuts.start([1, 3])
    assert cuts.acked(b"g" + (1).to_bytes(7, "big")) is None
    assert cuts.acked(frames[-8:]) == [1, 3]
