"""Crash consistency of ``anomaly serve``: SIGKILL at random points of many cycles, restart, check.

    python -m benchmarks.crash_serve [--cycles 100] [--accounts 8] [--seed 1] [--slow-cycle 60]

A synthetic portfolio (``benchmarks.synth``) whose last day is today is revealed through a CSV
source, the way a partner's daily export grows: its last 85 days, one more step each cycle (a day
a cycle with 85 cycles or more). Each cycle starts the service (the
real ``Service``: its scheduler, jobs, lock and sinks, with second-level triggers and a 0.2 s
heartbeat so that a killed holder's lock goes stale in 0.6 s) and kills it with SIGKILL at a point
drawn for the cycle:

- ``ingest``: as soon as the pull starts (the CSV read and the store upsert);
- ``detect``: as soon as the pull is stored (detection, incidents, the outbox);
- ``send``: while Slack holds a message it stored but has not yet answered for;
- ``random``: at a random time after start;
- ``idle``: after the cycle's delivery, between jobs.

Alerts go to a local fake Slack (``tests.slack_fake``) and to a JSON-lines file. After the last
cycle the service runs once more until nothing is pending and stops on SIGTERM. Then the run is
checked: the store's metrics are exactly the CSV's (no ingest half applied), SQLite's integrity
check passes, the incidents equal those a single clean replay of the same data derives, every
notification in the outbox is sent, and Slack and the JSON-lines file hold each exactly once
(nothing lost, nothing duplicated). Prints the kills by phase and those figures.

``--slow-cycle SECONDS`` adds a run, on a store of its own, where a cycle takes longer than its
schedule, as with a portfolio whose detection takes minutes: each detection repeats the real one
until it has run SECONDS (the same CPU load) while the pull falls due every half second, with a
0.5 s heartbeat. Before the service starts, cycles over the weeks before, with Slack down, have
filled the outbox; their last pull is an hour old, so the service starts with a pull, and the
export has gained a day. Slack stays unreachable until the cycle is detecting, then comes back (the
config, which every job reads afresh, points the Slack sink at the fake from then on). The run reads
the lock's heartbeat from the store every 20 ms, as a second instance would; once the cycle has
detected for twice the stale age, it starts a second ``anomaly serve`` on the store, which must be
refused; and it sends SIGTERM once the next cycle, as slow, has started detecting. It prints the
oldest heartbeat seen during the cycle and while SIGTERM waits for the next one (against the age at
which a second instance may take the lock over), the Slack notifications that were pending and went
out before the detection ended (and the messages posted meanwhile), what the second instance got,
the runs skipped because their job was still running, how many detections ran at once, how long
SIGTERM took, and the same exactly-once checks as the kills.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parent.parent
CHANNEL = "C0ALERTS"
TOKEN = "xoxb-crash-test-token"
PHASES = ("ingest", "detect", "send", "random", "idle")
CYCLE_TIMEOUT = 120.0  # seconds a cycle may take before the run is reported as stuck
REVEAL_DAYS = 85  # days revealed during the run: inside the source's 90-day look-back
HEARTBEAT_SECONDS = 0.2
# While a cycle keeps a core busy, a heartbeat run (it reads the config afresh) can take a few
# tenths of a second: most of a 0.2 s heartbeat, a hundredth of the service's 30 s one.
SLOW_HEARTBEAT_SECONDS = 0.5


# ---------------------------------------------------------------------------------------------
# The service under test, in a process of its own


def serve_fast(config_path: str, slow_seconds: float = 0.0) -> int:
    """``anomaly serve`` with second-level triggers: a pull and a delivery every half second and
    a 0.2 s heartbeat; waits for a killed holder's lock to go stale, then runs until SIGTERM.
    With ``slow_seconds``, each detection takes that long (``stretch_detection``), and the
    heartbeat is 0.5 s."""
    import logging

    from apscheduler.triggers.interval import IntervalTrigger

    from anomaly.service import DELIVER, HEARTBEAT, REFIT, LockHeldError, Service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if slow_seconds:
        stretch_detection(slow_seconds)
    beat = SLOW_HEARTBEAT_SECONDS if slow_seconds else HEARTBEAT_SECONDS
    service = Service(
        config_path,
        triggers={"pull:export": IntervalTrigger(seconds=0.5), DELIVER: IntervalTrigger(seconds=0.5), REFIT: IntervalTrigger(days=1), HEARTBEAT: IntervalTrigger(seconds=beat)},
        heartbeat_seconds=beat,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            service.acquire_lock()
            break
        except LockHeldError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=service.shutdown, daemon=True).start())
    try:
        service.run()
    finally:
        service.stop()
    print("serve_fast: stopped", file=sys.stderr, flush=True)
    return 0


def stretch_detection(seconds: float) -> None:
    """Make each detection of this process take ``seconds`` at least: the real detection, repeated
    until then, so that the service bears the CPU load of a portfolio whose detection takes that
    long. Says on stderr when each starts (with how many run at that moment) and ends."""
    from anomaly import pipeline

    derive = pipeline.derive_incidents
    running = 0
    lock = threading.Lock()

    def slow(*args, **kwargs):
        nonlocal running
        with lock:
            running += 1
            at_once = running
        started = time.monotonic()
        print(f"slow detection: started, {at_once} running", file=sys.stderr, flush=True)
        try:
            result, rounds = derive(*args, **kwargs), 1
            while time.monotonic() - started < seconds:
                derive(*args, **kwargs)
                rounds += 1
        finally:
            with lock:
                running -= 1
        print(f"slow detection: done, {rounds} round(s) in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        return result

    pipeline.derive_incidents = slow


# ---------------------------------------------------------------------------------------------
# The harness


class _Down:
    """A sink that is down: what a cycle enqueues for it stays pending."""

    def __init__(self, name: str):
        self.name = name

    def send(self, event: str, payload: dict, delivery=None) -> None:
        from anomaly.alerts import DeliveryError

        raise DeliveryError("down while the outbox fills", retryable=True)


class _Heartbeats:
    """Reads the service lock's heartbeat from the store every 20 ms in a thread of its own, as a
    second instance would see it: ``ages`` holds (monotonic time, age in seconds) of each reading."""

    def __init__(self, database: Path):
        self.database = database
        self.ages: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.closing(sqlite3.connect(self.database, timeout=30)) as conn:
            while not self._stop.wait(0.02):
                row = conn.execute("SELECT heartbeat_at FROM service_lock").fetchone()
                if row is not None:
                    age = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.datetime.fromisoformat(row[0])
                    self.ages.append((time.monotonic(), age.total_seconds()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def oldest(self, start: float, end: float) -> float:
        """The oldest the heartbeat was seen between two monotonic times."""
        return max((age for at, age in self.ages if start <= at <= end), default=float("nan"))


@dataclass
class CrashRun:
    folder: Path
    cycles: int
    accounts: int
    seed: int
    kills: Counter = field(default_factory=Counter)
    cycle_seconds: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        from benchmarks.synth import generate
        from tests.slack_fake import FakeSlack

        self.rng = np.random.default_rng(self.seed)
        today = dt.datetime.now(dt.UTC).date()
        days = 200
        self.portfolio = generate(self.seed, n_accounts=self.accounts, days=days, start=str(today - dt.timedelta(days=days - 1)))
        self.last_day = pd.Timestamp(today)
        self.fake = FakeSlack(channels={CHANNEL: "#media-alerts"}, token=TOKEN)
        self.config = self._write_config()

    # -- set-up ---------------------------------------------------------------------------------

    def _write_config(self, slack_url: str | None = None) -> Path:
        """The service's config, with Slack at ``slack_url`` (default: the fake), written whole and
        renamed into place: every job of the running service reads it afresh."""
        f = self.folder
        self.portfolio.ownership.to_csv(f / "ownership.csv", index=False, date_format="%Y-%m-%d")
        parties = "\n".join(f"  {k}: {{name: {v['name']}, domains: [{', '.join(v['domains'])}]}}" for k, v in self.portfolio.parties.items())
        text = f"""\
store:
  url: sqlite:///{f}/store.db
parties:
{parties}
sources:
  - name: export
    type: csv
    metrics: [{f}/metrics.csv]
    changes: [{f}/changes.csv]
    lookback_days: 90
    history_days: 400
ownership:
  file: {f}/ownership.csv
  default_party: {self.portfolio.default_party}
rules_dir: {PROJECT / 'rules'}
alerts:
  sinks:
    - {{type: slack, channel: {CHANNEL}, token: "${{SLACK_BOT_TOKEN}}", base_url: "{slack_url or self.fake.base_url}", timeout_seconds: 1, max_retries: 1}}
    - {{type: jsonl, path: {f}/alerts.jsonl}}
"""
        path = f / "config.yaml"
        (f / ".config.yaml.tmp").write_text(text, encoding="utf-8")
        os.replace(f / ".config.yaml.tmp", path)
        return path

    def _show_until(self, day: pd.Timestamp) -> None:
        """The export as it stands on ``day``: written whole, then renamed into place, as a
        partner's export job would, so a pull never reads half a file."""
        metrics = self.portfolio.metrics[self.portfolio.metrics["date"] <= day].drop(columns="hour")
        changes = self.portfolio.changes[self.portfolio.changes["changed_at"] < day + pd.Timedelta(days=1)]
        for name, frame in (("metrics.csv", metrics), ("changes.csv", changes)):
            temporary = self.folder / f".{name}.tmp"
            frame.to_csv(temporary, index=False, date_format="%Y-%m-%d" if name == "metrics.csv" else None)
            os.replace(temporary, self.folder / name)

    # -- one cycle ------------------------------------------------------------------------------

    def _start(self, *options: str) -> tuple[subprocess.Popen, queue.Queue]:
        env = {**os.environ, "SLACK_BOT_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.crash_serve", "--serve", str(self.config), *options],
            cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        lines: queue.Queue = queue.Queue()

        def pump() -> None:
            for line in process.stderr:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        return process, lines

    def _wait_for(self, lines: queue.Queue, predicate, deadline: float) -> str | None:
        """The first line that satisfies ``predicate``; None when the process ended or time ran out."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                return None
            if line is None:
                return None
            if predicate(line):
                return line

    def cycle(self, day: pd.Timestamp, phase: str) -> None:
        self._show_until(day)
        started = time.monotonic()
        posts_before = len(self.fake.calls("chat.postMessage"))
        if phase == "send":  # Slack stores the next message, then keeps its answer long enough to be killed
            self.fake.fail_next("chat.postMessage", delay=30, after_store=True)
        process, lines = self._start()
        deadline = started + CYCLE_TIMEOUT
        done = f"cycle as of {day.date()}"
        landed = phase
        if phase == "ingest":
            self._wait_for(lines, lambda line: " pulling export " in line, deadline)
        elif phase == "detect":
            self._wait_for(lines, lambda line: " pulled export " in line, deadline)
        elif phase == "send":
            while len(self.fake.calls("chat.postMessage")) == posts_before and process.poll() is None and time.monotonic() < deadline:
                if self._wait_for(lines, lambda line: done in line, time.monotonic() + 0.05) is not None:
                    landed = "idle"  # the cycle had nothing to send
                    break
        elif phase == "random":
            time.sleep(float(self.rng.uniform(0.0, 4.0)))
        else:
            self._wait_for(lines, lambda line: done in line, deadline)
        process.kill()
        process.wait()
        self.kills[landed] += 1
        self.cycle_seconds.append(time.monotonic() - started)

    def finish(self) -> int:
        """Run until the last day's cycle is done and nothing is pending, then stop cleanly."""
        process, lines = self._start()
        deadline = time.monotonic() + CYCLE_TIMEOUT
        self._wait_for(lines, lambda line: f"cycle as of {self.last_day.date()}" in line, deadline)
        while time.monotonic() < deadline and self._pending() > 0:
            self._wait_for(lines, lambda line: "delivered:" in line, time.monotonic() + 2)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=60)

    def _slack_sent_of(self, ids: set[int] | None) -> set[int]:
        """Of the Slack notifications ``ids``, those sent; with None, the Slack notifications pending."""
        with contextlib.closing(sqlite3.connect(self.folder / "store.db")) as conn:
            rows = conn.execute("SELECT id, status FROM outbox WHERE sink LIKE 'slack:%'").fetchall()
        if ids is None:
            return {i for i, status in rows if status == "pending"}
        return {i for i, status in rows if i in ids and status == "sent"}

    def _pending(self) -> int:
        with contextlib.closing(sqlite3.connect(self.folder / "store.db")) as conn:
            return conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]

    def run(self) -> dict:
        # the last REVEAL_DAYS days, in as many steps as there are cycles (several days a step
        # when cycles are few), ending on the last day
        days = pd.date_range(end=self.last_day, periods=REVEAL_DAYS, freq="D")
        schedule = [days[int(round(i))] for i in np.linspace(0, REVEAL_DAYS - 1, self.cycles)] if self.cycles > 1 else [self.last_day]
        phases = [PHASES[i % len(PHASES)] for i in self.rng.permutation(self.cycles)]
        started = time.monotonic()
        for day, phase in zip(schedule, phases):
            self.cycle(day, phase)
        exit_code = self.finish()
        result = self.check()
        result.update(exit_code=exit_code, wall_seconds=round(time.monotonic() - started, 1))
        return result

    # -- a cycle longer than its schedule -------------------------------------------------------

    def slow(self, seconds: float) -> dict:
        """One cycle whose detection takes ``seconds`` while its pull falls due every half second:
        what the heartbeat, the deliveries and a second instance do meanwhile (see the module)."""
        from anomaly.alerts import make_sinks
        from anomaly.config import load_config
        from anomaly.ownership import ownership_periods
        from anomaly.pipeline import run_cycle
        from anomaly.store import Store

        started = time.monotonic()
        os.environ.setdefault("SLACK_BOT_TOKEN", TOKEN)
        config, rules = load_config(self.config)
        store = Store(config.store.url.get_secret_value())
        store.migrate()
        today = dt.datetime.now(dt.UTC).date()
        down = [_Down(sink.name) for sink in make_sinks(config)]
        for days_before in PREPARED_DAYS_BEFORE:  # the weeks before, while Slack was down
            self._show_until(self.last_day - pd.Timedelta(days=days_before))
            run_cycle(config, rules, ownership_periods(config), store, down, today=today)
        store.engine.dispose()
        waiting = self._pending()
        slack_waiting = self._slack_sent_of(None)
        with contextlib.closing(sqlite3.connect(self.folder / "store.db")) as conn, conn:
            # that was an hour ago: the service starts with the pull, which is overdue
            an_hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(tzinfo=None)
            conn.execute("UPDATE pulls SET pulled_at = ?", (an_hour_ago.isoformat(" "),))
        self._show_until(self.last_day)
        unreachable = socket.socket()  # bound, never listening: Slack refuses every connection
        unreachable.bind(("127.0.0.1", 0))
        self._write_config(slack_url=f"http://127.0.0.1:{unreachable.getsockname()[1]}/api/")

        second = _SecondInstance(self.config)
        heartbeats = _Heartbeats(self.folder / "store.db")
        process, lines = self._start("--slow-cycle", str(seconds))
        log: list[tuple[float, str]] = []  # every line of the service, with when it came

        def until(predicate, deadline: float) -> float | None:
            """Collect lines until one satisfies ``predicate``: when it came, or None at the deadline."""
            while (line := self._wait_for(lines, lambda _line: True, deadline)) is not None:
                log.append((time.monotonic(), line))
                if predicate(line):
                    return log[-1][0]
            return None

        def seen(text: str) -> float:
            """When the service wrote a line with ``text``; an error with its last lines if it did not."""
            at = until(lambda line: text in line, deadline)
            if at is None:
                process.kill()
                raise RuntimeError(f"the service wrote no {text!r} in time; its last lines:\n" + "".join(line for _, line in log[-30:]))
            return at

        deadline = time.monotonic() + CYCLE_TIMEOUT + seconds
        pulling = seen(" pulling export ")
        detecting = seen("slow detection: started")
        detecting_wall = time.time()
        self._write_config()  # Slack is back
        stale = 3 * SLOW_HEARTBEAT_SECONDS  # anomaly.service.STALE_HEARTBEATS heartbeats
        until(lambda line: False, detecting + 2 * stale)  # a silent holder would be stale by now
        second.start()
        detected = seen("slow detection: done")
        detected_wall = time.time()
        slack_sent = len(self._slack_sent_of(slack_waiting))
        cycle_done = seen(f"cycle as of {self.last_day.date()}")
        while time.monotonic() < deadline and self._pending() > 0:
            until(lambda line: "delivered:" in line, time.monotonic() + 2)
        seen("slow detection: started")  # the next cycle, as slow: stopped in the middle of its detection
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        until(lambda line: False, stopping + seconds + 60)  # the rest of its lines, until it exits
        exit_code = process.wait(timeout=60)
        stopped = time.monotonic()
        heartbeats.stop()
        second.wait()
        unreachable.close()

        posted_while_detecting = sum(1 for r in self.fake.calls("chat.postMessage") if detecting_wall <= r.time <= detected_wall)
        skipped = Counter()
        for at, line in log:
            if pulling <= at <= cycle_done and (found := re.search(r"anomaly\.service: job (\S+): the run at .* is skipped: ", line)):
                skipped[found.group(1)] += 1
        at_once = [int(found.group(1)) for _, line in log if (found := re.search(r"slow detection: started, (\d+) running", line))]
        checked = self.check()
        return {
            "slow_detection_seconds": seconds,
            "cycle_seconds": round(cycle_done - pulling, 1),
            "stale_after_seconds": stale,
            "heartbeat_oldest_in_cycle": round(heartbeats.oldest(pulling, cycle_done), 2),
            "heartbeat_oldest_stopping": round(heartbeats.oldest(stopping, stopped), 2),
            "notifications_pending_before": waiting,
            "slack_pending_before": len(slack_waiting),
            "slack_sent_while_detecting": slack_sent,
            "slack_posts_while_detecting": posted_while_detecting,
            "second_instance": second.outcome(detected),
            "runs_skipped": dict(skipped),
            "detections_at_once": max(at_once, default=0),
            "sigterm_to_exit_seconds": round(stopped - stopping, 1),
            "exit_code": exit_code,
            **{k: checked[k] for k in SLOW_CHECKS},
            "wall_seconds": round(time.monotonic() - started, 1),
        }

    # -- the checks -----------------------------------------------------------------------------

    def check(self) -> dict:
        from anomaly.config import load_config
        from anomaly.ownership import ownership_periods
        from anomaly.pipeline import derive_incidents
        from anomaly.store import Store

        os.environ.setdefault("SLACK_BOT_TOKEN", TOKEN)
        config, rules = load_config(self.config)
        store = Store(config.store.url.get_secret_value())
        with contextlib.closing(sqlite3.connect(self.folder / "store.db")) as conn:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
            # a notification sent in a grouped message is there under the group's key
            outbox = conn.execute("SELECT coalesce(group_key, dedupe_key), sink, status FROM outbox").fetchall()

        stored = store.load_metrics()
        expected = self.portfolio.metrics[self.portfolio.metrics["date"] <= self.last_day]
        key = ["account_id", "campaign_id", "date"]
        merged = stored.merge(expected, on=key, how="outer", suffixes=("", "_csv"), indicator=True)
        same = (merged["_merge"] == "both") & np.isclose(merged["spend"], merged["spend_csv"]) & np.isclose(merged["leads"], merged["leads_csv"])
        metric_mismatches = int((~same).sum())

        changes = self.portfolio.changes[self.portfolio.changes["changed_at"] < self.last_day + pd.Timedelta(days=1)]
        derived = derive_incidents(config, rules, ownership_periods(config), expected.reset_index(drop=True), changes, self.last_day.date())
        reference = {(i.family, i.account_id, i.campaign_id, i.detected_on, i.onset, i.status) for i in derived}
        recorded = {(r["family"], r["account_id"], r["campaign_id"], r["detected_on"], r["onset"], r["status"]) for r in store.load_incidents()}

        slack_keys = Counter()
        for message in self.fake.messages(CHANNEL):
            for m in [message, *self.fake.thread(CHANNEL, message["ts"])[1:]]:
                k = ((m.get("metadata") or {}).get("event_payload") or {}).get("key")
                if k:
                    slack_keys[k] += 1
        jsonl_path = self.folder / "alerts.jsonl"
        jsonl_keys = Counter(json.loads(line)["key"] for line in jsonl_path.read_text(encoding="utf-8").splitlines()) if jsonl_path.exists() else Counter()
        sent = {(k, s) for k, s, status in outbox if status == "sent"}
        slack_sent = {k for k, s in sent if s.startswith("slack:")}
        jsonl_sent = {k for k, s in sent if s.startswith("jsonl:")}
        return {
            "cycles": self.cycles,
            "kills": dict(self.kills),
            "integrity": integrity,
            "metric_rows": len(stored),
            "metric_mismatches": metric_mismatches,
            "incidents": len(recorded),
            "incidents_unlike_replay": len(recorded ^ reference),
            "notifications": len(outbox),
            "not_sent": sum(1 for _, _, status in outbox if status != "sent"),
            "slack_messages": sum(slack_keys.values()),
            "slack_lost": len(slack_sent - set(slack_keys)),
            "slack_duplicated": sum(n - 1 for n in slack_keys.values() if n > 1),
            "slack_unrecorded": len(set(slack_keys) - slack_sent),
            "jsonl_lines": sum(jsonl_keys.values()),
            "jsonl_lost": len(jsonl_sent - set(jsonl_keys)),
            "jsonl_duplicated": sum(n - 1 for n in jsonl_keys.values() if n > 1),
            "slack_requests": len(self.fake.requests),
            "median_cycle_seconds": round(float(np.median(self.cycle_seconds)), 2) if self.cycle_seconds else 0.0,
        }


class _SecondInstance:
    """``anomaly serve`` on the store of a running service, which should be refused at once: the
    command's ``main``, in a process that has imported it already and runs it on ``start``, so that
    it tries the lock at that moment, not seconds of imports later."""

    PROGRAM = "import sys, anomaly.service; from anomaly.cli import main; sys.stdin.readline(); sys.exit(main(sys.argv[1:]))"

    def __init__(self, config: Path):
        env = {**os.environ, "SLACK_BOT_TOKEN": TOKEN}
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.PROGRAM, "--config", str(config), "serve"],
            cwd=PROJECT, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.ended: float | None = None
        self.stderr = ""
        self._thread = threading.Thread(target=self._wait, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _wait(self) -> None:
        try:
            self.stderr = self.process.communicate("go\n", timeout=CYCLE_TIMEOUT)[1]
        except subprocess.TimeoutExpired:  # it took the lock and runs: stop it
            self.process.kill()
            self.stderr = self.process.communicate()[1]
        self.ended = time.monotonic()

    def wait(self) -> None:
        if self._thread.ident is None:
            self._thread.start()
        self._thread.join()

    def outcome(self, detected: float) -> str:
        """``refused`` (exit 1, the lock is held), with whether that was while the cycle detected."""
        self.wait()
        if self.process.returncode == 1 and "another instance holds the service lock" in self.stderr:
            return "refused while detecting" if self.ended <= detected else "refused after the detection"
        return f"not refused (exit {self.process.returncode}): {self.stderr.strip()[-200:]}"


PREPARED_DAYS_BEFORE = (36, 29, 22, 15, 8, 1)  # the cycles that fill the outbox before a slow run

SLOW_CHECKS = (
    "integrity", "metric_mismatches", "incidents", "incidents_unlike_replay", "notifications", "not_sent",
    "slack_messages", "slack_lost", "slack_duplicated", "slack_unrecorded", "jsonl_lines", "jsonl_lost", "jsonl_duplicated",
)


def slow_run(folder: Path, seconds: float, accounts: int, seed: int) -> dict:
    run = CrashRun(folder, 0, accounts, seed)
    try:
        return run.slow(seconds)
    finally:
        run.fake.stop()


def crash_run(folder: Path, cycles: int, accounts: int, seed: int) -> dict:
    run = CrashRun(folder, cycles, accounts, seed)
    try:
        return run.run()
    finally:
        run.fake.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slow-cycle", type=float, default=0.0, metavar="SECONDS", help="also run a cycle whose detection takes SECONDS")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve_fast(args.serve, args.slow_cycle)
    if args.cycles > 0:
        with tempfile.TemporaryDirectory() as tmp:
            result = crash_run(Path(tmp), args.cycles, args.accounts, args.seed)
        kills = result.pop("kills")
        print(f"{'kills by phase':<26} " + ", ".join(f"{phase} {kills.get(phase, 0)}" for phase in PHASES))
        for name, value in result.items():
            print(f"{name:<26} {value}")
    if args.slow_cycle > 0:
        with tempfile.TemporaryDirectory() as tmp:
            result = slow_run(Path(tmp), args.slow_cycle, args.accounts, args.seed)
        print(f"a cycle longer than its schedule (a pull due every 0.5 s, a heartbeat every {SLOW_HEARTBEAT_SECONDS} s):")
        for name, value in result.items():
            print(f"{name:<28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
