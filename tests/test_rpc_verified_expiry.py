"""Agent RPC's memory of verified peer chains forgets a chain once it has expired.

Each renewal of a peer's agent certificate is a new chain; the old one is
never presented again, so keeping it until the size bound only grows the
agent's memory. The clock is injected: no sockets, no sleep.
"""

from __future__ import annotations

from datetime import timedelta

from cryptography.hazmat.primitives import serialization

from gossamer.agent.sync.tls import AgentTls
from gossamer.proxy.ca.verify import SERVER_AUTH
from tests.harness.identity import Credentials, Mesh, MeshIdentity

MESH = Mesh()
START_MS = int(MESH.now.timestamp() * 1000)


def der(credentials: Credentials) -> tuple[bytes, ...]:
    return tuple(
        c.public_bytes(serialization.Encoding.DER)
        for c in (credentials.certificate, credentials.intermediate)
    )


class Clock:
    def __init__(self) -> None:
        self.ms = START_MS

    def __call__(self) -> int:
        return self.ms


def test_an_expired_chain_is_forgotten_when_the_next_one_is_verified() -> None:
    clock = Clock()
    tls = AgentTls(MeshIdentity(MESH, MESH.enrol("me")), wall_ms=clock)
    old = der(MESH.enrol("peer", ttl=timedelta(hours=1)))
    assert tls.verified_peer(old, SERVER_AUTH).node == "peer"
    assert tls.verified_peer(old, SERVER_AUTH).node == "peer"  # remembered, not a second entry
    assert len(tls._verified) == 1

    clock.ms += 2 * 3600 * 1000  # the first chain expired an hour ago; the peer renewed
    renewed = der(MESH.enrol("peer", at=MESH.now + timedelta(hours=1, minutes=50)))
    assert tls.verified_peer(renewed, SERVER_AUTH).node == "peer"
    assert len(tls._verified) == 1  # the expired chain is gone, not kept until the bound


def test_unexpired_chains_stay_remembered() -> None:
    tls = AgentTls(MeshIdentity(MESH, MESH.enrol("me")), wall_ms=Clock())
    chains = [der(MESH.enrol(name)) for name in ("b", "c", "d")]
    for chain in chains:
        tls.verified_peer(chain, SERVER_AUTH)
    assert len(tls._verified) == 3
