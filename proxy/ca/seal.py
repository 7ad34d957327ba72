"""Sealing the root's private key under the cluster secret, so the CA state can replicate it.

The root key travels in the replicated CA map, never in the clear: each
seal is the key's PEM under AES-256-GCM, and any agent holding the cluster
secret can open it (and so mint its own intermediate, see the README's
threat model). Rules this module keeps:
- A secret is one of: a gossip keyring key (32 random bytes, used as HKDF
  input), a join token (human-chosen, so first stretched with scrypt:
  guessing it must cost ~0.1 s and 32 MiB a try, not a hash), or the
  fixed "open" secret of a cluster with neither.
- The sealing key is HKDF-SHA256(secret, salt=cluster id, info="gossamer
  ca seal v1"); a token's scrypt salt is the cluster id too, so one token
  used by two meshes gives unrelated keys.
- A seal is tagged with the secret's fingerprint (`SealKey.fingerprint`):
  the first 8 bytes of SHA-256 of HKDF(secret, info="gossamer secret id"),
  hex; it names which secret opens it without revealing the secret (for a
  token, the stretched value goes in, so the fingerprint is no fast oracle).
- The AEAD's associated data binds a seal to its cluster and root id: a
  seal copied onto another root entry does not open.
- `unseal` raises SealError for every failure (wrong secret, damaged blob);
  it never says which, and no message carries key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

SEAL_INFO = b"gossamer ca seal v1"
SECRET_ID_INFO = b"gossamer secret id"
OPEN_SECRET = b"open"
NONCE_BYTES = 12
TOKEN_MIN_CHARS = 16
# scrypt cost for a join token: 2**15 x 8 x 1 is ~32 MiB and ~0.1 s, once per agent start.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1

GOSSIP, TOKEN, OPEN = "gossip-keyring", "join-token", "open"


class SealError(ValueError):
    """A seal that this secret does not open (or that is damaged)."""


@dataclass(frozen=True)
class ClusterSecret:
    """What an agent proves membership with: its kind and the raw material."""

    kind: str  # GOSSIP, TOKEN or OPEN
    material: bytes


@dataclass(frozen=True)
class SealKey:
    """A secret turned into an AES key for one cluster, with its public fingerprint."""

    fingerprint: str
    aes_key: bytes


def gossip_secret(key_b64: str) -> ClusterSecret:
    """A gossip keyring key (base64 of 32 bytes, as serf lists it)."""
    try:
        raw = base64.b64decode(key_b64, validate=True)
    except binascii.Error:
        raise SealError("gossip key is not base64") from None
    return ClusterSecret(GOSSIP, raw)


def token_secret(token: str) -> ClusterSecret:
    if len(token) < TOKEN_MIN_CHARS:
        raise SealError(f"a join token has at least {TOKEN_MIN_CHARS} characters")
    return ClusterSecret(TOKEN, token.encode("utf-8"))


def open_secret() -> ClusterSecret:
    return ClusterSecret(OPEN, OPEN_SECRET)


def seal_key(secret: ClusterSecret, cluster_id: str) -> SealKey:
    """The AES key and fingerprint of `secret` for the cluster `cluster_id` (slow for a token)."""
    base = secret.material
    if secret.kind == TOKEN:
        salt = b"gossamer join token v1:" + cluster_id.encode()
        base = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(base)
    fingerprint = hashlib.sha256(_hkdf(base, b"", SECRET_ID_INFO)).digest()[:8].hex()
    return SealKey(fingerprint, _hkdf(base, cluster_id.encode(), SEAL_INFO))


def seal(plaintext: bytes, key: SealKey, context: str) -> str:
    """base64(nonce || AES-GCM(plaintext)), bound to `context` (cluster and root id)."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key.aes_key).encrypt(nonce, plaintext, context.encode())
    return base64.b64encode(nonce + sealed).decode("ascii")


def unseal(blob: str, key: SealKey, context: str) -> bytes:
    """The plaintext of a seal made by `seal` with the same key and context; else SealError."""
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise SealError("seal is not base64") from None
    if len(raw) <= NONCE_BYTES:
        raise SealError("seal is too short")
    try:
        return AESGCM(key.aes_key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
    except InvalidTag:
        raise SealError("seal does not open with this secret") from None


def seal_context(cluster_id: str, root_id: str) -> str:
    """The associated data of a root key's seal."""
    return f"gossamer ca seal v1|{cluster_id}|{root_id}"


def _hkdf(material: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt or None, info=info).derive(material)
