"""Value checks shared by the top-level config keys and the sections.

Validators raise `_fail(message)`, a pydantic error whose text is exactly
the message, so a problem reads "file: key: message" with nothing added.
This module imports no other config module but errors.py, so schema.py and
sections.py can both use it.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from gossamer.agent.config.errors import describe
from gossamer.gossip.addresses import AddressError, split_host_port


def parse_host_port(item: object) -> tuple[str, int | None]:
    """Check one join entry; ValueError says what is wrong.

    Stricter than the gossip parser it wraps: a bare IPv6 literal is refused
    (in "fd00::1:8301" the port is ambiguous) and so is cloud auto-join.
    """
    if not isinstance(item, str):
        raise ValueError(f"entries must be strings, got {describe(item)}")
    if item.startswith("provider="):
        raise ValueError(f"{describe(item)}: cloud auto-join is not supported")
    if not item.startswith("[") and item.count(":") > 1:
        raise ValueError(f"{describe(item)}: write IPv6 addresses in brackets, like [::1]:8301")
    try:
        return split_host_port(item)
    except AddressError as exc:
        raise ValueError(str(exc)) from None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _fail(message: str) -> PydanticCustomError:
    """A pydantic error whose text is exactly our message (no "Value error," prefix)."""
    return PydanticCustomError("config", "{problem}", {"problem": message})


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _fail(f"must be true or false, got {describe(value)}")


Flag = Annotated[bool, BeforeValidator(_bool)]


PORT_OFF = -1  # Consul's spelling of "no listener" for ports.http and ports.https


def _port_or_off(value: object) -> int:
    """A listening port, or -1 for none (Consul's `ports { http = -1 }`)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and (value == PORT_OFF or 1 <= value <= 65535):  # type: ignore[operator]
        return value  # type: ignore[return-value]
    raise _fail(f"must be an integer between 1 and 65535, or -1 for off, got {describe(value)}")


PortOrOff = Annotated[int, BeforeValidator(_port_or_off)]
