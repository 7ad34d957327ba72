"""Two HTTP sidecars in this process over real sockets and real mTLS, for in-process tests.

web's upstream listener (any protocol) -> mTLS -> db's HTTP inbound -> an
app written by the test; web -> db allowed. The modules run as Python.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.proxy import tally
from gossamer.proxy.config import ProxyConfig, Upstream
from gossamer.proxy.inbound import Inbound
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.policy import Policy
from tests.harness.cluster import free_port
from tests.proxy_pki import Pki

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def http_pair(
    app_handler: Handler,
    web_protocol: str = "http",
    pki: Pki | None = None,
    db_fields: dict[str, Any] | None = None,
    **upstream: Any,
) -> AsyncIterator[tuple[UpstreamListener, Inbound]]:
    """(web's upstream listener, db's inbound), both listening; `upstream`: more of web's
    Upstream fields (timeouts, pool sizes); `db_fields`: more of db's ProxyConfig fields;
    `pki`: the mesh both leaves come from, for a test that gives web a new one."""
    app = await asyncio.start_server(app_handler, "127.0.0.1", 0)
    pki = pki or Pki()
    db_identity, web_identity = pki.identity("db"), pki.identity("web")
    policy = Policy()
    policy.intentions, policy.known = IntentionSet([Intention("web", "db", action="allow")]), True
    port = free_port("127.0.0.1")
    config = ProxyConfig(service="db", bind_address="127.0.0.1", bind_port=port, protocol="http",
                         local_port=app.sockets[0].getsockname()[1],
                         **(db_fields or {}))  # fmt: skip
    db = Inbound(config, lambda: db_identity, policy, tally.Tally())
    await db.start()
    web = UpstreamListener(Upstream("db", free_port("127.0.0.1"), protocol=web_protocol,
                                    **upstream), lambda: web_identity, tally.Tally())  # fmt: skip
    web.set_instances([("127.0.0.1", port)])
    await web.start()
    try:
        yield web, db
    finally:
        for side in (web, db):
            side.stop_listening()
            side.terminate_all()
        app.close()
