"""Leaves when the data dir refuses writes (full, or gone read-only): the crash walk.

With the disk full, `GET /v1/agent/connect/ca/leaf/<svc>` answered 500
"internal error" (an OSError out of the leaf's file write), so no sidecar
could start, and a renewal would have failed until the leaf expired.
Consul's agents hold leaves in memory only; here the file is a convenience
(the same serial after a restart), so a leaf that cannot be stored is
served from memory. A write that fails leaves no temp file behind either.
"""

from __future__ import annotations

import errno
import os
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from gossamer.agent.identity import files as files_module
from gossamer.agent.identity.files import IdentityFiles, atomic_write
from gossamer.agent.identity.leaves import LeafBook
from tests.ca_support import NOW, make_mesh


def _full(*_: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_leaf_that_cannot_be_stored_is_served_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = IdentityFiles(tmp_path)
    book = LeafBook(files, notify=lambda keys: 7, renewal=lambda c: NOW + timedelta(hours=1))
    monkeypatch.setattr(files, "write_leaf", _full)
    leaf = make_mesh().leaf("web")
    held = book.put(leaf, "root-1")
    assert book.get("web") is held
    assert held.certificate == leaf.certificate and held.modify_index == 7
    assert "web" not in files.leaves()


def test_a_failed_atomic_write_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "agent.pem"
    target.write_bytes(b"old")
    monkeypatch.setattr(files_module.os, "fsync", _full)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.pem"]
    assert target.read_bytes() == b"old"


def test_a_stored_leaf_still_comes_back_after_a_restart(tmp_path: Path) -> None:
    files = IdentityFiles(tmp_path)
    book = LeafBook(files, notify=lambda keys: 1, renewal=lambda c: NOW + timedelta(hours=1))
    leaf = make_mesh().leaf("web")
    book.put(leaf, "root-1")
    again = LeafBook(IdentityFiles(tmp_path), notify=lambda keys: 2,
                     renewal=lambda c: NOW + timedelta(hours=1))  # fmt: skip
    held = again.get("web")
    assert held is not None
    assert isinstance(held.certificate, x509.Certificate)
    assert held.certificate.serial_number == leaf.certificate.serial_number
