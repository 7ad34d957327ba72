"""Consul's JSON for the CA, the CA settings with their bounds, and the renewal window."""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import timedelta

import pytest

from gossamer.proxy.ca.consul_json import (
    RootEntry,
    ca_config_json,
    leaf_json,
    root_id,
    roots_json,
)
from gossamer.proxy.ca.errors import CaConfigError
from gossamer.proxy.ca.keys import (
    KeySpec,
    certificate_pem,
    generate_key,
    private_key_pem,
    signing_key_id,
)
from gossamer.proxy.ca.renewal import WINDOW_END, WINDOW_START, renew_at, renew_certificate_at
from gossamer.proxy.ca.root import create_root, cross_sign
from gossamer.proxy.ca.settings import CaSettings, check_settings, read_consul_config
from tests.ca_support import CLUSTER, NOW, TD, make_mesh

SHA1_COLON_HEX = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){19}")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def test_roots_json_has_consuls_fields_and_formats() -> None:
    mesh = make_mesh()
    later = NOW + timedelta(days=1)
    new_root = create_root(generate_key(), TD, later)
    crossed = cross_sign(new_root.certificate, mesh.root, later)
    body = roots_json(TD, [
        RootEntry(mesh.root.certificate, active=False, create_index=3, modify_index=9),
        RootEntry(new_root.certificate, active=True, create_index=9, modify_index=9,
                  intermediates=(crossed,)),
    ])  # fmt: skip
    assert body["TrustDomain"] == TD
    assert body["ActiveRootID"] == root_id(new_root.certificate)
    active, old = body["Roots"]
    assert active["Active"] is True and old["Active"] is False
    assert SHA1_COLON_HEX.fullmatch(active["ID"])
    assert active["SigningKeyID"] == signing_key_id(new_root.certificate)
    assert active["SerialNumber"] == new_root.certificate.serial_number
    assert 0 < active["SerialNumber"] < 2**63  # Consul's uint64
    assert RFC3339.fullmatch(active["NotBefore"]) and RFC3339.fullmatch(active["NotAfter"])
    assert active["RootCert"] == certificate_pem(new_root.certificate)
    assert active["IntermediateCerts"] == [certificate_pem(crossed)]
    assert old["IntermediateCerts"] is None
    assert (active["PrivateKeyType"], active["PrivateKeyBits"]) == ("ec", 256)
    assert active["ExternalTrustDomain"] == CLUSTER
    assert (old["CreateIndex"], old["ModifyIndex"]) == (3, 9)
    assert set(active) == {
        "ID", "Name", "SerialNumber", "SigningKeyID", "ExternalTrustDomain", "NotBefore",
        "NotAfter", "RootCert", "IntermediateCerts", "Active", "PrivateKeyType",
        "PrivateKeyBits", "CreateIndex", "ModifyIndex",
    }  # fmt: skip
    assert roots_json(TD, [])["ActiveRootID"] == ""


def test_leaf_json() -> None:
    mesh = make_mesh()
    leaf = mesh.leaf("web")
    assert leaf.private_key is not None
    body = leaf_json(leaf.certificate, private_key_pem(leaf.private_key), leaf.service, 4, 7)
    assert body["Service"] == "web"
    assert body["ServiceURI"] == f"spiffe://{TD}/ns/default/dc/dc1/svc/web"
    assert body["CertPEM"] == certificate_pem(leaf.certificate)
    assert body["PrivateKeyPEM"].startswith("-----BEGIN EC PRIVATE KEY-----")
    assert int(body["SerialNumber"].replace(":", ""), 16) == leaf.certificate.serial_number
    assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2})*", body["SerialNumber"])
    assert body["ValidAfter"] == (NOW - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["ValidBefore"] == (NOW + timedelta(hours=72)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (body["CreateIndex"], body["ModifyIndex"]) == (4, 7)


def test_ca_configuration_json_never_holds_a_key() -> None:
    body = ca_config_json(CaSettings(), 5, 6)
    assert body["Provider"] == "consul"
    assert body["Config"] == {
        "LeafCertTTL": "72h0m0s", "IntermediateCertTTL": "8760h0m0s",
        "RootCertTTL": "87600h0m0s", "PrivateKeyType": "ec", "PrivateKeyBits": 256,
    }  # fmt: skip
    assert "PrivateKey" not in str(body).replace("PrivateKeyType", "").replace("PrivateKeyBits", "")


# --- settings ------------------------------------------------------------------------------


def test_consul_config_is_read_with_defaults() -> None:
    update = read_consul_config({"LeafCertTTL": "24h", "RotationPeriod": "2160h"})
    assert update.settings == CaSettings(leaf_cert_ttl=timedelta(hours=24))
    assert update.private_key_pem is None and update.root_cert_pem is None
    rsa = read_consul_config({"PrivateKeyType": "rsa", "PrivateKeyBits": 4096})
    assert rsa.settings.key == KeySpec("rsa", 4096)
    own = read_consul_config({"PrivateKey": "k", "RootCert": "c"})
    assert (own.private_key_pem, own.root_cert_pem) == ("k", "c")


def test_every_config_problem_is_reported_at_once() -> None:
    with pytest.raises(CaConfigError) as caught:
        read_consul_config({"LeafCertTTL": "30m", "IntermediateCertTTL": 5,
                            "RootCertTTL": "soon", "PrivateKeyType": "dsa",
                            "PrivateKey": "k"})  # fmt: skip
    fields = [p.split(":")[0] for p in caught.value.problems]
    assert fields == ["IntermediateCertTTL", "RootCertTTL", "PrivateKeyType", "PrivateKey",
                      "LeafCertTTL"]  # fmt: skip
    assert "between 1h and 8760h" in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [(CaSettings(leaf_cert_ttl=timedelta(hours=9000)), "LeafCertTTL: must be between"),
     (CaSettings(intermediate_cert_ttl=timedelta(hours=100)),
      "IntermediateCertTTL: must be at least 3 x LeafCertTTL (216h)"),
     (CaSettings(root_cert_ttl=timedelta(hours=1000)), "RootCertTTL: must be at least"),
     (CaSettings(key=KeySpec("rsa", 1024)), "PrivateKeyBits")],
)  # fmt: skip
def test_settings_bounds(settings: CaSettings, message: str) -> None:
    with pytest.raises(CaConfigError, match=re.escape(message)):
        check_settings(settings)
    assert check_settings(CaSettings()) == CaSettings()


# --- renewal -------------------------------------------------------------------------------


def test_renewal_falls_in_the_window_and_spreads_a_thousand_leaves() -> None:
    rng = random.Random(7)
    start, end = NOW, NOW + timedelta(hours=72)
    moments = [renew_at(start, end, rng) for _ in range(1000)]
    life = end - start
    assert all(start + life * WINDOW_START <= m <= start + life * WINDOW_END for m in moments)
    per_second = {m.replace(microsecond=0) for m in moments}
    assert len(per_second) > 950  # nearly every leaf renews in its own second
    short = [renew_at(start, start + timedelta(hours=1), rng) for _ in range(1000)]
    busiest = max(Counter(m.replace(microsecond=0) for m in short).values())
    assert busiest <= 10  # even 1 h leaves: a handful a second at most, never all at once


def test_renewal_of_a_certificate_uses_its_own_window() -> None:
    cert = make_mesh().leaf().certificate
    moment = renew_certificate_at(cert, random.Random(1))
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert (
        cert.not_valid_before_utc + life * 0.45 <= moment <= cert.not_valid_before_utc + life * 0.6
    )
