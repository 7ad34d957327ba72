"""Validation of intentions: every problem at once, each naming its field.

Follows Consul's `ServiceIntentionsConfigEntry.validate` and the legacy
`Intention.Validate` (agent/structs), with two deliberate differences:
Consul stops at the first L7 problem, we list them all (a whole policy file is
fixed in one pass); and regexes are compiled here with RE2 (Envoy's engine,
through google-re2), where Consul leaves them to Envoy and a bad one only
shows up as a proxy that will not configure.

Field names are Consul's JSON names (`Permissions[1].HTTP.PathRegex`), so an
HTTP 400 or a CLI error points at the key the user wrote.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from gossamer.intentions.model import ACTIONS, WILDCARD, HeaderMatch, Intention, Permission

# Consul's metadata limits (structs.metaMaxKeyPairs, metaKeyMaxLength,
# metaValueMaxLength); Description shares the value limit. Lengths are
# counted in UTF-8 bytes, as Go's len() does.
META_MAX_PAIRS = 64
META_KEY_MAX = 128
META_VALUE_MAX = 512
DESCRIPTION_MAX = 512
# Go's net/http method constants: Consul's isValidHTTPMethod accepts exactly these.
HTTP_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")
)
# A DNS label (letters, digits, inner hyphens, at most 63), plus inner
# underscores, which DNS tolerates and service names often use.
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")
_META_KEY = re.compile(r"[A-Za-z0-9_-]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
# The HTTP/2 pseudo-headers a Header rule may name besides: the ones the sidecars judge on
# HTTP/1 and HTTP/2 alike (proxy/http_codec.judged_request: `:method`, `:path`, and the
# authority under both its names). `:scheme` and `:protocol` only an HTTP/2 call carries, so
# a rule on them would hold for one protocol and not the other: refused. Matched in any case,
# as every header name (Envoy lower-cases a matcher's name); Consul checks no name at all.
PSEUDO_HEADERS = (":authority", ":method", ":path")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, at one field."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class IntentionError(ValueError):
    """Bad intention input; carries every problem found, one line each when printed."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def shown(value: object, limit: int = 100) -> str:
    """A value quoted as JSON for a message, cut short when huge."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # ValueError: an int past Python's 4300-digit limit
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Pattern(Protocol):
    """A compiled RE2 pattern (google-re2)."""

    def fullmatch(self, text: str) -> object | None: ...


def compile_regex(pattern: str) -> Pattern:
    """`pattern` compiled with RE2, Envoy's engine (and Go's, which Consul checks with): its
    syntax and its meaning exactly (`[[:digit:]]`, ASCII `\\w`), and linear time whatever the
    text, where Python's re backtracks (`(a+)+b` on a path a caller writes would stall the
    proxy). ValueError says why not. Loaded on first use: ~3 MiB a proxy with no regex rule
    never pays."""
    import re2  # type: ignore[import-untyped]  # (google-re2 ships no type hints)

    options = re2.Options()
    options.log_errors = False  # (else every bad pattern is also printed on stderr)
    try:
        return cast(Pattern, re2.compile(pattern, options))
    except re2.error as exc:
        raise ValueError(f"invalid regular expression: {re2_reason(exc)}") from None


def re2_reason(exc: Exception) -> str:
    """RE2's own words for a pattern it refused (they come as bytes)."""
    said = exc.args[0] if exc.args else exc
    return said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)


def validate(intention: Intention) -> list[Problem]:
    """Every problem with `intention`; an empty list means it may be stored."""
    out: list[Problem] = []
    _name(out, "SourceName", intention.source)
    _name(out, "DestinationName", intention.destination)
    _action_or_permissions(out, intention)
    for i, perm in enumerate(intention.permissions):
        _permission(out, f"Permissions[{i}]", perm)
    if _bytes(intention.description) > DESCRIPTION_MAX:
        out.append(Problem("Description", f"exceeds maximum length {DESCRIPTION_MAX}"))
    _meta(out, intention.meta)
    if intention.id and not _UUID.fullmatch(intention.id):
        out.append(Problem("ID", f"must be a UUID, got {shown(intention.id)}"))
    for fname, stamp in (("CreatedAt", intention.created_at), ("UpdatedAt", intention.updated_at)):
        if stamp and not _RFC3339.fullmatch(stamp):
            out.append(Problem(fname, f"must be an RFC 3339 timestamp, got {shown(stamp)}"))
    for fname, index in (
        ("CreateIndex", intention.create_index),
        ("ModifyIndex", intention.modify_index),
    ):
        if not 0 <= index < 2**64:
            out.append(Problem(fname, f"must be an unsigned 64-bit integer, got {shown(index)}"))
    return out


def check(intention: Intention) -> Intention:
    """`intention` itself when valid, else IntentionError with every problem."""
    problems = validate(intention)
    if problems:
        raise IntentionError(problems)
    return intention


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _name(out: list[Problem], fname: str, name: str) -> None:
    if name == "":
        out.append(Problem(fname, "is required"))
    elif name == WILDCARD:
        return
    elif WILDCARD in name:
        out.append(Problem(fname, f"wildcard '*' cannot be part of a name, got {shown(name)}"))
    elif not _NAME.fullmatch(name):
        out.append(
            Problem(fname, f'must be a DNS-label-like service name or "*", got {shown(name)}')
        )


def _action_or_permissions(out: list[Problem], ixn: Intention) -> None:
    if ixn.action is not None and ixn.permissions:
        out.append(Problem("Action", "exactly one of Action or Permissions is required, got both"))
    elif ixn.action is None and not ixn.permissions:
        out.append(
            Problem("Action", "exactly one of Action or Permissions is required, got neither")
        )
    if ixn.action is not None and ixn.action not in ACTIONS:
        out.append(Problem("Action", f'must be "allow" or "deny", got {shown(ixn.action)}'))
    if ixn.permissions and ixn.destination == WILDCARD:
        out.append(Problem("Permissions", "a wildcard destination cannot carry L7 permissions"))


def _permission(out: list[Problem], path: str, perm: Permission) -> None:
    if perm.action not in ACTIONS:
        out.append(
            Problem(f"{path}.Action", f'must be "allow" or "deny", got {shown(perm.action)}')
        )
    http = perm.http
    hpath = f"{path}.HTTP"
    if http is None:
        out.append(Problem(hpath, "is required"))
        return
    paths = [(k, v) for k, v in (("PathExact", http.path_exact), ("PathPrefix", http.path_prefix),
                                 ("PathRegex", http.path_regex)) if v]  # fmt: skip
    if len(paths) > 1:
        out.append(Problem(hpath, "at most one of PathExact, PathPrefix, PathRegex"))
    for key, value in paths:
        if key == "PathRegex":
            _regex(out, f"{hpath}.PathRegex", value)
        elif not value.startswith("/"):
            out.append(Problem(f"{hpath}.{key}", f'must start with "/", got {shown(value)}'))
    _methods(out, f"{hpath}.Methods", http.methods)
    for k, header in enumerate(http.headers):
        _header(out, f"{hpath}.Header[{k}]", header)
    if not (paths or http.methods or http.headers):
        out.append(Problem(hpath, "must match on at least one of a path, Methods or Header"))


def _methods(out: list[Problem], path: str, methods: Sequence[str]) -> None:
    seen: set[str] = set()
    for j, method in enumerate(methods):
        if method not in HTTP_METHODS:
            allowed = ", ".join(sorted(HTTP_METHODS))
            out.append(
                Problem(
                    f"{path}[{j}]", f"must be one of {allowed} (uppercase), got {shown(method)}"
                )
            )
        elif method in seen:
            out.append(Problem(f"{path}[{j}]", f"{shown(method)} is listed more than once"))
        seen.add(method)


def _header(out: list[Problem], path: str, header: HeaderMatch) -> None:
    if not header.name:
        out.append(Problem(f"{path}.Name", "is required"))
    elif not (_HEADER_NAME.fullmatch(header.name) or header.name.lower() in PSEUDO_HEADERS):
        pseudo = ", ".join(PSEUDO_HEADERS)
        out.append(
            Problem(
                f"{path}.Name",
                f"must be an HTTP header name or one of the pseudo-headers {pseudo}, "
                f"got {shown(header.name)}",
            )
        )
    kinds = [header.present, header.exact, header.prefix, header.suffix, header.contains,
             header.regex]  # fmt: skip
    if sum(1 for kind in kinds if kind) != 1:
        out.append(Problem(path, "exactly one of Present, Exact, Prefix, Suffix, Contains, Regex"))
    # Consul refuses IgnoreCase beside Present or Regex ("should set one of Exact, Prefix,
    # Suffix, or Contains when using IgnoreCase"); Envoy would ignore it on a regex, so a rule
    # that reads case-blind would silently be case-sensitive.
    for given, kind in ((header.present, "Present"), (header.regex, "Regex")):
        if header.ignore_case and given:
            out.append(
                Problem(
                    f"{path}.IgnoreCase",
                    f"applies only to Exact, Prefix, Suffix or Contains, not to {kind}",
                )
            )
    if header.regex:
        _regex(out, f"{path}.Regex", header.regex)


def _regex(out: list[Problem], path: str, pattern: str) -> None:
    try:
        compile_regex(pattern)
    except ValueError as exc:
        message = str(exc)
        if not message.startswith("invalid regular expression"):
            message = f"invalid regular expression: {message}"
        out.append(Problem(path, message))


def _meta(out: list[Problem], meta: object) -> None:
    if not isinstance(meta, dict) and not hasattr(meta, "items"):
        out.append(Problem("Meta", "must be a map of strings"))
        return
    items = list(meta.items())
    if len(items) > META_MAX_PAIRS:
        out.append(Problem("Meta", f"exceeds maximum element count {META_MAX_PAIRS}"))
    for key, value in sorted(items, key=lambda kv: str(kv[0])):
        where = f"Meta[{shown(key)}]"
        if not isinstance(key, str) or not isinstance(value, str):
            out.append(Problem(where, "keys and values must be strings"))
            continue
        if len(key) > META_KEY_MAX:
            out.append(Problem(where, f"key exceeds maximum length {META_KEY_MAX}"))
        if not _META_KEY.fullmatch(key):
            out.append(Problem(where, "key may only contain letters, digits, '_' and '-'"))
        if _bytes(value) > META_VALUE_MAX:
            out.append(Problem(where, f"value exceeds maximum length {META_VALUE_MAX}"))
