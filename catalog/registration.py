"""Consul registration bodies parsed into catalog values: pure, no I/O.

The agent's `PUT /v1/agent/service/register` and `/v1/agent/check/register`,
config-file `services:`/`checks:` and the CLI all go through here, so every
source accepts the same keys and reports the same errors:

    reg = parse_service_registration(body, node_address=..., used_sidecar_ports=...)
    reg.service, reg.checks, reg.sidecar, reg.sidecar_checks, reg.initial_checks()
    check = parse_check_registration(body, service_ids=..., allow_script=...)
    check.to_check(service)   # the model Check it starts as

Every problem raises `RegistrationError` naming the field path
(`Checks[1].Interval`, `Meta["bad key!"]`, `Connect.SidecarService.Port`);
its subclasses `ServiceNotRegistered` (an unknown ServiceID) and
`RegistrationConflict` (valid, but colliding with what is held) let the HTTP
edge answer 404 and 409. Nothing is half-registered: a body either parses
whole or not.

The rules, and where Consul's own behaviour was checked, are in the module
docs of registration_check (keys, checks) and registration_service (services,
sidecars).
"""

from __future__ import annotations

from gossamer.catalog.registration_check import (
    CHECK_STATUSES,
    DEFAULT_OUTPUT_MAX_SIZE,
    CheckDefinition,
    RegistrationConflict,
    RegistrationError,
    ServiceNotRegistered,
    format_duration,
    parse_check_registration,
)
from gossamer.catalog.registration_service import (
    KINDS,
    SIDECAR_PORT_RANGE,
    SIDECAR_SUFFIX,
    ServiceRegistration,
    parse_service_registration,
)

__all__ = [
    "CHECK_STATUSES",
    "DEFAULT_OUTPUT_MAX_SIZE",
    "KINDS",
    "SIDECAR_PORT_RANGE",
    "SIDECAR_SUFFIX",
    "CheckDefinition",
    "RegistrationConflict",
    "RegistrationError",
    "ServiceNotRegistered",
    "ServiceRegistration",
    "format_duration",
    "parse_check_registration",
    "parse_service_registration",
]
