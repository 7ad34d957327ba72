"""What the light front (front.py) answers a hot read with, and the bytes it writes for it.

The answer comes from the very function the aiohttp handler calls
(`service_health`, `service_answer`, `services_answer`, and `services_at_once`
for `/v1/agent/services` unless it is to wait for a new content hash), given
an `Asked` instead of a request: the same parameter checks, prepared answers,
blocking rules and headers. It is a future, done at once or when a parked
query wakes. Writing it uses front_head.py's heads; an error raised when a
query woke (a filter only checkable against a row) is worded by the same
error table as the middleware's (`error_answer`), and every answer goes into
the same HTTP figures (`record_route`).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE
from multidict import MultiDictProxy

from gossamer.agent.http.app import error_answer
from gossamer.agent.http.blocking import consul_headers
from gossamer.agent.http.catalog_routes import service_answer, services_answer
from gossamer.agent.http.front_head import (
    AGENT_SERVICES,
    CATALOG_SERVICE,
    HEALTH_SERVICE,
    json_head,
    text_head,
)
from gossamer.agent.http.health_routes import service_health
from gossamer.agent.http.local_routes import services_at_once
from gossamer.agent.http.metrics_routes import record_route

Answered = tuple[bytes, dict[str, str]]  # a body and the headers between Content-Type and Length


def _pair(body: bytes, index: int) -> Answered:
    return body, consul_headers(index)


class LeftToAiohttp(Exception):
    """A request the front hands over although its route is hot (a hash-blocking wait)."""


class Asked:
    """The request as the answering code reads it (agent/http/asked.py)."""

    __slots__ = ("app", "path", "query")

    def __init__(self, app: web.Application, path: str, query: MultiDictProxy[str]) -> None:
        self.app, self.path, self.query = app, path, query


def answer(route: str, name: str, asked: Asked) -> asyncio.Future[Answered]:
    """The answer of hot read `route` (front_head.py) for service `name`; raises as the
    handler does on a bad parameter, and LeftToAiohttp for a wait aiohttp parks."""
    if route == AGENT_SERVICES:
        found = services_at_once(asked)
        if found is None:
            raise LeftToAiohttp(route)
        future: asyncio.Future[Answered] = asyncio.get_running_loop().create_future()
        future.set_result((found[0], {"X-Consul-ContentHash": found[1]}))
        return future
    if route == HEALTH_SERVICE:
        return service_health(asked, name, _pair)
    if route == CATALOG_SERVICE:
        return service_answer(asked, name, _pair)
    return services_answer(asked, _pair)


def write_answer(
    transport: asyncio.Transport,
    future: asyncio.Future[Answered],
    app: web.Application,
    route: str,
    path: str,
    started: float,
) -> None:
    """Write the done, not cancelled, `future`'s answer (or its error's) and record it."""
    exc = future.exception()
    date = rfc822_formatted_time()
    if exc is None:
        body, headers = future.result()
        status = 200
        transport.write(json_head(len(body), headers, date, SERVER_SOFTWARE) + body)
    else:  # raised when it woke (a filter only checkable against a row): the same table
        status, text = error_answer("GET", path, _exception(exc))
        data = text.encode()
        transport.write(text_head(status, len(data), date, SERVER_SOFTWARE) + data)
    record_route(app, "GET", route, status, started)


def _exception(exc: BaseException) -> Exception:
    return exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
