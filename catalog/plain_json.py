"""Checking that a value from a peer is plain, finite JSON.

Opaque parts of records and LWW values must compare and re-encode the same
on every agent, and nesting is capped so a hostile peer cannot exhaust the
stack. Callers turn the problem into their own error type.
"""

from __future__ import annotations

import math

MAX_DEPTH = 32  # Consul's own opaque JSON (proxy, connect, check definitions) is a few levels deep


def json_problem(value: object, path: str, depth: int = 0) -> str | None:
    """The first reason `value` is not plain finite JSON, or None."""
    if depth > MAX_DEPTH:
        return f"{path}: nested deeper than {MAX_DEPTH}"
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{path}: object keys must be strings"
            if problem := json_problem(v, f"{path}.{k}", depth + 1):
                return problem
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if problem := json_problem(v, f"{path}[{i}]", depth + 1):
                return problem
    elif isinstance(value, float) and not math.isfinite(value):
        return f"{path}: numbers must be finite"
    elif value is not None and not isinstance(value, str | int | float | bool):
        return f"{path}: not a JSON value"
    return None
