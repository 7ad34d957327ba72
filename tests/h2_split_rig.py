"""A client and upstream servers around one H2Splitter (proxy/h2_split.py): python-hyper's
`h2` state machines at both ends, so every frame the splitter writes is checked by an
HTTP/2 stack; the rig plays the shell (carries bytes, dials, closes)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.events import (
    DataReceived,
    RequestReceived,
    ResponseReceived,
    SettingsAcknowledged,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes, Settings

from gossamer.proxy.h2_split import H2Splitter
from gossamer.proxy.h2_split_calls import Close, CloseClient, Command, Open, ToClient, ToUpstream

Headers = list[tuple[bytes, bytes]]
SENDING = ("OPEN", "HALF_CLOSED_REMOTE")  # h2's states of a stream its end may send on
READING = ("OPEN", "HALF_CLOSED_LOCAL")  # and may still receive on


def request(path: str = "/svc/Call", grpc: bool = True) -> Headers:
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
              (b":authority", b"svc")]  # fmt: skip
    if grpc:
        fields += [(b"content-type", b"application/grpc"), (b"te", b"trailers")]
    return fields


@dataclass
class Stream:
    """What one end saw of one stream."""

    headers: list[Headers] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None


@dataclass
class Server:
    conn: H2Connection
    streams: dict[int, Stream] = field(default_factory=dict)
    stalled: set[int] = field(default_factory=set)  # streams whose DATA is not acknowledged
    unread: dict[int, int] = field(default_factory=dict)  # bytes not yet acknowledged
    other: list[Any] = field(default_factory=list)  # its connection's events


class Rig:
    def __init__(self, keys: tuple[str, ...] = ("a", "b", "c"), *, chunk: Callable[[bytes],
                 list[bytes]] | None = None, client_settings: dict[int, int] | None = None,
                 server_settings: dict[int, int] | None = None, **kw: Any) -> None:  # fmt: skip
        self.keys = keys
        self.now = 0.0
        self.turn = 0
        self.chosen: list[tuple[str, set[str]]] = []
        self.done: list[tuple[str, int, float]] = []
        self.split: H2Splitter[str] = H2Splitter(
            self.choose, clock=lambda: self.now, done=lambda k, s, t: self.done.append((k, s, t)),
            **kw)  # fmt: skip
        self.chunk = chunk or (lambda data: [data])
        self.client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.client_streams: dict[int, Stream] = {}
        self.client_stalled: set[int] = set()
        self.client_other: list[Any] = []  # the client connection's events (GOAWAY, PING)
        self.capture: bytearray | None = None  # set: what goes to the client is kept here
        self.after: Callable[[], None] = lambda: None  # called after each of the core's answers
        self.client_unread: dict[int, int] = {}
        self.held: dict[H2Connection, int] = {}  # `hold`: the connection credit each owes
        self.servers: dict[str, Server] = {}
        self.server_settings = server_settings
        self.fail_open: set[str] = set()
        self.hold_open: set[str] = set()  # dials left pending until the test says
        self.dialing: list[str] = []
        self.closed: list[str] = []
        self.client_closed = False
        if client_settings:  # (in its first SETTINGS: h2 applies a later one's window late)
            self.client.local_settings = Settings(client=True, initial_values=client_settings)
            self.client.max_inbound_frame_size = self.client.local_settings.max_frame_size
        self.client.initiate_connection()
        self.run(self.split.start())
        self.pump()

    def choose(self, exclude: set[str]) -> str | None:
        pool = [k for k in self.keys if k not in exclude]
        self.chosen.append((pool[self.turn % len(pool)] if pool else "-", set(exclude)))
        if not pool:
            return None
        self.turn += 1
        return pool[(self.turn - 1) % len(pool)]

    def run(self, commands: list[Command[str]]) -> None:
        for command in commands:
            if isinstance(command, ToClient) and self.capture is not None:
                self.capture += command.data
            elif isinstance(command, ToClient):
                for piece in self.chunk(command.data):
                    self._client_events(self.client.receive_data(piece))
            elif isinstance(command, ToUpstream):
                server = self.servers[command.key]
                for piece in self.chunk(command.data):
                    self._server_events(server, server.conn.receive_data(piece))
            elif isinstance(command, Open):
                assert command.key not in self.servers, "Open for a key already open"
                self.dialing.append(command.key)
            elif isinstance(command, Close):
                self.closed.append(command.key)
                self.servers.pop(command.key, None)
            elif isinstance(command, CloseClient):
                self.client_closed = True
        self.after()

    def dial(self, key: str) -> None:
        """The shell's dial to `key` ends: it fails or it opens a server."""
        self.dialing.remove(key)
        if key in self.fail_open:
            self.run(self.split.open_failed(key))
            return
        conn = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        if self.server_settings:
            conn.local_settings = Settings(client=False, initial_values=self.server_settings)
            conn.max_inbound_frame_size = conn.local_settings.max_frame_size  # (h2 read it before)
        conn.initiate_connection()
        self.servers[key] = Server(conn)
        self.run(self.split.opened(key))

    def pump(self) -> None:
        """Carry bytes every way until nothing moves."""
        while True:
            for key in [k for k in self.dialing if k not in self.hold_open]:
                self.dial(key)
            moved = False
            data = self.client.data_to_send()
            if data:
                moved = True
                for piece in self.chunk(data):
                    self.run(self.split.from_client(piece))
            for key, server in list(self.servers.items()):
                data = server.conn.data_to_send()
                if data:
                    moved = True
                    for piece in self.chunk(data):
                        if key in self.servers:
                            self.run(self.split.from_upstream(key, piece))
            if not moved and not [k for k in self.dialing if k not in self.hold_open]:
                return

    def _client_events(self, events: list[Any]) -> None:
        for event in events:
            stream = getattr(event, "stream_id", 0)
            if not stream:
                self.client_other.append(event)
                self._settled(self.client, event)
                continue
            seen = self.client_streams.setdefault(stream, Stream())
            if isinstance(event, ResponseReceived | TrailersReceived):
                seen.headers.append(list(event.headers))
            elif isinstance(event, DataReceived):
                seen.body += event.data
                self._read(self.client, self.client_stalled, self.client_unread, event)
            elif isinstance(event, StreamEnded):
                seen.ended = True
            elif isinstance(event, StreamReset):
                seen.reset = event.error_code

    def _server_events(self, server: Server, events: list[Any]) -> None:
        for event in events:
            stream = getattr(event, "stream_id", 0)
            if not stream:
                server.other.append(event)
                self._settled(server.conn, event)
                continue
            seen = server.streams.setdefault(stream, Stream())
            if isinstance(event, RequestReceived | TrailersReceived):
                seen.headers.append(list(event.headers))
            elif isinstance(event, DataReceived):
                seen.body += event.data
                self._read(server.conn, server.stalled, server.unread, event)
            elif isinstance(event, StreamEnded):
                seen.ended = True
            elif isinstance(event, StreamReset):
                seen.reset = event.error_code

    def _read(self, conn: H2Connection, stalled: set[int], unread: dict[int, int],
              event: Any) -> None:  # fmt: skip
        """DATA read: credited, or, on a stalled stream, credited on the connection only (as
        gRPC stacks do: one stream's reader must not stop the others); on a connection
        held (`hold`), credited on the stream only."""
        size, stream = event.flow_controlled_length, event.stream_id
        if conn in self.held:
            self.held[conn] += size
            state = conn.streams.get(stream)
            if size and stream in stalled:
                unread[stream] = unread.get(stream, 0) + size
            elif size and state is not None and state.open and live(conn):
                conn.increment_flow_control_window(size, stream)
        elif stream not in stalled:
            conn.acknowledge_received_data(size, stream)
        elif size:
            if live(conn):
                conn.increment_flow_control_window(size)
            unread[stream] = unread.get(stream, 0) + size

    @staticmethod
    def _settled(conn: H2Connection, event: Any) -> None:
        """Our SETTINGS were acknowledged: when they moved the initial window, each open
        stream's credit is weighed again against its new window.

        h2's window manager weighs credit only as bytes are read. A lowered window can leave
        a stream at or under zero with bytes already read and not yet credited, and then
        nothing more arrives to make h2 weigh them: the sender waits for a WINDOW_UPDATE
        that never comes (RFC 9113 §6.9.2 has it wait). nghttp2 had the same fault in its
        manual mode (nghttp2 #1679, fixed by #1680). A zero-byte acknowledgement makes h2
        weigh them now: a stream not stalled whose window is at or under zero is owed at
        least a whole window, and h2 credits from half of one. (Again when a stall ends:
        `_unstall`.)"""
        if not isinstance(event, SettingsAcknowledged):
            return
        if SettingCodes.INITIAL_WINDOW_SIZE not in event.changed_settings:
            return
        for stream, state in list(conn.streams.items()):
            if state.open:
                conn.acknowledge_received_data(0, stream)

    @staticmethod
    def _unstall(conn: H2Connection, stalled: set[int], unread: dict[int, int],
                 stream: int) -> None:  # fmt: skip
        stalled.discard(stream)
        owed = unread.pop(stream, 0)
        if stream in conn.streams and not conn.streams[stream].closed and live(conn):
            if owed:
                conn.increment_flow_control_window(owed, stream)
            conn.acknowledge_received_data(0, stream)  # (what it read before: `_settled`)

    def hold(self, conn: H2Connection) -> None:
        """`conn` (the client's or a server's) credits its streams from now on, not the
        connection: WINDOW_UPDATEs on streams only, until `release`."""
        self.held.setdefault(conn, 0)

    def release(self, conn: H2Connection) -> None:
        owed = self.held.pop(conn, None)
        if owed and live(conn):
            conn.increment_flow_control_window(owed)

    def unstall_client(self, stream: int) -> None:
        self._unstall(self.client, self.client_stalled, self.client_unread, stream)

    def unstall(self, key: str, stream: int) -> None:
        server = self.servers[key]
        self._unstall(server.conn, server.stalled, server.unread, stream)

    def call(self, body: bytes = b"", *, end: bool = True, path: str = "/svc/Call") -> int:
        """A new call of the client's; its stream id."""
        stream = int(self.client.get_next_available_stream_id())
        self.client.send_headers(stream, request(path), end_stream=not body and end)
        if body:
            self.send_all(self.client, stream, body, end=end)
        return stream

    def answer(self, key: str, stream: int, body: bytes = b"ok", status: int = 0) -> None:
        """A gRPC answer from `key`'s server: head, body, trailers with `status`."""
        conn = self.servers[key].conn
        conn.send_headers(stream, [(b":status", b"200"), (b"content-type", b"application/grpc")])
        if body:
            self.send_all(conn, stream, body, end=False)
        conn.send_headers(stream, [(b"grpc-status", str(status).encode())], end_stream=True)

    def send_all(self, conn: H2Connection, stream: int, body: bytes, *, end: bool) -> None:
        """All of `body` from `conn` (the client or a server), pumping as windows open."""
        rest = bytearray(body)
        for _ in range(10_000):
            send_some(conn, stream, rest, end)
            self.pump()
            if not rest:
                return
        raise AssertionError(f"stream {stream}'s body never went: {len(rest)} bytes left")

    def check_windows(self) -> None:
        """With nothing in flight (after `pump`), each window the core keeps (its internals,
        read on purpose) is the one its peer keeps: what it may send each peer, per stream
        and per connection, and what each may still send it. A drift either way is a stall
        or a flow-control error waiting for its draw."""
        split = self.split
        pairs = [(split._client, self.client, {s: c.down for s, c in split._calls.items()})]
        for key, up in split._ups.items():
            server = self.servers.get(key)
            if up.opened and server is not None and live(server.conn):
                pairs.append((up.peer, server.conn, {s: c.up for s, c in up.calls.items()}))
        for peer, conn, legs in pairs:
            assert peer.send_conn == conn.inbound_flow_control_window
            assert peer._recv_conn == conn.outbound_flow_control_window
            for stream, leg in legs.items():
                state = conn.streams.get(stream)
                name = state.state_machine.state.name if state is not None else "CLOSED"
                if state is not None and leg.started and not leg.ended and name in READING:
                    assert leg.window == state.inbound_flow_control_window, stream
                took = peer._recv.get(stream)
                if state is not None and took is not None and name in SENDING:
                    assert took == state.outbound_flow_control_window, stream

    def where(self, stream: int) -> str:
        """The instance whose server saw `stream`."""
        found = [k for k, s in self.servers.items() if stream in s.streams]
        assert len(found) == 1, found
        return found[0]


def live(conn: H2Connection) -> bool:
    """Whether `conn` may still send (not after a GOAWAY either way)."""
    return bool(conn.state_machine.state != ConnectionState.CLOSED)


def send_some(conn: H2Connection, stream: int, rest: bytearray, end: bool = True) -> None:
    """As much of `rest` as `conn`'s windows allow now, taken off `rest`; END_STREAM with
    its last byte when `end`."""
    while rest:
        room = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
        if room <= 0:
            return
        piece = bytes(rest[:room])
        del rest[:room]
        conn.send_data(stream, piece, end_stream=end and not rest)


def random_chunks(rng: random.Random, most: int = 300) -> Callable[[bytes], list[bytes]]:
    def cut(data: bytes) -> list[bytes]:
        out, at = [], 0
        while at < len(data):
            size = rng.randint(1, most)
            out.append(data[at : at + size])
            at += size
        return out

    return cut
