"""Sinks deliver one notification each and say whether it worked. Routing, deduplication and
lifecycle happen before a sink (see ``anomaly.incidents`` and the outbox)."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
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
    For a "grouped" send, ``key`` is the group's and ``incident_id`` its first incident's. A
    handover's message has no incident (``incident_id`` None) and names its ``handover_id``."""

    key: str
    incident_id: int | None
    created_at: dt.datetime
    thread: Receipt | None = None
    grouped: bool = False
    handover_id: int | None = None


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
    """One JSON object per line, appended and flushed to disk before the send counts as done.

    Each record carries its notification's ``key``. Before appending to a regular file, the sink
    reads its end: a record already there with the same key was written by a process that stopped
    before it could record the send (a crash, a kill), so it is not written twice; and a last line
    cut short by such a stop is removed, so that the file stays one whole JSON object per line. A
    pipe or a device (``/dev/stdout``) is only appended to.
    """

    #: how far back from the end of the file a key is looked for: far more than the few records
    #: one delivery writes after a notification that was written but not yet recorded
    TAIL_BYTES = 256 * 1024

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = f"jsonl:{self.path}"

    def send(self, event: str, payload: dict, delivery: Delivery | None = None) -> None:
        record = {"event": event, "sent_at": utcnow().isoformat(timespec="seconds") + "Z", **payload}
        if delivery is not None:
            record["key"] = delivery.key
        line = (json.dumps(record, sort_keys=True, default=str, allow_nan=False) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # a pipe or a device such as /dev/stdout has no end to read back: it is only appended to
            regular = not self.path.exists() or stat.S_ISREG(self.path.stat().st_mode)
            with open(self.path, "a+b" if regular else "ab") as fh:
                if regular and delivery is not None and delivery.key in self._tail_keys(fh):
                    return
                fh.write(line)
                fh.flush()
                if regular:
                    os.fsync(fh.fileno())
        except OSError as exc:
            raise DeliveryError(f"{self.path}: {exc.strerror or exc}") from None

    def _tail_keys(self, fh) -> set[str]:
        """The keys of the whole records at the end of the file; a torn last line is cut off."""
        size = fh.seek(0, os.SEEK_END)
        start = max(size - self.TAIL_BYTES, 0)
        fh.seek(start)
        tail = fh.read(size - start)
        whole = tail.rfind(b"\n") + 1  # where the last whole line ends
        if start + whole < size and (start == 0 or whole > 0):
            fh.truncate(start + whole)
            fh.flush()
            os.fsync(fh.fileno())
        keys = set()
        for raw in tail[:whole].splitlines()[1 if start else 0 :]:  # the first line of a window may be partial
            try:
                key = json.loads(raw).get("key")
            except (ValueError, AttributeError):
                continue
            if isinstance(key, str):
                keys.add(key)
        return keys


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
