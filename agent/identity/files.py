"""This agent's identity material on disk: `<data_dir>/identity/`, mode 0600, written atomically.

    root-key.pem            the active root's private key, once unsealed (a cache)
    intermediate.pem        this agent's intermediate CA certificate
    intermediate-key.pem    its private key (kept across re-signings)
    agent.pem, agent-key.pem    this agent's certificate for agent RPC, and its key
    leaves/<service>.json   each issued leaf: certificate, key, the root it is under

Rules this module keeps:
- Every write is temp file (0600) + fsync + rename + fsync of the directory,
  so `kill -9` or a power cut leaves the old file or the new one, never half
  of either, and a leaf is on disk before any client is told of it.
- The directory is 0700; files are read back as text; a file that cannot be
  read is reported as missing (logged), so the agent makes it again.
- Service names are SPIFFE path segments (`[A-Za-z0-9._-]`, checked before
  they get here), so a leaf's file name cannot leave `leaves/`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("gossamer.identity")

ROOT_KEY = "root-key.pem"
INTERMEDIATE = "intermediate.pem"
INTERMEDIATE_KEY = "intermediate-key.pem"
AGENT_CERT = "agent.pem"
AGENT_KEY = "agent-key.pem"
LEAVES = "leaves"


class IdentityFiles:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "identity"
        (self.path / LEAVES).mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)

    def read(self, name: str) -> str | None:
        try:
            return (self.path / name).read_text("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read %s: %s; it will be made again", self.path / name, exc)
            return None

    def write(self, name: str, text: str) -> None:
        atomic_write(self.path / name, text.encode("utf-8"))

    def write_leaf(self, service: str, record: dict[str, Any]) -> None:
        self.write(f"{LEAVES}/{service}.json", json.dumps(record, sort_keys=True))

    def remove_leaf(self, service: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / LEAVES / f"{service}.json").unlink()
        _fsync_dir(self.path / LEAVES)

    def leaves(self) -> dict[str, dict[str, Any]]:
        """Every stored leaf record by service; unreadable ones are logged and left out."""
        out: dict[str, dict[str, Any]] = {}
        for file in sorted((self.path / LEAVES).glob("*.json")):
            text = self.read(f"{LEAVES}/{file.name}")
            try:
                record = json.loads(text) if text is not None else None
            except ValueError:
                record = None
            if isinstance(record, dict):
                out[file.stem] = record
            else:
                log.warning("leaf file %s is unreadable; the leaf will be issued again", file)
        return out


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600) so a crash leaves the old file or the new one."""
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # an old temp file may have had other bits
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError:  # (a full disk: the half-written temp file would hold on to its space)
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
