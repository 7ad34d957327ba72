"""Opening the catalog's SQLite file: WAL mode, an integrity check, migrations.

Rules it keeps:
- The file runs in WAL mode with `synchronous=NORMAL` and foreign keys on,
  or it is not opened at all (a file system without WAL support is an error,
  not a silent fallback to a slower, differently durable mode).
- `PRAGMA quick_check` runs first: a damaged file stops the agent at start
  with a message saying what to do, rather than failing at some later write.
- Migrations run in one IMMEDIATE transaction: a file is either migrated or
  left as it was.
- Every failure is a `StoreError` naming the file; the connection is closed
  and no sqlite3 exception escapes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from gossamer.catalog import store_schema
from gossamer.catalog.store_base import StoreError

BUSY_TIMEOUT_S = 5.0  # only another process (a stray CLI, a backup tool) would ever hold the lock


def open_connection(path: Path) -> sqlite3.Connection:
    """A connection to the database at `path`, created or migrated, checked; or StoreError."""
    try:
        conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
    except sqlite3.Error as err:
        raise StoreError(path, f"cannot open: {err}") from None
    try:
        _configure(conn, path)
        _migrate(conn)
    except StoreError:
        conn.close()
        raise
    except (store_schema.SchemaTooNewError, store_schema.ForeignDatabaseError) as err:
        conn.close()
        raise StoreError(path, str(err)) from None
    except sqlite3.Error as err:
        conn.close()
        raise StoreError(path, f"cannot open: {err}") from None
    return conn


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    """WAL, NORMAL sync, foreign keys; then the quick check."""
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(path, f"cannot use WAL journal mode (got {mode!r})")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        found = "; ".join(p.replace("\n", "; ") for p in problems)
        raise StoreError(
            path,
            f"database is damaged ({found}); move the file away to start empty "
            "(peers resend replicated state; local registrations must be redone)",
        )


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to date in one transaction: all of it or none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        store_schema.migrate(conn)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
