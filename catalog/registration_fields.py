"""Reading Consul's registration bodies: key matching, typed fields, the error they raise. Pure.

Every registration parser (checks, services, sidecars, catalog nodes) reads
its JSON objects through `Fields`, so they all decode keys as Consul does
(agent/structs, lib/json.go):
- Go's encoding/json matches a key to a field ignoring case, and the structs
  declare snake_case aliases (`tls_skip_verify`, `script_args`, ...). Consul
  does *not* strip underscores in general, so `Tls_SkipVerify` is unknown to
  it. Accepted here: the CamelCase name or its snake_case form, in any case.
- Unknown keys are refused (Consul decodes with DisallowUnknownFields and
  answers 400). `null` counts as absent, as in Go.
- Durations are Go duration strings (catalog/durations.py) or numbers of
  nanoseconds; negative ones are refused.

A bad field raises `RegistrationError` naming its path. A parser that can go
on after a problem collects them in `Problems` and raises them together: the
error's `field`/`message` are the first problem, `problems` holds them all.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from gossamer.catalog.durations import NS_PER_S, DurationError, DurationRangeError, parse_ns

MAX_DURATION_S = (2**63 - 1) / NS_PER_S  # Go's time.Duration is int64 nanoseconds
_DURATION_HINT = 'must be a duration like "10s", "1m30s" or "500ms"'

T = TypeVar("T")


class RegistrationError(ValueError):
    """A registration body is invalid; `field` is the path of the (first) offending field.

    `problems` lists every (field, message) found, first one first. The
    subclasses below tell the HTTP edge's error table which answer it is.
    """

    def __init__(
        self,
        field: str,
        message: str,
        *,
        more: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.field = field
        self.message = message
        self.problems: tuple[tuple[str, str], ...] = ((field, message), *more)
        super().__init__("; ".join(f"{f}: {m}" if f else m for f, m in self.problems))

    @classmethod
    def joined(cls, errors: Sequence[RegistrationError]) -> RegistrationError:
        """One error carrying every problem of `errors`, of the first one's kind."""
        first, rest = errors[0], errors[1:]
        more = [p for e in (first, *rest) for p in e.problems][1:]
        return type(first)(first.field, first.message, more=more)


class ServiceNotRegistered(RegistrationError):
    """A check's `ServiceID` names no service registered on this agent (an unknown id)."""


class RegistrationConflict(RegistrationError):
    """The body is valid but collides with what is held: a name another agent owns, an ID in use."""


class Problems:
    """Collects a parser's problems so a body's mistakes are reported together."""

    def __init__(self) -> None:
        self.errors: list[RegistrationError] = []

    def add(self, error: RegistrationError) -> None:
        self.errors.append(error)

    def read(self, default: T, reader: Callable[..., T], *args: Any) -> T:
        """`reader(*args)`, or `default` with its RegistrationError noted."""
        try:
            return reader(*args)
        except RegistrationError as err:
            self.errors.append(err)
            return default

    def raise_any(self) -> None:
        if self.errors:
            raise RegistrationError.joined(self.errors)


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def shown(value: object, limit: int = 60) -> str:
    """A value as it appeared in the JSON body, cut short."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def item(path: str, key: object) -> str:
    """The path of a map entry: `Meta["some key"]` (keys quoted whole unless huge)."""
    return f"{path}[{shown(key, 200)}]"


def snake(name: str) -> str:
    """`EnableTagOverride` -> `enable_tag_override`, `TLSSkipVerify` -> `tls_skip_verify`."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class Fields:
    """One JSON object of a body with its keys resolved to canonical names.

    `names` are the canonical (CamelCase) field names; `aliases` adds extra
    spellings. A key matches its name or the name's snake_case, in any case.
    Two keys for one field, or a key that matches nothing, are errors.
    """

    def __init__(
        self,
        raw: object,
        path: str,
        names: Iterable[str],
        aliases: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if not isinstance(raw, dict):
            raise RegistrationError(path or "body", f"must be a JSON object, got {shown(raw)}")
        spellings: dict[str, str] = {}
        for name in names:
            for spelling in (name.lower(), snake(name), *(aliases or {}).get(name, ())):
                spellings[spelling] = name
        self.path = path
        self.values: dict[str, Any] = {}
        seen: dict[str, str] = {}
        unknown: list[str] = []
        for key, value in raw.items():
            found = spellings.get(key.lower()) if isinstance(key, str) else None
            if found is None:
                unknown.append(str(key))
                continue
            name = found
            if name in seen:
                raise RegistrationError(
                    join(path, name), f"given twice (as {seen[name]!r} and {key!r})"
                )
            seen[name] = key
            if value is not None:  # Go's decoder leaves a field alone on null
                self.values[name] = value
        if unknown:
            more = f" (also unknown: {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else ""
            raise RegistrationError(join(path, unknown[0]), f"unknown field{more}")

    def at(self, name: str) -> str:
        return join(self.path, name)

    def has(self, name: str) -> bool:
        return name in self.values

    def error(self, name: str, message: str) -> RegistrationError:
        return RegistrationError(self.at(name), message)

    def str_(self, name: str, default: str = "") -> str:
        value = self.values.get(name, default)
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {shown(value)}")
        return value

    def bool_(self, name: str) -> bool:
        value = self.values.get(name, False)
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {shown(value)}")
        return value

    def int_(self, name: str, low: int, high: int, default: int = 0, what: str = "") -> int:
        value = self.values.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(
                name, f"must be an integer {what or f'{low}-{high}'}, got {shown(value)}"
            )
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self.values.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, f"must be a list of strings, got {shown(value)}")
        return tuple(value)

    def duration(self, name: str) -> float:
        """Seconds; 0 when absent. Strings are Go durations, numbers nanoseconds."""
        value = self.values.get(name)
        if value is None:
            return 0.0
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(name, f"{_DURATION_HINT}, got {shown(value)}")
        if isinstance(value, str):
            try:
                seconds = parse_ns(value) / NS_PER_S
            except DurationRangeError:
                raise self.error(name, f"duration out of range, got {shown(value)}") from None
            except DurationError:
                raise self.error(name, f"{_DURATION_HINT}, got {shown(value)}") from None
        else:
            seconds = value / NS_PER_S
        if not math.isfinite(seconds) or abs(seconds) > MAX_DURATION_S:
            raise self.error(name, f"duration out of range, got {shown(value)}")
        if seconds < 0:
            raise self.error(name, f"must not be negative, got {shown(value)}")
        return seconds
