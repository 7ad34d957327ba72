"""A service-router route's `Match.HTTP`, read and checked. Pure.

At most one of `PathExact`, `PathPrefix`, `PathRegex` (a path starts with
"/"; a pattern is RE2's, as Envoy's engine and Go's, which Consul checks
with); `CaseInsensitive`, which Consul gives Envoy as the route's
`case_sensitive: false`: it folds the case of `PathExact` and `PathPrefix`
only (Envoy leaves a regex as written, so with `PathRegex` it would change
nothing: refused, the 400 saying to write `(?i)` in the pattern); `Methods`
as Go's method constants, upper-cased as Consul does, each once; `Header`
(each `Name`, a header name or one of the pseudo-headers the sidecar
matches, and exactly one of `Present`, `Exact`, `Prefix`, `Suffix`,
`Regex`, with `Invert`); `QueryParam` (each `Name` and exactly one of
`Present`, `Exact`, `Regex`). Every problem is listed in one
RegistrationError, each naming its field. The result is the stored JSON
shape, empty and false fields left out as Consul's JSON leaves them.
"""

from __future__ import annotations

import re
from typing import Any

from gossamer.catalog.registration_fields import Fields, RegistrationError, shown

_HTTP_FIELDS = ("PathExact", "PathPrefix", "PathRegex", "CaseInsensitive", "Header",
                "QueryParam", "Methods")  # fmt: skip
_HEADER_FIELDS = ("Name", "Present", "Exact", "Prefix", "Suffix", "Regex", "Invert")
_QUERY_FIELDS = ("Name", "Present", "Exact", "Regex")
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110 §5.6.2)
# Pseudo-headers a match may name: the ones HTTP/1 and HTTP/2 requests both carry as the
# sidecar matches them (the intentions' list: proxy/http_codec.judged_request sets them)
PSEUDO_HEADERS = (":authority", ":method", ":path")
# Go's net/http method constants: Consul's isValidHTTPMethod accepts exactly these
HTTP_METHODS = ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
Found = list[tuple[str, str]]  # (field, why), in the order met


def read_http(raw: object, at: str) -> dict[str, Any]:
    """`Match.HTTP` at `at`, in its stored shape; RegistrationError naming every problem."""
    h = Fields(raw, at, _HTTP_FIELDS)
    found: Found = []
    out = _paths(h, at, found)
    methods = _methods(h, found)
    if methods:
        out["Methods"] = methods
    headers = [_header(one, f"{h.at('Header')}[{k}]", found)
               for k, one in enumerate(_list(h, "Header"))]  # fmt: skip
    if headers:
        out["Header"] = headers
    queries = [_query(one, f"{h.at('QueryParam')}[{k}]", found)
               for k, one in enumerate(_list(h, "QueryParam"))]  # fmt: skip
    if queries:
        out["QueryParam"] = queries
    if found:
        raise RegistrationError(*found[0], more=found[1:])
    return out


def _paths(h: Fields, at: str, found: Found) -> dict[str, Any]:
    out: dict[str, Any] = {}
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
    fold = h.values.get("CaseInsensitive", False)
    if not isinstance(fold, bool):
        found.append((h.at("CaseInsensitive"), f"must be true or false, got {shown(fold)}"))
    elif fold and "PathRegex" in out:
        found.append((h.at("CaseInsensitive"), "folds the case of PathExact and PathPrefix only, "
                                               "as Envoy's case_sensitive: write (?i) at the "
                                               "start of the PathRegex instead"))  # fmt: skip
    elif fold:
        out["CaseInsensitive"] = True
    return out


def _methods(h: Fields, found: Found) -> list[str]:
    methods = [m.upper() for m in h.str_list("Methods")]
    for j, method in enumerate(methods):
        if method not in HTTP_METHODS:
            found.append((f"{h.at('Methods')}[{j}]", f"must be one of {', '.join(HTTP_METHODS)}, "
                                                     f"got {shown(method)}"))  # fmt: skip
        elif method in methods[:j]:
            found.append((f"{h.at('Methods')}[{j}]", f"{shown(method)} is listed more than once"))
    return methods


def _header(one: object, where: str, found: Found) -> dict[str, Any]:
    hf = Fields(one, where, _HEADER_FIELDS)
    # (every field read first, in order: a field of the wrong type is the one error raised)
    name, *kinds = (hf.str_("Name"), hf.bool_("Present"), hf.str_("Exact"), hf.str_("Prefix"),
                    hf.str_("Suffix"), hf.str_("Regex"))  # fmt: skip
    hf.bool_("Invert")
    if not (TOKEN.fullmatch(name) or name.lower() in PSEUDO_HEADERS):
        allowed = f"an HTTP header name or one of {', '.join(PSEUDO_HEADERS)}"
        found.append((hf.at("Name"), f"must be {allowed}, got {shown(name)}"))
    if sum(1 for given in kinds if given) != 1:
        found.append((where, "exactly one of Present, Exact, Prefix, Suffix, Regex"))
    if regex := hf.str_("Regex"):
        _regex(found, hf.at("Regex"), regex)
    return {"Name": name, **_given(hf)}


def _query(one: object, where: str, found: Found) -> dict[str, Any]:
    q = Fields(one, where, _QUERY_FIELDS)
    name, present, exact, regex = q.str_("Name"), q.bool_("Present"), q.str_("Exact"), \
        q.str_("Regex")  # fmt: skip
    if not name:
        found.append((q.at("Name"), "is required"))
    if sum(1 for given in (present, exact, regex) if given) != 1:
        found.append((where, "exactly one of Present, Exact, Regex"))
    if regex:
        _regex(found, q.at("Regex"), regex)
    return {"Name": name, **_given(q)}


def _regex(found: Found, at: str, pattern: str) -> None:
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
