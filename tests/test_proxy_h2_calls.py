"""The call book of an h2c connection (proxy/h2_calls.py), driven directly. Pure."""

from __future__ import annotations

from gossamer.proxy.h2_calls import RAPID_CALLS, CallBook


def test_calls_reset_at_a_deadline_the_app_had_not_met_are_no_rapid_reset() -> None:
    """A slow app and a gRPC client cancelling unary calls at their deadline (2.5 s): no
    answer had begun (a unary server sends its headers with its reply), but the calls lived
    long. Only resets within PREMATURE_S of opening count (Envoy's minimum stream lifetime),
    so the connection is not ended; resets at once still are."""
    outcomes: list[tuple[int, str, float]] = []
    slow = CallBook(lambda *o: outcomes.append(o))
    calls = 2 * RAPID_CALLS
    for stream in range(1, 2 * calls, 2):
        slow.opened(stream, "echo.Echo", 100.0, ended=True)
    assert not any(slow.reset_by_client(s, 102.5) for s in range(1, 2 * calls, 2))
    assert [status for status, _, _ in outcomes] == [0] * calls  # (no answer: no status)
    rapid = CallBook(lambda *o: None)
    ended = False
    for stream in range(1, 2 * calls, 2):
        rapid.opened(stream, "echo.Echo", 100.0, ended=True)
        ended = ended or rapid.reset_by_client(stream, 100.01)
    assert ended


def test_a_status_of_thousands_of_digits_is_no_status_and_no_traceback() -> None:
    """int() refuses a string of more than 4,300 digits (ValueError): an app's `:status` or
    `grpc-status` that long broke the relay's callback and the whole connection. Such a
    grpc-status is none: the gRPC answer ended without one, UNKNOWN (`500`)."""
    outcomes: list[tuple[int, str, float]] = []
    book = CallBook(lambda *o: outcomes.append(o))
    book.opened(1, "r", 0.0, ended=True)
    book.headers(1, [(b":status", b"2" * 5000), (b"content-type", b"application/grpc")],
                 False, 0.0)  # fmt: skip
    book.headers(1, [(b"grpc-status", b"1" * 5000)], True, 1.0)
    book.opened(3, "r", 0.0, ended=True)
    book.headers(3, [(b":status", b"200"), (b"content-type", b"application/grpc")], False, 0.0)
    book.headers(3, [(b"grpc-status", b"14")], True, 1.0)
    assert outcomes == [(500, "r", 1.0), (503, "r", 1.0)]


def _book() -> tuple[CallBook, list[tuple[int, str, float]]]:
    """A call book and the outcomes it records."""
    outcomes: list[tuple[int, str, float]] = []
    return CallBook(lambda *o: outcomes.append(o)), outcomes


def _streaming(book: CallBook, stream: int) -> None:
    """A server-streaming gRPC call on `stream` whose answer began: its head, no trailers."""
    book.opened(stream, "r", 0.0, ended=True)
    book.headers(stream, [(b":status", b"200"), (b"content-type", b"application/grpc")],
                 False, 0.5)  # fmt: skip


def test_a_grpc_call_open_when_its_connection_ends_is_charged_to_the_side_that_ended_first(
) -> None:  # fmt: skip
    """The connection's end cuts every call still open. A client that ended its side first
    (its process exited, it closed its channel) cancelled them: 499, as a gRPC client's
    CANCELLED, not a 5xx of the app's. When the app's side (or the wire to it) ended first,
    or nobody said, they were UNAVAILABLE (503). A plain HTTP/2 answer keeps its status."""
    for first, expected in ((True, 499), (False, 503), (None, 503)):
        book, outcomes = _book()
        _streaming(book, 1)
        book.opened(3, "r", 0.0, ended=True)
        book.headers(3, [(b":status", b"200"), (b"content-type", b"text/plain")], False, 0.5)
        if first is not None:
            book.side_ended(client=first)
            book.side_ended(client=not first)  # (the other side's end, after: no matter)
        book.close(2.0)
        assert outcomes == [(expected, "r", 2.0), (200, "r", 2.0)], (first, outcomes)


def test_a_grpc_answer_that_ends_without_a_grpc_status_is_an_error() -> None:
    """The gRPC spec makes a missing grpc-status an error: clients report UNKNOWN (or
    INTERNAL when no trailers came at all). Counted 500, not as its `:status` 200. A plain
    HTTP/2 answer needs none; a gRPC one with its status keeps it."""
    book, outcomes = _book()
    _streaming(book, 1)
    book.ended(1, 1.0)  # DATA with END_STREAM: no trailers at all
    _streaming(book, 3)
    book.headers(3, [(b"grpc-message", b"lost")], True, 1.0)  # trailers, no grpc-status
    book.opened(5, "r", 0.0, ended=True)
    book.headers(5, [(b":status", b"200"), (b"content-type", b"text/plain")], False, 0.5)
    book.ended(5, 1.0)
    _streaming(book, 7)
    book.headers(7, [(b"grpc-status", b"0")], True, 1.0)
    book.opened(9, "r", 0.0, ended=True)  # trailers-only
    book.headers(9, [(b":status", b"200"), (b"content-type", b"application/grpc"),
                     (b"grpc-status", b"5")], True, 1.0)  # fmt: skip
    assert [status for status, _, _ in outcomes] == [500, 500, 200, 200, 404]
