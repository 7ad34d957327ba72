"""The caller's X-Forwarded-Client-Cert on each request the h2c gate lets through
(h2_gate.py, h2_frames.appended), between python-hyper's `h2` client and server: the app's
HPACK decoder must read every block right, whatever the client's table holds."""

from __future__ import annotations

import pytest
from h2.events import RequestReceived, StreamReset, TrailersReceived

from gossamer.proxy.h2_frames import PROTOCOL_ERROR
from tests.test_proxy_h2_gate import Pair, _request

XFCC = b"By=spiffe://t.consul/ns/default/dc/dc1/svc/db;Hash=ab12;URI=spiffe://t.consul/ns/default/dc/dc1/svc/web"


def _received(pair: Pair) -> dict[int, list[tuple[str, str]]]:
    return {e.stream_id: list(e.headers) for e in pair.server_events
            if isinstance(e, RequestReceived)}  # fmt: skip


def _xfcc(headers: list[tuple[str, str]]) -> list[str]:
    return [value for name, value in headers if name == "x-forwarded-client-cert"]


@pytest.mark.parametrize("chunk", [0, 1, 6])
def test_each_allowed_request_gets_the_callers_xfcc_once(chunk: int) -> None:
    pair = Pair(chunk=chunk, xfcc=XFCC)
    streams = [pair.call("/echo.Echo/Unary", b"x") for _ in range(3)]  # indexed fields, reused
    forged = pair.call("/echo.Echo/Unary", extra=(("x-forwarded-client-cert", "By=me"),))
    # CGI and WSGI apps read an underscore spelling as the same field (found by a walkthrough)
    spelt = pair.call("/echo.Echo/Unary", extra=(("x_forwarded-client_cert", "By=me"),))
    later = pair.call("/echo.Echo/Unary", b"y")  # after the client's field: blocks as literals
    received = _received(pair)
    for stream in [*streams, forged, spelt, later]:
        assert _xfcc(received[stream]) == [XFCC.decode()], received[stream]
        assert not [n for n, _ in received[stream] if n == "x_forwarded-client_cert"]
        assert dict(received[stream])[":path"] == "/echo.Echo/Unary"


def test_a_denied_request_gets_none_and_trailers_get_none() -> None:
    pair = Pair(xfcc=XFCC)
    pair.call("/admin/x")  # denied: the app never sees it
    stream = pair.client.get_next_available_stream_id()
    pair.client.send_headers(stream, _request("/echo.Echo/Stream"))
    pair.client.send_data(stream, b"body")
    pair.client.send_headers(stream, [("x-checksum", "1")], end_stream=True)
    pair.pump()
    assert list(_received(pair)) == [stream]
    trailers = [e for e in pair.server_events if isinstance(e, TrailersReceived)]
    assert [dict(t.headers) for t in trailers] == [{"x-checksum": "1"}]


def test_a_block_in_several_frames_gets_it_after_its_last() -> None:
    pair = Pair(xfcc=XFCC, max_block=65536)
    big = ("x-big", "v" * 40_000)  # past the 16 KiB frame: HEADERS and CONTINUATIONs
    stream = pair.call("/echo.Echo/Unary", b"x", extra=(big,))
    headers = _received(pair)[stream]
    assert dict(headers)["x-big"] == big[1] and _xfcc(headers) == [XFCC.decode()]


@pytest.mark.parametrize(
    "field",
    [("x-forwarded-client-cert", "By=x;URI=spiffe://t/svc/admin"), ("connection", "close"),
     ("x_forwarded_client_cert", "By=x;URI=spiffe://t/svc/admin"),
     ("transfer-encoding", "chunked"), ("te", "gzip")],
)  # fmt: skip
def test_trailers_that_name_a_caller_or_a_connection_are_malformed(field: tuple[str, str]) -> None:
    """A client's XFCC in trailers would name another caller to the app after the decision;
    a connection's field means something to an HTTP/1 hop behind. Neither reaches the app:
    the stream is reset both ways, and the connection goes on with both tables in step."""
    pair = Pair(xfcc=XFCC)
    pair.client.config.validate_outbound_headers = False  # (h2 would strip or refuse them)
    pair.client.config.normalize_outbound_headers = False
    stream = pair.client.get_next_available_stream_id()
    pair.client.send_headers(stream, _request("/echo.Echo/Stream"))
    pair.client.send_data(stream, b"body")
    pair.client.send_headers(stream, [field, ("x-checksum", "1")], end_stream=True)
    pair.pump()
    assert not [e for e in pair.server_events if isinstance(e, TrailersReceived)]
    for events in (pair.server_events, pair.client_events):
        resets = [(e.stream_id, e.error_code) for e in events if isinstance(e, StreamReset)]
        assert resets == [(stream, PROTOCOL_ERROR)]
    assert [o[0] for o in pair.outcomes] == [400]
    later = pair.call("/echo.Echo/Unary", b"y")
    assert _xfcc(_received(pair)[later]) == [XFCC.decode()]
