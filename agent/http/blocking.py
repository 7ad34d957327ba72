"""The HTTP side of Consul blocking queries over the LiveCatalog.

`blocking_json` parses ``?index=&wait=`` (400 naming the parameter when one
is bad), parks the request on the catalog's per-key waiters until one of
`keys` changes past the client's index or the wait (plus jitter) runs out,
then builds the body and sets the index headers (in the waiter's wake-up:
a parked request holds no coroutine frame of ours). The body and the index are
read in the same step of the event loop, so they always agree.

Headers, as a Consul agent sends them: ``X-Consul-Index`` (never 0),
``X-Consul-KnownLeader: true`` (every agent is authoritative for what it
serves; there is no leader to lose), ``X-Consul-LastContact: 0`` and
``X-Consul-Effective-Consistency: stale`` (every read is of this agent's
replica; Consul's `?consistent` cannot be honoured without a leader). A
non-empty ``peer`` gets the empty answer a single-cluster Consul gives: there
is no cluster peering.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web

from gossamer.agent.http.asked import Asked
from gossamer.agent.http.prepared import PreparedAnswers, QueryKey, query_key
from gossamer.agent.http.render import encode_json
from gossamer.catalog.blocking import jitter, parse_blocking, response_index, timeout_for
from gossamer.catalog.live import LiveCatalog

T = TypeVar("T")
_jitter_rng = random.Random()
PREPARED_KEY: web.AppKey[PreparedAnswers] = web.AppKey("prepared_answers", PreparedAnswers)


def web_response(body: bytes, index: int) -> web.Response:
    """An answer as aiohttp sends it: the JSON body and the index headers."""
    response = web.Response(body=body, content_type="application/json")
    response.headers.update(consul_headers(index))
    return response


def consul_headers(index: int) -> dict[str, str]:
    """The headers of every blocking-capable answer; the index rule is `response_index`'s."""
    return {
        "X-Consul-Index": str(response_index(index)),
        "X-Consul-KnownLeader": "true",
        "X-Consul-LastContact": "0",
        "X-Consul-Effective-Consistency": "stale",  # every read is of this agent's own copy
    }


def _nothing_like(body: Any) -> Any:
    """The empty answer of the same shape: `[]`, `{}` or null."""
    return type(body)() if isinstance(body, list | dict) else None


def blocking_json(
    request: Asked,
    catalog: LiveCatalog,
    keys: Iterable[str],
    build: Callable[[], Any],
    *,
    prepared: bool = False,
) -> asyncio.Future[web.Response]:
    """`blocking_answer` shaped as aiohttp's response."""
    return blocking_answer(request, catalog, keys, build, web_response, prepared=prepared)


def blocking_answer(
    request: Asked,
    catalog: LiveCatalog,
    keys: Iterable[str],
    build: Callable[[], Any],
    respond: Callable[[bytes, int], T],
    *,
    prepared: bool = False,
) -> asyncio.Future[T]:
    """The answer `build()` as JSON with the index headers, once the wait the request asks
    for is over: await it.

    A plain function, not a coroutine: the parked request is a waiter in the
    catalog's table (catalog/waiters.py) whose answer is built when it wakes,
    so no frame of ours is held per parked request. `prepared`: the answer may
    come from (and goes to) the app's PreparedAnswers, and parked requests of
    one query share one `Answer` (so `build` must depend on nothing but the
    path and the parameters, which prepared answers need anyway). `respond` turns the
    body and the index into what the future holds.
    """
    watched = list(keys)
    query = parse_blocking(request.query)  # QueryParamError: 400 by the error table
    answers = request.app.get(PREPARED_KEY) if prepared else None
    key = query_key(request.path, request.query.items())
    peer = bool(request.query.get("peer"))
    if answers is None:
        answer = Answer(catalog, watched, build, None, key, peer, respond)
    else:
        shared = (answers, key, tuple(watched), respond)
        answer = _shared.get(shared) or _shared.setdefault(
            shared, Answer(catalog, watched, build, answers, key, peer, respond)
        )
    # The catalog decides whether to wait at all (`should_block`): an index
    # of 0, a stale one or one ahead of ours is answered at once.
    return catalog.answer_when(watched, query.index, timeout_for(query, _jitter_rng), answer)


class Answer:
    """Builds a blocking query's response when it wakes: the index and the body read in the
    same step. For a prepared query, one is shared by every request parked on it (`_shared`
    forgets it when the last is answered): 10,000 watchers of one query hold one of these,
    not 10,000 parsed queries and closures."""

    __slots__ = ("__weakref__", "answers", "build", "catalog", "key", "peer", "respond", "watched")

    def __init__(
        self,
        catalog: LiveCatalog,
        watched: list[str],
        build: Callable[[], Any],
        answers: PreparedAnswers | None,
        key: QueryKey,
        peer: bool,
        respond: Callable[[bytes, int], Any],
    ) -> None:
        self.catalog, self.watched, self.build = catalog, watched, build
        self.answers, self.key, self.peer, self.respond = answers, key, peer, respond

    def __call__(self) -> Any:
        index = self.catalog.index(self.watched)
        version = self.catalog.indexes.current  # any change at all: rows carry other keys'
        body = self.answers.get(self.key, version) if self.answers is not None else None
        if body is None:
            # FilterError from build (a value only checkable against a row): 400 by the table
            rows = self.build()
            # no cluster peering: a peer holds nothing, as Consul answers
            body = encode_json(_nothing_like(rows) if self.peer else rows)
            if self.answers is not None:
                self.answers.put(self.key, version, body)
        return self.respond(body, index)


_SharedKey = tuple[PreparedAnswers, QueryKey, tuple[str, ...], Callable[[bytes, int], Any]]
_shared: weakref.WeakValueDictionary[_SharedKey, Answer]
_shared = weakref.WeakValueDictionary()


async def wait_while(
    catalog: LiveCatalog, keys: list[str], wait_s: float, unchanged: Callable[[], bool]
) -> None:
    """Content-hash blocking (`?hash=&wait=`): park on `keys` while `unchanged()` holds.

    The wait gets the same jitter as an index-blocking query; each change
    of a watched key wakes the request to look again.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s + jitter(wait_s, _jitter_rng)
    # (released: the agent is stopping, the query is answered as it stands, not parked again)
    while unchanged() and not catalog.released and (left := deadline - loop.time()) > 0:
        await catalog.wait(keys, catalog.index(keys), left)
