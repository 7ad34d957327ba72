"""`/v1/operator/keyring`: list, install, use and remove gossip keys.

Same verbs and JSON as Consul: GET lists, POST installs, PUT makes primary,
DELETE removes; the body is `{"Key": "<base64>"}`. The operation runs across
the whole ring through serf, so the answer says how many nodes took it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gossamer.agent.http.api import agent_of
from gossamer.agent.http.errors import BadRequest, failing_as
from gossamer.agent.http.render import json_response, read_json
from gossamer.gossip.keyring import validate_key
from gossamer.gossip.rpc import KeyResponse


def _entry(resp: KeyResponse, datacenter: str) -> dict[str, Any]:
    return {
        "WAN": False,
        "Datacenter": datacenter,
        "Segment": "",
        "Keys": dict(resp.keys or {}),
        "Messages": dict(resp.messages or {}),
        "NumNodes": resp.num_nodes,
    }


async def keyring_list(request: web.Request) -> web.Response:
    agent = agent_of(request)
    with failing_as("listing gossip keys failed"):
        resp = await agent.serf.list_keys()
    return json_response([_entry(resp, agent.local_node.identity.datacenter)])


async def _key_from_body(request: web.Request) -> str:
    body = await read_json(request)
    if not isinstance(body, dict) or "Key" not in body:
        raise BadRequest('Request decode failed: expected a JSON object {"Key": "<base64>"}')
    key = body["Key"]
    if not isinstance(key, str):
        raise BadRequest("Key: must be a string")
    return validate_key(key)


async def _keyring_op(request: web.Request) -> web.Response:
    key = await _key_from_body(request)
    serf = agent_of(request).serf
    op = {"POST": serf.install_key, "PUT": serf.use_key, "DELETE": serf.remove_key}
    verb = {"POST": "install", "PUT": "use", "DELETE": "remove"}[request.method]
    with failing_as(f"{verb} key failed"):
        await op[request.method](key)
    return json_response(None)


def add_keyring_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/operator/keyring", keyring_list)
    router.add_post("/v1/operator/keyring", _keyring_op)
    router.add_put("/v1/operator/keyring", _keyring_op)
    router.add_delete("/v1/operator/keyring", _keyring_op)
