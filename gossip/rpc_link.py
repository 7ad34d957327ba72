"""The connection lifecycle behind SerfRpcClient: dial, handshake, auth, redial.

`RpcLink` keeps one current `RpcSession` and the set of open subscriptions.
When the session is lost it tells every subscription, and (with reconnect
on) redials in the background with backoff, redoing handshake and auth and
re-subscribing streams before it calls itself connected again. While it is
down, `live_session()` fails fast with SerfConnectionError.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

from gossamer.gossip.errors import SerfConnectionError, SerfError, SerfRpcError, SerfTimeoutError
from gossamer.gossip.rpc_codec import Frame
from gossamer.gossip.rpc_session import RpcSession, split_addr
from gossamer.gossip.rpc_stream import Subscription

log = logging.getLogger(__name__)

IPC_VERSION = 1  # the only version serf's RPC has ever spoken
BACKOFF_FIRST = 0.1  # a restarted serf is usually listening again within ~0.2 s
BACKOFF_MAX = 5.0  # bounds how stale the client stays after a long outage


class RpcLink:
    """A self-healing RPC connection to one serf agent."""

    def __init__(self, addr: str, auth_key: str | None, reconnect: bool, timeout: float) -> None:
        split_addr(addr)  # reject a bad address now, not at connect time
        self.addr = addr
        self._auth_key = auth_key
        self._reconnect = reconnect
        self._timeout = timeout
        self._seqs = itertools.count()
        self._session: RpcSession | None = None
        self._subs: set[Subscription[Any]] = set()
        self._reconnector: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        """A session is up and open streams have been moved onto it."""
        return self._session is not None and self._session.alive

    async def connect(self) -> None:
        """Connect, handshake and authenticate; raise SerfError on failure."""
        if self._closed:
            raise SerfConnectionError("client is closed")
        if self.connected:
            return
        if self._reconnector is not None:  # an explicit connect takes over
            self._reconnector.cancel()
            await asyncio.gather(self._reconnector, return_exceptions=True)
        try:
            await self._establish()
        except SerfConnectionError as exc:
            if self._subs:  # streams survive a failed explicit connect as after a drop
                self._disconnected(exc)
            raise

    async def close(self) -> None:
        """Disconnect for good: pending calls fail, stream iterators end."""
        self._closed = True
        if self._reconnector is not None:
            self._reconnector.cancel()
            await asyncio.gather(self._reconnector, return_exceptions=True)
        for sub in list(self._subs):
            sub.finish(None)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def live_session(self) -> RpcSession:
        """The current session; fails fast (SerfConnectionError) while down."""
        if self._closed:
            raise SerfConnectionError("client is closed")
        if self._session is None or not self._session.alive:
            state = "reconnecting" if self._reconnect else "disconnected"
            raise SerfConnectionError(f"not connected to serf at {self.addr} ({state})")
        return self._session

    async def call(self, command: str, body: dict[str, Any] | None = None) -> Frame:
        """One request; SerfRpcError (with any body) when serf sets Error, SerfTimeoutError
        when it does not answer within the timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                frame = await self.live_session().request(command, body)
        except TimeoutError:
            raise SerfTimeoutError(
                f"serf at {self.addr} did not answer {command!r} within {self._timeout:g}s"
            ) from None
        if frame.error:
            raise SerfRpcError(frame.error, frame.body)
        return frame

    def subscription(
        self, command: str, body: dict[str, Any], convert: Callable[[Any], Any], resumable: bool
    ) -> Subscription[Any]:
        """A stream bound to this link, so it follows reconnects."""
        return Subscription(
            command,
            body,
            convert,
            live_session=self.live_session,
            registry=self._subs,
            timeout=self._timeout,
            resumable=resumable,
        )

    async def _establish(self) -> None:
        """Open a session, move open streams onto it, then make it current."""
        session = await self._open_session()
        try:
            for sub in list(self._subs):
                try:
                    await sub.resubscribe(session)
                except SerfRpcError as exc:  # e.g. serf's config changed under us
                    sub.finish(exc)
            if not session.alive:
                raise SerfConnectionError(f"lost serf at {self.addr} while resubscribing")
        except BaseException:
            await session.close()
            raise
        # Only now: `connected` promises that open streams are live again.
        self._session = session

    async def _open_session(self) -> RpcSession:
        """Connect, handshake (always first), then auth, all within one `timeout`."""
        session: RpcSession | None = None
        try:
            async with asyncio.timeout(self._timeout):
                session = await RpcSession.open(self.addr, lambda: next(self._seqs), self._on_lost)
                await self._expect_ok(session, "handshake", {"Version": IPC_VERSION})
                if self._auth_key is not None:
                    await self._expect_ok(session, "auth", {"AuthKey": self._auth_key})
        except BaseException as exc:
            if session is not None:
                await session.close()
            if isinstance(exc, TimeoutError):
                msg = f"serf at {self.addr} did not answer within {self._timeout}s"
                raise SerfConnectionError(msg) from exc
            raise
        return session

    @staticmethod
    async def _expect_ok(session: RpcSession, command: str, body: dict[str, Any]) -> None:
        frame = await session.request(command, body)
        if frame.error:
            raise SerfRpcError(f"{command} refused: {frame.error}")

    def _on_lost(self, session: RpcSession, error: SerfConnectionError) -> None:
        if session is self._session:
            self._disconnected(error)

    def _disconnected(self, error: SerfConnectionError) -> None:
        self._session = None
        will_resume = self._reconnect and not self._closed
        for sub in list(self._subs):
            sub.interrupted(error, will_resume)
        if will_resume and (self._reconnector is None or self._reconnector.done()):
            self._reconnector = asyncio.create_task(self._reconnect_loop(), name="serf-rpc-redial")

    async def _reconnect_loop(self) -> None:
        """Redial with backoff until connected or closed."""
        delay = BACKOFF_FIRST
        while not self._closed:
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
            try:
                await self._establish()
            except (SerfError, TimeoutError) as exc:  # TimeoutError: a resubscribe hung
                log.info("reconnect to serf at %s failed: %s", self.addr, exc)
                continue
            log.info("reconnected to serf at %s", self.addr)
            return
