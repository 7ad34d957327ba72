"""Join targets: `host`, `host:port`, `[v6]`, `[v6]:port` — parsed without I/O."""

from __future__ import annotations

import ipaddress
import re

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?)+$")


class AddressError(ValueError):
    """Not a usable host[:port]; the message says what is wrong."""


def parse_port(text: str) -> int:
    if not text.isdigit():
        raise AddressError(f"port {text!r} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise AddressError(f"port {port} is out of range 1-65535")
    return port


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """Split and check `text`; the host may be an IP literal or a DNS name."""
    text = text.strip()
    if not text:
        raise AddressError("empty address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise AddressError(f"{text!r}: missing ']' after IPv6 address")
        _check_ip(host, text)
        if not rest:
            return host, default_port
        if not rest.startswith(":"):
            raise AddressError(f"{text!r}: expected ':port' after ']'")
        return host, parse_port(rest[1:])
    if text.count(":") > 1:  # a bare IPv6 literal, no port
        _check_ip(text, text)
        return text, default_port
    host, sep, port_text = text.partition(":")
    port = parse_port(port_text) if sep else default_port
    if not _HOSTNAME.match(host):
        raise AddressError(f"{host!r} is not a valid IP address or host name")
    if host.replace(".", "").isdigit():
        _check_ip(host, text)
    return host, port


def _check_ip(host: str, text: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise AddressError(f"{text!r}: {host!r} is not a valid IP address") from None


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
