"""The light HTTP front: hot reads answered from prepared bytes, everything else by aiohttp.

Every connection to the HTTP (and HTTPS) listener starts with a
`FrontConnection`. While its requests are plain GETs of a hot read route
(front_head.py), it answers them itself, by calling the very function the
aiohttp handler calls (front_answer.py: the same parameter checks, prepared
answers, blocking rules and headers), records them in the same HTTP figures,
and parks a blocking query in the catalog's waiter table holding nothing but
this object and the waiter.
aiohttp costs ~8.7 KB per parked request (parser, task, request and message
objects: bench/README.md); this costs a fraction of it.

With ACLs on it applies the ACL middleware's check first (acl_enforce.py,
through the same `need_for` table, `secret_from` and `require_of`) and leaves
reads the middleware would filter to aiohttp.

The first request it does not take (another route, a body, an error to
word, a read to filter) hands the connection over for good: aiohttp's own
RequestHandler is made from the runner's server, takes the transport, and
gets the bytes read so far, from that request on. Requests are answered in order: pipelined
ones wait in the buffer while a blocking query is parked.

Idle keep-alive connections are closed after `KEEPALIVE_S` (aiohttp's
default) by one sweep every `SWEEP_S`, not a timer per connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from aiohttp import web
from multidict import MultiDictProxy
from yarl import URL

from gossamer.agent.acl.resolve import AclNotFound, PermissionDenied, TooManyGuesses
from gossamer.agent.http.front_acl import may_answer
from gossamer.agent.http.front_answer import Answered, Asked, answer, write_answer
from gossamer.agent.http.front_head import hot_route, plain_get

KEEPALIVE_S = 75.0  # aiohttp's keepalive_timeout, which the agent leaves as it is
SWEEP_S = 15.0
HEAD_MAX = 8190  # aiohttp's max_line_size / field size; a longer head is aiohttp's to refuse
BUFFER_MAX = 256 * 1024  # pipelined bytes held while a query is parked; reading pauses above


class Front:
    """What the connections of one app share: the app, aiohttp's server, the sweep."""

    def __init__(self, runner: web.AppRunner) -> None:
        self.runner = runner
        self.app = runner.app
        self.connections: set[FrontConnection] = set()
        self._queries: dict[str, MultiDictProxy[str]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self.stopping = False
        self.taken = 0  # requests the front answered itself
        self.handed = 0  # connections handed to aiohttp

    def __call__(self) -> FrontConnection:
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_S, self._close_idle)
        return FrontConnection(self)

    def handler(self) -> asyncio.Protocol:
        server = self.runner.server
        assert server is not None  # the runner is set up before any site starts
        return server()

    def query(self, raw: str) -> MultiDictProxy[str]:
        """`raw` parsed as aiohttp parses it (yarl); watchers of one query share one."""
        found = self._queries.get(raw)
        if found is None:
            if len(self._queries) >= 4096:
                self._queries.clear()
            found = self._queries[raw] = URL.build(query_string=raw, encoded=True).query
        return found

    def _close_idle(self) -> None:
        now = time.monotonic()
        for connection in list(self.connections):
            if connection.parked is None and now - connection.since > KEEPALIVE_S:
                connection.close()
        self._sweep = asyncio.get_running_loop().call_later(SWEEP_S, self._close_idle)

    def stop(self) -> None:
        """The listener closed: idle connections now, parked ones once answered."""
        self.stopping = True
        if self._sweep is not None:
            self._sweep.cancel()
        for connection in list(self.connections):
            if connection.parked is None:
                connection.close()


class FrontConnection(asyncio.Protocol):
    """One client connection until it is answered by aiohttp (module docstring)."""

    __slots__ = ("buffer", "front", "parked", "since", "throttled", "transport", "writable")

    def __init__(self, front: Front) -> None:
        self.front = front
        self.buffer = b""
        self.parked: _Parked | None = None
        self.since = time.monotonic()
        self.writable = True
        self.throttled = False  # reading paused: too many pipelined bytes behind a parked query
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.front.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.connections.discard(self)
        if self.parked is not None:
            self.parked.future.cancel()  # the waiter is dropped when its slot comes
            self.parked = None
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        self.serve()

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self.serve()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def serve(self) -> None:
        """Answer buffered requests in order while they are ours and none is parked."""
        buffer, start = self.buffer, 0  # sliced once at the end, not once per request
        while start < len(buffer) and self.parked is None and self.writable and self.transport:
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                if len(buffer) - start > HEAD_MAX or buffer.find(b"\n\n", start) >= 0:
                    self.buffer = buffer[start:]
                    self._hand_off()
                    return
                break
            if not self._take(buffer[start : end + 4]):
                self.buffer = buffer[start:]
                self._hand_off()
                return
            start = end + 4
        self.buffer = buffer[start:] if start else buffer
        if self.transport is not None:
            throttle = len(self.buffer) > BUFFER_MAX
            if throttle != self.throttled:
                self.throttled = throttle
                (self.transport.pause_reading if throttle else self.transport.resume_reading)()

    def _take(self, head: bytes) -> bool:
        """Answer (or park) the request `head` if it is the front's; False hands it over."""
        front = self.front
        got = plain_get(head) if not front.stopping else None
        found = hot_route(got.target) if got is not None else None
        if got is None or found is None:
            return False
        route, name, path, raw_query = found
        started = time.perf_counter()
        future: asyncio.Future[Answered]
        try:
            query = front.query(raw_query)
            if not may_answer(front.app, self.transport, route, name, got.headers, query):
                return False
            future = answer(route, name, Asked(front.app, path, query))
        except (AclNotFound, TooManyGuesses, PermissionDenied) as exc:
            future = asyncio.get_running_loop().create_future()  # the ACL middleware's answer
            future.set_exception(exc)
        except Exception:  # a bad parameter: aiohttp words the 400, by the same code
            return False  # (and LeftToAiohttp: a wait aiohttp parks)
        front.taken += 1
        parked = _Parked(self, future, route, path, started)
        if future.done():
            parked.write()
        else:
            self.parked = parked
            future.add_done_callback(parked.woken)
        return True

    def _hand_off(self) -> None:
        """aiohttp's RequestHandler takes the connection and the bytes not yet answered."""
        transport = self.transport
        assert transport is not None
        self.front.connections.discard(self)
        self.front.handed += 1
        self.transport = None
        handler = self.front.handler()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if not self.writable:
            handler.pause_writing()
        if self.throttled:
            transport.resume_reading()
        data, self.buffer = self.buffer, b""
        if data:
            handler.data_received(data)


class _Parked:
    """A request being answered: what writing its answer needs."""

    __slots__ = ("connection", "future", "path", "route", "started")

    def __init__(
        self,
        connection: FrontConnection,
        future: asyncio.Future[Answered],
        route: str,
        path: str,
        started: float,
    ) -> None:
        self.connection, self.future = connection, future
        self.route, self.path, self.started = route, path, started

    def woken(self, future: asyncio.Future[Any]) -> None:
        connection = self.connection
        if connection.parked is not self:
            return  # the connection went away
        connection.parked = None
        self.write()
        if connection.front.stopping:
            connection.close()
        else:
            connection.serve()

    def write(self) -> None:
        connection = self.connection
        transport = connection.transport
        if transport is None or self.future.cancelled():
            return
        write_answer(transport, self.future, connection.front.app, self.route, self.path,
                     self.started)  # fmt: skip
        connection.since = time.monotonic()
