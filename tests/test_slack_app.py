"""The Acknowledge and Snooze buttons in the messages, only when the Slack app is configured."""

from __future__ import annotations

import json

import pytest

from anomaly.alerts.slack_message import ACKNOWLEDGED_BLOCK, ACTIONS_BLOCK, SlackMessage, build_alert, build_group
from anomaly.config import Config, SlackAppConfig, load_config
from tests.helpers import PROJECT
from tests.test_slack_message import _made, assert_within_limits


def configured(**app) -> Config:
    """The embedded config with ``alerts.slack_app`` set."""
    config, _ = load_config(PROJECT / "config.yaml")
    settings = SlackAppConfig(bot_token="xoxb-x", signing_secret="s3cret", **app)
    return config.model_copy(update={"alerts": config.alerts.model_copy(update={"slack_app": settings})})


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
