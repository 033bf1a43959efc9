"""What every part of the store shares: its engine, the schema check and the upsert."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from anomaly.store.engine import _MISREAD_PASSWORD, StoreError, _password_misread, describe_url, make_engine
from anomaly.store.migrations import migrate


#: The kind of the advisory lock that serialises schema creation and migration: ASCII "anom".
SCHEMA_LOCK_KEY = 0x616E6F6D


def advisory_key(kind: int) -> str:
    """The two keys of a PostgreSQL advisory lock of this store, as SQL arguments: the lock's
    ``kind`` and the schema the store's tables live in (a database may hold a store per schema)."""
    return f"{int(kind)}, hashtext(coalesce(current_schema(), ''))"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class StoreBase:
    """A store's engine and schema; ``anomaly.store.Store`` adds what it keeps."""

    def __init__(self, url: str, *, engine: Engine | None = None):
        self.url = url
        try:
            self.engine = engine or make_engine(url)
        except (sa.exc.ArgumentError, ValueError) as exc:
            # the parser's own message quotes the part it could not read, which may be a password's
            reason = _MISREAD_PASSWORD if _password_misread(url) else exc
            raise StoreError(f"cannot use the store URL {describe_url(url)}: {reason}") from None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        """The URL with any password hidden, for messages (see ``describe_url``)."""
        return describe_url(self.url)

    def migrate(self) -> None:
        """Create the tables, or check that an existing store has a schema this code understands.

        Migrations are explicit: each version step is listed in ``anomaly.store.migrations`` and runs once.
        Processes that start together take turns: each creates or migrates under the store's schema
        lock, so the second finds the work done.
        """
        try:
            with self.engine.begin() as conn:
                self._lock_schema(conn)
                migrate(conn, self.describe())
        except sa.exc.OperationalError as exc:
            # with a misread password, the driver's message names a piece of it as the host
            reason = _MISREAD_PASSWORD if _password_misread(self.url) else exc.orig
            raise StoreError(f"cannot open the store at {self.describe()}: {reason}") from None

    def _lock_schema(self, conn: sa.Connection) -> None:
        """Hold the schema lock for the rest of ``conn``'s transaction: on PostgreSQL an advisory lock
        of the schema the store's tables live in, on SQLite the write lock (``BEGIN IMMEDIATE``; the
        driver would begin a transaction only at the first insert, and run DDL outside one). A
        second process waits here, and then sees the tables the first one created."""
        if self.dialect == "postgresql":
            conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({advisory_key(SCHEMA_LOCK_KEY)})"))
        elif self.dialect == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def _upsert(self, table: sa.Table, key: Sequence[str], *, update: bool):
        insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(self.dialect)
        if insert is None:
            raise StoreError(f"unsupported database {self.dialect!r}; use SQLite or PostgreSQL")
        stmt = insert(table)
        if not update:
            return stmt.on_conflict_do_nothing(index_elements=list(key))
        columns = [c.name for c in table.columns if c.name not in key]
        return stmt.on_conflict_do_update(index_elements=list(key), set_={c: stmt.excluded[c] for c in columns})
