"""Alert delivery: the outbox in the store decides what to send; sinks only deliver.

A notification is written to the outbox in the same transaction as the incident change that causes
it, and marked sent only after its sink reports success. A crash or an outage therefore loses
nothing (pending notifications are retried on the next delivery), and a cycle that runs twice
enqueues nothing twice (each notification has a unique key). A notification that an active
silence matches is marked "silenced" instead of sent; its incident is unaffected.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from anomaly.alerts.sinks import Delivery, DeliveryError, Receipt, Sink, make_sinks
from anomaly.config import Config
from anomaly.silences import active_silences, matches
from anomaly.store import Store, utcnow

__all__ = ["Delivery", "DeliveryError", "DeliveryReport", "Receipt", "Sink", "deliver", "make_sinks"]


@dataclass(frozen=True)
class DeliveryReport:
    sent: int
    failed: int
    pending: int  # still waiting after this delivery (failed ones included)
    silenced: int = 0  # held back by a silence: never sent


def deliver(
    store: Store, sinks: list[Sink], *, config: Config | None = None, now: dt.datetime | None = None, limit: int = 1000
) -> DeliveryReport:
    """Send pending notifications in order; record each success at once, with where it went.

    A notification matched by a silence in force at ``now`` (naive UTC; the store's, and
    ``config``'s when given) is marked silenced, not sent. A sink gets the notification's key and
    the incident's main message on that sink (the receipt of its "opened" notification), so that
    it can update that message and reply in its thread."""
    now = now or utcnow()
    silences = active_silences(config, store, now)
    by_name = {sink.name: sink for sink in sinks}
    sent = failed = silenced = 0
    held: set[tuple[int, str]] = set()  # an incident's notifications on a sink go out in order
    for item in store.pending(limit):
        if any(matches(silence, item.payload, now) for silence in silences):
            store.mark_silenced(item.id)
            silenced += 1
            continue
        if (item.incident_id, item.sink) in held:
            continue  # an earlier one is still pending: sending this first would reorder them
        sink = by_name.get(item.sink)
        if sink is None:
            store.mark_failed(item.id, f"sink {item.sink!r} is not configured any more; kept for redelivery")
            held.add((item.incident_id, item.sink))
            failed += 1
            continue
        main = store.sent_receipt(item.incident_id, item.sink, "opened")
        delivery = Delivery(item.key, item.incident_id, item.created_at, Receipt(*main) if main else None)
        try:
            receipt = sink.send(item.event, item.payload, delivery)
        except DeliveryError as exc:
            store.mark_failed(item.id, str(exc))
            held.add((item.incident_id, item.sink))
            failed += 1
            continue
        store.mark_sent(item.id, (receipt.channel, receipt.ts) if receipt else None)
        sent += 1
    return DeliveryReport(sent=sent, failed=failed, pending=store.outbox_counts().get("pending", 0), silenced=silenced)
