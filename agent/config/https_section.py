"""The config section `https:` — the HTTP API over TLS (Consul's `ports.https` and
`tls.https`), on its own port beside plain HTTP.

    https:
      port: 8501                 # unset: no HTTPS listener (Consul's -1)
      cert_file: /etc/gossamer/agent.pem
      key_file: /etc/gossamer/agent-key.pem
      ca_file: /etc/gossamer/clients-ca.pem   # needed by verify_incoming
      verify_incoming: true      # clients must present a certificate signed by ca_file

The files are read when the agent starts (a bad one stops it, naming the
file). A server certificate issued by the mesh CA when no files are given
is not done yet (README, ACLs and HTTPS).
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from gossamer.agent.config.errors import describe
from gossamer.agent.config.values import Flag, _fail


def _port(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    raise _fail(f"must be an integer between 1 and 65535, got {describe(value)}")


def _path(value: object) -> str:
    if isinstance(value, str) and value:
        return value
    raise _fail(f"must be a file path, got {describe(value)}")


class HttpsConfig(BaseModel):
    """`https:` — where and with which certificate the API also listens over TLS."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    port: Annotated[int | None, BeforeValidator(_port)] = None
    cert_file: Annotated[str | None, BeforeValidator(_path)] = None
    key_file: Annotated[str | None, BeforeValidator(_path)] = None
    ca_file: Annotated[str | None, BeforeValidator(_path)] = None
    verify_incoming: Flag = False

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.port is not None and not (self.cert_file and self.key_file):
            raise _fail("port is set: cert_file and key_file are needed too")
        if self.verify_incoming and not self.ca_file:
            raise _fail("verify_incoming needs ca_file (the CA that signs client certificates)")
        return self
