"""The Acknowledge and Snooze buttons: in the messages only when the Slack app is configured, and
answered by the bolt app with real, signed interaction requests built from the messages the local
fake Slack holds; the app's HTTP mode through its real WSGI server."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from pydantic import SecretStr
from slack_bolt import App, BoltRequest
from slack_sdk.signature import SignatureVerifier

from anomaly.alerts import deliver
from anomaly.alerts.slack import SlackSink
from anomaly.alerts.slack_app import SlackAppError, SlackAppRunner, build_app, with_status
from anomaly.alerts.slack_message import (
    ACKNOWLEDGED_BLOCK,
    ACTIONS_BLOCK,
    SNOOZED_BLOCK,
    SlackMessage,
    build_alert,
    build_group,
)
from anomaly.config import Config, SlackAppConfig, SlackSinkConfig, load_config
from anomaly.store import IncidentWrite, Store
from tests.helpers import PROJECT
from tests.slack_fake import TEAM_ID, FakeSlack, fake_slack, sleeps  # noqa: F401 - the fixtures
from tests.test_slack_message import _made, assert_within_limits
from tests.test_store import incident

pytestmark = pytest.mark.usefixtures("sleeps")

CHANNEL = "C0ALERTS"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
AT = dt.datetime(2026, 7, 10, 9, 30)
DANA = {"id": "U0DANA1", "username": "dana", "name": "dana", "team_id": TEAM_ID}
LEE = {"id": "U0LEE22", "username": "lee", "name": "lee", "team_id": TEAM_ID}


def configured(fake: FakeSlack | None = None, **app) -> Config:
    """The embedded config with a Slack sink on the fake and ``alerts.slack_app`` set."""
    config, _ = load_config(PROJECT / "config.yaml")
    base_url = fake.base_url if fake is not None else None
    settings = SlackAppConfig(bot_token=fake.token if fake else "xoxb-x", signing_secret=SECRET, base_url=base_url, **app)
    sinks = [SlackSinkConfig(type="slack", channel=CHANNEL, token=fake.token, base_url=base_url)] if fake else []
    return config.model_copy(update={"alerts": config.alerts.model_copy(update={"slack_app": settings, "sinks": sinks})})


class Clock:
    """The listeners' clock: ``AT`` until moved."""

    def __init__(self) -> None:
        self.now = AT

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(fake_slack: FakeSlack, store: Store, clock: Clock) -> App:
    return build_app(configured(fake_slack), store, process_before_response=True, token_verification_enabled=False, now=clock)


def open_incident(store: Store, config: Config, **payload: Any) -> int:
    """Store an incident with an "opened" notification for the Slack sink and deliver it."""
    values = _made(**payload)
    values.pop("incident_id")
    row = incident(family=values["family"], account_id=values["account_id"], campaign_id=values["campaign_id"], rule=values["rule"])
    sink = SlackSink(config.alerts.sinks[0], config)
    store.save_incidents([IncidentWrite(None, row, ({"event": "opened", "key": values["onset"], "sink": sink.name, "payload": values},))])
    assert deliver(store, [sink], config=config, now=AT).sent == 1
    return max(r["id"] for r in store.load_incidents())


def click(fake: FakeSlack, message: dict, action_id: str, *, user: dict = DANA, value: str | None = None, response_url: bool = True) -> dict:
    """A block_actions payload as Slack sends it when ``user`` clicks the button ``action_id`` of ``message``."""
    block, button = next((b, e) for b in message["blocks"] if b["type"] == "actions" for e in b["elements"] if e["action_id"] == action_id)
    shown = {key: message[key] for key in ("type", "user", "bot_id", "text", "blocks", "ts") if key in message}
    body = {
        "type": "block_actions",
        "user": user,
        "api_app_id": "A0ALERTAPP",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": CHANNEL, "is_ephemeral": False},
        "trigger_id": "1337.42.abcdef",
        "team": {"id": TEAM_ID, "domain": "fake-workspace"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": CHANNEL, "name": "media-alerts"},
        "message": shown,
        "state": {"values": {}},
        "actions": [{**button, "value": button["value"] if value is None else value, "block_id": block["block_id"], "action_ts": f"{time.time():.6f}"}],
    }
    if response_url:
        body["response_url"] = fake.response_url()
    return body


def signed(body: dict, *, secret: str = SECRET, timestamp: int | None = None) -> tuple[str, dict[str, str]]:
    """The form-encoded request body and the headers Slack signs it with."""
    raw = "payload=" + quote(json.dumps(body))
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=raw)
    headers = {"content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": stamp, "x-slack-signature": signature}
    return raw, headers


def dispatch(app: App, body: dict, **signing) -> int:
    raw, headers = signed(body, **signing)
    return app.dispatch(BoltRequest(body=raw, headers=headers)).status


def main_message(fake: FakeSlack) -> dict:
    (message,) = fake.messages(CHANNEL)
    return message


def replies(fake: FakeSlack, message: dict) -> list[str]:
    return [m["text"] for m in fake.thread(CHANNEL, message["ts"])[1:]]


def ephemeral(fake: FakeSlack) -> list[str]:
    return [r.body["text"] for r in fake.calls("response_url")] + [r.body["text"] for r in fake.calls("chat.postEphemeral")]


def _blocks(message: dict | SlackMessage) -> list[dict]:
    return message.blocks if isinstance(message, SlackMessage) else message["blocks"]


def block(message: dict | SlackMessage, block_id: str) -> dict | None:
    return next((b for b in _blocks(message) if b.get("block_id") == block_id), None)


def action_ids(message: dict | SlackMessage) -> list[str]:
    return [e["action_id"] for b in _blocks(message) if b["type"] == "actions" for e in b["elements"]]


# ---------------------------------------------------------------------------------------------
# Buttons in the messages


def test_buttons_only_when_the_slack_app_is_configured():
    without, _ = load_config(PROJECT / "config.yaml")

    plain = build_alert("opened", _made())
    unconfigured = build_alert("opened", _made(), without)
    interactive = build_alert("opened", _made(), configured())

    assert "actions" not in json.dumps(plain.blocks) and "actions" not in json.dumps(unconfigured.blocks)
    assert [b["type"] for b in interactive.blocks] == ["header", "section", "section", "section", "actions", "context"]
    buttons = interactive.blocks[4]["elements"]
    assert [(b["text"]["text"], b["action_id"], b["value"], b.get("style")) for b in buttons] == [
        ("Acknowledge", "incident_ack", "7", "primary"),
        ("Snooze 24h", "incident_snooze_24h", "7", None),
        ("Snooze 7d", "incident_snooze_7d", "7", None),
    ]
    assert interactive.blocks[:4] + interactive.blocks[5:] == unconfigured.blocks
    assert_within_limits(interactive)


@pytest.mark.parametrize(
    "resolved",
    [pytest.param({"event": "resolved"}, id="resolved-event"), pytest.param({"status": "resolved"}, id="resolved-status")],
)
def test_a_resolved_alert_has_no_buttons(resolved):
    payload = _made(resolved_on="2026-07-12", **{k: v for k, v in resolved.items() if k == "status"})

    message = build_alert(resolved.get("event", "updated"), payload, configured())

    assert [b["type"] for b in message.blocks] == ["header", "section", "section", "section", "context"]


@pytest.mark.parametrize(
    ("who", "shown"),
    [
        pytest.param("slack:U0DANA1 (dana)", "<@U0DANA1>", id="slack-user"),
        pytest.param("slack:W0ENTERPRISE (<!channel>)", "<@W0ENTERPRISE>", id="enterprise-user-name-dropped"),
        pytest.param("ops@<!here>.example", "ops@&lt;!here&gt;.example", id="other-escaped"),
        pytest.param("slack:<!channel>", "slack:&lt;!channel&gt;", id="not-a-user-id"),
    ],
)
def test_an_acknowledged_alert_says_who_and_when_instead_of_the_button(who, shown):
    payload = _made(acknowledged_by=who, acknowledged_at="2026-07-10T09:30:00")

    message = build_alert("updated", payload, configured())

    assert block(message, ACKNOWLEDGED_BLOCK)["elements"][0]["text"] == f"Acknowledged by {shown} at 09:30 UTC"
    assert action_ids(message) == ["incident_snooze_24h", "incident_snooze_7d"]
    assert_within_limits(message)


def test_an_acknowledgement_on_a_later_day_shows_the_day():
    message = build_alert("updated", _made(acknowledged_by="slack:U0DANA1 (dana)", acknowledged_at="2026-07-11T18:05:00"), configured())

    assert block(message, ACKNOWLEDGED_BLOCK)["elements"][0]["text"] == "Acknowledged by <@U0DANA1> at 18:05 UTC on Sat Jul 11"


def test_a_grouped_message_acknowledges_and_snoozes_the_account():
    payloads = [_made(campaign_name=f"Campaign {i}", incident_id=100 + i, excess_cost=float(i)) for i in range(1, 41)]

    message = build_group(payloads, configured())
    plain = build_group(payloads)

    buttons = block(message, ACTIONS_BLOCK)["elements"]
    ids = ",".join(str(100 + i) for i in range(40, 0, -1))
    assert [(b["text"]["text"], b["action_id"], b["value"]) for b in buttons] == [
        ("Acknowledge all", "group_ack", ids),
        ("Snooze account 24h", "group_snooze_24h", ids),
        ("Snooze account 7d", "group_snooze_7d", ids),
    ]
    assert "actions" not in json.dumps(plain.blocks)
    assert_within_limits(message)
    acked = build_group([{**p, "acknowledged_by": "slack:U0LEE22 (lee)", "acknowledged_at": "2026-07-10T10:00:00"} for p in payloads], configured())
    assert block(acked, ACKNOWLEDGED_BLOCK)["elements"][0]["text"] == "Acknowledged by <@U0LEE22> at 10:00 UTC"
    assert action_ids(acked) == ["group_snooze_24h", "group_snooze_7d"]


def test_a_group_too_large_for_a_button_value_has_no_buttons():
    payloads = [_made(incident_id=1_000_000 + i) for i in range(300)]  # 300 ids of 7 digits: over 2,000 characters

    message = build_group(payloads, configured())

    assert "actions" not in json.dumps(message.blocks)
    assert_within_limits(message)


# ---------------------------------------------------------------------------------------------
# Acknowledge


def test_acknowledge_records_who_and_when_rewrites_the_message_and_replies(fake_slack, store, app):
    config = configured(fake_slack)
    incident_id = open_incident(store, config, campaign_name="<!channel> Sale & Co")
    message = main_message(fake_slack)

    assert dispatch(app, click(fake_slack, message, "incident_ack")) == 200

    row = store.load_incident(incident_id)
    assert (row["acknowledged_by"], row["acknowledged_at"]) == ("slack:U0DANA1 (dana)", AT)
    (update,) = fake_slack.calls("chat.update")
    assert (update.body["channel"], update.body["ts"]) == (CHANNEL, message["ts"])
    updated = main_message(fake_slack)
    assert block(updated, ACKNOWLEDGED_BLOCK)["elements"][0]["text"] == "Acknowledged by <@U0DANA1> at 09:30 UTC"
    assert action_ids(updated) == ["incident_snooze_24h", "incident_snooze_7d"]
    # everything else is as the sink posted it, the campaign name still escaped
    others = [b for b in updated["blocks"] if b.get("block_id") not in (ACKNOWLEDGED_BLOCK, ACTIONS_BLOCK)]
    assert others == [b for b in message["blocks"] if b.get("block_id") != ACTIONS_BLOCK]
    assert "&lt;!channel&gt; Sale &amp; Co" in json.dumps(updated["blocks"]) and "<!channel>" not in json.dumps(updated["blocks"])
    assert updated["text"] == message["text"]
    assert replies(fake_slack, message) == ["Acknowledged by <@U0DANA1>; reminders stop"]


def test_the_sinks_next_update_keeps_the_acknowledgement(fake_slack, store, app):
    config = configured(fake_slack)
    incident_id = open_incident(store, config)
    dispatch(app, click(fake_slack, main_message(fake_slack), "incident_ack"))
    later = {**_made(severity="critical", excess_cost=900.0), "incident_id": incident_id}
    sink = SlackSink(config.alerts.sinks[0], config)
    store.save_incidents([IncidentWrite(incident_id, incident(account_id="1000", campaign_id="1001"), ({"event": "updated", "key": "x", "sink": sink.name, "payload": later},))])

    assert deliver(store, [sink], config=config, now=AT).sent == 1

    updated = main_message(fake_slack)
    assert block(updated, ACKNOWLEDGED_BLOCK)["elements"][0]["text"] == "Acknowledged by <@U0DANA1> at 09:30 UTC"
    assert "incident_ack" not in action_ids(updated)


def test_a_second_acknowledgement_keeps_the_first(fake_slack, store, app, clock):
    incident_id = open_incident(store, configured(fake_slack))
    message = main_message(fake_slack)
    dispatch(app, click(fake_slack, message, "incident_ack"))
    clock.now = AT + dt.timedelta(hours=2)

    # Lee clicks the same button on a copy of the message that still shows it
    assert dispatch(app, click(fake_slack, message, "incident_ack", user=LEE)) == 200

    row = store.load_incident(incident_id)
    assert (row["acknowledged_by"], row["acknowledged_at"]) == ("slack:U0DANA1 (dana)", AT)
    assert block(main_message(fake_slack), ACKNOWLEDGED_BLOCK)["elements"][0]["text"] == "Acknowledged by <@U0DANA1> at 09:30 UTC"
    assert replies(fake_slack, message) == ["Acknowledged by <@U0DANA1>; reminders stop"]
    assert ephemeral(fake_slack) == ["Already acknowledged by <@U0DANA1> at 09:30 UTC; nothing changed"]


@pytest.mark.parametrize(
    ("value", "said"),
    [
        pytest.param("999", "No incident 999 in this service's store; nothing changed", id="unknown-id"),
        pytest.param("seven", "This button names no incident (value seven); nothing changed", id="not-a-number"),
        pytest.param("<!channel>", "This button names no incident (value &lt;!channel&gt;); nothing changed", id="escaped"),
        pytest.param("99999999999", "This button names no incident (value 99999999999); nothing changed", id="too-large"),
        pytest.param("", "This button names no incident (value ); nothing changed", id="empty"),
        pytest.param("7,8", "This button names no incident (value 7,8); nothing changed", id="a-list-on-one-incident"),
    ],
)
@pytest.mark.parametrize("action_id", ["incident_ack", "incident_snooze_24h"])
def test_a_button_that_names_no_known_incident_is_answered_privately_and_changes_nothing(fake_slack, store, app, value, said, action_id):
    incident_id = open_incident(store, configured(fake_slack))
    message = main_message(fake_slack)

    assert dispatch(app, click(fake_slack, message, action_id, value=value)) == 200

    (answer,) = fake_slack.calls("response_url")
    assert answer.body == {"text": said, "response_type": "ephemeral", "replace_original": False}
    assert store.load_incident(incident_id)["acknowledged_by"] is None
    assert store.silences() == []
    assert fake_slack.calls("chat.update") == [] and replies(fake_slack, message) == []


def test_without_a_response_url_the_answer_is_a_chat_post_ephemeral(fake_slack, store, app):
    open_incident(store, configured(fake_slack))

    dispatch(app, click(fake_slack, main_message(fake_slack), "incident_ack", value="999", response_url=False))

    (answer,) = fake_slack.calls("chat.postEphemeral")
    assert (answer.body["channel"], answer.body["user"], answer.body["text"]) == (CHANNEL, "U0DANA1", "No incident 999 in this service's store; nothing changed")


# ---------------------------------------------------------------------------------------------
# Snooze


@pytest.mark.parametrize(
    ("action_id", "span", "said", "reason"),
    [
        pytest.param("incident_snooze_24h", dt.timedelta(hours=24), "24 h", "snoozed from Slack for 24h", id="24h"),
        pytest.param("incident_snooze_7d", dt.timedelta(days=7), "7 days", "snoozed from Slack for 7d", id="7d"),
    ],
)
def test_snooze_creates_a_silence_that_holds_back_the_next_notification(fake_slack, store, app, action_id, span, said, reason):
    config = configured(fake_slack)
    incident_id = open_incident(store, config)
    message = main_message(fake_slack)

    assert dispatch(app, click(fake_slack, message, action_id)) == 200

    (silence,) = store.silences()
    assert (silence.account, silence.campaign, silence.rule, silence.party) == ("1000", "1001", "cpl-spike-1d", None)
    assert (silence.until, silence.created_at, silence.reason, silence.created_by) == (AT + span, AT, reason, "slack:U0DANA1 (dana)")
    until = "09:30 UTC on Sat Jul 11" if span.days == 1 else "09:30 UTC on Fri Jul 17"
    assert replies(fake_slack, message) == [f"Snoozed for {said} by <@U0DANA1> (silence {silence.id}, until {until}); detection goes on"]
    updated = main_message(fake_slack)
    assert block(updated, SNOOZED_BLOCK)["elements"][0]["text"] == f"Snoozed for {said} by <@U0DANA1> until {until} (silence {silence.id})"
    assert action_ids(updated) == action_ids(message)  # the incident is not acknowledged
    assert store.load_incident(incident_id)["acknowledged_by"] is None

    sink = SlackSink(config.alerts.sinks[0], config)
    later = {**_made(severity="critical"), "incident_id": incident_id}
    store.save_incidents([IncidentWrite(incident_id, incident(account_id="1000", campaign_id="1001"), ({"event": "updated", "key": "x", "sink": sink.name, "payload": later},))])
    report = deliver(store, [sink], config=config, now=AT + span - dt.timedelta(minutes=1))
    assert (report.sent, report.silenced) == (0, 1)
    assert len(fake_slack.calls("chat.update")) == 1  # the app's, not the sink's


def test_snoozing_an_account_total_names_no_campaign(fake_slack, store, app):
    open_incident(store, configured(fake_slack), campaign_id="", campaign_name="")

    dispatch(app, click(fake_slack, main_message(fake_slack), "incident_snooze_24h"))

    (silence,) = store.silences()
    assert (silence.account, silence.campaign, silence.rule) == ("1000", None, "cpl-spike-1d")


# ---------------------------------------------------------------------------------------------
# Grouped messages


def _group(fake: FakeSlack, store: Store, config: Config, count: int = 3) -> tuple[list[int], dict]:
    """``count`` incidents on one account and their grouped message, posted to the fake."""
    writes = [
        IncidentWrite(None, incident(account_id="1000", campaign_id=f"10{i:02d}", rule="cpl-spike-1d"), ())
        for i in range(count)
    ]
    store.save_incidents(writes)
    ids = [row["id"] for row in store.load_incidents()]
    message = build_group([_made(campaign_id=f"10{i:02d}", incident_id=incident_id) for i, incident_id in enumerate(ids)], config)
    sink = SlackSink(config.alerts.sinks[0], config)
    sink.client.chat_postMessage(channel=CHANNEL, **message.as_kwargs())
    return ids, main_message(fake)


def test_acknowledge_all_acknowledges_every_incident_of_the_group(fake_slack, store, app):
    config = configured(fake_slack)
    ids, message = _group(fake_slack, store, config)
    store.acknowledge(ids[0], "slack:U0LEE22 (lee)", now=AT - dt.timedelta(hours=1))

    assert dispatch(app, click(fake_slack, message, "group_ack")) == 200

    rows = [store.load_incident(i) for i in ids]
    assert [(r["acknowledged_by"], r["acknowledged_at"]) for r in rows] == [
        ("slack:U0LEE22 (lee)", AT - dt.timedelta(hours=1)),
        ("slack:U0DANA1 (dana)", AT),
        ("slack:U0DANA1 (dana)", AT),
    ]
    assert replies(fake_slack, message) == ["Acknowledged by <@U0DANA1> for 2 incidents; reminders stop"]
    updated = main_message(fake_slack)
    assert block(updated, ACKNOWLEDGED_BLOCK)["elements"][0]["text"] == "Acknowledged by <@U0LEE22> at 08:30 UTC"
    assert action_ids(updated) == ["group_snooze_24h", "group_snooze_7d"]


def test_a_group_naming_an_unknown_incident_changes_nothing(fake_slack, store, app):
    ids, message = _group(fake_slack, store, configured(fake_slack))

    dispatch(app, click(fake_slack, message, "group_ack", value=f"{ids[0]},999"))

    assert ephemeral(fake_slack) == ["No incident 999 in this service's store; nothing changed"]
    assert all(store.load_incident(i)["acknowledged_by"] is None for i in ids)


def test_snooze_account_creates_one_silence_on_the_account(fake_slack, store, app):
    _, message = _group(fake_slack, store, configured(fake_slack))

    dispatch(app, click(fake_slack, message, "group_snooze_7d"))

    (silence,) = store.silences()
    assert (silence.account, silence.campaign, silence.rule, silence.until) == ("1000", None, None, AT + dt.timedelta(days=7))
    assert replies(fake_slack, message) == [
        f"Snoozed the account for 7 days by <@U0DANA1> (silence {silence.id}, until 09:30 UTC on Fri Jul 17); detection goes on"
    ]


# ---------------------------------------------------------------------------------------------
# Request checks and errors


def test_a_bad_signature_is_refused_and_changes_nothing(fake_slack, store, app):
    incident_id = open_incident(store, configured(fake_slack))

    status = dispatch(app, click(fake_slack, main_message(fake_slack), "incident_ack"), secret="not-the-signing-secret")

    assert status == 401
    assert store.load_incident(incident_id)["acknowledged_by"] is None
    assert fake_slack.calls("chat.update") == [] and fake_slack.calls("response_url") == []


def test_a_stale_timestamp_is_refused(fake_slack, store, app):
    incident_id = open_incident(store, configured(fake_slack))

    status = dispatch(app, click(fake_slack, main_message(fake_slack), "incident_snooze_24h"), timestamp=int(time.time()) - 600)

    assert status == 401
    assert store.silences() == [] and store.load_incident(incident_id)["acknowledged_by"] is None


def test_a_failing_slack_call_is_logged_without_tokens(fake_slack, store, app, caplog):
    incident_id = open_incident(store, configured(fake_slack))
    fake_slack.fail_next("chat.update", ok_false="cant_update_message")

    with caplog.at_level(logging.ERROR, logger="anomaly.alerts.slack_app"):
        status = dispatch(app, click(fake_slack, main_message(fake_slack), "incident_ack"))

    assert status == 500  # after the ack: Slack shows nothing to the user
    assert store.load_incident(incident_id)["acknowledged_by"] == "slack:U0DANA1 (dana)"
    (record,) = [r for r in caplog.records if r.name == "anomaly.alerts.slack_app"]
    assert record.getMessage() == f"Slack action incident_ack on incident(s) {incident_id} by U0DANA1 failed: SlackApiError: cant_update_message"
    logged = caplog.text
    assert fake_slack.token not in logged and SECRET not in logged and "legacy-verification-token" not in logged


def test_with_status_replaces_its_own_line_and_keeps_the_rest():
    blocks = build_alert("opened", _made(), configured()).blocks

    once = with_status(blocks, SNOOZED_BLOCK, "Snoozed for 24 h")
    twice = with_status(once, SNOOZED_BLOCK, "Snoozed for 7 days")

    assert [b.get("block_id") for b in twice if b["type"] == "context"] == [SNOOZED_BLOCK, None]
    assert block({"blocks": twice}, SNOOZED_BLOCK)["elements"][0]["text"] == "Snoozed for 7 days"
    assert [b for b in twice if b.get("block_id") != SNOOZED_BLOCK] == blocks


# ---------------------------------------------------------------------------------------------
# Inside anomaly serve: the HTTP endpoint


def _post(url: str, raw: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=raw.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_http_endpoint_answers_signed_requests_at_its_path_only(fake_slack, store, caplog):
    config = configured(fake_slack, host="127.0.0.1", port=0)
    incident_id = open_incident(store, config)
    body = click(fake_slack, main_message(fake_slack), "incident_ack")
    runner = SlackAppRunner(config, store=store, now=lambda: AT)  # the bot token checked against the fake's auth.test

    with caplog.at_level(logging.INFO, logger="anomaly.alerts.slack_app"):
        runner.start()
    try:
        host, port = runner.address
        url = f"http://{host}:{port}/slack/events"
        raw, headers = signed(body)
        unsigned = {"content-type": headers["content-type"]}
        statuses = [_post(url, raw, unsigned), _post(f"http://{host}:{port}/other", raw, headers), _post(url, raw, headers)]
    finally:
        runner.stop()  # waits for the click being handled

    assert statuses == [401, 404, 200]
    assert f"Slack app: buttons answered over HTTP at http://127.0.0.1:{port}/slack/events" in caplog.text
    assert [r.method for r in fake_slack.requests if r.method == "auth.test"] == ["auth.test"]
    assert store.load_incident(incident_id)["acknowledged_by"] == "slack:U0DANA1 (dana)"
    assert replies(fake_slack, main_message(fake_slack)) == ["Acknowledged by <@U0DANA1>; reminders stop"]


def test_a_bot_token_slack_refuses_stops_the_app_from_starting(fake_slack, store):
    config = configured(fake_slack, host="127.0.0.1", port=0)
    wrong = config.alerts.slack_app.model_copy(update={"bot_token": SecretStr("xoxb-revoked-1234")})
    config = config.model_copy(update={"alerts": config.alerts.model_copy(update={"slack_app": wrong})})
    runner = SlackAppRunner(config, store=store)

    with pytest.raises(SlackAppError) as raised:
        runner.start()
    runner.stop()

    assert "auth.test" in str(raised.value) and "SLACK_BOT_TOKEN" in str(raised.value)
    assert "xoxb-revoked-1234" not in str(raised.value)
    assert runner.address is None


def test_anomaly_serve_runs_the_slack_app_with_the_scheduler_and_stops_it(fake_slack, tmp_path, capsys):
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    from anomaly.service import Service
    from tests.test_service import project

    path = project(tmp_path)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["alerts"]["slack_app"] = {"bot_token": fake_slack.token, "signing_secret": SECRET, "host": "127.0.0.1", "port": 0, "base_url": fake_slack.base_url}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    hourly = IntervalTrigger(hours=1)
    service = Service(path, scheduler=BackgroundScheduler(), triggers={"pull:sample": hourly, "deliver": hourly, "heartbeat": hourly})

    service.acquire_lock()
    try:
        service.run()
        host, port = service.slack_app.address
        action = {"type": "button", "action_id": "incident_ack", "block_id": ACTIONS_BLOCK, "value": "999", "action_ts": "1.2"}
        raw, headers = signed({"type": "block_actions", "user": DANA, "channel": {"id": CHANNEL}, "actions": [action], "response_url": fake_slack.response_url()})
        statuses = [_post(f"http://{host}:{port}/slack/events", raw, headers), _post(f"http://{host}:{port}/slack/events", raw, {})]
    finally:
        service.stop()

    assert statuses == [200, 401]
    assert f"  Slack app: buttons answered over HTTP at http://127.0.0.1:{port}/slack/events" in capsys.readouterr().err.splitlines()
    assert service.slack_app.address is None
    assert ephemeral(fake_slack) == ["No incident 999 in this service's store; nothing changed"]  # answered before the stop
    with pytest.raises(OSError):
        _post(f"http://{host}:{port}/slack/events", raw, headers)


def test_socket_mode_with_an_app_token_slack_refuses_does_not_start(fake_slack, tmp_path):
    config = configured(fake_slack, app_token="xapp-1-refused-9876")
    runner = SlackAppRunner(config, store=Store(f"sqlite:///{tmp_path / 'unused.db'}"))  # no click reaches it

    with pytest.raises(SlackAppError) as raised:
        runner.start()
    runner.stop()

    assert runner.mode == "socket"
    assert str(raised.value) == (
        "Slack app: Socket Mode could not connect (SlackApiError: invalid_auth); "
        "set SLACK_APP_TOKEN (alerts.slack_app.app_token) to an app-level token (xapp-…) with connections:write"
    )
    (opened,) = fake_slack.calls("apps.connections.open")
    assert opened.headers["authorization"] == "Bearer xapp-1-refused-9876"


# ---------------------------------------------------------------------------------------------
# Acknowledge and reminders, end to end


@pytest.mark.parametrize("clicked", [True, False], ids=["acknowledged-no-reminder", "unacknowledged-reminded"])
def test_the_acknowledge_button_stops_the_reminders(fake_slack, store, app, clicked):
    config = configured(fake_slack)
    values = _made()
    values.pop("incident_id")
    row = incident(family=values["family"], account_id=values["account_id"], campaign_id=values["campaign_id"], rule=values["rule"], details={"payload": values})
    sink = SlackSink(config.alerts.sinks[0], config)
    store.save_incidents([IncidentWrite(None, row, ({"event": "opened", "key": values["onset"], "sink": sink.name, "payload": values},))])
    assert deliver(store, [sink], config=config, now=AT).sent == 1
    message = main_message(fake_slack)
    if clicked:
        assert dispatch(app, click(fake_slack, message, "incident_ack")) == 200

    report = deliver(store, [sink], config=config, now=AT + dt.timedelta(hours=config.alerts.repeat_every_hours, minutes=1))

    reminders = [text for text in replies(fake_slack, message) if text.startswith("Still open and not acknowledged")]
    assert (report.sent, len(reminders)) == ((0, 0) if clicked else (1, 1))


def test_socket_mode_without_slack_at_start_starts_and_keeps_trying(fake_slack, tmp_path, caplog):
    config = configured(fake_slack, app_token=fake_slack.token)
    fake_slack.fail_next("apps.connections.open", drop=True, times=2)  # the SDK tries a dropped connection twice
    runner = SlackAppRunner(config, store=Store(f"sqlite:///{tmp_path / 'unused.db'}"), token_verification_enabled=False, reconnect_seconds=0)

    with caplog.at_level(logging.INFO, logger="anomaly.alerts.slack_app"):
        runner.start()  # no error: the scheduler may start
        runner._reconnecting.join(timeout=30)
        runner.stop()

    assert len(fake_slack.calls("apps.connections.open")) >= 3  # two dropped, then one answered (the SDK may try its WebSocket again)
    said = [r.getMessage() for r in caplog.records if r.name == "anomaly.alerts.slack_app"]
    assert any(m.startswith("Slack app: Socket Mode could not reach Slack (") and m.endswith("trying every 0 s") for m in said)
    assert "Slack app: connected in Socket Mode" in said
    assert fake_slack.token not in caplog.text
