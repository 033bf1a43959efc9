"""Explicit migrations: each version step of the schema, run once, in order."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from anomaly.store.engine import StoreError
from anomaly.store.tables import handovers, inferred_ownership, leads_seen, metadata, outbox, schema_version, silences, source_files

SCHEMA_VERSION = 12


def _add_columns(conn: sa.Connection, table: str, columns: dict[str, str]) -> None:
    # only the missing ones: a store whose version number was set back by hand may have them
    present = {c["name"] for c in sa.inspect(conn).get_columns(table)}
    for name, definition in columns.items():
        if name not in present:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {name} {definition}"))


def _add_client_type(conn: sa.Connection) -> None:
    _add_columns(conn, "changes", {"client_type": "VARCHAR(40) NOT NULL DEFAULT ''"})


def _add_service_lock(conn: sa.Connection) -> None:
    # IF NOT EXISTS: a store whose version number was set back by hand already has the table
    conn.execute(
        sa.text(
            "CREATE TABLE IF NOT EXISTS service_lock (name VARCHAR(32) NOT NULL PRIMARY KEY, holder VARCHAR(200) NOT NULL, "
            "acquired_at TIMESTAMP NOT NULL, heartbeat_at TIMESTAMP NOT NULL)"
        )
    )


def _unbounded_sink_names(conn: sa.Connection) -> None:
    # a sink's name holds a file path; SQLite never enforced the old lengths, PostgreSQL did
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ALTER TABLE outbox ALTER COLUMN sink TYPE TEXT, ALTER COLUMN dedupe_key TYPE TEXT"))


def _add_inferred_ownership(conn: sa.Connection) -> None:
    inferred_ownership.create(conn, checkfirst=True)


def _add_receipts(conn: sa.Connection) -> None:
    _add_columns(conn, "outbox", {"channel": "TEXT", "ts": "VARCHAR(32)"})


def _add_silences(conn: sa.Connection) -> None:
    silences.create(conn, checkfirst=True)


def _add_acknowledgements_and_groups(conn: sa.Connection) -> None:
    _add_columns(conn, "incidents", {"acknowledged_at": "TIMESTAMP", "acknowledged_by": "TEXT"})
    _add_columns(conn, "outbox", {"group_key": "TEXT"})


def _add_pull_completeness(conn: sa.Connection) -> None:
    _add_columns(conn, "pulls", {"complete": "BOOLEAN NOT NULL DEFAULT TRUE"})


def _add_leads_seen(conn: sa.Connection) -> None:
    # empty: what earlier pulls saw was overwritten; it fills from the next pull on
    leads_seen.create(conn, checkfirst=True)


def _add_source_files(conn: sa.Connection) -> None:
    # empty: every file counts as new once, and that pull reads each in full
    source_files.create(conn, checkfirst=True)
    _add_columns(conn, "pulls", {"no_rows": "BOOLEAN NOT NULL DEFAULT FALSE"})


def _add_handovers(conn: sa.Connection) -> None:
    # empty: the next cycle records the handovers the ownership periods hold, those long past as
    # history (not announced); the outbox's rows may now belong to a handover rather than an incident
    handovers.create(conn, checkfirst=True)
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ALTER TABLE outbox ALTER COLUMN incident_id DROP NOT NULL"))
        _add_columns(conn, "outbox", {"handover_id": "INTEGER REFERENCES handovers (id)"})
        return
    # SQLite cannot drop a NOT NULL: the table is built anew as tables.py defines it, rows kept
    present = [c["name"] for c in sa.inspect(conn).get_columns("outbox")]
    conn.execute(sa.text("ALTER TABLE outbox RENAME TO outbox_before_handovers"))
    conn.execute(sa.text("DROP INDEX IF EXISTS ix_outbox_pending"))
    outbox.create(conn)
    columns = ", ".join(name for name in present if name in outbox.c)
    conn.execute(sa.text(f"INSERT INTO outbox ({columns}) SELECT {columns} FROM outbox_before_handovers"))
    conn.execute(sa.text("DROP TABLE outbox_before_handovers"))


#: version → function(conn) that brings a store from version − 1 to version.
_MIGRATIONS: dict[int, Any] = {
    2: _add_client_type,
    3: _add_service_lock,
    4: _unbounded_sink_names,
    5: _add_inferred_ownership,
    6: _add_receipts,
    7: _add_silences,
    8: _add_acknowledgements_and_groups,
    9: _add_pull_completeness,
    10: _add_leads_seen,
    11: _add_source_files,
    12: _add_handovers,
}


def migrate(conn: sa.Connection, store: str) -> None:
    """Create the tables in an empty database, or bring an older schema up to ``SCHEMA_VERSION``
    one step at a time; a schema newer than this code is refused (``store`` names it)."""
    metadata.create_all(conn, tables=[schema_version])
    current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    if current is None:
        metadata.create_all(conn)
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        return
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the store at {store} has schema version {current}, newer than this "
            f"software understands ({SCHEMA_VERSION}); upgrade the software"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        _MIGRATIONS[version](conn)
        conn.execute(schema_version.update().values(version=version))
