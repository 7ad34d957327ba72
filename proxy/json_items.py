"""A JSON array read one element at a time, so its reader can pause between them. Pure.

An agent's answer about a large service (`/v1/health/connect/<name>`, a
row of node, service and checks per instance) is a JSON array of MBs:
5,000 instances are 3.5 MB, ~40-80 ms of `json.loads` in one piece, and
a sidecar's event loop serves nothing meanwhile. `items` decodes the
array element by element (the C scanner's `raw_decode`, as `json.loads`
uses), so a caller can let other work run every so many elements; the
values are those `json.loads` gives. Anything but an array, or bad JSON,
is a ValueError, as from `json.loads`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

_DECODER = json.JSONDecoder()
_SPACE = " \t\n\r"


def items(text: str) -> Iterator[Any]:
    """The elements of the JSON array `text`, in order."""
    at = _skip(text, 0)
    if not text.startswith("[", at):
        raise ValueError("not a JSON array")
    at = _skip(text, at + 1)
    if text.startswith("]", at):
        _end(text, at + 1)
        return
    while True:
        value, at = _DECODER.raw_decode(text, at)
        yield value
        at = _skip(text, at)
        if text.startswith("]", at):
            _end(text, at + 1)
            return
        if not text.startswith(",", at):
            raise ValueError(f"expected ',' or ']' at {at}")
        at = _skip(text, at + 1)


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _SPACE:
        at += 1
    return at


def _end(text: str, at: int) -> None:
    if _skip(text, at) != len(text):
        raise ValueError(f"extra data after the array at {at}")
