"""Consul's `service-router` config entry: reading and checking its routes. Pure.

A router says, for requests to its service (`Name`), which go elsewhere:
`Routes`, tried in order, each `{Match: {HTTP: ...}, Destination: ...}`;
the first whose match fits a request decides where it goes (a route with
no `Match` fits every request); a request no route fits goes to the
service itself, as with no router. Then the destination's splitter and
resolver apply, as they do to the service itself (Consul's chain: router,
splitter, resolver).

`Match.HTTP`: at most one of `PathExact`, `PathPrefix`, `PathRegex`
(`CaseInsensitive` folds the case of the first two);
`Header` (each `Name` and one of `Present`, `Exact`, `Prefix`, `Suffix`,
`Regex`, and `Invert`); `QueryParam` (each `Name` and one of `Present`,
`Exact`, `Regex`); `Methods`. The rules are the L7 intentions' (which
catalog may not import: intentions/validate.py): RE2 patterns, Go's method
names (upper-cased, as Consul does), header names that are tokens.
Reading `Match.HTTP` is router_match.py's, `Destination` router_destination.py's.
`routes_of` gives plain values (`HttpRule`, `HeaderRule`); the proxy
turns them into the intentions' matchers (proxy/routes.py), so a request
is matched by the one copy of that code.

`Destination`: `Service` (default: the router's own), `ServiceSubset`,
`PrefixRewrite` (only with `PathPrefix` or `PathExact`, as Consul asks:
it replaces the part of the path they matched), `RequestTimeout`,
`IdleTimeout`, `RequestHeaders` and `ResponseHeaders` `{Add, Set, Remove}` (a value is
sent as written, but `%%` is a `%`, as Envoy reads it; Envoy's
`%VARIABLE%`s are refused), `NumRetries`, `RetryOnConnectFailure`,
`RetryOn` and `RetryOnStatusCodes` (proxy/route_rules.py says what the
sidecar makes of them).

Refused with a 400 naming the field, because the sidecar would not do
them: the `RetryOn` conditions of gRPC statuses and rate
limits, header edits of the fields that frame the message or say where it
goes (Host, Content-Length, ...), namespaces and partitions other than
the default. Cross-entry checks (the router's
service speaks http, http2 or grpc; each destination the same protocol and
its subset defined) are made when an entry is written (`router_problems`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.catalog.durations import stored_seconds
from gossamer.catalog.registration_fields import Fields, Problems, shown
from gossamer.catalog.router_destination import read_destination
from gossamer.catalog.router_match import read_http

_ROUTE_FIELDS = ("Match", "Destination")
L7_PROTOCOLS = ("http", "http2", "grpc")


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
    case_insensitive: bool = False  # PathExact and PathPrefix match in any (ASCII) case


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
    response_headers: HeaderEdits = field(default_factory=HeaderEdits)
    num_retries: int = 0  # 0: not set (the sidecar's own number)
    retry_on_connect_failure: bool = False
    retry_on: tuple[str, ...] = ()  # Envoy's conditions (router_destination.RETRY_ON)
    retry_on_status_codes: tuple[int, ...] = ()
    idle_timeout_s: float = 0.0  # 0: not set

    @property
    def retries(self) -> bool:
        """Whether it says anything of retries (Consul's HasRetryFeatures)."""
        return bool(self.num_retries or self.retry_on_connect_failure or self.retry_on
                    or self.retry_on_status_codes)  # fmt: skip


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
                          headers, bool(http.get("CaseInsensitive")))  # fmt: skip
        query = tuple(QueryMatch(q["Name"], bool(q.get("Present")), q.get("Exact", ""),
                                 q.get("Regex", ""))
                      for q in http.get("QueryParam", ()))  # fmt: skip
        d = raw.get("Destination") or {}
        dest = Destination(
            d.get("Service") or name, d.get("ServiceSubset", ""), d.get("PrefixRewrite", ""),
            stored_seconds(d.get("RequestTimeout")), _edits_of(d.get("RequestHeaders")),
            _edits_of(d.get("ResponseHeaders")), int(d.get("NumRetries", 0)),
            bool(d.get("RetryOnConnectFailure")), tuple(d.get("RetryOn") or ()),
            tuple(d.get("RetryOnStatusCodes") or ()), stored_seconds(d.get("IdleTimeout")),
        )  # fmt: skip
        found.append(Route(match, query, dest))
    return tuple(found)


def _edits_of(edits: Mapping[str, Any] | None) -> HeaderEdits:
    e = edits or {}
    return HeaderEdits(_values(e.get("Add")), _values(e.get("Set")), tuple(e.get("Remove") or ()))


def _values(pairs: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """An edit's (name, value) pairs as sent: `%%` is a `%`, as Envoy reads a header value."""
    return tuple((name, value.replace("%%", "%")) for name, value in (pairs or {}).items())


def destinations(entry: Mapping[str, Any]) -> list[tuple[int, str, str]]:
    """`(route index, service, subset)` of each route of a stored entry."""
    return [(i, r.destination.service, r.destination.subset)
            for i, r in enumerate(routes_of(entry))]  # fmt: skip


def _route(raw: object, at: str, check_name: Any) -> dict[str, Any]:
    r = Fields(raw, at, _ROUTE_FIELDS)
    problems = Problems()
    out: dict[str, Any] = {}
    path_kind = ""
    if r.has("Match"):
        m = problems.read(None, Fields, r.values["Match"], r.at("Match"), ("HTTP",))
        if m is not None and m.has("HTTP"):
            http = problems.read(None, read_http, m.values["HTTP"], m.at("HTTP"))
            if http is not None:
                if http:
                    out["Match"] = {"HTTP": http}
                path_kind = next((k for k in ("PathExact", "PathPrefix") if k in http), "")
    dest = problems.read(None, read_destination, r.values.get("Destination", {}),
                         r.at("Destination"), path_kind, check_name)  # fmt: skip
    if dest:
        out["Destination"] = dest
    problems.raise_any()
    return out


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
