"""The config section `connect:` — an operator's own CA root (Consul's `connect.ca_config`).

    connect:
      ca_config:
        root_cert: |
          -----BEGIN CERTIFICATE----- ...
        private_key: |
          -----BEGIN EC PRIVATE KEY----- ...

Both or neither. They are checked when the config loads (the key matches
the root, the root is a CA, valid now, with one SPIFFE trust domain:
proxy/ca/operator_root.py), so a bad root stops the agent with the file and
key named. The agent uses them only to create the mesh's first root; once a
root exists they are refused with a warning (rotate instead). TTLs are not
set here but through `PUT /v1/connect/ca/configuration`: they are
cluster-wide state, not one agent's config. The values are secrets: the
reload diff never shows them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from gossamer.agent.config.errors import describe
from gossamer.agent.config.values import _fail
from gossamer.proxy.ca.errors import CaConfigError
from gossamer.proxy.ca.operator_root import load_operator_root

CA_CONFIG_KEYS = ("root_cert", "private_key")


def _ca_config(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(f"must be a mapping with root_cert and private_key, got {describe(value)}")
    unknown = sorted(str(k) for k in value if k not in CA_CONFIG_KEYS)
    if unknown:
        raise _fail(
            f"only root_cert and private_key may be set here (TTLs are cluster-wide: "
            f"PUT /v1/connect/ca/configuration), got {', '.join(unknown)}"
        )
    if not value:
        return {}
    if set(value) != set(CA_CONFIG_KEYS) or not all(isinstance(v, str) for v in value.values()):
        raise _fail("root_cert and private_key must both be given, as PEM text")
    try:
        load_operator_root(value["root_cert"], value["private_key"], datetime.now(UTC))
    except CaConfigError as exc:
        raise _fail("; ".join(exc.problems)) from None
    return dict(value)


class ConnectConfig(BaseModel):
    """`connect:` — the mesh CA as this agent's config may seed it."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    ca_config: Annotated[dict[str, str], BeforeValidator(_ca_config)] = Field(default_factory=dict)
