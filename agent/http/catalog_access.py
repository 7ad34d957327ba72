"""What the catalog and health handlers share: the LiveCatalog and their query parameters.

The integrator sets ``app[CATALOG_KEY] = live_catalog``; handlers get it with
`catalog_of`. `read_query` parses the parameters common to Consul's read
endpoints (``dc``, ``tag``, ``node-meta``, ``near``, ``filter``) before
anything waits, so bad input is a 400 at once; the queries they drive are the
pure `catalog.view`.

Consul's rules kept here:
- ``?dc=`` other than ours: Consul answers 500 "No path to datacenter" for a
  datacenter it cannot reach; so do we (agents of other datacenters never
  share records with us).
- ``tag`` is lower-cased here and matched case-insensitively by the view.
- ``node-meta`` is ``key:value`` (a missing ``:`` means an empty value),
  repeatable, all must match.
- ``near=_agent`` names this agent's node.
"""

from __future__ import annotations

from aiohttp import web

from gossamer.agent.http.api import AGENT_KEY
from gossamer.agent.http.asked import Asked
from gossamer.agent.http.errors import ServerError
from gossamer.catalog.filter import Expression, Struct, parse
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.view import ReadQuery

CATALOG_KEY: web.AppKey[LiveCatalog] = web.AppKey("catalog", LiveCatalog)
#: Optional: this agent's node name for ``near=_agent`` (else read from the AgentApi).
NODE_NAME_KEY: web.AppKey[str] = web.AppKey("catalog_node_name", str)


def catalog_of(request: Asked) -> LiveCatalog:
    return request.app[CATALOG_KEY]


def local_node_name(request: Asked) -> str:
    """The node this agent runs as, "" when the app knows none."""
    name = request.app.get(NODE_NAME_KEY)
    if name is not None:
        return name
    agent = request.app.get(AGENT_KEY)
    return agent.node_name if agent is not None else ""


# --- query parameters -------------------------------------------------------------------


def check_datacenter(request: Asked, catalog: LiveCatalog) -> None:
    dc = request.query.get("dc", "")
    if dc and dc != catalog.datacenter:
        raise ServerError(
            f"No path to datacenter: dc={dc!r}; this agent serves only {catalog.datacenter!r}"
        )


def parse_filter(request: Asked, schema: Struct) -> Expression | None:
    text = request.query.get("filter", "")
    if not text.strip():
        return None
    return parse(text, schema)  # FilterError: 400 by the error table


def read_query(request: Asked, catalog: LiveCatalog, schema: Struct) -> ReadQuery:
    """Every common read parameter, checked; raises FilterError/ServerError naming the bad one."""
    check_datacenter(request, catalog)
    near = request.query.get("near", "")
    if near == "_agent":
        near = local_node_name(request)
    return ReadQuery(
        tags=tuple(t.lower() for t in _all(request, "tag")),
        node_meta=tuple(_key_value(m) for m in _all(request, "node-meta")),
        near=near,
        filter=parse_filter(request, schema),
    )


def _key_value(text: str) -> tuple[str, str]:
    key, _, value = text.partition(":")
    return key, value


def _all(request: Asked, name: str) -> list[str]:
    return [v for v in request.query.getall(name, []) if v]
