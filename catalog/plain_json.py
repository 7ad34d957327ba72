"""Checking that a value from a client or a peer is plain, finite JSON.

Opaque parts of registrations, records and LWW values must compare and
re-encode the same on every agent, and nesting is capped so a hostile input
cannot exhaust the stack. Callers turn the problem into their own error type.
"""

from __future__ import annotations

import math
import re

MAX_DEPTH = 32  # Consul's own opaque JSON (proxy, connect, check definitions) is a few levels deep


def json_problem(
    value: object, path: str, depth: int = 0, max_depth: int = MAX_DEPTH
) -> tuple[str, str] | None:
    """The first reason `value` is not plain finite JSON, as (path, message), or None."""
    if depth > max_depth:
        return path, f"nested deeper than {max_depth} levels"
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return path, "object keys must be strings"
            if problem := json_problem(v, f"{path}.{k}", depth + 1, max_depth):
                return problem
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if problem := json_problem(v, f"{path}[{i}]", depth + 1, max_depth):
                return problem
    elif isinstance(value, float) and not math.isfinite(value):
        return path, "numbers must be finite"
    elif value is not None and not isinstance(value, str | int | float | bool):
        return path, "not a JSON value"
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def lone_surrogate(raw: bytes, value: object, path: str = "") -> str | None:
    """The path of the first string (or key) of `value`, decoded from the JSON text `raw`,
    holding a lone UTF-16 surrogate (`"\\ud800"`), or None.

    Python's json takes such an escape as a character no UTF-8 can encode, so the
    value would fail later (signing a record, packing a frame) instead of at the
    door. `raw` is scanned first: without a surrogate escape there is none to find.
    """
    if not _SURROGATE_ESCAPE.search(raw):
        return None
    return lone_surrogate_in(value, path or "body")


def lone_surrogate_in(value: object, path: str) -> str | None:
    """The path of the first string (or key) of a decoded `value` holding a lone surrogate.

    For values whose source text was not JSON (a YAML config file, a stored body):
    there is no raw text to look at first.
    """
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            shown = k.encode("ascii", "backslashreplace").decode() if isinstance(k, str) else k
            at = f"{path}.{shown}"
            if isinstance(k, str) and _SURROGATE.search(k):
                return at
            if found := lone_surrogate_in(v, at):
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if found := lone_surrogate_in(v, f"{path}[{i}]"):
                return found
    return None


BODY_MAX_DEPTH = 64  # a whole request body: opaque parts (MAX_DEPTH) sit a few levels down

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN = frozenset(b"[{")


def too_deep(raw: bytes, limit: int = BODY_MAX_DEPTH) -> bool:
    """Whether raw JSON text nests arrays/objects deeper than `limit`, judged before parsing.

    Parsing first would let a body of 100,000 `[` exhaust the parser's stack; brackets
    inside strings do not count. Stops at the first level past the limit.
    """
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    depth = 0
    for b in brackets:
        depth = depth + 1 if b in _OPEN else depth - 1
        if depth > limit:
            return True
    return False
