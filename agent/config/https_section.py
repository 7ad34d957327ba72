"""The config section `https:` — the HTTP API over TLS (Consul's `ports.https` and
`tls.https`), on its own port beside plain HTTP.

    https:
      port: 8501                 # the default once cert_file is given; -1: off (Consul's spelling)
      cert_file: /etc/gossamer/agent.pem
      key_file: /etc/gossamer/agent-key.pem
      ca_file: /etc/gossamer/clients-ca.pem   # needed by verify_incoming
      verify_incoming: true      # clients must present a certificate signed by ca_file

Without cert_file and key_file the agent serves a certificate signed by the
mesh CA for its own names and addresses (agent/identity/https_certificate.py).
HTTPS is on when `port` is a port, or when cert_file is given (port 8501);
`port: -1` turns it off whatever else is set. Plain HTTP (`http_port`,
Consul's `ports.http`) is switched on and off on its own; an agent with
neither is a config error. The files are read when the agent starts (a bad
one stops it, naming the file).
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from gossamer.agent.config.errors import describe
from gossamer.agent.config.values import PORT_OFF, Flag, PortOrOff, _fail

DEFAULT_PORT = 8501  # Consul's ports.https when HTTPS is configured


def _path(value: object) -> str:
    if isinstance(value, str) and value:
        return value
    raise _fail(f"must be a file path, got {describe(value)}")


class HttpsConfig(BaseModel):
    """`https:` — where and with which certificate the API also listens over TLS."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    port: PortOrOff | None = None
    cert_file: Annotated[str | None, BeforeValidator(_path)] = None
    key_file: Annotated[str | None, BeforeValidator(_path)] = None
    ca_file: Annotated[str | None, BeforeValidator(_path)] = None
    verify_incoming: Flag = False

    @property
    def listen_port(self) -> int | None:
        """The port HTTPS listens on, or None when it is off."""
        if self.port == PORT_OFF or (self.port is None and self.cert_file is None):
            return None
        return self.port or DEFAULT_PORT

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if bool(self.cert_file) != bool(self.key_file):
            raise _fail("cert_file and key_file go together (neither: the mesh CA signs one)")
        if self.verify_incoming and not self.ca_file:
            raise _fail("verify_incoming needs ca_file (the CA that signs client certificates)")
        return self
