"""`/v1/connect/intentions/denials`: what the proxies of this agent denied, lately.

gossamer's own endpoint (Consul has none like it). The agent keeps the rows
in memory only (intentions/denials.py: the last `WINDOW_MS`, at most
`MAX_ROWS` distinct source/destination/rule rows); a restart forgets them.

- ``PUT`` is a proxy's report: a JSON list of rows, merged into the table
  (counts added), answered ``true``; a bad report is a 400 listing every
  problem by row and field, and nothing of it is kept. It is trusted as far
  as the rest of the agent's HTTP API is (the proxies run beside the agent
  and speak to the address it serves).
- ``GET [?source=&destination=]`` lists the rows, most recently seen first,
  as a blocking query (``?index=&wait=``) on an index key of its own that
  each report moves, and that moves when rows age out. A parameter this
  endpoint does not know, or an empty filter, is a 400 naming it.
"""

from __future__ import annotations

import time

from aiohttp import web

from gossamer.agent.http.blocking import blocking_json
from gossamer.agent.http.catalog_access import catalog_of, check_datacenter
from gossamer.agent.http.errors import BadRequest
from gossamer.agent.http.render import json_response, read_json
from gossamer.intentions.denials import DenialError, DenialTable, denial_to_json, denials_from_json

DENIALS = "intention-denials"  # the blocking-query index key of this endpoint
PATH = "/v1/connect/intentions/denials"
DENIALS_KEY: web.AppKey[DenialTable] = web.AppKey("denials", DenialTable)
KNOWN_PARAMS = frozenset({"source", "destination", "index", "wait", "dc", "stale", "consistent",
                          "cached", "pretty"})  # fmt: skip


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def report(request: web.Request) -> web.Response:
    table, cat = request.app[DENIALS_KEY], catalog_of(request)
    try:
        rows = denials_from_json(await read_json(request))
    except DenialError as exc:
        raise BadRequest(str(exc)) from None
    table.expire(_now_ms())
    table.add_all(rows)
    cat.touch({DENIALS})
    return json_response(True)


async def list_denials(request: web.Request) -> web.Response:
    table, cat = request.app[DENIALS_KEY], catalog_of(request)
    check_datacenter(request, cat)
    unknown = sorted(set(request.query) - KNOWN_PARAMS)
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
                         "this endpoint takes source, destination, index and wait")  # fmt: skip
    wanted = {n: request.query[n] for n in ("source", "destination") if n in request.query}
    for name, value in wanted.items():
        if not value:
            raise BadRequest(f"query parameter {name!r}: must not be empty when given")
    if table.expire(_now_ms()):
        cat.touch({DENIALS})  # rows aged out: a client holding the old index re-reads

    def build() -> list[dict[str, object]]:
        return [
            denial_to_json(d)
            for d in table.rows()
            if wanted.get("source", d.source) == d.source
            and wanted.get("destination", d.destination) == d.destination
        ]

    return await blocking_json(request, cat, [DENIALS], build)


def add_denial_routes(app: web.Application) -> None:
    """Before the intention `/{id}` routes, which would take `denials` for an ID."""
    app[DENIALS_KEY] = DenialTable()
    app.router.add_get(PATH, list_denials)
    app.router.add_put(PATH, report)
