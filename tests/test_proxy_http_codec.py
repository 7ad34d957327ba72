"""The HTTP path's pure head helpers (proxy/http_codec.py) over flat heads."""

from __future__ import annotations

import pytest

from gossamer.proxy import http_codec as codec


def flat(*pairs: tuple[bytes, bytes]) -> list[bytes]:
    head: list[bytes] = []
    for name, value in pairs:
        codec.add_header(head, name, value)
    return head


@pytest.mark.parametrize(
    ("pairs", "facts"),
    [
        ([(b"Host", b"a")], codec.HOST),
        ([(b"Host", b"a"), (b"X-Host", b"b"), (b"HOST", b"c")], codec.HOST | codec.TWO_HOSTS),
        ([(b"Content-Length", b"3")], codec.LENGTH),
        ([(b"content-length", b"3"), (b"CONTENT-LENGTH", b"3")], codec.LENGTH),
        ([(b"Transfer-Encoding", b" Chunked ")], codec.CHUNKED),
        ([(b"Transfer-Encoding", b"gzip, Chunked")], codec.CHUNKED | codec.CODED),
        ([(b"Transfer-Encoding", b"identity, chunked")], codec.CHUNKED | codec.CODED),
        ([(b"Transfer-Encoding", b"gzip")], codec.CODED),
        ([(b"Expect", b"100-continue"), (b"Connection", b"close")], codec.EXPECT | codec.HOP),
        ([(b"Keep-Alive", b"timeout=5"), (b"X-Transfer-Encoding", b"chunked")], codec.HOP),
    ],
)
def test_head_facts_any_case_and_again_from_the_name_cache(
    pairs: list[tuple[bytes, bytes]], facts: int
) -> None:
    head = flat(*pairs)
    assert codec.head_facts(head) == facts
    assert codec.head_facts(head) == facts  # the second time from _SEEN


@pytest.mark.parametrize(
    ("pairs", "length"),
    [
        ([(b"Host", b"a")], -1),
        ([(b"Host", b"a"), (b"content-LENGTH", b"1048576")], 1_048_576),
        ([(b"Content-Length", b"0"), (b"X-Content-Length", b"9")], 0),
        ([(b"X-Content-Length", b"9"), (b"Content-Length", b"12 ")], 12),  # llhttp's OWS
    ],
)
def test_content_length_any_case_or_minus_one(
    pairs: list[tuple[bytes, bytes]], length: int
) -> None:
    assert codec.content_length(flat(*pairs)) == length


def test_heads_are_written_as_parsed_and_hop_by_hop_dropped() -> None:
    head = flat((b"Host", b"db"), (b"Connection", b"close"), (b"X-A", b"1"))
    assert codec.request_head("GET", b"/x", "1.1", head) == (
        b"GET /x HTTP/1.1\r\nHost: db\r\nConnection: close\r\nX-A: 1\r\n\r\n"
    )
    kept = codec.end_to_end(head)
    assert codec.pairs(kept) == [(b"Host", b"db"), (b"X-A", b"1")]
    assert codec.response_head(200, b"OK", [*kept, *codec.CONNECTION_CLOSE]) == (
        b"HTTP/1.1 200 OK\r\nHost: db\r\nX-A: 1\r\nconnection: close\r\n\r\n"
    )
    assert codec.joined_headers(codec.pairs(flat((b"X-A", b"1"), (b"x-a", b"2")))) == {"x-a": "1,2"}


def test_a_value_is_judged_without_the_whitespace_around_it() -> None:
    """llhttp keeps a value's trailing spaces and tabs; they are not part of it (RFC 9110
    §5.5) and the app drops them, so `X-Role: admin ` must meet a rule on `admin`."""
    assert codec.joined_headers([(b"X-Role", b"admin \t")]) == {"x-role": "admin"}
    assert codec.joined_headers([(b"X-A", b"1 "), (b"x-a", b"\t2")]) == {"x-a": "1,2"}


@pytest.mark.parametrize(
    "fields",
    [
        [(b"Host", b"db.example:80"), (b"X-A", b"1")],  # HTTP/1
        [(b":method", b"GET"), (b":path", b"/a?q"), (b":authority", b"db.example:80"),
         (b"x-a", b"1")],  # HTTP/2
    ],
    ids=["http1", "http2"],
)  # fmt: skip
def test_a_request_is_judged_alike_in_both_protocols(fields: list[tuple[bytes, bytes]]) -> None:
    """A rule on `Host` holds for an HTTP/2 call (which carries `:authority`) and a rule on
    `:authority`, `:method` or `:path` for an HTTP/1 request: both names of the authority,
    and the pseudo-headers, are there whichever protocol came."""
    request = codec.judged_request("GET", "/a?q", fields)
    assert request.header("host") == request.header(":authority") == "db.example:80"
    assert (request.header(":method"), request.header(":path")) == ("GET", "/a?q")
    assert request.header("x-a") == "1" and request.bare_path == "/a"


@pytest.mark.parametrize(
    ("coding", "chunked"),
    [(b"chunked", True), (b"gzip, chunked", True), (b"chunked, gzip", False),
     (b"gzip", False), (b"chunked ,  gzip", False)],
)  # fmt: skip
def test_a_body_is_chunked_only_when_chunked_is_the_last_coding(
    coding: bytes, chunked: bool
) -> None:
    facts = codec.head_facts(flat((b"Transfer-Encoding", coding)))
    assert bool(facts & codec.CHUNKED) is chunked
    two = codec.head_facts(flat((b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", coding)))
    assert bool(two & codec.CHUNKED) is chunked  # the last field's last coding decides


@pytest.mark.parametrize(
    ("version", "pairs", "keeps"),
    [
        ("1.1", [], True),
        ("1.1", [(b"Connection", b"Keep-Alive, X-Hop")], True),
        ("1.1", [(b"X-A", b"1"), (b"connection", b"x-hop, Close")], False),
        ("1.0", [], False),
        ("1.0", [(b"Connection", b" keep-alive ")], True),
        ("1.0", [(b"Connection", b"close")], False),
    ],
)
def test_keeps_alive_by_version_and_connection_tokens(
    version: str, pairs: list[tuple[bytes, bytes]], keeps: bool
) -> None:
    assert codec.keeps_alive(version, flat(*pairs)) is keeps
