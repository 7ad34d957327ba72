"""A service-router route's `Destination`, read and checked. Pure.

`Service` (default: the router's own), `ServiceSubset` (a DNS label),
`PrefixRewrite` (only with `PathPrefix` or `PathExact`, as Consul asks: it
replaces the part of the path they matched; a path in visible ASCII, as it
starts the request line), `RequestTimeout`,
`IdleTimeout`, `RequestHeaders` and `ResponseHeaders` `{Add, Set, Remove}` (a value is
sent as written, but `%%` is a `%`, as Envoy reads it; Envoy's
`%VARIABLE%`s are refused, as are edits of the fields that frame the
message or say where it goes), and retries: `NumRetries`,
`RetryOnConnectFailure`, `RetryOn` (Envoy's conditions an HTTP/1 route can
act on) and `RetryOnStatusCodes`.
What the sidecar would not do is a 400 naming the field, never stored and
ignored: the gRPC and rate-limit retry conditions, namespaces and
partitions other than the default.
"""

from __future__ import annotations

import re
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
from gossamer.catalog.router_match import TOKEN

_EDIT_FIELDS = ("Add", "Set", "Remove")
_DEST_FIELDS = ("Service", "ServiceSubset", "Namespace", "Partition", "PrefixRewrite",
                "RequestTimeout", "IdleTimeout", "NumRetries", "RetryOnConnectFailure",
                "RetryOn", "RetryOnStatusCodes", "RequestHeaders", "ResponseHeaders")  # fmt: skip
# Envoy's retry conditions that Consul accepts in RetryOn: the ones an HTTP/1 route can act
# on, and the rest with why not (the gRPC ones read grpc-status, which routes, on HTTP/1
# upstreams only, never see)
RETRY_ON = ("5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx",
            "refused-stream")  # fmt: skip
_GRPC_ONLY = "a gRPC status condition: gossamer does not retry a gRPC call by its status"
_RETRY_ON_NOT_HELD = {
    "envoy-ratelimited": "gossamer has no rate limiter whose refusals could be retried"
}
for _grpc in ("cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"):
    _RETRY_ON_NOT_HELD[_grpc] = _GRPC_ONLY
# Fields an edit may not touch: they frame the message, say where it goes, or who called
_FIXED_HEADERS = frozenset(("host", "content-length", "transfer-encoding", "connection",
                            "upgrade", "te", "trailer", "keep-alive", "proxy-connection",
                            "x-forwarded-client-cert", "expect"))  # fmt: skip
# ... and on an answer: those that frame it or say how its connection goes on
_FIXED_RESPONSE = frozenset(("content-length", "transfer-encoding", "connection", "upgrade",
                             "trailer", "keep-alive", "proxy-connection"))  # fmt: skip
_VARIABLE = re.compile(r"%[A-Za-z_]+(\(.*?\))?%")  # Envoy's %DOWNSTREAM_REMOTE_ADDRESS% ...
# What a rewritten path may begin with: a "/" and visible ASCII but "#" (RFC 9112's origin
# form; anything else is sent percent-encoded). The rewrite starts the request target the
# sidecar writes, so a space, a line break or a byte past ASCII would break the request line
# of every request the route takes (Consul stores such a value; Envoy refuses it or sends it).
_REWRITE = re.compile(r"/[!-\"$-~]*")


def read_destination(raw: object, at: str, path_kind: str, check_name: Any) -> dict[str, Any]:
    """A route's `Destination` at `at`, in its stored shape; RegistrationError naming every
    problem. `path_kind`: the route's PathExact or PathPrefix, if any (PrefixRewrite needs one);
    `check_name` checks a service name."""
    d = Fields(raw, at, _DEST_FIELDS)
    problems = Problems()
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
        if not _REWRITE.fullmatch(rewrite):
            problems.add(d.error("PrefixRewrite", f'must be a path starting with "/", in '
                                                  f"visible ASCII characters other than '#' "
                                                  f"(percent-encode the others), got "
                                                  f"{shown(rewrite)}"))  # fmt: skip
        out["PrefixRewrite"] = rewrite
    for key in ("RequestTimeout", "IdleTimeout"):
        if timeout := problems.read(0.0, d.duration, key):
            out[key] = format_ns(round(timeout * 1e9))
    for key, fixed in (("RequestHeaders", _FIXED_HEADERS), ("ResponseHeaders", _FIXED_RESPONSE)):
        if d.has(key):
            edits = problems.read(None, _edits, d.values[key], d.at(key), fixed)
            if edits:
                out[key] = edits
    no_retries: dict[str, Any] = {}
    out.update(problems.read(no_retries, _retries, d))
    problems.raise_any()
    return out


def _retries(d: Fields) -> dict[str, Any]:
    """`NumRetries`, `RetryOnConnectFailure`, `RetryOn`, `RetryOnStatusCodes`, as stored."""
    problems = Problems()
    out: dict[str, Any] = {}
    if num := problems.read(0, d.int_, "NumRetries", 0, 2**32 - 1):  # Consul: a uint32
        out["NumRetries"] = num
    if problems.read(False, d.bool_, "RetryOnConnectFailure"):
        out["RetryOnConnectFailure"] = True
    no_names: tuple[str, ...] = ()
    conditions = problems.read(no_names, d.str_list, "RetryOn")
    for k, cond in enumerate(conditions):
        where = f"{d.at('RetryOn')}[{k}]"
        if cond in _RETRY_ON_NOT_HELD:
            problems.add(RegistrationError(where, f"{shown(cond)}: {_RETRY_ON_NOT_HELD[cond]}"))
        elif cond not in RETRY_ON:
            problems.add(RegistrationError(where, f"must be one of {', '.join(RETRY_ON)}, got "
                                                  f"{shown(cond)}"))  # fmt: skip
    if conditions:
        out["RetryOn"] = list(conditions)
    codes = d.values.get("RetryOnStatusCodes") or []
    if not isinstance(codes, list):
        problems.add(d.error("RetryOnStatusCodes", f"must be a list of HTTP statuses, got "
                                                   f"{shown(codes)}"))  # fmt: skip
        codes = []
    for k, code in enumerate(codes):
        if not isinstance(code, int) or isinstance(code, bool) or not 200 <= code <= 599:
            problems.add(RegistrationError(f"{d.at('RetryOnStatusCodes')}[{k}]",
                                           f"must be an HTTP status 200-599, got "
                                           f"{shown(code)}"))  # fmt: skip
    if codes:
        out["RetryOnStatusCodes"] = list(codes)
    problems.raise_any()
    return out


def _edits(raw: object, at: str, fixed: frozenset[str]) -> dict[str, Any]:
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
            if why := _edit_problem(name, fixed):
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
        if why := _edit_problem(name, fixed):
            problems.add(RegistrationError(f"{e.at('Remove')}[{k}]", why))
    if removed:
        out["Remove"] = list(removed)
    problems.raise_any()
    return out


def _edit_problem(name: object, fixed: frozenset[str]) -> str:
    if not isinstance(name, str) or not TOKEN.fullmatch(name):
        return f"must be an HTTP header name, got {shown(name)}"
    if name.lower() in fixed:
        return f"{name!r} frames the message or says where it goes: it cannot be changed"
    return ""
