"""A JSON array read one element at a time, so its reader can pause between them. Pure.

An agent's answer about a large service (`/v1/health/connect/<name>`, a
row of node, service and checks per instance) is a JSON array of MBs:
5,000 instances are 3.5 MB, ~40-80 ms of `json.loads` in one piece, and
a sidecar's event loop serves nothing meanwhile. `items` decodes the
array element by element (the C scanner's `raw_decode`, as `json.loads`
uses), so a caller can let other work run every so many elements; the
values are those `json.loads` gives. Anything but an array, or bad JSON,
is a ValueError, as from `json.loads`.

`member_items` does the same for the array under one name of a JSON object
(`{"db": [...]}`, an intentions match answer), giving each element with its
own text, which a reader can key on to reuse what it made of that element
before.
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


class NoSuchArray(ValueError):
    """Good JSON, but not an object with an array under the name asked for."""


def member_items(text: str, name: str) -> Iterator[tuple[str, Any]]:
    """Each element of the array `name` of the JSON object `text`, as (its text, its value),
    in order; NoSuchArray once the object is read without one. The rest of the object is
    read (and checked) too, after its elements: a caller uses them once they all came."""
    at = _skip(text, 0)
    if not text.startswith("{", at):
        _DECODER.raw_decode(text, at)  # bad JSON: its own error
        raise NoSuchArray(f"not a JSON object with an array {name!r}")
    at, found = _skip(text, at + 1), False
    while not text.startswith("}", at):
        key, at = _DECODER.raw_decode(text, at)
        at = _skip(text, at)
        if not isinstance(key, str) or not text.startswith(":", at):
            raise ValueError(f"expected a member name and ':' at {at}")
        at = _skip(text, at + 1)
        if key == name and found:
            raise ValueError(f"member {name!r} given twice")
        if key == name and text.startswith("[", at):
            found = True
            at = _skip(text, at + 1)
            while not text.startswith("]", at):
                start = at
                value, at = _DECODER.raw_decode(text, at)
                yield text[start:at], value
                at = _after(text, at, "]")
            at += 1
        else:
            at = _DECODER.raw_decode(text, at)[1]
        at = _after(text, at, "}")
    _end(text, at + 1)
    if not found:
        raise NoSuchArray(f"not a JSON object with an array {name!r}")


def _after(text: str, at: int, close: str) -> int:
    """Past the `,` after a value (at the next one), or at the `close` that ends them."""
    at = _skip(text, at)
    if text.startswith(close, at):
        return at
    if not text.startswith(",", at):
        raise ValueError(f"expected ',' or {close!r} at {at}")
    at = _skip(text, at + 1)
    if text.startswith(close, at):
        raise ValueError(f"a value expected at {at}")
    return at


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _SPACE:
        at += 1
    return at


def _end(text: str, at: int) -> None:
    if _skip(text, at) != len(text):
        raise ValueError(f"extra data after the array at {at}")
