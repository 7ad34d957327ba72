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
# Addresses by their text, as inet_pton reads IP literals (listen.py binds what it takes): a
# pure module imports no `socket`, and the proxy process leaves `ipaddress` out
# (test_proxy_footprint.py). A host name: RFC 1123 labels joined by dots, as
# gossip/addresses.py has them; each label is anchored by a dot, so the match is linear.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # (no leading zero: inet_pton's)
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_HEXTET = re.compile(r"[0-9A-Fa-f]{1,4}")
_ZONE = re.compile(r"[A-Za-z0-9_.-]+")  # an IPv6 literal's scope: `fe80::1%eth0`
_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


# The longest time any limit may be given, in ms (some 30 years): past it a number is a typo,
# and past a float's range one that no division could even turn into seconds.
MAX_MS: Final = 10**12


def whole(value: object) -> object:
    """A number as Consul's decoder takes it (mapstructure, weakly typed): digits in a string
    (`"5000"`, as an HCL file or a template may write a number) or a float with no fraction
    (`5000.0`) are that integer. Anything else comes back as it came, for the caller to
    refuse: `1500.5` too, which Consul would cut to 1500 without a word."""
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():  # ("²")
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def positive_millis(options: Mapping[str, Any], key: str, default_s: float, where: str) -> float:
    """`options[key]`, a positive number of ms, as seconds; `default_s` when unset."""
    value = whole(options.get(key))
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


def address(value: object, where: str) -> str:
    """An address the proxy binds or dials, as a string; "" when unset. What its listeners
    and the loop take (listen.py): an IP literal, bound as it is, or a host name, resolved;
    not `[::1]` nor `host:port`, which no resolver knows, nor `10.0.0.300`."""
    host = text(value, where)
    if host and not is_address(host):
        raise ConfigError(where, f"{shown(host)} is not an IP address or host name")
    return host


def is_address(host: str) -> bool:
    """An IPv4 or IPv6 literal (with a scope, `fe80::1%eth0`), or a host name."""
    if ":" in host:
        literal, sep, zone = host.partition("%")
        return is_ipv6(literal) and (not sep or bool(_ZONE.fullmatch(zone)))
    if _IPV4.fullmatch(host):
        return True
    # all digits and dots but no IPv4 address (`10.0.0.300`): a typo, not a name
    return not re.fullmatch(r"[0-9.]+", host) and bool(_HOSTNAME.fullmatch(host))


def is_ipv6(text: str) -> bool:
    """Whether inet_pton(AF_INET6) takes `text`: eight groups of 1-4 hex digits, or fewer
    with one `::` for at least one more; the last two may be an IPv4 address."""
    if "." in text:  # only at the end, in the place of two groups
        rest, _, v4 = text.rpartition(":")
        if not _IPV4.fullmatch(v4):
            return False
        text = f"{rest}:0:0"
    head, sep, tail = text.partition("::")
    groups = [*(head.split(":") if head else ()), *(tail.split(":") if tail else ())]
    if not all(_HEXTET.fullmatch(group) for group in groups):  # ("" too: `:1`, `1:::2`)
        return False
    return len(groups) < 8 if sep else len(groups) == 8


def service_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(where, "a service name is required")
    if not _NAME.fullmatch(value):
        raise ConfigError(where, f"{value!r} is not a valid service name")
    return value


def port(value: object, where: str) -> int:
    """1-65535, as a number or digits."""
    value = whole(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(where, f"port must be 1-65535, got {shown(value)}")
    return value


def host_port(text: str, where: str) -> tuple[str, int]:
    """`ADDR:PORT` or `[ADDR]:PORT`, split; ADDR an IP literal or a host name (`address`)."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise ConfigError(where, f"expected ADDR:PORT, got {text!r}")
    return address(host, where), port(port_text, where)
