"""Alert delivery: the outbox in the store decides what to send; sinks only deliver.

A notification is written to the outbox in the same transaction as the incident change that causes
it, and marked sent only after its sink reports success. A crash or an outage therefore loses
nothing (pending notifications are retried on the next delivery), and a cycle that runs twice
enqueues nothing twice (each notification has a unique key). A notification that an active
silence matches is marked "silenced" instead of sent; its incident is unaffected.

Grouping and reminders are decided here too, before any sink: many incidents opened on one account
in one cycle go to a sink as one "grouped" notification, and an incident that stays open and
unacknowledged gets a "reminder" every ``alerts.repeat_every_hours`` (the reminders of a grouped
message's incidents that fall due together go as one "grouped_reminder"). A reminder whose incident
is acknowledged or resolved before it goes out is marked "obsolete" and never sent.

A handover's message (event "handover", see ``anomaly.handover``) goes through the same outbox:
written when the handover is recorded, sent once, never grouped or reminded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from anomaly.alerts.sinks import Delivery, DeliveryError, Receipt, Sink, make_sinks
from anomaly.config import Config
from anomaly.redaction import redact
from anomaly.silences import active_silences, matches
from anomaly.store import OutboxItem, Store, utcnow

__all__ = [
    "Delivery",
    "DeliveryError",
    "DeliveryReport",
    "Receipt",
    "Sink",
    "deliver",
    "enqueue_reminders",
    "group_key",
    "make_sinks",
    "waiting_lines",
]


@dataclass(frozen=True)
class DeliveryReport:
    sent: int
    failed: int
    pending: int  # still waiting after this delivery (failed ones included)
    silenced: int = 0  # held back by a silence: never sent
    obsolete: int = 0  # reminders for incidents acknowledged or resolved since: never sent


def group_key(first: OutboxItem) -> str:
    """The key of a grouped message: its first notification's key, which no other group shares."""
    return f"group:{first.key}"


def enqueue_reminders(store: Store, config: Config, now: dt.datetime, sinks: Iterable[str] | None = None) -> int:
    """Enqueue the reminders due at ``now`` (naive UTC) on ``sinks`` (all, when None): one for each
    incident that is open, announced and not acknowledged, on each sink where its latest sent
    notification went out at least ``alerts.repeat_every_hours`` before ``now`` and nothing of it
    is pending. None when ``repeat_every_hours`` is 0. Returns how many were enqueued."""
    hours = config.alerts.repeat_every_hours
    if hours <= 0:
        return 0
    return store.enqueue_reminders(now, dt.timedelta(hours=hours), sinks)


def deliver(
    store: Store, sinks: list[Sink], *, config: Config | None = None, now: dt.datetime | None = None, limit: int = 1000
) -> DeliveryReport:
    """Send pending notifications in order; record each success at once, with where it went.

    With ``config``, the reminders due at ``now`` (naive UTC; default: the clock) are enqueued
    first. A notification matched by a silence in force at ``now`` (the store's, and ``config``'s
    when given) is marked silenced, not sent; a reminder whose incident was acknowledged or
    resolved since it was enqueued is marked obsolete. With ``config``, the "opened" notifications
    of one cycle (the same ``created_at``) for one account on one sink, at least
    ``alerts.group_min_incidents`` of them, go out as one "grouped" notification and are recorded
    together. A sink gets the notification's key and the incident's main message on that sink (the
    receipt of its "opened" notification, and whether that was a grouped message), so that it can
    update that message or reply in its thread."""
    now = now or utcnow()
    by_name = {sink.name: sink for sink in sinks}
    if config is not None:
        enqueue_reminders(store, config, now, list(by_name))
    silences = active_silences(config, store, now)
    silenced = obsolete = 0
    items: list[OutboxItem] = []
    for item in store.pending(limit):
        if any(matches(silence, item.payload, now) for silence in silences):
            store.mark_silenced(item.id)
            silenced += 1
        elif item.event == "reminder" and (reason := _no_longer_due(store, item)):
            store.mark_obsolete(item.id, reason)
            obsolete += 1
        else:
            items.append(item)
    groups = _groups(items, config.alerts.group_min_incidents, by_name) if config is not None else {}
    groups.update(_reminder_groups(store, items, by_name))
    in_group = {member.id for members in groups.values() for member in members}
    sent = failed = 0
    held: set[tuple[object, str]] = set()  # an incident's (a handover's) notifications on a sink go out in order
    for item in items:
        if item.id in in_group:
            if item.id in groups:  # the group goes out at its first notification
                ok = _send_group(store, by_name[item.sink], groups[item.id], now, held)
                sent, failed = (sent + len(groups[item.id]), failed) if ok else (sent, failed + len(groups[item.id]))
            continue
        subject = _subject(item)
        if (subject, item.sink) in held:
            continue  # an earlier one is still pending: sending this first would reorder them
        sink = by_name.get(item.sink)
        if sink is None:
            store.mark_failed(item.id, f"sink {item.sink!r} is not configured any more; kept for redelivery")
            held.add((subject, item.sink))
            failed += 1
            continue
        main = store.main_message(item.incident_id, item.sink) if item.incident_id is not None else None
        thread = Receipt(main.channel, main.ts) if main else None
        delivery = Delivery(item.key, item.incident_id, item.created_at, thread, grouped=bool(main and main.group_key), handover_id=item.handover_id)
        try:
            receipt = sink.send(item.event, item.payload, delivery)
        except DeliveryError as exc:
            store.mark_failed(item.id, redact(str(exc)))
            held.add((subject, item.sink))
            failed += 1
            continue
        store.mark_sent(item.id, (receipt.channel, receipt.ts) if receipt else None, now=now)
        sent += 1
    pending = store.outbox_counts().get("pending", 0)
    return DeliveryReport(sent=sent, failed=failed, pending=pending, silenced=silenced, obsolete=obsolete)


def waiting_lines(store: Store, now: dt.datetime, *, most: int = 10) -> list[str]:
    """The notifications still waiting in the outbox, oldest first, one line each (``most`` of
    them, then how many more): incident, event, sink, how long it has waited since it was
    enqueued (``now`` naive UTC), and what became of each try, with the last error."""
    rows = store.notifications(status="pending")
    lines = []
    for row in rows[:most]:
        if row["attempts"]:
            tried = f"failed {row['attempts']} time{'s' if row['attempts'] != 1 else ''}, last error: {row['last_error'] or 'none recorded'}"
        else:
            tried = "not tried yet"
        about = f"incident #{row['incident_id']}" if row["incident_id"] is not None else f"handover #{row['handover_id']}"
        lines.append(f"{about} {row['event']} → {row['sink']}, waiting {age_text(now - row['created_at'])}; {tried}")
    if len(rows) > most:
        lines.append(f"… and {len(rows) - most} more")
    return lines


def age_text(age: dt.timedelta) -> str:
    """How long, as a person says it: ``40 s``, ``12 min``, ``3 h 5 min``, ``4 days 2 h``."""
    seconds = max(int(age.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h" if hours else f"{days} days"


def _subject(item: OutboxItem) -> object:
    """What a notification is about: its incident's id, or ("handover", id) for a handover's message."""
    return item.incident_id if item.incident_id is not None else ("handover", item.handover_id)


def _no_longer_due(store: Store, item: OutboxItem) -> str | None:
    """Why a pending reminder should not go out any more, or None when it should."""
    if item.payload.get("acknowledged_at"):
        return f"not sent: acknowledged by {item.payload.get('acknowledged_by') or 'someone'}"
    incident = store.load_incident(item.incident_id)
    if incident is None or incident["status"] != "open":
        return "not sent: the incident is resolved"
    return None


def _groups(items: list[OutboxItem], min_incidents: int, sinks: dict[str, Sink]) -> dict[int, list[OutboxItem]]:
    """The "opened" notifications that go out grouped, by the id of each group's first one: those
    of one account on one configured sink, enqueued together (one cycle's incidents are saved in
    one transaction, so they share ``created_at``), at least ``min_incidents`` of them."""
    batches: dict[tuple, list[OutboxItem]] = {}
    for item in items:
        account = item.payload.get("account_id")
        if item.event == "opened" and item.sink in sinks and account is not None:
            batches.setdefault((item.sink, account, item.created_at), []).append(item)
    return {batch[0].id: batch for batch in batches.values() if len(batch) >= min_incidents}


def _reminder_groups(store: Store, items: list[OutboxItem], sinks: dict[str, Sink]) -> dict[int, list[OutboxItem]]:
    """The reminders that go out as one reply in their grouped message's thread, by the id of each
    batch's first one: those of incidents announced in one grouped message, on one configured
    sink, enqueued together, two or more. Twenty replies, each with its mentions, would be the
    flood that grouping spared the channel when the incidents opened."""
    batches: dict[tuple, list[OutboxItem]] = {}
    for item in items:
        if item.event != "reminder" or item.sink not in sinks:
            continue
        group = store.opened_group(item.incident_id, item.sink)
        if group is not None:
            batches.setdefault((item.sink, group, item.created_at), []).append(item)
    return {batch[0].id: batch for batch in batches.values() if len(batch) >= 2}


def _send_group(store: Store, sink: Sink, members: list[OutboxItem], now: dt.datetime, held: set[tuple[object, str]]) -> bool:
    """Send one grouped notification for ``members`` ("grouped" for opened incidents, a
    "grouped_reminder" in their grouped message's thread for reminders) and record the outcome
    for each of them."""
    first = members[0]
    key = group_key(first)
    payload = {
        "incidents": [member.payload for member in members],
        "account_id": first.payload["account_id"],
        "account_name": first.payload.get("account_name"),
        "currency": first.payload.get("currency"),
    }
    if first.event == "reminder":
        main = store.main_message(first.incident_id, first.sink)  # None on a sink that says nothing of where it posted
        thread = Receipt(main.channel, main.ts) if main is not None else None
        event, delivery = "grouped_reminder", Delivery(key, first.incident_id, first.created_at, thread, grouped=True)
    else:
        event, delivery = "grouped", Delivery(key, first.incident_id, first.created_at)
    try:
        receipt = sink.send(event, payload, delivery)
    except DeliveryError as exc:
        for member in members:
            store.mark_failed(member.id, redact(str(exc)))
            held.add((_subject(member), member.sink))
        return False
    store.mark_group_sent([member.id for member in members], (receipt.channel, receipt.ts) if receipt else None, group_key=key, now=now)
    return True
