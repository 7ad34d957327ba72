"""`service-intentions` config entries on `/v1/config`, as Consul ≥ 1.9 takes intentions.

Consul users write L7 intentions as one entry per destination (`consul config
write db-intentions.hcl`, which PUTs JSON to `/v1/config`; Terraform's
`consul_config_entry`; py-consul). gossamer stores intentions by pair, so an
entry is a view of the intentions whose destination is its `Name`:

- ``PUT /v1/config`` with ``Kind: service-intentions`` makes that
  destination's intentions the entry's sources: each source is upserted
  (its ID kept, the agent's stamps; an unchanged one is left alone) and an
  intention of the destination the entry does not name is deleted. A bad
  entry changes nothing: a 400 names every field at fault at the entry's
  own paths (``Sources[1].Permissions[0].HTTP.PathRegex: ...``). ``?cas=``
  compares with the entry's ``ModifyIndex`` (the highest of its
  intentions'; 0: none held). Each pair is its own write, fsynced before
  the answer; they are not one transaction (upserts first, then deletes).
- ``GET /v1/config/service-intentions/<name>`` answers the entry
  (`intentions/config_entry.py`'s shape), 404 when the destination has no
  intention; ``GET /v1/config/service-intentions`` lists every destination's.
  Both block on the intentions' index.
- ``DELETE /v1/config/service-intentions/<name>`` deletes the
  destination's intentions.

ACLs are the intentions' (`intentions:read|write` on the destination), as
Consul checks a `service-intentions` entry, not `service:*`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from gossamer.agent.http.blocking import blocking_json
from gossamer.agent.http.catalog_access import catalog_of, check_datacenter
from gossamer.agent.http.errors import BadRequest
from gossamer.agent.http.intention_access import IntentionsAccess, intentions_of, service_name
from gossamer.agent.http.render import json_response
from gossamer.agent.replicated.intention_store import INTENTIONS
from gossamer.catalog.config_entries import ConfigEntryNotFound
from gossamer.intentions.config_entry import (
    KIND,
    config_entries_to_json,
    config_entry_from_json,
    config_entry_to_json,
)
from gossamer.intentions.model import Intention


def _held(access: IntentionsAccess, destination: str) -> list[Intention]:
    return [ixn for ixn in access.store.current if ixn.destination == destination]


def _index(held: list[Intention]) -> int:
    return max((ixn.modify_index for ixn in held), default=0)


def _same(a: Intention, b: Intention) -> bool:
    return (a.action, a.permissions, a.description, dict(a.meta)) == (
        b.action, b.permissions, b.description, dict(b.meta))  # fmt: skip


def put_intentions(request: web.Request, body: Any, cas: int | None) -> bool:
    """Write a `service-intentions` entry; False when `cas` does not match."""
    access = intentions_of(request)
    wanted = config_entry_from_json(body)  # IntentionError: a 400 naming each field
    destination = wanted[0].destination
    held = {ixn.source: ixn for ixn in _held(access, destination)}
    if cas is not None and cas != _index(list(held.values())):
        return False
    for ixn in wanted:
        old = held.get(ixn.source)
        if old is None or not _same(old, ixn):  # the agent stamps ID, times and indexes
            access.store.upsert(replace(ixn, id="", created_at="", updated_at="",
                                        create_index=0, modify_index=0))  # fmt: skip
    named = {ixn.source for ixn in wanted}
    for source in held:
        if source not in named:
            access.store.delete(source, destination)
    return True


def _destination(request: web.Request) -> str:
    return service_name("name", request.match_info["name"])


async def get_intentions_entry(request: web.Request) -> web.Response:
    access, cat = intentions_of(request), catalog_of(request)
    check_datacenter(request, cat)
    destination = _destination(request)

    def build() -> dict[str, Any]:
        held = _held(access, destination)
        if not held:
            raise ConfigEntryNotFound(KIND, destination)
        return config_entry_to_json(held)

    return await blocking_json(request, cat, [INTENTIONS], build)


async def list_intentions_entries(request: web.Request) -> web.Response:
    access, cat = intentions_of(request), catalog_of(request)
    check_datacenter(request, cat)
    return await blocking_json(
        request, cat, [INTENTIONS], lambda: config_entries_to_json(access.store.current)
    )


async def delete_intentions_entry(request: web.Request) -> web.Response:
    access = intentions_of(request)
    check_datacenter(request, catalog_of(request))
    destination = _destination(request)
    raw = request.query.get("cas")
    if raw is not None and not raw.isdigit():
        raise BadRequest(f"query parameter 'cas': expected a ModifyIndex (an integer), got {raw!r}")
    held = _held(access, destination)
    if raw is not None and int(raw) != _index(held):
        return json_response(False)
    for ixn in held:
        access.store.delete(ixn.source, destination)
    return json_response(True if raw is not None else {})


def add_intentions_entry_routes(router: web.UrlDispatcher) -> None:
    """Before the generic `/v1/config/{kind}...` routes, which refuse this kind."""
    router.add_get(f"/v1/config/{KIND}", list_intentions_entries)
    router.add_get(f"/v1/config/{KIND}/{{name}}", get_intentions_entry)
    router.add_delete(f"/v1/config/{KIND}/{{name}}", delete_intentions_entry)
