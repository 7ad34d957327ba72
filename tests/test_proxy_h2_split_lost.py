"""A balanced call whose instance's connection is lost before any answer (h2_split_upstream.py).

The instance's sidecar killed, its host gone, its connection broken: the calls on it that
had no answer yet are answered as Envoy answers them, 503 "upstream connect error or
disconnect/reset before headers", for gRPC a trailers-only UNAVAILABLE, which gRPC clients
and their retry policies treat as worth another try. A reset (INTERNAL_ERROR) would show a
gRPC client INTERNAL, which no retry policy retries, while the edge counts the call as a 503.
A call whose answer had begun can only be cut (INTERNAL_ERROR), as before.
"""

from __future__ import annotations

from gossamer.proxy.h2_frames import frame
from tests.h2_split_rig import Rig, request

INTERNAL_ERROR = 0x2
LOST = (
    b"upstream connect error or disconnect/reset before headers."
    b" reset reason: connection termination"
)
UNAVAILABLE = [(b":status", b"200"), (b"content-type", b"application/grpc"),
               (b"grpc-status", b"14"), (b"grpc-message", LOST)]  # fmt: skip


def test_an_unanswered_grpc_call_of_a_lost_instance_is_answered_unavailable() -> None:
    rig = Rig(("a",))
    sending, sent = rig.call(end=False), rig.call(b"all of it")
    rig.pump()
    rig.run(rig.split.upstream_closed("a"))
    rig.servers.pop("a")
    rig.pump()
    for stream in (sending, sent):
        seen = rig.client_streams[stream]
        assert seen.headers == [UNAVAILABLE], seen
        assert seen.ended
    # the request still sending is told to stop (RFC 9113 §8.1), the whole one is not
    assert rig.client_streams[sending].reset == 0
    assert rig.client_streams[sent].reset is None
    assert sorted(status for _, status, _ in rig.done) == [503, 503]
    assert rig.split.open_calls == 0 and not rig.client_closed


def test_an_unanswered_plain_call_of_a_lost_instance_gets_503() -> None:
    rig = Rig(("a",))
    plain = int(rig.client.get_next_available_stream_id())
    rig.client.send_headers(plain, request(grpc=False), end_stream=True)
    rig.pump()
    rig.run(rig.split.upstream_closed("a"))
    rig.servers.pop("a")
    rig.pump()
    seen = rig.client_streams[plain]
    assert seen.headers[0][0] == (b":status", b"503") and bytes(seen.body) == LOST
    assert seen.ended and seen.reset is None


def test_an_instance_breaking_http2_answers_its_unanswered_calls_unavailable() -> None:
    rig = Rig(("a",))
    stream = rig.call(end=False)
    rig.pump()
    rig.run(rig.split.from_upstream("a", frame(0, 0, 0, b"bad")))  # DATA on stream 0
    assert rig.client_streams[stream].headers == [UNAVAILABLE]
    assert "a" in rig.closed and not rig.client_closed


def test_a_call_whose_answer_began_is_still_cut() -> None:
    rig = Rig(("a",))
    stream = rig.call(end=False)
    rig.pump()
    head = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    rig.servers["a"].conn.send_headers(stream, head)
    rig.pump()
    rig.run(rig.split.upstream_closed("a"))
    rig.servers.pop("a")
    rig.pump()
    seen = rig.client_streams[stream]
    assert len(seen.headers) == 1 and seen.reset == INTERNAL_ERROR
