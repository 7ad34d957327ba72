"""Where the agent's own HTTP API answers: plain HTTP, HTTPS, or both.

Each is switched on and off on its own (`http_port: -1`, `https.port: -1`,
Consul's `ports.http` / `ports.https`), so whatever needs the agent's own
address (the status line, the ready banner, /v1/agent/self) asks here and
never assumes port 8500. Plain HTTP is preferred when both are on: a local
caller then needs no CA file.
"""

from __future__ import annotations

from typing import NamedTuple

from gossamer.agent.config.schema import AgentConfig
from gossamer.agent.config.values import PORT_OFF
from gossamer.gossip.addresses import format_host_port


class ApiListener(NamedTuple):
    scheme: str  # "http" | "https"
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"{self.scheme}://{format_host_port(self.host, self.port)}"


def api_listeners(c: AgentConfig) -> list[ApiListener]:
    """The API's listeners, plain HTTP first; never empty (the config refuses neither)."""
    found = []
    if c.http_port != PORT_OFF:
        found.append(ApiListener("http", c.client, c.http_port))
    if c.https.listen_port is not None:
        found.append(ApiListener("https", c.client, c.https.listen_port))
    return found
