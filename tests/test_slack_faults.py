"""Fault injection on Slack: a few hundred notifications (opened, updated, resolved, reminders, and
grouped messages with their replies) go through the outbox to the local fake Slack while 30% of its
requests fail: HTTP 429 with Retry-After, 500, 503, a timeout or a dropped connection, each before
or after Slack took the request in. Every notification ends sent and in its place (the channel, or
its alert's thread) exactly once, and each alert ends as its last notification says. Then each kind
of failure alone, on every request for a few rounds, is retried until Slack recovers, not dropped.

``python -m benchmarks.slack_faults`` runs the same scenario at scale.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from anomaly.alerts import deliver
from anomaly.alerts.slack import EVENT_TYPE, SlackSink
from anomaly.alerts.slack_message import build_alert, build_group
from anomaly.config import Config, SlackSinkConfig
from anomaly.store import IncidentWrite, Store, outbox
from tests.slack_fake import RANDOM_KINDS, FakeSlack, sleeps  # noqa: F401 - the fixture
from tests.test_grouping import payload
from tests.test_store import incident

pytestmark = pytest.mark.usefixtures("sleeps")  # the SDK's retry pauses are recorded, not slept

CHANNEL = "C0ALERTS"
CONFIG = Config.model_validate({})  # group_min_incidents 4, repeat_every_hours 24
T0 = dt.datetime(2026, 7, 13, 9, 0)
REMIND_AT = T0 + dt.timedelta(hours=25)  # every incident still open is due for a reminder
TIMEOUT = 0.2  # the client's, in seconds; an injected timeout holds its request twice as long
MAX_ROUNDS = 200
RATE = 0.3
WRITES = ("chat.postMessage", "chat.update")
NO_ACK = {"acknowledged_at": None, "acknowledged_by": None}  # as the outbox hands a payload to a sink

#: what follows the opening of the i-th incident alone on its account (by i % 10): six of ten get
#: worse, three resolve (two of them after getting worse); the seven left open are reminded
SINGLE_EVENTS: tuple[tuple[str, ...], ...] = (
    ("updated", "resolved"), ("updated", "resolved"), ("updated",), ("updated",), ("updated",), ("updated",),
    ("resolved",), (), (), (),
)
#: what follows in a group of five incidents opened together on one account: replies in the grouped
#: message's thread, and one grouped reminder for the three left open
GROUP_EVENTS: tuple[tuple[str, ...], ...] = (("updated",), ("updated", "resolved"), ("resolved",), (), ())
SINGLES_PER_GROUP = 50
CHART_EVERY = 10  # one single incident in ten carries a daily series: its alert gets a chart


# ----------------------------------------------------------------------------------------------
# the scenario


@dataclass
class Planned:
    """One incident of the scenario: its opening payload, what follows it and, once saved, its id."""

    payload: dict
    events: tuple[str, ...]
    grouped: bool
    id: int | None = None
    current: dict = field(default_factory=dict)  # its payload as of its latest notification


def plan(singles: int) -> list[Planned]:
    """``singles`` incidents alone on their accounts (three to an account: below the grouping
    threshold) and a group of five on an account of its own per ``SINGLES_PER_GROUP`` of them."""
    planned = []
    for i in range(singles):
        opened = payload(f"1{i // 3:09d}", i % 3)
        if i % CHART_EVERY == 3:
            opened["series"] = [[f"2026-07-{day:02d}", 200.0 + 40 * (day >= 9) * (day - 8), 2.0, 100.0] for day in range(1, 11)]
        planned.append(Planned(opened, SINGLE_EVENTS[i % len(SINGLE_EVENTS)], grouped=False))
    for g in range(max(1, singles // SINGLES_PER_GROUP)):
        planned += [Planned(payload(f"9{g:09d}", n), events, grouped=True) for n, events in enumerate(GROUP_EVENTS)]
    return planned


def notifications(planned: list[Planned]) -> int:
    """How many notifications the scenario enqueues: each incident's opening and later events, and
    a reminder for each one left open."""
    return sum(1 + len(item.events) + ("resolved" not in item.events) for item in planned)


def later(current: dict, event: str) -> dict:
    """The payload of an incident's next notification: worse (excess past another step), or resolved."""
    if event == "updated":
        return {**current, "observed": 520.0, "cpl": 520.0, "excess_cost": current["excess_cost"] + 1500}
    return {**current, "status": "resolved", "resolved_on": "2026-07-12", "excess_cost": current["excess_cost"] + 700}


def open_incidents(store: Store, planned: list[Planned], sink: str) -> None:
    """One detection cycle that opens every planned incident (one transaction, as a cycle saves)."""
    writes = []
    for item in planned:
        item.current = item.payload
        values = incident(account_id=item.payload["account_id"], campaign_id=item.payload["campaign_id"], details={"payload": item.payload})
        note = {"event": "opened", "key": item.payload["detected_on"], "sink": sink, "payload": {**item.payload, "event": "opened"}}
        writes.append(IncidentWrite(None, values, (note,)))
    store.save_incidents(writes)
    ids = {(row["account_id"], row["campaign_id"]): row["id"] for row in store.load_incidents()}
    for item in planned:
        item.id = ids[(item.payload["account_id"], item.payload["campaign_id"])]


def follow_up(store: Store, planned: list[Planned], event: str, sink: str) -> None:
    """One later cycle: every planned incident whose events include ``event`` gets it."""
    writes = []
    for item in planned:
        if event not in item.events:
            continue
        item.current = later(item.current, event)
        status = "resolved" if event == "resolved" else "open"
        values = incident(account_id=item.payload["account_id"], campaign_id=item.payload["campaign_id"], status=status, details={"payload": item.current})
        note = {"event": event, "key": f"cycle-{event}", "sink": sink, "payload": {**item.current, "event": event}}
        writes.append(IncidentWrite(item.id, values, (note,)))
    store.save_incidents(writes)


def slack_sink(fake: FakeSlack, timeout: float = TIMEOUT) -> SlackSink:
    settings = SlackSinkConfig(type="slack", channel=CHANNEL, token=fake.token, base_url=fake.base_url, timeout_seconds=timeout, max_retries=3)
    return SlackSink(settings, CONFIG)


@dataclass
class Run:
    """What a run took: delivery rounds, and how many of them sent nothing."""

    rounds: int = 0
    idle_rounds: int = 0
    seconds: float = 0.0


def deliver_until_done(store: Store, sink: SlackSink, now: dt.datetime, run: Run, *, rounds: int | None = None) -> None:
    """Deliver at ``now`` until nothing is pending, or for ``rounds`` rounds when given; at most
    ``MAX_ROUNDS`` rounds in a run."""
    done = 0
    while rounds is None or done < rounds:
        if run.rounds >= MAX_ROUNDS:
            return
        report = deliver(store, [sink], config=CONFIG, now=now)
        run.rounds += 1
        done += 1
        run.idle_rounds += report.sent == 0
        if rounds is None and report.pending == 0:
            return


def run_scenario(store: Store, fake: FakeSlack, sink: SlackSink, planned: list[Planned], *, head_start: int = 2) -> Run:
    """Open the planned incidents, deliver ``head_start`` rounds, make the worse and resolved ones
    so (two more cycles, while some openings may still be pending), deliver until nothing is
    pending, then a day later deliver the reminders until nothing is pending."""
    run = Run()
    started = time.perf_counter()
    open_incidents(store, planned, sink.name)
    deliver_until_done(store, sink, T0, run, rounds=head_start)
    follow_up(store, planned, "updated", sink.name)
    follow_up(store, planned, "resolved", sink.name)
    deliver_until_done(store, sink, T0, run)
    deliver_until_done(store, sink, REMIND_AT, run)
    run.seconds = time.perf_counter() - started
    return run


# ----------------------------------------------------------------------------------------------
# what Slack ended with


@dataclass
class Findings:
    """What went wrong, by notification key (a grouped message's key for its members)."""

    notifications: int
    keys: int  # messages and replies expected: a grouped message carries many notifications
    lost: list[str]  # not sent, or sent but not (or not there) in Slack
    duplicated: dict[str, int]  # in Slack more than once: how many times
    stray: list[str]  # in Slack under a key that no notification has
    out_of_order: list[str]  # an alert whose text, or whose thread, is not what its notifications say
    charts: int  # alert charts shared into threads
    doubled_charts: int  # alert threads holding more than one chart

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.stray or self.out_of_order)


def key_of(message: dict) -> str | None:
    metadata = message.get("metadata") or {}
    return (metadata.get("event_payload") or {}).get("key") if metadata.get("event_type") == EVENT_TYPE else None


def outbox_rows(store: Store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(outbox).order_by(outbox.c.id))]


def check(store: Store, fake: FakeSlack, channel: str = CHANNEL) -> Findings:
    """Compare the outbox with every message and reply in ``channel``."""
    rows = outbox_rows(store)
    messages = fake.all_messages(channel)
    by_ts = {message["ts"]: message for message in messages}
    seen = Counter(key for key in map(key_of, messages) if key is not None)
    expected = {row["group_key"] or row["dedupe_key"] for row in rows}
    main = {row["incident_id"]: row["ts"] for row in rows if row["event"] == "opened" and row["status"] == "sent"}

    lost = []
    for row in rows:
        key = row["group_key"] or row["dedupe_key"]
        message = by_ts.get(row["ts"]) if row["status"] == "sent" else None
        thread = message and message.get("thread_ts", message["ts"])
        placed = message is not None and key_of(message) == key and thread == (row["ts"] if row["event"] == "opened" else main.get(row["incident_id"]))
        if not placed:
            lost.append(f"{row['dedupe_key']} ({row['status']}, {row['attempts']} attempts, last error: {row['last_error']})")

    out_of_order = []
    for incident_id, ts in main.items():
        mine = [row for row in rows if row["incident_id"] == incident_id and row["status"] == "sent"]
        replies = [key_of(m) for m in messages if m.get("thread_ts") == ts and m["ts"] != ts]
        keys = [row["group_key"] or row["dedupe_key"] for row in mine[1:]]
        if list(dict.fromkeys(key for key in replies if key in keys)) != keys:  # a second copy is a duplicate, counted there
            out_of_order.append(f"incident {incident_id}: replies {replies}, notifications {keys}")
        if mine[0]["group_key"] is None:
            last = mine[-1]
            want = build_alert(last["event"], {**json.loads(last["payload"]), **NO_ACK}, CONFIG)
            if (by_ts[ts].get("blocks"), by_ts[ts]["text"]) != (want.blocks, want.text):
                out_of_order.append(f"incident {incident_id}: its alert does not show its {last['event']} notification")
    for key in {row["group_key"] for row in rows if row["event"] == "opened" and row["group_key"]}:
        members = [{**json.loads(row["payload"]), **NO_ACK} for row in rows if row["group_key"] == key]
        group = by_ts.get(next(row["ts"] for row in rows if row["group_key"] == key))
        if group is None or group.get("blocks") != build_group(members, CONFIG).blocks or "edited" in group:
            out_of_order.append(f"{key}: the grouped message is not the one its incidents make")

    charts = Counter(message.get("thread_ts") for message in messages if message.get("files"))
    return Findings(
        notifications=len(rows),
        keys=len(expected),
        lost=lost,
        duplicated={key: n for key, n in seen.items() if n > 1},
        stray=sorted(set(seen) - expected),
        out_of_order=out_of_order,
        charts=sum(charts.values()),
        doubled_charts=sum(1 for n in charts.values() if n > 1),
    )


def summary(fake: FakeSlack, run: Run, findings: Findings, pauses: Iterable[float] = ()) -> str:
    """The counts of a run, for an assertion message or a report."""
    requests = Counter(request.method for request in fake.requests)
    injected = fake.injected_counts()
    pauses = list(pauses)
    return (
        f"{findings.notifications} notifications ({findings.keys} messages and replies), {run.rounds} delivery rounds "
        f"({run.idle_rounds} sending nothing) in {run.seconds:.1f} s; {sum(requests.values())} requests {dict(requests)}; "
        f"{sum(injected.values())} failures injected {dict(sorted(injected.items()))}; {len(pauses)} SDK retry pauses "
        f"recorded ({sum(pauses):.0f} s not slept); {findings.charts} charts ({findings.doubled_charts} threads with two or more); "
        f"lost {findings.lost[:5]} ({len(findings.lost)}), duplicated {dict(list(findings.duplicated.items())[:5])} "
        f"({len(findings.duplicated)}), stray {findings.stray[:5]}, out of order {findings.out_of_order[:5]} ({len(findings.out_of_order)})"
    )


# ----------------------------------------------------------------------------------------------
# 30% of requests failing


SINGLES = 100  # about 280 notifications


def test_hundreds_of_notifications_with_30_percent_of_requests_failing_arrive_once_each_and_in_order(store: Store, sleeps: list[float]) -> None:
    # half as many on PostgreSQL: the timeouts make the time, and the file stays under a minute
    planned = plan(singles=SINGLES if store.dialect == "sqlite" else SINGLES // 2)
    with FakeSlack() as fake:
        fake.fail_randomly(RATE, seed=20260713, delay=2 * TIMEOUT)
        run = run_scenario(store, fake, slack_sink(fake), planned)
        findings = check(store, fake)
        report = summary(fake, run, findings, sleeps)

    assert findings.ok and run.rounds < MAX_ROUNDS, report
    assert findings.notifications == notifications(planned) and store.outbox_counts() == {"sent": findings.notifications}, report
    injected = fake.injected_counts()
    assert {label.split()[0] for label in injected} == set(RANDOM_KINDS), report  # every kind happened ...
    assert any(label.endswith("after store") for label in injected), report  # ... before and after store
    assert 0.2 < sum(injected.values()) / len(fake.requests) < 0.4, report


# ----------------------------------------------------------------------------------------------
# each kind alone, on every request for a few rounds, then Slack recovers


FAILING_ROUNDS = 2


@pytest.mark.parametrize("after_store", [pytest.param(False, id="before-store"), pytest.param(True, id="after-store")])
@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_each_kind_of_failure_is_retried_until_slack_recovers(tmp_path, sleeps: list[float], kind: str, after_store: bool) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    planned = plan(singles=4)
    with FakeSlack() as fake:
        sink = slack_sink(fake)

        def outage(now: dt.datetime) -> None:
            # after store, only writes fail: a failing read would stop every send before its write
            fake.fail_randomly(1.0, kinds=[kind], methods=WRITES if after_store else None, after_store=float(after_store), delay=2 * TIMEOUT, retry_after=2)
            deliver_until_done(store, sink, now, run, rounds=FAILING_ROUNDS)
            fake.fail_randomly(0)
            deliver_until_done(store, sink, now, run)

        run = Run()
        open_incidents(store, planned, sink.name)
        follow_up(store, planned, "updated", sink.name)
        follow_up(store, planned, "resolved", sink.name)
        outage(T0)
        outage(REMIND_AT)
        findings = check(store, fake)
        report = summary(fake, run, findings, sleeps)
    store.engine.dispose()

    assert findings.ok and findings.notifications == notifications(planned), report
    assert store.outbox_counts() == {"sent": findings.notifications}, report
    assert {label.split()[0] for label in fake.injected_counts()} == {kind}, report
    assert max(row["attempts"] for row in outbox_rows(store)) > FAILING_ROUNDS, report  # failed, kept, sent later
    if kind == "429":
        assert sleeps and min(sleeps) >= 2, f"Retry-After: 2 not honoured: {sleeps}"
