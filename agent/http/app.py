"""The aiohttp application: routes plus the cross-cutting middleware.

Error mapping lives here once: an exception that `errors.ERRORS` knows
becomes its status with a plain-text body (Consul answers errors in plain
text, and its clients print the body as the reason); aiohttp's own 404/405
pass through; anything else is a bug, logged with its traceback and answered
with a short 500. The same middleware times each request with the status it
was finally answered (`metrics_routes.record_request`): one middleware, not
two, because every middleware's frame stays alive for as long as a blocking
query is parked (~0.3 KiB each, bench/blocking_memory.py). It also holds
what sidecars act on (intentions, roots, leaves, connect health) until the
agent has caught up with its cluster after a start (agent/sync/first_sync.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gossamer.agent.http.acl_routes import add_acl_routes
from gossamer.agent.http.agent_figures import FIGURE_SOURCES_KEY
from gossamer.agent.http.agent_routes import add_agent_routes
from gossamer.agent.http.agent_token_routes import add_agent_token_routes
from gossamer.agent.http.api import AGENT_KEY, AgentApi
from gossamer.agent.http.blocking import PREPARED_KEY
from gossamer.agent.http.catalog_access import CATALOG_KEY
from gossamer.agent.http.catalog_routes import add_catalog_routes
from gossamer.agent.http.catalog_write_routes import EXTERNAL_NODES_KEY, add_catalog_write_routes
from gossamer.agent.http.clock_routes import add_clock_routes
from gossamer.agent.http.config_entry_routes import CONFIG_ENTRIES_KEY, add_config_entry_routes
from gossamer.agent.http.connect_ca_routes import IDENTITY_KEY, add_connect_ca_routes
from gossamer.agent.http.denial_routes import add_denial_routes
from gossamer.agent.http.errors import answer
from gossamer.agent.http.health_routes import add_health_routes
from gossamer.agent.http.intention_access import INTENTIONS_KEY, IntentionsAccess
from gossamer.agent.http.intention_check_routes import add_intention_check_routes
from gossamer.agent.http.intention_routes import add_intention_id_routes, add_intention_routes
from gossamer.agent.http.keyring_routes import add_keyring_routes
from gossamer.agent.http.local_routes import add_local_routes
from gossamer.agent.http.metrics_figures import HttpFigures
from gossamer.agent.http.metrics_routes import FIGURES_KEY, add_metrics_routes, record_request
from gossamer.agent.http.monitor_routes import add_monitor_routes
from gossamer.agent.http.prepared import PreparedAnswers
from gossamer.agent.http.status_routes import add_status_routes
from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.local.external_nodes import ExternalNodes
from gossamer.agent.replicated.config_entry_store import ConfigEntryStore
from gossamer.agent.sync.first_sync import FirstSync, gated
from gossamer.catalog.live import LiveCatalog

log = logging.getLogger("gossamer.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FIRST_SYNC_KEY: web.AppKey[FirstSync] = web.AppKey("first_sync", FirstSync)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one middleware: errors to statuses, and the request's timing (module docstring)."""
    started = time.perf_counter()
    try:
        first_sync = request.app.get(FIRST_SYNC_KEY)
        if first_sync is not None and first_sync.pending() and gated(request.path):
            await first_sync.wait()
        response = await handler(request)
    except web.HTTPException as exc:
        record_request(request, exc.status, started)
        if exc.status >= 400 and not exc.text:
            exc.text = f"{exc.status}: {exc.reason}\n"
        raise
    except Exception as exc:
        response = _error_response(request, exc)
    except BaseException:  # cancelled: counted as the 500 it would have been
        record_request(request, 500, started)
        raise
    record_request(request, response.status, started)
    return response


def _error_response(request: web.Request, exc: Exception) -> web.Response:
    status, text = error_answer(request.method, request.path, exc)
    return web.Response(status=status, text=text)


def error_answer(method: str, path: str, exc: Exception) -> tuple[int, str]:
    """The status and plain-text body of an error, logged as it deserves: this middleware
    and the light front (front.py) both answer errors with it."""
    answered = answer(exc)
    if answered is None:
        log.error("unhandled error in %s %s", method, path, exc_info=exc)
        return 500, "internal error; see the agent log\n"
    status, text = answered
    if status >= 500:
        log.warning("%s %s answered %d: %s", method, path, status, text)
    return status, text + "\n"


async def index(request: web.Request) -> web.Response:
    return web.Response(text="gossamer agent\n")


def make_app(
    agent: AgentApi,
    catalog: LiveCatalog,
    external_nodes: ExternalNodes | None = None,
    intentions: IntentionsAccess | None = None,
    identity: MeshIdentity | None = None,
    config_entries: ConfigEntryStore | None = None,
) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=4 * 1024 * 1024)
    app[FIGURES_KEY] = HttpFigures(time.monotonic())  # (its summaries' Rate counts from here)
    app[FIGURE_SOURCES_KEY] = []  # the composition root adds the other parts' figures
    app[PREPARED_KEY] = PreparedAnswers()
    app[AGENT_KEY] = agent
    app[CATALOG_KEY] = catalog
    if external_nodes is not None:
        app[EXTERNAL_NODES_KEY] = external_nodes
    if intentions is not None:
        app[INTENTIONS_KEY] = intentions
    if identity is not None:
        app[IDENTITY_KEY] = identity
    if config_entries is not None:
        app[CONFIG_ENTRIES_KEY] = config_entries
    app.router.add_get("/", index)
    add_agent_routes(app.router)
    add_clock_routes(app.router)
    add_status_routes(app.router)
    add_metrics_routes(app.router)
    add_agent_token_routes(app.router)
    add_acl_routes(app.router)
    add_monitor_routes(app)
    add_keyring_routes(app.router)
    add_local_routes(app.router)
    add_catalog_routes(app.router)
    add_catalog_write_routes(app.router)
    add_health_routes(app.router)
    add_intention_routes(app.router)
    add_intention_check_routes(app.router)
    add_connect_ca_routes(app.router)
    add_config_entry_routes(app.router)
    add_denial_routes(app)
    add_intention_id_routes(app.router)  # last: /{id} would shadow /exact, /check, /match
    return app
