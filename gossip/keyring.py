"""Gossip encryption keys: generation, validation and the keyring file.

Serf refuses `-encrypt` together with `-keyring-file` once a keyring exists,
so gossamer always hands serf a keyring file and seeds it from the configured
key on first start. The file is a JSON list of base64 keys; the first one is
the primary (the one used to encrypt), the rest are accepted on receipt.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from pathlib import Path

KEY_BYTES = 32  # AES-256-GCM, the size Consul's `keygen` produces


class InvalidKeyError(ValueError):
    """A gossip key that is not base64 of exactly 32 bytes."""


def generate_key() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def validate_key(key: str) -> str:
    """Return the key unchanged, or raise InvalidKeyError saying what is wrong."""
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidKeyError(f"not valid base64 ({exc})") from None
    if len(raw) != KEY_BYTES:
        raise InvalidKeyError(f"must decode to {KEY_BYTES} bytes, got {len(raw)}")
    return key


class KeyringFileError(ValueError):
    """The keyring file exists but does not hold keys; the message names it and the remedy."""


def check_keyring(path: Path) -> None:
    """KeyringFileError unless `path` is missing or a JSON list of one or more valid keys.

    serf rewrites the file in place (truncate, then write) when a key is
    installed, used or removed, so a crash or a full disk can leave it empty
    or cut short; serf then only says "Failed to decode keyring file".
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyringFileError(f"gossip keyring {path} cannot be read: {exc}") from None
    why = ""
    try:
        keys = json.loads(text)
    except ValueError:
        why = "empty" if not text.strip() else "not valid JSON"
    else:
        if not isinstance(keys, list) or not keys:
            why = "not a list of keys"
        else:
            for key in keys:
                try:
                    validate_key(key if isinstance(key, str) else "")
                except InvalidKeyError as exc:
                    why = f"holding a bad key ({exc})"
                    break
    if why:
        raise KeyringFileError(
            f"gossip keyring {path} is {why} (cut short by a crash or a full disk while "
            "serf rewrote it?): put back a copy (another agent's serf/local.keyring holds "
            "the cluster's keys), or delete it: the agent writes it again from `encrypt`, and "
            "keys installed since with `gossamer keyring --install` must be installed again"
        )


def seed_keyring(path: Path, key: str | None) -> bool:
    """Write a keyring holding `key` unless one exists; True when it was written.

    An existing keyring wins over the configured key (as in Consul): keys
    rotated with `keyring --install/--use` must survive a restart.
    """
    if key is None or path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump([key], fh)
    os.replace(tmp, path)
    return True
