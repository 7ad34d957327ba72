"""Turning values into Consul's JSON, and reading Consul-style query flags."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web

from gossamer.agent.http.asked import Asked
from gossamer.agent.http.errors import BadRequest, ServerError
from gossamer.catalog.plain_json import BODY_MAX_DEPTH, lone_surrogate, too_deep
from gossamer.gossip.members import Member


def encode_json(data: Any) -> bytes:
    """Consul's compact JSON, as bytes (one encoding for fresh and prepared answers)."""
    return json.dumps(data, separators=(",", ":")).encode()


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=encode_json(data), content_type="application/json")


def member_json(m: Member) -> dict[str, Any]:
    return {
        "Name": m.name,
        "Addr": m.addr,
        "Port": m.port,
        "Tags": dict(m.tags),
        "Status": m.status_code,
        "ProtocolMin": m.protocol_min,
        "ProtocolMax": m.protocol_max,
        "ProtocolCur": m.protocol_cur,
        "DelegateMin": m.delegate_min,
        "DelegateMax": m.delegate_max,
        "DelegateCur": m.delegate_cur,
    }


_TRUE = {"", "1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def query_flag(request: Asked, name: str) -> bool:
    """Consul flags are on when present (`?prune`), or `=true/false`; else 400."""
    if name not in request.query:
        return False
    value = request.query[name].lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"query parameter {name!r}: expected true or false, got {value!r}")


async def read_json(request: web.Request) -> Any:
    """The request body as JSON (empty means null); 400 with Consul's wording otherwise.

    Every JSON write endpoint reads its body here, so the nesting limit holds for all.
    """
    raw = await request.read()
    if too_deep(raw):
        raise BadRequest(f"Request decode failed: JSON nested deeper than {BODY_MAX_DEPTH} levels")
    try:
        value = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"Request decode failed: {exc}") from None
    if at := lone_surrogate(raw, value):  # no UTF-8 holds it: the record could not be signed
        raise BadRequest(f"Request decode failed: {at}: a lone surrogate escape is not Unicode")
    return value


T = TypeVar("T")


def app_part(request: web.Request, key: web.AppKey[T], what: str) -> T:
    """A part the app may be built without (in tests); a 500 naming it when it is missing."""
    part = request.app.get(key)
    if part is None:
        raise ServerError(f"{what} not available on this agent")
    return part
