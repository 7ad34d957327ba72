"""The CA configuration: TTLs and the key type, with the bounds that keep them usable.

Defaults are Consul's (connect.ca_config):
- LeafCertTTL 72h, allowed 1h to 1 year (8760h): shorter and renewals at
  half-life would churn every few minutes; longer and a stolen leaf stays
  good for too long.
- IntermediateCertTTL 8760h (1 year), at least three leaf TTLs: an agent
  renews its intermediate at half-life, and what is left must still cover a
  whole leaf signed just before.
- RootCertTTL 87600h (10 years), at least the intermediate TTL.
- PrivateKeyType "ec", PrivateKeyBits 256.
Every problem is reported at once in one CaConfigError, each naming its
field. A private key never lives here: it is key material, not configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from gossamer.catalog.durations import DurationError, parse_timedelta
from gossamer.proxy.ca.errors import CaConfigError
from gossamer.proxy.ca.keys import KeySpec, key_spec

LEAF_TTL_DEFAULT = timedelta(hours=72)
LEAF_TTL_MIN = timedelta(hours=1)
LEAF_TTL_MAX = timedelta(hours=8760)
INTERMEDIATE_TTL_DEFAULT = timedelta(hours=8760)
ROOT_TTL_DEFAULT = timedelta(hours=87600)
_INTERMEDIATE_PER_LEAF = 3


@dataclass(frozen=True)
class CaSettings:
    leaf_cert_ttl: timedelta = LEAF_TTL_DEFAULT
    intermediate_cert_ttl: timedelta = INTERMEDIATE_TTL_DEFAULT
    root_cert_ttl: timedelta = ROOT_TTL_DEFAULT
    key: KeySpec = field(default_factory=KeySpec)


@dataclass(frozen=True)
class CaConfigUpdate:
    """A PUT /v1/connect/ca/configuration body, read: settings and an optional own root."""

    settings: CaSettings
    private_key_pem: str | None = None
    root_cert_pem: str | None = None


def check_settings(settings: CaSettings) -> CaSettings:
    """`settings` if usable; one CaConfigError listing every bound it breaks."""
    problems = [*leaf_ttl_problems(settings.leaf_cert_ttl)]
    if settings.intermediate_cert_ttl < _INTERMEDIATE_PER_LEAF * settings.leaf_cert_ttl:
        problems.append(
            f"IntermediateCertTTL: must be at least {_INTERMEDIATE_PER_LEAF} x LeafCertTTL "
            f"({_hours(_INTERMEDIATE_PER_LEAF * settings.leaf_cert_ttl)}), "
            f"got {_hours(settings.intermediate_cert_ttl)}"
        )
    if settings.root_cert_ttl < settings.intermediate_cert_ttl:
        problems.append(
            f"RootCertTTL: must be at least IntermediateCertTTL "
            f"({_hours(settings.intermediate_cert_ttl)}), got {_hours(settings.root_cert_ttl)}"
        )
    try:
        key_spec(settings.key.key_type, settings.key.bits)
    except CaConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise CaConfigError(*problems)
    return settings


def leaf_ttl_problems(ttl: timedelta, name: str = "LeafCertTTL") -> list[str]:
    """Why `ttl` is not a usable leaf lifetime (empty when it is)."""
    if LEAF_TTL_MIN <= ttl <= LEAF_TTL_MAX:
        return []
    return [f"{name}: must be between 1h and 8760h (1 year), got {_hours(ttl)}"]


def read_consul_config(config: Mapping[str, object]) -> CaConfigUpdate:
    """Consul's CA `Config` map (CamelCase, Go durations); every problem at once.

    Unknown keys (RotationPeriod, CSRMaxPerSecond ...) are ignored, as
    Consul's decoder ignores what a provider does not use.
    """
    problems: list[str] = []
    ttls = {
        name: _duration(config, name, default, problems)
        for name, default in (
            ("LeafCertTTL", LEAF_TTL_DEFAULT),
            ("IntermediateCertTTL", INTERMEDIATE_TTL_DEFAULT),
            ("RootCertTTL", ROOT_TTL_DEFAULT),
        )
    }
    spec = KeySpec()
    try:
        spec = key_spec(config.get("PrivateKeyType", "ec"), config.get("PrivateKeyBits"))
    except CaConfigError as exc:
        problems.extend(exc.problems)
    pems = {name: _text(config, name, problems) for name in ("PrivateKey", "RootCert")}
    if bool(pems["PrivateKey"]) != bool(pems["RootCert"]):
        problems.append("PrivateKey: PrivateKey and RootCert must be given together")
    settings = CaSettings(
        ttls["LeafCertTTL"], ttls["IntermediateCertTTL"], ttls["RootCertTTL"], spec
    )
    try:
        check_settings(settings)
    except CaConfigError as exc:
        problems.extend(p for p in exc.problems if p not in problems)
    if problems:
        raise CaConfigError(*problems)
    return CaConfigUpdate(settings, pems["PrivateKey"] or None, pems["RootCert"] or None)


def _duration(
    config: Mapping[str, object], name: str, default: timedelta, problems: list[str]
) -> timedelta:
    value = config.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        problems.append(f'{name}: must be a duration string like "72h", got {value!r}')
        return default
    try:
        return parse_timedelta(value)
    except DurationError:
        problems.append(f'{name}: must be a duration like "72h", got {value!r}')
        return default


def _text(config: Mapping[str, object], name: str, problems: list[str]) -> str:
    value = config.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.append(f"{name}: must be a PEM string, got {type(value).__name__}")
        return ""
    return value


def _hours(ttl: timedelta) -> str:
    hours = ttl.total_seconds() / 3600
    return f"{hours:g}h"
