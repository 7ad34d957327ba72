"""The transaction and error plumbing shared by the catalog store's table groups.

Split from `store.py` only to keep each file readable; `CatalogStore` is the
one class callers use. Every call runs as one transaction under one lock, so
the agent may call from a worker thread or from the event loop, and every
sqlite3 error leaves as a `StoreError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from gossamer.catalog.model import JsonObject


class StoreError(Exception):
    """The catalog database cannot be used or a write was refused; the message names the file."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"catalog store {path}: {problem}")
        self.path = path
        self.problem = problem


def dumps_json(value: Any) -> str:
    # Compact, and refusing NaN: it would not survive a round trip as equal.
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def get_meta(conn: sqlite3.Connection, key: str) -> Any:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    try:
        return json.loads(row[0])
    except ValueError:
        return None


def put_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, dumps_json(value)),
    )


class StoreBase:
    """An open connection, its lock and the transaction helper; see `CatalogStore.open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the file; later calls raise StoreError. Closing twice is fine."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self, write: bool = True, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; rolled back on any error, sqlite errors wrapped.

        Writes take the lock at BEGIN (IMMEDIATE) so a busy file fails before
        any work is done; reads run in one snapshot so multi-table reads agree.
        `durable` commits with `synchronous=FULL` (the WAL is fsynced before
        COMMIT returns), for writes acknowledged to a client that must survive
        a power cut too, not only `kill -9`; the connection goes back to NORMAL.
        """
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError(self.path, "store is closed")
            try:
                if durable:
                    conn.execute("PRAGMA synchronous=FULL")
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(self.path, str(exc)) from None
                raise
            finally:
                if durable:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("PRAGMA synchronous=NORMAL")

    def _json_obj(self, text: str, where: str) -> JsonObject:
        """Local registrations are this agent's own input: unreadable JSON is corruption."""
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise StoreError(self.path, f"{where}: stored JSON is not an object")
        return value
