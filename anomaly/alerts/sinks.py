"""Sinks deliver one notification each and say whether it worked. Routing, deduplication and
lifecycle happen before a sink (see ``anomaly.incidents`` and the outbox)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from anomaly.alerts.render import render_text
from anomaly.config import AlertsConfig, Config, ConsoleSinkConfig, JsonlSinkConfig, SlackSinkConfig, SlackWebhookSinkConfig
from anomaly.errors import AnomalyError
from anomaly.store import utcnow


class DeliveryError(AnomalyError):
    """A sink could not deliver. ``retryable`` says whether trying again later may succeed."""

    def __init__(self, message: str, *, retryable: bool = True):
        self.retryable = retryable
        super().__init__(message)


@dataclass(frozen=True)
class Receipt:
    """Where a sink put a notification, when it can say (a Slack channel and message ``ts``)."""

    channel: str
    ts: str


@dataclass(frozen=True)
class Delivery:
    """What a sink may need beyond the payload: the notification's unique ``key``, its incident,
    when it was enqueued (naive UTC), and the incident's main message on this sink (``thread``),
    once that was sent. ``grouped``: that main message is a grouped one (event "grouped"), which
    lists many incidents, so a later notification replies in its thread and leaves it as it is.
    For a "grouped" send, ``key`` is the group's and ``incident_id`` its first incident's."""

    key: str
    incident_id: int
    created_at: dt.datetime
    thread: Receipt | None = None
    grouped: bool = False


class Sink(Protocol):
    name: str

    def send(self, event: str, payload: dict, delivery: Delivery | None = None) -> Receipt | None:
        """Deliver one notification or raise DeliveryError; return where it went, when known."""
        ...


class ConsoleSink:
    """Readable blocks on standard output, one per alert."""

    name = "console"

    def __init__(self, config: Config | None = None, stream: TextIO | None = None):
        self.config = config
        self.stream = stream

    def send(self, event: str, payload: dict, delivery: Delivery | None = None) -> None:
        stream = self.stream or sys.stdout
        try:
            stream.write(render_text(event, payload, self.config) + "\n\n")
            stream.flush()
        except OSError as exc:
            raise DeliveryError(f"console: {exc}") from None


class JsonlSink:
    """One JSON object per line, appended and flushed to disk before the send counts as done."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = f"jsonl:{self.path}"

    def send(self, event: str, payload: dict, delivery: Delivery | None = None) -> None:
        record = {"event": event, "sent_at": utcnow().isoformat(timespec="seconds") + "Z", **payload}
        line = json.dumps(record, sort_keys=True, default=str, allow_nan=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise DeliveryError(f"{self.path}: {exc.strerror or exc}") from None


def make_sinks(config: Config, alerts: AlertsConfig | None = None, *, stream: TextIO | None = None) -> list[Sink]:
    sinks: list[Sink] = []
    for sink in (alerts or config.alerts).sinks:
        if isinstance(sink, ConsoleSinkConfig):
            sinks.append(ConsoleSink(config, stream))
        elif isinstance(sink, JsonlSinkConfig):
            sinks.append(JsonlSink(sink.path))
        elif isinstance(sink, SlackSinkConfig):
            from anomaly.alerts.slack import SlackSink  # slack_sdk loads only when a Slack sink is configured

            sinks.append(SlackSink(sink, config))
        elif isinstance(sink, SlackWebhookSinkConfig):
            from anomaly.alerts.slack import SlackWebhookSink

            sinks.append(SlackWebhookSink(sink, config))
    return sinks
