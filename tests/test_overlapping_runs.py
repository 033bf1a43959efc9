"""Processes that start at the same time on one store: schema creation and migration take turns,
and an overlapping `anomaly run` waits for the one at work (or gives up with one line), so both end
cleanly and every incident and notification is stored and sent once. On SQLite and PostgreSQL.

Overlaps are made, not hoped for: a process is held at a known point (a statement about to run, a
send into a named pipe nobody reads yet) while the other starts."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from anomaly.store import SCHEMA_VERSION, Store, metadata, schema_version

WAIT = 60  # seconds: only a broken test ever waits this long


def _on_statement(store: Store, react) -> None:  # noqa: ANN001 - react(statement in upper case)
    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def _seen(_conn, _cursor, statement, _parameters, _context, _executemany):  # noqa: ANN001 - SQLAlchemy's signature
        react(" ".join(statement.split()).upper())


# -- the schema ----------------------------------------------------------------------------------


def test_two_processes_creating_the_schema_at_once_take_turns(store_url):
    """The first is held just before it creates its first table; the second starts then. Without
    the schema lock both find no table and both create it: PostgreSQL refuses the second
    (UniqueViolation on schema_version), SQLite too (table schema_version already exists)."""
    first, second = Store(store_url), Store(store_url)  # an engine each, as two processes have
    first_creating, second_started, go_on = threading.Event(), threading.Event(), threading.Event()

    def hold_first(statement: str) -> None:
        if statement.startswith("CREATE TABLE SCHEMA_VERSION"):
            first_creating.set()
            go_on.wait(WAIT)

    def watch_second(statement: str) -> None:
        if statement.startswith("CREATE TABLE SCHEMA_VERSION"):  # it got this far beside the first
            second_started.set()
            go_on.wait(WAIT)
        elif statement.startswith("BEGIN IMMEDIATE") or "PG_ADVISORY_XACT_LOCK" in statement:  # it asks for its turn
            second_started.set()

    _on_statement(first, hold_first)
    _on_statement(second, watch_second)
    errors: list[BaseException] = []

    def migrate(store: Store) -> None:
        try:
            store.migrate()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(first,)), threading.Thread(target=migrate, args=(second,))]
    try:
        threads[0].start()
        assert first_creating.wait(WAIT), errors
        threads[1].start()
        assert second_started.wait(WAIT), errors
    finally:
        go_on.set()
        for thread in threads:
            thread.join(WAIT)
    try:
        assert errors == []
        with first.engine.connect() as conn:
            assert conn.execute(sa.select(schema_version.c.version)).scalars().all() == [SCHEMA_VERSION]
            assert set(metadata.tables) <= set(sa.inspect(conn).get_table_names())
    finally:
        first.engine.dispose()
        second.engine.dispose()
