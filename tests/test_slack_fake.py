"""The Slack fake driven by the real ``slack_sdk.WebClient``: messages, threads, metadata, uploads, failures.

These tests pin both the fake's behaviour and the SDK's behaviour against it (what the SDK retries,
what it raises), since alert delivery code relies on both.
"""

from __future__ import annotations

import time
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
    builtin_handlers,
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


# ----------------------------------------------------------------------------------------------
# random failures


@pytest.mark.parametrize("after_store", [pytest.param(False, id="before-store"), pytest.param(True, id="after-store")])
@pytest.mark.parametrize(
    ("kind", "raised"),
    [
        pytest.param("429", SlackApiError, id="429"),
        pytest.param("500", SlackApiError, id="500"),
        pytest.param("503", SlackApiError, id="503"),
        pytest.param("timeout", TimeoutError, id="timeout"),
        pytest.param("drop", (RemoteDisconnected, ConnectionResetError), id="drop"),
    ],
)
def test_each_random_kind_fails_the_request_before_or_after_it_took_effect(
    fake_slack: FakeSlack, kind: str, raised: Any, after_store: bool
) -> None:
    client = client_for(fake_slack, timeout=0.2, retries=[])
    fake_slack.fail_randomly(1.0, seed=1, kinds=[kind], after_store=1.0 if after_store else 0.0, delay=0.5, retry_after=3)

    with pytest.raises(raised) as caught:
        client.chat_postMessage(channel=CHANNEL, text="hello", metadata=METADATA)

    if kind == "429":
        assert caught.value.response.headers["Retry-After"] == "3"
    elif kind in ("500", "503"):
        assert caught.value.response.status_code == int(kind)
    assert len(fake_slack.messages(CHANNEL)) == (1 if after_store else 0)
    assert fake_slack.injected == [slack_fake.Injected("chat.postMessage", kind, after_store)]


def test_random_failures_hit_about_the_rate_repeatably_and_only_the_methods_named() -> None:
    def run(seed: int) -> tuple[list[bool], list[str]]:
        with FakeSlack() as fake:
            client = client_for(fake, retries=[])
            fake.fail_randomly(0.3, seed=seed, kinds=["429", "500", "503"], methods=["chat.postMessage"])
            outcomes = []
            for i in range(200):
                client.auth_test()  # never fails: not among the methods
                try:
                    client.chat_postMessage(channel=CHANNEL, text=f"m{i}")
                    outcomes.append(True)
                except SlackApiError:
                    outcomes.append(False)
            assert {injected.method for injected in fake.injected} == {"chat.postMessage"}
            return outcomes, [injected.label for injected in fake.injected]

    first, labels = run(seed=7)
    assert run(seed=7) == (first, labels)
    assert run(seed=8)[0] != first
    assert 40 <= first.count(False) == len(labels) <= 80  # 60 expected
    assert {label.split()[0] for label in labels} == {"429", "500", "503"}
    assert any(label.endswith("after store") for label in labels) and any(" " not in label for label in labels)


def test_queued_failures_come_first_and_a_rate_of_zero_stops_random_ones(fake_slack: FakeSlack) -> None:
    client = client_for(fake_slack, retries=[])
    fake_slack.fail_randomly(1.0, seed=1, kinds=["500"], after_store=0.0)
    fake_slack.fail_next("chat.postMessage", ok_false="is_archived")

    for error in ("is_archived", "fatal_error"):
        with pytest.raises(SlackApiError, match=error):
            client.chat_postMessage(channel=CHANNEL, text="hello")
    fake_slack.fail_randomly(0)
    client.chat_postMessage(channel=CHANNEL, text="hello")

    assert [injected.kind for injected in fake_slack.injected] == ["ok_false", "500"]
    assert fake_slack.injected_counts() == {"ok_false": 1, "500": 1}
    assert [m["text"] for m in fake_slack.messages(CHANNEL)] == ["hello"]


@pytest.mark.parametrize("bad", [{"rate": 1.5}, {"rate": 0.3, "kinds": ["418"]}, {"rate": 0.3, "kinds": []}, {"rate": 0.3, "after_store": -1}])
def test_random_failures_refuse_nonsense(fake_slack: FakeSlack, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="fail_randomly"):
        fake_slack.fail_randomly(**bad)


def test_all_messages_holds_replies_once(fake_slack: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="alert")["ts"]
    client.chat_postMessage(channel=CHANNEL, text="reply", thread_ts=parent)
    client.chat_postMessage(channel=CHANNEL, text="broadcast", thread_ts=parent, reply_broadcast=True)

    assert [m["text"] for m in fake_slack.all_messages(CHANNEL)] == ["alert", "reply", "broadcast"]
    assert [m["text"] for m in fake_slack.messages(CHANNEL)] == ["alert", "broadcast"]


def test_recorded_sleeps_outside_pytest_records_the_retry_pause(fake_slack: FakeSlack) -> None:
    client = client_for(fake_slack, retries=[RateLimitErrorRetryHandler(max_retry_count=1)])
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=5)

    with slack_fake.recorded_sleeps() as recorded:
        client.chat_postMessage(channel=CHANNEL, text="hello")

    (pause,) = recorded
    assert 5 <= pause < 6
    assert builtin_handlers.time is time, "the real clock is back after the block"
