"""Private keys of the mesh CA: which types and sizes, PEM in and out, key ids.

Types and sizes are named as Consul's `connect.ca_config` names them
(`PrivateKeyType` "ec" or "rsa", `PrivateKeyBits`):
- ec: 256 (P-256, the default, Consul's too), 384 or 521. P-224, which Consul
  also accepts, is refused: the TLS verifiers a mesh meets (OpenSSL's default
  security level, webpki) reject it.
- rsa: 2048 or 4096.
Anything else is a CaConfigError naming the field.

A key id (`SigningKeyID`, and the SubjectKeyIdentifier of every certificate
gossamer makes) is the SHA-256 of the DER SubjectPublicKeyInfo, shown as
lower-case colon-separated hex, as Consul computes and shows it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from gossamer.proxy.ca.errors import CaConfigError

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_CURVES: dict[int, ec.EllipticCurve] = {
    256: ec.SECP256R1(),
    384: ec.SECP384R1(),
    521: ec.SECP521R1(),
}
_RSA_BITS = (2048, 4096)


@dataclass(frozen=True)
class KeySpec:
    """A key type and size, as PrivateKeyType / PrivateKeyBits."""

    key_type: str = "ec"
    bits: int = 256


def key_spec(key_type: object = "ec", bits: object = None) -> KeySpec:
    """A checked KeySpec; `bits` None means the type's default (ec 256, rsa 2048)."""
    if key_type not in ("ec", "rsa"):
        raise CaConfigError(f'PrivateKeyType: must be "ec" or "rsa", got {key_type!r}')
    allowed = tuple(_CURVES) if key_type == "ec" else _RSA_BITS
    if bits is None:
        bits = allowed[0]
    if isinstance(bits, bool) or bits not in allowed:
        shown = ", ".join(str(b) for b in allowed)
        raise CaConfigError(f"PrivateKeyBits: for {key_type} keys one of {shown}, got {bits!r}")
    assert isinstance(bits, int)
    return KeySpec(str(key_type), bits)


def generate_key(spec: KeySpec = KeySpec()) -> PrivateKey:
    """A new private key of `spec` (checked again, so a hand-made KeySpec cannot slip by)."""
    spec = key_spec(spec.key_type, spec.bits)
    if spec.key_type == "ec":
        return ec.generate_private_key(_CURVES[spec.bits])
    return rsa.generate_private_key(public_exponent=65537, key_size=spec.bits)


def spec_of(key: PrivateKey | CertificatePublicKeyTypes, field: str = "PrivateKey") -> KeySpec:
    """The KeySpec of an existing key; CaConfigError if gossamer does not use that kind."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        size = key.curve.key_size
        if size in _CURVES and key.curve.name == _CURVES[size].name:
            return KeySpec("ec", size)
        raise CaConfigError(f"{field}: EC curve {key.curve.name} is not P-256, P-384 or P-521")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size in _RSA_BITS:
            return KeySpec("rsa", key.key_size)
        raise CaConfigError(f"{field}: RSA keys must be 2048 or 4096 bits, got {key.key_size}")
    raise CaConfigError(f"{field}: must be an EC or RSA key, got {type(key).__name__}")


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """The digest to sign with: matched to the curve for EC, SHA-256 for RSA."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size == 384:
            return hashes.SHA384()
        if key.curve.key_size == 521:
            return hashes.SHA512()
    return hashes.SHA256()


def private_key_pem(key: PrivateKey) -> str:
    """Unencrypted PEM in the traditional form ("EC PRIVATE KEY"), as Consul serves leaves."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


def load_private_key(pem: str | bytes, field: str = "PrivateKey") -> PrivateKey:
    """A PEM private key (traditional or PKCS#8, unencrypted); CaConfigError naming `field`."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's answer to an encrypted key without a password
        raise CaConfigError(f"{field}: it is encrypted; give it unencrypted") from None
    except ValueError:
        raise CaConfigError(f"{field}: not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CaConfigError(f"{field}: must be an EC or RSA key, got {type(key).__name__}")
    spec_of(key, field)
    return key


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_certificate(pem: str | bytes, field: str = "RootCert") -> x509.Certificate:
    """The first certificate of a PEM text; CaConfigError naming `field` when there is none."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CaConfigError(f"{field}: not a PEM certificate") from None


def key_matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    """Whether `key` is the private half of the certificate's public key."""
    return _spki(key.public_key()) == _spki(cert.public_key())


def key_id(public_key: PublicKey | CertificatePublicKeyTypes) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo: the SKI and AKI gossamer writes."""
    return hashlib.sha256(_spki(public_key)).digest()


def colon_hex(data: bytes) -> str:
    """Bytes as Consul shows ids and serials: "2d:09:5d:..."."""
    return ":".join(f"{byte:02x}" for byte in data)


def signing_key_id(cert: x509.Certificate) -> str:
    """Consul's SigningKeyID: the certificate's SubjectKeyIdentifier in colon hex."""
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return colon_hex(ski.digest)
    except x509.ExtensionNotFound:
        return colon_hex(key_id(cert.public_key()))


def _spki(public_key: PublicKey | CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
