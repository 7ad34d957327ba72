"""`services:` and `checks:` in config files: Consul's definitions, checked at load time.

Each entry is validated with the same parser the HTTP API uses, so a bad
port in a file is reported like any other config problem (file, key, what
is wrong) and the agent does not start. Entries are kept as canonical JSON
strings: hashable, so the layering can append lists from several files
without repeats, and exactly what the agent registers later. Script checks
are allowed here; whether they may run (`enable_local_script_checks`) is
decided when the agent applies them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic_core import PydanticCustomError

from gossamer.agent.config.errors import describe
from gossamer.catalog.registration import (
    RegistrationError,
    parse_check_registration,
    parse_service_registration,
)


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("config", message)


def _entries(value: object, what: str) -> list[Any]:
    """One definition (a mapping) or a list of them."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    raise _fail(f"must be a {what} definition or a list of them, got {describe(value)}")


def _definitions(value: object, what: str, check: Callable[[Any], None]) -> tuple[str, ...]:
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return value  # already canonical (a merged layer)
    out, errors = [], []
    for i, entry in enumerate(_entries(value, what)):
        try:
            check(entry)
        except RegistrationError as exc:
            errors.append(f"[{i}] {exc}")
            continue
        out.append(json.dumps(entry, sort_keys=True))
    if errors:
        raise _fail("; ".join(errors))
    return tuple(out)


def _check_service(entry: Any) -> None:
    parse_service_registration(
        entry, node_address="127.0.0.1", used_sidecar_ports=set(), allow_script=True
    )


def _check_check(entry: Any) -> None:
    service_id = (
        entry.get("ServiceID", entry.get("service_id")) if isinstance(entry, dict) else None
    )
    ids = {service_id} if isinstance(service_id, str) else set()
    parse_check_registration(entry, service_ids=ids, allow_script=True)


def service_definitions(value: object) -> tuple[str, ...]:
    return _definitions(value, "service", _check_service)


def check_definitions(value: object) -> tuple[str, ...]:
    return _definitions(value, "check", _check_check)


def decoded(definitions: tuple[str, ...]) -> list[dict[str, Any]]:
    return [json.loads(d) for d in definitions]
