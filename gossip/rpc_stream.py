"""A Serf RPC stream (event stream, log monitor, query) as an async iterator.

    async with client.stream("member-join,user:deploy") as events:
        async for event in events:
            ...

Entering the context (or the first `__anext__`) sends the request and waits
for serf to accept it, so an invalid filter raises at once and nothing sent
after `__aenter__` returns is missed. Leaving it sends `stop`.

Records are buffered in a bounded queue (`max_buffered`). A consumer that
falls that far behind loses the newest records (logged), just as serf drops
events for a slow RPC client, instead of growing memory without limit.

A resumable subscription (stream, monitor) survives a reconnect: the client
subscribes it again under a new Seq and iteration simply continues; events
that happened while disconnected are lost, and a monitor replays serf's
recent log lines. A query is tied to its connection and ends with
SerfConnectionError instead.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import Queue
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from gossamer.gossip.errors import SerfConnectionError, SerfError
from gossamer.gossip.rpc_codec import Frame
from gossamer.gossip.rpc_session import RpcSession

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BUFFERED = 10_000


@dataclass(frozen=True, slots=True)
class _End:
    """Queue marker: iteration is over, with `error` raised if set."""

    error: SerfError | None


class Subscription(Generic[T]):
    """Iterate records of one stream; also an async context manager."""

    def __init__(
        self,
        command: str,
        body: dict[str, Any],
        convert: Callable[[Any], T | None],
        *,
        live_session: Callable[[], RpcSession],
        registry: set[Subscription[Any]],
        timeout: float,
        resumable: bool,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self._command = command
        self._body = body
        self._convert = convert
        self._live_session = live_session
        self._registry = registry
        self._timeout = timeout
        self.resumable = resumable
        self._queue: Queue[T | _End] = Queue(max_buffered + 1)  # +1 keeps room for _End
        self._session: RpcSession | None = None
        self._seq: int | None = None
        self._state = "new"  # new -> open -> ended
        self.dropped = 0

    async def open(self) -> None:
        """Send the request; raises SerfRpcError if serf refuses it."""
        if self._state != "new":
            return
        self._state = "open"
        # Registered first, so a connection lost while subscribing reaches us.
        self._registry.add(self)
        try:
            await self.resubscribe(self._live_session())
        except SerfError as exc:
            self._end(exc)
            raise
        except BaseException:
            self._end(None)
            raise

    async def aclose(self) -> None:
        """Send `stop` if still connected and end iteration."""
        if self._state == "ended":
            return
        session, seq = self._session, self._seq
        self._end(None)
        if session is not None and seq is not None and session.alive:
            session.unsubscribe(seq)
            try:
                async with asyncio.timeout(self._timeout):
                    await session.request("stop", {"Stop": seq})
            except (SerfError, TimeoutError) as exc:
                log.debug("stop of %s stream failed: %s", self._command, exc)

    async def __aenter__(self) -> Subscription[T]:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        await self.open()
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # later calls end the same way
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    async def resubscribe(self, session: RpcSession) -> None:
        """Subscribe on `session` (first time or after a reconnect)."""
        if self._state == "ended":
            return
        self._session, self._seq = session, None
        async with asyncio.timeout(self._timeout):
            self._seq = await session.subscribe(self._command, self._body, self._deliver)

    def interrupted(self, error: SerfConnectionError, will_resume: bool) -> None:
        """The connection dropped; wait for `resubscribe` or end with `error`."""
        self._session, self._seq = None, None
        if not (will_resume and self.resumable):
            self._end(error)

    def finish(self, error: SerfError | None) -> None:
        """End iteration from outside (client closed, resubscribe refused)."""
        self._end(error)

    def _deliver(self, frame: Frame) -> None:
        if self._state != "open":
            return
        item = self._convert(frame.body) if frame.body is not None else None
        if item is not None:
            if self._queue.qsize() >= self._queue.maxsize - 1:
                self.dropped += 1
                if self.dropped % 1000 == 1:
                    log.warning("%s consumer too slow, %d dropped", self._command, self.dropped)
            else:
                self._queue.put_nowait(item)
        if frame.last:
            self._end(None)

    def _end(self, error: SerfError | None) -> None:
        if self._state == "ended":
            return
        self._state = "ended"
        self._registry.discard(self)
        # The queue keeps one slot free for this marker, so it always fits.
        self._queue.put_nowait(_End(error))
