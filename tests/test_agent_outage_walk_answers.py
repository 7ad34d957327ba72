"""The sidecar's watches against an agent that lies: answers that do not say where they stand,
do not hold the query, end early, or never come.

A stand-in agent (an aiohttp app, or a raw asyncio server for replies aiohttp will not
send) on a real socket; the proxy's real `AgentHttp` and `Watch` talk to it. The real
agent never answers so (it sends `X-Consul-Index` of 1 or more and holds the query); these
are what the sidecar meets when something else sits on the agent's port, or an agent is
broken, and the rule is Consul's client's: a missing index is an error, an index of 0 is
asked from as 1, and a watch never asks in a tight loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from gossamer.proxy.agent_http import AgentHttp, BadAnswer, NoAnswer
from gossamer.proxy.config import ProxyConfig
from gossamer.proxy.runtime import ProxyRuntime
from gossamer.proxy.watch import Watch
from tests.harness.http_app import ServeApp
from tests.harness.poll import eventually_async

RawReply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]


@pytest.fixture
async def raw_agent() -> AsyncIterator[Callable[[RawReply], Any]]:
    """`await raw_agent(reply)`: a raw TCP server calling `reply(reader, writer)` once a
    request's head came; its base URL."""
    servers: list[asyncio.Server] = []

    async def serve(reply: RawReply) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readuntil(b"\r\n\r\n")
                await reply(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield serve
    for server in servers:
        server.close()


async def _watched_for(
    serve_app: ServeApp, handler: Callable[[web.Request], Any], seconds: float, **kw: Any
) -> tuple[list[str], list[Any]]:
    """Serve `handler` at /v1/rows, watch it for `seconds`: (each ask's index, each answer
    delivered)."""
    asked: list[str] = []

    async def rows(request: web.Request) -> web.StreamResponse:
        asked.append(request.query.get("index", request.query.get("hash", "")))
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application()
    app.router.add_get("/v1/rows", rows)
    where = await serve_app(app)
    seen: list[Any] = []
    watch = Watch(AgentHttp(where.base), "/v1/rows", seen.append, **kw)
    watch.start()
    try:
        await asyncio.sleep(seconds)  # the span measured: how often it asks meanwhile
    finally:
        watch.stop()
    return asked, seen


async def test_an_answer_without_an_index_is_not_asked_again_in_a_tight_loop(
    serve_app: ServeApp, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the walk (a stand-in on the agent's port answering 200 `{}` with no
    X-Consul-Index): every watch asked again at once, ~2,400 times a second per sidecar,
    each answer applied (an empty intentions answer cut every open connection) and logged.
    Consul's client refuses such an answer; so does the watch now: backed off, logged once,
    nothing applied."""

    async def no_index(request: web.Request) -> web.Response:
        return web.json_response({})

    with caplog.at_level(logging.INFO, logger="gossamer.proxy"):
        asked, seen = await _watched_for(serve_app, no_index, 1.5)
    assert seen == []
    assert len(asked) <= 6, f"{len(asked)} asks in 1.5 s"  # (0.1 s doubling: 4 or 5)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "X-Consul-Index is '', not a number" in said[0], said


async def test_a_content_hash_watch_needs_its_hash(serve_app: ServeApp) -> None:
    """The registration's watch (by content hash) likewise: no X-Consul-ContentHash, no
    answer applied and no tight loop."""

    async def no_hash(request: web.Request) -> web.Response:
        return web.json_response({"Kind": "connect-proxy"})

    asked, seen = await _watched_for(serve_app, no_hash, 1.5, by_hash=True)
    assert seen == [] and len(asked) <= 6, (len(asked), seen)


async def test_an_index_of_zero_is_asked_from_as_one(serve_app: ServeApp) -> None:
    """X-Consul-Index: 0 (which a real agent never sends): asked again from 1, as Consul's
    clients do, so the next ask blocks; it used to ask from 0, which never blocks."""

    async def zero(request: web.Request) -> web.Response:
        if request.query.get("index", "0") != "0":  # held, as an agent holds a query
            await asyncio.sleep(30)
        return web.json_response([1], headers={"X-Consul-Index": "0"})

    asked, seen = await _watched_for(serve_app, zero, 1.0)
    assert asked == ["0", "1"] and seen == [[1]], (asked[:5], len(asked))


async def test_an_agent_that_does_not_hold_the_query_is_asked_less_often(
    serve_app: ServeApp, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the walk: a stand-in answering at once with the same X-Consul-Index whatever
    the index asked (it does not hold blocking queries) was asked ~4,000 times a second by
    each sidecar, its CPU busy with nothing. Now such answers (nothing new, back in under a
    second) are asked again after a delay doubling from 0.1 s, said once; an answer that is
    news resets it."""
    news = asyncio.Event()

    async def unheld(request: web.Request) -> web.Response:
        if news.is_set():
            if request.query.get("index") == "8":
                await asyncio.sleep(30)
            return web.json_response([2], headers={"X-Consul-Index": "8"})
        return web.json_response([1], headers={"X-Consul-Index": "7"})

    asked: list[str] = []

    async def rows(request: web.Request) -> web.Response:
        asked.append(request.query.get("index", ""))
        return await unheld(request)

    app = web.Application()
    app.router.add_get("/v1/rows", rows)
    where = await serve_app(app)
    seen: list[Any] = []
    watch = Watch(AgentHttp(where.base), "/v1/rows", seen.append)
    with caplog.at_level(logging.INFO, logger="gossamer.proxy"):
        watch.start()
        try:
            await asyncio.sleep(1.5)
            assert len(asked) <= 7, f"{len(asked)} asks in 1.5 s"
            assert seen == [[1]]
            news.set()
            await eventually_async(lambda: seen == [[1], [2]], timeout=15)
            await eventually_async(lambda: asked[-1:] == ["8"])
        finally:
            watch.stop()
    said = [r.getMessage() for r in caplog.records]
    assert sum("does not hold blocking queries" in s for s in said) == 1, said
    assert any("holds the query again" in s for s in said), said


async def test_a_body_cut_short_is_not_an_answer(raw_agent: Any) -> None:
    """An answer whose body ends before its Content-Length (the agent killed mid-answer)
    is a BadAnswer: a cut-off JSON body may still parse (`[1]` of `[1]    `), and was
    handed on as if whole."""

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nX-Consul-Index: 3\r\nContent-Length: 40\r\n\r\n[1]")
        await writer.drain()

    base = await raw_agent(cut)
    with pytest.raises(BadAnswer, match="ends early"):
        await AgentHttp(base).get("/v1/rows", 5)


async def test_no_answer_and_a_silent_agent_say_so(raw_agent: Any) -> None:
    """An agent that closes without a byte (SIGKILLed while holding the query) was logged as
    "the agent's reply has no end of headers" and backed off as a bad answer; one that never
    answers (SIGSTOPped) as "failed ()". Now the first is a connection error (asked again
    soon, as a refused connect) saying so, the second says how long it waited."""

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return None

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    with pytest.raises(NoAnswer, match="closed the connection without answering"):
        await AgentHttp(await raw_agent(close)).get("/v1/rows", 5)
    assert issubclass(NoAnswer, OSError)
    with pytest.raises(TimeoutError, match=r"no answer from the agent in 0\.3 s"):
        await AgentHttp(await raw_agent(silent)).get("/v1/rows", 0.3)


@pytest.mark.parametrize("body", [{}, None, [], {"db": None}, {"web": []}])
async def test_an_intentions_answer_not_about_the_service_is_not_applied(
    body: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the walk: a stand-in on the agent's port answering `{}` to every ask (with
    an index) had the sidecar take it as "no intentions": under the default deny every open
    connection was cut. An agent's match answer always names the service asked about
    (`{"db": []}` when nothing matches); one that does not is logged and the intentions in
    force are kept, as a `null` already was (with a traceback)."""
    config = ProxyConfig(service="db")
    runtime = ProxyRuntime(config, AgentHttp("http://127.0.0.1:1"))
    await runtime._on_intentions(json.dumps({"db": [{"SourceName": "web", "DestinationName": "db",
                                                     "Action": "allow"}]}).encode())  # fmt: skip
    kept = runtime.policy.intentions
    with caplog.at_level(logging.ERROR, logger="gossamer.proxy"):
        await runtime._on_intentions(json.dumps(body).encode())
    assert runtime.policy.intentions is kept
    assert "intentions answer unusable" in caplog.text and "no list for db" in caplog.text
    await runtime._on_intentions(b'{"db": []}')  # a real "nothing matches" applies
    assert runtime.policy.intentions is not kept
