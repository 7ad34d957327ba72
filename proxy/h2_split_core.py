"""The splitter's state, and what both its sides do to a call (h2_split.py). Pure.

H2Splitter's bases: this one holds the calls and connections, ends a call
both ways (`_reset`), forgets it once nothing more goes either way
(`_settle`), moves what waits as windows allow (`_pump_*`) and turns the
connections' buffers into the shell's commands in order (`_flush`).
h2_split_upstream.py adds the upstreams' events, h2_split.py the client's
and the routing of new calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic

from gossamer.proxy.h2_calls import CallBook
from gossamer.proxy.h2_frames import NO_ERROR, goaway, rst_stream
from gossamer.proxy.h2_split_calls import (
    NEVER,
    Call,
    Close,
    Command,
    K,
    ToClient,
    ToUpstream,
    Upstream,
)
from gossamer.proxy.h2_split_flow import pump
from gossamer.proxy.h2_split_peer import Peer


class SplitCore(Generic[K]):
    def __init__(self, client: Peer, clock: Callable[[], float],
                 done: Callable[[K, int, float], None]) -> None:  # fmt: skip
        self._client = client
        self._clock, self._done = clock, done
        self._calls: dict[int, Call[K]] = {}  # by the client's stream
        self._ups: dict[K, Upstream[K]] = {}
        self._books: dict[K, CallBook] = {}
        self._cmds: list[Command[K]] = []
        self._closed = False  # the client's connection is over

    @property
    def outstanding(self) -> dict[K, int]:
        """Calls open per instance (waiting for its connection, or on it)."""
        return {key: len(up.calls) for key, up in self._ups.items() if up.calls}

    @property
    def open_calls(self) -> int:
        """Calls not yet over both ways (after `drain` or the client's GOAWAY, the shell
        closes the client's connection when this is 0)."""
        return len(self._calls)

    @property
    def buffered(self) -> dict[int, tuple[int, int]]:
        """DATA bytes waiting per call: (for the upstream, for the client)."""
        return {stream: (c.up.queued, c.down.queued) for stream, c in self._calls.items()}

    def window_peak(self, key: K) -> int:
        """The largest connection window `key`'s instance has given us (0: no connection):
        the most DATA of ours it may not have read yet, so what may wait for it."""
        up = self._ups.get(key)
        return up.peer.send_peak if up is not None else 0

    def _route(self, call: Call[K]) -> None:
        raise NotImplementedError

    def _close_up(self, key: K, *, quiet: bool = False) -> None:
        up = self._ups.get(key)
        if up is None:
            return
        if up.opened and not quiet:
            up.peer.out += goaway(0, NO_ERROR)
        self._flush()
        del self._ups[key]
        if not quiet:
            self._cmds.append(Close(key))

    def _start(self, key: K, up: Upstream[K], call: Call[K]) -> None:
        """`call`'s stream opens on `up` (its request's head is the first thing its leg sends)."""
        up.last = call.stream
        call.up.start(up.peer.initial_send)
        up.peer.open_stream(call.stream)
        self._book(key).opened(call.stream, self._label(call.stream), call.started,
                               ended=call.client_ended)  # fmt: skip

    def _reset(self, call: Call[K], to_client: int | None, to_upstream: int | None) -> None:
        """End `call` both ways now: RST_STREAM to each side that was told of it and has not
        ended it both ways (None: not to that side)."""
        if call.key is not None and call.up.started:  # (told already, if the reset is theirs)
            self._book(call.key).closed(call.stream, self._clock())
        if to_client is not None and not (call.down.ended and call.client_ended):
            self._client.out += rst_stream(call.stream, to_client)
        call.down.drop()
        up = self._ups.get(call.key) if call.key is not None else None
        if (up is not None and to_upstream is not None and call.up.started
                and not (call.up.ended and call.upstream_ended)):  # fmt: skip
            up.peer.out += rst_stream(call.stream, to_upstream)
        call.up.drop()
        self._settle(call)

    def _settle(self, call: Call[K]) -> None:
        """Forget `call` once nothing more goes either way; an upstream that sent GOAWAY
        closes with its last call."""
        if not call.done() or self._calls.get(call.stream) is not call:
            return
        del self._calls[call.stream]
        self._client.close_stream(call.stream)
        up = self._ups.get(call.key) if call.key is not None else None
        if up is not None and call.key is not None and up.calls.get(call.stream) is call:
            del up.calls[call.stream]
            up.peer.close_stream(call.stream)
            if up.goaway != NEVER and not up.calls:
                self._close_up(call.key)

    def _pump_up(self, up: Upstream[K]) -> None:
        if not up.opened:
            return
        for leg in pump([c.up for c in up.calls.values()], up.peer):
            self._client.consumed(leg.stream, leg.sent)
        for call in [c for c in up.calls.values() if c.done()]:
            self._settle(call)

    def _pump_call_up(self, call: Call[K]) -> None:
        up = self._ups.get(call.key) if call.key is not None else None
        if up is not None:
            self._pump_up(up)

    def _pump_client(self) -> None:
        for leg in pump([c.down for c in self._calls.values()], self._client):
            key = self._calls[leg.stream].key
            up = self._ups.get(key) if key is not None else None
            if up is not None:
                up.peer.consumed(leg.stream, leg.sent)
        for call in [c for c in self._calls.values() if c.done()]:
            self._settle(call)

    def _book(self, key: K) -> CallBook:
        book = self._books.get(key)
        if book is None:
            outcome = self._outcome
            book = self._books[key] = CallBook(lambda status, r, s: outcome(key, status, r, s))
        return book

    def _label(self, stream: int) -> str:
        """The `route` label of the call on `stream` (h2_split_routed.py); '': none."""
        return ""

    def _outcome(self, key: K | None, status: int, route: str, seconds: float) -> None:
        """One call's outcome (`key` None: answered here before any instance was chosen,
        which only a splitter that counts those reports)."""
        if key is not None:
            self._done(key, status, seconds)

    def _commands(self) -> list[Command[K]]:
        self._flush()
        commands, self._cmds = self._cmds, []
        return commands

    def _flush(self) -> None:
        """The peers' bytes as commands, before a command that must come after them."""
        if self._client.out:
            self._cmds.append(ToClient(bytes(self._client.out)))
            self._client.out.clear()
        for key, up in self._ups.items():
            if up.opened and up.peer.out:
                self._cmds.append(ToUpstream(key, bytes(up.peer.out)))
                up.peer.out.clear()
