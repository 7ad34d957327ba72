"""The checks of one field of a proxy's config each, for config.py. Pure.

Each reads one value, from a registration's JSON or a flag's text, and
returns it checked and typed, or raises a `ConfigError` (config_error.py)
naming `where` it was (`Proxy.Upstreams[1].LocalBindPort`, `--listen`), so
the CLI can exit 2 with it and a registration is refused with the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from gossamer.proxy.config_error import ConfigError

_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?")


# The longest time any limit may be given, in ms (some 30 years): past it a number is a typo,
# and past a float's range one that no division could even turn into seconds.
MAX_MS: Final = 10**12


def positive_millis(options: Mapping[str, Any], key: str, default_s: float, where: str) -> float:
    """`options[key]`, a positive number of ms, as seconds; `default_s` when unset."""
    value = options.get(key)
    if value is None:
        return default_s
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_MS:
        raise ConfigError(f"{where}.{key}", f"must be a positive number of ms up to {MAX_MS}, "
                          f"got {shown(value)}")  # fmt: skip
    return value / 1000


def shown(value: object) -> str:
    """A value for a message, cut short (a 400-digit number is not worth printing)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge number"
    return text if len(text) <= 80 else text[:77] + "..."


def flag(options: Mapping[str, Any], key: str, where: str, default: bool = True) -> bool:
    """`options[key]`, true or false; `default` when unset."""
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}", f"must be true or false, got {value!r}")
    return value


def mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"must be an object, got {type(value).__name__}")
    return value


def text(value: object, where: str) -> str:
    """A string; "" when unset."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(where, f"must be a string, got {type(value).__name__}")
    return value


def service_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(where, "a service name is required")
    if not _NAME.fullmatch(value):
        raise ConfigError(where, f"{value!r} is not a valid service name")
    return value


def port(value: object, where: str) -> int:
    """1-65535, as a number or digits."""
    if isinstance(value, str) and value.isascii() and value.isdigit():  # ("²".isdigit())
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(where, f"port must be 1-65535, got {shown(value)}")
    return value


def host_port(text: str, where: str) -> tuple[str, int]:
    """`ADDR:PORT` or `[ADDR]:PORT`, split."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise ConfigError(where, f"expected ADDR:PORT, got {text!r}")
    return host, port(port_text, where)
