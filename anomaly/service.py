"""``anomaly serve``, the scheduled service, and ``anomaly status``, what it is doing.

The scheduler (APScheduler 3) runs these jobs, each under an explicit id:

- ``pull:<source>`` on the source's cron schedule: pull the source from its cursor minus the
  look-back (which catches up every day missed while the service was down), then run a detection
  cycle on the stored data, which opens, updates and resolves incidents and delivers their
  notifications;
- ``deliver`` every ``service.deliver_every_minutes``: send what is pending in the outbox (the
  notifications of a cycle still running, and retries);
- ``refit`` on ``service.refit``: a detection cycle on the stored data, which keeps incidents current
  (resolutions included) on days when no source is due;
- ``heartbeat`` every 30 s: keep the service lock.

With ``alerts.slack_app`` set, the Slack app that answers the alerts' Acknowledge and Snooze
buttons (``anomaly.alerts.slack_app``) runs with the scheduler and stops with it.

The service lock is a row in the store, so that one instance runs jobs per store: another refuses
to start while the holder's heartbeat is fresh and takes over once it is stale. A job checks that
its instance still holds the lock before it starts and before each send, so two instances never
both send; an instance that finds it has lost the lock stops. Jobs are module-level functions of
strings (the config path, the holder id) that load the config afresh, so they would survive a
persistent job store and pick up edited rules.

The cycles (pulls and the refit) run one at a time on one thread; ``deliver`` and ``heartbeat``
each have a thread of their own, so that a cycle that takes longer than its schedule (a large
portfolio) neither lets the lock go stale nor holds back the alerts already in the outbox. One
delivery runs at a time in the process: the deliver job and a cycle's own delivery take turns, so
that no pending notification is sent twice. A job whose next time comes while it is still running
(or waiting its turn) is not started again beside it: that run is skipped, and logged. Stopping
waits for the running jobs, and renews the heartbeat meanwhile, so that a long cycle keeps the lock
until it has finished.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
    JobSubmissionEvent,
    SchedulerEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from anomaly.alerts import DeliveryError, Sink, deliver, make_sinks, waiting_lines
from anomaly.alerts.render import money
from anomaly.alerts.sinks import ConsoleSink, Delivery, Receipt
from anomaly.alerts.slack_app import SlackAppRunner
from anomaly.config import Config, RuleBase, ScheduleConfig, load_config, resolve_sink_name
from anomaly.errors import AnomalyError, InputError, Problem
from anomaly.ownership import ownership_periods
from anomaly.pipeline import file_lines, no_rows_text, pull_source, run_cycle
from anomaly.redaction import redact
from anomaly.silences import active_silences, matches
from anomaly.store import PullRecord, ServiceLock, Store, utcnow

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
STALE_HEARTBEATS = 3  # a holder silent for this many heartbeats is presumed dead: its lock may be taken
DELIVER = "deliver"
REFIT = "refit"
HEARTBEAT = "heartbeat"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# One delivery of the outbox at a time in this process: the deliver job and a cycle's own delivery
# run on different threads, and two deliveries at once could both send one pending notification.
_delivering = threading.Lock()


def pull_job_id(source: str) -> str:
    return f"pull:{source}"


class LockHeldError(AnomalyError):
    """Another live instance holds the service lock of this store."""


class LockLostError(AnomalyError):
    """This instance no longer holds the service lock: another instance took it over."""


def new_holder() -> str:
    """An id for this instance that says where it runs: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------
# Jobs


@dataclass(frozen=True)
class _JobContext:
    config: Config
    rules: list[RuleBase]
    store: Store
    holder: str

    def check_lock(self) -> None:
        """Renew this instance's heartbeat, or raise LockLostError when another instance holds the lock."""
        if not self.store.refresh_service_lock(self.holder):
            raise LockLostError(
                f"this instance ({self.holder}) no longer holds the service lock of {self.store.describe()}; "
                "it sends nothing more and stops"
            )

    def sinks(self) -> list[Sink]:
        return [_LockedSink(sink, self.check_lock) for sink in make_sinks(self.config)]


class _LockedSink:
    """Sends through ``sink`` only while this instance holds the service lock."""

    def __init__(self, sink: Sink, check_lock: Callable[[], None]):
        self.name = sink.name
        self._sink = sink
        self._check_lock = check_lock

    def send(self, event: str, payload: dict, delivery: Delivery | None = None) -> Receipt | None:
        self._check_lock()
        return self._sink.send(event, payload, delivery)


@contextmanager
def _job(config_path: str, holder: str) -> Iterator[_JobContext]:
    """Config, rules and store for one run of a job, once the lock is checked; closes the store after."""
    config, rules = load_config(config_path)
    store = Store(config.store.url.get_secret_value())
    try:
        job = _JobContext(config, rules, store, holder)
        job.check_lock()
        yield job
    finally:
        store.engine.dispose()


def pull_source_job(config_path: str, source_name: str, holder: str) -> None:
    """Pull one source through today (in its schedule's time zone), then detect and deliver."""
    with _job(config_path, holder) as job:
        source = next((s for s in job.config.sources if s.name == source_name), None)
        if source is None:
            raise InputError([Problem(config_path, "sources", f"source {source_name!r} is no longer configured; restart the service to drop its schedule")])
        today = dt.datetime.now(ZoneInfo(source.schedule.timezone or job.config.service.timezone)).date()
        pull_source(job.config, source, job.store, today)
        _detect_and_deliver(job)


def refit_job(config_path: str, holder: str) -> None:
    """A detection cycle over the stored data: incidents stay current on days when no source is due."""
    with _job(config_path, holder) as job:
        _detect_and_deliver(job)


def deliver_job(config_path: str, holder: str) -> None:
    """Send what is pending in the outbox: notifications of the last cycle and retries."""
    with _job(config_path, holder) as job:
        with _delivering:
            report = deliver(job.store, job.sinks(), config=job.config)
        log.info("delivered: %d sent, %d failed, %d pending", report.sent, report.failed, report.pending)


def heartbeat_job(config_path: str, holder: str) -> None:
    """Keep the service lock: checking it renews the heartbeat."""
    with _job(config_path, holder):
        pass


def _detect_and_deliver(job: _JobContext) -> None:
    report = run_cycle(
        job.config, job.rules, ownership_periods(job.config), job.store, job.sinks(), pull_sources=False, delivery_lock=_delivering
    )
    log.info(
        "cycle as of %s: %d open incident(s), %d new notification(s), %d sent, %d failed",
        report.as_of, report.open_incidents, report.enqueued, report.delivery.sent, report.delivery.failed,
    )


# ---------------------------------------------------------------------------------------------
# Schedule


def schedule_triggers(config: Config) -> dict[str, CronTrigger]:
    """The cron schedules by job id: each source's pull and the refit (config has checked them)."""
    schedules = {pull_job_id(s.name): s.schedule for s in config.sources}
    schedules[REFIT] = config.service.refit
    return {job_id: _cron(schedule, config.service.timezone) for job_id, schedule in schedules.items()}


def delivery_trigger(config: Config, started_at: dt.datetime) -> IntervalTrigger:
    """Every ``deliver_every_minutes`` from ``started_at`` (UTC), when the service took its lock."""
    every = dt.timedelta(minutes=config.service.deliver_every_minutes)
    return IntervalTrigger(minutes=config.service.deliver_every_minutes, start_date=_aware(started_at) + every, timezone=config.service.timezone)


def _cron(schedule: ScheduleConfig, default_zone: str) -> CronTrigger:
    return CronTrigger.from_crontab(schedule.cron, timezone=ZoneInfo(schedule.timezone or default_zone))


def _due_since(trigger: BaseTrigger, last: PullRecord | None, now: dt.datetime) -> bool:
    """Whether a run fell due since the source was last pulled (or it never was): the service was
    down then, so it runs at once rather than at its next time."""
    if last is None:
        return True
    due = trigger.get_next_fire_time(None, _aware(last.pulled_at))
    return due is not None and due <= now


# ---------------------------------------------------------------------------------------------
# The service


class Service:
    """One instance of ``anomaly serve`` on a config file: its lock holder id, scheduler and jobs.

    ``scheduler`` (default: a BlockingScheduler) is configured here. ``triggers`` replace the
    schedule of the jobs they name, by job id (tests use second-level intervals);
    ``heartbeat_seconds`` sets the heartbeat, and with it when a silent holder counts as stale.
    Call ``acquire_lock``, then ``run``; ``stop`` lets the running job finish, stops the Slack app
    (if configured) and releases the lock; ``shutdown`` only stops the scheduler (from a signal).
    """

    def __init__(
        self,
        config_path: str | Path,
        *,
        scheduler: BaseScheduler | None = None,
        triggers: dict[str, BaseTrigger] | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ):
        self.config_path = str(Path(config_path).resolve())
        self.config, _ = load_config(self.config_path)
        self.cron = schedule_triggers(self.config)
        self.operations = operations_sink(self.config, self.config_path)
        self.overrides = dict(triggers or {})
        unknown = set(self.overrides) - {*self.cron, DELIVER, HEARTBEAT}
        if unknown:
            raise ValueError(f"triggers for unknown jobs: {', '.join(sorted(unknown))}")
        self.heartbeat_seconds = heartbeat_seconds
        self.scheduler = scheduler or BlockingScheduler()
        self.holder = new_holder()
        self.store = Store(self.config.store.url.get_secret_value())
        self.store.migrate()
        self.lock: ServiceLock | None = None
        self.lost_lock = False
        self._last_runs: dict[str, dt.datetime] = {}  # by job id: the run last handed to its thread
        self.slack_app = SlackAppRunner(self.config) if self.config.alerts.slack_app is not None else None

    @property
    def stale_after(self) -> dt.timedelta:
        return dt.timedelta(seconds=STALE_HEARTBEATS * self.heartbeat_seconds)

    def acquire_lock(self) -> ServiceLock:
        """Take the service lock, or raise LockHeldError naming the live holder."""
        now = utcnow()
        lock = self.store.acquire_service_lock(self.holder, stale_before=now - self.stale_after, now=now)
        if lock.holder != self.holder:
            age = (now - lock.heartbeat_at).total_seconds()
            raise LockHeldError(
                f"anomaly serve: another instance holds the service lock of {self.store.describe()}: {lock.holder}, "
                f"last heartbeat {lock.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC ({age:.0f} s ago); it can be taken over "
                f"once its heartbeat is {self.stale_after.total_seconds():.0f} s old"
            )
        self.lock = lock
        return lock

    def run(self) -> None:
        """Schedule the jobs and start the scheduler; a BlockingScheduler returns when it stops."""
        if self.lock is None:
            raise RuntimeError("acquire_lock() first")
        triggers = {
            **self.cron,
            DELIVER: delivery_trigger(self.config, self.lock.acquired_at),
            HEARTBEAT: IntervalTrigger(seconds=self.heartbeat_seconds),
            **self.overrides,
        }
        self._schedule(triggers)
        if self.slack_app is not None:
            self.slack_app.start()
        self.scheduler.start()

    def stop(self) -> None:
        """Let the running job finish, stop the scheduler and the Slack app, and give the lock up."""
        if self.scheduler.running:
            self.shutdown()
        if self.slack_app is not None:
            self.slack_app.stop()
        self.store.release_service_lock(self.holder)
        self.store.engine.dispose()

    def shutdown(self) -> None:
        """Stop the scheduler and wait for the running jobs to finish, renewing the heartbeat
        meanwhile: the heartbeat job stops with the scheduler, and a cycle that takes minutes to
        finish must keep the lock, or another instance could take it over while this one still
        writes. Raises SchedulerNotRunningError when the scheduler has stopped already."""
        finished = threading.Event()
        beating = threading.Thread(target=self._beat_until, args=(finished,), name="heartbeat-while-stopping", daemon=True)
        beating.start()
        try:
            self.scheduler.shutdown(wait=True)
        finally:
            finished.set()
            beating.join()

    def _beat_until(self, finished: threading.Event) -> None:
        while True:
            try:
                if not self.store.refresh_service_lock(self.holder):
                    return  # another instance holds it: nothing to keep
            except Exception as exc:  # noqa: BLE001 - the next beat tries again, as the heartbeat job's would
                log.error("heartbeat while stopping failed: %s", exc)
            if finished.wait(self.heartbeat_seconds):
                return

    def _schedule(self, triggers: dict[str, BaseTrigger]) -> None:
        self.scheduler.configure(
            timezone=self.config.service.timezone,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": self.config.service.misfire_grace_seconds},
            executors={"default": ThreadPoolExecutor(1), DELIVER: ThreadPoolExecutor(1), HEARTBEAT: ThreadPoolExecutor(1)},
        )
        args = [self.config_path, self.holder]
        last = self.store.last_pulls()
        now = _aware(utcnow())
        for source in self.config.sources:
            job_id = pull_job_id(source.name)
            at_once = {"next_run_time": now} if _due_since(triggers[job_id], last.get(source.name), now) else {}
            self._add(pull_source_job, job_id, triggers[job_id], [self.config_path, source.name, self.holder], **at_once)
        self._add(deliver_job, DELIVER, triggers[DELIVER], args, executor=DELIVER)
        self._add(refit_job, REFIT, triggers[REFIT], args)
        self._add(heartbeat_job, HEARTBEAT, triggers[HEARTBEAT], args, executor=HEARTBEAT)
        self.scheduler.add_listener(self._on_job_trouble, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        self.scheduler.add_listener(self._on_job_submitted, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        self.scheduler.add_listener(self._on_started, EVENT_SCHEDULER_STARTED)

    def _add(self, func: Callable[..., None], job_id: str, trigger: BaseTrigger, args: list[str], **options) -> None:
        self.scheduler.add_job(func, trigger, args=args, id=job_id, name=job_id, replace_existing=True, **options)

    def _on_started(self, _event: SchedulerEvent) -> None:
        lines = [f"anomaly serve: started as {self.holder} on {self.store.describe()}; jobs:"]
        zone = ZoneInfo(self.config.service.timezone)
        for job in sorted(self.scheduler.get_jobs(), key=lambda j: j.next_run_time):
            lines.append(f"  {job.id:<24} next {_when(job.next_run_time, zone)}  ({trigger_text(job.trigger)})")
        if self.slack_app is not None:
            lines.append(f"  {self.slack_app.describe()}")
        print("\n".join(lines), file=sys.stderr, flush=True)

    def _on_job_trouble(self, event: JobExecutionEvent) -> None:
        """Log a failed or missed run with its context, report it to the operations sink, and stop
        the service when the failure is a lost lock. Never raises: the scheduler must go on."""
        when = f"{event.scheduled_run_time:%Y-%m-%d %H:%M:%S %Z}"
        if event.code == EVENT_JOB_MISSED:
            text = f"job {event.job_id} missed its run at {when} (more than {self.config.service.misfire_grace_seconds} s late)"
        else:
            text = redact(f"job {event.job_id} (run at {when}) failed: {event.exception}")
        expected = event.exception is None or isinstance(event.exception, AnomalyError)
        log.error("%s%s", text, "" if expected else f"\n{redact(str(event.traceback))}")
        if self.operations is not None:
            self._report(event, text)
        if isinstance(event.exception, LockLostError):
            self._stop_after_losing_lock()

    def _on_job_submitted(self, event: JobSubmissionEvent) -> None:
        """Remember each run handed to its thread; log a run skipped because the job's previous run
        has not finished (a cycle that takes longer than its schedule). Nothing is lost: the run
        still going does the work, and a pull's next run starts from the source's cursor."""
        when = event.scheduled_run_times[-1]
        if event.code == EVENT_JOB_SUBMITTED:
            self._last_runs[event.job_id] = when
            return
        zone = ZoneInfo(self.config.service.timezone)
        busy = self._last_runs.get(event.job_id)
        log.warning(
            "job %s: the run at %s is skipped: its run at %s has not finished (a job never runs twice at once)",
            event.job_id, _when(when, zone), _when(busy, zone),
        )

    def _report(self, event: JobExecutionEvent, text: str) -> None:
        payload = {
            "job": event.job_id,
            "scheduled_run_time": event.scheduled_run_time.isoformat(),
            "error": None if event.exception is None else redact(str(event.exception)),
            "holder": self.holder,
            "text": f"anomaly serve: {text}",
        }
        kind = "job_missed" if event.code == EVENT_JOB_MISSED else "job_failed"
        try:
            if isinstance(self.operations, ConsoleSink):  # the console renders incident alerts only
                print(payload["text"], file=self.operations.stream or sys.stdout, flush=True)
            else:
                self.operations.send(kind, payload)
        except (DeliveryError, OSError) as exc:
            log.error("could not report to the operations sink %s: %s", self.operations.name, redact(str(exc)))

    def _stop_after_losing_lock(self) -> None:
        self.lost_lock = True
        try:
            self.scheduler.shutdown(wait=False)  # from a job's thread: waiting would wait for itself
        except SchedulerNotRunningError:
            pass  # already stopping


def operations_sink(config: Config, file: str) -> Sink | None:
    """The alert sink named by ``service.operations_sink`` (``console``, or ``jsonl:PATH`` with PATH
    relative to the config file), or None when it is not set. Raise InputError when no configured
    sink has that name."""
    name = config.service.operations_sink
    if name is None:
        return None
    sinks = {sink.name: sink for sink in make_sinks(config)}
    wanted = resolve_sink_name(name, file)
    if wanted not in sinks:
        raise InputError([Problem(file, "service.operations_sink", f"no configured alert sink is named {name!r}; configured: {', '.join(sinks)}")])
    return sinks[wanted]


# ---------------------------------------------------------------------------------------------
# The command


def serve(config_path: str | Path) -> int:
    """Run the service until SIGTERM or SIGINT: 0 after a clean stop, 1 when it lost the lock."""
    for alias in ("default", DELIVER, HEARTBEAT):  # the service's listeners report failed, missed and skipped runs themselves
        logging.getLogger(f"apscheduler.executors.{alias}").addFilter(lambda record: record.levelno < logging.WARNING)
    logging.getLogger("apscheduler.scheduler").addFilter(lambda record: not str(record.msg).startswith('Execution of job "%s" skipped'))
    service = Service(config_path)
    # A handler that acted in the main thread could cut into the scheduler's own bookkeeping, so
    # the handlers do nothing and the signal's number reaches a thread of its own through a pipe,
    # whichever thread the signal interrupted. One that comes before the scheduler runs waits there.
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd)
    previous = {sig: signal.signal(sig, _leave_to_the_stop_thread) for sig in STOP_SIGNALS}
    stopper = threading.Thread(target=_stop_on_signal, args=(read_fd, service), name="stop-on-signal", daemon=True)
    service.scheduler.add_listener(lambda _event: stopper.start(), EVENT_SCHEDULER_STARTED)
    try:
        service.acquire_lock()
        service.run()
    finally:
        service.stop()
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(write_fd)  # a stop thread still waiting reads the end of the pipe and returns
        if stopper.ident is None:
            os.close(read_fd)
    if service.lost_lock:
        print("anomaly serve: stopped: another instance took the service lock over", file=sys.stderr, flush=True)
        return 1
    print("anomaly serve: stopped; the service lock is released", file=sys.stderr, flush=True)
    return 0


def _leave_to_the_stop_thread(_signum: int, _frame: object) -> None:
    """Installed so that the signal is caught and written to the wakeup pipe, not acted on here."""


def _stop_on_signal(read_fd: int, service: Service) -> None:
    """Wait for a stop signal on the pipe, then stop the scheduler once the running job has finished."""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        received = pipe.read(1)
        if not received:
            return  # the service stopped without a signal
        print(f"anomaly serve: {signal.Signals(received[0]).name}: finishing the running job", file=sys.stderr, flush=True)
        try:
            service.shutdown()
        except SchedulerNotRunningError:
            pass  # it stopped on its own, having lost the lock


def status_text(config: Config, store: Store, file: str, *, now: dt.datetime | None = None) -> str:
    """What ``anomaly status`` prints: each source's last pull (for a file source, the files it
    read: new, changed, unchanged or empty, and the latest) and next run, the delivery and refit
    schedule, the lock holder, the notifications waiting (incident, sink, age, failed attempts and
    the last error) and the open incidents (who acknowledged each, the silence holding it back)."""
    cron = schedule_triggers(config)
    now = _aware(now or utcnow())
    zone = ZoneInfo(config.service.timezone)
    lock = store.service_lock_holder()
    lines = [_lock_line(lock, now, zone), "", "Sources:" if config.sources else "Sources: none configured (config.yaml names none)"]
    last = store.last_pulls()
    for source in config.sources:
        trigger = cron[pull_job_id(source.name)]
        pull = last.get(source.name)
        cursor = store.last_pull_end(source.name) if pull is not None and pull.no_rows else None
        lines.append(f"  {source.name}: {_pull_text(pull, zone, cursor)}")
        if pull is not None:
            lines += [f"    {line}" for line in file_lines(store.last_pull_files(source.name), lambda moment: _when(moment, zone))]
        lines.append(f"    next run {_when(trigger.get_next_fire_time(None, now), zone)} ({trigger_text(trigger)})")
    every = f"every {config.service.deliver_every_minutes} min"
    if lock is None:
        lines.append(f"Delivery: {every} while the service runs")
    else:
        lines.append(f"Delivery: next {_when(delivery_trigger(config, lock.acquired_at).get_next_fire_time(None, now), zone)} ({every})")
    lines.append(f"Refit: next {_when(cron[REFIT].get_next_fire_time(None, now), zone)} ({trigger_text(cron[REFIT])})")
    naive_now = now.astimezone(dt.UTC).replace(tzinfo=None)
    pending = store.notifications(status="pending")
    failed = sum(1 for row in pending if row["attempts"])
    lines.append(f"Notifications pending: {len(pending)}" + (f", {failed} failed (tried again at each delivery)" if failed else ""))
    lines += [f"  {line}" for line in waiting_lines(store, naive_now)]
    incidents = store.load_incidents(status="open")
    silences = active_silences(config, store, naive_now)
    lines += ["", f"Open incidents: {len(incidents)}"]
    for row in incidents:
        payload = row["details"]["payload"]
        lines.append(
            f"  #{row['id']} {payload['account_name']} / {payload['campaign_name']}: since {row['onset']}, "
            f"excess ~{money(row['excess_cost'], payload['currency'])}, {row['severity']}, managed by {config.party_name(row['managing_party'])}"
            + (f", acknowledged by {row['acknowledged_by']} at {_when(row['acknowledged_at'], zone)}" if row["acknowledged_at"] else "")
            + "".join(f", {_silenced_text(silence, zone)}" for silence in silences if matches(silence, payload, naive_now))
        )
    return "\n".join(lines)


def _silenced_text(silence, zone: ZoneInfo) -> str:  # noqa: ANN001 - anomaly.store.Silence
    """``silenced until … (silence 3 by dana: "reason")``: which silence holds an incident's notifications back."""
    which = f"silence {silence.id}" if silence.id is not None else "config.yaml"
    return f"silenced until {_when(silence.until, zone)} ({which} by {silence.created_by}: {silence.reason!r})"


def _lock_line(lock: ServiceLock | None, now: dt.datetime, zone: ZoneInfo) -> str:
    if lock is None:
        return "Service lock: free (no service is running on this store)"
    age = (now - _aware(lock.heartbeat_at)).total_seconds()
    stale = " — stale: that instance seems to have stopped; the next one to start takes it over" if age > STALE_HEARTBEATS * HEARTBEAT_SECONDS else ""
    return (
        f"Service lock: held by {lock.holder} since {_when(lock.acquired_at, zone)}, "
        f"last heartbeat {_when(lock.heartbeat_at, zone)} ({age:.0f} s ago){stale}"
    )


def _pull_text(pull: PullRecord | None, zone: ZoneInfo, cursor: dt.date | None) -> str:
    if pull is None:
        return "never pulled (the first pull reaches history_days back)"
    if pull.no_rows:
        note = f"; {no_rows_text(cursor)}"
    elif not pull.complete:
        note = "; some accounts were left out: the next pull fetches their days again"
    else:
        note = ""
    return (
        f"last pull {_when(pull.pulled_at, zone)}: {pull.start}..{pull.end}, "
        f"{pull.metric_rows} metric row(s), {pull.change_rows} change(s)" + note
    )


def trigger_text(trigger: BaseTrigger) -> str:
    """A trigger as a person writes it: ``cron 15 7 * * * UTC`` or ``every 5 min``."""
    if isinstance(trigger, CronTrigger):
        fields = {f.name: str(f) for f in trigger.fields}
        line = " ".join(fields[name] for name in ("minute", "hour", "day", "month", "day_of_week"))
        return f"cron {line} {trigger.timezone}"
    if isinstance(trigger, IntervalTrigger):
        seconds = trigger.interval.total_seconds()
        if seconds % 60:
            return f"every {seconds:g} s"
        return f"every {seconds / 60:g} min"
    return str(trigger)


def _aware(moment: dt.datetime) -> dt.datetime:
    """A time from the store (naive UTC) as an aware one."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _when(moment: dt.datetime | None, zone: ZoneInfo) -> str:
    if moment is None:
        return "never"
    return f"{_aware(moment).astimezone(zone):%Y-%m-%d %H:%M:%S %Z}"
