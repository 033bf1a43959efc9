"""The alert's chart: drawn from the incident's daily series, uploaded into the alert's thread, and
never in the way of the alert itself."""

from __future__ import annotations

import datetime as dt

from anomaly.alerts.chart import cost_per_lead_chart
from anomaly.alerts.sinks import Delivery
from anomaly.alerts.slack import SlackSink
from anomaly.config import SlackSinkConfig
from anomaly.store import utcnow
from tests.slack_fake import FakeSlack, fake_slack  # noqa: F401 - the fixture
from tests.test_slack_message import config, demo, handoff, project  # noqa: F401 - the fixtures

PNG = b"\x89PNG\r\n\x1a\n"


def test_the_chart_is_a_png_of_the_days_around_onset(handoff: dict) -> None:
    days = [dt.date.fromisoformat(day) for day, *_ in handoff["series"]]
    assert days[0] == dt.date(2026, 6, 19) and days[-1] == dt.date(2026, 7, 10)  # three weeks before onset to detection
    assert handoff["series"][-1][2] == 3.0 and handoff["series"][0][3] is not None  # leads, then a baseline
    assert cost_per_lead_chart(handoff, "Beacon Reach").startswith(PNG)
    assert cost_per_lead_chart({**handoff, "series": []}) is None


def sink(fake: FakeSlack) -> SlackSink:
    return SlackSink(SlackSinkConfig(type="slack", channel="C0ALERTS", token=fake.token, base_url=fake.base_url, timeout_seconds=5))


def test_the_chart_goes_into_the_alerts_thread(fake_slack: FakeSlack, handoff: dict) -> None:
    receipt = sink(fake_slack).send("opened", handoff, Delivery("2:opened:x", 2, utcnow()))
    (chart,) = fake_slack.files
    assert chart.data.startswith(PNG) and chart.filename == "incident-2.png"
    assert [(share.channel, share.thread_ts) for share in chart.shares] == [(receipt.channel, receipt.ts)]


def test_a_chart_that_fails_to_upload_leaves_the_alert_delivered(fake_slack: FakeSlack, handoff: dict) -> None:
    fake_slack.fail_next("files.getUploadURLExternal", ok_false="internal_error")
    receipt = sink(fake_slack).send("opened", handoff, Delivery("2:opened:x", 2, utcnow()))
    assert [m["ts"] for m in fake_slack.messages("C0ALERTS")] == [receipt.ts] and fake_slack.files == []
