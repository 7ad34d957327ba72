"""The agent's data directory: an exclusive lock and the node's identity.

One agent per data dir: the second one gets a clear error instead of two
agents fighting over the same SQLite files and serf snapshot. The node id is
a UUID made once and kept, so a restarted agent is the same node to peers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from pathlib import Path


class DataDirError(RuntimeError):
    """The data dir cannot be used; the message says why."""


class DataDir:
    def __init__(self, path: Path, *, scratch: bool = False) -> None:
        """`scratch`: a dev-mode directory made for this run, removed again on close."""
        self.path = path
        self.scratch = scratch
        self._lock_fd: int | None = None

    @property
    def serf_dir(self) -> Path:
        return self.path / "serf"

    def open(self) -> None:
        """Create the dir if needed and take the lock; DataDirError if another agent holds it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DataDirError(f"cannot use data dir {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirError(
                f"data dir {self.path} is in use by another gossamer agent (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock; a scratch dir is removed with everything in it."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
        if self.scratch:
            shutil.rmtree(self.path, ignore_errors=True)

    def node_id(self) -> str:
        """The node's UUID, made on first use and kept in `node-id`."""
        path = self.path / "node-id"
        if path.exists():
            text = path.read_text().strip()
            try:
                return str(uuid.UUID(text))
            except ValueError:
                raise DataDirError(
                    f"{path}: not a valid UUID ({text[:40]!r}); fix or delete the file"
                ) from None
        node_id = str(uuid.uuid4())
        tmp = path.with_suffix(".tmp")
        tmp.write_text(node_id + "\n")
        os.replace(tmp, path)
        return node_id
