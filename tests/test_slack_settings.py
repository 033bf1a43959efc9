"""The secret settings of the Slack sinks and the Slack app: `anomaly check` refuses a webhook URL
that is not Slack's (or this machine's) and an empty token, signing secret or URL, naming the
setting and never its value; and a secret that reaches an error anyway (a library quoting what it
was given) is replaced by its ``${VAR}`` in every output: the console, the logs, the operations
sink and the errors stored with a notification."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest
import yaml
from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from pydantic import SecretStr

import anomaly.pipeline
from anomaly import sample
from anomaly.alerts import DeliveryError
from anomaly.alerts.slack import SlackWebhookSink
from anomaly.cli import main
from anomaly.config import SlackWebhookSinkConfig, load_config
from anomaly.errors import ConfigError
from anomaly.ownership import ownership_periods
from anomaly.pipeline import run_cycle
from anomaly.service import Service
from anomaly.store import Store
from tests.helpers import copy_default_project

MARK = "LEAKME"
HOOK_PATH = f"/services/T0{MARK}/B0{MARK}/{MARK}-hook-3b7e1f9d2c8a4506"
NO_SCHEME = f"hooks.slack.com{HOOK_PATH}"
WEBHOOK = f"https://hooks.slack.com{HOOK_PATH}"
EXPECTED_URL = "expected the URL Slack gave for the incoming webhook, https://hooks.slack.com/services/…"
INVALID = "The configuration is invalid; `anomaly check` lists every problem."


def project(folder: Path, sinks: list[dict], **alerts: object) -> Path:
    """The embedded default with its sample in ``folder``, alerts to the console and ``sinks``."""
    path = copy_default_project(folder)
    sample.write_sample(folder / "sample")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["alerts"] = {"sinks": [{"type": "console"}, *sinks], **alerts}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def cli(capsys: pytest.CaptureFixture[str], path: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--config", str(path), *argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------
# Refused by `anomaly check`


def test_a_webhook_url_without_a_scheme_is_one_clear_line_from_check_and_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", NO_SCHEME)
    path = project(tmp_path, [{"type": "slack_webhook", "url": "${SLACK_WEBHOOK_URL}", "label": "media"}])
    problem = f"{path}: alerts.sinks[1].url: {EXPECTED_URL}, got a value that does not start with https:// (not shown: it is a secret)"

    checked = cli(capsys, path, "check")
    ran = cli(capsys, path, "run", "--today", str(sample.END))

    assert checked == (1, "", f"{problem}\n1 problem found.\n")
    assert ran == (1, "", f"{problem}\n{INVALID}\n")
    assert not (tmp_path / "sample" / "anomaly.db").exists()  # refused before anything was pulled


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        pytest.param(NO_SCHEME, "a value that does not start with https://", id="no-scheme"),
        pytest.param(f"http://hooks.slack.com{HOOK_PATH}", "an http:// URL, which would send alerts unencrypted", id="http-to-slack"),
        pytest.param(f"https://evil.example{HOOK_PATH}", "a URL on another host than hooks.slack.com or hooks.slack-gov.com", id="other-host"),
        pytest.param(
            f"https://hooks.slack.com.evil.example{HOOK_PATH}", "a URL on another host than hooks.slack.com or hooks.slack-gov.com", id="lookalike-host"
        ),
        pytest.param(
            f"https://hooks.slack.com@evil.example{HOOK_PATH}", "a URL on another host than hooks.slack.com or hooks.slack-gov.com", id="slack-as-user"
        ),
        pytest.param(f"{WEBHOOK}\n", "one with a space, a line break or another unprintable character in it", id="line-break"),
        pytest.param(f"https://hooks.slack.com:{MARK}{HOOK_PATH}", "a URL whose host or port cannot be read", id="bad-port"),
        pytest.param(f"ftp://hooks.slack.com{HOOK_PATH}", "a value that does not start with https://", id="other-scheme"),
    ],
)
def test_a_webhook_url_that_is_not_slacks_is_refused_without_showing_it(tmp_path: Path, url: str, problem: str) -> None:
    path = project(tmp_path, [{"type": "slack_webhook", "url": "${SLACK_WEBHOOK_URL}"}])
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={"SLACK_WEBHOOK_URL": url})
    assert str(raised.value) == f"{path}: alerts.sinks[1].url: {EXPECTED_URL}, got {problem} (not shown: it is a secret)"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(WEBHOOK, id="slack"),
        pytest.param(f"https://HOOKS.slack.com{HOOK_PATH}", id="slack-in-capitals"),
        pytest.param(f"https://hooks.slack-gov.com{HOOK_PATH}", id="govslack"),
        pytest.param("https://hooks.slack.com/triggers/T0/1234/abcdef", id="workflow-trigger"),
        pytest.param(f"http://127.0.0.1:8931{HOOK_PATH}", id="this-machine"),
        pytest.param(f"http://localhost{HOOK_PATH}", id="localhost"),
        pytest.param(f"http://[::1]:8931{HOOK_PATH}", id="this-machine-ipv6"),
    ],
)
def test_a_webhook_url_of_slack_or_this_machine_is_accepted(tmp_path: Path, url: str) -> None:
    path = project(tmp_path, [{"type": "slack_webhook", "url": "${SLACK_WEBHOOK_URL}"}])
    config, _ = load_config(path, environ={"SLACK_WEBHOOK_URL": url})
    assert config.alerts.sinks[1].url.get_secret_value() == url


APP = {"bot_token": "${SLACK_BOT_TOKEN}", "app_token": "${SLACK_APP_TOKEN}", "signing_secret": "${SLACK_SIGNING_SECRET}"}
SECRETS = {"SLACK_BOT_TOKEN": f"xoxb-{MARK}-bot", "SLACK_APP_TOKEN": f"xapp-1-{MARK}-app", "SLACK_SIGNING_SECRET": f"{MARK}-signing",
           "SLACK_WEBHOOK_URL": WEBHOOK}


BOT = "the Slack app's bot token (xoxb-…)"


@pytest.mark.parametrize(
    ("empty", "problems"),
    [
        pytest.param("SLACK_BOT_TOKEN", [("alerts.sinks[1].token", BOT), ("alerts.slack_app.bot_token", BOT)], id="bot-token"),
        pytest.param("SLACK_WEBHOOK_URL", [("alerts.sinks[2].url", EXPECTED_URL.removeprefix("expected "))], id="webhook-url"),
        pytest.param("SLACK_APP_TOKEN", [("alerts.slack_app.app_token", "the app-level token (xapp-…)")], id="app-token"),
        pytest.param("SLACK_SIGNING_SECRET", [("alerts.slack_app.signing_secret", "the app's signing secret")], id="signing-secret"),
    ],
)
@pytest.mark.parametrize("value", [pytest.param("", id="empty"), pytest.param("  ", id="blank")])
def test_an_empty_slack_secret_is_refused_with_its_path(tmp_path: Path, empty: str, problems: list[tuple[str, str]], value: str) -> None:
    sinks = [{"type": "slack", "channel": "C0ALERTS", "token": "${SLACK_BOT_TOKEN}"}, {"type": "slack_webhook", "url": "${SLACK_WEBHOOK_URL}"}]
    path = project(tmp_path, sinks, slack_app=APP)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={**SECRETS, empty: value})
    assert str(raised.value) == "\n".join(f"{path}: {where}: expected {what}, got an empty value" for where, what in problems)


def test_a_token_written_empty_in_the_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project(tmp_path, [{"type": "slack", "channel": "C0ALERTS", "token": ""}])
    assert cli(capsys, path, "check") == (
        1, "", f"{path}: alerts.sinks[1].token: expected the Slack app's bot token (xoxb-…), got an empty value\n1 problem found.\n"
    )


# ---------------------------------------------------------------------------------------------
# A secret in an error all the same


def test_a_webhook_url_that_urllib_refuses_fails_the_send_without_quoting_it() -> None:
    settings = SlackWebhookSinkConfig.model_construct(  # as no config can make it now: unchecked
        type="slack_webhook", url=SecretStr(NO_SCHEME), label="media", timeout_seconds=5.0, max_retries=0
    )
    with pytest.raises(DeliveryError) as raised:
        SlackWebhookSink(settings).send("job_failed", {"text": "a job failed"})
    assert str(raised.value) == (
        "Slack webhook slack-webhook:media: its URL is not one a request can go to: "
        "set SLACK_WEBHOOK_URL to the URL Slack gave (https://hooks.slack.com/services/…)"
    )
    assert not raised.value.retryable and raised.value.__cause__ is None and raised.value.__suppress_context__


def test_an_unforeseen_error_quoting_a_secret_is_printed_and_logged_with_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", WEBHOOK)
    path = project(tmp_path, [{"type": "slack_webhook", "url": "${SLACK_WEBHOOK_URL}", "label": "media"}])

    def cycle_that_fails(*args: object, **kwargs: object) -> None:
        logging.getLogger("urllib3.connectionpool").warning("Retrying POST %s", WEBHOOK)
        try:
            raise OSError(f"connection reset by {WEBHOOK}")
        except OSError as exc:
            raise ValueError(f"unknown url type: {WEBHOOK!r}") from exc

    monkeypatch.setattr(anomaly.pipeline, "run_cycle", cycle_that_fails)
    code, out, err = cli(capsys, path, "run")

    assert code == 1 and out == ""
    assert err.startswith("Traceback (most recent call last):\n") and err.endswith("ValueError: unknown url type: '${SLACK_WEBHOOK_URL}'\n")
    assert "OSError: connection reset by ${SLACK_WEBHOOK_URL}\n" in err
    assert [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"] == ["Retrying POST ${SLACK_WEBHOOK_URL}"]
    assert MARK not in err + caplog.text


class QuotingSink:
    """A sink whose errors quote the URL it posts to, as a careless one would."""

    name = "slack-webhook:media"

    def send(self, event: str, payload: dict, delivery: object = None) -> None:
        raise DeliveryError(f"POST {WEBHOOK} failed", retryable=True)


def test_the_error_stored_with_a_notification_names_the_secret_by_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", WEBHOOK)
    path = project(tmp_path, [{"type": "slack_webhook", "url": "${SLACK_WEBHOOK_URL}", "label": "media"}])
    config, rules = load_config(path)
    store = Store(config.store.url.get_secret_value())
    store.migrate()

    report = run_cycle(config, rules, ownership_periods(config), store, [QuotingSink()], today=sample.END)

    errors = {n["last_error"] for n in store.notifications() if n["sink"] == "slack-webhook:media"}
    assert report.delivery.failed > 0 and errors == {"POST ${SLACK_WEBHOOK_URL} failed"}


def test_a_failed_job_quoting_a_secret_is_logged_and_reported_with_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", WEBHOOK)
    path = project(
        tmp_path, [{"type": "slack_webhook", "url": "${SLACK_WEBHOOK_URL}", "label": "media"}, {"type": "jsonl", "path": "ops.jsonl"}]
    )
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump({**config, "service": {"operations_sink": "jsonl:ops.jsonl"}}, sort_keys=False), encoding="utf-8")
    service = Service(path, scheduler=BackgroundScheduler())
    error = ValueError(f"unknown url type: {WEBHOOK!r}")
    traceback_text = f'Traceback (most recent call last):\n  File "client.py", line 152\nValueError: unknown url type: {WEBHOOK!r}\n'
    when = dt.datetime(2026, 7, 12, 9, 0, tzinfo=dt.UTC)

    service._on_job_trouble(JobExecutionEvent(EVENT_JOB_ERROR, "deliver", None, when, exception=error, traceback=traceback_text))

    (logged,) = [r.getMessage() for r in caplog.records if r.name == "anomaly.service"]
    assert logged == (
        "job deliver (run at 2026-07-12 09:00:00 UTC) failed: unknown url type: '${SLACK_WEBHOOK_URL}'\n"
        + traceback_text.replace(WEBHOOK, "${SLACK_WEBHOOK_URL}")
    )
    (report,) = [json.loads(line) for line in (tmp_path / "ops.jsonl").read_text(encoding="utf-8").splitlines()]
    assert report["error"] == "unknown url type: '${SLACK_WEBHOOK_URL}'"
    assert MARK not in json.dumps(report)
    service.store.engine.dispose()
