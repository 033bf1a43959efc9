"""The Slack sink: one message per incident, updated in place, with a reply in its thread for each
later notification.

- ``opened`` posts the main alert (``build_alert``) to the configured channel, and its chart
  (``anomaly.alerts.chart``) with ``files_upload_v2`` into its thread. Its receipt
  (channel ID, ``ts``) is recorded with the notification by ``deliver()`` and comes back as
  ``delivery.thread`` for the incident's later notifications.
- ``updated`` and ``resolved`` rewrite the main message with ``chat.update`` (the current payload;
  resolved shows the resolved header), then post a short reply (``build_thread_reply``) in its
  thread; the reply's receipt is returned. Without ``delivery.thread`` (the main message was never
  sent on this sink), or when the main message was deleted, the full alert is posted as a new
  message instead.
- ``reminder`` (open and unacknowledged for ``alerts.repeat_every_hours``) rewrites the main
  message like ``updated``, then replies in its thread with ``reply_broadcast`` so that the
  reminder shows in the channel, with the route's mentions.
- ``grouped`` (many incidents opened on one account in one cycle) posts one message listing them
  (``build_group``), without a chart. A later notification of one of its incidents comes with
  ``delivery.grouped``: a reply naming the campaign goes in the grouped message's thread, and the
  grouped message is left as it is. The reminders of a group's incidents that fall due together
  come as one ``grouped_reminder``: one reply in the group's thread listing them, broadcast once,
  every route's mention once (a reminder of one incident alone there is not broadcast).
- A ``handover`` (a change of managing party, see ``anomaly.handover``) posts its message once, as
  a message of its own; its metadata carries ``handover_id`` instead of ``incident_id``.
- Any other event (``job_failed`` from the operations sink) posts the payload's ``text``.

**At least once, made idempotent.** The outbox marks a notification sent only after the sink has
returned a receipt, so a crash between Slack storing the message and the store recording it, or an
answer lost on the way (timeout, dropped connection), leads to the same notification being sent
again. Each message therefore carries Slack message metadata
``{"event_type": "anomaly_alert", "event_payload": {"key": <outbox key>, "incident_id": ...}}``,
and every send first looks for a message with its key: ``conversations.history`` from five minutes
before the notification was enqueued (the message cannot be older; the margin covers clock skew),
or ``conversations.replies`` of the thread for a reply. When one is found its receipt is returned
and nothing is posted. For the same reason the SDK's default ``ConnectionErrorRetryHandler`` is not
installed: it would repost ``chat.postMessage`` at once after a dropped connection, without the
check. Only 429 (after ``Retry-After``) and 500/503 answers are retried inside one send, at most
``max_retries`` times, and a ``chat.postMessage`` only after the same check: an error answer can
come after Slack stored the message, and when the check finds it, its receipt is the send's (the
chart's ``files.completeUploadExternal`` likewise, looking for the file in the thread). Every
other failure is left to the outbox's next delivery.

**Channels.** Configure the channel ID (``C0ALERTS``): history, replies and updates need the ID.
A ``#name`` works for posting, and the ID is learnt from the first ``chat.postMessage`` answer (or
from a recorded receipt) and kept on the sink; until then, the history check cannot run, so a
notification whose first attempt in this process lost its answer may be posted twice.

**Errors.** ``ok: false`` errors that only a change of config or of the Slack app can fix (unknown
channel, app not in the channel, bad or revoked token, missing scope, archived channel) raise a
non-retryable ``DeliveryError`` that says what to fix; the notification stays pending and goes out
on the first delivery after the fix. Everything else (timeouts, network errors, 429 and 5xx after
the retries, other ``ok: false``) is retryable. No message ever contains the token.

Scopes: ``chat:write``, ``files:write`` and ``channels:history`` (``groups:history`` for a private
channel).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryHandler, RetryState
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from anomaly.alerts.sinks import Delivery, DeliveryError, Receipt
from anomaly.alerts.slack_message import (
    SlackMessage,
    build_alert,
    build_group,
    build_group_reminder,
    build_group_reply,
    build_handover,
    build_reminder_reply,
    build_thread_reply,
    escape,
)
from anomaly.store import utcnow

if TYPE_CHECKING:
    from anomaly.config import Config, SlackSinkConfig, SlackWebhookSinkConfig

log = logging.getLogger(__name__)

EVENT_TYPE = "anomaly_alert"
ALERT_EVENTS = ("opened", "updated", "resolved", "reminder")
HISTORY_MARGIN = dt.timedelta(minutes=5)
PAGE_SIZE = 200

_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")

_TOKEN_FIX = "set SLACK_BOT_TOKEN to the app's bot token (xoxb-…) of this workspace"
#: ok:false errors that no retry can fix, and what to do about each.
FIXES: dict[str, str] = {
    "channel_not_found": "check alerts.sinks[].channel (a channel ID such as C0123ABCD) and that the app can see the channel",
    "not_in_channel": "invite the app to the channel (/invite @<app>)",
    "is_archived": "unarchive the channel or configure another one",
    "invalid_auth": _TOKEN_FIX,
    "not_authed": _TOKEN_FIX,
    "account_inactive": f"the token's app or user is deactivated; reinstall the app and {_TOKEN_FIX}",
    "token_revoked": f"the token was revoked; reinstall the app and {_TOKEN_FIX}",
    "token_expired": f"the token expired; {_TOKEN_FIX}",
    "missing_scope": "add the {needed} scope(s) to the Slack app and reinstall it",
}
_SCOPES = "chat:write and channels:history (groups:history for a private channel)"
#: errors that mean the incident's main message (or its thread) no longer exists
_GONE = frozenset({"message_not_found", "thread_not_found"})
#: the methods whose request can take effect and still be answered with an error: never repeated
#: before a look for what it made
_CREATES = ("chat.postMessage", "files.completeUploadExternal")


class _MainMessageGone(Exception):
    """The main message named by ``delivery.thread`` was deleted: post a new one."""


class _AlreadyPosted(Exception):
    """A message (a post, or a shared file) answered with an error was made all the same: here is its receipt."""

    def __init__(self, receipt: Receipt):
        super().__init__(receipt.ts)
        self.receipt = receipt


class SlackSink:
    """Posts incident alerts to one Slack channel through the Web API (see the module docstring)."""

    def __init__(self, settings: SlackSinkConfig, config: Config | None = None, *, client: WebClient | None = None):
        self.settings = settings
        self.config = config
        self.name = settings.name
        self.client = client or _make_client(settings, self._check_made)
        # the channel ID, once known: configured, or learnt from an answer or a receipt
        self._channel_id: str | None = settings.channel if is_channel_id(settings.channel) else None
        if self._channel_id is None:
            log.warning(
                "Slack channel %r is a name: configure its ID so that a resent alert is found in the "
                "channel's history from the first send on",
                settings.channel,
            )

    def send(self, event: str, payload: dict, delivery: Delivery | None = None) -> Receipt | None:
        """Deliver one notification and return the receipt of the message that carries it."""
        if event == "grouped":
            return self._post_once(build_group(payload["incidents"], self.config), delivery)
        if event == "grouped_reminder":
            return self._group_reminder(payload, delivery)
        if event == "handover":
            return self._post_once(build_handover(payload, self.config), delivery)
        if event not in ALERT_EVENTS:
            text = escape(str(payload.get("text") or event))
            return self._post_once(SlackMessage(text=text, blocks=[]), delivery)
        thread = delivery.thread if delivery is not None else None
        if event != "opened" and thread is not None:
            self._channel_id = self._channel_id or thread.channel
            try:
                if delivery.grouped:
                    return self._group_reply(event, payload, delivery, thread)
                return self._follow_up(event, payload, delivery, thread)
            except _MainMessageGone:
                log.warning("incident %s: its Slack message %s is gone; posting a new one", delivery.incident_id, thread.ts)
        return self._post_once(build_alert(event, payload, self.config), delivery, payload)

    # -- the steps -------------------------------------------------------------------------------

    def _follow_up(self, event: str, payload: dict, delivery: Delivery, thread: Receipt) -> Receipt:
        """Rewrite the main message, then reply in its thread, once."""
        found = self._find_reply(delivery.key, thread)
        if found is not None:
            return found  # the reply went out and its receipt was lost; the update came before it
        main = build_alert(event, payload, self.config)
        update = {"channel": thread.channel, "ts": thread.ts, **main.as_kwargs()}
        self._call("chat.update", thread.channel, self.client.chat_update, update, in_thread=True)
        if event == "reminder":
            reply = build_reminder_reply(payload, self.config)
            return self._post(reply, delivery, thread.channel, thread_ts=thread.ts, broadcast=True)
        reply = build_thread_reply(event, payload, self.config)
        return self._post(reply, delivery, thread.channel, thread_ts=thread.ts)

    def _group_reminder(self, payload: dict, delivery: Delivery) -> Receipt:
        """The reminders of a grouped message's incidents as one reply in its thread, broadcast
        once; as a message of its own when the grouped message is gone."""
        message = build_group_reminder(payload["incidents"], self.config)
        thread = delivery.thread
        if thread is not None:
            self._channel_id = self._channel_id or thread.channel
            try:
                found = self._find_reply(delivery.key, thread)
                return found or self._post(message, delivery, thread.channel, thread_ts=thread.ts, broadcast=True)
            except _MainMessageGone:
                log.warning("incident %s: its grouped Slack message %s is gone; posting the reminder on its own", delivery.incident_id, thread.ts)
        return self._post_once(message, delivery)

    def _group_reply(self, event: str, payload: dict, delivery: Delivery, thread: Receipt) -> Receipt:
        """Reply once in the grouped message's thread, naming the campaign; the grouped message,
        which lists many incidents, stays as it is."""
        found = self._find_reply(delivery.key, thread)
        if found is not None:
            return found
        return self._post(build_group_reply(event, payload, self.config), delivery, thread.channel, thread_ts=thread.ts)

    def _post_once(self, message: SlackMessage, delivery: Delivery | None, payload: dict | None = None) -> Receipt:
        """Post a top-level message, unless the channel already holds the one for this delivery;
        with an alert's ``payload``, its chart goes in the new message's thread."""
        if delivery is not None and self._channel_id is not None:
            found = self._find_in_history(delivery.key, delivery.created_at)
            if found is not None:
                return found
        receipt = self._post(message, delivery, self._channel_id or self.settings.channel)
        self._channel_id = receipt.channel
        if payload is not None:
            self._attach_chart(payload, receipt)
        return receipt

    def _attach_chart(self, payload: dict, receipt: Receipt) -> None:
        """Upload the cost-per-lead chart into the alert's thread. The alert is what must not be
        lost or repeated; a chart that fails to upload is logged, and the alert stands without it."""
        from anomaly.alerts.chart import cost_per_lead_chart  # matplotlib loads only when a chart is drawn

        name = self.config.party_name(payload.get("managing_party")) if self.config is not None else None
        png = cost_per_lead_chart(payload, name)
        if png is None:
            return
        try:
            self.client.files_upload_v2(
                channel=receipt.channel, thread_ts=receipt.ts, file=png, filename=f"incident-{payload.get('incident_id', 'chart')}.png",
                title="Cost per lead by day, against baseline",
            )
        except _AlreadyPosted:
            return  # shared all the same, despite an error answer
        except Exception as exc:  # noqa: BLE001 - any failure of the upload leaves the alert as it is
            log.warning("chart for incident %s not uploaded to %s: %s", payload.get("incident_id"), receipt.channel, type(exc).__name__)

    def _post(
        self, message: SlackMessage, delivery: Delivery | None, channel: str, *, thread_ts: str | None = None, broadcast: bool = False
    ) -> Receipt:
        kwargs: dict[str, Any] = {**message.as_kwargs(), "unfurl_links": False, "unfurl_media": False}
        if not message.blocks:
            del kwargs["blocks"]
        if thread_ts is not None:
            kwargs["thread_ts"] = thread_ts
            if broadcast:
                kwargs["reply_broadcast"] = True
        if delivery is not None:
            event_payload: dict[str, Any] = {"key": delivery.key}
            if delivery.incident_id is not None:
                event_payload["incident_id"] = delivery.incident_id
            else:
                event_payload["handover_id"] = delivery.handover_id
            kwargs["metadata"] = {"event_type": EVENT_TYPE, "event_payload": event_payload}
        kwargs["channel"] = channel
        try:
            response = self._call("chat.postMessage", channel, self.client.chat_postMessage, kwargs, in_thread=thread_ts is not None)
        except _AlreadyPosted as stored:
            return stored.receipt
        return Receipt(channel=response["channel"], ts=response["ts"])

    def _check_made(self, method: str, data: bytes) -> None:
        """Before a request of ``_CREATES`` (its body ``data``) is retried after an error answer:
        raise _AlreadyPosted when Slack made its message all the same. A look that fails raises
        DeliveryError: nothing is repeated unchecked, and for a post the outbox's next delivery
        looks again."""
        try:
            if method == "chat.postMessage":
                found = self._posted(json.loads(data or b"{}"))
            else:
                found = self._shared(dict(parse_qsl(data.decode("utf-8"))))
        except _MainMessageGone:
            raise DeliveryError(f"Slack {method} failed (its thread is gone); will retry", retryable=True) from None
        if found is not None:
            raise _AlreadyPosted(found)

    def _posted(self, body: dict[str, Any]) -> Receipt | None:
        """The message that a ``chat.postMessage`` ``body`` asked for, by its key: in its thread, or
        in the channel since shortly before now."""
        key, channel = _key_of(body), str(body.get("channel") or "")
        if key is None or not is_channel_id(channel):
            return None  # nothing to look for, or nowhere (a #name, until its ID is known): repeated as before
        if body.get("thread_ts"):
            return self._find_reply(key, Receipt(channel, str(body["thread_ts"])))
        return self._find_in_history(key, utcnow())

    def _shared(self, form: dict[str, str]) -> Receipt | None:
        """The message that shares the file of a ``files.completeUploadExternal`` ``form`` in its thread."""
        files = {file.get("id") for file in json.loads(form.get("files") or "[]")}
        channel, thread_ts = form.get("channel_id", ""), form.get("thread_ts")
        if not thread_ts or not is_channel_id(channel):
            return None
        return self._find_in_thread(Receipt(channel, thread_ts), lambda message: bool(files & {f.get("id") for f in message.get("files") or []}))

    def _find_in_history(self, key: str, since: dt.datetime | None) -> Receipt | None:
        """The channel's message with ``key``, posted no earlier than ``HISTORY_MARGIN`` before ``since``."""
        channel = self._channel_id
        params: dict[str, Any] = {"channel": channel, "include_all_metadata": True, "limit": PAGE_SIZE}
        if since is not None:
            params["oldest"] = f"{_unix(since - HISTORY_MARGIN):.6f}"
        for message in self._pages("conversations.history", channel, self.client.conversations_history, params):
            if _key_of(message) == key:
                return Receipt(channel=channel, ts=message["ts"])
        return None

    def _find_reply(self, key: str, thread: Receipt) -> Receipt | None:
        return self._find_in_thread(thread, lambda message: _key_of(message) == key)

    def _find_in_thread(self, thread: Receipt, matches: Callable[[dict], bool]) -> Receipt | None:
        """The first reply in ``thread`` that ``matches``."""
        params = {"channel": thread.channel, "ts": thread.ts, "include_all_metadata": True, "limit": PAGE_SIZE}
        replies = self._pages("conversations.replies", thread.channel, self.client.conversations_replies, params, in_thread=True)
        for message in replies:
            if message["ts"] != thread.ts and matches(message):
                return Receipt(channel=thread.channel, ts=message["ts"])
        return None

    def _pages(self, method: str, channel: str, call: Callable[..., Any], params: dict[str, Any], *, in_thread: bool = False):
        """The messages of every page of a conversations.* answer, following the cursor."""
        cursor = None
        while True:
            args = {**params, "cursor": cursor} if cursor else params
            response = self._call(method, channel, call, args, in_thread=in_thread)
            yield from response.get("messages") or []
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    # -- calls and errors ------------------------------------------------------------------------

    def _call(self, method: str, channel: str, call: Callable[..., Any], args: dict[str, Any], *, in_thread: bool = False) -> Any:
        """``call(**args)``, every failure turned into a DeliveryError; with ``in_thread``, a main
        message that no longer exists raises _MainMessageGone."""
        try:
            return call(**args)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "unknown_error")
            if in_thread and error in _GONE:
                raise _MainMessageGone(error) from None
            raise self._api_error(method, channel, error, exc.response) from None
        except TimeoutError:
            reason = f"no answer within {self.settings.timeout_seconds:g} s"
        except (SlackClientError, OSError, http.client.HTTPException) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise DeliveryError(f"Slack {method} for {channel} failed ({reason}); will retry", retryable=True)

    def _api_error(self, method: str, channel: str, error: str, response: Any) -> DeliveryError:
        if error in FIXES:
            fix = FIXES[error].format(needed=response.get("needed") or _SCOPES)
            return DeliveryError(f"Slack {error} for {channel}: {fix}", retryable=False)
        status = response.status_code
        if status == 429 or status >= 500:
            retries = self.settings.max_retries
            after = f"{retries} retr{'y' if retries == 1 else 'ies'}"
            return DeliveryError(f"Slack {method} for {channel}: HTTP {status} ({error}) after {after}; will retry", retryable=True)
        return DeliveryError(f"Slack {method} for {channel}: {error}; will retry", retryable=True)


def is_channel_id(channel: str) -> bool:
    """``C0123ABCD`` (public), ``G…`` (private) or ``D…`` (direct) rather than a ``#name``."""
    return bool(_CHANNEL_ID.fullmatch(channel))


def _make_client(settings: SlackSinkConfig, check_made: Callable[[str, bytes], None]) -> WebClient:
    base_url = settings.base_url or WebClient.BASE_URL
    return WebClient(
        token=settings.token.get_secret_value(),
        base_url=base_url if base_url.endswith("/") else base_url + "/",  # urljoin drops a last segment without "/"
        timeout=settings.timeout_seconds,
        # no ConnectionErrorRetryHandler: a repost after a dropped connection can duplicate a message
        retry_handlers=[
            _CheckedRetry(RateLimitErrorRetryHandler(max_retry_count=settings.max_retries), check_made),
            _CheckedRetry(ServerErrorRetryHandler(max_retry_count=settings.max_retries), check_made),
        ],
    )


class _CheckedRetry(RetryHandler):
    """``handler``'s retries, except that a request of ``_CREATES`` is repeated only once
    ``check_made`` (given the method and the request's body) has not raised: Slack can store a
    message and still answer 500, and a blind repeat would post it twice."""

    def __init__(self, handler: RetryHandler, check_made: Callable[[str, bytes], None]):
        super().__init__(handler.max_retry_count, handler.interval_calculator)
        self.handler = handler
        self.check_made = check_made

    def can_retry(
        self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None, error: Exception | None = None
    ) -> bool:
        if not self.handler.can_retry(state=state, request=request, response=response, error=error):
            return False
        method = request.url.rsplit("/", 1)[-1]
        if method in _CREATES:
            self.check_made(method, request.data or b"")  # raises when the request must not be repeated
        return True

    def prepare_for_next_attempt(
        self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None, error: Exception | None = None
    ) -> None:
        self.handler.prepare_for_next_attempt(state=state, request=request, response=response, error=error)


def _key_of(message: dict) -> str | None:
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != EVENT_TYPE:
        return None
    return (metadata.get("event_payload") or {}).get("key")


def _unix(naive_utc: dt.datetime) -> float:
    return naive_utc.replace(tzinfo=dt.UTC).timestamp()


# ---------------------------------------------------------------------------------------------
# Incoming webhooks

#: webhook answers that no retry can fix, and what to do about each
WEBHOOK_FIXES: dict[str, str] = {
    "no_service": "the webhook was removed or its URL is wrong: create a new one and set SLACK_WEBHOOK_URL",
    "invalid_token": "the webhook URL is wrong: set SLACK_WEBHOOK_URL to the URL Slack gave",
    "no_active_hooks": "the webhook's app is disabled: enable it or create a new webhook",
    "channel_not_found": "the webhook's channel was deleted: create a new webhook",
    "channel_is_archived": "the webhook's channel is archived: unarchive it or create a new webhook",
    "action_prohibited": "a workspace admin blocks this webhook's channel: pick another channel",
}


WEBHOOK_URL_FIX = "set SLACK_WEBHOOK_URL to the URL Slack gave (https://hooks.slack.com/services/…)"


class _Redact(logging.Filter):
    """Writes ``label`` in place of a secret (as it is, or URL-quoted) in every record it sees."""

    def __init__(self, secret: str, label: str):
        super().__init__()
        self.forms = sorted({secret, quote(secret, safe=""), quote(secret)}, key=len, reverse=True)
        self.label = label

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(form in text for form in self.forms):
            for form in self.forms:
                text = text.replace(form, self.label)
            record.msg, record.args = text, ()
        return True


def _redacting_logger(secret: str, label: str) -> logging.Logger:
    """A logger for the SDK's client that names ``secret`` by ``label``: slack_sdk's webhook client
    logs the URL it posts to (each request at DEBUG, each retry at INFO, a bad URL at ERROR). It is
    this sink's own, not registered by name, so that no filter piles up on a shared logger; its
    records go on to this module's logger and the handlers above it."""
    logger = logging.Logger(f"{__name__}.webhook")
    logger.parent = log
    logger.addFilter(_Redact(secret, label))
    return logger


class SlackWebhookSink:
    """Posts each notification as a message of its own through an incoming webhook.

    A webhook answers no ``ts``: no thread, no update in place, and no way to look for a message
    already posted, so delivery is at least once (a lost answer can repeat a message). The URL is
    a secret: it appears in no error or log. Use the bot-token ``SlackSink`` for one message per
    incident that is updated in place.
    """

    def __init__(self, settings: SlackWebhookSinkConfig, config: Config | None = None, *, client: WebhookClient | None = None):
        self.config = config
        self.name = settings.name
        self.client = client or WebhookClient(
            settings.url.get_secret_value(),
            timeout=settings.timeout_seconds,
            retry_handlers=[
                RateLimitErrorRetryHandler(max_retry_count=settings.max_retries),
                ServerErrorRetryHandler(max_retry_count=settings.max_retries),
            ],
            logger=_redacting_logger(settings.url.get_secret_value(), f"<webhook of {self.name}>"),
        )

    def send(self, event: str, payload: dict, delivery: Delivery | None = None) -> None:
        """Post the alert as it stands now (opened, worse, or resolved), a grouped message, or a
        reminder's one line."""
        if event in ("grouped", "grouped_reminder", "handover") or event in ALERT_EVENTS:
            if event == "handover":
                message = build_handover(payload, self.config)
            elif event == "grouped":
                message = build_group(payload["incidents"], self.config)
            elif event == "grouped_reminder":
                message = build_group_reminder(payload["incidents"], self.config)
            elif event == "reminder":
                message = build_reminder_reply(payload, self.config, standalone=True)
            else:
                message = build_alert(event, payload, self.config)
            kwargs = {"text": message.text, "blocks": message.blocks}
        else:
            kwargs = {"text": escape(str(payload.get("text", event)))}
        try:
            response = self.client.send(**kwargs)
        except (OSError, SlackClientError, http.client.HTTPException) as exc:
            raise DeliveryError(f"Slack webhook {self.name} failed ({type(exc).__name__}); will retry", retryable=True) from None
        except ValueError:  # urllib's "unknown url type: '<the URL>'": no request was made
            raise DeliveryError(f"Slack webhook {self.name}: its URL is not one a request can go to: {WEBHOOK_URL_FIX}", retryable=False) from None
        if response.status_code == 200:
            return None
        error = (response.body or "").strip()
        if error in WEBHOOK_FIXES:
            raise DeliveryError(f"Slack webhook {self.name}: {error}: {WEBHOOK_FIXES[error]}", retryable=False)
        raise DeliveryError(f"Slack webhook {self.name} answered HTTP {response.status_code} ({error or 'no body'}); will retry", retryable=True)
