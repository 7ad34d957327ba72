"""Consul's `service-router` config entry: reading and checking its routes. Pure.

A router says, for requests to its service (`Name`), which go elsewhere:
`Routes`, tried in order, each `{Match: {HTTP: ...}, Destination: ...}`;
the first whose match fits a request decides where it goes (a route with
no `Match` fits every request); a request no route fits goes to the
service itself, as with no router. Then the destination's splitter and
resolver apply, as they do to the service itself (Consul's chain: router,
splitter, resolver).

`Match.HTTP`: at most one of `PathExact`, `PathPrefix`, `PathRegex`;
`Header` (each `Name` and one of `Present`, `Exact`, `Prefix`, `Suffix`,
`Regex`, and `Invert`); `QueryParam` (each `Name` and one of `Present`,
`Exact`, `Regex`); `Methods`. The rules are the L7 intentions' (which
catalog may not import: intentions/validate.py): RE2 patterns, Go's method
names (upper-cased, as Consul does), header names that are tokens.
`routes_of` gives plain values (`HttpRule`, `HeaderRule`); the proxy
turns them into the intentions' matchers (proxy/routes.py), so a request
is matched by the one copy of that code.

`Destination`: `Service` (default: the router's own), `ServiceSubset`,
`PrefixRewrite` (only with `PathPrefix` or `PathExact`, as Consul asks:
it replaces the part of the path they matched), `RequestTimeout`, and
`RequestHeaders` `{Add, Set, Remove}` (a value is sent as written, but
`%%` is a `%`, as Envoy reads it; Envoy's `%VARIABLE%`s are refused).

Refused with a 400 naming the field, because the sidecar would not do
them: `IdleTimeout`, `NumRetries`, `RetryOnConnectFailure`, `RetryOn`,
`RetryOnStatusCodes` (a sidecar retries by its own rule, under its retry
budget), `ResponseHeaders`, request header edits of the fields that frame
the request or say where it goes (Host, Content-Length, ...), namespaces
and partitions other than the default. Cross-entry checks (the router's
service speaks http, http2 or grpc; each destination the same protocol and
its subset defined) are made when an entry is written (`router_problems`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.catalog.config_entries import SUBSET_NAME
from gossamer.catalog.durations import format_ns
from gossamer.catalog.registration_fields import (
    Fields,
    Problems,
    RegistrationError,
    item,
    shown,
)

_ROUTE_FIELDS = ("Match", "Destination")
_HTTP_FIELDS = ("PathExact", "PathPrefix", "PathRegex", "Header", "QueryParam", "Methods")
_HEADER_FIELDS = ("Name", "Present", "Exact", "Prefix", "Suffix", "Regex", "Invert")
_QUERY_FIELDS = ("Name", "Present", "Exact", "Regex")
_EDIT_FIELDS = ("Add", "Set", "Remove")
_DEST_FIELDS = ("Service", "ServiceSubset", "Namespace", "Partition", "PrefixRewrite",
                "RequestTimeout", "IdleTimeout", "NumRetries", "RetryOnConnectFailure",
                "RetryOn", "RetryOnStatusCodes", "RequestHeaders", "ResponseHeaders")  # fmt: skip
_RETRIES = "a sidecar retries by its own rule (a failed try on another instance, under its retry budget); per-route retries are not supported"  # noqa: E501
_NOT_HELD = {
    "IdleTimeout": "a per-route idle timeout is not supported (the upstream's idle_timeout_ms "
    "applies)",
    "NumRetries": _RETRIES,
    "RetryOnConnectFailure": _RETRIES,
    "RetryOn": _RETRIES,
    "RetryOnStatusCodes": _RETRIES,
    "ResponseHeaders": "response header changes are not supported by gossamer",
}
# Fields an edit may not touch: they frame the request, say where it goes, or who called
_FIXED_HEADERS = frozenset(("host", "content-length", "transfer-encoding", "connection",
                            "upgrade", "te", "trailer", "keep-alive", "proxy-connection",
                            "x-forwarded-client-cert", "expect"))  # fmt: skip
_VARIABLE = re.compile(r"%[A-Za-z_]+(\(.*?\))?%")  # Envoy's %DOWNSTREAM_REMOTE_ADDRESS% ...
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
L7_PROTOCOLS = ("http", "http2", "grpc")
# Pseudo-headers a match may name: the ones HTTP/1 and HTTP/2 requests both carry as the
# sidecar matches them (the intentions' list: proxy/http_codec.judged_request sets them)
PSEUDO_HEADERS = (":authority", ":method", ":path")
# Go's net/http method constants: Consul's isValidHTTPMethod accepts exactly these
HTTP_METHODS = ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")


@dataclass(frozen=True)
class HeaderRule:
    """One header condition: exactly one of `present`, `exact`, `prefix`, `suffix`,
    `regex`; `invert` negates it."""

    name: str
    present: bool = False
    exact: str = ""
    prefix: str = ""
    suffix: str = ""
    regex: str = ""
    invert: bool = False


@dataclass(frozen=True)
class HttpRule:
    """A route's `Match.HTTP`: every condition given must hold; none given matches all."""

    path_exact: str = ""
    path_prefix: str = ""
    path_regex: str = ""
    methods: tuple[str, ...] = ()
    headers: tuple[HeaderRule, ...] = ()


@dataclass(frozen=True)
class QueryMatch:
    """One query parameter condition: exactly one of `present`, `exact`, `regex`."""

    name: str
    present: bool = False
    exact: str = ""
    regex: str = ""


@dataclass(frozen=True)
class HeaderEdits:
    add: tuple[tuple[str, str], ...] = ()  # appended, beside any the request has
    set: tuple[tuple[str, str], ...] = ()  # replacing any the request has
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Destination:
    service: str  # never "": the router's own service when the entry gives none
    subset: str = ""
    prefix_rewrite: str = ""
    request_timeout_s: float = 0.0  # 0: not set
    request_headers: HeaderEdits = field(default_factory=HeaderEdits)


@dataclass(frozen=True)
class Route:
    http: HttpRule
    query: tuple[QueryMatch, ...]
    destination: Destination


def read_router(f: Fields, name: str, check_name: Any) -> dict[str, Any]:
    """The `Routes` of body `f` for service `name`, normalised to the stored JSON shape;
    RegistrationError naming every problem. `check_name` checks a service name."""
    raw = f.values.get("Routes", [])
    if not isinstance(raw, list):
        raise f.error("Routes", f"must be a list of {{Match, Destination}}, got {shown(raw)}")
    problems = Problems()
    routes = [problems.read(None, _route, r, f"{f.at('Routes')}[{i}]", check_name)
              for i, r in enumerate(raw)]  # fmt: skip
    problems.raise_any()
    return {"Routes": [r for r in routes if r is not None]}


def routes_of(entry: Mapping[str, Any]) -> tuple[Route, ...]:
    """The typed routes of a stored (already checked) service-router entry."""
    name = entry["Name"]
    found: list[Route] = []
    for raw in entry.get("Routes") or ():
        http = (raw.get("Match") or {}).get("HTTP") or {}
        headers = tuple(
            HeaderRule(h["Name"], bool(h.get("Present")), h.get("Exact", ""),
                        h.get("Prefix", ""), h.get("Suffix", ""), h.get("Regex", ""),
                        bool(h.get("Invert")))
            for h in http.get("Header", ())
        )  # fmt: skip
        match = HttpRule(http.get("PathExact", ""), http.get("PathPrefix", ""),
                          http.get("PathRegex", ""), tuple(http.get("Methods", ())),
                          headers)  # fmt: skip
        query = tuple(QueryMatch(q["Name"], bool(q.get("Present")), q.get("Exact", ""),
                                 q.get("Regex", ""))
                      for q in http.get("QueryParam", ()))  # fmt: skip
        d = raw.get("Destination") or {}
        edits = d.get("RequestHeaders") or {}
        dest = Destination(
            d.get("Service") or name, d.get("ServiceSubset", ""), d.get("PrefixRewrite", ""),
            _seconds(d.get("RequestTimeout")),
            HeaderEdits(_values(edits.get("Add")), _values(edits.get("Set")),
                        tuple(edits.get("Remove") or ())),
        )  # fmt: skip
        found.append(Route(match, query, dest))
    return tuple(found)


def _values(pairs: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """An edit's (name, value) pairs as sent: `%%` is a `%`, as Envoy reads a header value."""
    return tuple((name, value.replace("%%", "%")) for name, value in (pairs or {}).items())


def destinations(entry: Mapping[str, Any]) -> list[tuple[int, str, str]]:
    """`(route index, service, subset)` of each route of a stored entry."""
    return [(i, r.destination.service, r.destination.subset)
            for i, r in enumerate(routes_of(entry))]  # fmt: skip


def _seconds(text: object) -> float:
    from gossamer.catalog.durations import parse_ns

    return parse_ns(text) / 1e9 if isinstance(text, str) and text else 0.0


def _route(raw: object, at: str, check_name: Any) -> dict[str, Any]:
    r = Fields(raw, at, _ROUTE_FIELDS)
    problems = Problems()
    out: dict[str, Any] = {}
    path_kind = ""
    if r.has("Match"):
        m = problems.read(None, Fields, r.values["Match"], r.at("Match"), ("HTTP",))
        if m is not None and m.has("HTTP"):
            http = problems.read(None, _http, m.values["HTTP"], m.at("HTTP"))
            if http is not None:
                if http:
                    out["Match"] = {"HTTP": http}
                path_kind = next((k for k in ("PathExact", "PathPrefix") if k in http), "")
    dest = problems.read(None, _destination, r.values.get("Destination", {}),
                         r.at("Destination"), path_kind, check_name)  # fmt: skip
    if dest:
        out["Destination"] = dest
    problems.raise_any()
    return out


def _http(raw: object, at: str) -> dict[str, Any]:
    h = Fields(raw, at, _HTTP_FIELDS)
    out: dict[str, Any] = {}
    found: list[tuple[str, str]] = []
    paths = [k for k in ("PathExact", "PathPrefix", "PathRegex") if h.str_(k)]
    if len(paths) > 1:
        found.append((at, f"at most one of PathExact, PathPrefix, PathRegex, got "
                          f"{', '.join(paths)}"))  # fmt: skip
    for key in paths:
        value = h.str_(key)
        if key == "PathRegex":
            _regex(found, h.at(key), value)
        elif not value.startswith("/"):
            found.append((h.at(key), f'must start with "/", got {shown(value)}'))
        out[key] = value
    methods = tuple(m.upper() for m in h.str_list("Methods"))
    for j, method in enumerate(methods):
        if method not in HTTP_METHODS:
            found.append((f"{h.at('Methods')}[{j}]", f"must be one of {', '.join(HTTP_METHODS)}, "
                                                     f"got {shown(method)}"))  # fmt: skip
        elif method in methods[:j]:
            found.append((f"{h.at('Methods')}[{j}]", f"{shown(method)} is listed more than once"))
    if methods:
        out["Methods"] = list(methods)
    headers = []
    for k, one in enumerate(_list(h, "Header")):
        where = f"{h.at('Header')}[{k}]"
        hf = Fields(one, where, _HEADER_FIELDS)
        match = HeaderRule(hf.str_("Name"), hf.bool_("Present"), hf.str_("Exact"),
                           hf.str_("Prefix"), hf.str_("Suffix"), hf.str_("Regex"),
                           hf.bool_("Invert"))  # fmt: skip
        if not (_TOKEN.fullmatch(match.name) or match.name.lower() in PSEUDO_HEADERS):
            allowed = f"an HTTP header name or one of {', '.join(PSEUDO_HEADERS)}"
            found.append((hf.at("Name"), f"must be {allowed}, got {shown(match.name)}"))
        kinds = (match.present, match.exact, match.prefix, match.suffix, match.regex)
        if sum(1 for given in kinds if given) != 1:
            found.append((where, "exactly one of Present, Exact, Prefix, Suffix, Regex"))
        if match.regex:
            _regex(found, hf.at("Regex"), match.regex)
        headers.append({"Name": match.name, **_given(hf)})
    if headers:
        out["Header"] = headers
    queries = []
    for k, one in enumerate(_list(h, "QueryParam")):
        where = f"{h.at('QueryParam')}[{k}]"
        q = Fields(one, where, _QUERY_FIELDS)
        qname, present, exact, regex = q.str_("Name"), q.bool_("Present"), q.str_("Exact"), \
            q.str_("Regex")  # fmt: skip
        if not qname:
            found.append((q.at("Name"), "is required"))
        if sum(1 for given in (present, exact, regex) if given) != 1:
            found.append((where, "exactly one of Present, Exact, Regex"))
        if regex:
            _regex(found, q.at("Regex"), regex)
        queries.append({"Name": qname, **_given(q)})
    if queries:
        out["QueryParam"] = queries
    if found:
        raise RegistrationError(*found[0], more=found[1:])
    return out


def _regex(found: list[tuple[str, str]], at: str, pattern: str) -> None:
    """A pattern RE2 (Envoy's engine, and Go's, which Consul checks with) refuses, noted."""
    import re2  # type: ignore[import-untyped]  # (google-re2 ships no type hints)

    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(pattern, options)
    except re2.error as exc:
        said = exc.args[0] if exc.args else exc
        reason = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
        found.append((at, f"invalid regular expression: {reason}"))


def _given(f: Fields) -> dict[str, Any]:
    """A match's fields but its Name, the empty and false ones left out (as Consul's JSON)."""
    return {k: v for k, v in f.values.items() if k != "Name" and v not in ("", False)}


def _list(f: Fields, key: str) -> list[Any]:
    value = f.values.get(key, [])
    if not isinstance(value, list):
        raise f.error(key, f"must be a list, got {shown(value)}")
    return value


def _destination(raw: object, at: str, path_kind: str, check_name: Any) -> dict[str, Any]:
    d = Fields(raw, at, _DEST_FIELDS)
    problems = Problems()
    for key, why in _NOT_HELD.items():
        if d.values.get(key) not in (None, "", 0, False, [], {}):
            problems.add(d.error(key, why))
    for key in ("Namespace", "Partition"):
        if d.values.get(key, "") not in ("", "default"):
            problems.add(d.error(key, 'must be "default" or empty (namespaces, partitions: '
                                      "Enterprise)"))  # fmt: skip
    out: dict[str, Any] = {}
    service = problems.read("", d.str_, "Service")
    if service:
        problems.read(None, check_name, service, d.at("Service"))
        out["Service"] = service
    subset = problems.read("", d.str_, "ServiceSubset")
    if subset:
        if not SUBSET_NAME.fullmatch(subset):
            problems.add(d.error("ServiceSubset", f"{subset!r} is not a subset name (a DNS "
                                                  "label)"))  # fmt: skip
        out["ServiceSubset"] = subset
    rewrite = problems.read("", d.str_, "PrefixRewrite")
    if rewrite:
        if not path_kind:
            problems.add(d.error("PrefixRewrite", "needs Match.HTTP.PathPrefix or PathExact: "
                                                  "it replaces the part of the path they "
                                                  "matched"))  # fmt: skip
        out["PrefixRewrite"] = rewrite
    timeout = problems.read(0.0, d.duration, "RequestTimeout")
    if timeout:
        out["RequestTimeout"] = format_ns(round(timeout * 1e9))
    if d.has("RequestHeaders"):
        edits = problems.read(None, _edits, d.values["RequestHeaders"], d.at("RequestHeaders"))
        if edits:
            out["RequestHeaders"] = edits
    problems.raise_any()
    return out


def _edits(raw: object, at: str) -> dict[str, Any]:
    e = Fields(raw, at, _EDIT_FIELDS)
    problems = Problems()
    out: dict[str, Any] = {}
    for key in ("Add", "Set"):
        pairs = e.values.get(key, {})
        if not isinstance(pairs, dict):
            problems.add(e.error(key, f"must be an object of header name -> value, got "
                                      f"{shown(pairs)}"))  # fmt: skip
            continue
        for name, value in pairs.items():
            where = item(e.at(key), name)
            if why := _edit_problem(name):
                problems.add(RegistrationError(where, why))
            elif isinstance(value, str) and _VARIABLE.search(value.replace("%%", "")):
                problems.add(RegistrationError(where, f"{shown(value)}: Envoy's header "
                                               "variables (%NAME%) are not supported by "
                                               "gossamer; write %% for a % sign"))  # fmt: skip
            elif not isinstance(value, str) or any(c in value for c in "\r\n\0"):
                problems.add(RegistrationError(where, f"must be a string of one line, got "
                                                      f"{shown(value)}"))  # fmt: skip
        if pairs:
            out[key] = dict(pairs)
    no_names: tuple[str, ...] = ()
    removed = problems.read(no_names, e.str_list, "Remove")
    for k, name in enumerate(removed):
        if why := _edit_problem(name):
            problems.add(RegistrationError(f"{e.at('Remove')}[{k}]", why))
    if removed:
        out["Remove"] = list(removed)
    problems.raise_any()
    return out


def _edit_problem(name: object) -> str:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        return f"must be an HTTP header name, got {shown(name)}"
    if name.lower() in _FIXED_HEADERS:
        return f"{name!r} frames the request or says where it goes: it cannot be changed"
    return ""


def router_problems(routers: Mapping[str, Mapping[str, Any]], protocols: Mapping[str, str],
                    resolve_one: Any) -> dict[str, str]:  # fmt: skip
    """`{where: why}` for each router that Consul's chain compile would refuse: `where` is
    `service-router/<name>` (its service's protocol) or `service-router/<name>.Routes[i].
    Destination.<field>`. `protocols`: service -> its service-defaults Protocol (absent:
    tcp); `resolve_one(service, subset)` raises ValueError saying why it cannot resolve."""
    problems: dict[str, str] = {}
    for name, entry in routers.items():
        own = protocols.get(name, "tcp")
        if own not in L7_PROTOCOLS:
            problems[f"service-router/{name}"] = (
                f"service {name!r} has protocol {own!r} (its service-defaults; none: tcp): a "
                f"service-router needs {', '.join(L7_PROTOCOLS)}")  # fmt: skip
            continue
        for i, service, subset in destinations(entry):
            where = f"service-router/{name}.Routes[{i}].Destination"
            theirs = protocols.get(service, "tcp")
            if theirs != own:
                problems[f"{where}.Service"] = (
                    f"service {service!r} has protocol {theirs!r}, {name!r} has {own!r}: a "
                    "route's destination must speak its router's protocol")  # fmt: skip
                continue
            try:
                resolve_one(service, subset)
            except ValueError as exc:
                problems[f"{where}.{'ServiceSubset' if subset else 'Service'}"] = str(exc)
    return problems
