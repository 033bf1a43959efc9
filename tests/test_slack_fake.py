"""The Slack fake driven by the real ``slack_sdk.WebClient``: messages, threads, metadata, uploads, failures.

These tests pin both the fake's behaviour and the SDK's behaviour against it (what the SDK retries,
what it raises), since alert delivery code relies on both.
"""

from __future__ import annotations

from collections.abc import Callable
from http.client import RemoteDisconnected
from typing import Any
from urllib.error import HTTPError

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import (
    ConnectionErrorRetryHandler,
    FixedValueRetryIntervalCalculator,
    RateLimitErrorRetryHandler,
    RetryHandler,
)
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler  # not re-exported by slack_sdk.http_retry

from tests import slack_fake
from tests.slack_fake import DEFAULT_TOKEN, FakeSlack

fake_slack = slack_fake.fake_slack  # the fixture, used by this module

CHANNEL = "C0ALERTS"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
FAST = FixedValueRetryIntervalCalculator(0.01)
BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "CPL anomaly"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Search – Brand* CPL 3.1× baseline"}},
]
METADATA = {"event_type": "anomaly_alert", "event_payload": {"alert_key": "cpl:acct-1:camp-7:2026-01-12"}}


def client_for(
    fake: FakeSlack, *, token: str = DEFAULT_TOKEN, timeout: float = 2, retries: list[RetryHandler] | None = None
) -> WebClient:
    """A WebClient on the fake; ``retries`` replaces the SDK's default retry handlers when given."""
    client = WebClient(token=token, base_url=fake.base_url, timeout=timeout)  # type: ignore[arg-type]
    if retries is not None:
        client.retry_handlers = retries
    return client


@pytest.fixture
def client(fake_slack: FakeSlack) -> WebClient:
    """A WebClient on the fake with the SDK's default retry handlers."""
    return client_for(fake_slack)


def test_post_update_reply_and_read_back_with_metadata(fake_slack: FakeSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="#media-alerts", text="CPL anomaly", blocks=BLOCKS, metadata=METADATA)
    assert posted["channel"] == CHANNEL
    assert posted["message"]["blocks"] == BLOCKS
    ts = posted["ts"]

    updated = client.chat_update(channel=CHANNEL, ts=ts, text="CPL anomaly (resolved)")
    assert updated["message"]["blocks"] == BLOCKS, "omitted blocks are kept"
    reply = client.chat_postMessage(channel=CHANNEL, text="Still high today", thread_ts=ts)
    assert reply["message"]["thread_ts"] == ts

    history = client.conversations_history(channel=CHANNEL, include_all_metadata=True)
    assert [m["ts"] for m in history["messages"]] == [ts], "replies are not top-level"
    parent = history["messages"][0]
    assert (parent["text"], parent["metadata"], parent["reply_count"]) == ("CPL anomaly (resolved)", METADATA, 1)
    assert "metadata" not in client.conversations_history(channel=CHANNEL)["messages"][0]

    replies = client.conversations_replies(channel=CHANNEL, ts=ts)
    assert [m["ts"] for m in replies["messages"]] == [ts, reply["ts"]]
    assert [m["ts"] for m in fake_slack.thread(CHANNEL, ts)] == [ts, reply["ts"]]

    first = fake_slack.calls("chat.postMessage")[0]
    assert first.headers["authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert first.headers["content-type"].startswith("application/json")
    assert first.body["metadata"] == METADATA
    assert fake_slack.calls("conversations.history")[0].body["include_all_metadata"] == "1", "sent as a form field"


def test_history_is_newest_first_and_honours_oldest_limit_and_cursor() -> None:
    with FakeSlack(clock=lambda: 1752000000.0) as fake:
        client = client_for(fake)
        stamps = [client.chat_postMessage(channel=CHANNEL, text=f"m{i}")["ts"] for i in range(3)]
        assert stamps == ["1752000000.000000", "1752000000.000100", "1752000000.000200"]

        after_first = client.conversations_history(channel=CHANNEL, oldest=stamps[0])
        assert [m["text"] for m in after_first["messages"]] == ["m2", "m1"], "oldest is exclusive"

        page = client.conversations_history(channel=CHANNEL, limit=2)
        assert ([m["text"] for m in page["messages"]], page["has_more"]) == (["m2", "m1"], True)
        rest = client.conversations_history(channel=CHANNEL, limit=2, cursor=page["response_metadata"]["next_cursor"])
        assert ([m["text"] for m in rest["messages"]], rest["has_more"]) == (["m0"], False)


def test_files_upload_v2_into_a_thread(fake_slack: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="CPL anomaly")["ts"]

    result = client.files_upload_v2(
        channel=CHANNEL,
        file=PNG,
        filename="spend.png",
        title="Spend, 28 days",
        initial_comment="Chart",
        thread_ts=parent,
    )

    assert result["file"]["title"] == "Spend, 28 days"
    assert [r.method for r in fake_slack.requests[1:]] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    assert fake_slack.calls("files.getUploadURLExternal")[0].body == {"filename": "spend.png", "length": str(len(PNG))}
    complete = fake_slack.calls("files.completeUploadExternal")[0].body
    assert (complete["channel_id"], complete["thread_ts"]) == (CHANNEL, parent)
    [file] = fake_slack.files
    assert (file.filename, file.data, file.title) == ("spend.png", PNG, "Spend, 28 days")
    [share] = file.shares
    assert (share.channel, share.thread_ts) == (CHANNEL, parent)
    thread = fake_slack.thread(CHANNEL, parent)
    shared = [(m["text"], [f["id"] for f in m.get("files", [])]) for m in thread]
    assert shared == [("CPL anomaly", []), ("Chart", [file.id])]


def test_rate_limit_is_retried_after_retry_after(fake_slack: FakeSlack) -> None:
    client = client_for(fake_slack, retries=[RateLimitErrorRetryHandler(max_retry_count=2)])
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=0)

    client.chat_postMessage(channel=CHANNEL, text="hello")

    assert len(fake_slack.calls("chat.postMessage")) == 2
    assert [m["text"] for m in fake_slack.messages(CHANNEL)] == ["hello"]


def test_rate_limit_without_a_handler_raises_with_retry_after(fake_slack: FakeSlack, client: WebClient) -> None:
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=7)

    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel=CHANNEL, text="hello")

    response = caught.value.response
    assert (response.status_code, response["error"], response.headers["Retry-After"]) == (429, "ratelimited", "7")
    assert len(fake_slack.calls("chat.postMessage")) == 1, "the default handlers do not retry 429"


def test_server_error_is_retried(fake_slack: FakeSlack) -> None:
    client = client_for(fake_slack, retries=[ServerErrorRetryHandler(max_retry_count=1, interval_calculator=FAST)])
    fake_slack.fail_next("chat.postMessage", status=500)

    assert client.chat_postMessage(channel=CHANNEL, text="hello")["ok"]
    assert len(fake_slack.calls("chat.postMessage")) == 2


UNKNOWN_TS = "1.000100"


@pytest.mark.parametrize(
    ("inject", "token", "kwargs", "error"),
    [
        pytest.param("is_archived", DEFAULT_TOKEN, {}, "is_archived", id="injected-ok-false"),
        pytest.param(None, "xoxb-wrong", {}, "invalid_auth", id="wrong-token"),
        pytest.param(None, DEFAULT_TOKEN, {"channel": "#nowhere"}, "channel_not_found", id="unknown-channel"),
        pytest.param(None, DEFAULT_TOKEN, {"thread_ts": UNKNOWN_TS}, "thread_not_found", id="unknown-parent"),
        pytest.param(None, DEFAULT_TOKEN, {"metadata": {"event_type": "x"}}, "invalid_metadata_format", id="bad-metadata"),
    ],
)
def test_post_message_refusals_raise_slack_api_error(
    fake_slack: FakeSlack, inject: str | None, token: str, kwargs: dict[str, Any], error: str
) -> None:
    if inject:
        fake_slack.fail_next("chat.postMessage", ok_false=inject)

    with pytest.raises(SlackApiError) as caught:
        client_for(fake_slack, token=token).chat_postMessage(**{"channel": CHANNEL, "text": "hello", **kwargs})

    assert (caught.value.response.status_code, caught.value.response["error"]) == (200, error)
    assert fake_slack.messages(CHANNEL) == []


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(
            lambda c: c.chat_update(channel=CHANNEL, ts=UNKNOWN_TS, text="x"), "message_not_found", id="update-unknown-ts"
        ),
        pytest.param(
            lambda c: c.conversations_replies(channel=CHANNEL, ts=UNKNOWN_TS), "thread_not_found", id="replies-unknown-ts"
        ),
        pytest.param(
            lambda c: c.conversations_history(channel="#media-alerts"), "channel_not_found", id="history-wants-an-id"
        ),
    ],
)
def test_other_refusals(client: WebClient, call: Callable[[WebClient], object], error: str) -> None:
    with pytest.raises(SlackApiError) as caught:
        call(client)
    assert caught.value.response["error"] == error


def test_auth_test_names_the_bot(client: WebClient) -> None:
    assert client.auth_test()["user_id"] == "U0ALERTBOT"


def test_a_slow_answer_times_the_client_out(fake_slack: FakeSlack) -> None:
    client = client_for(fake_slack, timeout=0.3)
    fake_slack.fail_next("chat.postMessage", delay=1, drop=True)

    with pytest.raises(TimeoutError):
        client.chat_postMessage(channel=CHANNEL, text="hello")

    assert len(fake_slack.calls("chat.postMessage")) == 1, "the SDK does not retry a read timeout"


def test_a_connection_dropped_after_storing_loses_the_answer_not_the_message(fake_slack: FakeSlack) -> None:
    client = client_for(fake_slack, retries=[])
    fake_slack.fail_next("chat.postMessage", drop=True, after_store=True)

    with pytest.raises((RemoteDisconnected, ConnectionResetError)):
        client.chat_postMessage(channel=CHANNEL, text="hello", metadata=METADATA)

    [stored] = fake_slack.messages(CHANNEL)
    assert (stored["text"], stored["metadata"]) == ("hello", METADATA)


def test_the_default_connection_retry_posts_a_dropped_message_twice(fake_slack: FakeSlack) -> None:
    # the SDK's only default handler, made fast: a post whose answer was lost is silently re-sent
    client = client_for(fake_slack, retries=[ConnectionErrorRetryHandler(interval_calculator=FAST)])
    fake_slack.fail_next("chat.postMessage", drop=True, after_store=True)

    assert client.chat_postMessage(channel=CHANNEL, text="hello")["ok"]

    assert [m["text"] for m in fake_slack.messages(CHANNEL)] == ["hello", "hello"]


def test_a_failed_upload_step_raises_urllib_http_error(fake_slack: FakeSlack, client: WebClient) -> None:
    fake_slack.fail_next("upload", status=500)

    with pytest.raises(HTTPError) as caught:
        client.files_upload_v2(channel=CHANNEL, file=PNG, filename="spend.png")

    caught.value.close()  # the HTTPError holds the open response; nothing else closes it
    assert caught.value.code == 500
    assert fake_slack.calls("files.completeUploadExternal") == []
    assert fake_slack.calls("upload")[0].raw == PNG
    assert fake_slack.files[0].data is None, "the failure came before the bytes were kept"
