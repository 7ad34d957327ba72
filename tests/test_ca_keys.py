"""CA keys: allowed types and sizes, PEM in and out, matching, and Consul's key ids."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gossamer.proxy.ca.errors import CaConfigError
from gossamer.proxy.ca.keys import (
    KeySpec,
    colon_hex,
    generate_key,
    key_id,
    key_matches,
    key_spec,
    load_certificate,
    load_private_key,
    private_key_pem,
    signing_key_id,
    spec_of,
)
from tests.ca_support import make_mesh

COLON_HEX_32 = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){31}")


@pytest.mark.parametrize(
    ("key_type", "bits", "expected"),
    [("ec", None, KeySpec("ec", 256)), ("ec", 384, KeySpec("ec", 384)),
     ("ec", 521, KeySpec("ec", 521)), ("rsa", None, KeySpec("rsa", 2048)),
     ("rsa", 4096, KeySpec("rsa", 4096))],
)  # fmt: skip
def test_allowed_key_specs(key_type: str, bits: int | None, expected: KeySpec) -> None:
    assert key_spec(key_type, bits) == expected


@pytest.mark.parametrize(
    ("key_type", "bits", "field"),
    [("dsa", 2048, "PrivateKeyType"), ("EC", 256, "PrivateKeyType"), (None, 256, "PrivateKeyType"),
     ("ec", 224, "PrivateKeyBits"), ("ec", 2048, "PrivateKeyBits"), ("rsa", 1024, "PrivateKeyBits"),
     ("rsa", 3072, "PrivateKeyBits"), ("ec", "256", "PrivateKeyBits"),
     ("ec", True, "PrivateKeyBits")],
)  # fmt: skip
def test_other_key_specs_name_the_field(key_type: object, bits: object, field: str) -> None:
    with pytest.raises(CaConfigError) as caught:
        key_spec(key_type, bits)
    assert str(caught.value).startswith(f"{field}:")


def test_generated_keys_have_their_spec_and_round_trip_through_pem() -> None:
    key = generate_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    pem = private_key_pem(key)
    assert pem.startswith("-----BEGIN EC PRIVATE KEY-----")
    again = load_private_key(pem)
    assert spec_of(again) == KeySpec("ec", 256)
    rsa_key = generate_key(KeySpec("rsa", 2048))
    assert spec_of(load_private_key(private_key_pem(rsa_key))) == KeySpec("rsa", 2048)
    with pytest.raises(CaConfigError, match="PrivateKeyBits"):
        generate_key(KeySpec("ec", 1))


def test_unusable_keys_are_refused_with_the_field_named() -> None:
    with pytest.raises(CaConfigError, match="PrivateKey: not a PEM private key"):
        load_private_key("-----BEGIN EC PRIVATE KEY-----\nnope\n-----END EC PRIVATE KEY-----\n")
    encrypted = generate_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )  # fmt: skip
    with pytest.raises(CaConfigError, match="encrypted"):
        load_private_key(encrypted)
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    with pytest.raises(CaConfigError, match="EC or RSA"):
        load_private_key(ed)
    p224 = ec.generate_private_key(ec.SECP224R1())
    with pytest.raises(CaConfigError, match="secp224r1"):
        load_private_key(private_key_pem(p224))
    with pytest.raises(CaConfigError, match="RootCert: not a PEM certificate"):
        load_certificate("garbage")


def test_key_matching_and_key_ids() -> None:
    mesh = make_mesh()
    root = mesh.root.certificate
    assert key_matches(mesh.root.key, root)
    assert not key_matches(mesh.intermediate.key, root)
    ski = signing_key_id(root)
    assert COLON_HEX_32.fullmatch(ski)  # Consul's SigningKeyID: 32 bytes, colon hex
    assert ski == colon_hex(key_id(mesh.root.key.public_key()))
    assert colon_hex(b"\x00\xab") == "00:ab"
