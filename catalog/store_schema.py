"""The catalog database's tables, and the migrations that bring an older file up to date.

Kept apart from `store.py` so the layout can be read in one place and so a
new schema version is one more entry in `MIGRATIONS`, never an edit of an
old one: a file written by any earlier gossamer replays exactly the steps
that created today's layout, in order, inside the transaction that opens it.

Layout decisions:
- Structures that already have a wire form (node records, LWW entries) are
  stored as that JSON (`record_to_wire`, `entry_to_wire`), so the disk format
  is the replication format and the strict decoders guard both. The columns
  next to the JSON (`version`, `node_id`, `wall_ms`) exist for queries and
  for reading a damaged file by hand, never as a second source of truth.
- Local registrations are kept as the JSON the agent was given: they are the
  owner's input, and the agent re-derives its own record from them on start.
- Foreign keys with ON DELETE CASCADE tie a service to its checks, their
  states and its maintenance mode, so a deregistration cannot leave orphans
  behind, whatever order the agent deletes in.
- `meta` holds scalars as JSON text, keyed by name, so adding one needs no
  migration.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 1
"""The layout this code reads and writes; `meta.schema_version` of a current file."""

APPLICATION_ID = 0x67535352  # "gSSR": `PRAGMA application_id`, so `file(1)`-style tools and
# `open` can tell a gossamer catalog from some other SQLite file.

_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE services (
    id         TEXT PRIMARY KEY,
    definition TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE checks (
    id         TEXT PRIMARY KEY,
    -- NULL for a node-level check; otherwise the service it belongs to.
    service_id TEXT REFERENCES services(id) ON DELETE CASCADE,
    definition TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX checks_by_service ON checks(service_id);

CREATE TABLE check_state (
    check_id          TEXT PRIMARY KEY REFERENCES checks(id) ON DELETE CASCADE,
    status            TEXT NOT NULL
                      CHECK (status IN ('passing', 'warning', 'critical', 'maintenance')),
    output            TEXT NOT NULL,
    ttl_updated_ms    INTEGER,
    critical_since_ms INTEGER
) WITHOUT ROWID;

CREATE TABLE service_maintenance (
    service_id TEXT PRIMARY KEY REFERENCES services(id) ON DELETE CASCADE,
    reason     TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE records (
    datacenter TEXT NOT NULL,
    node       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    node_id    TEXT NOT NULL,
    wire       TEXT NOT NULL,
    PRIMARY KEY (datacenter, node)
);

CREATE TABLE tombstones (
    datacenter    TEXT NOT NULL,
    node          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    node_id       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    removed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (datacenter, node)
) WITHOUT ROWID;

CREATE TABLE lww (
    map     TEXT NOT NULL,
    key     TEXT NOT NULL,
    wall_ms INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    wire    TEXT NOT NULL,
    PRIMARY KEY (map, key)
);
"""

MIGRATIONS: dict[int, str] = {1: _V1}
"""`MIGRATIONS[n]` takes a file from schema version n-1 to n (0 is an empty file)."""


class SchemaTooNewError(Exception):
    """The file was written by a newer gossamer; opening it here could lose its data."""

    def __init__(self, found: int) -> None:
        super().__init__(
            f"schema version {found} is newer than this gossamer knows ({SCHEMA_VERSION}); "
            "upgrade gossamer, or move the file away to start with an empty catalog"
        )
        self.found = found


class ForeignDatabaseError(Exception):
    """The file is a valid SQLite database, but not a gossamer catalog."""


def stored_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the file; 0 for a new, empty file.

    Raises ForeignDatabaseError for a database that has tables of its own and
    no gossamer marks: writing ours next to them would hide a wrong path.
    """
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if app_id not in (0, APPLICATION_ID):
        raise ForeignDatabaseError(f"not a gossamer catalog (application_id {app_id:#x})")
    if has_meta is None:
        if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None:
            raise ForeignDatabaseError("not a gossamer catalog (it has other tables)")
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise ForeignDatabaseError("meta table has no schema_version")
    try:
        return int(row[0])
    except ValueError:
        raise ForeignDatabaseError(f"schema_version {row[0]!r} is not a number") from None


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file to SCHEMA_VERSION; the caller holds a write transaction.

    Returns the version the file had. `executescript` is not used because it
    commits on its own; the statements run one by one inside the caller's
    transaction, so a failed or killed migration leaves the old file intact.
    """
    found = stored_version(conn)
    if found > SCHEMA_VERSION:
        raise SchemaTooNewError(found)
    for version in range(found + 1, SCHEMA_VERSION + 1):
        for statement in _statements(MIGRATIONS[version]):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(version),),
        )
    if found == 0:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    return found


def _statements(script: str) -> list[str]:
    """Split a DDL script into statements (no `;` inside our DDL's strings or comments)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
