"""Join targets: `host`, `host:port`, `[v6]`, `[v6]:port` — parsed without I/O.

The one host:port parser of the project: the config's join lists, the HTTP
join endpoint and the CLI's --http-addr all go through it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re

from gossamer.gossip.host_port import host_port

# RFC 1123 labels joined by dots. Every label is anchored by a dot, so the
# match is linear: a pattern like (label\.?)+ backtracks exponentially on a
# long name that fails at its last character.
_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


class AddressError(ValueError):
    """Not a usable host[:port]; the message says what is wrong."""


def parse_port(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise AddressError(f"port {text!r} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise AddressError(f"port {port} is out of range 1-65535")
    return port


def split_host_port(text: str) -> tuple[str, int | None]:
    """Split and check `text`; the port is None when absent.

    The host may be an IP literal or a DNS name; a bare IPv6 literal (no
    brackets) is taken as a host without a port.
    """
    text = text.strip()
    if not text:
        raise AddressError("empty address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise AddressError(f"{text!r}: missing ']' after IPv6 address")
        if ":" not in host:
            raise AddressError(f"{text!r}: brackets must hold an IPv6 address, like [::1]")
        _check_ip(host, text)
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise AddressError(f"{text!r}: expected ':port' after ']'")
        return host, parse_port(rest[1:])
    if text.count(":") > 1:
        _check_ip(text, text)
        return text, None
    host, sep, port_text = text.partition(":")
    if not host:
        raise AddressError(f"{text!r} has no host")
    if re.fullmatch(r"[0-9.]+", host):
        _check_ip(host, text)
    elif not _HOSTNAME.fullmatch(host):
        shown = host if len(host) <= 80 else host[:77] + "..."
        raise AddressError(f"{shown!r} is not a valid IP address or host name")
    return host, parse_port(port_text) if sep else None


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    host, port = split_host_port(text)
    return host, default_port if port is None else port


def _check_ip(host: str, text: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        where = "" if host == text else f"{text!r}: "
        raise AddressError(f"{where}{host!r} is not a valid IP address") from None


def format_host_port(host: str, port: int) -> str:
    """host:port with IPv6 in brackets and IP literals in canonical form."""
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    return host_port(host, port)


def other_family(advertise: str, target: str) -> str:
    """Why an agent gossiping at `advertise` cannot join `target` (host[:port]): the two are IP
    literals of two families. Serf cannot gossip across them: members of the other family
    are unreachable both ways, yet the join succeeds (its first exchange goes over TCP from
    any source address) and serf then logs a failed probe every second ("non-IPv4 address").
    "" when they can be joined, or when it cannot be told (a name, an unparsable address)."""
    try:
        host, _ = split_host_port(target)
        mine, theirs = ipaddress.ip_address(advertise), ipaddress.ip_address(host)
    except ValueError:
        return ""
    if mine.version == theirs.version:
        return ""
    return (f"{target} is an IPv{theirs.version} address and this agent gossips over "
            f"IPv{mine.version} ({advertise}): serf cannot reach members of the other family; "
            "join it by an address of this agent's family")  # fmt: skip
