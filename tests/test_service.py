"""`anomaly serve` and `anomaly status`: real schedulers on second-level triggers, the service lock
between two instances, catch-up after downtime, failing jobs, and SIGTERM of a real process.

Nothing here sleeps for timing: tests wait on events that scheduler listeners set, with timeouts.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_SCHEDULER_SHUTDOWN, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from anomaly import sample
from anomaly.alerts import DeliveryError, make_sinks
from anomaly.cli import main
from anomaly.config import load_config
from anomaly.errors import InputError
from anomaly.ownership import ownership_periods
from anomaly.pipeline import pull_source, run_cycle
from anomaly.schema import empty_changes, empty_metrics
from anomaly.service import DELIVER, HEARTBEAT, REFIT, LockHeldError, LockLostError, Service, deliver_job, pull_source_job, refit_job
from anomaly.store import SCHEMA_VERSION, Store, schema_version, service_lock, utcnow
from tests.helpers import PROJECT, copy_default_project

STORY = sample.STORY_CAMPAIGN.campaign_id
WAIT = 30  # seconds: a generous upper bound for what normally takes well under one
SAMPLE = {"name": "sample", "type": "csv", "metrics": ["sample/metrics.csv"], "changes": ["sample/changes.csv"], "lookback_days": 7}
BROKEN = {"name": "broken", "type": "csv", "metrics": ["broken.csv"]}


def project(folder: Path, *, store_url: str | None = None, sources: list[dict] | None = None, service: dict | None = None, sinks: list[dict] | None = None) -> Path:
    """The embedded default with its sample in ``folder``, alerts to ``alerts.jsonl`` only."""
    path = copy_default_project(folder)
    sample.write_sample(folder / "sample")
    (folder / "broken.csv").write_text(
        "date,account_id,campaign_id,spend,clicks,leads\n2026-07-01,1,c1,10,5,1\n2026-07-02,1,c1,-5,5,1\n", encoding="utf-8"
    )
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if store_url is not None:
        config["store"]["url"] = store_url
    config["alerts"] = {"sinks": sinks or [{"type": "jsonl", "path": "alerts.jsonl"}]}
    if sources is not None:
        config["sources"] = sources
    if service is not None:
        config["service"] = service
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def alerts(folder: Path, name: str = "alerts.jsonl") -> list[dict]:
    path = folder / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


class JobEvents:
    """Counts executed and failed runs by job id, and lets a test wait for a condition on them."""

    def __init__(self, scheduler: BackgroundScheduler):
        self.executed: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.changed = threading.Condition()
        self.on_executed = lambda event: None
        scheduler.add_listener(self._record, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)

    def _record(self, event: JobExecutionEvent) -> None:
        with self.changed:
            (self.failed if event.exception is not None else self.executed)[event.job_id] += 1
            self.on_executed(event)
            self.changed.notify_all()

    def wait_for(self, predicate) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout=WAIT)


def every(seconds: float) -> IntervalTrigger:
    return IntervalTrigger(seconds=seconds)


# ---------------------------------------------------------------------------------------------
# A running scheduler


def test_a_running_scheduler_delivers_the_first_alert_once(tmp_path, record_property):
    config = project(tmp_path)
    scheduler = BackgroundScheduler()
    service = Service(config, scheduler=scheduler, triggers={"pull:sample": every(0.5), DELIVER: every(0.5), REFIT: every(1), HEARTBEAT: every(0.5)})
    events = JobEvents(scheduler)
    first_alert = threading.Event()

    def note_first_alert(event: JobExecutionEvent) -> None:
        if event.job_id == "pull:sample" and alerts(tmp_path):
            first_alert.set()

    events.on_executed = note_first_alert
    service.acquire_lock()
    started = time.perf_counter()
    try:
        service.run()
        assert first_alert.wait(WAIT)
        record_property("start_to_first_alert_seconds", round(time.perf_counter() - started, 3))
        assert events.wait_for(lambda e: e.executed["pull:sample"] >= 3 and e.executed[REFIT] >= 1 and e.executed[DELIVER] >= 1 and e.executed[HEARTBEAT] >= 1)
    finally:
        service.stop()
    sent = alerts(tmp_path)
    story = [a for a in sent if a["campaign_id"] == STORY]
    assert [(a["event"], a["onset"], a["managing_party"]) for a in story] == [("opened", "2026-07-10", "beacon")]
    assert len(sent) == len({(a.get("incident_id"), a.get("handover_id"), a["event"]) for a in sent})  # three cycles, nothing sent twice
    assert not events.failed
    assert Store(load_config(config)[0].store.url.get_secret_value()).service_lock_holder() is None


def test_catch_up_after_downtime_pulls_the_missed_days_and_alerts_on_them(tmp_path):
    today = dt.datetime.now(dt.UTC).date()
    shift = dt.timedelta(days=(today - sample.END).days // 7 * 7)  # whole weeks: weekdays stay as generated
    config_path = project(tmp_path)
    _shift_sample(tmp_path, config_path, shift)
    config, rules = load_config(config_path)
    store = Store(config.store.url.get_secret_value())
    store.migrate()
    onset = sample.ONSET + shift
    went_down = onset - dt.timedelta(days=2)  # the last pull before the service stopped
    pull_source(config, config.sources[0], store, went_down)
    run_cycle(config, rules, ownership_periods(config), store, make_sinks(config), pull_sources=False)
    assert not [a for a in alerts(tmp_path) if a["campaign_id"] == STORY]

    service = Service(config_path)
    service.acquire_lock()
    pull_source_job(service.config_path, "sample", service.holder)

    catch_up = store.last_pulls()["sample"]
    assert (catch_up.start, catch_up.end) == (went_down - dt.timedelta(days=config.sources[0].lookback_days), today)
    assert store.load_metrics()["date"].max().date() == sample.END + shift
    story = [a for a in alerts(tmp_path) if a["campaign_id"] == STORY]
    assert [(a["event"], a["onset"], a["detected_on"]) for a in story] == [("opened", onset.isoformat(), onset.isoformat())]
    service.stop()


def _shift_sample(folder: Path, config_path: Path, shift: dt.timedelta) -> None:
    """Move the sample (data, changes and the handoff) ``shift`` later, as if it were recent."""
    metrics_path, changes_path = folder / "sample" / "metrics.csv", folder / "sample" / "changes.csv"
    metrics = pd.read_csv(metrics_path, dtype=str, keep_default_na=False)
    metrics["date"] = (pd.to_datetime(metrics["date"]) + shift).dt.strftime("%Y-%m-%d")
    metrics.to_csv(metrics_path, index=False)
    changes = pd.read_csv(changes_path, dtype=str, keep_default_na=False)
    changes["changed_at"] = (pd.to_datetime(changes["changed_at"]) + shift).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    changes.to_csv(changes_path, index=False)
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    for period in config["ownership"]["assignments"][0]["history"]:
        period["since"] = period["since"] + shift
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The service lock


class Down:
    """A sink that is down: notifications stay pending."""

    def __init__(self, name: str):
        self.name = name

    def send(self, event: str, payload: dict, delivery=None) -> None:
        raise DeliveryError("down", retryable=True)


def test_a_second_instance_waits_until_the_first_is_stale_and_the_first_then_sends_nothing(tmp_path, store_url, capsys):
    config_path = project(tmp_path, store_url=store_url, sinks=[{"type": "console"}])
    first, second = Service(config_path), Service(config_path)
    first.acquire_lock()
    with pytest.raises(LockHeldError) as refused:
        second.acquire_lock()
    assert f"another instance holds the service lock of {first.store.describe()}: {first.holder}, last heartbeat " in str(refused.value)
    assert str(refused.value).endswith("it can be taken over once its heartbeat is 90 s old")

    config, rules = load_config(config_path)
    store = first.store
    pull_source(config, config.sources[0], store, sample.END)
    run_cycle(config, rules, ownership_periods(config), store, [Down("console")], pull_sources=False)
    pending = store.pending()
    assert pending

    with store.engine.begin() as conn:  # the first instance stalls: its heartbeat goes stale
        conn.execute(service_lock.update().values(heartbeat_at=utcnow() - 2 * first.stale_after))
    assert second.acquire_lock().holder == second.holder
    for job in (deliver_job, refit_job):
        with pytest.raises(LockLostError, match=f"this instance \\({first.holder}\\) no longer holds the service lock"):
            job(first.config_path, first.holder)
    assert capsys.readouterr().out == "" and store.pending() == pending

    deliver_job(second.config_path, second.holder)
    out = capsys.readouterr().out
    assert out.count("\n  Rule ") + out.count("[HANDOVER] ") == len(pending) and store.pending() == []  # alerts, and the handover's message
    first.stop()  # releases nothing: the lock is the second's
    assert store.service_lock_holder().holder == second.holder
    second.stop()
    assert Store(store_url).service_lock_holder() is None


def test_an_instance_that_loses_the_lock_stops(tmp_path):
    config_path = project(tmp_path)
    scheduler = BackgroundScheduler()
    service = Service(config_path, scheduler=scheduler, triggers={"pull:sample": IntervalTrigger(hours=1), HEARTBEAT: every(0.2)})
    service.store.ingest("sample", sample.END, sample.END, empty_metrics(), empty_changes())  # pulled just now: not due
    stopped = threading.Event()
    scheduler.add_listener(lambda _event: stopped.set(), EVENT_SCHEDULER_SHUTDOWN)
    service.acquire_lock()
    service.run()
    try:
        other = Service(config_path)
        other.store.acquire_service_lock(other.holder, stale_before=utcnow() + dt.timedelta(days=1))  # as if stale
        assert stopped.wait(WAIT)
        assert service.lost_lock
    finally:
        service.stop()
    assert service.store.service_lock_holder().holder == other.holder


def test_a_store_of_version_2_gains_the_lock_table(store_url):
    store = Store(store_url)
    store.migrate()
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE service_lock"))
        conn.execute(schema_version.update().values(version=2))
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema_version.c.version)).scalar() == SCHEMA_VERSION
    assert store.acquire_service_lock("a", stale_before=utcnow()).holder == "a"
    assert store.acquire_service_lock("b", stale_before=utcnow() - dt.timedelta(minutes=1)).holder == "a"
    assert store.refresh_service_lock("a") and not store.refresh_service_lock("b")
    store.release_service_lock("b")
    assert store.service_lock_holder().holder == "a"
    store.release_service_lock("a")
    assert store.service_lock_holder() is None
    store.engine.dispose()


# ---------------------------------------------------------------------------------------------
# Failures


def test_a_failing_job_is_logged_and_reported_and_the_others_go_on(tmp_path, caplog):
    config_path = project(
        tmp_path,
        sources=[SAMPLE, BROKEN],
        sinks=[{"type": "jsonl", "path": "alerts.jsonl"}, {"type": "jsonl", "path": "ops.jsonl"}],
        service={"operations_sink": "jsonl:ops.jsonl"},
    )
    scheduler = BackgroundScheduler()
    service = Service(config_path, scheduler=scheduler, triggers={"pull:sample": every(0.3), "pull:broken": every(0.3)})
    events = JobEvents(scheduler)
    service.acquire_lock()
    try:
        service.run()
        assert events.wait_for(lambda e: e.failed["pull:broken"] >= 2 and e.executed["pull:sample"] >= 2)
        assert scheduler.running
    finally:
        service.stop()
    problem = f"{tmp_path / 'broken.csv'}: line 3, column spend: expected a number >= 0, got '-5'"
    logged = [r.getMessage() for r in caplog.records if r.name == "anomaly.service"]
    assert any(m.startswith("job pull:broken (run at ") and m.endswith(f"failed: {problem}") for m in logged), logged
    reports = [r for r in alerts(tmp_path, "ops.jsonl") if r["event"] == "job_failed"]
    assert reports and {r["job"] for r in reports} == {"pull:broken"} and reports[0]["error"] == problem
    assert [a["event"] for a in alerts(tmp_path) if a["campaign_id"] == STORY] == ["opened"]
    assert events.failed.keys() == {"pull:broken"}


def test_run_pulls_the_other_sources_when_one_fails_and_still_exits_1(tmp_path, capsys):
    config_path = project(tmp_path, sources=[BROKEN, SAMPLE])
    assert main(["--config", str(config_path), "run", "--today", "2026-07-13"]) == 1
    assert capsys.readouterr().err.splitlines()[0] == f"{tmp_path / 'broken.csv'}: line 3, column spend: expected a number >= 0, got '-5'"
    store = Store(load_config(config_path)[0].store.url.get_secret_value())
    assert store.last_pull_end("sample") == dt.date(2026, 7, 13) and store.last_pull_end("broken") is None
    assert [a["event"] for a in alerts(tmp_path) if a["campaign_id"] == STORY] == ["opened"]


@pytest.mark.parametrize(
    ("service", "where", "message"),
    [
        pytest.param({"timezone": "Mars/Olympus"}, "service.timezone", "expected an IANA time zone like 'Europe/Berlin' or 'UTC', got 'Mars/Olympus'", id="time-zone"),
        pytest.param(
            {"refit": {"cron": "30 25 * * *"}},
            "service.refit.cron",
            "expected a crontab line (minute hour day month weekday), got '30 25 * * *': "
            "Error validating expression '25': the last value (25) is higher than the maximum value (23)",
            id="crontab",
        ),
        pytest.param({"operations_sink": "slack"}, "service.operations_sink", "no configured alert sink is named 'slack'; configured: jsonl:", id="operations-sink"),
    ],
)
def test_a_bad_schedule_or_operations_sink_stops_the_service_with_its_path(tmp_path, service, where, message):
    config_path = project(tmp_path, service=service)
    with pytest.raises(InputError) as raised:
        Service(config_path)
    assert str(raised.value).startswith(f"{config_path.resolve()}: {where}: {message}")


# ---------------------------------------------------------------------------------------------
# The command line


class ServeProcess:
    """``anomaly serve`` in a subprocess, its stderr collected; ``working`` is set once its first
    pull is running (it has started and holds the lock)."""

    def __init__(self, config_path: Path):
        self.command = [sys.executable, "-m", "anomaly.cli", "--config", str(config_path), "-v", "serve"]
        self.process = subprocess.Popen(self.command, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.working = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            if 'Running job "pull:sample' in line:
                self.working.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        """SIGTERM, and the exit code once it has finished (it is killed if it does not)."""
        try:
            self.process.send_signal(signal.SIGTERM)
            return self.process.wait(timeout=WAIT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._reader.join(WAIT)


def test_sigterm_finishes_the_running_job_and_releases_the_lock(tmp_path):
    config_path = project(tmp_path)
    serve = ServeProcess(config_path)
    assert serve.working.wait(WAIT), serve.output
    assert serve.stop() == 0, serve.output
    assert "anomaly serve: started as " in serve.output and "  pull:sample " in serve.output
    assert "anomaly serve: SIGTERM: finishing the running job" in serve.output
    assert "anomaly serve: stopped; the service lock is released" in serve.output
    assert [a["event"] for a in alerts(tmp_path) if a["campaign_id"] == STORY] == ["opened"], serve.output  # the job finished
    assert Store(load_config(config_path)[0].store.url.get_secret_value()).service_lock_holder() is None


def test_a_second_serve_process_on_the_same_store_refuses_to_start(tmp_path):
    first = ServeProcess(project(tmp_path))
    try:
        assert first.working.wait(WAIT), first.output  # started, and at work: SIGTERM lets this run finish
        second = subprocess.run(first.command, cwd=PROJECT, capture_output=True, text=True, timeout=WAIT)
    finally:
        code = first.stop()
    assert second.returncode == 1
    assert "anomaly serve: another instance holds the service lock of " in second.stderr
    assert code == 0, first.output
    sent = alerts(tmp_path)
    assert len(sent) == len({(a.get("incident_id"), a.get("handover_id"), a["event"]) for a in sent}) and sent  # sent once, by the first


def test_status_shows_pulls_next_runs_the_lock_and_open_incidents(tmp_path, capsys):
    config_path = project(tmp_path)
    assert main(["--config", str(config_path), "run", "--today", "2026-07-13"]) == 0
    service = Service(config_path)
    service.acquire_lock()
    capsys.readouterr()
    assert main(["--config", str(config_path), "status"]) == 0
    output = capsys.readouterr().out
    service.stop()
    now = dt.datetime.now(dt.UTC)
    pull_at = now.replace(hour=7, minute=15, second=0, microsecond=0)
    pull_at += dt.timedelta(days=1) if pull_at <= now else dt.timedelta()
    lines = output.splitlines()
    assert lines[0].startswith(f"Service lock: held by {service.holder} since ")
    assert "  sample: last pull " in output and ": 2025-06-08..2026-07-13, 931 metric row(s), 23 change(s)" in output
    assert f"    next run {pull_at:%Y-%m-%d %H:%M:%S} UTC (cron 15 7 * * * UTC)" in lines
    assert any(line.startswith("Delivery: next ") and line.endswith(" UTC (every 5 min)") for line in lines)
    assert any(line.startswith("Refit: next ") and line.endswith(" 04:30:00 UTC (cron 30 4 * * * UTC)") for line in lines)
    assert "Notifications pending: 0" in lines and "Open incidents: 2" in lines
    assert any(line.startswith("  #") and "Harbor Dental Group / Generic - Leads: since 2026-07-10, excess ~$" in line for line in lines)


def test_status_says_when_the_last_pull_left_accounts_out(tmp_path, capsys):
    config_path = project(tmp_path)
    assert main(["--config", str(config_path), "run", "--today", "2026-07-13"]) == 0
    config, _ = load_config(config_path)
    store = Store(config.store.url.get_secret_value())
    store.ingest("sample", dt.date(2026, 7, 6), dt.date(2026, 7, 14), empty_metrics(), empty_changes(), complete=False)
    capsys.readouterr()
    assert main(["--config", str(config_path), "status"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  sample: last pull "))
    assert line.endswith(": 2026-07-06..2026-07-14, 0 metric row(s), 0 change(s); some accounts were left out: the next pull fetches their days again")
    assert store.last_pull_end("sample") == dt.date(2026, 7, 13)


def test_status_of_a_config_without_sources_says_so(tmp_path, capsys):
    config_path = tmp_path / "config.yaml"
    config_path.write_text(f"store:\n  url: sqlite:///{tmp_path}/anomaly.db\nrules_dir: {PROJECT}/rules\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["--config", str(config_path), "status"]) == 0
    assert "Sources: none configured (config.yaml names none)" in capsys.readouterr().out.splitlines()
