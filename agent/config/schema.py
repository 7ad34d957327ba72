"""The agent config: its keys, their types, defaults and per-key checks.

`AgentConfig` is the frozen result of loading. Every key has a validator that
accepts only what a person would write in YAML for it (strict: "8500" is not a
port, "yes" in quotes is not a bool) and rejects anything else with a message
that states the rule and shows the value. Validators are idempotent (they
accept their own output) because merged values pass through the model again
when the final object is built.

`ConfigLayer` is the same schema with every key optional and no defaults,
used to check one file (or the flags) on its own, so that a problem names the
file that holds it. The nested sections (`dns:`, `intentions:`; their models
are in sections.py) have one such layer each in SECTION_LAYERS, used to check
one sub-key such as `dns.node_ttl` on its own.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from gossamer.agent.config.acl_section import AclConfig
from gossamer.agent.config.connect_section import ConnectConfig
from gossamer.agent.config.errors import describe
from gossamer.agent.config.https_section import HttpsConfig
from gossamer.agent.config.registrations import check_definitions, service_definitions
from gossamer.agent.config.sections import (
    SECTIONS,
    DnsConfig,
    IntentionsConfig,
    _duration,
)
from gossamer.agent.config.values import Flag, PortOrOff, _fail, parse_host_port
from gossamer.agent.lifecycle.logs import LEVELS
from gossamer.catalog.names import (
    META_KEY_MAX,
    META_MAX_PAIRS,
    META_RESERVED_PREFIX,
    META_VALUE_MAX,
    meta_key_ok,
    meta_value_size,
)
from gossamer.gossip.keyring import KEY_BYTES, InvalidKeyError, validate_key

DATACENTER_RE = re.compile(r"^[a-z0-9_-]+$")
JOIN_TOKEN_MIN = 16
TEST_LEAF_TTL_MIN = timedelta(seconds=10)


def _port(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    raise _fail(f"must be an integer between 1 and 65535, got {describe(value)}")


def _count(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _fail(f"must be an integer >= 0 (0 means forever), got {describe(value)}")


def _ip(value: object) -> str:
    """Any IPv4/IPv6 literal, stored in canonical form so comparisons are exact."""
    if not isinstance(value, str):
        raise _fail(f"must be an IP address, got {describe(value)}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _fail(f"{describe(value)} is not a valid IP address") from None


def _node(value: object) -> str:
    """The name shows up in DNS answers, member lists and logs: keep it one token."""
    if isinstance(value, str) and value.isprintable() and re.fullmatch(r"\S{1,253}", value):
        return value
    raise _fail(f"must be a non-empty name without spaces, got {describe(value)}")


def _datacenter(value: object) -> str:
    if isinstance(value, str) and DATACENTER_RE.match(value):
        return value
    rule = 'must contain only lowercase letters, digits, "-" and "_"'
    raise _fail(f"{rule}, got {describe(value)}")


def _path(value: object) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, str) and value.strip() and "\0" not in value:
        return Path(value)
    raise _fail(f"must be a directory path, got {describe(value)}")


def _addresses(value: object) -> tuple[str, ...]:
    """A list of "host", "host:port" or "[v6]:port"; every bad entry is named."""
    if not isinstance(value, list | tuple):
        raise _fail(f'must be a list of "host" or "host:port" strings, got {describe(value)}')
    errors = []
    for item in value:
        try:
            parse_host_port(item)
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise _fail("; ".join(errors))
    return tuple(value)


def _encrypt(value: object) -> str:
    """Standard base64 of exactly KEY_BYTES; the key itself never appears in messages."""
    rule = f'must be base64 of exactly {KEY_BYTES} bytes (make one with "gossamer keygen")'
    if not isinstance(value, str):
        raise _fail(f"{rule}, got {describe(value)}")
    try:
        return validate_key(value)
    except InvalidKeyError as exc:
        raise _fail(f"{exc}; {rule}") from None


def _join_token(value: object) -> str:
    """A shared enrolment secret; long enough that guessing it (scrypt-slowed) is hopeless."""
    rule = f"must be a string of at least {JOIN_TOKEN_MIN} characters"
    if isinstance(value, str) and len(value) >= JOIN_TOKEN_MIN and value.isprintable():
        return value
    shown = f"{len(value)} characters" if isinstance(value, str) else describe(value)
    raise _fail(f"{rule}, got {shown}")  # never the token itself: it is a secret


def _test_leaf_ttl(value: object) -> timedelta | None:
    if value is None:
        return None
    ttl = _duration(value)
    if not TEST_LEAF_TTL_MIN <= ttl <= timedelta(hours=1):
        raise _fail(f"must be from 10s to 1h, got {describe(value)}")
    return ttl


def _log_level(value: object) -> str:
    if isinstance(value, str) and value.lower() in LEVELS:
        return value.lower()
    raise _fail(f"must be one of {', '.join(LEVELS)}, got {describe(value)}")


def _node_meta(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(f"must be a mapping of strings to strings, got {describe(value)}")
    errors = [] if len(value) <= META_MAX_PAIRS else [f"at most {META_MAX_PAIRS} pairs allowed"]
    errors += [e for key, item in value.items() for e in _meta_pair_errors(key, item)]
    if errors:
        raise _fail("; ".join(errors[:5]) + ("; ..." if len(errors) > 5 else ""))
    return dict(value)


def _meta_pair_errors(key: object, value: object) -> list[str]:
    if not isinstance(key, str):
        return [f"key {describe(key)} must be a string"]
    errors = []
    if not meta_key_ok(key):
        errors.append(f"key {describe(key)} must be 1-{META_KEY_MAX} of a-z A-Z 0-9 _ -")
    elif key.startswith(META_RESERVED_PREFIX):
        errors.append(f'key {describe(key)}: prefix "{META_RESERVED_PREFIX}" is reserved')
    if not isinstance(value, str):
        errors.append(f"value of {describe(key)} must be a string (quote it in YAML)")
    elif meta_value_size(value) > META_VALUE_MAX:  # bytes, as Consul counts
        errors.append(
            f"value of {describe(key)} is longer than {META_VALUE_MAX} characters (UTF-8 bytes)"
        )
    return errors


Port = Annotated[int, BeforeValidator(_port)]
IP = Annotated[str, BeforeValidator(_ip)]
Addresses = Annotated[tuple[str, ...], BeforeValidator(_addresses)]


class AgentConfig(BaseModel):
    """The resolved agent config: defaults <- files in order <- flags.

    Addresses are canonical IP strings; `join`/`retry_join` entries always
    carry a port ("10.0.0.1:8301", "[fd00::1]:8301"); `data_dir` is None only
    in dev mode, where the caller makes a temporary directory.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    node: Annotated[str, BeforeValidator(_node)]
    datacenter: Annotated[str, BeforeValidator(_datacenter)] = "dc1"
    # Gossip and agent RPC listen here. The default (0.0.0.0, or 127.0.0.1 in
    # dev mode) is applied at load time because it depends on `dev`.
    bind: IP
    # What peers are told to dial; 0.0.0.0 cannot be dialled, so a bind on
    # all interfaces advertises the host's private IPv4, as Consul does.
    advertise: IP
    client: IP = "127.0.0.1"  # HTTP and DNS: local only unless asked, like Consul
    http_port: PortOrOff = 8500  # -1: no plain HTTP listener (HTTPS only)
    dns_port: Port = 8600
    serf_port: Port = 8301
    rpc_port: Port = 8300
    data_dir: Annotated[Path | None, BeforeValidator(_path)] = None
    join: Addresses = ()
    retry_join: Addresses = ()
    # Cap of the exponential backoff between retry-join rounds (Consul: 30s).
    retry_interval: Annotated[timedelta, BeforeValidator(_duration)] = timedelta(seconds=30)
    retry_max: Annotated[int, BeforeValidator(_count)] = 0  # 0: keep trying forever
    encrypt: Annotated[str | None, BeforeValidator(_encrypt)] = None
    # Enrolment secret (README "Identity"): agents seal the CA key under it and
    # need it to sign their own intermediate; wins over the gossip keyring.
    join_token: Annotated[str | None, BeforeValidator(_join_token)] = None
    # FOR TESTS ONLY: this agent's leaves and agent certificate get this TTL
    # instead of LeafCertTTL (whose minimum is 1h), so a test can watch
    # renewals and rotations end. Never set it in production.
    test_leaf_cert_ttl: Annotated[timedelta | None, BeforeValidator(_test_leaf_ttl)] = None
    log_level: Annotated[str, BeforeValidator(_log_level)] = "info"
    log_json: Flag = False
    dev: Flag = False
    node_meta: Annotated[dict[str, str], BeforeValidator(_node_meta)] = Field(default_factory=dict)
    # A client agent that is stopped should leave rather than look failed to
    # its peers (Consul's client default); restarting after a leave should not
    # silently rejoin unless asked.
    leave_on_terminate: Flag = True
    rejoin_after_leave: Flag = False
    # Services and checks defined in config files, registered on start and
    # again on reload (entries are canonical JSON; see registrations.py).
    services: Annotated[tuple[str, ...], BeforeValidator(service_definitions)] = ()
    checks: Annotated[tuple[str, ...], BeforeValidator(check_definitions)] = ()
    # Consul's two switches for script checks (`Args`), both off by default:
    # from config files only, or from the HTTP API too.
    enable_local_script_checks: Flag = False
    enable_script_checks: Flag = False
    # Nested sections (sections.py); merged key by key across files.
    dns: DnsConfig = DnsConfig()
    # default_policy is never None once loaded: load fills it from `dev`.
    intentions: IntentionsConfig = IntentionsConfig()
    # An operator's own CA root for the mesh's first root (connect_section.py).
    connect: ConnectConfig = ConnectConfig()
    # Tokens and policies (acl_section.py); off unless enabled.
    acl: AclConfig = AclConfig()
    # The HTTP API over TLS on its own port (https_section.py); off unless a port is set.
    https: HttpsConfig = HttpsConfig()
    sources: tuple[str, ...] = ()  # files read, in the order they were merged


CONFIG_KEYS: tuple[str, ...] = tuple(k for k in AgentConfig.model_fields if k != "sources")


def _optional(model: type[BaseModel], name: str) -> Any:
    """Same annotation and validator as on `model`; unset defaults to None.

    The None default is never validated, so an unset key is simply absent,
    while an explicit `key: null` in a file still reaches the validator.
    """
    return (model.model_fields[name].rebuild_annotation(), None)


def _layer(name: str, model: type[BaseModel], keys: tuple[str, ...]) -> type[BaseModel]:
    fields = {key: _optional(model, key) for key in keys}
    return create_model(name, __config__=ConfigDict(extra="forbid", strict=True), **fields)


ConfigLayer: type[BaseModel] = _layer("ConfigLayer", AgentConfig, CONFIG_KEYS)

# Section key -> its sub-keys, and the layer that checks one sub-key alone.
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    key: tuple(model.model_fields) for key, model in SECTIONS.items()
}
SECTION_LAYERS: dict[str, type[BaseModel]] = {
    key: _layer(f"{model.__name__}Layer", model, SECTION_KEYS[key])
    for key, model in SECTIONS.items()
}
