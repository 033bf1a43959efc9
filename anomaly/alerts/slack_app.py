"""The Acknowledge and Snooze buttons of the Slack alerts, answered by a slack-bolt app that runs
inside ``anomaly serve`` (``SlackAppRunner``).

- **Acknowledge** (``incident_ack``; ``group_ack`` acknowledges every incident of a grouped
  message) records who took the incident on and when (``Store.acknowledge``: the first
  acknowledgement stands), which stops its reminders. The clicked message shows "Acknowledged by
  @who at 09:30 UTC" in place of the button, and a short reply goes in its thread.
- **Snooze 24h / 7d** (``incident_snooze_*``; ``group_snooze_*`` for the whole account) stores a
  silence on the incident's account, campaign and rule (``Store.add_silence``), listed by
  ``anomaly silence list`` and expired with ``anomaly silence expire``. Detection goes on; only
  notifications are held back.

Every listener calls ``ack()`` first, since Slack gives up after 3 seconds. A button value that
names no known incident gets an ephemeral answer to the person who clicked and changes nothing.
The clicked message is edited from its own blocks as the request carries them (the status line
is ours, and the rest goes back as Slack holds it, escaped as it was sent), so a route's mentions
and a grouped message survive the edit.

Requests are checked as bolt checks them: the signing secret (``X-Slack-Signature``, with
requests older than five minutes refused) over HTTP, the app-level token's own connection in
Socket Mode, and the bot token against ``auth.test`` when the app is built. No token, secret or
request body is ever logged. Times are naive UTC, from the ``now`` clock given.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject

from anomaly.alerts.slack_message import (
    ACK,
    ACKNOWLEDGED_BLOCK,
    GROUP_ACK,
    GROUP_SNOOZE_7D,
    GROUP_SNOOZE_24H,
    MAX_BLOCKS,
    SECTION_CHARS,
    SNOOZE_7D,
    SNOOZE_24H,
    SNOOZED_BLOCK,
    acknowledged_text,
    escape,
    moment_text,
    who_text,
)
from anomaly.errors import AnomalyError
from anomaly.store import Silence, Store, utcnow

if TYPE_CHECKING:
    from anomaly.config import Config, SlackAppConfig

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

#: action_id → (how long, as said in a reply, as stored in the reason); group_* snooze the account
SNOOZES: dict[str, tuple[dt.timedelta, str, str]] = {
    SNOOZE_24H: (dt.timedelta(hours=24), "24 h", "24h"),
    SNOOZE_7D: (dt.timedelta(days=7), "7 days", "7d"),
    GROUP_SNOOZE_24H: (dt.timedelta(hours=24), "24 h", "24h"),
    GROUP_SNOOZE_7D: (dt.timedelta(days=7), "7 days", "7d"),
}
MAX_INCIDENT_ID = 2**31 - 1  # the incidents.id column is a 32-bit integer on PostgreSQL
_VALUE = re.compile(r"^[0-9]{1,10}(,[0-9]{1,10})*$")


class SlackAppError(AnomalyError):
    """The Slack app cannot start: a token Slack refuses, or no way to reach Slack."""


# ---------------------------------------------------------------------------------------------
# The app


def build_app(
    config: Config,
    store: Store,
    *,
    client: WebClient | None = None,
    process_before_response: bool = False,
    token_verification_enabled: bool = True,
    listener_executor: Executor | None = None,
    now: Clock = utcnow,
) -> App:
    """A bolt ``App`` for ``config.alerts.slack_app`` whose listeners answer the alert buttons
    against ``store``. ``client`` defaults to a WebClient on the bot token (and ``base_url``).
    With ``token_verification_enabled`` the bot token is checked with ``auth.test`` now; a refusal
    raises SlackAppError. ``process_before_response`` makes a dispatch return only after the
    listener has run (tests; serverless); otherwise the listener runs after the answer to Slack,
    on ``listener_executor`` (default: bolt's own thread pool)."""
    settings = _settings(config)
    client = client or make_client(settings)
    secrets = _secrets(settings)
    try:
        app = App(
            client=client,
            signing_secret=settings.signing_secret.get_secret_value() if settings.signing_secret else "",
            process_before_response=process_before_response,
            token_verification_enabled=token_verification_enabled,
            logger=logging.getLogger("anomaly.alerts.slack_app.bolt"),
            **({"listener_executor": listener_executor} if listener_executor is not None else {}),
        )
    except (BoltError, SlackApiError, SlackClientError, OSError) as exc:
        raise SlackAppError(f"Slack app: the bot token could not be checked with auth.test ({_reason(exc, secrets)}); {_BOT_TOKEN_FIX}") from None
    listeners = _Listeners(store, now)
    app.action(ACK)(listeners.acknowledge)
    app.action(GROUP_ACK)(listeners.acknowledge)
    for action_id in SNOOZES:
        app.action(action_id)(listeners.snooze)

    def on_error(error: Exception, body: dict) -> None:
        """Log a failed listener: the action and incident, never the body (it carries a token)."""
        action = _action_of(body)
        log.error(
            "Slack action %s on incident(s) %s by %s failed: %s",
            action.get("action_id", "?"), action.get("value", "?"), _user_of(body)[0] or "?", _reason(error, secrets),
        )

    app.error(on_error)
    return app


def make_client(settings: SlackAppConfig) -> WebClient:
    """A WebClient on the bot token, at ``base_url`` when one is configured."""
    base_url = settings.base_url or WebClient.BASE_URL
    return WebClient(token=settings.bot_token.get_secret_value(), base_url=base_url if base_url.endswith("/") else base_url + "/")


_BOT_TOKEN_FIX = "set SLACK_BOT_TOKEN (alerts.slack_app.bot_token) to the app's bot token (xoxb-…)"
_APP_TOKEN_FIX = "set SLACK_APP_TOKEN (alerts.slack_app.app_token) to an app-level token (xapp-…) with connections:write"
RECONNECT_SECONDS = 60.0  # between tries to reach Slack in Socket Mode after a start without it


def _settings(config: Config) -> SlackAppConfig:
    if config.alerts.slack_app is None:
        raise SlackAppError("Slack app: alerts.slack_app is not configured")
    return config.alerts.slack_app


def _secrets(settings: SlackAppConfig) -> list[str]:
    return [s.get_secret_value() for s in (settings.bot_token, settings.app_token, settings.signing_secret) if s is not None and s.get_secret_value()]


def _reason(error: BaseException, secrets: list[str]) -> str:
    """``Type: message`` with every configured secret masked."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, SlackApiError):
        text = f"{type(error).__name__}: {error.response.get('error') or 'unknown_error'}"
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _action_of(body: dict) -> dict:
    actions = body.get("actions") or [{}]
    return actions[0] if isinstance(actions[0], dict) else {}


def _user_of(body: dict) -> tuple[str, str]:
    """The clicking user's ID and name (their username, else their name)."""
    user = body.get("user") or {}
    user_id = str(user.get("id") or "")
    return user_id, str(user.get("username") or user.get("name") or user_id)


@dataclass(frozen=True)
class _Click:
    """What a button click carries: who, where, and the message clicked."""

    action_id: str
    value: str
    user_id: str
    by: str  # as stored: slack:U0123ABCD (dana)
    channel: str
    message: dict
    response_url: str

    @classmethod
    def of(cls, body: dict) -> _Click:
        action = _action_of(body)
        user_id, user_name = _user_of(body)
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or ""
        return cls(
            action_id=str(action.get("action_id") or ""),
            value=str(action.get("value") or ""),
            user_id=user_id,
            by=f"slack:{user_id} ({user_name})",
            channel=channel,
            message=body.get("message") or {},
            response_url=str(body.get("response_url") or ""),
        )

    @property
    def for_group(self) -> bool:
        return self.action_id.startswith("group_")

    @property
    def who(self) -> str:
        return who_text(self.by)

    @property
    def thread_ts(self) -> str | None:
        return self.message.get("thread_ts") or self.message.get("ts")


class _Listeners:
    """The button listeners, on one store and clock."""

    def __init__(self, store: Store, now: Clock):
        self.store = store
        self.now = now

    def acknowledge(self, ack: Callable[..., None], body: dict, client: WebClient, respond: Callable[..., Any] | None) -> None:
        """Acknowledge the incident(s) named by the button, show it on the message, reply in its thread."""
        ack()
        click = _Click.of(body)
        rows = self._incidents(click, client, respond)
        if rows is None:
            return
        at = self.now()
        rows = [self.store.acknowledge(row["id"], click.by, now=at) for row in rows]
        mine = [row for row in rows if row["acknowledged_by"] == click.by and row["acknowledged_at"] == at]
        first = min(rows, key=lambda row: row["acknowledged_at"])
        line = acknowledged_text(first["acknowledged_by"], first["acknowledged_at"], at.date())
        self._show(click, client, ACKNOWLEDGED_BLOCK, line, drop_action=click.action_id)
        if not mine:
            _tell(click, client, respond, f"Already {line[0].lower()}{line[1:]}; nothing changed")
            return
        count = f" for {len(mine)} incident{'s' if len(mine) != 1 else ''}" if click.for_group else ""
        self._reply(click, client, f"Acknowledged by {click.who}{count}; reminders stop")

    def snooze(self, ack: Callable[..., None], body: dict, client: WebClient, respond: Callable[..., Any] | None) -> None:
        """Store a silence on the incident (or, from a grouped message, its account) for 24 h or 7 days."""
        ack()
        click = _Click.of(body)
        span, said, reason_span = SNOOZES[click.action_id]
        rows = self._incidents(click, client, respond)
        if rows is None:
            return
        at = self.now()
        until = at + span
        reason = f"snoozed from Slack for {reason_span}"
        if click.for_group:
            accounts = dict.fromkeys(row["account_id"] for row in rows)
            silences = [Silence(until=until, account=account, reason=reason, created_by=click.by) for account in accounts]
        else:
            (row,) = rows
            silences = [Silence(until=until, account=row["account_id"], campaign=row["campaign_id"] or None, rule=row["rule"], reason=reason, created_by=click.by)]
        ids = [self.store.add_silence(silence, now=at) for silence in silences]
        numbers = f"silence{'s' if len(ids) != 1 else ''} {', '.join(map(str, ids))}"
        whole = " the account" if click.for_group else ""
        when = moment_text(until, at.date())
        self._show(click, client, SNOOZED_BLOCK, f"Snoozed{whole} for {said} by {click.who} until {when} ({numbers})")
        self._reply(click, client, f"Snoozed{whole} for {said} by {click.who} ({numbers}, until {when}); detection goes on")

    # -- steps ------------------------------------------------------------------------------------

    def _incidents(self, click: _Click, client: WebClient, respond: Callable[..., Any] | None) -> list[dict] | None:
        """The incidents the button names (one, unless from a grouped message), or None when any
        is unknown; the clicker is told why."""
        malformed = not _VALUE.match(click.value) or (not click.for_group and "," in click.value)
        if malformed or any(int(part) > MAX_INCIDENT_ID for part in click.value.split(",")):
            _tell(click, client, respond, f"This button names no incident (value {escape(click.value[:80])}); nothing changed")
            return None
        ids = list(dict.fromkeys(int(part) for part in click.value.split(",")))
        rows = [self.store.load_incident(incident_id) for incident_id in ids]
        missing = [str(incident_id) for incident_id, row in zip(ids, rows) if row is None]
        if missing:
            _tell(click, client, respond, f"No incident {', '.join(missing)} in this service's store; nothing changed")
            return None
        return rows

    def _show(self, click: _Click, client: WebClient, block_id: str, text: str, *, drop_action: str | None = None) -> None:
        """Rewrite the clicked message with ``text`` as its ``block_id`` status line."""
        if not click.channel or not click.message.get("ts") or not click.message.get("blocks"):
            return
        blocks = with_status(click.message["blocks"], block_id, text, drop_action=drop_action)
        client.chat_update(channel=click.channel, ts=click.message["ts"], text=click.message.get("text") or "", blocks=blocks)

    def _reply(self, click: _Click, client: WebClient, text: str) -> None:
        if click.channel and click.thread_ts:
            client.chat_postMessage(channel=click.channel, thread_ts=click.thread_ts, text=text, unfurl_links=False, unfurl_media=False)


def _tell(click: _Click, client: WebClient, respond: Callable[..., Any] | None, text: str) -> None:
    """An ephemeral message to the person who clicked: through the response URL when the request
    has one, else ``chat.postEphemeral``."""
    if respond is not None and click.response_url:
        respond(text=text, response_type="ephemeral", replace_original=False)
    elif click.channel and click.user_id:
        client.chat_postEphemeral(channel=click.channel, user=click.user_id, text=text)


def with_status(blocks: list[dict], block_id: str, text: str, *, drop_action: str | None = None) -> list[dict]:
    """``blocks`` with a context line ``text`` (mrkdwn, ours) as block ``block_id``: replacing the
    one there, else just before the buttons, else at the end; without the ``drop_action`` button
    (and without a buttons block left empty). Everything else is kept as it is."""
    blocks = copy.deepcopy(blocks)
    if drop_action is not None:
        for block in blocks:
            if block.get("type") == "actions":
                block["elements"] = [e for e in block.get("elements", []) if e.get("action_id") != drop_action]
        blocks = [b for b in blocks if b.get("type") != "actions" or b["elements"]]
    line = ContextBlock(block_id=block_id, elements=[MarkdownTextObject(text=text[:SECTION_CHARS], verbatim=True)]).to_dict()
    at = next((i for i, b in enumerate(blocks) if b.get("block_id") == block_id), None)
    if at is not None:
        blocks[at] = line
        return blocks
    if len(blocks) >= MAX_BLOCKS:
        return blocks
    buttons = next((i for i, b in enumerate(blocks) if b.get("type") == "actions"), len(blocks))
    return [*blocks[:buttons], line, *blocks[buttons:]]


# ---------------------------------------------------------------------------------------------
# Inside anomaly serve


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("Slack app HTTP: " + format, *args)


class SlackAppRunner:
    """The Slack app of ``anomaly serve``: ``start()`` connects in Socket Mode when
    ``alerts.slack_app.app_token`` is set, else serves Slack's HTTP requests on ``host:port`` at
    ``path`` (any other path: 404) in a daemon thread; ``stop()`` disconnects or shuts the server
    down. ``store`` defaults to one of its own on ``store.url``; ``client`` and ``now`` as for
    ``build_app``."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        client: WebClient | None = None,
        now: Clock = utcnow,
        token_verification_enabled: bool = True,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ):
        self.config = config
        self.reconnect_seconds = reconnect_seconds
        self._stopping = threading.Event()
        self._reconnecting: threading.Thread | None = None
        self.settings = _settings(config)
        self._store = store
        self._own_store = store is None
        self._client = client
        self._now = now
        self._verify = token_verification_enabled
        self._executor: ThreadPoolExecutor | None = None
        self.app: App | None = None
        self._socket: Any = None
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def mode(self) -> str:
        return "socket" if self.settings.app_token is not None else "http"

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the HTTP server listens (the real port when 0 was configured), while it runs."""
        return (self.settings.host, self._server.server_address[1]) if self._server is not None else None

    def start(self) -> None:
        """Build the app (checking the bot token) and open the way in from Slack; log which."""
        if self._store is None:
            self._store = Store(self.config.store.url.get_secret_value())
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="slack-app")
        self.app = build_app(
            self.config, self._store, client=self._client, token_verification_enabled=self._verify, listener_executor=self._executor, now=self._now
        )
        if self.mode == "socket":
            self._connect()
        else:
            self._serve()
        log.info("%s", self.describe())

    def describe(self) -> str:
        """One line: how the buttons are answered (and, over HTTP, the bound address)."""
        if self.mode == "socket":
            return "Slack app: buttons answered in Socket Mode"
        if self.address is None:
            return f"Slack app: buttons answered over HTTP at {self.settings.host}:{self.settings.port}{self.settings.path} (not started)"
        host, port = self.address
        return f"Slack app: buttons answered over HTTP at http://{host}:{port}{self.settings.path}"

    def _connect(self) -> None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        self._socket = SocketModeHandler(self.app, self.settings.app_token.get_secret_value())
        try:
            self._socket.connect()
        except SlackApiError as exc:
            self._socket.close()  # the handler's threads started with it
            self._socket = None
            raise SlackAppError(f"Slack app: Socket Mode could not connect ({_reason(exc, _secrets(self.settings))}); {_APP_TOKEN_FIX}") from None
        except (SlackClientError, OSError) as exc:
            # Slack out of reach: the service goes on (alerts wait in the outbox), and so do the tries
            log.warning(
                "Slack app: Socket Mode could not reach Slack (%s); the buttons are answered once it can, trying every %g s",
                _reason(exc, _secrets(self.settings)), self.reconnect_seconds,
            )
            self._reconnecting = threading.Thread(target=self._keep_connecting, name="slack-app-reconnect", daemon=True)
            self._reconnecting.start()

    def _keep_connecting(self) -> None:
        """Try Socket Mode again every ``reconnect_seconds`` until it connects, Slack refuses the
        token, or the runner stops."""
        while not self._stopping.wait(self.reconnect_seconds):
            try:
                self._socket.connect()
            except SlackApiError as exc:
                log.error("Slack app: Socket Mode could not connect (%s); %s", _reason(exc, _secrets(self.settings)), _APP_TOKEN_FIX)
                return
            except (SlackClientError, OSError) as exc:
                log.warning("Slack app: Socket Mode still cannot reach Slack (%s)", _reason(exc, _secrets(self.settings)))
                continue
            log.info("Slack app: connected in Socket Mode")
            return

    def _serve(self) -> None:
        from slack_bolt.adapter.wsgi import SlackRequestHandler

        handler = SlackRequestHandler(self.app, path=self.settings.path)
        try:
            self._server = make_server(self.settings.host, self.settings.port, handler, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
        except OSError as exc:
            raise SlackAppError(f"Slack app: cannot listen on {self.settings.host}:{self.settings.port} ({exc.strerror or exc}); set alerts.slack_app.port to a free port") from None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="slack-app-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Disconnect or stop serving, let the clicks being handled finish, and close the store if
        it is the runner's own. Safe to call twice."""
        self._stopping.set()
        if self._reconnecting is not None:
            self._reconnecting.join(timeout=30)
            self._reconnecting = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._own_store and self._store is not None:
            self._store.engine.dispose()
            self._store = None
