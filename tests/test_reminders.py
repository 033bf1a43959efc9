"""Reminders: an incident that stays open and unacknowledged is brought up again every
``alerts.repeat_every_hours`` on each sink, once per interval, with the route's mentions; never when
acknowledged, resolved or silenced. On Slack (the local fake Web API) the reminder rewrites the alert
and is broadcast from its thread; in a grouped message's thread it names the campaign."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from anomaly.alerts import deliver, enqueue_reminders
from anomaly.alerts.sinks import ConsoleSink, JsonlSink
from anomaly.alerts.slack import SlackWebhookSink
from anomaly.alerts.slack_message import build_alert
from anomaly.config import Config, SlackWebhookSinkConfig
from anomaly.store import Silence, Store, outbox
from tests.slack_fake import FakeSlack, fake_slack, sleeps  # noqa: F401 - the fixtures
from tests.test_grouping import CHANNEL, CONFIG, follow_up, open_incidents, payload, rows, slack_sink
from tests.test_slack_webhook import Webhook, webhook  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("sleeps")  # no test waits on a retry

T0 = dt.datetime(2026, 7, 13, 9, 0)
HOUR = dt.timedelta(hours=1)
ACCOUNT = "4821937710"
REMINDER = "Still open and not acknowledged: cost per lead 4.0× baseline, excess ~$10,000 so far"


def at(hours: float) -> dt.datetime:
    return T0 + hours * HOUR


def reminders(store: Store) -> list[tuple[str, str]]:
    """(status, dedupe key) of every reminder, oldest first."""
    with store.engine.connect() as conn:
        query = sa.select(outbox.c.status, outbox.c.dedupe_key).where(outbox.c.event == "reminder").order_by(outbox.c.id)
        return [tuple(row) for row in conn.execute(query)]


def opened_on_slack(store: Store, fake: FakeSlack, *, mentions: list[str] | None = None) -> tuple[int, dict]:
    """One incident opened and its alert sent at T0; returns its id and the Slack message."""
    sink = slack_sink(fake)
    (incident_id,) = open_incidents(store, [payload(ACCOUNT, 0)], [sink.name], mentions=mentions)
    assert deliver(store, [sink], config=CONFIG, now=T0).sent == 1
    (message,) = fake.messages(CHANNEL)
    return incident_id, message


# ----------------------------------------------------------------------------------------------
# when


def test_one_reminder_per_interval_and_none_before(store: Store, fake_slack: FakeSlack) -> None:
    sink = slack_sink(fake_slack)
    opened_on_slack(store, fake_slack)

    assert deliver(store, [sink], config=CONFIG, now=at(23.9)).sent == 0
    assert reminders(store) == []
    assert deliver(store, [sink], config=CONFIG, now=at(24)).sent == 1
    assert deliver(store, [sink], config=CONFIG, now=at(24)).sent == 0
    assert deliver(store, [sink], config=CONFIG, now=at(47)).sent == 0  # 23 h after the reminder
    assert deliver(store, [sink], config=CONFIG, now=at(48)).sent == 1

    assert [status for status, _ in reminders(store)] == ["sent", "sent"]
    main, *broadcast = fake_slack.messages(CHANNEL)
    assert len(fake_slack.thread(CHANNEL, main["ts"])) == 3 and len(broadcast) == 2  # the alert and two reminders


def test_the_reminder_key_holds_the_latest_send(store: Store, fake_slack: FakeSlack) -> None:
    incident_id, _ = opened_on_slack(store, fake_slack)
    sink = slack_sink(fake_slack)

    assert enqueue_reminders(store, CONFIG, at(30), [sink.name]) == 1
    assert enqueue_reminders(store, CONFIG, at(31), [sink.name]) == 0  # one is pending
    assert enqueue_reminders(store, CONFIG, at(30), ["console"]) == 0  # nothing was sent there
    assert reminders(store) == [("pending", f"{incident_id}:reminder:2026-07-13T09:00:00:1:{sink.name}")]


@pytest.mark.parametrize("hours", [pytest.param(0, id="off"), pytest.param(72, id="not-yet")])
def test_repeat_every_hours_sets_the_interval(store: Store, fake_slack: FakeSlack, hours: float) -> None:
    config = Config.model_validate({"alerts": {"repeat_every_hours": hours}})
    opened_on_slack(store, fake_slack)

    assert deliver(store, [slack_sink(fake_slack)], config=config, now=at(71)).sent == 0
    assert reminders(store) == []


def test_none_for_an_acknowledged_incident(store: Store, fake_slack: FakeSlack) -> None:
    incident_id, _ = opened_on_slack(store, fake_slack)
    store.acknowledge(incident_id, "slack:U0DANA (Dana)", now=at(2))

    assert deliver(store, [slack_sink(fake_slack)], config=CONFIG, now=at(30)).sent == 0
    assert reminders(store) == []


def test_a_pending_reminder_is_dropped_once_the_incident_is_acknowledged(store: Store, fake_slack: FakeSlack) -> None:
    incident_id, _ = opened_on_slack(store, fake_slack)
    sink = slack_sink(fake_slack)
    assert enqueue_reminders(store, CONFIG, at(24), [sink.name]) == 1
    store.acknowledge(incident_id, "slack:U0DANA (Dana)", now=at(24.5))

    report = deliver(store, [sink], config=CONFIG, now=at(25))

    assert (report.sent, report.obsolete, report.pending) == (0, 1, 0)
    assert [status for status, _ in reminders(store)] == ["obsolete"]
    assert len(fake_slack.calls("chat.postMessage")) == 1  # the alert only


def test_none_for_a_resolved_incident(store: Store, fake_slack: FakeSlack) -> None:
    incident_id, _ = opened_on_slack(store, fake_slack)
    sink = slack_sink(fake_slack)
    follow_up(store, incident_id, "resolved", payload(ACCOUNT, 0), [sink.name])
    assert deliver(store, [sink], config=CONFIG, now=at(1)).sent == 1

    assert deliver(store, [sink], config=CONFIG, now=at(30)).sent == 0
    assert reminders(store) == []


def test_a_silence_holds_reminders_back_and_they_resume_after_it(store: Store, fake_slack: FakeSlack) -> None:
    opened_on_slack(store, fake_slack)
    sink = slack_sink(fake_slack)
    store.add_silence(Silence(at(40), account=ACCOUNT, reason="handoff review"), now=at(1))

    report = deliver(store, [sink], config=CONFIG, now=at(24))
    assert (report.sent, report.silenced) == (0, 1)
    assert deliver(store, [sink], config=CONFIG, now=at(30)).silenced == 0  # the same interval: held back once

    assert deliver(store, [sink], config=CONFIG, now=at(48)).sent == 1  # the silence ended at 40 h
    assert [status for status, _ in reminders(store)] == ["silenced", "sent"]


# ----------------------------------------------------------------------------------------------
# what Slack receives


def test_a_reminder_rewrites_the_alert_and_is_broadcast_with_the_mentions(store: Store, fake_slack: FakeSlack) -> None:
    incident_id, message = opened_on_slack(store, fake_slack, mentions=["U0DANA", "here"])

    assert deliver(store, [slack_sink(fake_slack)], config=CONFIG, now=at(24)).sent == 1

    (update,) = fake_slack.calls("chat.update")
    assert (update.body["channel"], update.body["ts"]) == (CHANNEL, message["ts"])
    current = {**payload(ACCOUNT, 0), "incident_id": incident_id, "event": "reminder", "mentions": ["U0DANA", "here"]}
    assert update.body["blocks"][0] == build_alert("reminder", current).blocks[0]
    _, reply = fake_slack.thread(CHANNEL, message["ts"])
    assert reply["text"] == f"{REMINDER} <@U0DANA> <!here>"
    assert reply["subtype"] == "thread_broadcast"
    post = fake_slack.calls("chat.postMessage")[-1]
    assert post.body["reply_broadcast"] is True
    assert [m["ts"] for m in fake_slack.messages(CHANNEL)] == [message["ts"], reply["ts"]]  # shows in the channel
    (row,) = [r for r in rows(store) if r["event"] == "reminder"]
    assert (row["status"], row["ts"]) == ("sent", reply["ts"])
    assert reply["metadata"]["event_payload"]["key"] == row["dedupe_key"]


def test_a_resent_reminder_is_found_in_the_thread(store: Store, fake_slack: FakeSlack) -> None:
    _, message = opened_on_slack(store, fake_slack)
    sink = slack_sink(fake_slack)
    fake_slack.fail_next("chat.postMessage", drop=True, after_store=True)

    assert deliver(store, [sink], config=CONFIG, now=at(24)).failed == 1
    assert deliver(store, [sink], config=CONFIG, now=at(24.1)).sent == 1

    assert len(fake_slack.thread(CHANNEL, message["ts"])) == 2
    assert len(reminders(store)) == 1


def test_a_grouped_incidents_reminder_replies_in_the_groups_thread(store: Store, fake_slack: FakeSlack) -> None:
    sink = slack_sink(fake_slack)
    ids = open_incidents(store, [payload(ACCOUNT, n) for n in range(4)], [sink.name], mentions=["U0DANA"])
    assert deliver(store, [sink], config=CONFIG, now=T0).sent == 4
    (group,) = fake_slack.messages(CHANNEL)
    for incident_id in ids[1:]:
        store.acknowledge(incident_id, "slack:U0DANA (Dana)", now=at(1))

    assert deliver(store, [sink], config=CONFIG, now=at(24)).sent == 1

    assert fake_slack.calls("chat.update") == []
    _, reply = fake_slack.thread(CHANNEL, group["ts"])
    assert reply["text"] == f"*Campaign 0* (incident {ids[0]}): {REMINDER} <@U0DANA>"
    assert [m["ts"] for m in fake_slack.messages(CHANNEL)] == [group["ts"]]


def test_the_reminders_of_a_grouped_message_are_one_reply_in_its_thread(store: Store, fake_slack: FakeSlack) -> None:
    sink = slack_sink(fake_slack)
    ids = open_incidents(store, [payload(ACCOUNT, n) for n in range(6)], [sink.name], mentions=["U0DANA", "S0BEACON"])
    assert deliver(store, [sink], config=CONFIG, now=T0).sent == 6
    (group,) = fake_slack.messages(CHANNEL)
    store.acknowledge(ids[5], "slack:U0DANA (Dana)", now=at(1))

    assert deliver(store, [sink], config=CONFIG, now=at(24)).sent == 5
    assert deliver(store, [sink], config=CONFIG, now=at(25)).sent == 0  # nothing twice in one interval

    _, reply = fake_slack.thread(CHANNEL, group["ts"])
    (post,) = [r for r in fake_slack.calls("chat.postMessage") if r.body.get("thread_ts") == group["ts"]]
    assert reply["text"] == "Still open and not acknowledged: 5 incidents of this group, excess ~$49,990 so far <@U0DANA> <!subteam^S0BEACON>"
    assert post.body["reply_broadcast"] is True
    listed = reply["blocks"][1]["text"]["text"].splitlines()
    assert len(listed) == 5 and all(line.startswith("• Campaign ") for line in listed) and "Campaign 5" not in reply["blocks"][1]["text"]["text"]
    assert fake_slack.calls("chat.update") == []
    with store.engine.connect() as conn:
        sent = conn.execute(sa.select(outbox.c.ts, outbox.c.group_key).where(outbox.c.event == "reminder", outbox.c.status == "sent")).all()
    assert len(sent) == 5 and len(set(sent)) == 1 and sent[0].ts == reply["ts"]

    assert deliver(store, [sink], config=CONFIG, now=at(48)).sent == 5  # the next interval: again one reply
    assert len(fake_slack.thread(CHANNEL, group["ts"])) == 3


def test_a_lost_answer_to_a_grouped_reminder_makes_no_second_reply(store: Store, fake_slack: FakeSlack) -> None:
    sink = slack_sink(fake_slack)
    open_incidents(store, [payload(ACCOUNT, n) for n in range(4)], [sink.name])
    deliver(store, [sink], config=CONFIG, now=T0)
    (group,) = fake_slack.messages(CHANNEL)
    fake_slack.fail_next("chat.postMessage", drop=True, after_store=True)

    assert deliver(store, [sink], config=CONFIG, now=at(24)).failed == 4
    assert deliver(store, [sink], config=CONFIG, now=at(24.1)).sent == 4

    assert len(fake_slack.thread(CHANNEL, group["ts"])) == 2


# ----------------------------------------------------------------------------------------------
# other sinks


def test_console_and_jsonl_render_a_reminder(store: Store, tmp_path: Path) -> None:
    stream = io.StringIO()
    console, jsonl = ConsoleSink(CONFIG, stream), JsonlSink(tmp_path / "alerts.jsonl")
    (incident_id,) = open_incidents(store, [payload(ACCOUNT, 0)], [console.name, jsonl.name])
    deliver(store, [console, jsonl], config=CONFIG, now=T0)
    stream.truncate(0)
    stream.seek(0)

    assert deliver(store, [console, jsonl], config=CONFIG, now=at(24)).sent == 2

    assert stream.getvalue().strip().splitlines() == [
        f"[REMINDER] Still open and not acknowledged: Cost per lead 4.0× baseline — Account {ACCOUNT} / Campaign 0",
        "  Excess cost  ~$10,000 so far, since Fri 2026-07-10",
        "  Managed by   beacon",
        "  Next step    Review the changes with beacon; roll back or pause if it continues.",
        f"  Rule         cpl-spike-1d · cost_per_lead · critical · incident {incident_id}",
    ]
    records = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["event"], r["incident_id"]) for r in records] == [("opened", incident_id), ("reminder", incident_id)]


def test_a_webhook_gets_a_grouped_message_and_a_short_reminder(store: Store, webhook: Webhook) -> None:
    sink = SlackWebhookSink(SlackWebhookSinkConfig(type="slack_webhook", url=webhook.url, label="alerts"))
    open_incidents(store, [payload(ACCOUNT, n) for n in range(4)], [sink.name], mentions=["U0DANA"])

    assert deliver(store, [sink], config=CONFIG, now=T0).sent == 4
    assert deliver(store, [sink], config=CONFIG, now=at(24)).sent == 4

    group, reminded = webhook.bodies  # the group's four reminders: one message
    assert group["blocks"][0]["text"]["text"] == f"4 cost-per-lead incidents — Account {ACCOUNT}"
    assert reminded["text"] == "Still open and not acknowledged: 4 incidents of this group, excess ~$39,994 so far <@U0DANA>"


def test_a_webhook_gets_a_short_reminder_for_an_incident_alone(store: Store, webhook: Webhook) -> None:
    sink = SlackWebhookSink(SlackWebhookSinkConfig(type="slack_webhook", url=webhook.url, label="alerts"))
    open_incidents(store, [payload(ACCOUNT, 0)], [sink.name], mentions=["U0DANA"])

    assert deliver(store, [sink], config=CONFIG, now=T0).sent == 1
    assert deliver(store, [sink], config=CONFIG, now=at(24)).sent == 1

    _, reminded = webhook.bodies
    assert reminded["text"] == (
        f"Still open and not acknowledged: Cost per lead 4.0× baseline — Account {ACCOUNT} / Campaign 0, excess ~$10,000 so far <@U0DANA>"
    )
