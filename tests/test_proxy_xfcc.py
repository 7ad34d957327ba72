"""X-Forwarded-Client-Cert made from a verified chain, and a client's dropped (proxy/xfcc.py).
Through real sidecars: test_proxy_http_raw.py."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.proxy import http_codec as codec
from gossamer.proxy import xfcc
from gossamer.proxy.ca.verify import load_pem_chain
from tests.proxy_pki import CLUSTER_B, Pki
from tests.test_proxy_http_codec import flat

PKI = Pki()
OTHER = Pki(CLUSTER_B)
BY = "spiffe://td.consul/ns/default/dc/dc1/svc/db"


def _chain(pki: Pki, service: str) -> list[bytes]:
    """As a handshake verifies it: leaf, intermediate, root."""
    certs = [*load_pem_chain(pki.leaf_json(service)["CertPEM"]), pki.mesh.root.certificate]
    return [c.public_bytes(Encoding.DER) for c in certs]


def test_the_value_names_this_service_the_callers_leaf_and_its_spiffe_id() -> None:
    db, chain = PKI.identity("db"), _chain(PKI, "web")
    value = xfcc.header_value(BY, chain, db.trust, datetime.now(UTC), None)
    by, digest, uri = value.decode().split(";")
    assert by == f"By={BY}"
    assert digest == f"Hash={hashlib.sha256(chain[0]).hexdigest()}"
    assert uri == f"URI=spiffe://{PKI.trust_domain}/ns/default/dc/dc1/svc/web"


def test_no_value_without_a_chain_the_trust_takes_or_an_own_id() -> None:
    db, now = PKI.identity("db"), datetime.now(UTC)
    assert xfcc.header_value(BY, _chain(OTHER, "web"), db.trust, now, None) == b""
    assert xfcc.header_value(BY, [], db.trust, now, None) == b""
    assert xfcc.header_value("", _chain(PKI, "web"), db.trust, now, None) == b""


def test_a_clients_fields_of_that_name_go_in_any_case_and_the_rest_stay_in_order() -> None:
    head = flat((b"Host", b"db"), (b"X-Forwarded-Client-Cert", b"URI=spiffe://evil"),
                (b"X-A", b"1"), (b"x-forwarded-client-cert", b"By=x"))  # fmt: skip
    assert codec.head_facts(head) & codec.XFCC
    assert codec.pairs(codec.without(head, codec.XFCC_NAMES)) == [(b"Host", b"db"), (b"X-A", b"1")]
