"""The nested config sections `dns:` and `intentions:`, and config durations.

A section is a mapping in YAML (`dns: {domain: mesh.example, node_ttl: 10s}`)
and a frozen model here. Loading treats each sub-key like a top-level key
named with a dot (`dns.node_ttl`): it is checked on its own, reported with
that name, and merged key by key across files (see entries.py).

The value checks shared with the top-level keys (`_fail`, `Flag`,
host:port) are in values.py; the durations are here. Neither module
imports schema.py, which imports the section models.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from gossamer.agent.config.acl_section import AclConfig
from gossamer.agent.config.connect_section import ConnectConfig
from gossamer.agent.config.errors import describe
from gossamer.agent.config.https_section import HttpsConfig
from gossamer.agent.config.values import Flag, _fail, is_ip, parse_host_port
from gossamer.catalog.durations import (
    DurationError,
    DurationRangeError,
    format_compact,
    parse_timedelta,
)
from gossamer.gossip.addresses import format_host_port

# --- durations ---------------------------------------------------------------

_DURATION_RULE = 'must be a duration like "30s", "1m" or "500ms"'


def _parse_go_duration(value: object) -> timedelta:
    """Go/Consul duration syntax (catalog/durations.py); zero ("0s") is allowed here."""
    if not isinstance(value, str):
        raise ValueError(f"{_DURATION_RULE}, got {describe(value)}")
    try:
        return parse_timedelta(value)
    except DurationRangeError:
        raise ValueError(f"{describe(value)} is too long") from None
    except DurationError:
        raise ValueError(f"{_DURATION_RULE}, got {describe(value)}") from None


def parse_duration(value: object) -> timedelta:
    """Go/Consul duration syntax ("30s", "1m30s", "500ms"), so Consul configs carry over."""
    duration = _parse_go_duration(value)
    if duration <= timedelta(0):
        raise ValueError(f"must be longer than zero, got {describe(value)}")
    return duration


def format_duration(value: timedelta) -> str:
    """A duration for display in config messages and reload diffs: 30s, 1m30s, 1h, 500ms."""
    return format_compact(value)


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None


# --- dns -------------------------------------------------------------------

DNS_PORT = 53
MAX_TTL = timedelta(hours=24)
MAX_RECURSOR_TIMEOUT = timedelta(seconds=60)
MAX_UDP_ANSWERS = 1000
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# A service name, a "prefix*" (it may end in "-": "web-*") or "*" alone.
_SERVICE_TTL_KEY = re.compile(r"\*|(?!-)[A-Za-z0-9-]{1,63}(?<!-)|(?!-)[A-Za-z0-9-]{1,63}\*")


def _domain(value: object) -> str:
    """A DNS name, stored lower-case with one trailing dot: "Mesh.Example" -> "mesh.example."."""
    rule = (
        'must be a DNS name: dot-separated labels of 1-63 letters, digits or "-" '
        '(no "-" at either end of a label), 253 characters at most'
    )
    if isinstance(value, str) and value.isascii():
        name = value.lower().removesuffix(".")
        if len(name) <= 253 and all(_DNS_LABEL.fullmatch(label) for label in name.split(".")):
            return name + "."
    raise _fail(f"{rule}, got {describe(value)}")


def _alt_domain(value: object) -> str | None:
    return None if value is None else _domain(value)


def domain_clash(domain: str, alt_domain: str | None) -> str | None:
    """Why alt_domain cannot go with domain (both normalised), or None if it can."""
    if alt_domain is None:
        return None
    if alt_domain == domain:
        return f"{describe(alt_domain)} is the same as domain"
    if alt_domain.endswith("." + domain):
        return f"{describe(alt_domain)} is inside domain {describe(domain)}; use another name"
    if domain.endswith("." + alt_domain):
        return f"domain {describe(domain)} is inside {describe(alt_domain)}; use another name"
    return None


def _ttl_of(value: object) -> timedelta:
    """A DNS TTL: a duration in whole seconds from 0 to 24h ("0" or 0 alone is fine)."""
    if isinstance(value, timedelta):
        ttl, shown = value, format_duration(value)
    elif value == "0" or (type(value) is int and value == 0):
        return timedelta(0)
    else:
        shown = describe(value)
        try:
            ttl = _parse_go_duration(value)
        except ValueError:
            rule = 'must be a duration in whole seconds from 0 to 24h, like "30s" or "5m"'
            raise ValueError(f"{rule}, got {shown}") from None
    if ttl < timedelta(0) or ttl > MAX_TTL:
        raise ValueError(f"must be from 0 to 24h, got {shown}")
    if ttl.microseconds:
        raise ValueError(f"must be whole seconds (DNS TTLs have no fractions), got {shown}")
    return ttl


def _ttl(value: object) -> timedelta:
    try:
        return _ttl_of(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _service_ttl(value: object) -> dict[str, timedelta]:
    """Service name, "prefix*" or "*" -> TTL; every bad pair is named."""
    if not isinstance(value, dict):
        rule = 'must be a mapping of service names (or "prefix*", "*") to durations'
        raise _fail(f"{rule}, got {describe(value)}")
    out: dict[str, timedelta] = {}
    errors = []
    for key, item in value.items():
        if not isinstance(key, str) or not _SERVICE_TTL_KEY.fullmatch(key):
            errors.append(
                f'key {describe(key)} must be a service name, "prefix*" or "*" '
                '(letters, digits and "-")'
            )
            continue
        try:
            out[key] = _ttl_of(item)
        except ValueError as exc:
            errors.append(f"{describe(key)}: {exc}")
    if errors:
        raise _fail("; ".join(errors[:5]) + ("; ..." if len(errors) > 5 else ""))
    return out


def _udp_answer_limit(value: object) -> int:
    if type(value) is int and 0 <= value <= MAX_UDP_ANSWERS:
        return value
    rule = f"must be an integer from 0 (no cap: fill the packet) to {MAX_UDP_ANSWERS}"
    raise _fail(f"{rule}, got {describe(value)}")


def _recursor(item: object) -> str:
    """One upstream: "ip", "ip:port", "[v6]:port" or a bare IPv6 (port 53), as "ip:port"."""
    if isinstance(item, str) and not item.strip().startswith("[") and item.count(":") > 1:
        host, port = item.strip(), None  # a bare IPv6 literal, as Consul reads it
    else:
        host, port = parse_host_port(item)
    if not is_ip(host):
        raise ValueError(f"{describe(host)} is not an IP address (recursors are dialled directly)")
    return format_host_port(host, port or DNS_PORT)


def _recursors(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise _fail(f'must be a list of "ip" or "ip:port" strings, got {describe(value)}')
    out, errors = [], []
    for item in value:
        try:
            out.append(_recursor(item))
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise _fail("; ".join(errors))
    return tuple(dict.fromkeys(out))


def _recursor_strategy(value: object) -> str:
    if isinstance(value, str) and value.lower() in ("sequential", "random"):
        return value.lower()
    raise _fail(f'must be "sequential" or "random", got {describe(value)}')


def _recursor_timeout(value: object) -> timedelta:
    timeout = _duration(value)
    if not timedelta(0) < timeout <= MAX_RECURSOR_TIMEOUT:
        shown = format_duration(timeout) if isinstance(value, timedelta) else describe(value)
        raise _fail(f"must be longer than zero and at most 1m, got {shown}")
    return timeout


Ttl = Annotated[timedelta, BeforeValidator(_ttl)]


class DnsConfig(BaseModel):
    """`dns:` — how the agent's DNS interface answers (Consul's domain, recursors, dns_config).

    Domains are lower-case with one trailing dot; recursors are "ip:port" or
    "[v6]:port" (port 53 unless given); TTLs are whole seconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    domain: Annotated[str, BeforeValidator(_domain)] = "consul."
    # Answered like `domain`; must not be it, nor inside it, nor contain it.
    alt_domain: Annotated[str | None, BeforeValidator(_alt_domain)] = None
    node_ttl: Ttl = timedelta(0)
    # Service name, "prefix*" or "*" -> TTL; the exact name wins, then the
    # longest prefix, then "*".
    service_ttl: Annotated[dict[str, timedelta], BeforeValidator(_service_ttl)] = Field(
        default_factory=dict
    )
    # TTL of negative answers: the SOA minimum (Consul's dns_config.soa.min_ttl).
    negative_ttl: Ttl = timedelta(0)
    only_passing: Flag = False
    # 0: no cap, answers fill the packet and TC is set when some are cut.
    udp_answer_limit: Annotated[int, BeforeValidator(_udp_answer_limit)] = 0
    enable_truncate: Flag = True
    recursors: Annotated[tuple[str, ...], BeforeValidator(_recursors)] = ()
    recursor_strategy: Annotated[
        Literal["sequential", "random"], BeforeValidator(_recursor_strategy)
    ] = "sequential"
    recursor_timeout: Annotated[timedelta, BeforeValidator(_recursor_timeout)] = timedelta(
        seconds=2
    )
    # Order answers by Serf network coordinates instead of shuffling them.
    nearest_first: Flag = False

    @model_validator(mode="after")
    def _domains_apart(self) -> DnsConfig:
        clash = domain_clash(self.domain, self.alt_domain)
        if clash:
            raise _fail(f"alt_domain: {clash}")
        return self


# --- intentions ---------------------------------------------------------------


def _default_policy(value: object) -> str | None:
    if value is None:  # decided at load: allow in dev mode, deny otherwise
        return None
    if isinstance(value, str) and value.lower() in ("allow", "deny"):
        return value.lower()
    raise _fail(f'must be "allow" or "deny", got {describe(value)}')


class IntentionsConfig(BaseModel):
    """`intentions:` — service-to-service authorisation."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    # What happens when no intention matches. None (unset) is resolved at
    # load: "allow" in dev mode, "deny" otherwise, so a loaded config always
    # holds one of the two.
    default_policy: Annotated[Literal["allow", "deny"] | None, BeforeValidator(_default_policy)] = (
        None
    )


# The sections by top-level key (`connect:` is connect_section.py's).
SECTIONS: dict[str, type[BaseModel]] = {
    "dns": DnsConfig,
    "intentions": IntentionsConfig,
    "connect": ConnectConfig,
    "acl": AclConfig,
    "https": HttpsConfig,
}
