"""An aiohttp app served in-process on a real socket, for tests of routes and probes.

`serving(app)` listens on 127.0.0.1 with a free port and yields where; on the
way out it stops the server (open requests get a short grace period, so a
pending blocking query does not hold up teardown). The `serve_app` fixture
of tests/conftest.py does the same for a test that starts apps as it goes.
`SyncCalls` runs a synchronous client (py-consul) off the loop that serves
the app, which would otherwise deadlock waiting for itself.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import consul
from aiohttp import web

T = TypeVar("T")
SHUTDOWN_GRACE = 0.1  # seconds open requests get at teardown


@dataclass(frozen=True)
class Listening:
    """Where a served app answers."""

    host: str
    port: int
    scheme: str = "http"

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def consul(self) -> consul.Consul:
        """A py-consul client for this address (plain HTTP)."""
        return consul.Consul(self.host, self.port)


@asynccontextmanager
async def serving(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Listening]:
    """Serve `app` on 127.0.0.1 (HTTPS with `ssl_context`) until the block ends."""
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        host, port = runner.addresses[0][:2]
        yield Listening(host, port, "https" if ssl_context else "http")
    finally:
        await runner.cleanup()


ServeApp = Callable[..., Awaitable[Listening]]  # the type of the serve_app fixture


class SyncCalls:
    """Mixin for a test's view of a served app that holds a synchronous client."""

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """py-consul is synchronous: run it off the loop that serves it."""
        return await asyncio.to_thread(fn, *args, **kwargs)
