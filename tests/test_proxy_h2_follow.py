"""The calling side's follower (h2_follow.py) reading along a real HTTP/2 conversation:
python-hyper's `h2` client and server talk directly, every byte also fed to the follower as
the relay feeds it, cut at any point."""

from __future__ import annotations

import pytest
from h2.settings import SettingCodes
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.proxy.h2_follow import H2Follower
from gossamer.proxy.h2_frames import GOAWAY, frame
from tests.h2_support import H2Ends


class Talk(H2Ends):
    """A client and a server `H2Connection` joined directly, a follower reading along."""

    def __init__(self, chunk: int = 0, client_settings: dict[int, int] | None = None) -> None:
        super().__init__(chunk)
        self.outcomes: list[tuple[int, str, float]] = []
        self.follower = H2Follower(lambda *outcome: self.outcomes.append(outcome))
        self.clock = 10.0
        self.sent_up, self.sent_down = bytearray(), bytearray()  # every byte, each way
        self.start(client_settings=client_settings)

    def carry(self, up: bytes, down: bytes) -> None:
        """Each side's bytes through the follower, as the relay sends them on: what it
        passes must be what came (it puts nothing of its own in without a cut)."""
        self.sent_up += up
        self.sent_down += down
        passed = [b"".join(self.follower.from_client(p, self.clock)) for p in self.pieces(up)]
        assert b"".join(passed) == up
        self.server.receive_data(up)
        passed = [b"".join(self.follower.from_app(p, self.clock)) for p in self.pieces(down)]
        assert b"".join(passed) == down
        self.client.receive_data(down)

    def call(self, path: str, extra: tuple[tuple[str, str], ...] = ()) -> int:
        stream = self.client.get_next_available_stream_id()
        head = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "db")]
        self.client.send_headers(stream, [*head, *extra])
        self.client.send_data(stream, b"hello", end_stream=True)
        self.pump()
        return stream

    def answer(self, stream: int, status: str = "200", grpc: str = "",
               extra: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
        head = [(":status", status), *extra]
        if grpc:
            head.append(("content-type", "application/grpc"))
        self.server.send_headers(stream, head)
        self.server.send_data(stream, b"world" * 100, end_stream=not grpc)
        if grpc:
            self.server.send_headers(stream, [("grpc-status", grpc)], end_stream=True)
        self.pump()


@pytest.mark.parametrize("chunk", [0, 1, 7])
def test_each_call_is_counted_with_its_status_and_time(chunk: int) -> None:
    talk = Talk(chunk)
    first = talk.call("/a")
    talk.clock += 0.5
    talk.answer(first, "404")
    failed = talk.call("/echo.Echo/Fail", extra=(("content-type", "application/grpc"),))
    talk.answer(failed, "200", grpc="14")  # UNAVAILABLE: a failure though `:status` is 200
    ok = talk.call("/echo.Echo/Unary")
    talk.answer(ok, "200", grpc="0")
    assert talk.outcomes == [(404, "", 0.5), (503, "", 0.0), (200, "", 0.0)]
    assert talk.follower.speaking and not talk.follower.opaque


def test_a_reset_or_the_end_of_the_connection_ends_a_call_once() -> None:
    talk = Talk()
    reset = talk.call("/slow")
    talk.server.send_headers(reset, [(":status", "200")])
    talk.pump()
    talk.clock += 1.0
    talk.client.reset_stream(reset)
    talk.pump()
    assert talk.outcomes == [(200, "", 1.0)], "reset after its head: the status it had"
    talk.call("/hang")
    talk.follower.close(talk.clock + 2.0)
    talk.follower.close(talk.clock + 3.0)
    assert talk.outcomes[1:] == [(0, "", 2.0)], "no answer, recorded once"


def test_a_larger_table_the_client_allows_the_answers_is_read() -> None:
    talk = Talk(client_settings={SettingCodes.HEADER_TABLE_SIZE: 65536})
    long = tuple((f"x-field-{i}", "v" * 200) for i in range(30))  # > 4096 bytes of table
    for n in range(3):
        stream = talk.call("/big")
        talk.answer(stream, "201", extra=long)
        assert talk.outcomes[n][0] == 201
    assert talk.follower.answers.reader is not None, "the answers' table followed"


def test_not_h2c_is_opaque_and_nothing_is_followed() -> None:
    follower = H2Follower(lambda *outcome: pytest.fail("nothing to record"))
    follower.from_client(b"\x16\x03\x01\x02\x00" + b"\x01" * 100, 0.0)  # a TLS ClientHello
    follower.from_app(b"\x16\x03\x03\x00\x10" + b"\x02" * 16, 0.0)
    assert follower.opaque and not follower.speaking
    follower.close(1.0)
    half = H2Follower(lambda *outcome: None)
    half.from_client(b"PRI * HTTP/2.0\r\n", 0.0)
    assert not half.opaque and not half.speaking  # a preface begun
    half.from_client(b"GET / HTTP/1.1\r\n", 0.0)
    assert half.opaque


def test_an_app_that_speaks_first_loses_no_byte_when_the_client_is_not_h2c() -> None:
    """The app's first bytes are read before the client's say whether the connection is h2c:
    none may be kept back. A GOAWAY's last stream id was held (to be lowered, as the gate
    does), and lost once the client's bytes made the connection opaque (found by a review)."""
    follower = H2Follower(lambda *outcome: None)
    first = frame(GOAWAY, 0, 0, b"\0\0\0\x05\0\0\0\0") + b"more of the app's"
    passed = [b"".join(follower.from_app(first[at : at + 3], 0.0)) for at in range(0, 12, 3)]
    follower.from_client(b"HELO here\r\n", 0.0)  # (with 3 of the id's 4 bytes read)
    passed += [b"".join(follower.from_app(first[12:], 0.0))]
    assert follower.opaque and b"".join(passed) == first


def test_its_goaway_on_an_idle_connection_says_no_more_than_the_apps_did() -> None:
    """RFC 9113 §6.8: GOAWAY's last stream id never goes up. The follower only reads the
    app's (it holds none back), and its own, made when an idle connection is closed, is
    lowered to it."""
    talk = Talk()
    first = talk.call("/a")
    talk.answer(first)
    talk.call("/b")  # (a stream the app will not take)
    talk.server.close_connection(last_stream_id=first)  # the app's GOAWAY
    talk.pump()
    assert talk.follower.client.last > first
    away = b"".join(talk.follower.goaway())
    assert away[3] == GOAWAY and int.from_bytes(away[9:13], "big") == first


def test_bytes_it_cannot_read_stop_the_recording_not_the_connection() -> None:
    talk = Talk()
    talk.follower.from_app(b"\x00\x00\x03\x01\x05\x00\x00\x00\x01\xff\xff\xff", 0.0)  # bad HPACK
    assert talk.follower.answers.reader is None
    stream = talk.call("/after")
    talk.follower.from_app(b"\x00\x00\x00\x00\x01\x00\x00\x00" + bytes([stream]), 1.0)
    talk.follower.close(2.0)
    assert [status for status, _, _ in talk.outcomes] == [0], "counted, its status unknown"


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_any_cut_gives_the_same_outcomes(cuts: list[int]) -> None:
    talk = Talk()
    for n in range(4):
        stream = talk.call(f"/echo.Echo/M{n}", extra=(("x-n", str(n) * 50),))
        talk.answer(stream, "200", grpc=str(n * 5))
    assert [status for status, _, _ in talk.outcomes] == [200, 404, 409, 500]
    log: list[tuple[int, str, float]] = []
    again = H2Follower(lambda *outcome: log.append(outcome))
    for data, feed in ((talk.sent_up, again.from_client), (talk.sent_down, again.from_app)):
        at, i = 0, 0
        while at < len(data):  # the same bytes cut otherwise: every call's opening first
            feed(bytes(data[at : at + cuts[i % len(cuts)]]), 10.0)
            at, i = at + cuts[i % len(cuts)], i + 1
    assert log == talk.outcomes
