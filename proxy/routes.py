"""A service-router's routes as matchers, and the request head a route rewrites. Pure.

`Matcher.first(request)` is the index of the first route whose match fits
the request (-1: none, the request goes where it would with no router).
Paths, methods and headers are matched by the L7 intentions' own code
(intentions/rules.py: `PermissionRule`, `HeaderRule`, RE2 full matches,
paths without their query string, header names in any case, a missing
header matching only an inverted `Present`); query parameters here, read
from the query string percent-decoded, the first value of a repeated name
(as Envoy reads them). A `CaseInsensitive` route's `PathExact` or
`PathPrefix` is matched here too, both sides folded to ASCII lower case
(Envoy's `case_sensitive: false`), its rule holding the rest. The same
match serves an HTTP/2 call: `route_index` takes its method, path and
header fields as plain values.

`rewritten_head` is the HTTP/1 request head a route sends on: its path's
matched prefix (or whole exact path, in any case when the route folds it)
replaced by `PrefixRewrite`, and its
`RequestHeaders` edits made (`Remove`, then `Set` replacing, then `Add`
appended: Envoy's order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from string import ascii_lowercase, ascii_uppercase
from urllib.parse import parse_qsl

from gossamer.catalog.config_router import HeaderEdits, QueryMatch, Route
from gossamer.intentions.model import Decision, HeaderMatch, HttpRequest
from gossamer.intentions.rules import HeaderRule, PermissionRule
from gossamer.intentions.validate import Pattern, compile_regex

_FOLD = str.maketrans(ascii_uppercase, ascii_lowercase)  # Envoy folds ASCII letters only


@dataclass(frozen=True)
class QueryRule:
    match: QueryMatch
    pattern: Pattern | None

    def matches(self, query: dict[str, str]) -> bool:
        value = query.get(self.match.name)
        if value is None:
            return False
        if self.match.present:
            return True
        if self.pattern is not None:
            return self.pattern.fullmatch(value) is not None
        return value == self.match.exact


@dataclass(frozen=True)
class FoldedPath:
    """A CaseInsensitive route's path condition, lower case: its exact path or its prefix."""

    exact: str
    prefix: str

    def matches(self, path: str) -> bool:
        folded = path.translate(_FOLD)
        return folded == self.exact if self.exact else folded.startswith(self.prefix)


@dataclass(frozen=True)
class Matcher:
    """Routes compiled once: each a permission rule (path, methods, headers) and its query
    parameter rules; `folds[i]`, route i's path in any case (None: in its rule), and `()`
    when no route folds (a router without one tests nothing more per route)."""

    rules: tuple[PermissionRule, ...]
    queries: tuple[tuple[QueryRule, ...], ...]
    folds: tuple[FoldedPath | None, ...] = ()

    def first(self, request: HttpRequest) -> int:
        """The index of the first route that fits `request`; -1 when none does."""
        query: dict[str, str] | None = None
        folds = self.folds
        for i, rule in enumerate(self.rules):
            if not rule.matches(request):
                continue
            if folds and (fold := folds[i]) is not None and not fold.matches(request.bare_path):
                continue
            wanted = self.queries[i]
            if wanted:
                if query is None:
                    query = query_of(request.path)
                if not all(q.matches(query) for q in wanted):
                    continue
            return i
        return -1


def route_index(matcher: Matcher, method: str, path: str, headers: Mapping[str, str]) -> int:
    """The route a request with these parts takes (-1: none): for a caller with no
    `HttpRequest` at hand (an HTTP/2 call's `:method`, `:path` and its fields, names lower
    case, a repeated one's values joined with ","; http_codec.joined_headers makes them)."""
    return matcher.first(HttpRequest(method, path, headers))


def compile_routes(routes: tuple[Route, ...], decisions: tuple[Decision, ...]) -> Matcher:
    """The matcher of `routes` (checked when stored: a pattern that fails here raises
    ValueError); `decisions[i]` is what route i's match decides."""
    regexes: dict[str, Pattern] = {}

    def regex(pattern: str) -> Pattern | None:
        if not pattern:
            return None
        if pattern not in regexes:
            regexes[pattern] = compile_regex(pattern)
        return regexes[pattern]

    rules = []
    queries = []
    folds: list[FoldedPath | None] = []
    for i, route in enumerate(routes):
        http = route.http
        exact, prefix, fold = http.path_exact, http.path_prefix, None
        if http.case_insensitive and (exact or prefix):
            fold = FoldedPath(exact.translate(_FOLD), prefix.translate(_FOLD))
            exact = prefix = ""  # (matched by the fold)
        folds.append(fold)
        headers = tuple(
            HeaderRule.of(HeaderMatch(h.name, h.present, h.exact, h.prefix, h.suffix, h.regex,
                                      h.invert), regex(h.regex))
            for h in http.headers
        )  # fmt: skip
        rules.append(PermissionRule(i, "route", exact, prefix, regex(http.path_regex),
                                    frozenset(http.methods), headers,
                                    (1, decisions[i])))  # fmt: skip
        queries.append(tuple(QueryRule(q, regex(q.regex)) for q in route.query))
    return Matcher(tuple(rules), tuple(queries),
                   tuple(folds) if any(f is not None for f in folds) else ())  # fmt: skip


def query_of(path: str) -> dict[str, str]:
    """The query parameters of a request target, decoded; the first value of each name."""
    _, mark, rest = path.partition("?")
    if not mark:
        return {}
    found: dict[str, str] = {}
    for name, value in parse_qsl(rest.split("#", 1)[0], keep_blank_values=True):
        found.setdefault(name, value)
    return found


def rewritten_head(head: bytes, prefix: str, rewrite: str, edits: HeaderEdits) -> bytes:
    """`head` (a request line, fields, the blank line) with the path's `prefix` replaced by
    `rewrite` (when `rewrite` is given and the path starts with `prefix`, in any ASCII case:
    a CaseInsensitive route took it so, and a route that is not took it only with `prefix`
    as written) and `edits` made."""
    lines = head.split(b"\r\n")
    if rewrite and prefix:
        method, target, version = lines[0].split(b" ", 2)
        old, new = prefix.encode("latin-1"), rewrite.encode("latin-1")
        if target[: len(old)].lower() == old.lower():  # (bytes: ASCII letters only)
            target = new + target[len(old) :]
            if target.startswith(b"//"):  # `/api/` + `/x` would read as an authority
                target = target[1:]
            lines[0] = b" ".join((method, target, version))
    if edits.remove or edits.set or edits.add:
        gone = {n.lower().encode("latin-1") for n in (*edits.remove, *(n for n, _ in edits.set))}
        fields = [line for line in lines[1:-2]
                  if line.split(b":", 1)[0].strip().lower() not in gone]  # fmt: skip
        fields += [b"%s: %s" % (n.encode("latin-1"), v.encode("utf-8"))
                   for n, v in (*edits.set, *edits.add)]  # fmt: skip
        lines = [lines[0], *fields, b"", b""]
    return b"\r\n".join(lines)
