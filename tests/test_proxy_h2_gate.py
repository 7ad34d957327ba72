"""The h2c gate's core (h2_gate.py) between a real HTTP/2 client and server: python-hyper's
`h2` state machines on both ends, so every byte the gate writes is read by a full HTTP/2
implementation that would raise on a broken frame, a wrong HPACK table or flow control."""

from __future__ import annotations

from typing import Any, Final

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes
from hpack import Decoder, Encoder
from hpack.struct import NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.intentions.model import Decision, HttpRequest
from gossamer.proxy import h2_fields
from gossamer.proxy.h2_app import MAX_WAITING
from gossamer.proxy.h2_calls import MAX_CALLS
from gossamer.proxy.h2_fields import request_of
from gossamer.proxy.h2_frames import (
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    GOAWAY,
    HEAD,
    HEADERS,
    NO_ERROR,
    PREFACE,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    REFUSED_STREAM,
    SETTINGS,
    H2Error,
    frame,
    goaway,
    literal_block,
    parse_head,
    rst_stream,
    window_update,
)
from gossamer.proxy.h2_gate import H2Gate
from tests.h2_support import H2Ends

SEEN: list[HttpRequest] = []


def _decide(request: HttpRequest) -> Decision:
    SEEN.append(request)
    allowed = not request.path.startswith("/admin") and request.header("x-deny") is None
    return Decision(allowed, "test rule", route=request.path.split("/")[1])


Fields = tuple[tuple[str, str], ...]


def _request(path: str, *, grpc: bool = False, extra: Fields = ()) -> list[tuple[str, str]]:
    kind = "application/grpc" if grpc else "text/plain"
    return [(":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "db"), ("content-type", kind), *extra]  # fmt: skip


def _send_body(end: H2Connection, stream: int, body: bytes, *, end_stream: bool = True) -> None:
    """`body` in frames the peer takes (16 KiB, its default largest)."""
    for at in range(0, len(body), 16384):
        last = at + 16384 >= len(body)
        end.send_data(stream, body[at : at + 16384], end_stream=end_stream and last)


class Pair(H2Ends):
    """A client and a server `H2Connection` with the gate between them."""

    def __init__(self, server_settings: dict[int, int] | None = None, chunk: int = 0, *,
                 xfcc: bytes = b"", max_block: int = 16384) -> None:  # fmt: skip
        super().__init__(chunk)
        self.outcomes: list[tuple[int, str, float]] = []
        self.clock = 100.0  # seconds, given to the gate with every chunk
        self.gate = H2Gate(_decide, max_block, lambda *outcome: self.outcomes.append(outcome),
                           xfcc)  # fmt: skip
        self.client_events: list[Any] = []
        self.server_events: list[Any] = []
        self.start(server_settings=server_settings)

    def carry(self, up: bytes, down: bytes) -> None:
        for piece in self.pieces(up):
            to_app, to_client = self.gate.from_client(piece, self.clock)
            for data in to_app:
                self.server_events += self.server.receive_data(data)
            for data in to_client:
                self.client_events += self.client.receive_data(data)
        for piece in self.pieces(down):
            for data in self.gate.from_app(piece, self.clock):
                self.client_events += self.client.receive_data(data)

    def call(self, path: str, body: bytes = b"", **kw: Any) -> int:
        stream = self.client.get_next_available_stream_id()
        self.client.send_headers(stream, _request(path, **kw), end_stream=not body)
        if body:
            _send_body(self.client, stream, body)
        self.pump()
        return stream

    def answer(self, stream: int, body: bytes = b"ok") -> None:
        self.server.send_headers(stream, [(":status", "200")])
        _send_body(self.server, stream, body)
        self.pump()

    def requests(self) -> dict[int, dict[str, str]]:
        return {e.stream_id: dict(e.headers) for e in self.server_events
                if isinstance(e, RequestReceived)}  # fmt: skip

    def responses(self) -> dict[int, dict[str, str]]:
        found = {}
        for event in self.client_events:
            if isinstance(event, (ResponseReceived, TrailersReceived)):
                found.setdefault(event.stream_id, {}).update(dict(event.headers))
        return found


@pytest.mark.parametrize("chunk", [0, 1, 7])
def test_allowed_requests_reach_the_app_whole_and_answers_come_back(chunk: int) -> None:
    pair = Pair(chunk=chunk)
    one = pair.call("/echo.Echo/Unary", b"x" * 40_000)
    pair.answer(one, b"y" * 30_000)
    assert pair.requests()[one][":path"] == "/echo.Echo/Unary"
    got = b"".join(e.data for e in pair.server_events if isinstance(e, DataReceived))
    assert got == b"x" * 40_000
    back = b"".join(e.data for e in pair.client_events if isinstance(e, DataReceived))
    assert back == b"y" * 30_000
    assert pair.responses()[one][":status"] == "200"
    assert pair.gate.speaking and not pair.gate.opaque


@pytest.mark.parametrize("chunk", [0, 1, 5])
def test_a_denied_request_is_answered_here_and_later_ones_decode_right(chunk: int) -> None:
    pair = Pair(chunk=chunk)
    secret = (("x-team", "payments"), ("x-trace", "abc123"))
    new = (*secret, ("x-new", "only-in-the-denied-block"))
    first = pair.call("/echo.Echo/Unary", extra=secret)
    denied = pair.call("/admin/Drop", extra=new)
    after = pair.call("/echo.Echo/Unary", extra=new)
    for stream in (first, after):
        pair.answer(stream)
    seen = pair.requests()
    assert set(seen) == {first, after}, "the denied stream never reached the app"
    # the client's encoder indexed the denied block's fields; the app got them anyway
    assert seen[after]["x-new"] == "only-in-the-denied-block"
    assert seen[after]["x-team"] == "payments"
    assert pair.responses()[denied] == {":status": "403", "content-length": "0"}
    assert {first, after} <= set(pair.responses())
    assert any(isinstance(e, StreamEnded) and e.stream_id == denied for e in pair.client_events)


@pytest.mark.parametrize("chunk", [0, 3])
def test_a_path_is_judged_and_sent_on_normalized_and_later_blocks_decode_right(
    chunk: int,
) -> None:
    """`/public/../admin` is `/admin` to an app: denied as that. An allowed path written
    another way reaches the app normalized, its block as literals, and a block with a
    client's X-Forwarded-Client-Cert without it; the client's table, which the rewritten
    blocks added to, stays in step for the blocks after."""
    pair = Pair(chunk=chunk)
    extra = (("x-team", "payments"),)
    dotted = pair.call("/echo.Echo/../admin/Drop")
    escaped = pair.call("/%65cho.Echo/a/./Unary", extra=extra)
    forged = pair.call("/echo.Echo/Who", extra=(("x-forwarded-client-cert", "URI=spiffe://x"),))
    after = pair.call("/echo.Echo/Unary", extra=extra)
    broken = pair.call("/echo.Echo/%zz")
    for stream in (escaped, forged, after):
        pair.answer(stream)
    seen = pair.requests()
    assert set(seen) == {escaped, forged, after}
    assert seen[escaped][":path"] == "/echo.Echo/a/Unary"
    assert "x-forwarded-client-cert" not in seen[forged]  # a client's is dropped
    assert seen[after][":path"] == "/echo.Echo/Unary" and seen[after]["x-team"] == "payments"
    assert pair.responses()[dotted][":status"] == "403"
    assert pair.responses()[broken][":status"] == "400"  # no path: as an HTTP/1 target
    assert [r.path for r in SEEN[-4:]] == ["/admin/Drop", "/echo.Echo/a/Unary", "/echo.Echo/Who",
                                           "/echo.Echo/Unary"]  # fmt: skip


def test_a_denied_grpc_call_gets_permission_denied_trailers() -> None:
    pair = Pair()
    stream = pair.call("/admin.Admin/Wipe", grpc=True)
    answer = pair.responses()[stream]
    assert answer[":status"] == "200"
    assert answer["grpc-status"] == "7"  # PERMISSION_DENIED
    assert answer["grpc-message"] == "RBAC: access denied"


def test_a_denied_upload_is_dropped_reset_and_its_window_given_back() -> None:
    pair = Pair()
    before = pair.client.outbound_flow_control_window
    stream = pair.client.get_next_available_stream_id()
    pair.client.send_headers(stream, _request("/admin/upload"))
    _send_body(pair.client, stream, b"z" * 30_000, end_stream=False)
    pair.pump()
    assert not any(isinstance(e, DataReceived) for e in pair.server_events)
    resets = [e for e in pair.client_events if isinstance(e, StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(stream, 0)]
    assert pair.client.outbound_flow_control_window == before
    ok = pair.call("/echo.Echo/Unary", b"after")  # the connection goes on
    pair.answer(ok)
    assert pair.requests()[ok][":path"] == "/echo.Echo/Unary"


def test_an_answer_waits_for_the_end_of_the_apps_frame() -> None:
    pair = Pair()
    one = pair.call("/echo.Echo/Stream", b"a")
    pair.server.send_headers(one, [(":status", "200")])
    pair.server.send_data(one, b"q" * 9000)
    down = pair.server.data_to_send()
    half = len(down) - 4000  # the app's DATA frame is cut in the middle
    for data in pair.gate.from_app(down[:half]):
        pair.client_events += pair.client.receive_data(data)
    stream = pair.client.get_next_available_stream_id()
    pair.client.send_headers(stream, _request("/admin/x"), end_stream=True)
    to_app, to_client = pair.gate.from_client(pair.client.data_to_send())
    assert to_app == [] and to_client == [], "no answer inside the app's frame"
    for data in pair.gate.from_app(down[half:]):
        pair.client_events += pair.client.receive_data(data)
    assert pair.responses()[stream][":status"] == "403"
    got = b"".join(e.data for e in pair.client_events if isinstance(e, DataReceived))
    assert got == b"q" * 9000


def test_an_answer_waits_for_the_apps_preface() -> None:
    """A client's first request may be denied before the app has said anything: the answer
    must not go before the app's SETTINGS, the first frame a server sends (curl, grpcio)."""
    client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    server = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
    client.initiate_connection()
    client.send_headers(1, _request("/admin/x"), end_stream=True)
    gate, events = H2Gate(_decide), []
    to_app, to_client = gate.from_client(client.data_to_send())
    assert to_client == [], "nothing for the client before the app's preface"
    for data in to_app:
        server.receive_data(data)
    server.initiate_connection()
    for data in gate.from_app(server.data_to_send()):
        events += client.receive_data(data)  # h2 raises on a frame before SETTINGS
    answers = [dict(e.headers) for e in events if isinstance(e, ResponseReceived)]
    assert answers == [{":status": "403", "content-length": "0"}]


def test_a_larger_table_the_app_allows_is_read() -> None:
    pair = Pair(server_settings={SettingCodes.HEADER_TABLE_SIZE: 65536})
    long = tuple((f"x-field-{i}", "v" * 200) for i in range(30))  # > 4096 bytes of table
    for _ in range(3):
        stream = pair.call("/echo.Echo/Unary", extra=long)
        pair.answer(stream)
        assert pair.requests()[stream]["x-field-29"] == "v" * 200


def test_not_h2c_is_opaque_and_carried_byte_for_byte() -> None:
    gate = H2Gate(_decide)
    hello = b"\x16\x03\x01\x02\x00" + b"\x01" * 100
    assert gate.from_client(hello[:3]) == ([hello[:3]], [])
    assert gate.opaque and not gate.speaking
    assert gate.from_client(hello[3:]) == ([hello[3:]], [])
    assert gate.from_app(b"\x16\x03\x03") == [b"\x16\x03\x03"]
    half = H2Gate(_decide)
    assert half.from_client(PREFACE[:10]) == ([], [])  # a preface begun is held
    assert half.from_client(b"GET / HTTP/1.1\r\n") == ([PREFACE[:10] + b"GET / HTTP/1.1\r\n"], [])
    assert half.opaque


def _raw(*frames: bytes, max_block: int = 100) -> H2Error:
    gate = H2Gate(_decide, max_block=max_block)
    gate.from_client(PREFACE)
    gate.from_app(frame(SETTINGS, 0, 0))
    with pytest.raises(H2Error) as caught:
        for data in frames:
            gate.from_client(data)
    return caught.value


def test_broken_http2_ends_the_connection_with_a_precise_code() -> None:
    block = literal_block([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")])
    cases = {
        "CONTINUATION": (_raw(frame(CONTINUATION, 4, 1, block)), PROTOCOL_ERROR),
        "interrupted": (
            _raw(frame(HEADERS, 0, 1, block), frame(HEADERS, 4, 3, block)),
            PROTOCOL_ERROR,
        ),
        "even stream": (_raw(frame(HEADERS, 4, 2, block)), PROTOCOL_ERROR),
        "push": (_raw(frame(PUSH_PROMISE, 4, 1, b"\0\0\0\2" + block)), PROTOCOL_ERROR),
        "hpack": (_raw(frame(HEADERS, 4, 1, b"\xff\xff\xff\xff\xff")), COMPRESSION_ERROR),
        "too big": (_raw(frame(HEADERS, 4, 1, b"\0" * 101)), ENHANCE_YOUR_CALM),
        # empty CONTINUATIONs add nothing to the block but each is held: their heads count
        "continuation flood": (
            _raw(frame(HEADERS, 0, 1, block), *[frame(CONTINUATION, 0, 1)] * 200, max_block=1000),
            ENHANCE_YOUR_CALM,
        ),
        # a second request on a stream the gate let in would reach the app undecided
        "request on an open stream": (
            _raw(frame(HEADERS, 4, 1, block), frame(HEADERS, 5, 1, block), max_block=1000),
            PROTOCOL_ERROR,
        ),
        "trailers that do not end the stream": (
            _raw(
                frame(HEADERS, 4, 1, block),
                frame(HEADERS, 4, 1, literal_block([(b"a", b"b")])),
                max_block=1000,
            ),
            PROTOCOL_ERROR,
        ),
    }
    for name, (error, code) in cases.items():
        assert error.code == code, name
        assert str(error), name
    gate = H2Gate(_decide)
    gate.from_client(PREFACE)
    assert gate.from_app(frame(SETTINGS, 0, 0)) == [frame(SETTINGS, 0, 0)]
    with pytest.raises(H2Error) as caught:
        gate.from_client(frame(CONTINUATION, 4, 1, block))
    goaway = gate.goaway_for(caught.value)
    assert goaway[3] == 7 and goaway[13:17] == PROTOCOL_ERROR.to_bytes(4, "big")


OK_REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/public"),
              (b":authority", b"db"), (b"te", b"trailers"), (b"host", b"db")]  # fmt: skip
MALFORMED = {
    "two paths": [*OK_REQUEST, (b":path", b"/admin")],
    "pseudo after regular": [*OK_REQUEST[:2], (b"x", b"1"), *OK_REQUEST[2:]],
    "unknown pseudo": [*OK_REQUEST, (b":admin", b"1")],
    "no method": OK_REQUEST[1:],
    "no scheme": [OK_REQUEST[0], *OK_REQUEST[2:]],
    "no path": [*OK_REQUEST[:2], *OK_REQUEST[3:]],
    "empty path": [*OK_REQUEST[:2], (b":path", b""), *OK_REQUEST[3:]],
    "CR LF in a value": [*OK_REQUEST, (b"x-a", b"1\r\nx-admin: yes")],
    "NUL in a value": [*OK_REQUEST, (b"x-a", b"1\0")],
    "space at the end": [*OK_REQUEST, (b"x-a", b"1 ")],
    "tab at the start": [*OK_REQUEST, (b"x-a", b"\t1")],
    "upper case name": [*OK_REQUEST, (b"X-Admin", b"1")],
    "space in a name": [*OK_REQUEST, (b"x admin", b"1")],
    "colon in a name": [*OK_REQUEST, (b"x:a", b"1")],
    "empty name": [*OK_REQUEST, (b"", b"1")],
    "transfer-encoding": [*OK_REQUEST, (b"transfer-encoding", b"chunked")],
    "connection": [*OK_REQUEST, (b"connection", b"close")],
    "upgrade": [*OK_REQUEST, (b"upgrade", b"h2c")],
    "te not trailers": [*OK_REQUEST, (b"te", b"gzip")],
    "host not the authority": [*OK_REQUEST[:5], (b"host", b"admin")],
    "two hosts": [*OK_REQUEST, (b"host", b"db")],
    ":protocol on GET": [*OK_REQUEST[:4], (b":protocol", b"websocket"), *OK_REQUEST[4:]],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_request_is_refused_with_400_and_never_reaches_the_app(case: str) -> None:
    """RFC 9113 §8.1.1: an intermediary must not forward a malformed request; each of these
    could be read one way by the intentions and another by the app."""
    fields = MALFORMED[case]
    pair = Pair()
    pair.client.config.validate_outbound_headers = False  # let the client send it
    pair.client.config.normalize_outbound_headers = False
    pair.client.send_headers(1, fields, end_stream=True)
    pair.pump()
    after = pair.call("/echo.Echo/Unary")  # the connection goes on, tables in step
    pair.answer(after)
    assert set(pair.requests()) == {after}
    assert pair.responses()[1][":status"] == "400"
    assert pair.responses()[after][":status"] == "200"
    assert (400, "", 0.0) in pair.outcomes


def test_well_formed_requests_and_connect_are_told_apart() -> None:
    assert h2_fields.request_fault(OK_REQUEST) == h2_fields.OK
    assert h2_fields.request_fault(OK_REQUEST[:4]) == h2_fields.OK  # host and te optional
    tunnel = [(b":method", b"CONNECT"), (b":authority", b"db:5432")]
    assert h2_fields.request_fault(tunnel) == h2_fields.TUNNEL  # 501, as on the HTTP/1 path
    websocket = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), *OK_REQUEST[1:4]]
    assert h2_fields.request_fault(websocket) == h2_fields.OK  # RFC 8441: judged by its :path
    assert not h2_fields.trailers_fault([(b"grpc-status", b"0")], True)
    assert h2_fields.trailers_fault([(b":path", b"/admin")], True)
    assert h2_fields.trailers_fault([(b"x", b"1")], False)
    assert not h2_fields.field_fault(b":path", b"/a b")  # (inner spaces: the path's to judge)
    assert not h2_fields.field_fault(b"x-a_b.c~!", b"\x80\xff")  # obs-text is allowed
    assert not h2_fields.field_fault(b"x-id-bin", b"\0\r\n\0 ")  # gRPC's true-binary value
    assert h2_fields.field_fault(b"x-id", b"\0\r\n")  # (only on a -bin field)
    seen = h2_fields.request_of([*OK_REQUEST, (b"x-id-bin", b"\0\x00\xffa"), (b"x-n", b"\0")])
    assert seen.headers["x-id-bin"] == "AP9h" and seen.headers["x-n"] == "\0"  # as base64
    for name, value in [(b"X", b"1"), (b":", b"1"), (b"a:b", b"1"), (b"\x7f", b"1"),
                        (b"a", b" 1"), (b"a", b"1\t"), (b"a", b"1\n"), (b"a", b"\r")]:  # fmt: skip
        assert h2_fields.field_fault(name, value), (name, value)


def test_a_bad_field_in_the_table_is_caught_each_time_it_is_referred_to() -> None:
    """A bad literal the client added to its HPACK table comes back as a one-byte index;
    the reader checks indexed fields too once that happened."""
    pair = Pair()
    pair.client.config.validate_outbound_headers = False
    first = pair.call("/echo.Echo/Unary", extra=(("x-a", "1\r\nx-admin: 1"),))
    second = pair.call("/echo.Echo/Unary", extra=(("x-a", "1\r\nx-admin: 1"),))
    third = pair.call("/echo.Echo/Unary")
    pair.answer(third)
    assert set(pair.requests()) == {third}
    assert [pair.responses()[s][":status"] for s in (first, second, third)] == ["400", "400", "200"]


def test_a_rapid_reset_ends_the_connection_and_cancelled_calls_do_not() -> None:
    """CVE-2023-44487: streams opened and reset at once cost the app and not the client.
    Calls cancelled after their answer began (a gRPC client's deadline) are no such thing."""
    calm = Pair(server_settings={SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    for _ in range(700):
        stream = calm.call("/echo.Echo/Stream", b"a")
        calm.server.send_headers(stream, [(":status", "200")])
        calm.pump()
        calm.client.reset_stream(stream, 8)  # CANCEL
        calm.pump()
    assert len(calm.requests()) == 700
    rapid = Pair(server_settings={SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    with pytest.raises(H2Error) as caught:
        for _ in range(700):
            stream = rapid.call("/echo.Echo/Stream", b"a")
            rapid.client.reset_stream(stream, 8)
            rapid.pump()
    assert caught.value.code == ENHANCE_YOUR_CALM
    assert 250 < len(rapid.requests()) <= 300


def test_request_of_joins_repeats_keeps_pseudo_headers_and_reads_any_octet() -> None:
    request = request_of([(b":method", b"GET"), (b":path", b"/a?q=1"), (b":authority", b"db"),
                          (b"accept", b"x"), (b"accept", b"y"),
                          (b"x-name", b"caf\xc3\xa9"), (b"x-raw", b"caf\xe9")])  # fmt: skip
    assert (request.method, request.bare_path) == ("GET", "/a")
    assert request.header("host") == "db"  # a rule on Host holds for HTTP/2 as for HTTP/1
    assert request.header("accept") == "x,y" and request.header(":path") == "/a?q=1"
    assert request.header("x-name") == "café"  # its UTF-8 text, as on the HTTP/1 path
    assert request.header("x-raw") == "caf\ufffd"  # any octet reads: a bad one as U+FFFD


def test_after_a_deny_never_indexed_fields_stay_never_indexed() -> None:
    pair = Pair()
    pair.call("/admin/first")
    stream = pair.client.get_next_available_stream_id()
    token = NeverIndexedHeaderTuple("authorization", "Bearer s3cret")
    pair.client.send_headers(stream, [*_request("/echo.Echo/Unary"), token], end_stream=True)
    pair.pump()
    (got,) = [e for e in pair.server_events if isinstance(e, RequestReceived)]
    fields = {tuple(f): f for f in got.headers}
    assert isinstance(fields[("authorization", "Bearer s3cret")], NeverIndexedHeaderTuple)
    assert not isinstance(fields[(":path", "/echo.Echo/Unary")], NeverIndexedHeaderTuple)


def test_a_header_value_that_is_not_utf8_is_decided_not_fatal() -> None:
    gate = H2Gate(_decide)
    gate.from_client(PREFACE)
    gate.from_app(frame(SETTINGS, 0, 0))
    block = literal_block([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/admin/\xff"),
                           (b"x", b"\xfe")])  # fmt: skip
    to_app, to_client = gate.from_client(frame(HEADERS, 5, 1, block))
    assert to_app == [] and b"403" in b"".join(to_client)
    assert SEEN[-1].path == "/admin/\xff"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=40),
       st.lists(st.sampled_from(["/ok", "/admin", "/ok2"]), min_size=1, max_size=8))  # fmt: skip
def test_any_cut_of_the_client_bytes_gives_the_app_the_same_requests(
    cuts: list[int], paths: list[str]
) -> None:
    client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    client.initiate_connection()
    for path in paths:
        stream = client.get_next_available_stream_id()
        client.send_headers(stream, _request(path, extra=(("x-k", "v"),)), end_stream=False)
        client.send_data(stream, path.encode() * 50, end_stream=True)
    data = client.data_to_send()
    server = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
    server.initiate_connection()
    gate, events, at = H2Gate(_decide), [], 0
    for size in cuts * (len(data) // sum(cuts) + 1):
        piece, at = data[at : at + size], at + size
        for out in gate.from_client(piece)[0]:
            events += server.receive_data(out)
        if at >= len(data):
            break
    got = [dict(e.headers)[":path"] for e in events if isinstance(e, RequestReceived)]
    assert got == [p for p in paths if not p.startswith("/admin")]
    bodies = [e.data for e in events if isinstance(e, DataReceived)]
    assert b"".join(bodies) == b"".join(p.encode() * 50 for p in paths if p != "/admin")


def test_answers_held_for_a_stuck_app_are_bounded() -> None:
    pair = Pair(server_settings={SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    one = pair.call("/echo.Echo/Stream", b"a")
    pair.server.send_headers(one, [(":status", "200")])
    pair.server.send_data(one, b"q" * 9000)
    down = pair.server.data_to_send()
    pair.gate.from_app(down[:-100])  # the app stops inside its DATA frame
    with pytest.raises(H2Error) as caught:
        for _ in range(MAX_WAITING + 1):
            stream = pair.client.get_next_available_stream_id()
            pair.client.send_headers(stream, _request("/admin/x"), end_stream=True)
            pair.gate.from_client(pair.client.data_to_send())
    assert caught.value.code == ENHANCE_YOUR_CALM
    assert pair.gate.goaway_for(caught.value) == b"", "no GOAWAY inside the app's frame"


def test_each_call_is_recorded_once_with_its_status_route_and_time() -> None:
    pair = Pair()
    ok = pair.call("/echo.Echo/Unary", b"x")
    pair.clock += 0.25
    pair.answer(ok)
    assert pair.outcomes == [(200, "echo.Echo", 0.25)]
    grpc = pair.call("/echo.Echo/Fail", grpc=True)
    pair.server.send_headers(grpc, [(":status", "200"), ("content-type", "application/grpc")])
    pair.server.send_headers(grpc, [("grpc-status", "14")], end_stream=True)  # UNAVAILABLE
    pair.pump()
    pair.call("/admin/x", grpc=True)
    assert pair.outcomes[1:] == [(503, "echo.Echo", 0.0), (403, "admin", 0.0)]
    reset = pair.call("/echo.Echo/Slow", b"y")
    pair.server.send_headers(reset, [(":status", "200")])
    pair.pump()
    pair.client.reset_stream(reset)
    pair.clock += 1.0
    pair.pump()
    assert pair.outcomes[3] == (200, "echo.Echo", 1.0), "reset after its head: the status it had"
    left = pair.call("/echo.Echo/Hang", b"z")
    assert len(pair.outcomes) == 4
    pair.gate.close(pair.clock + 2.0)
    assert pair.outcomes[4] == (0, "echo.Echo", 2.0), "the connection ended first: no answer"
    pair.gate.close(pair.clock + 3.0)
    assert len(pair.outcomes) == 5 and left, "each call once"


def test_a_grpc_answer_cut_before_its_status_is_a_failure_by_who_cut_it() -> None:
    """`:status 200` and then no grpc-status: the call failed, whatever its head said; a gRPC
    client reports CANCELLED when it reset, INTERNAL when the app did, UNAVAILABLE when the
    connection ended (not the 200 it was counted as)."""
    pair = Pair()
    head = [(":status", "200"), ("content-type", "application/grpc")]
    cut = []
    for _ in range(3):
        stream = pair.call("/echo.Echo/Stream", b"x", grpc=True)
        pair.server.send_headers(stream, head)
        cut.append(stream)
    pair.pump()
    pair.client.reset_stream(cut[0])
    pair.pump()
    pair.server.reset_stream(cut[1])
    pair.pump()
    pair.gate.close(pair.clock)
    assert [status for status, _, _ in pair.outcomes] == [499, 500, 503]


def test_interim_answers_and_trailers_give_the_final_status() -> None:
    pair = Pair()
    stream = pair.call("/echo.Echo/Unary", b"x")
    pair.server.send_headers(stream, [(":status", "100")])
    pair.server.send_headers(stream, [(":status", "404")])
    pair.server.send_data(stream, b"nope")
    pair.server.send_headers(stream, [("x-trailer", "1")], end_stream=True)
    pair.pump()
    assert pair.outcomes == [(404, "echo.Echo", 0.0)]


def test_draining_sends_goaway_refuses_new_streams_and_lets_calls_finish() -> None:
    pair = Pair()
    busy = pair.call("/echo.Echo/Stream", b"a")
    for data in pair.gate.drain():
        pair.client_events += pair.client.receive_data(data)
    (away,) = [e for e in pair.client_events if isinstance(e, ConnectionTerminated)]
    assert (away.error_code, away.last_stream_id) == (0, busy)
    late = 101  # h2's client will not open a stream after GOAWAY; send one raw
    late_block = literal_block([(b":method", b"GET"), (b":path", b"/echo.Echo/Late"),
                                (b":scheme", b"http"), (b":authority", b"db")])  # fmt: skip
    to_app, to_client = pair.gate.from_client(frame(HEADERS, 5, late, late_block), pair.clock)
    assert to_app == [] and to_client == [rst_stream(late, REFUSED_STREAM)]
    pair.server.send_headers(busy, [(":status", "200")])  # the call in flight finishes
    pair.server.send_data(busy, b"ok", end_stream=True)
    answer = pair.server.data_to_send()
    assert pair.gate.from_app(answer, pair.clock) == [answer]  # to the client untouched
    assert set(pair.requests()) == {busy}
    assert pair.outcomes == [(200, "echo.Echo", 0.0)], "a refused stream is no call"


def _goaways(data: bytes) -> list[tuple[int, int, bytes]]:
    """(last stream id, error code, debug data) of each GOAWAY in `data`, whole frames."""
    found, at = [], 0
    while at < len(data):
        length, kind, _, _ = parse_head(data[at : at + HEAD])
        payload = data[at + HEAD : at + HEAD + length]
        if kind == GOAWAY:
            found.append((int.from_bytes(payload[:4]), int.from_bytes(payload[4:8]), payload[8:]))
        at += HEAD + length
    assert at == len(data)
    return found


LAST: Final = 2**31 - 1  # the first GOAWAY of a graceful stop (grpc-go, grpc-java, Envoy)


@pytest.mark.parametrize("chunk", [0, 1, 7])
@pytest.mark.parametrize("first", ["sidecar", "app", "sidecar inside the app's", "cut, sidecar"])
def test_goaways_never_raise_the_last_stream_the_client_was_told(chunk: int, first: str) -> None:
    """RFC 9113 §6.8: a GOAWAY's last stream id never goes up (nghttp2 and grpc-go take it
    for a connection error and fail the calls in flight). Kubernetes stops the app and its
    sidecar together, in either order: the app's graceful GOAWAY is lowered to what the
    client was told already, its other bytes as they came, and the call in flight ends.
    (While a cut waits for its PING ACK the app's frame heads are held back too.)"""
    pair = Pair(chunk=chunk)
    busy = pair.call("/echo.Echo/Stream", b"a")
    if first == "cut, sidecar":  # a call a policy change denies, its reset not read yet
        pair.call("/echo.Echo/Cut", b"b")
        pair.gate.recheck(lambda request: Decision(request.path != "/echo.Echo/Cut", "cut"))
        assert pair.gate.cuts.waiting
        first = "sidecar"
    down = bytearray()

    def from_app(data: bytes) -> None:
        for piece in pair.pieces(data):
            down.extend(b"".join(pair.gate.from_app(piece, pair.clock)))

    graceful = goaway(LAST, NO_ERROR, b"graceful stop")
    if first == "app":
        from_app(graceful)
    elif first == "sidecar inside the app's":
        from_app(graceful[:11])  # (its GOAWAY is not whole when the sidecar drains)
    down.extend(b"".join(pair.gate.drain()))
    if first == "sidecar":
        from_app(graceful)
    elif first == "sidecar inside the app's":
        from_app(graceful[11:])
    pair.server.send_headers(busy, [(":status", "200")])
    pair.server.send_data(busy, b"ok", end_stream=True)
    answer = pair.server.data_to_send()
    from_app(goaway(busy, NO_ERROR) + answer)  # its last GOAWAY, then the answer
    lasts = [last for last, _, _ in _goaways(bytes(down))]
    assert lasts == sorted(lasts, reverse=True) and lasts[-1] == busy, lasts
    assert (NO_ERROR, b"graceful stop") in [(code, debug) for _, code, debug in _goaways(down)]
    assert down.endswith(answer), "the call in flight ends"


def test_a_goaway_of_the_gates_goes_no_higher_than_the_apps() -> None:
    """The app told the client its last stream first; a call the client opened before it
    read that, and the gate's GOAWAYs after, say no more (drain, or a client that broke
    HTTP/2)."""
    pair = Pair()
    busy = pair.call("/echo.Echo/Stream", b"a")
    assert b"".join(pair.gate.from_app(goaway(busy, NO_ERROR))) == goaway(busy, NO_ERROR)
    late = pair.call("/echo.Echo/Late")  # (the app refuses it; not the gate's to say)
    assert late > busy and pair.gate.last == late
    assert _goaways(b"".join(pair.gate.drain())) == [(busy, NO_ERROR, b"")]
    broken = H2Error(PROTOCOL_ERROR, "a CONTINUATION frame with no header block open")
    assert _goaways(pair.gate.goaway_for(broken))[0][:2] == (busy, PROTOCOL_ERROR)


def test_a_call_past_the_open_limit_is_refused_until_one_ends() -> None:
    """Each call the app sees is one the gate follows (rechecked on a policy change, held to
    its content-length), so past MAX_CALLS open on a connection the next is refused."""
    pair = Pair(server_settings={SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CALLS + 10})
    for _ in range(MAX_CALLS):  # each sent whole, none answered yet
        stream = pair.client.get_next_available_stream_id()
        pair.client.send_headers(stream, _request("/echo.Echo/Hold"), end_stream=True)
    pair.pump()
    assert len(pair.requests()) == MAX_CALLS
    extra = pair.call("/echo.Echo/Extra")
    resets = [e for e in pair.client_events if isinstance(e, StreamReset)]
    assert [(e.stream_id, e.error_code) for e in resets] == [(extra, REFUSED_STREAM)]
    assert extra not in pair.requests()
    pair.answer(1)  # one call ends: room for the next
    later = pair.call("/echo.Echo/Later", extra=(("x-tag", "kept"),))
    assert pair.requests()[later][":path"] == "/echo.Echo/Later"
    assert pair.requests()[later]["x-tag"] == "kept"  # the app's table still in step
    assert pair.outcomes == [(200, "echo.Echo", 0.0)], "a refused stream is no call"


def test_calls_still_end_once_the_apps_blocks_go_unread() -> None:
    """An app block the gate cannot read (an index its table lacks) ends the reading of the
    app's blocks, not the following of its calls: each still ends with the app's END_STREAM,
    so the open-call limit never fills with calls long over."""
    gate = H2Gate(_decide)
    gate.from_client(PREFACE)
    gate.from_app(frame(SETTINGS, 0, 0))
    block = literal_block([(b":method", b"GET"), (b":scheme", b"http"),
                           (b":path", b"/echo.Echo/Unary"), (b":authority", b"db")])  # fmt: skip
    for n in range(MAX_CALLS + 10):
        stream = 2 * n + 1
        to_app, to_client = gate.from_client(frame(HEADERS, 5, stream, block))  # ends both
        assert (len(to_app), to_client) == (1, []), f"call {n} refused"
        gate.from_app(frame(HEADERS, 5, stream, b"\xbf"))  # index 63: not in an empty table
    assert gate.app.reader is None


def test_draining_a_connection_whose_app_is_stuck_does_not_raise() -> None:
    pair = Pair(server_settings={SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    one = pair.call("/echo.Echo/Stream", b"a")
    pair.server.send_headers(one, [(":status", "200")])
    pair.server.send_data(one, b"q" * 9000)
    pair.gate.from_app(pair.server.data_to_send()[:-100], 0.0)  # stuck inside its DATA frame
    for _ in range(MAX_WAITING):
        stream = pair.client.get_next_available_stream_id()
        pair.client.send_headers(stream, _request("/admin/x"), end_stream=True)
        pair.gate.from_client(pair.client.data_to_send(), 0.0)
    assert pair.gate.drain() == [] and pair.gate.draining


def test_blocks_written_here_carry_the_table_size_update_a_decoder_waits_for() -> None:
    """RFC 7541 §4.2: after a peer's SETTINGS lower its HPACK table, the next block its
    decoder reads opens with a size update (nghttp2 refuses one that does not: curl, h2load,
    Envoy). `h2`'s decoder does not check, so the bytes are."""
    # the client lowered its table: the gate's answer is the first block it reads after the ACK
    pair = Pair()
    pair.client.update_settings({SettingCodes.HEADER_TABLE_SIZE: 0})
    pair.pump()
    stream = pair.client.get_next_available_stream_id()
    pair.client.send_headers(stream, _request("/admin/x"), end_stream=True)
    _, to_client = pair.gate.from_client(pair.client.data_to_send())
    assert b"".join(to_client)[9:10] == b"\x20"  # (a size update to 0)
    for data in to_client:
        pair.client_events += pair.client.receive_data(data)
    assert pair.responses()[stream][":status"] == "403"
    # the app lowered its table: the client's block that said so was denied, so the next
    # one written again for the app opens with the client's update instead
    app = Pair(server_settings={SettingCodes.HEADER_TABLE_SIZE: 0})
    app.call("/admin/x")
    stream = app.client.get_next_available_stream_id()
    app.client.send_headers(stream, _request("/echo.Echo/Unary"), end_stream=True)
    to_app, _ = app.gate.from_client(app.client.data_to_send())
    assert b"".join(to_app)[9:10] == b"\x20"
    for data in to_app:
        app.server_events += app.server.receive_data(data)
    assert app.requests()[stream][":path"] == "/echo.Echo/Unary"


def test_frames_on_a_stream_closed_to_the_app_never_reach_it() -> None:
    """A stream the app never saw (denied) stays closed to it: not after the client resets
    it (a HEADERS on its id would be the app's first sight of a request nobody decided),
    nor after a thousand streams more were denied. Its DATA's window is given back."""
    gate = H2Gate(_decide)
    gate.from_client(PREFACE)
    gate.from_app(frame(SETTINGS, 0, 0))
    encoder = Encoder()

    def request(stream: int, path: str, flags: int) -> bytes:
        fields = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "db")]
        return frame(HEADERS, END_HEADERS | flags, stream, encoder.encode(fields))

    assert gate.from_client(request(1, "/admin/upload", 0))[0] == []  # denied, body to follow
    assert gate.from_client(request(3, "/admin/wipe", END_STREAM))[0] == []
    assert gate.from_client(rst_stream(3, 8))[0] == []
    revived = frame(HEADERS, END_HEADERS | END_STREAM, 3, encoder.encode([("x-anything", "1")]))
    assert gate.from_client(revived)[0] == []
    assert gate.from_client(frame(DATA, 0, 3, b"hello app")) == ([], [window_update(0, 9)])
    for stream in range(5, 2 * 1100, 2):
        gate.from_client(request(stream, "/admin/x", END_STREAM))
    late = frame(DATA, END_STREAM, 1, b"secret body")
    assert gate.from_client(late) == ([], [window_update(0, 11)])
    to_app, _ = gate.from_client(request(2 * 1100 + 1, "/echo.Echo/Unary", END_STREAM))
    assert Decoder().decode(b"".join(to_app)[9:])[2] == (":path", "/echo.Echo/Unary")
