"""A resumed session the inbound side can no longer check is not offered again and again.

A resumed TLS session presents the client's leaf alone; the inbound side
checks it with the chain its full handshake verified, which it remembers
for the last 1,024 client leaves (`ChainMemory`). A client whose chain
was pushed out (by 1,024 other clients' since) resumes, is refused after
the handshake (`unknown-issuer`), and its sidecar used to keep its
session, since the handshake itself succeeded: every new connection of
that client to that instance resumed and was refused, until the session
aged out (5 min). Now a connection made for a client that resumed and is
closed with no answer drops the session: the next one makes a full
handshake, its chain is verified and remembered again, and it is served.
In-process: a real inbound side and upstream listener, real TLS.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from gossamer.proxy import tally
from gossamer.proxy.authorize import Refused, client_service
from gossamer.proxy.ca.verified_chain import ChainMemory
from gossamer.proxy.config import Upstream
from gossamer.proxy.inbound import Inbound
from gossamer.proxy.outbound import UpstreamListener
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async
from tests.inbound_served import served_db
from tests.proxy_pki import Pki
from tests.proxy_support import exchange


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Inbound, UpstreamListener, int]]:
    async with served_db() as served:
        up = free_port("127.0.0.1")
        web_identity = served.pki.identity("web")
        web = UpstreamListener(Upstream("db", up, connect_timeout_s=2), lambda: web_identity,
                               tally.Tally())  # fmt: skip
        web.set_instances([("127.0.0.1", served.port)])
        await web.start()
        try:
            yield served.inbound, web, up
        finally:
            web.stop_listening()
            web.terminate_all()


async def test_a_resumed_session_refused_after_its_handshake_is_dropped(
    pair: tuple[Inbound, UpstreamListener, int],
) -> None:
    db, web, up = pair
    assert await exchange(up, b"one") == b"one<eof>"
    results = []
    for _ in range(3):
        web.tunnels.close_all()  # the next client needs a new connection: it resumes

        async def closed() -> bool:
            return not web.tunnels.muxes

        await eventually_async(closed, 5)
        db.chains._chains.clear()  # as 1,024 other clients' chains would push it out
        results.append(await exchange(up, b"two"))
        assert await exchange(up, b"three") == b"three<eof>"  # a full handshake: served
    assert results.count(b"") <= 3
    assert db.tally.snapshot()["inbound.refused.unknown-issuer"] == results.count(b"")


def test_a_resumed_leaf_whose_chain_is_forgotten_is_refused_saying_so() -> None:
    """The refusal names what happened (the operator sees a client of this mesh, not a rogue
    certificate whose chain leads nowhere); its reason stays `unknown-issuer`."""
    pki = Pki()
    web = pki.leaf_json("web")
    leaf = ssl.PEM_cert_to_DER_cert(web["CertPEM"].split("-----END CERTIFICATE-----")[0]
                                    + "-----END CERTIFICATE-----\n")  # fmt: skip
    trust = pki.identity("db").trust
    with pytest.raises(Refused) as refused:
        client_service([leaf], trust, datetime.now(UTC), ChainMemory())
    assert refused.value.reason == tally.UNKNOWN_ISSUER
    assert "resumed session" in str(refused.value) and "no longer remembered" in str(refused.value)
