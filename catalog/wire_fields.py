"""Strict readers of one field of a peer's record each, for wire.py. Pure.

Each checks the type (and range) of one JSON value and returns it, or raises
`RecordError` naming the path it failed at (`services[2].port`): the one
exception a receiver of records has to catch. bool is refused where an int is
wanted (Python's bool is an int, JSON's is not), and nothing is defaulted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from gossamer.catalog.plain_json import json_problem

T = TypeVar("T")


class RecordError(ValueError):
    """A peer sent a record that is not a valid version-1 node record; says which field."""


def _path(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def field(obj: Mapping[str, Any], key: str, at: str) -> object:
    if key not in obj:
        raise RecordError(f"{_path(at, key)}: missing")
    return obj[key]


def mapping(data: object, at: str) -> Mapping[str, Any]:
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise RecordError(f"{at}: expected an object")
    return data


def string(obj: Mapping[str, Any], key: str, at: str) -> str:
    value = field(obj, key, at)
    if not isinstance(value, str):
        raise RecordError(f"{_path(at, key)}: expected a string")
    return value


def boolean(obj: Mapping[str, Any], key: str, at: str) -> bool:
    value = field(obj, key, at)
    if not isinstance(value, bool):
        raise RecordError(f"{_path(at, key)}: expected true or false")
    return value


def integer(obj: Mapping[str, Any], key: str, at: str, low: int, high: int) -> int:
    return int_value(field(obj, key, at), _path(at, key), low, high)


def int_value(value: object, path: str, low: int, high: int) -> int:
    # bool is an int in Python but not in JSON; a peer sending `true` is broken.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RecordError(f"{path}: expected an integer in [{low}, {high}]")
    return value


def list_of(obj: Mapping[str, Any], key: str, at: str, item: Callable[[object, str], T]) -> list[T]:
    value = field(obj, key, at)
    if not isinstance(value, list):
        raise RecordError(f"{_path(at, key)}: expected a list")
    return [item(v, f"{_path(at, key)}[{i}]") for i, v in enumerate(value)]


def strings(obj: Mapping[str, Any], key: str, at: str) -> list[str]:
    return list_of(obj, key, at, string_item)


def string_item(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{path}: expected a string")
    return value


def integers(obj: Mapping[str, Any], key: str, at: str) -> list[int]:
    return list_of(obj, key, at, lambda v, p: int_value(v, p, 0, 2**31 - 1))


def string_map(obj: Mapping[str, Any], key: str, at: str) -> dict[str, str]:
    value = mapping(field(obj, key, at), _path(at, key))
    return {k: string_item(v, f"{_path(at, key)}.{k}") for k, v in sorted(value.items())}


def addr_port(value: object, path: str) -> tuple[str, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise RecordError(f"{path}: expected [address, port]")
    return string_item(value[0], path), int_value(value[1], path, 0, 65535)


def json_obj(obj: Mapping[str, Any], key: str, at: str) -> dict[str, Any]:
    value = mapping(field(obj, key, at), _path(at, key))
    if problem := json_problem(value, _path(at, key)):
        raise RecordError("{}: {}".format(*problem))
    return dict(value)
