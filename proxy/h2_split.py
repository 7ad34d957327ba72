"""Per-call HTTP/2 (gRPC) load balancing on the calling side: one client connection's
calls, each sent to an instance of its own. Pure: events in, commands out.

A gRPC channel is one connection; carried byte for byte to one instance, all
its calls go there for the connection's life. The splitter ends the client's
connection instead (to the client it is the server) and opens its own
connections to instances (to each it is a client), asking a chooser for each
new stream, as Linkerd and Envoy do. Modules: h2_split_wire.py (frames, and
the events they make), h2_split_peer.py (a connection's own frames, HPACK,
receive windows), h2_split_flow.py (a call's direction: send windows, what
waits), h2_split_calls.py (commands, calls, upstream connections),
h2_split_core.py (the state, ending and forgetting calls),
h2_split_upstream.py (the upstreams' events), this one (the client's events,
routing).

How a shell drives it, one splitter per accepted client connection:

    split = H2Splitter(choose, clock=loop.time, done=record)
    run(split.start())                      # our SETTINGS
    on client bytes:      run(split.from_client(data))
    on upstream bytes:    run(split.from_upstream(key, data))
    dial done / failed:   run(split.opened(key)) / run(split.open_failed(key))
    upstream EOF/error:   run(split.upstream_closed(key))
    client EOF/error:     run(split.client_closed())
    shutting down:        run(split.drain())  # GOAWAY: calls open go on, new ones refused
    instance gone, idle:  run(split.retire(key))  # closes once its calls end

`run` does each command in order: ToClient/ToUpstream write, Open dials,
Close/CloseClient close after what was written before. `choose(exclude)`
names an instance for a new call, or None; `exclude` holds the instances
already tried for it and those whose connection cannot take it now (GOAWAY
sent, at its SETTINGS_MAX_CONCURRENT_STREAMS). `split.outstanding` counts the
calls open per instance (for p2c or peak-EWMA: balance.py, peak_ewma.py);
`done(key, status, seconds)` gets each call's outcome as h2_calls.CallBook
reads it (gRPC status mapped to HTTP; 0: no answer).

Memory: the client may have `max_streams` calls open, each buffering at most
max(65535, `stream_window`) bytes each way (receive windows are credited
only as bytes leave: h2_split_peer.py), so a client connection holds at
most 2 * max_streams * max(65535, stream_window) bytes of bodies (defaults:
12.5 MiB), plus header blocks (each under `max_list`), plus one frame being
read per connection. A call stays counted until both its directions drained.
What the shell is asked to write is bounded by the receivers' windows too,
control frames aside (see "not yet" below).

Choices, and why:
- Stream ids are kept: an upstream connection sees an increasing run of the
  client's ids (RFC 9113 §5.1.1), so nothing is renumbered. So a call that
  must try another instance goes only where no higher id has gone yet.
- The connection receive windows are credited on arrival and the stream
  windows on departure (h2_split_peer.py): memory stays bounded by the
  stream windows, and a stalled call cannot starve the others.
- DATA to a new upstream waits for its first SETTINGS (its window may be
  under 65535); the request's head does not wait.
- Header blocks are decoded with the sender's table and written as literals
  (no table on our side), never-indexed fields kept so; the first block on
  each connection sets the peer's view of our table to 0.
- Upstream connections belong to one client connection (that is what lets
  stream ids be kept): N client connections to M instances may hold N * M
  upstream connections. `retire(key)` closes one once its calls end (the
  shell's idle timer, or an instance that left the catalog).
- Calls refused by a GOAWAY or a lost connection are not retried here: their
  request bytes were not kept. RST_STREAM REFUSED_STREAM lets the client
  (gRPC: transparently) retry; a call never sent anywhere (its dial failed)
  tries one other instance.

The shell should stop reading the client's connection while its own write
buffer is over a high-water mark: DATA to it is bounded by its windows, but a
peer that sends PINGs or SETTINGS and never reads is owed an ACK for each
(Envoy's max_outbound_control_frames). Only that connection's own buffer:
pausing the client for an upstream's sake would bring head-of-line blocking
back. An upstream whose writes wait is read on: its answers are what lets it
read ours again (a server writing a call's answer reads no more of that call),
so pausing it stalls every call it carries. What may wait for it is bounded by
`window_peak(key)` (what it promised to read) plus some slack for control
frames; past that, it too is paused.

Not yet: rapid-reset
accounting (h2_calls.CallBook.rapid is kept per instance, not acted on);
deadlines and idle timers (the shell's, as h2_deadlines.py for the gate);
intentions (the far side's gate decides each call, as today).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Generic

from gossamer.proxy.h2_fields import TOO_LARGE, answer
from gossamer.proxy.h2_frames import (
    DATA,
    FLOW_CONTROL_ERROR,
    HEADERS,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    STREAM_CLOSED,
    H2Error,
    goaway,
    header_frames,
    literal_block,
    rst_stream,
)
from gossamer.proxy.h2_split_calls import (
    Call,
    CloseClient,
    Command,
    K,
    Open,
    Upstream,
)
from gossamer.proxy.h2_split_peer import Peer
from gossamer.proxy.h2_split_upstream import UpstreamSide
from gossamer.proxy.h2_split_wire import (
    DEFAULT_WINDOW,
    ENABLE_PUSH,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    MAX_HEADER_LIST_SIZE,
    Data,
    Event,
    GoAway,
    Headers,
    Initial,
    Reset,
    StreamError,
    Window,
)

MAX_STREAMS: Final = 100  # calls a client may have open at once (SETTINGS; gRPC servers' usual)
CONN_WINDOW: Final = 1 << 20
NO_UPSTREAM: Final = b"no healthy upstream"  # Envoy's words, which its users look for


def _nothing(key: object, status: int, seconds: float) -> None:
    """A `done` that keeps nothing."""


class H2Splitter(UpstreamSide[K], Generic[K]):
    def __init__(self, choose: Callable[[set[K]], K | None], *, clock: Callable[[], float],
                 done: Callable[[K, int, float], None] = _nothing,
                 stream_window: int = DEFAULT_WINDOW, conn_window: int = CONN_WINDOW,
                 max_streams: int = MAX_STREAMS, max_list: int = 65536) -> None:  # fmt: skip
        ours = {MAX_CONCURRENT_STREAMS: max_streams, INITIAL_WINDOW_SIZE: stream_window,
                MAX_HEADER_LIST_SIZE: max_list}  # fmt: skip
        client = Peer(server=True, ours=ours, conn_window=conn_window, max_list=max_list)
        super().__init__(client, clock, done)
        self._choose = choose
        self._upstream_ours = {ENABLE_PUSH: 0, INITIAL_WINDOW_SIZE: stream_window}
        self._conn_window, self._max_list, self._max_streams = conn_window, max_list, max_streams
        self._last = 0  # the client's highest stream
        self._draining = False  # we sent GOAWAY: new calls are refused
        self._client_gone = False  # the client sent GOAWAY

    def start(self) -> list[Command[K]]:
        return self._commands()

    def from_client(self, data: bytes) -> list[Command[K]]:
        if self._closed:
            return []
        try:
            for event in self._client.feed(data):
                self._client_event(event)
                if self._closed:
                    break
        except H2Error as exc:
            self._client.out += goaway(self._last, exc.code, str(exc).encode()[:256])
            self._end_all()
        return self._commands()

    def client_closed(self) -> list[Command[K]]:
        """The client's connection ended: every call ends, every upstream closes."""
        if not self._closed:
            for book in self._books.values():
                book.side_ended(True)
            self._end_all()
        return self._commands()

    def drain(self) -> list[Command[K]]:
        """GOAWAY to the client: the calls it has go on, new ones are refused."""
        if not self._draining and not self._closed:
            self._draining = True
            self._client.out += goaway(self._last, NO_ERROR)
        return self._commands()

    def _client_event(self, event: Event) -> None:
        if isinstance(event, Headers):
            self._client_headers(event)
        elif isinstance(event, Data):
            self._client_data(event)
        elif isinstance(event, Reset):
            self._client_reset(event.stream, event.code)
        elif isinstance(event, Window):
            call = self._calls.get(event.stream)
            if call is not None and not call.down.grow(event.increment):
                self._reset(call, FLOW_CONTROL_ERROR, FLOW_CONTROL_ERROR)
            self._pump_client()
        elif isinstance(event, Initial):
            if not all([call.down.grow(event.delta) for call in self._calls.values()]):
                raise H2Error(
                    FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE takes a window past 2^31-1"
                )
            self._pump_client()
        elif isinstance(event, GoAway):
            self._client_gone = True
            if event.code != NO_ERROR:
                self._end_all()
        elif isinstance(event, StreamError):
            call = self._calls.get(event.stream)
            if call is not None:
                self._reset(call, event.code, event.code)

    def _client_headers(self, event: Headers) -> None:
        stream = event.stream
        call = self._calls.get(stream)
        if call is not None:  # trailers: they end the request
            if call.client_ended or not event.end:
                self._reset(call, PROTOCOL_ERROR, PROTOCOL_ERROR)
                return
            call.client_ended = True
            if not call.up.ended:
                call.up.put(HEADERS, literal_block(event.fields), True)
                self._pump_call_up(call)
            return
        if stream % 2 == 0:
            raise H2Error(PROTOCOL_ERROR, f"HEADERS opening stream {stream}, an even id")
        if stream <= self._last:
            return  # trailers of a call that ended (reset): in flight, dropped
        self._last = stream
        if self._draining or self._client_gone or len(self._calls) >= self._max_streams:
            self._client.out += rst_stream(stream, REFUSED_STREAM)
        elif event.malformed:
            self._client.out += rst_stream(stream, PROTOCOL_ERROR)
        elif event.over:  # (as the gate: 431, and the request's rest is not read)
            block = self._client.opening() + literal_block(answer(TOO_LARGE, ()))
            self._client.out += header_frames(stream, block, end_stream=True)
            if not event.end:
                self._client.out += rst_stream(stream, NO_ERROR)
            self._outcome(None, 431, "", 0.0)
        else:
            self._new_call(stream, event)

    def _new_call(self, stream: int, event: Headers) -> None:
        grpc = any(n == b"content-type" and v.startswith(b"application/grpc")
                   for n, v in event.fields)  # fmt: skip
        call: Call[K] = Call(stream, self._clock(), grpc)
        call.up.put(HEADERS, literal_block(event.fields), event.end)
        call.client_ended = event.end
        call.down.start(self._client.initial_send)
        if not event.end:
            self._client.open_stream(stream)
        self._calls[stream] = call
        self._route(call)

    def _route(self, call: Call[K]) -> None:
        """Send `call` to an instance the chooser names, opening a connection to it."""
        exclude = call.tried | {k for k, up in self._ups.items() if not up.takes(call.stream)}
        key = self._choose(exclude)
        if (key is None or key in exclude) and not call.tried:
            self._unavailable(call)
            return
        if key is None or key in exclude:
            self._reset(call, REFUSED_STREAM, None)
            return
        call.key = key
        call.tried.add(key)
        up = self._ups.get(key)
        if up is None:
            peer = Peer(server=False, ours=self._upstream_ours, conn_window=self._conn_window,
                        max_list=self._max_list)  # fmt: skip
            up = self._ups[key] = Upstream(peer)
            self._flush()
            self._cmds.append(Open(key))
        up.calls[call.stream] = call
        if up.opened:
            self._start(key, up, call)
            self._pump_up(up)

    def _unavailable(self, call: Call[K]) -> None:
        """No instance for a new call: answered as Envoy answers it, 503 "no healthy
        upstream", for gRPC a trailers-only UNAVAILABLE (a reset would leave a gRPC client
        retrying at once, a plain client with no answer). Recorded as a 503."""
        self._outcome(None, 503, self._label(call.stream), 0.0)  # (gRPC's 14 is a 503)
        self._answer_503(call, NO_UPSTREAM)

    def _client_data(self, event: Data) -> None:
        call = self._calls.get(event.stream)
        if call is None:
            if event.stream > self._last:
                raise H2Error(PROTOCOL_ERROR, f"DATA on idle stream {event.stream}")
            return  # a call that ended: what was in flight is dropped
        if call.client_ended:
            self._reset(call, STREAM_CLOSED, STREAM_CLOSED)
            return
        call.client_ended = event.end
        if call.up.ended:  # the upstream's side is gone: nothing to carry it to
            self._client.consumed(event.stream, len(event.data))
            return
        if event.data or event.end:
            call.up.put(DATA, event.data, event.end)
            self._pump_call_up(call)

    def _client_reset(self, stream: int, code: int) -> None:
        call = self._calls.get(stream)
        if call is None:
            return
        if call.up.started and call.key is not None:
            self._book(call.key).reset_by_client(stream, self._clock())
        self._reset(call, None, code)

    def _end_all(self) -> None:
        """The client's connection is over: its calls end, the upstreams close."""
        now = self._clock()
        for book in self._books.values():
            book.close(now)
        self._calls.clear()
        for key in list(self._ups):
            self._close_up(key)
        self._flush()
        self._cmds.append(CloseClient())
        self._closed = True
