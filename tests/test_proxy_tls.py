"""TLS without sockets: two TlsPipes back to back, and the identity checks on what they carry."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.proxy import tally
from gossamer.proxy.authorize import Refused, admit, client_service, decided_by, server_service
from gossamer.proxy.ca.verify import load_pem_chain
from gossamer.proxy.tls_pipe import TlsPipe
from tests.proxy_pki import CLUSTER_B, Pki

PKI = Pki()


def pair(
    client_service_name: str = "web", server_service_name: str = "db"
) -> tuple[TlsPipe, TlsPipe]:
    client = TlsPipe(PKI.identity(client_service_name).client, server_side=False)
    server = TlsPipe(PKI.identity(server_service_name).server, server_side=True)
    to_server = client.start()
    while not (client.handshaken and server.handshaken):
        server.feed(to_server)
        client.feed(server.pending())
        to_server = client.pending()
    server.feed(to_server)
    return client, server


def test_a_handshake_shows_each_side_the_others_chain() -> None:
    client, server = pair()
    now = datetime.now(UTC)
    assert client_service(server.peer_chain(), PKI.identity("db").trust, now).service == "web"
    assert server_service(client.peer_chain(), PKI.identity("web").trust, now, "db").service == "db"
    with pytest.raises(Refused) as wrong:
        server_service(client.peer_chain(), PKI.identity("web").trust, now, "cache")
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
