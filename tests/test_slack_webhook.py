"""The incoming-webhook Slack sink against a real local HTTP server that answers as Slack's
webhooks do: "ok", an error word with its HTTP status, or 429 with Retry-After."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from anomaly.alerts.sinks import DeliveryError
from anomaly.alerts.slack import SlackWebhookSink
from anomaly.config import SlackWebhookSinkConfig
from tests.slack_fake import sleeps  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("sleeps")  # no test waits on a retry

SECRET_PATH = "/services/T000/B000/s3cr3tWebhookPart"


class Webhook:
    """Records each JSON body posted to it and answers from a script, then with 200 "ok"."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.script: list[tuple[int, str, dict[str, str]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(json.loads(body))
                status, text, headers = hook.script.pop(0) if hook.script else (200, "ok", {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()



PAYLOAD = {
    "family": "cost_per_lead", "account_id": "4821937710", "account_name": "Harbor Dental Group", "campaign_id": "20118341",
    "campaign_name": "<!channel> Sale", "currency": "USD", "onset": "2026-07-10", "detected_on": "2026-07-10",
    "last_active": "2026-07-10", "resolved_on": None, "rule": "cpl-spike-1d", "opening_severity": "critical",
    "severity": "critical", "critical_on": "2026-07-10", "metric": "cpl", "observed": 561.3, "baseline": 101.0,
    "baseline_cpl": 101.0, "spend": 1684.0, "leads": 3.0, "excess_cost": 1383.0, "excess_by_party": {"beacon": 1383.0},
    "managing_party": "beacon", "party_since": "2026-07-08", "changes": [], "status": "open", "cpl": 561.3,
    "incident_id": 2, "event": "opened",
}


def sink(hook: Webhook) -> SlackWebhookSink:
    return SlackWebhookSink(SlackWebhookSinkConfig(type="slack_webhook", url=hook.url, timeout_seconds=5))


def test_an_alert_is_posted_with_its_blocks_and_escaped_names(webhook: Webhook) -> None:
    assert sink(webhook).send("opened", PAYLOAD) is None  # a webhook says nothing of where it went
    (body,) = webhook.bodies
    assert body["blocks"][0]["type"] == "header" and body["text"].startswith("[CRITICAL] Cost per lead 5.6× baseline")
    assert "<!channel>" not in json.dumps(body)  # the campaign's name pings nobody


@pytest.mark.parametrize(("status", "headers"), [pytest.param(429, {"Retry-After": "1"}, id="rate-limited"), pytest.param(500, {}, id="server-error")])
def test_rate_limits_and_server_errors_are_retried(webhook: Webhook, sleeps: list[float], status: int, headers: dict) -> None:
    webhook.script.append((status, "rate_limited" if status == 429 else "internal_error", headers))
    sink(webhook).send("opened", PAYLOAD)
    assert len(webhook.bodies) == 2 and len(sleeps) == 1


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        pytest.param(404, "no_service", False, id="webhook-removed"),
        pytest.param(403, "invalid_token", False, id="bad-url"),
        pytest.param(410, "channel_is_archived", False, id="archived"),
        pytest.param(400, "invalid_payload", True, id="other"),
    ],
)
def test_failures_say_what_to_fix_and_never_show_the_url(webhook: Webhook, status: int, error: str, retryable: bool) -> None:
    webhook.script.append((status, error, {}))
    with pytest.raises(DeliveryError) as raised:
        sink(webhook).send("resolved", {**PAYLOAD, "status": "resolved", "resolved_on": "2026-07-12"})
    assert raised.value.retryable is retryable and error in str(raised.value)
    assert "s3cr3t" not in str(raised.value) and raised.value.__cause__ is None


def test_an_unreachable_webhook_is_retryable_and_keeps_its_url_secret(webhook: Webhook) -> None:
    hook = sink(webhook)
    webhook.server.shutdown()
    webhook.server.server_close()
    with pytest.raises(DeliveryError) as raised:
        hook.send("opened", PAYLOAD)
    assert raised.value.retryable and "s3cr3t" not in str(raised.value)
