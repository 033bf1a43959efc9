"""`anomaly serve` under load: a detection cycle that runs longer than its schedule.

Detection is held on an event, so the cycle lasts exactly as long as the test needs, while the
real scheduler runs every job on second-level triggers. Nothing sleeps for timing: the test waits on
events that scheduler listeners set, with timeouts.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections import Counter

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, JobExecutionEvent, JobSubmissionEvent
from apscheduler.schedulers.background import BackgroundScheduler

from anomaly import pipeline, sample
from anomaly.alerts import make_sinks
from anomaly.config import load_config
from anomaly.ownership import ownership_periods
from anomaly.service import DELIVER, HEARTBEAT, REFIT, LockHeldError, Service
from tests.test_service import WAIT, Down, JobEvents, alerts, every, project

HEARTBEAT_SECONDS = 0.5  # stale after 1.5 s
BEATS_WHILE_HELD = 6  # heartbeats while detection is held: 2.5 s at least, longer than a stale period


class HeldDetection:
    """``derive_incidents`` that waits for ``release`` before it detects, and counts how many
    detections run at once."""

    def __init__(self, derive):
        self.derive = derive
        self.started = threading.Event()
        self.release = threading.Event()
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.started.set()
            if not self.release.wait(WAIT):
                raise TimeoutError("detection was held longer than the test allows")
            return self.derive(*args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


class Load:
    """What the scheduler did while detection was held: the lock's heartbeat as stored after each
    heartbeat, and the skipped runs by job id."""

    def __init__(self, service: Service, held: HeldDetection):
        self.service = service
        self.held = held
        self.beats: list[dt.datetime] = []
        self.skipped: Counter[str] = Counter()
        service.scheduler.add_listener(self._executed, EVENT_JOB_EXECUTED)
        service.scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)

    def _executed(self, event: JobExecutionEvent) -> None:
        if not self.held.started.is_set() or self.held.release.is_set():
            return
        if event.job_id == HEARTBEAT:
            self.beats.append(self.service.store.service_lock_holder().heartbeat_at)

    def _skipped(self, event: JobSubmissionEvent) -> None:
        self.skipped[event.job_id] += 1

    @property
    def longest_silence(self) -> float:
        """The longest time between two heartbeats while detection was held, in seconds."""
        return max((b - a).total_seconds() for a, b in zip(self.beats, self.beats[1:]))


def test_a_cycle_longer_than_its_schedule_starves_neither_heartbeat_nor_deliveries(tmp_path, monkeypatch, caplog):
    config_path = project(tmp_path)
    config, rules = load_config(config_path)
    service = Service(
        config_path,
        scheduler=BackgroundScheduler(),
        triggers={"pull:sample": every(0.3), REFIT: every(0.3), DELIVER: every(0.2), HEARTBEAT: every(HEARTBEAT_SECONDS)},
        heartbeat_seconds=HEARTBEAT_SECONDS,
    )
    store = service.store
    # notifications of an earlier cycle wait in the outbox: the sink was down then
    pipeline.pull_source(config, config.sources[0], store, sample.END)
    pipeline.run_cycle(config, rules, ownership_periods(config), store, [Down(s.name) for s in make_sinks(config)], pull_sources=False)
    waiting = store.pending()
    assert waiting

    held = HeldDetection(pipeline.derive_incidents)
    monkeypatch.setattr(pipeline, "derive_incidents", held)
    load = Load(service, held)  # its listeners first: a test waiting on JobEvents sees what they recorded
    events = JobEvents(service.scheduler)
    service.acquire_lock()
    try:
        service.run()
        assert held.started.wait(WAIT)
        assert events.wait_for(
            lambda e: len(load.beats) >= BEATS_WHILE_HELD and not store.pending() and load.skipped["pull:sample"] >= 1 and load.skipped[REFIT] >= 1
        ), (len(load.beats), store.outbox_counts(), load.skipped)
        sent_while_held = alerts(tmp_path)
        assert store.outbox_counts() == {"sent": len(waiting)}
        second = Service(config_path)
        with pytest.raises(LockHeldError, match=f"another instance holds the service lock of .*: {re.escape(service.holder)}, last heartbeat "):
            second.acquire_lock()
        second.stop()
        held.release.set()
        assert events.wait_for(lambda e: e.executed["pull:sample"] >= 1 and e.executed[REFIT] >= 1)
    finally:
        held.release.set()
        service.stop()

    assert load.longest_silence < service.stale_after.total_seconds(), load.beats
    assert sent_while_held  # the earlier cycle's notifications went out while this one was still detecting
    sent = alerts(tmp_path)
    assert len(sent) == len({a["key"] for a in sent})  # nothing sent twice
    assert held.most_at_once == 1  # the overrunning cycle was never started a second time beside it
    assert not events.failed
    skips = [r.getMessage() for r in caplog.records if r.name == "anomaly.service" and " is skipped: " in r.getMessage()]
    assert any(m.startswith("job pull:sample: the run at ") and m.endswith(" has not finished (a job never runs twice at once)") for m in skips), skips


class CountedBeats:
    """Counts the heartbeats a service renews through its own store (stopping does, the heartbeat
    job opens a store of its own), and lets a test wait for so many."""

    def __init__(self, service: Service):
        self.beats = 0
        self.changed = threading.Condition()
        self._refresh = service.store.refresh_service_lock
        service.store.refresh_service_lock = self._counted

    def _counted(self, holder: str, **kwargs) -> bool:
        held = self._refresh(holder, **kwargs)
        with self.changed:
            self.beats += 1
            self.changed.notify_all()
        return held

    def wait_for(self, beats: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.beats >= beats, timeout=WAIT)


def test_stopping_during_a_long_cycle_keeps_the_lock_until_the_cycle_has_finished(tmp_path, monkeypatch):
    config_path = project(tmp_path)
    service = Service(
        config_path,
        scheduler=BackgroundScheduler(),
        triggers={"pull:sample": every(0.3), HEARTBEAT: every(HEARTBEAT_SECONDS)},
        heartbeat_seconds=HEARTBEAT_SECONDS,
    )
    held = HeldDetection(pipeline.derive_incidents)
    monkeypatch.setattr(pipeline, "derive_incidents", held)
    beats = CountedBeats(service)
    service.acquire_lock()
    service.run()
    stopping = threading.Thread(target=service.stop)
    try:
        assert held.started.wait(WAIT)
        stopping.start()  # as on SIGTERM: the scheduler stops, and waits for the cycle
        # long enough for a silent holder to go stale: the lock is still fresh
        assert beats.wait_for(BEATS_WHILE_HELD)
        assert stopping.is_alive() and not service.scheduler.running
        second = Service(config_path)
        with pytest.raises(LockHeldError):
            second.acquire_lock()
        second.stop()
    finally:
        held.release.set()
        stopping.join(WAIT)
    assert not stopping.is_alive()
    assert service.store.service_lock_holder() is None  # given up once the cycle had finished
    assert [a["event"] for a in alerts(tmp_path) if a["campaign_id"] == sample.STORY_CAMPAIGN.campaign_id] == ["opened"]  # and the cycle finished
