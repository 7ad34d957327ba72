"""The pure rules behind agent RPC's refusals: who a peer is, what it may push, the HLC bound,
and how often a refusal is logged. No sockets."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from gossamer.agent.sync import refusals
from gossamer.agent.sync.peer_check import (
    PeerRefused,
    Trust,
    check_peer,
    reason_of_verify_code,
)
from gossamer.agent.sync.refusals import LogLimiter, Refusals
from gossamer.catalog import absorb, lww
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.lww_sync import MAX_CLOCK_OFFSET_MS, split_ahead
from gossamer.proxy.ca.verify import SERVER_AUTH
from tests.harness.identity import Credentials, Mesh, MeshIdentity, node_id
from tests.harness.replication import node_record

MESH = Mesh()


def der(credentials: Credentials) -> list[bytes]:
    return [
        c.public_bytes(serialization.Encoding.DER)
        for c in (credentials.certificate, credentials.intermediate)
    ]


def trust(identity: MeshIdentity) -> Trust:
    return Trust(identity.trust_domain, identity.bundle(), identity.is_revoked)


# -- check_peer ------------------------------------------------------------------------------


def test_a_verified_agent_is_named_by_its_certificate() -> None:
    peer = check_peer(der(MESH.enrol("a")), trust(MeshIdentity(MESH, None)), MESH.now)
    assert peer.node == "a"
    assert peer.agent.node_id == node_id("a") and peer.agent.trust_domain == MESH.trust_domain
    assert len(peer.chain) == 3  # leaf, intermediate, root


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: Mesh(now=MESH.now).enrol("x"), refusals.UNKNOWN_ISSUER),
        (lambda: MESH.expired("x"), refusals.EXPIRED),
        (lambda: MESH.foreign_domain("x"), refusals.FOREIGN_TRUST_DOMAIN),
        (lambda: MESH.service_leaf("x"), refusals.NOT_AN_AGENT),
    ],
    ids=["rogue CA", "expired", "foreign trust domain", "service leaf"],
)
def test_what_is_not_an_agent_of_this_mesh_is_refused_with_its_reason(
    make: object, reason: str
) -> None:
    with pytest.raises(PeerRefused) as caught:
        check_peer(der(make()), trust(MeshIdentity(MESH, None)), MESH.now)  # type: ignore[operator]
    assert caught.value.reason == reason


def test_not_yet_valid_no_certificate_and_garbage() -> None:
    identity = MeshIdentity(MESH, None)
    early = MESH.now - timedelta(hours=1)  # before the leaf's NotBefore (now - 1 min)
    for chain, at, reason in [
        (der(MESH.enrol("x")), early, refusals.NOT_YET_VALID),
        ([], MESH.now, refusals.NO_CERTIFICATE),
        ([b"not a certificate"], MESH.now, refusals.BAD_CERTIFICATE),
    ]:
        with pytest.raises(PeerRefused) as caught:
            check_peer(chain, trust(identity), at)
        assert caught.value.reason == reason


def test_a_revoked_agent_or_intermediate_is_refused() -> None:
    identity = MeshIdentity(MESH, None)
    credentials = MESH.enrol("c")
    assert check_peer(der(credentials), trust(identity), MESH.now).node == "c"
    identity.revoke("c")
    with pytest.raises(PeerRefused) as caught:
        check_peer(der(credentials), trust(identity), MESH.now)
    assert caught.value.reason == refusals.REVOKED


def test_another_mesh_of_the_same_trust_domain_name_is_still_unknown() -> None:
    # The same cluster id, hence the same trust domain, but another root key.
    other = MeshIdentity(Mesh(now=MESH.now), None)
    assert other.trust_domain == MESH.trust_domain
    with pytest.raises(PeerRefused) as caught:
        check_peer(der(MESH.enrol("a")), trust(other), MESH.now, purpose=SERVER_AUTH)
    assert caught.value.reason == refusals.UNKNOWN_ISSUER


def test_openssl_verify_codes_map_onto_the_same_reasons() -> None:
    assert reason_of_verify_code(10) == refusals.EXPIRED
    assert reason_of_verify_code(9) == refusals.NOT_YET_VALID
    assert reason_of_verify_code(20) == refusals.UNKNOWN_ISSUER
    assert reason_of_verify_code(47) == refusals.FOREIGN_TRUST_DOMAIN
    assert reason_of_verify_code(None) == reason_of_verify_code(999) == refusals.BAD_CERTIFICATE


# -- what a peer may push --------------------------------------------------------------------


def test_a_pusher_keeps_its_own_records_only() -> None:
    external = dataclasses.replace(node_record("x2", 1), origin="x")  # registered through x
    records = [node_record("x", 1), node_record("y", 2), external]
    owned, foreign = absorb.split_owned(records, "x")
    assert [r.node for r in owned] == ["x", "x2"]
    assert [r.node for r in foreign] == ["y"]


# -- the HLC bound ---------------------------------------------------------------------------


def entry(wall_ms: int) -> lww.Entry:
    return lww.Entry(Timestamp(wall_ms, 0, "peer"), {"v": wall_ms})


def test_entries_beyond_the_clock_offset_bound_are_split_off() -> None:
    now = 1_700_000_000_000
    entries = [
        ("past", entry(now - 10**9)),
        ("now", entry(now)),
        ("at the bound", entry(now + MAX_CLOCK_OFFSET_MS)),
        ("past the bound", entry(now + MAX_CLOCK_OFFSET_MS + 1)),
        ("days ahead", entry(now + 3 * 86_400_000)),
    ]
    kept, ahead = split_ahead(entries, now)
    assert [k for k, _ in kept] == ["past", "now", "at the bound"]
    assert [k for k, _ in ahead] == ["past the bound", "days ahead"]
    assert split_ahead(entries, now, bound_ms=0)[0] == entries[:2]


def test_the_bound_is_a_minute() -> None:
    assert MAX_CLOCK_OFFSET_MS == 60_000


# -- counting and the log limiter ------------------------------------------------------------


def test_one_log_line_per_address_per_minute() -> None:
    limiter = LogLimiter()
    assert limiter.allow("10.0.0.1", 0)
    assert not limiter.allow("10.0.0.1", 59_999)
    assert limiter.allow("10.0.0.2", 59_999)  # another address has its own minute
    assert limiter.allow("10.0.0.1", 60_000)
    assert not limiter.allow("10.0.0.1", 60_001)


def test_the_limiter_remembers_a_bounded_number_of_addresses() -> None:
    limiter = LogLimiter(capacity=3)
    for n in range(3):
        assert limiter.allow(f"a{n}", n)
    assert limiter.allow("b", 10)  # full of recent ones: the oldest (a0) is forgotten
    assert limiter.allow("a0", 11)  # so it may log again (bounded memory beats precision)
    assert not limiter.allow("b", 12)
    assert len(limiter._last) == 3
    assert limiter.allow("c", 100_000)  # all stale by now: they make room
    assert len(limiter._last) <= 3


def test_every_refusal_is_counted_even_when_not_logged() -> None:
    counted = Refusals()
    logged = [counted.note(refusals.NOT_TLS, "10.0.0.9", t) for t in (0, 1, 2)]
    assert logged == [True, False, False]
    assert counted.counts()[refusals.NOT_TLS] == 3 and counted.total == 3
    assert set(counted.counts()) == set(refusals.REASONS)
    with pytest.raises(ValueError, match="unknown refusal reason"):
        counted.note("made-up", "10.0.0.9", 3)


def test_a_new_mesh_clock_is_real_time() -> None:
    """OpenSSL checks validity against the real clock, so a mesh made for a socket test is now.

    (This module's MESH is made at import and checked at its own `now`,
    which may be long past in a full run; rogue meshes here share it.)
    """
    assert abs(Mesh().now - datetime.now(UTC)) < timedelta(seconds=30)
