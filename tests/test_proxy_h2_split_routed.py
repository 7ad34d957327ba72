"""What a route does to a balanced call (h2_split_routed.py): its head, and its RetryOn
reset. Pure: raw frames in, the splitter's commands out."""

from __future__ import annotations

from gossamer.proxy.h2_frames import (
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    frame,
    literal_block,
    rst_stream,
)
from gossamer.proxy.h2_split_calls import Command, Open, ToClient, ToUpstream
from gossamer.proxy.h2_split_routed import CallRoute, RoutedSplitter, request_fields
from gossamer.proxy.h2_split_upstream import INTERNAL_ERROR
from gossamer.proxy.h2_split_wire import Fields
from tests.h2_raw import frames_of

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


class _Rig:
    """A RoutedSplitter over instances "a", "b", "c" (the chooser names the first not
    excluded), dialled at once; calls to /t.T/Retry take a route with RetryOn reset and
    `retries` NumRetries, every other call no route."""

    def __init__(self, retries: int = 0) -> None:
        def route_of(fields: Fields) -> CallRoute | None:
            if (b":path", b"/t.T/Retry") not in fields:
                return None
            return CallRoute("route 0 -> db", "", fields, on_lost=True, retries=retries)

        self.outcomes: list[tuple[int, str]] = []
        self.split: RoutedSplitter[str] = RoutedSplitter(
            lambda exclude, target: next((k for k in "abc" if k not in exclude), None),
            clock=lambda: 100.0, route_of=route_of,
            outcome=lambda status, route, s: self.outcomes.append((status, route)))  # fmt: skip
        self.to_client = bytearray()
        self.to_up: dict[str, bytearray] = {}
        self.run(self.split.start())
        self.run(self.split.from_client(PREFACE + frame(SETTINGS, 0, 0)))

    def run(self, commands: list[Command[str]]) -> None:
        for command in commands:
            if isinstance(command, ToClient):
                self.to_client += command.data
            elif isinstance(command, ToUpstream):
                self.to_up[command.key] += command.data
            elif isinstance(command, Open):
                self.to_up[command.key] = bytearray()
                self.run(self.split.opened(command.key))
                self.run(self.split.from_upstream(command.key, frame(SETTINGS, 0, 0)))

    def call(self, path: bytes) -> None:
        fields = [(n, path if n == b":path" else v) for n, v in CALL]
        block = literal_block(fields)
        self.run(self.split.from_client(frame(HEADERS, END_HEADERS | END_STREAM, 1, block)))

    def heads_to(self, key: str) -> int:
        return sum(1 for f in frames_of(bytes(self.to_up.get(key, b""))[len(PREFACE) :])
                   if f[0] == HEADERS)  # fmt: skip

    def clientframes_of(self) -> list[tuple[int, int, int, bytes]]:
        return frames_of(bytes(self.to_client))


ANSWER = literal_block([(b":status", b"200"), (b"grpc-status", b"0")])


def test_a_call_its_instance_resets_unanswered_goes_to_another_under_retry_on_reset() -> None:
    """RetryOn reset: "a" resets the call (INTERNAL_ERROR) before any answer: it goes to "b",
    whose answer the client gets, with no reset; one outcome, the answer's, labelled. (The
    client got the reset: a route's RetryOn did nothing on a call.)"""
    rig = _Rig()
    rig.call(b"/t.T/Retry")
    rig.run(rig.split.from_upstream("a", rst_stream(1, INTERNAL_ERROR)))
    assert rig.heads_to("b") == 1
    rig.run(rig.split.from_upstream("b", frame(HEADERS, END_HEADERS | END_STREAM, 1, ANSWER)))
    kinds = [(k, s) for k, _, s, _ in rig.clientframes_of()]
    assert (HEADERS, 1) in kinds and (RST_STREAM, 1) not in kinds
    assert rig.outcomes == [(200, "route 0 -> db")] and rig.split.open_calls == 0


def test_a_call_whose_connection_is_lost_goes_to_another_under_retry_on_reset() -> None:
    rig = _Rig()
    rig.call(b"/t.T/Retry")
    rig.run(rig.split.upstream_closed("a"))
    assert rig.heads_to("b") == 1 and rig.split.open_calls == 1


def test_num_retries_bounds_the_tries_and_a_call_no_route_takes_gets_the_reset() -> None:
    """NumRetries 1: reset by "a", then by "b", the client gets "b"'s reset. A call no route
    took is reset at once, as before."""
    rig = _Rig(retries=1)
    rig.call(b"/t.T/Retry")
    rig.run(rig.split.from_upstream("a", rst_stream(1, INTERNAL_ERROR)))
    rig.run(rig.split.from_upstream("b", rst_stream(1, INTERNAL_ERROR)))
    assert rig.heads_to("c") == 0
    assert [(k, s) for k, _, s, _ in rig.clientframes_of() if k == RST_STREAM] == [(RST_STREAM, 1)]
    plain = _Rig()
    plain.call(b"/t.T/Other")
    plain.run(plain.split.from_upstream("a", rst_stream(1, INTERNAL_ERROR)))
    assert plain.heads_to("b") == 0
    assert [k for k, _, _, _ in plain.clientframes_of() if k == RST_STREAM] == [RST_STREAM]
