"""Fixtures shared by the whole suite; the helpers behind them live in tests/harness/.

- `cluster` / `trio`: real agents on loopback (harness/cluster.py);
- `serve_app`: an aiohttp app served in-process (harness/http_app.py);
- `served`: the agent's real HTTP app behind a stand-in agent whose serf
  refuses every change (harness/served_agent.py);
- the CLI as a subprocess: harness/cli.py; what a test needs from the
  machine (skip locally, fail under CI): harness/binaries.py.

No test may depend on the order tests run in. To check, with the plugin
installed by hand (it is not a dependency: it reseeds the global random
generator before every test, and a run is only repeatable with its seed):
    .venv/bin/pip install pytest-randomly
    .venv/bin/python -m pytest -p randomly --randomly-seed=<n> <unit test files>
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.harness.cluster import AgentProc, Cluster
from tests.harness.http_app import Listening, ServeApp, serving
from tests.harness.served_agent import Served, serving_fake_agent


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


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """The agent's HTTP app in-process over real stores, behind a stand-in agent."""
    async with serving_fake_agent(tmp_path) as s:
        yield s
