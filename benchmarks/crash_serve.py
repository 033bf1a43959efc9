"""Crash consistency of ``anomaly serve``: SIGKILL at random points of many cycles, restart, check.

    python -m benchmarks.crash_serve [--cycles 100] [--accounts 8] [--seed 1]

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
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import queue
import signal
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


# ---------------------------------------------------------------------------------------------
# The service under test, in a process of its own


def serve_fast(config_path: str) -> int:
    """``anomaly serve`` with second-level triggers: a pull and a delivery every half second and
    a 0.2 s heartbeat; waits for a killed holder's lock to go stale, then runs until SIGTERM."""
    import logging

    from apscheduler.triggers.interval import IntervalTrigger

    from anomaly.service import DELIVER, HEARTBEAT, REFIT, LockHeldError, Service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    service = Service(
        config_path,
        triggers={"pull:export": IntervalTrigger(seconds=0.5), DELIVER: IntervalTrigger(seconds=0.5), REFIT: IntervalTrigger(days=1), HEARTBEAT: IntervalTrigger(seconds=0.2)},
        heartbeat_seconds=0.2,
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
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=service.scheduler.shutdown, daemon=True).start())
    try:
        service.run()
    finally:
        service.stop()
    print("serve_fast: stopped", file=sys.stderr, flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# The harness


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

    def _write_config(self) -> Path:
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
    - {{type: slack, channel: {CHANNEL}, token: "${{SLACK_BOT_TOKEN}}", base_url: "{self.fake.base_url}", timeout_seconds: 1, max_retries: 1}}
    - {{type: jsonl, path: {f}/alerts.jsonl}}
"""
        path = f / "config.yaml"
        path.write_text(text, encoding="utf-8")
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

    def _start(self) -> tuple[subprocess.Popen, queue.Queue]:
        env = {**os.environ, "SLACK_BOT_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.crash_serve", "--serve", str(self.config)],
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
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve_fast(args.serve)
    with tempfile.TemporaryDirectory() as tmp:
        result = crash_run(Path(tmp), args.cycles, args.accounts, args.seed)
    kills = result.pop("kills")
    print(f"{'kills by phase':<26} " + ", ".join(f"{phase} {kills.get(phase, 0)}" for phase in PHASES))
    for name, value in result.items():
        print(f"{name:<26} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
