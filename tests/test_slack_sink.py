"""The Slack sink against the local fake Slack Web API: the main alert, updates in place with
replies in its thread, idempotent resends after a lost answer, retries of 429 and 5xx, errors that
say what to fix without the token, escaping on the wire, and delivery through the outbox."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from anomaly.alerts import deliver
from anomaly.alerts.sinks import Delivery, DeliveryError, Receipt
from anomaly.alerts.slack import SlackSink
from anomaly.alerts.slack_message import build_alert, build_thread_reply
from anomaly.config import SlackSinkConfig
from anomaly.store import IncidentWrite, Store, utcnow
from tests.slack_fake import FakeSlack, fake_slack, sleeps  # noqa: F401 - the fixtures
from tests.test_slack_message import _made
from tests.test_store import incident, outbox_row

pytestmark = pytest.mark.usefixtures("sleeps")  # no test waits on a retry

CHANNEL = "C0ALERTS"
OPENED_KEY = "7:opened:2026-07-10:slack:C0ALERTS"



def make_sink(fake: FakeSlack, *, channel: str = CHANNEL, token: str | None = None, **overrides) -> SlackSink:
    values = {"channel": channel, "token": token or fake.token, "base_url": fake.base_url, "timeout_seconds": 5, **overrides}
    return SlackSink(SlackSinkConfig(type="slack", **values))


def delivery(key: str = OPENED_KEY, thread: Receipt | None = None) -> Delivery:
    return Delivery(key=key, incident_id=7, created_at=utcnow(), thread=thread)


def metadata(key: str) -> dict:
    return {"event_type": "anomaly_alert", "event_payload": {"key": key, "incident_id": 7}}


# ----------------------------------------------------------------------------------------------
# messages


def test_opened_posts_one_alert_with_blocks_fallback_text_and_metadata(fake_slack: FakeSlack) -> None:
    payload = _made()
    sent = delivery()

    receipt = make_sink(fake_slack).send("opened", payload, sent)

    (message,) = fake_slack.messages(CHANNEL)
    expected = build_alert("opened", payload)
    assert receipt == Receipt(CHANNEL, message["ts"])
    assert message["blocks"][0]["text"]["text"] == "Critical: Cost per lead 4.0× baseline — Acme Clinics / Brand"
    assert (message["blocks"], message["text"]) == (expected.blocks, expected.text)
    assert message["metadata"] == metadata(OPENED_KEY)
    # the history was searched first, from five minutes before the notification was enqueued
    history, post = fake_slack.requests
    assert (history.method, post.method) == ("conversations.history", "chat.postMessage")
    oldest = sent.created_at.replace(tzinfo=dt.UTC).timestamp() - 300
    assert float(history.body["oldest"]) == pytest.approx(oldest, abs=1e-5)
    assert post.headers["authorization"] == f"Bearer {fake_slack.token}"


@pytest.mark.parametrize("event", ["updated", "resolved"])
def test_a_later_notification_rewrites_the_main_message_and_replies_in_its_thread(fake_slack: FakeSlack, event: str) -> None:
    sink = make_sink(fake_slack)
    main = sink.send("opened", _made(), delivery())
    later = _made(severity="critical", excess_cost=900.0, status="resolved" if event == "resolved" else "open", resolved_on="2026-07-12")

    receipt = sink.send(event, later, delivery(f"7:{event}:x:slack", thread=main))

    (update,) = fake_slack.calls("chat.update")
    assert (update.body["channel"], update.body["ts"]) == (CHANNEL, main.ts)
    (message,) = fake_slack.messages(CHANNEL)
    assert message["blocks"] == build_alert(event, later).blocks != build_alert("opened", _made()).blocks
    assert message["blocks"][0]["text"]["text"].startswith("RESOLVED: ") == (event == "resolved")
    parent, reply = fake_slack.thread(CHANNEL, main.ts)
    assert (parent["ts"], reply["thread_ts"]) == (main.ts, main.ts)
    assert reply["text"] == build_thread_reply(event, later).text
    assert reply["metadata"] == metadata(f"7:{event}:x:slack")
    assert receipt == Receipt(CHANNEL, reply["ts"])


def test_a_later_notification_without_a_main_message_posts_the_full_alert(fake_slack: FakeSlack) -> None:
    payload = _made(severity="critical")

    receipt = make_sink(fake_slack).send("updated", payload, delivery("7:updated:x:slack"))

    (message,) = fake_slack.messages(CHANNEL)
    assert message["blocks"] == build_alert("updated", payload).blocks
    assert receipt == Receipt(CHANNEL, message["ts"])
    assert fake_slack.calls("chat.update") == []


def test_a_deleted_main_message_is_replaced_by_a_new_alert(fake_slack: FakeSlack) -> None:
    gone = Receipt(CHANNEL, "1700000000.000100")

    receipt = make_sink(fake_slack).send("resolved", _made(status="resolved"), delivery("7:resolved:x:slack", thread=gone))

    (message,) = fake_slack.messages(CHANNEL)
    assert message["blocks"][0]["text"]["text"].startswith("RESOLVED: ")
    assert receipt == Receipt(CHANNEL, message["ts"])


def test_untrusted_names_reach_slack_escaped(fake_slack: FakeSlack) -> None:
    make_sink(fake_slack).send("opened", _made(campaign_name="<!channel> Sale"), delivery())

    (post,) = fake_slack.calls("chat.postMessage")
    assert b"<!channel>" not in post.raw
    assert "&lt;!channel&gt; Sale" in json.dumps(post.body["blocks"], ensure_ascii=False)


def test_an_operations_event_posts_its_text(fake_slack: FakeSlack) -> None:
    make_sink(fake_slack).send("job_failed", {"job": "pull", "text": "anomaly serve: job <!here> failed"})

    (message,) = fake_slack.messages(CHANNEL)
    assert (message["text"], "blocks" in message) == ("anomaly serve: job &lt;!here&gt; failed", False)


# ----------------------------------------------------------------------------------------------
# idempotence: a message that Slack stored but whose answer was lost is not posted again


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"drop": True}, id="dropped-connection"),
        pytest.param({"delay": 2.0}, id="read-timeout"),
    ],
)
def test_a_resend_after_a_lost_answer_finds_the_alert_instead_of_posting_it_again(fake_slack: FakeSlack, failure: dict) -> None:
    sink = make_sink(fake_slack, timeout_seconds=0.3)
    sent = delivery()
    fake_slack.fail_next("chat.postMessage", after_store=True, **failure)

    with pytest.raises(DeliveryError) as lost:
        sink.send("opened", _made(), sent)
    receipt = sink.send("opened", _made(), sent)

    assert lost.value.retryable
    (message,) = fake_slack.messages(CHANNEL)
    assert receipt == Receipt(CHANNEL, message["ts"])
    assert len(fake_slack.calls("chat.postMessage")) == 1  # the SDK did not repost on its own either


def test_a_resent_reply_is_found_in_the_thread(fake_slack: FakeSlack) -> None:
    sink = make_sink(fake_slack)
    main = sink.send("opened", _made(), delivery())
    update = delivery("7:updated:x:slack", thread=main)
    fake_slack.fail_next("chat.postMessage", drop=True, after_store=True)

    with pytest.raises(DeliveryError):
        sink.send("updated", _made(severity="critical"), update)
    receipt = sink.send("updated", _made(severity="critical"), update)

    parent, reply = fake_slack.thread(CHANNEL, main.ts)
    assert receipt == Receipt(CHANNEL, reply["ts"])
    assert len(fake_slack.calls("chat.postMessage")) == 2  # the alert and one reply


@pytest.mark.parametrize("status", [429, 500, 503])
def test_an_error_answer_after_slack_stored_the_alert_is_found_not_posted_again(fake_slack: FakeSlack, sleeps: list[float], status: int) -> None:
    fake_slack.fail_next("chat.postMessage", status=status, after_store=True)

    receipt = make_sink(fake_slack).send("opened", _made(), delivery())

    (message,) = fake_slack.messages(CHANNEL)
    assert receipt == Receipt(CHANNEL, message["ts"])
    # looked for before the retry, found: the SDK did not post it a second time, nor wait to
    assert [r.method for r in fake_slack.requests] == ["conversations.history", "chat.postMessage", "conversations.history"]
    assert sleeps == []


def test_an_error_answer_after_slack_stored_a_reply_is_found_in_the_thread(fake_slack: FakeSlack) -> None:
    sink = make_sink(fake_slack)
    main = sink.send("opened", _made(), delivery())
    fake_slack.fail_next("chat.postMessage", status=500, after_store=True)

    receipt = sink.send("updated", _made(severity="critical"), delivery("7:updated:x:slack", thread=main))

    _, reply = fake_slack.thread(CHANNEL, main.ts)
    assert receipt == Receipt(CHANNEL, reply["ts"])
    assert len(fake_slack.calls("chat.postMessage")) == 2  # the alert and one reply


def test_an_error_answer_before_slack_stored_the_alert_is_retried_after_the_look(fake_slack: FakeSlack) -> None:
    fake_slack.fail_next("chat.postMessage", status=500)

    receipt = make_sink(fake_slack).send("opened", _made(), delivery())

    (message,) = fake_slack.messages(CHANNEL)
    assert receipt == Receipt(CHANNEL, message["ts"])
    assert [r.method for r in fake_slack.requests] == ["conversations.history", "chat.postMessage", "conversations.history", "chat.postMessage"]


def test_a_failed_look_before_a_retry_fails_the_send_and_the_next_send_finds_the_alert(fake_slack: FakeSlack) -> None:
    sink = make_sink(fake_slack)
    fake_slack.fail_next("conversations.history", delay=0.001)  # the look before the post: answered
    fake_slack.fail_next("conversations.history", drop=True)  # the look before the retry: no answer
    fake_slack.fail_next("chat.postMessage", status=500, after_store=True)

    with pytest.raises(DeliveryError) as failed:
        sink.send("opened", _made(), sent := delivery())
    receipt = sink.send("opened", _made(), sent)

    assert failed.value.retryable
    (message,) = fake_slack.messages(CHANNEL)
    assert receipt == Receipt(CHANNEL, message["ts"])
    assert len(fake_slack.calls("chat.postMessage")) == 1


@pytest.mark.parametrize("after_store", [pytest.param(True, id="after-store"), pytest.param(False, id="before-store")])
def test_a_chart_share_answered_with_an_error_is_looked_for_before_it_is_repeated(fake_slack: FakeSlack, after_store: bool) -> None:
    series = [[f"2026-07-{day:02d}", 200.0 + 100 * (day >= 9), 2.0, 100.0] for day in range(1, 11)]
    fake_slack.fail_next("files.completeUploadExternal", status=500, after_store=after_store)

    receipt = make_sink(fake_slack).send("opened", _made(series=series), delivery())

    _, chart = fake_slack.thread(CHANNEL, receipt.ts)  # the alert and one chart
    (file,) = fake_slack.files
    assert [f["id"] for f in chart["files"]] == [file.id]
    assert [share.thread_ts for share in file.shares] == [receipt.ts]
    assert len(fake_slack.calls("files.completeUploadExternal")) == (1 if after_store else 2)


def test_a_channel_name_is_resolved_by_the_first_post_and_checked_from_then_on(fake_slack: FakeSlack) -> None:
    sink = make_sink(fake_slack, channel="#media-alerts")

    first = sink.send("opened", _made(), delivery("1:opened"))
    assert [r.method for r in fake_slack.requests] == ["chat.postMessage"]  # no ID yet: nothing to search
    fake_slack.fail_next("chat.postMessage", drop=True, after_store=True)
    with pytest.raises(DeliveryError):
        sink.send("opened", _made(), again := delivery("2:opened"))
    second = sink.send("opened", _made(), again)

    assert sink.name == "slack:#media-alerts"
    assert (first.channel, second.channel) == (CHANNEL, CHANNEL)
    assert len(fake_slack.messages(CHANNEL)) == 2
    assert {r.body["channel"] for r in fake_slack.calls("conversations.history")} == {CHANNEL}


# ----------------------------------------------------------------------------------------------
# retries and errors


@pytest.mark.parametrize(
    ("failure", "pause"),
    [
        pytest.param({"status": 429, "retry_after": 0}, (0, 1), id="429-retry-after-0"),
        pytest.param({"status": 429, "retry_after": 1}, (1, 2), id="429-retry-after-1"),
        pytest.param({"status": 500}, (0.5, 1.5), id="500"),
        pytest.param({"status": 503}, (0.5, 1.5), id="503"),
    ],
)
def test_rate_limits_and_server_errors_are_retried(fake_slack: FakeSlack, sleeps: list[float], failure: dict, pause: tuple) -> None:
    fake_slack.fail_next("chat.postMessage", **failure)

    receipt = make_sink(fake_slack).send("opened", _made(), delivery())

    assert len(fake_slack.calls("chat.postMessage")) == 2
    assert receipt == Receipt(CHANNEL, fake_slack.messages(CHANNEL)[0]["ts"])
    (slept,) = sleeps
    assert pause[0] <= slept < pause[1]


def test_server_errors_beyond_the_retries_are_retryable(fake_slack: FakeSlack, sleeps: list[float]) -> None:
    fake_slack.fail_next("chat.postMessage", status=503, times=3)

    with pytest.raises(DeliveryError, match=r"chat.postMessage for C0ALERTS: HTTP 503 \(fatal_error\) after 2 retries") as failed:
        make_sink(fake_slack, max_retries=2).send("opened", _made(), delivery())

    assert failed.value.retryable
    assert (len(fake_slack.calls("chat.postMessage")), len(sleeps)) == (3, 2)
    assert fake_slack.messages(CHANNEL) == []


@pytest.mark.parametrize(
    ("channel", "token", "fail", "error", "fix"),
    [
        pytest.param("C0MISSING", None, None, "channel_not_found", "alerts.sinks[].channel", id="unknown-channel-id"),
        pytest.param("#nowhere", None, None, "channel_not_found", "alerts.sinks[].channel", id="unknown-channel-name"),
        pytest.param(CHANNEL, "xoxb-wrong-secret-42", None, "invalid_auth", "SLACK_BOT_TOKEN", id="wrong-token"),
        pytest.param(CHANNEL, None, "not_in_channel", "not_in_channel", "invite the app", id="not-in-channel"),
        pytest.param(CHANNEL, None, "missing_scope", "missing_scope", "scope", id="missing-scope"),
        pytest.param(CHANNEL, None, "token_revoked", "token_revoked", "reinstall the app", id="revoked"),
    ],
)
def test_errors_only_a_fix_can_cure_are_not_retryable_and_say_what_to_fix(
    fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture, channel: str, token: str | None, fail: str | None, error: str, fix: str
) -> None:
    sink = make_sink(fake_slack, channel=channel, token=token)
    if fail:
        fake_slack.fail_next("conversations.history", ok_false=fail)

    with pytest.raises(DeliveryError) as failed:
        sink.send("opened", _made(), delivery())

    message = str(failed.value)
    assert not failed.value.retryable
    assert message.startswith(f"Slack {error} for {channel}: ") and fix in message
    used_token = token or fake_slack.token
    assert used_token not in message and used_token not in caplog.text
    assert fake_slack.messages(CHANNEL) == []


def test_other_failures_are_retryable_and_never_show_the_token(fake_slack: FakeSlack) -> None:
    sink = make_sink(fake_slack)
    fake_slack.fail_next("conversations.history", ok_false="internal_error")
    with pytest.raises(DeliveryError, match="conversations.history for C0ALERTS: internal_error") as odd:
        sink.send("opened", _made(), delivery())

    fake_slack.stop()
    with pytest.raises(DeliveryError, match="failed .*URLError") as down:
        sink.send("opened", _made(), delivery())

    for failed in (odd, down):
        assert failed.value.retryable and fake_slack.token not in str(failed.value)


# ----------------------------------------------------------------------------------------------
# through the outbox


def test_deliver_sends_each_notification_once_and_threads_the_later_ones(fake_slack: FakeSlack, tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    sink = make_sink(fake_slack)
    note = {"event": "opened", "key": "2026-07-10", "sink": sink.name, "payload": _made(incident_id=None)}
    store.save_incidents([IncidentWrite(None, incident(), (note,))])
    (stored,) = store.load_incidents()
    (opened,) = store.pending()

    # Slack stores the alert, the answer is lost: the outbox keeps it, the next delivery finds it
    fake_slack.fail_next("chat.postMessage", drop=True, after_store=True)
    assert deliver(store, [sink]).failed == 1
    assert deliver(store, [sink]).sent == 1
    assert deliver(store, [sink]).sent == 0

    (message,) = fake_slack.messages(CHANNEL)
    assert message["metadata"]["event_payload"] == {"key": opened.key, "incident_id": stored["id"]}
    row = outbox_row(store, opened.id)
    assert (row["status"], row["channel"], row["ts"]) == ("sent", CHANNEL, message["ts"])

    worse = {**note, "event": "updated", "key": "critical", "payload": _made(incident_id=None, severity="critical")}
    store.save_incidents([IncidentWrite(stored["id"], incident(severity="critical"), (worse,))])
    (updated,) = store.pending()
    assert deliver(store, [sink]).sent == 1

    (main,) = fake_slack.messages(CHANNEL)
    _, reply = fake_slack.thread(CHANNEL, message["ts"])
    assert main["blocks"] == build_alert("updated", {**worse["payload"], "incident_id": stored["id"]}).blocks
    assert reply["metadata"]["event_payload"]["key"] == updated.key
    row = outbox_row(store, updated.id)
    assert (row["status"], row["channel"], row["ts"]) == ("sent", CHANNEL, reply["ts"])
    store.engine.dispose()
