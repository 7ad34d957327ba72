"""An inbound port in process for the tests that drive it with real sockets and TLS.

`served_db` starts `db`'s inbound port on 127.0.0.1, in front of an echo
app, with an identity from a test CA (`Pki`) and an intention allowing
`web`; the test gets the port, the CA to make clients with, and the
`Inbound` itself, and everything is stopped after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.proxy import tally
from gossamer.proxy.config import ProxyConfig, Timeouts
from gossamer.proxy.inbound import Inbound, Policy
from tests.harness.cluster import free_port
from tests.proxy_pki import Pki
from tests.proxy_support import echo_until_end


@dataclass
class Served:
    inbound: Inbound
    pki: Pki
    port: int


@contextlib.asynccontextmanager
async def served_db(timeouts: Timeouts | None = None) -> AsyncIterator[Served]:
    """db's inbound port allowing web, its app an echo server (`timeouts`: the config's)."""
    app = await asyncio.start_server(echo_until_end, "127.0.0.1", 0)
    pki = Pki()
    identity = pki.identity("db")
    policy = Policy()
    policy.intentions = IntentionSet([Intention("web", "db", action="allow")])
    policy.known = True
    port = free_port("127.0.0.1")
    config = ProxyConfig(service="db", bind_address="127.0.0.1", bind_port=port,
                         local_port=app.sockets[0].getsockname()[1],
                         timeouts=timeouts or Timeouts())  # fmt: skip
    inbound = Inbound(config, lambda: identity, policy, tally.Tally())
    await inbound.start()
    try:
        yield Served(inbound, pki, port)
    finally:
        inbound.stop_listening()
        inbound.terminate_all()
        app.close()
