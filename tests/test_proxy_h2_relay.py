"""The gated relay (h2_relay.py) between two connections held in memory: what the gate writes
on its own (403s, resets, window given back) waits for room in the client's connection as
the app's answers do, so a client that asks and never reads cannot make the sidecar pile
them up, or overrun the credit of the mux stream it came on (which costs the sidecars'
shared connection, every other client's calls with it)."""

from __future__ import annotations

from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, StreamReset
from h2.settings import SettingCodes
from hpack import Decoder, Encoder

from gossamer.intentions.model import Decision, HttpRequest
from gossamer.proxy.h2_frames import (
    END_HEADERS,
    END_STREAM,
    HEAD,
    HEADERS,
    frame,
    parse_head,
    window_update,
)
from gossamer.proxy.h2_gate import H2Gate
from gossamer.proxy.h2_relay import GatedRelay
from gossamer.proxy.side import Side

ROOM = 64 * 1024  # what a client's connection holds unread before its writing is full
READ = 16 * 1024  # what one read of the client brings


class Wire(Side):
    """One connection of the relay, in memory. What is sent waits in `unread` until the peer
    `read`s it; from `room` bytes unread its writing is full (a transport past its
    high-water mark, a mux stream past its credit) until then."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room
        self.unread = bytearray()
        self.reading = True
        self.most = 0  # the most ever unread at once

    def send(self, data: bytes) -> None:
        self.unread += data
        self.most = max(self.most, len(self.unread))
        if len(self.unread) >= self.room and not self.full:
            self.pause_writing()

    def read(self) -> bytes:
        data, self.unread = bytes(self.unread), bytearray()
        if self.full:
            self.resume_writing()
        return data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def send_eof(self) -> None:
        pass


def _decide(request: HttpRequest) -> Decision:
    return Decision(not request.path.startswith("/admin"), "test rule", route="r")


def _request(path: str) -> list[tuple[str, str]]:
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "db")]


class Gated:
    """An `h2` client and server joined by a `GatedRelay` over two `Wire`s."""

    def __init__(self, client_room: int = ROOM, app_room: int = 1 << 30) -> None:
        self.client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.server = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.near, self.app = Wire(client_room), Wire(app_room)
        self.relay = GatedRelay(self.near, self.app, lambda relay: None, H2Gate(_decide),
                                lambda: True, lambda message: None)  # fmt: skip
        self.client_events: list[Any] = []
        self.server_events: list[Any] = []
        self.client.initiate_connection()
        self.server.initiate_connection()
        self.server.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 1 << 20})
        self.pump()

    def up(self, data: bytes) -> None:
        """The client's bytes, one read at a time, as they come whether or not the relay
        reads (a mux stream delivers what its peer's credit allows after reading paused)."""
        for at in range(0, len(data), READ):
            self.near.deliver([data[at : at + READ]], False)

    def pump(self) -> None:
        """Both ends read all they are sent and answer, until nothing more moves."""
        while True:
            self.up(self.client.data_to_send())
            if down := self.server.data_to_send():
                self.app.deliver([down], False)
            to_client, to_app = self.near.read(), self.app.read()
            if to_client:
                self.client_events += self.client.receive_data(to_client)
            if to_app:
                self.server_events += self.server.receive_data(to_app)
            if not (to_client or to_app or down):
                return


def _frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream, payload) of each whole frame in `data`."""
    found, at = [], 0
    while at + HEAD <= len(data):
        length, kind, flags, stream = parse_head(data[at : at + HEAD])
        found.append((kind, flags, stream, data[at + HEAD : at + HEAD + length]))
        at += HEAD + length
    assert at == len(data)
    return found


def test_a_client_that_floods_denied_calls_and_reads_nothing_is_not_read() -> None:
    pair = Gated()  # (then raw frames: h2's client slows with the square of its streams)
    encoder, streams = Encoder(), range(1, 2 * 10_000, 2)
    flood = b"".join(frame(HEADERS, END_HEADERS | END_STREAM, stream,
                           encoder.encode(_request("/admin/x"))) for stream in streams)  # fmt: skip
    pair.up(flood)  # all of it comes (13 bytes a call, 280 KB of 403s), nothing is read
    assert not pair.near.reading, "its writing full: the client is not read"
    # past its room, the answers to one read at most (a 403 is about twice its request)
    assert pair.near.most <= ROOM + 3 * READ, "the gate's answers wait for room too"
    answers = bytearray()
    while pair.near.unread:  # the client reads: the rest is answered, in order
        answers += pair.near.read()
    decoder = Decoder()
    statuses = [(stream, decoder.decode(payload)) for kind, _, stream, payload
                in _frames(bytes(answers)) if kind == HEADERS]  # fmt: skip
    assert statuses == [(stream, [(":status", "403"), ("content-length", "0")])
                        for stream in streams]  # fmt: skip
    assert pair.near.reading and not pair.app.unread, "none reached the app"


def test_the_app_is_not_read_while_the_client_is_full_nor_the_client_while_the_app_is() -> None:
    pair = Gated(client_room=8192, app_room=1024)
    stream = pair.client.get_next_available_stream_id()
    pair.client.send_headers(stream, _request("/echo.Echo/Upload"))
    pair.pump()
    pair.client.send_data(stream, b"u" * 4096)
    pair.up(pair.client.data_to_send())
    assert pair.app.full and not pair.near.reading, "the app is full: the client waits"
    pair.server.send_headers(stream, [(":status", "200")])
    pair.server.send_data(stream, b"d" * 10_000)
    pair.app.deliver([pair.server.data_to_send()], False)
    assert pair.near.full and not pair.app.reading, "the client is full: the app waits"
    pair.app.read()  # the app drains first: the client is still full, so still not read
    assert not pair.near.reading and not pair.app.reading
    pair.near.read()
    assert pair.near.reading and pair.app.reading


def test_the_window_of_dropped_data_goes_back_once_a_read() -> None:
    pair = Gated()
    stream = pair.client.get_next_available_stream_id()
    pair.client.send_headers(stream, _request("/admin/upload"))
    pair.up(pair.client.data_to_send())
    pair.near.read()  # its 403 and reset (not given to the client: it sends on)
    for _ in range(4):
        pair.client.send_data(stream, b"z" * 1000)
    frames = pair.client.data_to_send()
    records = [frames[at : at + 1009] for at in range(0, len(frames), 1009)]
    pair.near.deliver(records, False)  # one read of four records (TLS), a DATA frame each
    assert _frames(pair.near.read()) == _frames(window_update(0, 4000)), "one, for the read"
    assert not any(isinstance(e, (DataReceived, StreamReset)) for e in pair.server_events)


def test_what_came_while_the_client_was_full_goes_before_its_end() -> None:
    pair = Gated()
    encoder = Encoder()
    pair.up(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, stream,
                           encoder.encode(_request("/admin/x")))
                     for stream in range(1, 10_000, 2)))  # fmt: skip
    assert pair.near.full
    pair.near.deliver([], True)  # the client ends its side
    assert not pair.relay.halves.ended[0], "its end waits behind what it sent before"
    answers = bytearray()
    while pair.near.unread:
        answers += pair.near.read()
    assert pair.relay.halves.ended[0]
    assert len([f for f in _frames(bytes(answers)) if f[0] == HEADERS]) == 5_000
