"""A service-router route's `Destination`, read and checked. Pure.

`Service` (default: the router's own), `ServiceSubset` (a DNS label),
`PrefixRewrite` (only with `PathPrefix` or `PathExact`, as Consul asks: it
replaces the part of the path they matched), `RequestTimeout`, and
`RequestHeaders` `{Add, Set, Remove}` (a value is sent as written, but
`%%` is a `%`, as Envoy reads it; Envoy's `%VARIABLE%`s are refused, as
are edits of the fields that frame the request or say where it goes).
What the sidecar would not do is a 400 naming the field, never stored and
ignored: per-route idle timeouts and retries, response header edits,
namespaces and partitions other than the default.
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


def read_destination(raw: object, at: str, path_kind: str, check_name: Any) -> dict[str, Any]:
    """A route's `Destination` at `at`, in its stored shape; RegistrationError naming every
    problem. `path_kind`: the route's PathExact or PathPrefix, if any (PrefixRewrite needs one);
    `check_name` checks a service name."""
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
    if not isinstance(name, str) or not TOKEN.fullmatch(name):
        return f"must be an HTTP header name, got {shown(name)}"
    if name.lower() in _FIXED_HEADERS:
        return f"{name!r} frames the request or says where it goes: it cannot be changed"
    return ""
