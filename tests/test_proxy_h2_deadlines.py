"""h2_deadlines.py: which calls of an h2c connection ran out, and when to look next (pure)."""

from __future__ import annotations

from math import inf

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.proxy import h2_cut, h2_fields
from gossamer.proxy.h2_calls import TIMED_OUT, CallBook
from gossamer.proxy.h2_deadlines import CallClock
from gossamer.proxy.h2_frames import CANCEL, END_STREAM, HEADERS, RST_STREAM, parse_head
from gossamer.proxy.hpack_reader import HeaderReader
from gossamer.proxy.http_limits import Limits

Outcomes = list[tuple[int, str, float]]


def _book(limits: Limits, held: bool = False) -> tuple[CallBook, Outcomes]:
    outcomes: Outcomes = []
    book = CallBook(lambda status, route, seconds: outcomes.append((status, route, seconds)),
                    held=held, request_s=limits.request_s, idle_s=limits.idle_s)  # fmt: skip
    return book, outcomes


@pytest.mark.parametrize(("limits", "now", "expired", "next_look"), [
    # stream 1: request ended at 10; stream 3: still sending, its last frame at 12
    (Limits(5.0, 0.0, 0.0), 14.9, [], 15.0),
    (Limits(5.0, 0.0, 0.0), 15.0, [(1, "request_timeout")], inf),
    (Limits(0.0, 4.0, 0.0), 13.9, [], 14.0),  # idle: 1 was seen at 10 (its end), 3 at 12
    (Limits(0.0, 4.0, 0.0), 14.0, [(1, "idle_timeout")], 16.0),
    (Limits(0.0, 1.0, 0.0), 20.0, [(1, "idle_timeout"), (3, "idle_timeout")], inf),
    (Limits(5.0, 2.0, 0.0), 12.5, [(1, "idle_timeout")], 14.0),
    (Limits(0.0, 0.0, 0.0), 99.0, [], inf),
    # calls open: the connection is not idle, but looked at again, as a call may end unheard
    (Limits(0.0, 0.0, 10.0), 99.0, [], 104.0),
])  # fmt: skip
def test_a_look_finds_the_calls_past_a_limit_and_the_next_time_one_may_be(
    limits: Limits, now: float, expired: list[tuple[int, str]], next_look: float
) -> None:
    book, _ = _book(limits)
    book.opened(1, "r", 9.0)
    book.body(1, 10, True, 10.0)
    book.opened(3, "r", 11.0)
    book.body(3, 10, False, 12.0)
    clock = CallClock(limits, 0.0)
    got, idle, when = clock.look(book, 0, now)
    assert (got, idle, when) == (expired, False, next_look)
    for stream, call in book.open_items():  # the ones that ran out are marked cut, once
        assert (call.cut == TIMED_OUT) == (stream in dict(expired))
    assert clock.look(book, 0, now)[0] == []


def test_a_frame_of_the_apps_keeps_a_call_from_being_idle() -> None:
    limits = Limits(0.0, 2.0, 0.0)
    book, _ = _book(limits)
    book.opened(1, "r", 0.0, ended=True)
    book.touch(1, 1.5)
    assert CallClock(limits, 0.0).look(book, 0, 3.0)[0] == []
    assert CallClock(limits, 0.0).look(book, 0, 3.5)[0] == [(1, "idle_timeout")]


def test_calls_answered_or_cut_already_are_not_timed() -> None:
    """An answer whole (a held book keeps the call while the client still sends) or a cut
    under way (a policy change's) ends on its own: no second end."""
    book, _ = _book(Limits(1.0, 1.0, 0.0), held=True)
    book.opened(1, "r", 0.0, ended=False)
    book.headers(1, [(b":status", b"200")], True, 0.5)  # answered, the client still sending
    book.opened(3, "r", 0.0, ended=True)
    for stream, call in book.open_items():
        if stream == 3:
            call.cut = CANCEL
    assert CallClock(Limits(1.0, 1.0, 0.0), 0.0).look(book, 0, 50.0) == ([], False, inf)


def test_the_book_says_when_a_new_stamp_may_run_out_first() -> None:
    """`due`: the soonest of the stamps since the last look, so the shell's timer is moved
    only when a call may run out before it would fire."""
    book, _ = _book(Limits(5.0, 30.0, 0.0))
    assert book.due == inf
    book.opened(1, "r", 100.0)
    assert book.due == 130.0  # its idle limit
    book.body(1, 0, True, 101.0)
    assert book.due == 106.0  # its request's end: the request timeout runs from there
    book.opened(3, "r", 102.0, ended=True)
    assert book.due == 106.0  # later: no change
    CallClock(Limits(5.0, 30.0, 0.0), 0.0).look(book, 0, 103.0)
    assert book.due == inf  # the look's next time covers them all


@pytest.mark.parametrize(("moved", "now", "idle", "next_look"), [
    (0, 9.0, False, 14.0),  # quiet since 0 (the join): not yet 10 s
    (0, 10.0, True, inf),
    (7, 10.0, False, 15.0),  # bytes moved since the last look: quiet from now
])  # fmt: skip
def test_a_connection_with_no_call_open_is_idle_past_its_limit(
    moved: int, now: float, idle: bool, next_look: float
) -> None:
    book, _ = _book(Limits(0.0, 0.0, 10.0))
    clock = CallClock(Limits(0.0, 0.0, 10.0), 0.0)
    assert clock.first_look(0.0) == 5.0
    assert clock.look(book, moved, now) == ([], idle, next_look)


@given(st.lists(st.tuples(st.floats(0, 100), st.booleans(), st.floats(0, 50)), max_size=12),
       st.floats(0, 200), st.floats(0, 20), st.floats(0, 20))  # fmt: skip
def test_each_open_call_runs_out_exactly_when_a_limit_is_past(
    calls: list[tuple[float, bool, float]], now: float, request_s: float, idle_s: float
) -> None:
    """Against a direct reading of the rules: a call ran out when its request ended at
    least `request_s` ago, or its last frame is `idle_s` old; the next look is the soonest
    of the deadlines still ahead."""
    limits = Limits(request_s, idle_s, 0.0)
    book, _ = _book(limits)
    deadlines: dict[int, float] = {}
    for n, (opened, ended, later) in enumerate(calls):
        stream = 2 * n + 1
        book.opened(stream, "r", opened)
        last = opened + later
        book.body(stream, 0, ended, last)
        due = [d for d in (last + request_s if ended and request_s else inf,
                           last + idle_s if idle_s else inf)]  # fmt: skip
        deadlines[stream] = min(due)
    got, idle, when = CallClock(limits, 0.0).look(book, 0, now)
    assert sorted(stream for stream, _ in got) == sorted(s for s, d in deadlines.items()
                                                         if now >= d)  # fmt: skip
    assert when == min((d for d in deadlines.values() if now < d), default=inf)
    assert not idle


def _block(frames: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
    length, kind, flags, _ = parse_head(frames)
    assert kind == HEADERS
    return HeaderReader(65536).read(frames[9 : 9 + length]), flags


@pytest.mark.parametrize(("request_fields", "status", "grpc_status"), [
    ([(b"content-type", b"application/grpc")], b"200", b"4"),  # trailers-only
    ([(b"content-type", b"text/plain")], b"504", None),
    ([], b"504", None),
])  # fmt: skip
def test_a_timed_out_call_with_no_answer_yet_gets_504_or_deadline_exceeded(
    request_fields: list[tuple[bytes, bytes]], status: bytes, grpc_status: bytes | None
) -> None:
    book, outcomes = _book(Limits(1.0, 0.0, 0.0))
    book.opened(1, "r", 0.0, request_fields, ended=True)
    CallClock(Limits(1.0, 0.0, 0.0), 0.0).look(book, 0, 2.0)
    call = book.cut(1, 2.5)
    assert outcomes == [(504, "r", 2.5)]
    fields, _ = _block(h2_cut.ending(1, call, True))
    got = dict(fields)
    assert got[b":status"] == status
    assert got.get(b"grpc-status") == grpc_status
    assert fields == h2_fields.answer(504, request_fields)


def test_a_timed_out_grpc_answer_under_way_gets_trailers_and_a_plain_one_a_reset() -> None:
    book, _ = _book(Limits(1.0, 0.0, 0.0))
    book.opened(1, "r", 0.0, ended=True)
    book.headers(1, [(b":status", b"200"), (b"content-type", b"application/grpc")], False, 0.1)
    book.opened(3, "r", 0.0, ended=True)
    book.headers(3, [(b":status", b"200")], False, 0.1)
    CallClock(Limits(1.0, 0.0, 0.0), 0.0).look(book, 0, 2.0)
    fields, flags = _block(h2_cut.ending(1, book.cut(1, 2.0), True))
    assert fields == [(b"grpc-status", b"4"), (b"grpc-message", b"upstream request timeout")]
    assert flags & END_STREAM
    reset = h2_cut.ending(3, book.cut(3, 2.0), True)
    assert parse_head(reset)[1] == RST_STREAM and reset[9:] == CANCEL.to_bytes(4, "big")


def test_a_connection_is_idle_after_its_last_call_ends_between_looks() -> None:
    """A look that finds a call open still looks again for the connection's idleness: the
    call's end stamps nothing the timer hears of (found by a review: with the call limits
    off, the timer was never armed again, and an idle connection was kept for ever)."""
    limits = Limits(0.0, 0.0, 1.0)
    book, _ = _book(limits)
    clock = CallClock(limits, 0.0)
    book.opened(1, "r", 0.1, ended=True)
    assert clock.look(book, 50, 0.5) == ([], False, 1.0)
    book.ended(1, 0.6)  # answered: no call open now
    assert clock.look(book, 90, 1.0) == ([], False, 1.5)  # bytes moved since: quiet from 1.0
    assert clock.look(book, 90, 2.0) == ([], True, inf)
