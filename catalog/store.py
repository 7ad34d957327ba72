"""The catalog on disk: one SQLite file (WAL) in the data dir, the thin I/O shell around the cores.

What lives here is what a restarted agent needs to come back as it was
(issue 3, point 3): its local registrations (services, checks, check states,
maintenance modes) as the agent was given them, the replicated node records
and tombstones (so it answers at once and then catches up), the LWW maps
(intentions, CA, config entries), and the two clocks that must never run
backwards across a restart: the node record's last version and the HLC's
last stamp. Deciding what wins stays in `merge` and `lww`; this module only
mirrors their values.

Durability: WAL with `synchronous=NORMAL`. A committed call survives
`kill -9` of the agent (the commit is in the WAL file before the call
returns); a power cut may lose the last few commits but never corrupts the
file. Writes that a client gets an acknowledgement for and that exist
nowhere else yet (an intention written here) pass `durable=True`: that
commit is fsynced (`synchronous=FULL`) before the call returns. Losing a
few others is safe because the record version is floored at the wall clock
(`model.next_version`) and the HLC follows the wall clock too.

Threading and cost: calls are synchronous and serialized by a lock, so the
agent may call them from a worker thread or briefly on the event loop. Each
call is one transaction. Single-row calls (`put_*`, `delete_*`,
`set_maintenance`, `save_last_version`, `save_hlc`) cost tens of
microseconds (no fsync per commit in WAL/NORMAL) and are fine on the loop.
`open` (integrity check, migrations) and the whole-table reads and batch
writes (`load_state`, `lww_entries`, `sync_state`, large `save_records`)
are O(table) and belong in a thread once the catalog is large (`load_state`
decodes every record strictly: about a second for 10,000 records).

Errors: every failure is a `StoreError` whose message names the file; no
sqlite3 exception escapes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from gossamer.catalog import lww
from gossamer.catalog.hlc import StampError, Timestamp
from gossamer.catalog.merge import CatalogState, Tombstone, apply_many
from gossamer.catalog.model import NodeRecord
from gossamer.catalog.store_base import StoreError, dumps_json, get_meta, put_meta
from gossamer.catalog.store_file import open_connection
from gossamer.catalog.store_local import CheckState, LocalTables, Maintenance, StoredCheck
from gossamer.catalog.wire import RecordError, record_from_wire, record_to_wire

__all__ = [
    "FILE_NAME",
    "CatalogStore",
    "CheckState",
    "Maintenance",
    "StoreError",
    "StoredCheck",
]

log = logging.getLogger(__name__)

V = TypeVar("V")

FILE_NAME = "catalog.db"
"""The store's name inside the agent's data dir (SQLite adds `-wal` and `-shm` next to it)."""


class CatalogStore(LocalTables):
    """An open catalog database. Build with `CatalogStore.open`; usable as a context manager."""

    # --- lifecycle ----------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> CatalogStore:
        """Open (creating or migrating) the database at `path`; see `store_file`."""
        return cls(path, open_connection(path))

    # --- replicated records -------------------------------------------------------------

    def load_state(self) -> CatalogState:
        """The stored records and tombstones as a CatalogState (the Serf overlay starts empty).

        The state is rebuilt with `merge.apply_many` over the tombstones, so
        it obeys the merge rules even if the file somehow disagrees. A row
        that no longer decodes is skipped with a warning rather than failing
        the start: replicated data is pulled again from peers.
        """
        with self._tx(write=False) as conn:
            rec_rows = conn.execute("SELECT datacenter, node, wire FROM records").fetchall()
            tomb_rows = conn.execute(
                "SELECT datacenter, node, version, node_id, reason, removed_at_ms FROM tombstones"
            ).fetchall()
        tombs: dict[str, dict[str, Tombstone]] = {}
        for dc, node, version, node_id, reason, at_ms in tomb_rows:
            tombs.setdefault(dc, {})[node] = Tombstone(version, node_id, reason, at_ms)
        records: list[NodeRecord] = []
        for dc, node, text in rec_rows:
            try:
                record = record_from_wire(json.loads(text))
            except (ValueError, RecordError) as err:
                log.warning("%s: skipping stored record %s/%s: %s", self.path, dc, node, err)
                continue
            if (record.datacenter, record.node) != (dc, node):
                log.warning("%s: skipping stored record %s/%s: key mismatch", self.path, dc, node)
                continue
            records.append(record)
        return apply_many(CatalogState(tombstones=tombs), records)[0]

    def save_records(self, records: Iterable[NodeRecord]) -> None:
        """Store records (replacing each node's previous one and its tombstone), one transaction."""
        with self._tx() as conn:
            _upsert_records(conn, records)

    def save_tombstones(self, tombstones: Iterable[tuple[str, str, Tombstone]]) -> None:
        """Store (datacenter, node, tombstone) triples; each drops that node's record."""
        with self._tx() as conn:
            _upsert_tombstones(conn, tombstones)

    def delete_record(self, datacenter: str, node: str) -> bool:
        """Forget a node's record without leaving a tombstone."""
        with self._tx() as conn:
            sql = "DELETE FROM records WHERE datacenter = ? AND node = ?"
            return conn.execute(sql, (datacenter, node)).rowcount > 0

    def sync_state(self, before: CatalogState, after: CatalogState) -> int:
        """Write what changed from `before` (what is stored) to `after`; returns rows touched.

        The agent's one call after any merge, remove or tombstone GC: it
        cannot forget a dropped tombstone or a removed record. Unchanged
        records are skipped by identity first, so the cost is one dict walk.
        """
        recs, gone_recs = _changes(before.records, after.records)
        tombs, gone_tombs = _changes(before.tombstones, after.tombstones)
        with self._tx() as conn:
            conn.executemany("DELETE FROM records WHERE datacenter = ? AND node = ?", gone_recs)
            conn.executemany("DELETE FROM tombstones WHERE datacenter = ? AND node = ?", gone_tombs)
            _upsert_records(conn, (r for _, _, r in recs))
            _upsert_tombstones(conn, tombs)
        return len(recs) + len(gone_recs) + len(tombs) + len(gone_tombs)

    # --- LWW maps -----------------------------------------------------------------------

    def lww_entries(self, map_name: str = "") -> lww.LwwMap:
        """One LWW map (tombstones included); undecodable rows are skipped with a warning."""
        with self._tx(write=False) as conn:
            sql = "SELECT key, wire FROM lww WHERE map = ? ORDER BY key"
            rows = conn.execute(sql, (map_name,)).fetchall()
        entries: dict[str, lww.Entry] = {}
        for key, text in rows:
            try:
                wire_key, entry = lww.entry_from_wire(json.loads(text))
            except (ValueError, lww.EntryError, StampError) as err:
                log.warning("%s: skipping stored entry %s/%s: %s", self.path, map_name, key, err)
                continue
            if wire_key == key:
                entries[key] = entry
        return lww.LwwMap(entries)

    def save_lww(
        self, entries: Iterable[tuple[str, lww.Entry]], map_name: str = "", *, durable: bool = False
    ) -> None:
        """Store entries as given (the caller merged them); one transaction.

        `durable`: fsync before returning (one fsync, milliseconds), for a
        write this agent acknowledges to a client; see `_tx`.
        """
        rows = [
            (map_name, k, e.stamp.wall_ms, int(e.deleted), dumps_json(lww.entry_to_wire(k, e)))
            for k, e in entries
        ]
        with self._tx(durable=durable) as conn:
            conn.executemany(
                "INSERT INTO lww(map, key, wall_ms, deleted, wire) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(map, key) DO UPDATE SET wall_ms = excluded.wall_ms, "
                "deleted = excluded.deleted, wire = excluded.wire",
                rows,
            )

    def delete_lww(self, keys: Iterable[str], map_name: str = "") -> None:
        """Forget entries (after `lww.gc` dropped their tombstones)."""
        with self._tx() as conn:
            sql = "DELETE FROM lww WHERE map = ? AND key = ?"
            conn.executemany(sql, [(map_name, k) for k in keys])

    # --- clocks -------------------------------------------------------------------------

    def last_version(self) -> int:
        """This node's last published record version; 0 on a new file."""
        with self._tx(write=False) as conn:
            value = get_meta(conn, "last_version")
        return value if isinstance(value, int) else 0

    def save_last_version(self, version: int) -> int:
        """Record a published version; never lowers the stored one. Returns what is stored."""
        with self._tx() as conn:
            stored = get_meta(conn, "last_version")
            kept = max(version, stored if isinstance(stored, int) else 0)
            put_meta(conn, "last_version", kept)
        return kept

    def hlc_last(self) -> Timestamp | None:
        """The HLC's last stamp, to rebuild the clock from; None on a new file."""
        with self._tx(write=False) as conn:
            value = get_meta(conn, "hlc_last")
        try:
            return None if value is None else Timestamp.from_wire(value)
        except StampError as err:
            raise StoreError(self.path, f"meta hlc_last: {err}") from None

    def save_hlc(self, stamp: Timestamp) -> Timestamp:
        """Record the HLC's last stamp; never moves it back. Returns what is stored."""
        with self._tx() as conn:
            stored: Timestamp | None = None
            with contextlib.suppress(StampError):  # a damaged value is simply overwritten
                raw = get_meta(conn, "hlc_last")
                stored = None if raw is None else Timestamp.from_wire(raw)
            if stored is not None and stored > stamp:
                return stored
            put_meta(conn, "hlc_last", stamp.to_wire())
        return stamp


# --- helpers (run inside a caller's transaction) ---------------------------------------------


def _upsert_records(conn: sqlite3.Connection, records: Iterable[NodeRecord]) -> None:
    for r in records:
        conn.execute(
            "INSERT INTO records(datacenter, node, version, node_id, wire) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(datacenter, node) DO UPDATE SET version = excluded.version, "
            "node_id = excluded.node_id, wire = excluded.wire",
            (r.datacenter, r.node, r.version, r.node_id, dumps_json(record_to_wire(r))),
        )
        sql = "DELETE FROM tombstones WHERE datacenter = ? AND node = ?"
        conn.execute(sql, (r.datacenter, r.node))


def _upsert_tombstones(
    conn: sqlite3.Connection, tombs: Iterable[tuple[str, str, Tombstone]]
) -> None:
    for dc, node, t in tombs:
        conn.execute(
            "INSERT INTO tombstones(datacenter, node, version, node_id, reason, removed_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(datacenter, node) DO UPDATE SET "
            "version = excluded.version, node_id = excluded.node_id, "
            "reason = excluded.reason, removed_at_ms = excluded.removed_at_ms",
            (dc, node, t.version, t.node_id, t.reason, t.at_ms),
        )
        conn.execute("DELETE FROM records WHERE datacenter = ? AND node = ?", (dc, node))


def _changes(
    before: Mapping[str, Mapping[str, V]], after: Mapping[str, Mapping[str, V]]
) -> tuple[list[tuple[str, str, V]], list[tuple[str, str]]]:
    """(dc, node, value) new or changed in `after`, and (dc, node) present only in `before`."""
    changed = [
        (dc, node, v)
        for dc, inner in after.items()
        for node, v in inner.items()
        if (old := before.get(dc, {}).get(node)) is not v and old != v
    ]
    gone = [
        (dc, node)
        for dc, inner in before.items()
        for node in inner
        if node not in after.get(dc, {})
    ]
    return changed, gone
