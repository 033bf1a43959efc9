"""Grouping: many incidents opened on one account in one cycle go out as one message, on Slack (the
local fake Web API), the console and JSON lines; later notifications of a grouped incident reply in
the grouped message's thread; a lost answer never makes a second grouped message."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from anomaly.alerts import deliver
from anomaly.alerts.sinks import ConsoleSink, JsonlSink
from anomaly.alerts.slack import SlackSink
from anomaly.config import Config, SlackSinkConfig
from anomaly.store import IncidentWrite, Silence, Store, outbox
from tests.slack_fake import FakeSlack, fake_slack, sleeps  # noqa: F401 - the fixtures
from tests.test_slack_message import _made
from tests.test_store import incident

pytestmark = pytest.mark.usefixtures("sleeps")  # no test waits on a retry

CHANNEL = "C0ALERTS"
NOW = dt.datetime(2026, 7, 13, 9, 0)
CONFIG = Config.model_validate({})  # group_min_incidents 4, repeat_every_hours 24


def slack_sink(fake: FakeSlack) -> SlackSink:
    return SlackSink(SlackSinkConfig(type="slack", channel=CHANNEL, token=fake.token, base_url=fake.base_url, timeout_seconds=5))


def payload(account: str, n: int, **overrides) -> dict:
    """An incident's payload on campaign ``n`` of ``account``, with an excess that sorts it ``n``-th."""
    values = {
        "account_id": account,
        "account_name": f"Account {account}",
        "campaign_id": f"{account}{n:03d}",
        "campaign_name": f"Campaign {n}",
        "excess_cost": 10_000.0 - n,
        "incident_id": None,
        **overrides,
    }
    made = _made(**values)
    del made["event"], made["incident_id"]
    return made


def open_incidents(store: Store, payloads: list[dict], sinks: list[str], *, mentions: list[str] | None = None) -> list[int]:
    """One cycle that opens an incident per payload and enqueues its "opened" notification on each
    sink (in one transaction, as a cycle does); returns the incident ids."""
    writes = []
    for p in payloads:
        values = incident(account_id=p["account_id"], campaign_id=p["campaign_id"], details={"payload": p})
        note_payload = {**p, "event": "opened", **({"mentions": mentions} if mentions else {})}
        notes = tuple({"event": "opened", "key": p["detected_on"], "sink": sink, "payload": note_payload} for sink in sinks)
        writes.append(IncidentWrite(None, values, notes))
    store.save_incidents(writes)
    by_campaign = {(row["account_id"], row["campaign_id"]): row["id"] for row in store.load_incidents()}
    return [by_campaign[(p["account_id"], p["campaign_id"])] for p in payloads]


def follow_up(store: Store, incident_id: int, event: str, p: dict, sinks: list[str]) -> None:
    """A later cycle's notification (updated or resolved) of one incident."""
    status = "resolved" if event == "resolved" else "open"
    later = {**p, "severity": "critical", "excess_cost": p["excess_cost"] + 500, "status": status, "resolved_on": "2026-07-12" if status == "resolved" else None}
    values = incident(account_id=p["account_id"], campaign_id=p["campaign_id"], status=status, details={"payload": later})
    notes = tuple({"event": event, "key": "later", "sink": sink, "payload": {**later, "event": event}} for sink in sinks)
    store.save_incidents([IncidentWrite(incident_id, values, notes)])


def rows(store: Store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(outbox).order_by(outbox.c.id))]


# ----------------------------------------------------------------------------------------------
# Slack


@pytest.mark.parametrize(("count", "more"), [pytest.param(20, None, id="20-listed"), pytest.param(25, "… and 5 more", id="25-cut")])
def test_many_incidents_of_one_account_in_one_cycle_make_one_grouped_message(store: Store, fake_slack: FakeSlack, count: int, more: str | None) -> None:
    sink = slack_sink(fake_slack)
    payloads = [payload("4821937710", n) for n in range(count)]
    payloads[3]["campaign_name"] = "<!channel> Sale"
    open_incidents(store, payloads, [sink.name])

    report = deliver(store, [sink], config=CONFIG, now=NOW)

    assert (report.sent, report.failed, report.pending) == (count, 0, 0)
    (message,) = fake_slack.messages(CHANNEL)
    header, lines, total, context = message["blocks"]
    assert header["text"]["text"] == f"{count} cost-per-lead incidents — Account 4821937710"
    listed = lines["text"]["text"].splitlines()
    assert len(listed) == min(count, 20) + (1 if more else 0)
    assert listed[0] == "• Campaign 0: cost per lead 4.0× baseline, excess ~$10,000 (critical)"
    assert listed[3].startswith("• &lt;!channel&gt; Sale: ")
    assert (listed[-1] == more) if more else all(line.startswith("• ") for line in listed)
    assert total["text"]["text"].startswith(f"*Total excess:* ~$") and f"across {count} incidents" in total["text"]["text"]
    (post,) = fake_slack.calls("chat.postMessage")
    assert b"<!channel>" not in post.raw
    assert fake_slack.calls("files.getUploadURLExternal") == []  # no chart for a group

    sent = rows(store)
    key = f"group:{sent[0]['dedupe_key']}"
    assert message["metadata"]["event_payload"]["key"] == key
    assert {(r["status"], r["channel"], r["ts"], r["group_key"]) for r in sent} == {("sent", CHANNEL, message["ts"], key)}
    assert len(sent) == count


def test_fewer_incidents_than_the_threshold_go_out_one_by_one(store: Store, fake_slack: FakeSlack) -> None:
    sink = slack_sink(fake_slack)
    open_incidents(store, [payload("4821937710", n) for n in range(3)], [sink.name])

    assert deliver(store, [sink], config=CONFIG, now=NOW).sent == 3

    headers = [m["blocks"][0]["text"]["text"] for m in fake_slack.messages(CHANNEL)]
    assert headers == [f"Critical: Cost per lead 4.0× baseline — Account 4821937710 / Campaign {n}" for n in range(3)]
    assert [r["group_key"] for r in rows(store)] == [None, None, None]


def test_each_account_is_grouped_on_its_own(store: Store, fake_slack: FakeSlack) -> None:
    sink = slack_sink(fake_slack)
    payloads = [payload("4821937710", n) for n in range(5)] + [payload("3307714460", n) for n in range(4)] + [payload("5530019921", 0)]
    open_incidents(store, payloads, [sink.name])

    assert deliver(store, [sink], config=CONFIG, now=NOW).sent == 10

    headers = [m["blocks"][0]["text"]["text"] for m in fake_slack.messages(CHANNEL)]
    assert headers == [
        "5 cost-per-lead incidents — Account 4821937710",
        "4 cost-per-lead incidents — Account 3307714460",
        "Critical: Cost per lead 4.0× baseline — Account 5530019921 / Campaign 0",
    ]
    assert len({r["group_key"] for r in rows(store)}) == 3  # two groups and None


def test_incidents_of_different_cycles_are_not_grouped(store: Store, fake_slack: FakeSlack) -> None:
    sink = slack_sink(fake_slack)
    open_incidents(store, [payload("4821937710", n) for n in range(2)], [sink.name])
    open_incidents(store, [payload("4821937710", n) for n in range(2, 5)], [sink.name])

    assert deliver(store, [sink], config=CONFIG, now=NOW).sent == 5
    assert len(fake_slack.messages(CHANNEL)) == 5


def test_without_config_nothing_is_grouped(store: Store, fake_slack: FakeSlack) -> None:
    sink = slack_sink(fake_slack)
    open_incidents(store, [payload("4821937710", n) for n in range(5)], [sink.name])

    assert deliver(store, [sink], now=NOW).sent == 5
    assert len(fake_slack.messages(CHANNEL)) == 5


def test_silences_apply_before_grouping(store: Store, fake_slack: FakeSlack) -> None:
    sink = slack_sink(fake_slack)
    payloads = [payload("4821937710", n) for n in range(4)]
    store.add_silence(Silence(NOW + dt.timedelta(days=1), campaign=payloads[0]["campaign_id"]), now=NOW)
    open_incidents(store, payloads, [sink.name])

    report = deliver(store, [sink], config=CONFIG, now=NOW)

    assert (report.sent, report.silenced) == (3, 1)
    assert len(fake_slack.messages(CHANNEL)) == 3  # three left: below the threshold


@pytest.mark.parametrize("event", ["updated", "resolved"])
def test_a_later_notification_of_a_grouped_incident_replies_in_the_groups_thread(store: Store, fake_slack: FakeSlack, event: str) -> None:
    sink = slack_sink(fake_slack)
    payloads = [payload("4821937710", n) for n in range(6)]
    payloads[2]["campaign_name"] = "<!channel> Sale"
    ids = open_incidents(store, payloads, [sink.name])
    deliver(store, [sink], config=CONFIG, now=NOW)
    (group,) = fake_slack.messages(CHANNEL)

    follow_up(store, ids[2], event, payloads[2], [sink.name])
    assert deliver(store, [sink], config=CONFIG, now=NOW + dt.timedelta(hours=1)).sent == 1

    assert fake_slack.calls("chat.update") == []
    (still,) = fake_slack.messages(CHANNEL)
    assert still["blocks"] == group["blocks"]
    parent, reply = fake_slack.thread(CHANNEL, group["ts"])
    expected = "Now critical: cost per lead 4.0× baseline, excess ~$10,498 so far" if event == "updated" else "Resolved on Sun Jul 12: excess ~$10,498 in all"
    assert reply["text"].startswith(f"*&lt;!channel&gt; Sale* (incident {ids[2]}): {expected}")
    assert b"<!channel>" not in fake_slack.calls("chat.postMessage")[-1].raw
    later = rows(store)[-1]
    assert (later["event"], later["status"], later["ts"], later["group_key"]) == (event, "sent", reply["ts"], None)
    assert reply["metadata"]["event_payload"]["key"] == later["dedupe_key"]


def test_a_resent_reply_in_a_groups_thread_is_found(store: Store, fake_slack: FakeSlack) -> None:
    sink = slack_sink(fake_slack)
    payloads = [payload("4821937710", n) for n in range(4)]
    ids = open_incidents(store, payloads, [sink.name])
    deliver(store, [sink], config=CONFIG, now=NOW)
    follow_up(store, ids[0], "updated", payloads[0], [sink.name])

    fake_slack.fail_next("chat.postMessage", drop=True, after_store=True)
    assert deliver(store, [sink], config=CONFIG, now=NOW).failed == 1
    assert deliver(store, [sink], config=CONFIG, now=NOW).sent == 1

    (group,) = fake_slack.messages(CHANNEL)
    assert len(fake_slack.thread(CHANNEL, group["ts"])) == 2  # the group and one reply


def test_a_lost_answer_after_slack_stored_the_group_makes_no_second_message(store: Store, fake_slack: FakeSlack) -> None:
    sink = slack_sink(fake_slack)
    ids = open_incidents(store, [payload("4821937710", n) for n in range(5)], [sink.name])
    follow_up(store, ids[1], "updated", payload("4821937710", 1), [sink.name])  # waits for the group

    fake_slack.fail_next("chat.postMessage", drop=True, after_store=True)
    report = deliver(store, [sink], config=CONFIG, now=NOW)
    assert (report.sent, report.failed, report.pending) == (0, 5, 6)
    assert [(r["status"], r["attempts"]) for r in rows(store)] == [("pending", 1)] * 5 + [("pending", 0)]

    report = deliver(store, [sink], config=CONFIG, now=NOW)
    assert (report.sent, report.failed, report.pending) == (6, 0, 0)
    (group,) = fake_slack.messages(CHANNEL)
    assert len(fake_slack.calls("chat.postMessage")) == 2  # the group once, then the reply
    assert {r["ts"] for r in rows(store)[:5]} == {group["ts"]}


def test_a_cycle_cut_by_the_delivery_limit_still_goes_out_as_one_whole_group(store: Store, fake_slack: FakeSlack) -> None:
    sink = slack_sink(fake_slack)
    ids = open_incidents(store, [payload("4821937710", n) for n in range(6)], [sink.name])

    fake_slack.fail_next("chat.postMessage", drop=True, after_store=True)  # Slack has it; the answer is lost
    deliver(store, [sink], config=CONFIG, now=NOW, limit=4)
    report = deliver(store, [sink], config=CONFIG, now=NOW, limit=4)

    assert (report.sent, report.pending) == (6, 0)
    (group,) = fake_slack.messages(CHANNEL)
    assert group["blocks"][0]["text"]["text"].startswith("6 cost-per-lead incidents")  # all six, none left out
    assert f"incidents {', '.join(map(str, ids))}" in json.dumps(group)
    assert {r["ts"] for r in rows(store)} == {group["ts"]}


# ----------------------------------------------------------------------------------------------
# console and JSON lines


def test_console_and_jsonl_render_a_group(store: Store, tmp_path: Path) -> None:
    stream = io.StringIO()
    console, jsonl = ConsoleSink(CONFIG, stream), JsonlSink(tmp_path / "alerts.jsonl")
    ids = open_incidents(store, [payload("4821937710", n) for n in range(4)], [console.name, jsonl.name])

    assert deliver(store, [console, jsonl], config=CONFIG, now=NOW).sent == 8

    header, *lines = stream.getvalue().strip().splitlines()
    assert header == "[CRITICAL] 4 incidents opened together — Account 4821937710 (4821937710): excess ~$39,994 in all"
    assert lines == [
        f"  • Campaign {n} (4821937710{n:03d}): cost per lead 4.0× baseline, excess ~${10_000 - n:,} (critical) · incident {ids[n]}" for n in range(4)
    ]
    (record,) = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert (record["event"], record["account_id"], record["currency"]) == ("grouped", "4821937710", "USD")
    assert [p["incident_id"] for p in record["incidents"]] == ids
