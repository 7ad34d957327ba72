"""`/v1/connect/ca/*` and `/v1/agent/connect/ca/*`: the trust bundle, leaves, the CA configuration.

Consul's API (api-docs/connect/ca.mdx, agent/connect.mdx), with these choices:
- Roots (both paths) are blocking queries on the index key that changes of
  root entries bump, the configuration on the one every change of the CA
  map bumps (agent/replicated/ca_store.py); `?pem=true`
  answers the trusted roots as one PEM text instead, as Consul does.
- `GET /v1/agent/connect/ca/leaf/<service>` answers only for a service
  registered on this agent (403 naming it otherwise). The first request
  issues the leaf (written to disk before the answer); a blocking request
  returns when the leaf is renewed or the roots change. `CertPEM` holds the
  leaf followed by this agent's intermediate.
- `PUT /v1/connect/ca/configuration` changes TTLs, installs or rotates a
  root (agent/identity/ca_config.py) and answers `true` once written.
- gossamer's own: `PUT /v1/connect/ca/revoke-agent/<node>` (`{"Reason"}`
  optional; 404 for a node the catalog does not know) writes the agent's
  revocation into the CA map; `GET /v1/connect/ca/revoked` lists them.
Errors (CaConfigError 400, ServiceNotHere 403 ...) are the error table's.
"""

from __future__ import annotations

from aiohttp import web

from gossamer.agent.http.blocking import blocking_json
from gossamer.agent.http.catalog_access import catalog_of
from gossamer.agent.http.errors import BadRequest, NotFound
from gossamer.agent.http.render import app_part, json_response, query_flag, read_json
from gossamer.agent.identity.ca_config import apply_change, read_change
from gossamer.agent.identity.leaves import leaf_key
from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.replicated.ca_store import CA, CA_ROOTS
from gossamer.proxy.ca.keys import certificate_pem

IDENTITY_KEY: web.AppKey[MeshIdentity] = web.AppKey("identity", MeshIdentity)


def identity_of(request: web.Request) -> MeshIdentity:
    return app_part(request, IDENTITY_KEY, "the mesh CA is")


async def ca_roots(request: web.Request) -> web.Response:
    identity = identity_of(request)
    if query_flag(request, "pem"):  # Consul's ?pem=true: the roots as one PEM chain
        pem = "".join(certificate_pem(c) for c in identity.trust_bundle())
        return web.Response(text=pem, content_type="application/pem-certificate-chain")
    return await blocking_json(request, catalog_of(request), [CA_ROOTS], identity.roots_json)


async def ca_leaf(request: web.Request) -> web.Response:
    identity, service = identity_of(request), request.match_info["service"]
    identity.leaf(service)  # 403 / 503 before any wait; issues (and stores) the first leaf
    keys = [leaf_key(service), CA_ROOTS]
    return await blocking_json(
        request, catalog_of(request), keys, lambda: identity.leaf_json(service)
    )


async def ca_configuration(request: web.Request) -> web.Response:
    identity = identity_of(request)
    return await blocking_json(request, catalog_of(request), [CA], identity.config_json)


async def ca_set_configuration(request: web.Request) -> web.Response:
    identity = identity_of(request)
    change = read_change(identity, await read_json(request))
    apply_change(identity, change)
    return json_response(True)


async def ca_revoke_agent(request: web.Request) -> web.Response:
    identity, node = identity_of(request), request.match_info["node"]
    record = catalog_of(request).record(node)
    if record is None or not record.node_id:
        raise NotFound(f"unknown node: {node}")
    body = await read_json(request)
    reason = body.get("Reason", "") if isinstance(body, dict) else ""
    if not isinstance(reason, str):
        raise BadRequest("Reason: must be a string")
    identity.revoke(record.node_id, node, reason)
    return json_response(True)


async def ca_revoked(request: web.Request) -> web.Response:
    identity = identity_of(request)
    return await blocking_json(request, catalog_of(request), [CA], identity.revoked_json)


def add_connect_ca_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/connect/ca/roots", ca_roots)
    router.add_get("/v1/agent/connect/ca/roots", ca_roots)
    router.add_get("/v1/agent/connect/ca/leaf/{service}", ca_leaf)
    router.add_get("/v1/connect/ca/configuration", ca_configuration)
    router.add_put("/v1/connect/ca/configuration", ca_set_configuration)
    router.add_put("/v1/connect/ca/revoke-agent/{node}", ca_revoke_agent)
    router.add_get("/v1/connect/ca/revoked", ca_revoked)
