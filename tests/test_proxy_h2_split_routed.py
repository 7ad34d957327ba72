"""What a route does to a balanced call's head (h2_split_routed.py). Pure."""

from __future__ import annotations

from gossamer.proxy.h2_split_routed import request_fields

CALL = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/old.T/Who"),
        (b":authority", b"a"), (b"content-type", b"application/grpc"),
        (b"x-drop", b"1")]  # fmt: skip


def test_the_prefix_is_rewritten_and_the_edits_made_in_envoys_order() -> None:
    """PrefixRewrite on :path, then Remove, Set (replacing) and Add, names lower case."""
    out = request_fields(CALL, "/old.T/", "/t.T/", ("X-Drop",), (("Content-Type", "x/y"),),
                         (("X-Added", "v"),))  # fmt: skip
    assert out == [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/t.T/Who"),
                   (b":authority", b"a"), (b"content-type", b"x/y"),
                   (b"x-added", b"v")]  # fmt: skip


def test_a_rewrite_never_makes_a_path_start_with_two_slashes() -> None:
    """`/old.T/` rewritten `/` + `/Who` would read as an authority: one slash."""
    out = request_fields(CALL, "/old.T", "/", (), (), ())
    assert (b":path", b"/Who") in out


def test_pseudo_headers_are_not_edited_and_a_path_not_under_the_prefix_is_kept() -> None:
    out = request_fields(CALL, "/new/", "/x/", (":path",), ((":authority", "b"),),
                         ((":method", "GET"),))  # fmt: skip
    assert out == CALL


def test_an_edit_adding_a_connections_field_leaves_it_out() -> None:
    """`Connection: keep-alive` and `te: gzip` (written for HTTP/1) would make the call
    malformed (RFC 9113 §8.2.2), reset by the far gate: left out; `te: trailers` is kept.
    (They were added, and every call the route took failed.)"""
    out = request_fields(CALL, "", "", (), (("Connection", "keep-alive"), ("TE", "gzip")),
                         (("te", "trailers"), ("Keep-Alive", "1"), ("x-ok", "1")))  # fmt: skip
    assert out == [*CALL, (b"te", b"trailers"), (b"x-ok", b"1")]
