"""Secrets and injection, end to end.

- A full run of the real commands with distinctive fake secrets in the environment (Slack bot and
  app tokens, signing secret, webhook URL, Google Ads developer token, client secret and refresh
  tokens, an OAuth access token, a database password), every failure path that produces a
  message: none of the secrets, nor their usual transforms, appears in anything the run printed,
  logged (at DEBUG, libraries included), wrote or raised.
- Slack mrkdwn injection: hostile values in every field of an incident that reaches Slack, through
  the real message builder and the real sink to the local fake Slack: nothing from data becomes
  markup, a mention or a link, while the configured mentions still ping.
- Report paths: names from data never pick where `anomaly report` writes.

Slack is the local ``FakeSlack``; Google Ads is the fake of tests/test_google_ads.py behind the
real client library, with Google's OAuth token endpoint served on 127.0.0.1.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import re
import socket
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus

import google.auth.transport.requests
import pandas as pd
import pytest
import yaml
from google.api_core import exceptions as api_exceptions

from anomaly import sample
from anomaly.alerts.sinks import Delivery
from anomaly.alerts.slack import SlackSink, SlackWebhookSink
from anomaly.alerts.slack_app import SlackAppError, SlackAppRunner, with_status
from anomaly.alerts.slack_message import (
    ACKNOWLEDGED_BLOCK,
    SlackMessage,
    acknowledged_text,
    build_alert,
    build_group,
    build_group_reminder,
    build_group_reply,
    build_reminder_reply,
    build_thread_reply,
    campaign_link,
)
from anomaly.cli import main
from anomaly.config import (
    PartyConfig,
    SlackAppConfig,
    SlackSinkConfig,
    SlackWebhookSinkConfig,
    load_config,
)
from tests.helpers import copy_default_project
from tests.slack_fake import FakeSlack, sleeps  # noqa: F401 - the fixture
from tests.test_google_ads import (  # noqa: F401 - the fixture
    A1,
    A2,
    A3,
    MANAGER,
    FakeGoogleAds,
    ads,
    ads_error,
    grpc_error,
)
from tests.test_slack_app import _post, click, signed
from tests.test_slack_message import _change, _made, assert_within_limits
from tests.test_slack_webhook import Webhook

# ---------------------------------------------------------------------------------------------
# The fake secrets: each carries MARK, which appears nowhere else, so that any piece of one that
# reaches an output is found, not only the whole

MARK = "LEAKME"
BOT_TOKEN = f"xoxb-{MARK}-bot-7f3a9c2e41d8b605"
APP_TOKEN = f"xapp-1-{MARK}-app-5e8d1b7c9a2f4036"
SIGNING_SECRET = f"{MARK}-signing-0c4f9e2a7d1b8365"
WEBHOOK_PATH = f"/services/T0{MARK}/B0{MARK}/{MARK}-hook-3b7e1f9d2c8a4506"
DEVELOPER_TOKEN = f"{MARK}-devtoken-9a4c2e7f1b3d8056"
CLIENT_SECRET = f"GOCSPX-{MARK}-client-6d1f8b3a9e2c"
REFRESH_TOKEN = f"1//{MARK}-refresh-2e9b4d7a1f6c3058"
REVOKED_REFRESH_TOKEN = f"1//{MARK}-revoked-8d2f6b1a9c4e7035"
ACCESS_TOKEN = f"ya29.{MARK}-access-8c3f1a6e2d9b4057"
DB_PASSWORD = f"{MARK}-db-4f8a2c6e1b9d7053"
CLIENT_ID = "123456789012-fake.apps.googleusercontent.com"
SECRETS = (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, WEBHOOK_PATH, DEVELOPER_TOKEN, CLIENT_SECRET, REFRESH_TOKEN,
           REVOKED_REFRESH_TOKEN, ACCESS_TOKEN, DB_PASSWORD)
GOOGLE_TOKEN_URI = "https://accounts.google.com/o/oauth2/token"
CHANNEL = "C0ALERTS"


def forms(secret: str) -> set[str]:
    """A secret as it could reach an output: as is, URL-quoted, in JSON, in base64, as a header."""
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode().rstrip("="),
        f"Bearer {secret}",
        secret.encode("unicode_escape").decode(),
    }


def leaks(outputs: list[tuple[str, str]], secrets: tuple[str, ...] = SECRETS) -> list[str]:
    """Where a secret (or the mark every one carries) shows, with the text around it."""
    needles = {form for secret in secrets for form in forms(secret)} | {MARK, MARK.lower()}
    found = []
    for where, text in outputs:
        for needle in needles:
            at = text.find(needle)
            if at != -1:
                found.append(f"{where}: {needle!r} in …{text[max(at - 120, 0): at + len(needle) + 40]!r}…")
    return found


# ---------------------------------------------------------------------------------------------
# Google's OAuth token endpoint, on 127.0.0.1


class TokenEndpoint:
    """Answers refresh-token grants as Google does: an access token for ``accepted``, and
    ``400 invalid_grant`` for any other refresh token. Records each form body it received."""

    def __init__(self, accepted: str, access_token: str) -> None:
        self.bodies: list[dict[str, str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = dict(parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
                endpoint.bodies.append(form)
                if form.get("grant_type") == "refresh_token" and form.get("refresh_token") == accepted:
                    status, answer = 200, {"access_token": access_token, "expires_in": 3599, "token_type": "Bearer",
                                           "scope": "https://www.googleapis.com/auth/adwords"}
                else:
                    status, answer = 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def transport(self) -> type[google.auth.transport.requests.Request]:
        """The google-auth transport the Google Ads library refreshes credentials with, sending
        what it would send to Google's token URI to this endpoint instead."""
        local = self.url

        class ToTheLocalEndpoint(google.auth.transport.requests.Request):
            def __call__(self, url: str, *args: Any, **kwargs: Any) -> Any:
                assert url == GOOGLE_TOKEN_URI, url
                return super().__call__(local, *args, **kwargs)

        return ToTheLocalEndpoint


@pytest.fixture
def token_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(REFRESH_TOKEN, ACCESS_TOKEN)
    monkeypatch.setattr("google.ads.googleads.oauth2.Request", endpoint.transport())
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# 1. A full run


def secret_project(folder: Path, fake: FakeSlack, hook: Webhook) -> Path:
    """The demo's config with every secret-bearing setting, each secret read from the environment:
    Slack sinks (bot token, webhook URL), the Slack app (bot and app tokens, signing secret), a
    Google Ads source on the GOOGLE_ADS_* variables and one on a credentials file whose refresh
    token Google refuses; also a CSV source with a bad row."""
    path = copy_default_project(folder)
    sample.write_sample(folder / "sample")
    (folder / "broken.csv").write_text(
        "date,account_id,campaign_id,spend,clicks,leads\n2026-07-01,1,c1,10,5,1\n2026-07-02,1,c1,-5,5,1\n", encoding="utf-8"
    )
    credentials = folder / "google-ads.yaml"
    credentials.write_text(
        f"use_proto_plus: True\ndeveloper_token: {DEVELOPER_TOKEN}\nclient_id: {CLIENT_ID}\n"
        f"client_secret: {CLIENT_SECRET}\nrefresh_token: {REVOKED_REFRESH_TOKEN}\n",
        encoding="utf-8",
    )
    credentials.chmod(0o600)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["store"] = {"url": "sqlite:///anomaly.db"}
    config["sources"] += [
        {"name": "broken", "type": "csv", "metrics": ["broken.csv"]},
        {"name": "ads", "type": "google_ads", "login_customer_id": MANAGER, "customer_ids": [A1, A2, A3], "history_days": 30},
        {"name": "ads-revoked", "type": "google_ads", "credentials": "google-ads.yaml", "customer_ids": [A1]},
    ]
    config["alerts"] = {
        "sinks": [
            {"type": "console"},
            {"type": "jsonl", "path": "alerts.jsonl"},
            {"type": "slack", "channel": CHANNEL, "token": "${SLACK_BOT_TOKEN}", "base_url": fake.base_url, "timeout_seconds": 5},
            {"type": "slack_webhook", "url": "${SLACK_WEBHOOK_URL}", "label": "media", "timeout_seconds": 5},
        ],
        "routes": [{"party": "beacon", "sinks": [f"slack:{CHANNEL}"], "mentions": ["U0DANA1"], "continue": True}],
        "slack_app": {
            "bot_token": "${SLACK_BOT_TOKEN}",
            "app_token": "${SLACK_APP_TOKEN}",
            "signing_secret": "${SLACK_SIGNING_SECRET}",
            "base_url": fake.base_url,
        },
    }
    config["service"] = {"operations_sink": f"slack:{CHANNEL}"}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def with_store(path: Path, url: str, name: str) -> Path:
    """A copy of the config at ``path`` on another store."""
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["store"] = {"url": url}
    other = path.with_name(name)
    other.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return other


def ads_accounts(ads: FakeGoogleAds) -> None:
    """One account that answers, one whose user lacks permission, one the API refuses outright."""
    ads.account(A1, "Riverside Dental")
    for day in ("2026-07-06", "2026-07-07", "2026-07-08"):
        ads.add_metrics(A1, day, "111", 250_000_000, 60)
        ads.add_conversions(A1, day, "111", "SUBMIT_LEAD_FORM", 3.0)
    ads.fail(A2, "metrics", ads_error("authorization_error", "USER_PERMISSION_DENIED", request_id="req-denied",
                                      message="User doesn't have permission to access customer."))
    ads.fail(A3, "metrics", grpc_error(api_exceptions.PermissionDenied, request_id="req-grpc"))


def test_no_secret_reaches_any_output_of_a_full_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture,
    recwarn: pytest.WarningsRecorder, sleeps: list[float], ads: FakeGoogleAds, token_endpoint: TokenEndpoint,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("slack_sdk", "slack_bolt", "urllib3", "google", "grpc", "apscheduler", "sqlalchemy"):
        caplog.set_level(logging.DEBUG, logger=name)  # every library logs all it would
    ads_accounts(ads)
    outputs: list[tuple[str, str]] = []
    raised: list[BaseException] = []

    with FakeSlack(token=BOT_TOKEN, channels={CHANNEL: "#media-alerts"}) as fake:
        hook = Webhook()
        hook.url = hook.url.replace("/services/T000/B000/s3cr3tWebhookPart", WEBHOOK_PATH)
        for name in [n for n in os.environ if n.startswith("GOOGLE_ADS_")]:
            monkeypatch.delenv(name)
        for name, value in {
            "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_WEBHOOK_URL": hook.url, "DB_PASSWORD": DB_PASSWORD, "GOOGLE_ADS_USE_PROTO_PLUS": "True",
            "GOOGLE_ADS_DEVELOPER_TOKEN": DEVELOPER_TOKEN, "GOOGLE_ADS_CLIENT_ID": CLIENT_ID,
            "GOOGLE_ADS_CLIENT_SECRET": CLIENT_SECRET, "GOOGLE_ADS_REFRESH_TOKEN": REFRESH_TOKEN,
        }.items():
            monkeypatch.setenv(name, value)
        path = secret_project(tmp_path, fake, hook)

        def cli(*argv: str, config: Path = path) -> int:
            code = main(["--config", str(config), "-v", *argv])
            out, err = capsys.readouterr()
            outputs.extend([(f"stdout of {argv}", out), (f"stderr of {argv}", err)])
            if (tmp_path / "anomaly.db").exists():  # the errors of failed sends, before a later send clears them
                outputs.extend((f"store {where} after {argv}", text) for where, text in _store_text(tmp_path / "anomaly.db"))
            return code

        try:
            assert cli("check") == 0

            # the first day: Slack answers 500 until the retries run out, the webhook is rate
            # limited, then removed; the sources fail each in its own way
            fake.fail_next("chat.postMessage", status=500, times=4)
            hook.script += [(429, "rate_limited", {"Retry-After": "1"}), (404, "no_service", {})]
            assert cli("run", "--today", "2026-07-12", "--as-of", "2026-07-10", "--store-changes") == 1
            # the next day: Slack refuses the token, then drops a connection
            fake.token = "xoxb-another-workspace"
            assert cli("run", "--today", "2026-07-12", "--as-of", "2026-07-11", "--store-changes") == 1
            fake.token = BOT_TOKEN
            fake.fail_next("conversations.history", drop=True)
            hook.script += [(500, "internal_error", {}), (500, "internal_error", {}), (500, "internal_error", {}), (500, "internal_error", {})]
            assert cli("run", "--today", "2026-07-12", "--as-of", "2026-07-11", "--store-changes") == 1
            # the last day of data: everything that is still pending goes out
            assert cli("run", "--today", "2026-07-12") == 1

            for argv in (("incidents",), ("incidents", "--format", "json"), ("incidents", "--format", "csv"), ("status",),
                         ("backtest", "--from", "2026-06-01", "--to", "2026-07-12"),
                         ("backtest", "--from", "2026-06-01", "--to", "2026-07-12", "--format", "json"),
                         ("silence", "list", "--all")):
                assert cli(*argv) == 0
            incident = _first_incident(tmp_path / "anomaly.db")
            assert cli("report", str(incident), "--out", str(tmp_path / "reports")) == 0
            assert cli("report", "--party", "beacon", "--out", str(tmp_path / "reports")) == 0
            # Socket Mode: Slack takes the bot token and refuses the app token, so serve stops at once
            assert cli("serve") == 1

            _slack_app_over_http(path, fake, raised)

            # PostgreSQL out of reach, with the password in the user info and in the query
            port = closed_port()
            for name, url in (("pg-userinfo.yaml", f"postgresql+psycopg://anomaly:${{DB_PASSWORD}}@127.0.0.1:{port}/anomaly"),
                              ("pg-query.yaml", f"postgresql+psycopg://anomaly@127.0.0.1:{port}/anomaly?password=${{DB_PASSWORD}}")):
                assert cli("status", config=with_store(path, url, name)) == 1
        finally:
            hook.server.shutdown()
            hook.server.server_close()
        api_calls = fake.requests

    outputs += [(f"log record {r.name} {r.levelname}", _formatted(r)) for r in caplog.records]
    outputs += [(f"raised {type(e).__name__}", f"{e}\n{e!r}") for e in raised]
    outputs += [(f"warning {w.category.__name__}", str(w.message)) for w in recwarn]
    written = [p for p in sorted(tmp_path.rglob("*")) if p.is_file() and p.name != "google-ads.yaml"]
    outputs += [(f"file {p.relative_to(tmp_path)}", p.read_bytes().decode("utf-8", "replace")) for p in written]

    found = leaks(outputs)
    assert not found, "\n".join(found)

    # the secrets were in play: each went where it belongs ...
    assert {r.headers.get("authorization") for r in api_calls} >= {f"Bearer {BOT_TOKEN}", f"Bearer {APP_TOKEN}"}
    assert {b.get("refresh_token") for b in token_endpoint.bodies} == {REFRESH_TOKEN, REVOKED_REFRESH_TOKEN}
    assert {b.get("client_secret") for b in token_endpoint.bodies} == {CLIENT_SECRET}
    assert hook.bodies and ads.queried("metrics") == [A1, A2, A3] * 4
    # ... and the scan read every kind of output, failures included
    text = "\n".join(t for _, t in outputs)
    assert len(text) > 200_000 and len(caplog.records) > 300 and len(written) >= 10
    for expected in (
        "OK — 4 source(s)",  # check
        "could not get an OAuth access token with the credentials file",  # the refused refresh token
        "USER_PERMISSION_DENIED", "PermissionDenied",  # Google Ads refuses two accounts
        "broken.csv: line 3, column spend",  # the broken source
        "HTTP 500 (fatal_error) after 3 retries", f"Slack invalid_auth for {CHANNEL}",  # Slack deliveries that failed
        "Slack webhook slack-webhook:media: no_service",
        "Sending a request - url:",  # the SDK's own debug log was captured
        "Slack app: Socket Mode could not connect (SlackApiError: invalid_auth)",
        "Slack app: the bot token could not be checked with auth.test",
        "failed: SlackApiError: cant_update_message",  # a button's listener
        "cannot open the store at postgresql+psycopg://anomaly:***@127.0.0.1:",
        "Written: ",  # reports
    ):
        assert expected in text, expected
    assert any(where.startswith("store outbox.last_error") for where, _ in outputs)


def _first_incident(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT min(id) FROM incidents WHERE campaign_id != ''").fetchone()[0]


def _store_text(db: Path) -> list[tuple[str, str]]:
    """Every text column of every row of the store, by table and column."""
    found = []
    with sqlite3.connect(db) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description]
            for row in cursor:
                found += [(f"{table}.{name}", value) for name, value in zip(names, row) if isinstance(value, str) and value]
    return found


def _formatted(record: logging.LogRecord) -> str:
    """A log record as a handler would write it, with its arguments, exception and stack."""
    return "\n".join([logging.Formatter("%(name)s %(levelname)s %(message)s").format(record), repr(record.args)])


def _slack_app_over_http(path: Path, fake: FakeSlack, raised: list[BaseException]) -> None:
    """The Slack app of this config over HTTP (signing secret): a signed click that works, one
    whose Slack call fails, unsigned and forged requests; then a bot token Slack refuses."""
    config, _ = load_config(path)
    settings = config.alerts.slack_app.model_copy(update={"app_token": None, "host": "127.0.0.1", "port": 0})
    config = config.model_copy(update={"alerts": config.alerts.model_copy(update={"slack_app": settings})})
    message = next(m for m in fake.messages(CHANNEL) if any(b["type"] == "actions" for b in m.get("blocks", [])))
    runner = SlackAppRunner(config)
    runner.start()
    try:
        host, port = runner.address
        url = f"http://{host}:{port}/slack/events"
        fake.fail_next("chat.update", ok_false="cant_update_message")  # the listener of one of the clicks fails
        for action in ("incident_ack", "incident_snooze_24h"):
            raw, headers = signed(click(fake, message, action), secret=SIGNING_SECRET)
            assert _post(url, raw, headers) == 200
        assert _post(url, raw, {"content-type": headers["content-type"]}) == 401
        forged, forged_headers = signed(click(fake, message, "incident_ack"), secret="not-the-signing-secret")
        assert _post(url, forged, forged_headers) == 401
    finally:
        runner.stop()  # waits for the clicks being handled
    fake.token = "xoxb-revoked-elsewhere"
    refused = SlackAppRunner(config)
    try:
        with pytest.raises(SlackAppError) as caught:
            refused.start()
        raised.append(caught.value)
    finally:
        refused.stop()
        fake.token = BOT_TOKEN


def test_the_webhook_url_stays_out_of_the_sdk_log(caplog: pytest.LogCaptureFixture, sleeps: list[float]) -> None:
    caplog.set_level(logging.DEBUG)
    hook = Webhook()
    try:
        hook.url = hook.url.replace("/services/T000/B000/s3cr3tWebhookPart", WEBHOOK_PATH)
        hook.script.append((429, "rate_limited", {"Retry-After": "1"}))
        SlackWebhookSink(SlackWebhookSinkConfig(type="slack_webhook", url=hook.url, timeout_seconds=5)).send("opened", _made())
    finally:
        hook.server.shutdown()
        hook.server.server_close()
    assert len(hook.bodies) == 2 and len(sleeps) == 1
    found = leaks([(f"log record {r.name} {r.levelname}", _formatted(r)) for r in caplog.records])
    assert not found, "\n".join(found)


# ---------------------------------------------------------------------------------------------
# 2. Slack mrkdwn injection

#: what data may try: every kind of mention and link Slack parses, its formatting, entities, line
#: breaks that would start a line of our own, invisible and bidirectional characters
HOSTILE = (
    "<!channel> <!here> <!everyone> <@U123ABC> <#C123ABC|general> <!subteam^S1ABC> <!date^1392734382^{date}|x> "
    "<http://evil.example|click here> <https://evil.example> <mailto:x@evil.example|mail> "
    "*bold* _it_ ~st~ `code` ```block``` & &amp; &lt;!channel&gt; @here #general https://evil.example "
    "\n> quoted on a line of its own\r\n*Next step:* wire the budget to evil\u2028• fake line\u0085\x0b\x0c"
    "\u200b<\u200b!channel> \u202eRTL override\u202c \u2066isolate\u2069 \u200f\t\x00\x1b[31m"
)
LONG = "<!channel>" * 600 + "&" * 3000 + "<" * 3000 + "\n> quoted on a line of its own"
DANA, BEACON_GROUP = "U0DANA1", "S0BEACON"
MENTIONS = [DANA, BEACON_GROUP, "here"]
PINGS = f"<@{DANA}> <!subteam^{BEACON_GROUP}> <!here>"
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
#: starts of lines that only a line break from data could make
DATA_LINE_STARTS = ("&gt; quoted on a line", "*Next step:* wire", "• fake line")


def hostile_config(text: str):
    """The embedded config with the Slack app (so alerts carry buttons) and party names from data."""
    config, _ = load_config(Path(__file__).resolve().parent.parent / "config.yaml")
    parties = {"beacon": PartyConfig(name=f"Beacon {text}", domains=["beaconreach.example"]),
               "northwind": PartyConfig(name=f"Northwind {text}", domains=["northwind-digital.example"])}
    app = SlackAppConfig(bot_token="xoxb-unused", signing_secret="unused")
    return config.model_copy(update={"parties": parties, "alerts": config.alerts.model_copy(update={"slack_app": app})})


def hostile_payload(text: str, *, google_ads_ids: bool, managing_party: str = "beacon", family: str = "cost_per_lead") -> dict:
    """An incident whose every field that comes from data holds ``text``."""
    ids = {"account_id": "4821937710", "campaign_id": "20118341"} if google_ads_ids else {"account_id": f"a {text}", "campaign_id": f"c {text}"}
    return _made(
        **ids,
        account_name=f"Account {text}",
        campaign_name=f"Campaign {text}",
        currency=text,
        family=family,
        rule=f"rule {text}",
        metric=f"metric {text}",
        opening_severity=f"opened {text}",
        critical_on="2026-07-11",
        managing_party=managing_party,
        excess_by_party={"beacon": 400.0, "northwind": 100.0, f"party {text}": 100.0},
        changes=[
            _change(0, user_email=f"user {text}", resource_type=f"resource {text}", operation=f"operation {text}",
                    changed_fields=f"fields {text}", party="beacon"),
            _change(1, user_email="", client_type=f"client {text}", party=f"party {text}"),
        ],
        update={"severity": f"severity {text}", "excess_step": 5000.0},
        acknowledged_by=f"slack:{DANA} ({text})",
        acknowledged_at="2026-07-10T09:30:00",
        mentions=[*MENTIONS, "<!channel>", f"{DANA}> <!everyone", text],
    )


def every_message(payload: dict, config) -> dict[str, SlackMessage]:
    """Every message the builder makes of ``payload``, with a status line from the Slack app."""
    resolved = {**payload, "status": "resolved", "resolved_on": "2026-07-12"}
    total = {**payload, "campaign_id": "", "incident_id": 8}
    other = {**payload, "incident_id": 9, "severity": "warning", "excess_cost": 50.0}
    opened = build_alert("opened", payload, config)
    statuses = [with_status(opened.blocks, ACKNOWLEDGED_BLOCK, acknowledged_text(who, dt.datetime(2026, 7, 10, 9, 30), dt.date(2026, 7, 11)))
                for who in (payload["acknowledged_by"], payload["account_name"])]
    return {
        "alert opened": opened,
        "alert updated": build_alert("updated", payload, config),
        "alert reminder": build_alert("reminder", payload, config),
        "alert resolved": build_alert("resolved", resolved, config),
        "reply updated": build_thread_reply("updated", payload, config),
        "reply resolved": build_thread_reply("resolved", resolved, config),
        "reminder": build_reminder_reply(payload, config),
        "reminder on its own": build_reminder_reply(payload, config, standalone=True),
        "grouped": build_group([payload, total, other], config),
        "grouped reminder": build_group_reminder([payload, total], config),
        "group reply updated": build_group_reply("updated", payload, config),
        "group reply resolved": build_group_reply("resolved", resolved, config),
        "group reply reminder": build_group_reply("reminder", total, config),
        **{f"acknowledged by {i}": SlackMessage(text=opened.text, blocks=blocks) for i, blocks in enumerate(statuses)},
    }


def text_objects(message: SlackMessage) -> list[tuple[str, str]]:
    """(type, text) of every text object in the blocks, and the fallback text (mrkdwn)."""
    found = [("mrkdwn", message.text)]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                found.append((node["type"], node["text"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.blocks)
    return found


def assert_inert(message: SlackMessage, ours: list[str], *, one_line: bool = True) -> None:
    """Nothing from data is markup: no angle bracket but those of ``ours`` (our links and the
    configured mentions), every '&' an entity; with ``one_line``, no line that data started, no
    control character and no bidi control."""
    for kind, text in text_objects(message):
        if not one_line:
            assert "<" not in text and ">" not in text and not re.search(r"&(?!(?:amp|lt|gt);)", text), text
            continue
        assert not BIDI_CONTROLS.search(text), text
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f\x85\u2028\u2029]", text), text
        if kind == "plain_text":
            assert "<" not in text and ">" not in text and "\n" not in text, text
            continue
        rest = text
        for sequence in ours:
            rest = rest.replace(sequence, "")
        assert "<" not in rest and ">" not in rest, text
        assert not re.search(r"&(?!(?:amp|lt|gt);)", rest), text
        assert not [line for line in text.split("\n") if line.startswith(DATA_LINE_STARTS)], text


@pytest.mark.parametrize(
    ("text", "settings"),
    [
        pytest.param(HOSTILE, {"google_ads_ids": True}, id="names-with-google-ads-ids"),
        pytest.param(HOSTILE, {"google_ads_ids": False, "managing_party": f"key {HOSTILE}", "family": f"family {HOSTILE}"}, id="every-field"),
        pytest.param(LONG, {"google_ads_ids": True}, id="long"),
    ],
)
def test_no_markup_from_data_reaches_slack_and_the_configured_mentions_ping(text: str, settings: dict) -> None:
    config = hostile_config(text)
    payload = hostile_payload(text, **settings)
    link = campaign_link(payload, config)
    ours = [f"<{link}|Open the campaign in Google Ads>"] * (link is not None) + [f"<@{DANA}>", f"<!subteam^{BEACON_GROUP}>", "<!here>"]

    messages = every_message(payload, config)

    for name, message in messages.items():
        assert_within_limits(message)
        assert_inert(message, ours)
    # the route's mentions ping, with the next step and in the notification; never when resolved
    for name in ("alert opened", "alert updated", "reminder", "reply updated", "grouped", "grouped reminder", "group reply reminder"):
        assert messages[name].text.endswith(PINGS), name
    next_step = json.dumps(messages["alert opened"].blocks[3], ensure_ascii=False)
    assert PINGS in next_step
    assert link is None or ours[0] in next_step or text == LONG  # a step that fills the section leaves the link out
    assert "<" not in messages["alert resolved"].text and "<@" not in json.dumps(messages["alert resolved"].blocks).replace(ours[0], "")
    assert f"Acknowledged by <@{DANA}> at 09:30 UTC on Fri Jul 10" in json.dumps(messages["acknowledged by 0"].blocks)


def test_a_hostile_alert_reaches_slack_inert_through_the_sinks(sleeps: list[float]) -> None:
    config = hostile_config(HOSTILE)
    payload = hostile_payload(HOSTILE, google_ads_ids=True)
    ours = [f"<{campaign_link(payload, config)}|Open the campaign in Google Ads>", f"<@{DANA}>", f"<!subteam^{BEACON_GROUP}>", "<!here>"]
    hook = Webhook()
    try:
        with FakeSlack(channels={CHANNEL: "#media-alerts"}) as fake:
            sink = SlackSink(SlackSinkConfig(type="slack", channel=CHANNEL, token=fake.token, base_url=fake.base_url), config)
            receipt = sink.send("opened", payload, Delivery("7:opened", 7, dt.datetime(2026, 7, 10, 9, 0)))
            sink.send("updated", payload, Delivery("7:updated", 7, dt.datetime(2026, 7, 11, 9, 0), thread=receipt))
            bodies = {r.method + str(i): json.loads(r.raw) for i, r in enumerate(fake.requests) if r.method in ("chat.postMessage", "chat.update")}
            # a failed job reported to an operations channel: its error text may quote data
            sink.send("job_failed", {"text": f"anomaly serve: job pull:sample failed: {HOSTILE}"})
            (operations,) = [json.loads(r.raw) for r in fake.calls("chat.postMessage")][2:]
        SlackWebhookSink(SlackWebhookSinkConfig(type="slack_webhook", url=hook.url, timeout_seconds=5), config).send("opened", payload)
        bodies["webhook"] = hook.bodies[0]
    finally:
        hook.server.shutdown()
        hook.server.server_close()

    assert sorted(name.rstrip("0123456789") for name in bodies) == ["chat.postMessage", "chat.postMessage", "chat.update", "webhook"]
    opened = build_alert("opened", payload, config)
    first = next(body for name, body in bodies.items() if name.startswith("chat.postMessage"))
    assert (first["text"], first["blocks"]) == (opened.text, opened.blocks)  # what was built is what Slack got
    for body in bodies.values():
        assert_inert(SlackMessage(text=body["text"], blocks=body.get("blocks") or []), ours)
    assert first["text"].endswith(PINGS)
    assert operations["text"].startswith("anomaly serve: job pull:sample failed: &lt;!channel&gt; &lt;!here&gt;")
    assert_inert(SlackMessage(text=operations["text"], blocks=[]), [], one_line=False)  # an error's own lines stay


# ---------------------------------------------------------------------------------------------
# 3. Report paths


@pytest.mark.filterwarnings("ignore:Glyph 0 .* missing from font")  # the NUL in a party's name, on the charts
def test_names_from_data_never_choose_where_reports_are_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    project = tmp_path / "project"
    project.mkdir()
    path = copy_default_project(project)
    sample.write_sample(project / "sample")
    metrics = pd.read_csv(project / "sample" / "metrics.csv", dtype=str, keep_default_na=False)
    story = metrics["campaign_id"] == sample.STORY_CAMPAIGN.campaign_id
    metrics.loc[story, "account_name"] = "../../../outside/Harbor"
    metrics.loc[story, "campaign_name"] = "/etc/passwd/../" + "x" * 300 + "\\..\\..\\evil"
    metrics.to_csv(project / "sample" / "metrics.csv", index=False)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["parties"]["beacon"]["name"] = "../../outside/Beacon\0Reach/" + "y" * 300
    config["parties"]["northwind"]["name"] = "/tmp/Northwind"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    out = tmp_path / "out" / "reports"

    def cli(*argv: str) -> tuple[int, str]:
        code = main(["--config", str(path), *argv])
        printed = capsys.readouterr()
        return code, printed.out + printed.err

    assert cli("run", "--today", str(sample.END))[0] == 0
    incident = _first_incident(project / "sample" / "anomaly.db")
    before = _tree(tmp_path)

    results = [
        cli("report", str(incident), "--out", str(out)),
        cli("report", "--party", config["parties"]["beacon"]["name"], "--out", str(out)),
        cli("report", "--party", "/tmp/Northwind", "--party", "beacon", "--out", str(out)),
        cli("report", "--party", "../../outside", "--out", str(out)),  # no such party
    ]

    assert [code for code, _ in results] == [0, 0, 0, 1]
    assert "no party is called '../../outside'" in results[3][1]
    added = _tree(tmp_path) - before
    assert {p.parent for p in added} == {out}
    assert sorted(p.name for p in added) == sorted(
        f"{stem}.{suffix}" for stem in (f"incident-{incident}", "scorecard-beacon-2026-06-13-2026-07-12", "scorecard-northwind-beacon-2026-06-13-2026-07-12")
        for suffix in ("html", "md")
    )
    for _, printed in results[:3]:  # "Written: HTML" and the Markdown's path on the next line
        lines = printed.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("Written: "))
        written = [Path(lines[at].removeprefix("Written: ").strip()), Path(lines[at + 1].strip())]
        assert [p.parent for p in written] == [out.resolve()] * 2


def _tree(folder: Path) -> set[Path]:
    """Every file under ``folder`` but the SQLite store's own (its journal comes and goes)."""
    return {p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("anomaly.db")}
