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
docs of registration_fields (keys, durations), registration_check (checks),
check_definition (what a check holds), registration_service, _draft, _proxy
and _sidecar (services), and names (IDs, metadata).
"""

from __future__ import annotations

from gossamer.catalog.check_definition import DEFAULT_OUTPUT_MAX_SIZE, CheckDefinition, HttpRequest
from gossamer.catalog.registration_check import CHECK_STATUSES, parse_check_registration
from gossamer.catalog.registration_fields import (
    RegistrationConflict,
    RegistrationError,
    ServiceNotRegistered,
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
    "HttpRequest",
    "RegistrationConflict",
    "RegistrationError",
    "ServiceNotRegistered",
    "ServiceRegistration",
    "parse_check_registration",
    "parse_service_registration",
]
