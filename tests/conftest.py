from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.harness.cluster import AgentProc, Cluster
from tests.harness.http_app import Listening, ServeApp, serving


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Real agents on loopback; asserts no serf outlives its agent."""
    c = Cluster(tmp_path)
    yield c
    leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProc]]:
    """Three joined agents shared by a module's read-mostly tests."""
    c = Cluster(tmp_path_factory.mktemp("trio"))
    try:
        yield c.start(3)
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """`await serve_app(app, ssl_context=None)` serves an app until the test ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def serve(
            app: web.Application, ssl_context: ssl.SSLContext | None = None
        ) -> Listening:
            return await stack.enter_async_context(serving(app, ssl_context))

        yield serve
