"""Request targets normalized before they are judged and sent on (proxy/http_target.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.proxy import http_codec as codec
from gossamer.proxy.http_target import BadTarget, normal_path, normalize, with_host
from tests.test_proxy_http_codec import flat


@pytest.mark.parametrize(
    ("url", "normal", "authority"),
    [
        (b"/echo/a?x=1", b"/echo/a?x=1", None),
        (b"/public/../admin", b"/admin", None),
        (b"/%61dmin", b"/admin", None),  # an unreserved character, escaped
        (b"/public/%2e%2E/admin", b"/admin", None),  # dots escaped, then removed
        (b"/a\\..\\b", b"/b", None),  # a backslash is a slash
        (b"/a/./b/.", b"/a/b/", None),
        (b"/a/b/..", b"/a/", None),
        (b"/../../x", b"/x", None),  # nothing above the root
        (b"/a//b", b"/a//b", None),  # kept, as Consul's MergeSlashes=false
        (b"/a%2fb%7e", b"/a%2Fb~", None),  # an escaped slash stays (hex upper-cased)
        (b"/a?x=/../y&z=%zz", b"/a?x=/../y&z=%zz", None),  # the query as sent
        (b"/.well-known/x", b"/.well-known/x", None),
        (b"*", b"*", None),
        (b"http://db/admin?q", b"/admin?q", b"db"),
        (b"HTTPS://db:8443", b"/", b"db:8443"),
        (b"http://db?q=1", b"/?q=1", b"db"),
        (b"http://db/a/../admin", b"/admin", b"db"),
    ],
)
def test_targets_are_judged_as_the_app_reads_them(
    url: bytes, normal: bytes, authority: bytes | None
) -> None:
    assert normalize(url) == (normal, authority)


@pytest.mark.parametrize(
    "url", [b"/%zz", b"/a%4", b"/%", b"ftp://x/y", b"admin", b"\\admin", b"http:///x",
            b"http://user@db/x"],
)  # fmt: skip
def test_a_target_that_is_no_path_is_refused(url: bytes) -> None:
    with pytest.raises(BadTarget):
        normalize(url)


def test_a_normal_target_comes_back_as_it_was() -> None:
    url = b"/echo/api/1?q=%20"
    assert normalize(url)[0] is url


def test_the_authority_of_an_absolute_target_is_the_host() -> None:
    head = flat((b"HOST", b"evil"), (b"X-A", b"1"), (b"host", b"other"))
    assert codec.pairs(with_host(head, b"db:80")) == [(b"HOST", b"db:80"), (b"X-A", b"1")]
    assert codec.pairs(with_host([], b"db")) == [(b"Host", b"db")]


_segment = st.sampled_from([b"a", b"b", b".", b"..", b"%2e", b"%2E%2e", b"%61", b"", b"%2F",
                            b"x\\..", b".hidden"])  # fmt: skip


@given(st.lists(_segment, max_size=8), st.sampled_from([b"", b"?q=/../a", b"?"]))
def test_a_normalized_path_has_no_dot_segment_and_is_a_fixed_point(
    segments: list[bytes], query: bytes
) -> None:
    normal, authority = normalize(b"/" + b"/".join(segments) + query)
    assert authority is None and normal.startswith(b"/")
    path = normal.partition(b"?")[0]
    assert b"." not in path.split(b"/") and b".." not in path.split(b"/")
    assert b"\\" not in path and b"%2e" not in path.lower() and b"%61" not in path
    assert normalize(normal) == (normal, None)


def test_the_asterisk_form_is_options_only() -> None:
    """RFC 9110 §7.1: `*` is a target for OPTIONS alone; under any other method it is no
    path the rules could judge (HTTP/2's `:path`; http_request.py refuses HTTP/1's)."""
    options = [(b":method", b"OPTIONS"), (b":path", b"*")]
    assert normal_path(options) is options
    with pytest.raises(BadTarget):
        normal_path([(b":method", b"GET"), (b":path", b"*")])
