"""Processes that start at the same time on one store: schema creation and migration take turns,
and an overlapping `anomaly run` waits for the one at work (or gives up with one line), so both end
cleanly and every incident and notification is stored and sent once. On SQLite and PostgreSQL.

Overlaps are made, not hoped for: a process is held at a known point (a statement about to run, a
send into a named pipe nobody reads yet) while the other starts."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from anomaly import sample
from anomaly.cli import EXIT_BUSY, main
from anomaly.store import SCHEMA_VERSION, IncidentWrite, Store, incidents, metadata, outbox, pulls, schema_version, utcnow
from tests.helpers import PROJECT, copy_default_project

WAIT = 60  # seconds: only a broken test ever waits this long
TODAY = str(sample.END + dt.timedelta(days=1))
SERVICE_STALE_AFTER = dt.timedelta(seconds=90)


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


def test_a_refused_write_never_quotes_what_it_was_writing(store):
    """The error of a refused statement names the statement and the database's reason, never the
    values: an incident's details hold the alert's payload."""
    values = {
        "family": "cost_per_lead", "account_id": "A", "campaign_id": "C", "detected_on": dt.date(2026, 7, 2), "onset": dt.date(2026, 7, 1),
        "status": "open", "last_active": dt.date(2026, 7, 2), "severity": "critical", "rule": "cpl", "metric": "cpl", "excess_cost": 1.0,
        "notified": True, "details": {"payload": {"campaign_name": "Secret Launch Q3"}},
    }
    store.save_incidents([IncidentWrite(None, values)])
    with pytest.raises(sa.exc.IntegrityError) as refused:
        store.save_incidents([IncidentWrite(None, values)])  # the same incident again: uq_incident
    assert "INSERT INTO incidents" in str(refused.value)
    assert "Secret Launch Q3" not in str(refused.value)  # PostgreSQL names the key that clashed, no more


def test_the_run_lock_is_free_again_as_soon_as_a_run_ends(store):
    """Runs one after another, and a service after them, never find the lock of the run before:
    closing a PostgreSQL connection ends its session (and its locks) only a moment later, so a
    lock that was left to the closing would be found held by some of a hundred runs in a row."""
    holders = []
    for n in range(100):
        with store.run_lock(f"ads-1:{n}:0", wait=0, service_stale_after=SERVICE_STALE_AFTER):
            holders.append(store.run_holder().holder)
    assert holders == [f"ads-1:{n}:0" for n in range(100)]
    assert store.run_holder() is None
    now = utcnow()
    assert store.acquire_service_lock("ads-1:9:0", stale_before=now, now=now).holder == "ads-1:9:0"


# -- `anomaly run` ---------------------------------------------------------------------------------


def project(folder: Path, store_url: str, *, alerts: str = "alerts.pipe") -> Path:
    """The embedded default with its sample in ``folder``, on ``store_url``, its alerts written
    to ``alerts`` only: by default the named pipe ``alerts.pipe``, where a run blocks at its
    first send until someone reads."""
    path = copy_default_project(folder)
    sample.write_sample(folder / "sample")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["store"]["url"] = store_url
    config["alerts"] = {"sinks": [{"type": "jsonl", "path": alerts}]}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    if alerts == "alerts.pipe":
        os.mkfifo(folder / alerts)
    return path


class Run:
    """``anomaly [-v] run`` in a subprocess, its output collected line by line. ``working`` is set
    once it pulls (it holds the run lock then); ``decided`` once it pulls, says it waits, or ends."""

    def __init__(self, config: Path, *options: str, verbose: bool = True):
        command = [sys.executable, "-m", "anomaly.cli", "--config", str(config), *(["-v"] if verbose else []), "run", "--today", TODAY, *options]
        self.process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.stdout = ""
        self.working, self.decided = threading.Event(), threading.Event()
        self._readers = [threading.Thread(target=self._read_stderr, daemon=True), threading.Thread(target=self._read_stdout, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            if "pulling sample" in line:
                self.working.set()
            if "pulling sample" in line or line.startswith("anomaly run: another run is working on "):
                self.decided.set()
        self.decided.set()

    def _read_stdout(self) -> None:
        self.stdout = self.process.stdout.read()

    @property
    def output(self) -> str:
        return "".join(self.lines) + self.stdout

    def messages(self) -> list[str]:
        """What it said itself: its lines without the -v log."""
        return [line.rstrip("\n") for line in self.lines if not line.startswith(("INFO ", "DEBUG ", "WARNING "))]

    def wait(self) -> int:
        code = self.process.wait(WAIT)
        for reader in self._readers:
            reader.join(WAIT)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()


class Pipe:
    """Reads the alerts pipe from now on, until ``close``: every line written into it."""

    def __init__(self, path: Path):
        # read and write: a writer's open never waits, and a reader never sees the end between writers
        self._fd = os.open(path, os.O_RDWR)
        self._data = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._data.endswith(b"END\n"):
            self._data += os.read(self._fd, 65536)

    def close(self) -> list[dict]:
        os.write(self._fd, b"END\n")
        self._reader.join(WAIT)
        os.close(self._fd)
        return [json.loads(line) for line in bytes(self._data).decode("utf-8").splitlines()[:-1]]


def stored(url: str) -> dict:
    """What the store holds of a run: its pulls, each incident's natural key and each
    notification's key with its status."""
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            return {
                "pulls": conn.execute(sa.select(sa.func.count()).select_from(pulls)).scalar_one(),
                "incidents": sorted(
                    tuple(str(v) for v in row)
                    for row in conn.execute(sa.select(incidents.c.family, incidents.c.account_id, incidents.c.campaign_id, incidents.c.detected_on))
                ),
                "notifications": sorted(tuple(row) for row in conn.execute(sa.select(outbox.c.dedupe_key, outbox.c.status))),
                "run_holder": store.run_holder(),
            }
    finally:
        store.engine.dispose()


class ThreadOutput(io.TextIOBase):
    """Stands for ``sys.stderr``: keeps what each named thread writes, and calls ``on_line``
    (thread name, line) for each whole line."""

    def __init__(self, on_line):  # noqa: ANN001 - Callable[[str, str], None]
        self.text: dict[str, str] = {}
        self._on_line = on_line
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        name = threading.current_thread().name
        with self._lock:
            before = self.text.get(name, "")
            self.text[name] = before + text
        for line in (before.rpartition("\n")[2] + text).splitlines(keepends=True):
            if line.endswith("\n"):
                self._on_line(name, line)
        return len(text)


def test_two_runs_at_once_store_and_send_each_incident_once(tmp_path, store_url, monkeypatch):
    """Two runs in one process, an engine each, the first held just before it stores its new
    incidents. Without the run lock the second finds no incident either and stores the same ones:
    UNIQUE constraint failed (SQLite) or UniqueViolation (PostgreSQL), and a traceback that
    quoted the alert's payload. With it the second waits, then finds them stored."""
    config = project(tmp_path, store_url, alerts="alerts.jsonl")
    first_saving, second_started, go_on = threading.Event(), threading.Event(), threading.Event()

    def hold(_conn, _cursor, statement, _parameters, _context, _executemany):  # noqa: ANN001 - SQLAlchemy's signature
        if " ".join(statement.split()).upper().startswith("INSERT INTO INCIDENTS"):
            name = threading.current_thread().name
            if name == "first":
                first_saving.set()
                go_on.wait(WAIT)
            elif name == "second":  # it got this far beside the first
                second_started.set()
                go_on.wait(WAIT)

    def seen(name: str, line: str) -> None:
        if name == "second" and line.startswith("anomaly run: another run is working on "):
            second_started.set()

    output = ThreadOutput(seen)
    monkeypatch.setattr(sys, "stderr", output)
    codes: dict[str, object] = {}

    def run() -> None:
        name = threading.current_thread().name
        try:
            codes[name] = main(["--config", str(config), "run", "--today", TODAY])
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            codes[name] = exc

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", hold)
    threads = [threading.Thread(target=run, name="first"), threading.Thread(target=run, name="second")]
    try:
        threads[0].start()
        assert first_saving.wait(WAIT), output.text
        threads[1].start()
        assert second_started.wait(WAIT), output.text
    finally:
        go_on.set()
        for thread in threads:
            thread.join(WAIT)
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", hold)
    assert codes == {"first": 0, "second": 0}, output.text
    assert output.text["second"].startswith("anomaly run: another run is working on ")
    assert output.text["second"].splitlines()[-1] == (
        "as of 2026-07-12: 2 incident(s), 2 open; 0 new notification(s), 0 sent, 0 failed, 0 pending, 0 silenced"
    )
    after = stored(store_url)
    assert len(after["incidents"]) == len(set(after["incidents"])) == 2
    assert {status for _, status in after["notifications"]} == {"sent"} and len(after["notifications"]) == 3  # with the handover's
    sent = [json.loads(line)["key"] for line in (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(sent) == [key for key, _ in after["notifications"]]  # each alert sent once


def test_a_run_that_overlaps_another_waits_for_it_or_gives_up_with_one_line(tmp_path, store_url):
    """The first run is held at its first send, in the middle of its cycle. A second that may not
    wait, or not long enough, exits 75 with one line; one that may waits, says so, and runs its
    cycle once the first has finished. Without the run lock the second would pull, detect and send
    beside the first: the same alerts twice, or a traceback on a duplicate incident."""
    config = project(tmp_path, store_url)
    store = Store(store_url).describe()
    first = Run(config)
    runs, pipe = [first], None
    try:
        assert first.working.wait(WAIT), first.output
        runs.append(impatient := Run(config, "--wait", "0", verbose=False))
        assert impatient.wait() == EXIT_BUSY, impatient.output
        [line] = impatient.messages()
        assert line.startswith(f"anomaly run: another run on {store} (")
        holder = line.removeprefix(f"anomaly run: another run on {store} (").partition(", started ")[0]
        assert holder.split(":")[1] == str(first.process.pid)  # host:pid:id
        assert line.endswith(" UTC) had not finished; this run did nothing, the next one catches up")

        runs.append(brief := Run(config, "--wait", "0.2", verbose=False))
        assert brief.wait() == EXIT_BUSY, brief.output
        waiting, gave_up = brief.messages()
        assert waiting.startswith(f"anomaly run: another run is working on {store} ({holder}, started ")
        assert waiting.endswith(" UTC); waiting up to 0.2 s for it to finish")
        assert gave_up.startswith(f"anomaly run: another run on {store} ({holder}, started ")
        assert gave_up.endswith(" UTC) had not finished after 0.2 s; this run did nothing, the next one catches up")

        runs.append(second := Run(config, "--wait", "120"))
        assert second.decided.wait(WAIT), second.output
        assert not second.working.is_set(), f"the second run went to work beside the first:\n{second.output}"
        [waiting] = second.messages()
        assert waiting.startswith(f"anomaly run: another run is working on {store} ({holder}, started ")
        assert waiting.endswith(" UTC); waiting up to 120 s for it to finish")
        pipe = Pipe(tmp_path / "alerts.pipe")  # the first one sends, finishes and lets the second one in
        assert first.wait() == 0, first.output
        assert second.wait() == 0, second.output
    finally:
        for run in runs:
            run.kill()
        sent = pipe.close() if pipe is not None else []
    assert second.messages()[-1] == "as of 2026-07-12: 2 incident(s), 2 open; 0 new notification(s), 0 sent, 0 failed, 0 pending, 0 silenced"
    for run in runs:
        assert "Traceback" not in run.output and "excess_cost" not in run.output, run.output
    after = stored(store_url)
    assert after["pulls"] == 2  # the first run's and the second's: the two that gave up did nothing
    assert len(after["incidents"]) == len(set(after["incidents"])) == 2
    assert {status for _, status in after["notifications"]} == {"sent"} and len(after["notifications"]) == 3  # with the handover's
    assert sorted(record["key"] for record in sent) == [key for key, _ in after["notifications"]]  # each alert sent once
    assert after["run_holder"] is None


def test_a_run_killed_in_its_cycle_leaves_no_lock_behind(tmp_path, store_url):
    """The run lock is the database's (an advisory lock, a file lock): it ends with the process,
    so the next run does not wait for a heartbeat to go stale; it sends what the killed one could not."""
    config = project(tmp_path, store_url)
    first = Run(config)
    runs, pipe = [first], None
    try:
        assert first.working.wait(WAIT), first.output
        first.process.send_signal(signal.SIGKILL)  # held at its first send, or before it
        first.wait()
        pipe = Pipe(tmp_path / "alerts.pipe")
        runs.append(second := Run(config, "--wait", "30", verbose=False))
        assert second.wait() == 0, second.output
    finally:
        for run in runs:
            run.kill()
        sent = pipe.close() if pipe is not None else []
    assert second.messages()[-1].startswith("as of 2026-07-12: 2 incident(s), 2 open; ")
    assert second.messages()[-1].endswith(" 3 sent, 0 failed, 0 pending, 0 silenced")  # two alerts and the handover's message
    after = stored(store_url)
    assert len(after["incidents"]) == 2 and {status for _, status in after["notifications"]} == {"sent"}
    assert sorted(record["key"] for record in sent) == [key for key, _ in after["notifications"]]


# -- `anomaly run` and `anomaly serve` -------------------------------------------------------------


@pytest.mark.parametrize(
    ("heartbeat_age", "runs"),
    [pytest.param(10, False, id="live-service"), pytest.param(100, True, id="stale-service")],
)
def test_a_run_does_nothing_while_the_service_runs_the_cycles(tmp_path, store_url, capsys, heartbeat_age, runs):
    """A live `anomaly serve` pulls, detects and delivers itself: a run beside it would send what
    it sends. A service silent for longer than 90 s is presumed dead, as a second service would."""
    config = project(tmp_path, store_url, alerts="alerts.jsonl")
    store = Store(store_url)
    store.migrate()
    now = utcnow()
    store.acquire_service_lock("ads-1:4123:9f2c01ab", stale_before=now, now=now - dt.timedelta(seconds=heartbeat_age))
    store.engine.dispose()
    capsys.readouterr()
    code = main(["--config", str(config), "run", "--today", TODAY])
    err = capsys.readouterr().err
    if runs:
        assert code == 0, err
        assert stored(store_url)["pulls"] == 1
        return
    assert code == EXIT_BUSY
    message = re.fullmatch(
        re.escape(f"anomaly run: anomaly serve runs the cycles of {store.describe()} (ads-1:4123:9f2c01ab, last heartbeat ")
        + r"(\d+)" + re.escape(" s ago); this run did nothing: stop the service to run a cycle by hand\n"),
        err,
    )
    assert message is not None, err
    assert heartbeat_age <= int(message[1]) < 90
    assert stored(store_url) == {"pulls": 0, "incidents": [], "notifications": [], "run_holder": None}


def test_the_service_does_not_start_while_a_run_works(tmp_path, store_url, capsys):
    config = project(tmp_path, store_url, alerts="alerts.jsonl")
    store = Store(store_url)
    store.migrate()
    try:
        with store.run_lock("ads-1:555:0badc0de", wait=0, service_stale_after=SERVICE_STALE_AFTER):
            started = store.run_holder().acquired_at
            capsys.readouterr()
            assert main(["--config", str(config), "serve"]) == 1
            err = capsys.readouterr().err
        assert err == (
            f"an anomaly run is working on {store.describe()} (ads-1:555:0badc0de, started {started:%Y-%m-%d %H:%M:%S} UTC); "
            "start the service once it has finished\n"
        )
        assert store.service_lock_holder() is None  # it gave the lock back
        assert store.run_holder() is None
    finally:
        store.engine.dispose()
