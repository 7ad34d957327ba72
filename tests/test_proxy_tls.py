"""TLS without sockets: two TlsPipes back to back, and the identity checks on what they carry."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.proxy import tally
from gossamer.proxy.authorize import (
    Refused,
    admit,
    client_service,
    decided_by,
    revoked_key_ids,
    server_service,
)
from gossamer.proxy.ca.keys import colon_hex, key_id
from gossamer.proxy.ca.verified_chain import ChainMemory
from gossamer.proxy.ca.verify import load_pem_chain
from gossamer.proxy.identity import with_revoked
from gossamer.proxy.sessions import SessionCache
from gossamer.proxy.tls_pipe import TlsPipe, _records
from tests.proxy_pki import CLUSTER_B, Pki, handshaken

PKI = Pki()


def pair(
    client_service_name: str = "web", server_service_name: str = "db"
) -> tuple[TlsPipe, TlsPipe]:
    return handshaken(PKI.identity(client_service_name).client,
                      PKI.identity(server_service_name).server)  # fmt: skip


def test_a_handshake_shows_each_side_the_chain_openssl_verified() -> None:
    client, server = pair()
    now = datetime.now(UTC)
    root = PKI.mesh.root.certificate.public_bytes(Encoding.DER)
    assert len(server.peer_certificates()) == 3 and server.peer_certificates()[-1] == root
    assert (
        client_service(server.peer_certificates(), PKI.identity("db").trust, now).service == "web"
    )
    assert (
        server_service(client.peer_certificates(), PKI.identity("web").trust, now, "db").service
        == "db"
    )
    with pytest.raises(Refused) as wrong:
        server_service(client.peer_certificates(), PKI.identity("web").trust, now, "cache")
    assert wrong.value.reason == tally.WRONG_SERVER and "not the upstream service 'cache'" in str(
        wrong.value
    )


def test_half_close_each_way_keeps_the_other_direction() -> None:
    client, server = pair()
    assert server.feed(client.encrypt(b"request")) == [b"request"]
    assert server.feed(client.close_write()) == [] and server.eof_received
    assert client.feed(server.encrypt(b"answer after the client's close_notify")) == [
        b"answer after the client's close_notify"
    ]
    client.feed(server.close_write())
    assert client.eof_received and client.eof_sent and server.eof_sent


def test_what_comes_after_close_notify_is_dropped_not_kept() -> None:
    """RFC 8446 6.1: data after a closure alert is ignored. It was written to the incoming
    BIO, never decrypted again: a peer that sent on after its close_notify had the proxy
    hold all of it (100 MiB in a review's run)."""
    client, server = pair()
    late = b"\x17\x03\x03\x40\x00" + bytes(0x4000)  # shaped as a record of application data
    assert server.feed(client.encrypt(b"last") + client.close_write() + late) == [b"last"]
    assert server.eof_received
    assert server._incoming.pending == 0
    assert server.feed(late) == [] and server._incoming.pending == 0


def test_records_go_through_the_c_object_and_through_sslobject_where_there_is_none() -> None:
    client, server = pair()
    assert _records(client.tls) is client.tls._sslobj  # type: ignore[attr-defined]

    class Bare:  # an interpreter whose SSLObject keeps no `_sslobj`
        pass

    assert isinstance(_records(Bare()), Bare)  # type: ignore[arg-type]
    client._records = client.tls  # type: ignore[assignment]
    server._records = server.tls  # type: ignore[assignment]
    assert b"".join(server.feed(client.encrypt(b"x" * 40_000))) == b"x" * 40_000
    assert client.feed(server.encrypt(b"answer")) == [b"answer"]


def test_garbage_is_an_ssl_error() -> None:
    server = TlsPipe(PKI.identity("db").server, server_side=True)
    with pytest.raises(ssl.SSLError):
        server.feed(b"GET / HTTP/1.1\r\n\r\n")


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(min_size=1, max_size=70_000), st.lists(st.integers(1, 5000), min_size=1))
def test_plaintext_survives_any_chunking_of_the_ciphertext(data: bytes, cuts: list[int]) -> None:
    client, server = CLIENT_SERVER
    wire = client.encrypt(data)
    got, at, i = [], 0, 0
    while at < len(wire):
        step = cuts[i % len(cuts)]
        got += server.feed(wire[at : at + step])
        at, i = at + step, i + 1
    assert b"".join(got) == data


CLIENT_SERVER = pair()


@pytest.mark.parametrize(
    ("intentions", "source", "allowed", "shown"),
    [
        ([], "web", False, "no intention matched; default policy is deny"),
        ([Intention("web", "db", action="allow", id="i1")], "web", True,
         "web => db (allow, id i1)"),
        ([Intention("*", "db", action="deny"), Intention("web", "db", action="allow")], "api",
         False, "* => db (deny)"),
    ],
)  # fmt: skip
def test_admission_uses_the_intentions_core_and_names_the_rule(
    intentions: list[Intention], source: str, allowed: bool, shown: str
) -> None:
    decision = admit(IntentionSet(intentions), source, "db", default_allow=False)
    assert decision.allowed is allowed and decided_by(decision) == shown


def test_a_chain_of_another_mesh_is_an_unknown_issuer() -> None:
    other = Pki(CLUSTER_B)
    chain = [
        c.public_bytes(Encoding.DER) for c in load_pem_chain(other.leaf_json("web")["CertPEM"])
    ]
    with pytest.raises(Refused) as refused:
        client_service(chain, PKI.identity("db").trust, datetime.now(UTC))
    assert refused.value.reason == tally.UNKNOWN_ISSUER


def connect(session: ssl.SSLSession | None) -> tuple[TlsPipe, TlsPipe]:
    """web -> db through two pipes; the client ends holding the server's ticket."""
    client, server = handshaken(PKI_WEB.client, PKI_DB.server, session)
    client.feed(server.encrypt(b"ticket rides along"))
    return client, server


PKI_WEB, PKI_DB = PKI.identity("web"), PKI.identity("db")


def test_a_resumed_session_is_checked_again_with_the_chain_its_full_handshake_verified() -> None:
    known = ChainMemory()
    first_client, first_server = connect(None)
    assert not first_server.resumed and len(first_server.peer_certificates()) == 3
    now = datetime.now(UTC)
    trust = PKI_DB.trust
    assert client_service(first_server.peer_certificates(), trust, now, known).service == "web"
    assert first_client.tls.session is not None and first_client.tls.session.has_ticket
    client, server = connect(first_client.tls.session)
    assert server.resumed and client.resumed
    leaf_only = server.peer_certificates()
    assert len(leaf_only) == 1  # no certificates travel on resumption
    assert client_service(leaf_only, trust, now, known).service == "web"  # checked again
    with pytest.raises(Refused) as refused:
        client_service(leaf_only, trust, now)  # without the remembered chain
    assert refused.value.reason == tally.UNKNOWN_ISSUER


def test_the_session_cache_keeps_one_per_instance_for_one_context_and_a_while() -> None:
    session = connect(None)[0].tls.session
    assert session is not None and session.has_ticket
    cache = SessionCache(max_age_s=10, refresh_s=8)
    assert not cache.wants("a", PKI_WEB.client, 0)  # a context `offer` has not met yet
    assert cache.offer("a", PKI_WEB.client, 0) is None  # first use of this context
    assert cache.wants("a", PKI_WEB.client, 0)
    cache.keep("a", PKI_WEB.client, session, 0)
    assert not cache.wants("a", PKI_WEB.client, 7.9)  # a fresh ticket: its session not read
    assert cache.wants("a", PKI_WEB.client, 8)  # due for replacement before it goes stale
    assert cache.offer("a", PKI_WEB.client, 10) is session
    assert cache.offer("a", PKI_WEB.client, 10.5) is None  # too old
    cache.keep("b", PKI_WEB.client, session, 20)
    cache.drop("b")
    assert cache.offer("b", PKI_WEB.client, 20) is None
    cache.keep("c", PKI_WEB.client, session, 30)
    renewed = PKI.identity("web").client  # a renewed leaf: a new context, no old session
    assert cache.offer("c", renewed, 30) is None and cache.offer("c", PKI_WEB.client, 30) is None


def verified_chain(service: str) -> list[bytes]:
    """A leaf of this mesh with its intermediate and root: a chain as OpenSSL verifies it."""
    certs = [*load_pem_chain(PKI.leaf_json(service)["CertPEM"]), PKI.mesh.root.certificate]
    return [c.public_bytes(Encoding.DER) for c in certs]


def test_the_chain_a_resumed_leaf_uses_is_kept_over_ones_not_used_since() -> None:
    """Full, the memory drops the chain least recently used, not the oldest put: a client
    that resumes all day keeps its chain (its resumed sessions would be refused without)."""
    memory = ChainMemory(capacity=2)
    chains = {n: (n + b"-leaf", n + b"-root") for n in (b"a", b"b", b"c")}
    memory.chain(chains[b"a"])
    memory.chain(chains[b"b"])
    assert memory.chain(chains[b"a"][:1]) == chains[b"a"]  # a resumes
    memory.chain(chains[b"c"])  # full: b goes, not a
    assert memory.chain(chains[b"a"][:1]) == chains[b"a"]
    assert memory.chain(chains[b"b"][:1]) is None


def test_a_remembered_chain_is_checked_again_at_each_use() -> None:
    memory = ChainMemory()
    chain = verified_chain("web")
    now = datetime.now(UTC)
    trust = PKI_DB.trust
    assert client_service(chain, trust, now, memory).service == "web"
    assert memory.chain(chain[:1]) == tuple(chain)  # a resumed session's leaf finds it
    assert server_service(chain[:1], trust, now, "web", memory).service == "web"  # both EKUs
    later = memory.facts(chain[0]).not_after + timedelta(seconds=1)
    with pytest.raises(Refused) as refused:
        client_service(chain[:1], trust, later, memory)
    assert refused.value.reason == tally.EXPIRED
    other = Pki(CLUSTER_B).identity("db").trust  # a bundle without this mesh's root
    with pytest.raises(Refused) as foreign:
        client_service(chain[:1], other, now, memory)
    assert foreign.value.reason == tally.UNKNOWN_ISSUER
    assert "does not end at a root of the trust bundle" in str(foreign.value)


def test_unreadable_or_lone_certificates_are_refused_with_their_reason() -> None:
    trust = PKI_DB.trust
    now = datetime.now(UTC)
    for chain, reason in (
        ([], tally.NO_CERTIFICATE),
        ([b"\x30\x03junk"], tally.BAD_CERTIFICATE),
        (verified_chain("web")[:1], tally.UNKNOWN_ISSUER),  # a lone leaf, no chain remembered
    ):
        with pytest.raises(Refused) as refused:
            client_service(chain, trust, now, ChainMemory())
        assert refused.value.reason == reason


def test_a_leaf_of_a_revoked_agent_is_refused_both_ways_even_when_cached() -> None:
    chain = verified_chain("web")
    now, cache = datetime.now(UTC), ChainMemory()
    assert client_service(chain, PKI_DB.trust, now, cache).service == "web"  # now cached
    intermediate = colon_hex(key_id(PKI.mesh.intermediate.certificate.public_key()))
    rows = [{"Node": "n2", "NodeID": "x"},  # never enrolled: no key id, names nothing
            {"Node": "n1", "NodeID": "y", "IntermediateKeyID": intermediate}]  # fmt: skip
    revoked = with_revoked(PKI_DB, revoked_key_ids(rows))
    assert revoked.server is PKI_DB.server  # same TLS contexts, a new Trust
    for check in (
        lambda: client_service(chain, revoked.trust, now, cache),  # the cached leaf too
        lambda: client_service(chain[:1], revoked.trust, now, cache),  # a resumed session's leaf
        lambda: server_service(chain, revoked.trust, now, "web", cache),
    ):
        with pytest.raises(Refused) as refused:
            check()
        assert refused.value.reason == tally.REVOKED
        assert "issued by the intermediate of a revoked agent" in str(refused.value)
    assert with_revoked(revoked, revoked.trust.revoked) is revoked
    assert revoked_key_ids([]) == frozenset()
    for bad in ({"IntermediateKeyID": "zz"}, [{"IntermediateKeyID": 7}], ["x"]):
        with pytest.raises(ValueError):
            revoked_key_ids(bad if isinstance(bad, list) else [bad])
    with pytest.raises(ValueError):
        revoked_key_ids({"not": "a list"})


@pytest.mark.parametrize("sizes", [
    [9, 65536], [9, 65536, 9, 65536], [3000, 20000, 5], [100, 200], [16384], [16383, 1, 16385],
    [9, 16375, 9], [40000], [],
])  # fmt: skip
def test_pieces_encrypt_into_the_records_of_their_join_without_the_join(sizes: list[int]) -> None:
    """`encrypt_all` (the mux's frames, a held head and body) makes the ciphertext `encrypt`
    of the joined pieces makes, record for record: same length, same plaintext."""
    pieces = [bytes([n % 251]) * size for n, size in enumerate(sizes)]
    joined, by_pieces = pair(), pair()
    whole = joined[0].encrypt(b"".join(pieces))
    parts = by_pieces[0].encrypt_all(pieces)
    assert len(parts) == len(whole)  # same records: AES-GCM adds the same bytes to each
    assert b"".join(by_pieces[1].feed(parts)) == b"".join(pieces)
