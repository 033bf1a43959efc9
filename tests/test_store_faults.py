"""Faults where the service writes: a SQLite store locked by another connection, a full disk, a
JSON-lines file cut short by a kill. Each ends in a clear error or a correct result, never a
half-written store or a repeated alert."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import sqlite3
import threading
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from anomaly import sample
from anomaly.alerts import DeliveryError
from anomaly.alerts.sinks import Delivery, JsonlSink
from anomaly.cli import main
from anomaly.schema import empty_changes
from anomaly.store import Store, StoreError
from connectors.csv_files import CsvConnector
from tests.helpers import copy_default_project

START, END = sample.START, sample.END


@pytest.fixture
def portfolio(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sample portfolio's metrics and changes, as the CSV connector reads them."""
    sample.write_sample(tmp_path / "sample")
    batch = CsvConnector("sample", [str(tmp_path / "sample" / "metrics.csv")], [str(tmp_path / "sample" / "changes.csv")]).fetch(START, END)
    return batch.metrics, batch.changes


def counts(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("metrics", "changes", "pulls", "incidents", "outbox")}


def traced(store: Store, statements: list[str], started: threading.Event) -> None:
    """Record the statements each new connection of ``store`` runs; set ``started`` at the first
    write, which SQLite then makes wait on a lock held elsewhere."""

    @sa.event.listens_for(store.engine, "connect")
    def _trace(dbapi_connection, _record):  # noqa: ANN001 - DB-API connection
        def seen(statement: str) -> None:
            statements.append(statement)
            if statement.lstrip().upper().startswith("INSERT"):
                started.set()

        dbapi_connection.set_trace_callback(seen)


# -- a lock held by someone else ------------------------------------------------------------------


def test_a_write_waits_for_a_writer_that_holds_the_lock_then_completes(tmp_path, portfolio):
    path = tmp_path / "store.db"
    store = Store(f"sqlite:///{path}?timeout=30")
    statements: list[str] = []
    writing = threading.Event()
    traced(store, statements, writing)  # before the first connection, which the pool keeps
    store.migrate()
    notebook = sqlite3.connect(path, isolation_level=None)
    notebook.execute("BEGIN IMMEDIATE")  # an analyst's session in the middle of a write
    outcome: list[object] = []
    writer = threading.Thread(target=lambda: outcome.append(store.ingest("sample", START, END, *portfolio)))
    writer.start()
    assert writing.wait(30), "the ingest never started writing"
    assert writer.is_alive()  # it waits on the lock ...
    notebook.execute("ROLLBACK")  # ... until the analyst's transaction ends
    writer.join(60)
    assert not writer.is_alive()
    assert outcome[0].metric_rows == len(portfolio[0])
    assert counts(path)["metrics"] == len(portfolio[0]) and counts(path)["pulls"] == 1
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_reader_in_a_long_transaction_never_blocks_a_write(tmp_path, portfolio):
    path = tmp_path / "store.db"
    store = Store(f"sqlite:///{path}?timeout=0.1")  # a write that waited at all would fail
    store.migrate()
    store.ingest("sample", START, START, portfolio[0][portfolio[0]["date"] == pd.Timestamp(START)], empty_changes())
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    before = reader.execute("SELECT count(*) FROM metrics").fetchone()[0]
    store.ingest("sample", START, END, *portfolio)  # the analyst's read stays open meanwhile
    assert reader.execute("SELECT count(*) FROM metrics").fetchone()[0] == before  # a stable snapshot
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM metrics").fetchone()[0] == len(portfolio[0])


def test_a_cycle_that_cannot_get_the_lock_fails_clearly_keeps_nothing_and_the_next_one_completes(tmp_path):
    config = copy_default_project(tmp_path)
    text = config.read_text().replace("sqlite:///sample/anomaly.db", "sqlite:///sample/anomaly.db?timeout=0.2")
    config.write_text(text)
    sample.write_sample(tmp_path / "sample")
    db = tmp_path / "sample" / "anomaly.db"
    Store(f"sqlite:///{db}").migrate()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["--config", str(config), "run", "--today", str(END)]) == 1
    message = err.getvalue()
    assert "could not be written: another connection held a write lock on it for too long" in message
    assert "nothing of this write was kept" in message and "Traceback" not in message
    holder.execute("ROLLBACK")
    assert counts(db) == {"metrics": 0, "changes": 0, "pulls": 0, "incidents": 0, "outbox": 0}

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["--config", str(config), "run", "--today", str(END)]) == 0
    after = counts(db)
    assert after["metrics"] > 0 and after["pulls"] == 1 and after["incidents"] >= 2
    alerts = [json.loads(line) for line in (tmp_path / "sample" / "alerts.jsonl").read_text().splitlines()]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        sent = {key for (key,) in conn.execute("SELECT dedupe_key FROM outbox WHERE sink LIKE 'jsonl:%' AND status = 'sent'")}
    assert len(alerts) == len({a["key"] for a in alerts}) and {a["key"] for a in alerts} == sent  # each notification once


# -- a full disk ----------------------------------------------------------------------------------


def test_a_full_disk_during_an_ingest_is_a_clear_error_and_leaves_the_store_as_it_was(tmp_path, portfolio):
    path = tmp_path / "store.db"
    Store(f"sqlite:///{path}").migrate()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    full = Store(f"sqlite:///{path}")

    @sa.event.listens_for(full.engine, "connect")
    def _cap(dbapi_connection, _record):  # noqa: ANN001 - the database may grow by two pages only: a full disk
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 2}")

    with pytest.raises(StoreError) as error:
        full.ingest("sample", START, END, *portfolio)
    assert str(error.value) == (
        f"the store at sqlite:///{path} could not be written: the disk (or the database's size limit) is full "
        "(database or disk is full); nothing of this write was kept"
    )
    assert counts(path) == {"metrics": 0, "changes": 0, "pulls": 0, "incidents": 0, "outbox": 0}
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    Store(f"sqlite:///{path}").ingest("sample", START, END, *portfolio)  # room again: the same write goes through
    assert counts(path)["metrics"] == len(portfolio[0])


def test_an_alert_log_on_a_full_disk_fails_the_send_which_stays_pending():
    sink = JsonlSink("/dev/full")
    with pytest.raises(DeliveryError, match=r"^/dev/full: No space left on device$") as error:
        sink.send("opened", {"incident_id": 1}, _delivery("1:opened:2026-07-10:jsonl"))
    assert error.value.retryable


# -- the alert log across a kill ------------------------------------------------------------------


def _delivery(key: str) -> Delivery:
    return Delivery(key, 1, dt.datetime(2026, 7, 10, 7, 15))


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_notification_written_before_a_kill_is_not_written_again(tmp_path):
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path)
    sink.send("opened", {"incident_id": 1}, _delivery("1:opened:a:jsonl"))
    sink.send("opened", {"incident_id": 2}, _delivery("2:opened:a:jsonl"))
    # the process was killed after writing incident 2's alert, before recording it: it comes again
    sink.send("opened", {"incident_id": 2}, _delivery("2:opened:a:jsonl"))
    sink.send("updated", {"incident_id": 1}, _delivery("1:updated:b:jsonl"))
    assert [(r["incident_id"], r["event"], r["key"]) for r in _records(path)] == [
        (1, "opened", "1:opened:a:jsonl"), (2, "opened", "2:opened:a:jsonl"), (1, "updated", "1:updated:b:jsonl"),
    ]


def test_a_line_cut_short_by_a_kill_is_dropped_before_the_next_record(tmp_path):
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path)
    sink.send("opened", {"incident_id": 1}, _delivery("1:opened:a:jsonl"))
    with open(path, "ab") as fh:
        fh.write(b'{"event": "opened", "incident_id": 2, "ke')  # the write a kill interrupted
    sink.send("opened", {"incident_id": 2}, _delivery("2:opened:a:jsonl"))
    assert [r["key"] for r in _records(path)] == ["1:opened:a:jsonl", "2:opened:a:jsonl"]


def test_a_pipe_is_only_appended_to(tmp_path):
    read_end, write_end = os.pipe()
    sink = JsonlSink(f"/dev/fd/{write_end}")  # as `path: /dev/stdout` is, under a supervisor that pipes it
    sink.send("opened", {"incident_id": 1}, _delivery("1:opened:a:jsonl"))
    sink.send("opened", {"incident_id": 1}, _delivery("1:opened:a:jsonl"))
    os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8") as pipe:
        lines = pipe.read().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["1:opened:a:jsonl"] * 2  # no end to read back on a pipe


def test_records_without_a_notification_are_always_appended(tmp_path):
    path = tmp_path / "ops.jsonl"
    sink = JsonlSink(path)
    for _ in range(2):  # the service's job reports: no key, nothing to deduplicate
        sink.send("job_failed", {"job": "pull:sample"})
    assert [r["event"] for r in _records(path)] == ["job_failed", "job_failed"]
    assert all("key" not in r for r in _records(path))


def test_only_the_end_of_a_long_alert_log_is_read(tmp_path, monkeypatch):
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path)
    monkeypatch.setattr(JsonlSink, "TAIL_BYTES", 400)
    for n in range(20):
        sink.send("opened", {"incident_id": n}, _delivery(f"{n}:opened:a:jsonl"))
    sink.send("opened", {"incident_id": 19}, _delivery("19:opened:a:jsonl"))  # at the end: found
    sink.send("opened", {"incident_id": 0}, _delivery("0:opened:a:jsonl"))  # far back: not looked for
    assert [r["incident_id"] for r in _records(path)] == [*range(20), 0]
