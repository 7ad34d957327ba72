"""What IDs and metadata may hold in a registration: Consul's rules, in one place. Pure.

Services, checks and external nodes are registered through different
bodies, but an ID and a metadata map follow one set of rules wherever they
come from (Consul: structs.ValidateServiceMetadata / ValidateNodeMetadata,
agent.go's "/" check on service and check IDs):
- A service or check ID must not contain "/": it is a path segment of
  `/v1/agent/service/<id>` and `/v1/agent/check/pass/<id>`.
- Metadata: at most 64 pairs; keys of [A-Za-z0-9_-], 1-128 characters, not
  starting with "consul-" (reserved for Consul, except the keys a caller
  allows, e.g. `consul-wan-federation` on mesh gateways); string values of at
  most 512 bytes (Go's len counts bytes).
Each function returns the problems it finds; callers turn them into errors
naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sized
from typing import Final

from gossamer.catalog.registration_fields import shown

META_MAX_PAIRS: Final = 64
META_KEY_MAX: Final = 128
META_VALUE_MAX: Final = 512
META_RESERVED_PREFIX: Final = "consul-"
META_KEY: Final = re.compile(r"[a-zA-Z0-9_-]+")


def id_problem(ident: str) -> str | None:
    """Why `ident` cannot be a service or check ID, or None if it can."""
    if "/" in ident:
        return f"must not contain '/', got {shown(ident)}"
    return None


def meta_key_ok(key: str) -> bool:
    """Whether `key` has the characters and length of a metadata key (the prefix aside)."""
    return bool(META_KEY.fullmatch(key)) and len(key) <= META_KEY_MAX


def meta_value_size(value: str) -> int:
    """A metadata value's size as Consul measures it: bytes of UTF-8 (Go's len)."""
    return len(value.encode())


def meta_count_problem(meta: Sized) -> str | None:
    """Why `meta` has too many pairs, or None."""
    if len(meta) > META_MAX_PAIRS:
        return f"at most {META_MAX_PAIRS} pairs, got {len(meta)}"
    return None


def meta_pair_problem(
    key: object, value: object, allowed_reserved: Collection[str] = ()
) -> str | None:
    """Why one metadata pair is refused, or None (the first problem of the pair)."""
    if not isinstance(key, str) or not meta_key_ok(key):
        return f"key must match ^[a-zA-Z0-9_-]+$ and be at most {META_KEY_MAX} characters"
    if key.startswith(META_RESERVED_PREFIX) and key not in allowed_reserved:
        return f"the key prefix {META_RESERVED_PREFIX!r} is reserved"
    if not isinstance(value, str):
        return f"value must be a string, got {shown(value)}"
    if (size := meta_value_size(value)) > META_VALUE_MAX:
        return f"value must be at most {META_VALUE_MAX} bytes, got {size}"
    return None
