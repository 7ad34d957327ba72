"""Decisions over HTTP: `/v1/connect/intentions/check`, `/match`, `/v1/agent/connect/authorize`.

All three answer from this agent's own copy of the intentions (every agent
holds them all), with the default policy of its config when nothing matches.

Consul's behaviour, and where gossamer goes beyond it:
- ``check?source=&destination=`` answers ``{"Allowed": bool}`` and, beyond
  Consul, the ``Reason``. An L7 intention (Permissions) is a deny, as in
  Consul, unless the request is described with ``method``, ``path`` and
  ``header=Name:Value`` (repeatable); then its permissions are evaluated.
- ``match?by=source|destination&name=X[&name=Y]`` answers ``{X: [...]}``,
  each list in evaluation order; it is a blocking query. Beyond Consul, the
  answer says the agent's default policy in ``X-Gossamer-Default-Policy``
  (``allow`` or ``deny``), and a reload that changes it wakes the query,
  so a proxy watching its intentions applies a new default at once.
- ``authorize`` takes ``{Target, ClientCertURI, ClientCertSerial}``; the
  source service comes from the SPIFFE URI
  (``spiffe://<trust-domain>/ns/default/dc/<dc>/svc/<service>``, any trust
  domain until the CA lands). Beyond Consul: ``Method``, ``Path`` and
  ``Headers`` (an object) evaluate L7 permissions. Unknown body fields are
  ignored, as Consul's decoder does; every bad field is listed in one 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Literal

from aiohttp import web

from gossamer.agent.http.blocking import blocking_json
from gossamer.agent.http.catalog_access import catalog_of, check_datacenter
from gossamer.agent.http.errors import BadRequest, problems_text
from gossamer.agent.http.intention_access import (
    BadServiceName,
    intentions_of,
    parse_name,
    required,
    service_name,
)
from gossamer.agent.http.render import json_response, read_json
from gossamer.agent.replicated.intention_store import INTENTIONS
from gossamer.intentions.codec import Fields, intention_to_json
from gossamer.intentions.decide import match
from gossamer.intentions.model import HttpRequest
from gossamer.intentions.spiffe import SpiffeError, parse_service_uri
from gossamer.intentions.validate import PSEUDO_HEADERS, Problem
from gossamer.proxy.http_codec import judged_request
from gossamer.proxy.http_target import BadTarget, normalize

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110: methods and header names
DEFAULT_POLICY_HEADER = "X-Gossamer-Default-Policy"
AUTHORIZE_FIELDS = ("Target", "ClientCertURI", "ClientCertSerial", "Method", "Path", "Headers")


def l7_request(
    method: str | None,
    path: str | None,
    headers: Iterable[tuple[str, str]],
    names: tuple[str, str, str],
    out: list[Problem],
) -> HttpRequest | None:
    """The HTTP request to evaluate L7 permissions against; None when nothing describes one.

    `names` are what the caller calls the method, path and headers fields,
    so problems name them. A missing method is GET and a missing path `/`;
    a path is normalized as the sidecars do (proxy/http_target.py).
    """
    header_list = list(headers)
    if method is None and path is None and not header_list:
        return None
    if method is not None and not _TOKEN.fullmatch(method):
        out.append(Problem(names[0], f"must be an HTTP method, got {method!r}"))
    if path is not None and not path.startswith("/"):
        out.append(Problem(names[1], f"must start with '/', got {path!r}"))
    elif path is not None:  # judged as the sidecar judges it: `/a/../admin` is `/admin`
        try:
            path = normalize(path.encode())[0].decode(errors="replace")
        except BadTarget as exc:
            out.append(Problem(names[1], str(exc)))
    fields: list[tuple[bytes, bytes]] = []
    for name, value in header_list:
        if not (_TOKEN.fullmatch(name) or name.lower() in PSEUDO_HEADERS):
            out.append(Problem(names[2], f"{name!r} is not a header name"))
            continue
        fields.append((name.encode(), value.encode()))
    # as the sidecars build it: repeated fields joined with ",", `:method` and `:path` set, the
    # authority under `host` and `:authority` both, whichever was given
    return judged_request((method or "GET").upper(), path or "/", fields)


def _query_headers(request: web.Request, out: list[Problem]) -> list[tuple[str, str]]:
    pairs = []
    for raw in request.query.getall("header", []):
        pseudo = raw[:1] == ":"  # `:authority:example.com`: the name's own colon first
        name, colon, value = raw[pseudo:].partition(":")
        name = ":" * pseudo + name
        if not colon:
            out.append(Problem("header", f"expected Name:Value, got {raw!r}"))
        else:
            pairs.append((name.strip(), value.strip()))
    return pairs


async def check(request: web.Request) -> web.Response:
    access = intentions_of(request)
    check_datacenter(request, catalog_of(request))
    source = service_name("source", required(request, "source"))
    destination = service_name("destination", required(request, "destination"))
    source_type = request.query.get("source-type", "consul")
    if source_type != "consul":
        raise BadRequest(f"source-type: only 'consul' is supported, got {source_type!r}")
    out: list[Problem] = []
    http = l7_request(
        request.query.get("method"),
        request.query.get("path"),
        _query_headers(request, out),
        ("method", "path", "header"),
        out,
    )
    if out:
        raise BadRequest(problems_text("request", out, {}))
    decision = access.store.decide(
        source, destination, request=http, default_allow=access.default_allow()
    )
    return json_response({"Allowed": decision.allowed, "Reason": decision.reason})


async def match_intentions(request: web.Request) -> web.Response:
    access, cat = intentions_of(request), catalog_of(request)
    check_datacenter(request, cat)
    raw_by = required(request, "by")
    if raw_by not in ("source", "destination"):
        raise BadRequest(f"'by' parameter must be one of 'source' or 'destination', got {raw_by!r}")
    by: Literal["source", "destination"] = "source" if raw_by == "source" else "destination"
    raw_names = request.query.getall("name", [])
    if not raw_names or not all(raw_names):
        raise BadRequest("required query parameter 'name' not set")
    names = [(raw, service_name("name", raw)) for raw in raw_names]

    def build() -> dict[str, list[dict[str, Any]]]:
        current = access.store.current
        return {raw: [intention_to_json(i) for i in match(current, by, n)] for raw, n in names}

    response = await blocking_json(request, cat, [INTENTIONS], build)
    # read after the wait: a reload during it bumped the index, so a stale pair is re-asked
    response.headers[DEFAULT_POLICY_HEADER] = "allow" if access.default_allow() else "deny"
    return response


def parse_authorize(body: object) -> tuple[str, str, HttpRequest | None]:
    """(source, target, request) from an authorize body; BadRequest listing every problem."""
    out: list[Problem] = []
    f = Fields(body, "", AUTHORIZE_FIELDS, out)
    if not isinstance(body, dict):
        raise BadRequest(problems_text("authorize request", out, {}))
    out[:] = [p for p in out if p.message != "unknown field"]  # Consul ignores them
    target = _required(f, out, "Target", parse_name)
    source = _required(f, out, "ClientCertURI", lambda uri: parse_service_uri(uri).service)
    f.text("ClientCertSerial")  # type-checked only: the identity is the URI's
    method = f.text("Method") if f.has("Method") else None
    path = f.text("Path") if f.has("Path") else None
    headers = f.meta("Headers")
    http = l7_request(method, path, headers.items(), ("Method", "Path", "Headers"), out)
    if out:
        raise BadRequest(problems_text("authorize request", out, {}))
    return source, target, http


def _required(f: Fields, out: list[Problem], name: str, convert: Callable[[str], str]) -> str:
    """A required string field passed through `convert` (its error: a problem at `name`)."""
    before = len(out)
    value = f.text(name)
    if len(out) > before:  # not a string: already said
        return ""
    if not value:
        out.append(Problem(name, "is required"))
        return ""
    try:
        return convert(value)
    except SpiffeError as exc:
        out.append(Problem(name, f"not a valid service SPIFFE ID: {exc}"))
    except BadServiceName as exc:
        out.append(Problem(name, str(exc)))
    return ""


async def authorize(request: web.Request) -> web.Response:
    access = intentions_of(request)
    source, target, http = parse_authorize(await read_json(request))
    decision = access.store.decide(
        source, target, request=http, default_allow=access.default_allow()
    )
    return json_response({"Authorized": decision.allowed, "Reason": decision.reason})


def add_intention_check_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/connect/intentions/check", check)
    router.add_get("/v1/connect/intentions/match", match_intentions)
    router.add_post("/v1/agent/connect/authorize", authorize)
