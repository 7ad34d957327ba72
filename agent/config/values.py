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
