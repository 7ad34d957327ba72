"""`/v1/config`: write, read, list and delete config entries (Consul's api-docs/config.mdx).

- ``PUT /v1/config`` takes an entry (``Kind``, ``Name``, the kind's fields)
  and answers ``true``, or ``false`` when ``?cas=`` does not match (``cas=0``:
  only if none is held). A bad body is a 400 naming every field at fault
  (catalog/config_entries.py); kinds gossamer does not hold are refused.
  A ``service-intentions`` entry is written as intentions
  (config_intentions.py, which also serves its reads and deletes).
- ``GET /v1/config/<kind>/<name>`` answers the entry with ``CreateIndex`` and
  ``ModifyIndex``, 404 ``Config entry not found ...`` when none;
  ``GET /v1/config/<kind>`` lists a kind's entries by name. Both are blocking
  queries (``?index=&wait=``, ``X-Consul-Index``) on one index key that
  every config entry change bumps, here or arrived from a peer.
- ``DELETE /v1/config/<kind>/<name>`` answers ``{}`` as Consul does, or
  ``true``/``false`` when ``?cas=`` is given.
- Writes answer once the change is fsynced on this agent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from gossamer.agent.http.asked import Asked
from gossamer.agent.http.blocking import blocking_json
from gossamer.agent.http.catalog_access import catalog_of, check_datacenter
from gossamer.agent.http.config_intentions import (
    add_intentions_entry_routes,
    put_intentions,
)
from gossamer.agent.http.errors import BadRequest
from gossamer.agent.http.render import app_part, json_response, read_json
from gossamer.agent.replicated.config_entry_store import CONFIG, ConfigEntryStore
from gossamer.catalog.config_entries import (
    SERVICE_DEFAULTS,
    ConfigEntryNotFound,
    entry_name,
    kind_param,
)
from gossamer.intentions.config_entry import is_config_entry

CONFIG_ENTRIES_KEY: web.AppKey[ConfigEntryStore] = web.AppKey("config_entries", ConfigEntryStore)


def protocol_default(request: Asked) -> Callable[[str], str | None]:
    """A service's `service-defaults` Protocol, for the sidecar registrations the agent serves
    (catalog/config_defaults.py); none without a config-entry store (a test's app)."""
    store = request.app.get(CONFIG_ENTRIES_KEY)

    def protocol_of(service: str) -> str | None:
        entry = store.get(SERVICE_DEFAULTS, service) if store is not None else None
        return None if entry is None else str(entry["Protocol"])

    return protocol_of


def _store(request: web.Request) -> ConfigEntryStore:
    check_datacenter(request, catalog_of(request))
    return app_part(request, CONFIG_ENTRIES_KEY, "config entries are")


def _cas(request: web.Request) -> int | None:
    raw = request.query.get("cas")
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequest(f"query parameter 'cas': expected a ModifyIndex (an integer), got {raw!r}")
    return int(raw)


def _path(request: web.Request) -> tuple[str, str]:
    """The kind and name in the URL, checked as a body's are (400 naming them)."""
    kind = kind_param(request.match_info["kind"], "kind")
    return kind, entry_name(request.match_info["name"], "name")


async def put_entry(request: web.Request) -> web.Response:
    store = _store(request)
    cas = _cas(request)
    body = await read_json(request)
    if is_config_entry(body):  # held as intentions, by pair (config_intentions.py)
        return json_response(put_intentions(request, body, cas))
    return json_response(store.put(body, cas))


async def get_entry(request: web.Request) -> web.Response:
    store, kind_name = _store(request), _path(request)

    def build() -> dict[str, Any]:
        entry = store.get(*kind_name)
        if entry is None:
            raise ConfigEntryNotFound(*kind_name)
        return entry

    return await blocking_json(request, catalog_of(request), [CONFIG], build)


async def list_entries(request: web.Request) -> web.Response:
    store = _store(request)
    kind = kind_param(request.match_info["kind"], "kind")
    return await blocking_json(request, catalog_of(request), [CONFIG], lambda: store.of_kind(kind))


async def delete_entry(request: web.Request) -> web.Response:
    store, (kind, name), cas = _store(request), _path(request), _cas(request)
    deleted = store.delete(kind, name, cas)
    return json_response(deleted if cas is not None else {})


def add_config_entry_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/config", put_entry)
    add_intentions_entry_routes(router)  # before `{kind}`, which refuses service-intentions
    router.add_get("/v1/config/{kind}", list_entries)
    router.add_get("/v1/config/{kind}/{name}", get_entry)
    router.add_delete("/v1/config/{kind}/{name}", delete_entry)
