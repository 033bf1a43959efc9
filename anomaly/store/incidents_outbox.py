"""Incidents and the alert outbox: a notification is written before it is sent, and marked sent
only on success. A notification belongs to an incident, or (``handover_id``, ``incident_id``
None) to a handover (see ``anomaly.store.handovers``)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from anomaly.store.base import StoreBase, utcnow
from anomaly.store.tables import incidents, outbox


@dataclass(frozen=True)
class OutboxItem:
    id: int
    incident_id: int | None  # None for a handover's message
    event: str
    sink: str
    payload: dict
    attempts: int
    key: str = field(default="", compare=False)  # unique among all notifications
    created_at: dt.datetime | None = field(default=None, compare=False)
    handover_id: int | None = field(default=None, compare=False)  # the handover whose message it is


@dataclass(frozen=True)
class SentMessage:
    """Where a sent notification went (a Slack channel and message ``ts``), and the key of the
    grouped message it went out in, if it did."""

    channel: str
    ts: str
    group_key: str | None = None


#: the sent notifications after which a reminder is due, when nothing followed them
REMINDED_AFTER = ("opened", "updated", "reminder")


@dataclass(frozen=True)
class IncidentWrite:
    """One incident to insert (``incident_id`` None) or update, with the notifications it triggers.

    Each notification is a dict with ``event``, ``key`` (what makes it unique for the incident),
    ``sink`` and ``payload``.
    """

    incident_id: int | None
    values: dict[str, Any]
    notifications: tuple[dict[str, Any], ...] = ()


class IncidentStore(StoreBase):
    """Incidents with their acknowledgements, and the outbox of their notifications."""

    def load_incidents(self, *, status: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(incidents).order_by(incidents.c.detected_on, incidents.c.id)
        if status is not None:
            query = query.where(incidents.c.status == status)
        with self.engine.connect() as conn:
            return [_incident_row(r._mapping) for r in conn.execute(query)]

    def load_incident(self, incident_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(incidents).where(incidents.c.id == incident_id)).first()
        return _incident_row(row._mapping) if row is not None else None

    def save_incidents(self, writes: Iterable["IncidentWrite"]) -> int:
        """Insert or update incidents and enqueue their notifications, all in one transaction.

        A notification is keyed by ``dedupe_key``: enqueueing the same event twice stores it once.
        Returns the number of notifications newly enqueued.
        """
        now = utcnow()
        enqueued = 0
        with self.engine.begin() as conn:
            for write in writes:
                values = {**write.values, "details": json.dumps(write.values["details"], sort_keys=True, default=str), "updated_at": now}
                if write.incident_id is None:
                    incident_id = conn.execute(incidents.insert().values(**values, created_at=now)).inserted_primary_key[0]
                else:
                    incident_id = write.incident_id
                    conn.execute(incidents.update().where(incidents.c.id == incident_id).values(**values))
                for note in write.notifications:
                    key = f"{incident_id}:{note['event']}:{note['key']}:{note['sink']}"
                    payload = {**note["payload"], "incident_id": incident_id}
                    enqueued += self._enqueue(conn, key, incident_id, note["event"], note["sink"], payload, now)
        return enqueued

    def _enqueue(
        self, conn: sa.Connection, key: str, incident_id: int | None, event: str, sink: str, payload: dict[str, Any], now: dt.datetime,
        *, handover_id: int | None = None,
    ) -> int:
        """Add a pending notification (of an incident, or of a handover) unless one with ``key``
        exists; 1 when it was added, else 0."""
        stmt = self._upsert(outbox, ["dedupe_key"], update=False).values(
            dedupe_key=key,
            incident_id=incident_id,
            handover_id=handover_id,
            event=event,
            sink=sink,
            payload=json.dumps(payload, sort_keys=True, default=str),
            status="pending",
            attempts=0,
            created_at=now,
        ).returning(outbox.c.id)
        # count returned rows: psycopg reports rowcount -1 for an INSERT … RETURNING
        return len(conn.execute(stmt).all())

    def pending(self, limit: int = 1000) -> list[OutboxItem]:
        """The pending notifications, oldest first: ``limit`` of them, and the rest of the last
        one's cycle (those enqueued with it), so that a cycle's notifications are never cut in two:
        grouping them differently from one delivery to the next would give a grouped message
        another key, or send it short. Each payload also says whether its incident is acknowledged
        now (``acknowledged_by``, ``acknowledged_at`` as ISO UTC, or None), which may have happened
        after the notification was enqueued."""
        query = (
            sa.select(outbox, incidents.c.acknowledged_at, incidents.c.acknowledged_by)
            .outerjoin(incidents, incidents.c.id == outbox.c.incident_id)  # a handover's message has none
            .where(outbox.c.status == "pending")
            .order_by(outbox.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).all()
            if rows and len(rows) == limit:
                last = rows[-1]
                rows += conn.execute(query.where(outbox.c.created_at == last.created_at, outbox.c.id > last.id)).all()
        return [
            OutboxItem(
                r.id, r.incident_id, r.event, r.sink,
                {**json.loads(r.payload), **(_acknowledgement(r.acknowledged_at, r.acknowledged_by) if r.incident_id is not None else {})},
                r.attempts, r.dedupe_key, r.created_at, r.handover_id,
            )
            for r in rows
        ]

    def mark_sent(
        self, item_id: int, receipt: tuple[str, str] | None = None, *, group_key: str | None = None, now: dt.datetime | None = None
    ) -> None:
        """Record a delivery at ``now`` (naive UTC), with where the sink put it (channel, message
        ts) when it says, and the key of the grouped message it went out in, if it did."""
        self.mark_group_sent([item_id], receipt, group_key=group_key, now=now)

    def mark_group_sent(
        self, item_ids: Sequence[int], receipt: tuple[str, str] | None = None, *, group_key: str | None = None, now: dt.datetime | None = None
    ) -> None:
        """Record that the notifications ``item_ids`` went out together (one grouped message), in
        one transaction: a crash leaves either all of them pending or none."""
        channel, ts = receipt if receipt else (None, None)
        with self.engine.begin() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(list(item_ids)))
                .values(
                    status="sent", sent_at=now or utcnow(), attempts=outbox.c.attempts + 1, last_error=None,
                    channel=channel, ts=ts, group_key=group_key,
                )
            )

    def acknowledge(self, incident_id: int, by: str, *, now: dt.datetime | None = None) -> dict[str, Any] | None:
        """Record that ``by`` took the incident on, at ``now`` (naive UTC). The first
        acknowledgement stands: a second changes nothing. Returns the incident as it is afterwards,
        or None when there is no such incident."""
        with self.engine.begin() as conn:
            conn.execute(
                incidents.update()
                .where(incidents.c.id == incident_id, incidents.c.acknowledged_at.is_(None))
                .values(acknowledged_at=now or utcnow(), acknowledged_by=by)
            )
            row = conn.execute(sa.select(incidents).where(incidents.c.id == incident_id)).first()
        return _incident_row(row._mapping) if row is not None else None

    def notifications(self, incident_id: int | None = None, *, status: str | None = None) -> list[dict[str, Any]]:
        """Every notification in the outbox (of one incident, with one status, when given), oldest
        first: what it said (``event``), where (``sink``, and ``channel``/``ts`` when the sink
        said), what became of it (``status``: pending, sent, silenced or obsolete; ``attempts``,
        ``last_error``) and when (``created_at``, ``sent_at``, naive UTC). The payload is left out."""
        columns = [c for c in outbox.columns if c.name not in ("payload", "dedupe_key")]
        query = sa.select(*columns).order_by(outbox.c.id)
        if incident_id is not None:
            query = query.where(outbox.c.incident_id == incident_id)
        if status is not None:
            query = query.where(outbox.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def main_message(self, incident_id: int, sink: str) -> SentMessage | None:
        """The incident's main message on ``sink``: where its first "opened" notification went,
        and the key of the grouped message when it went out in one; None until it is sent."""
        query = (
            sa.select(outbox.c.channel, outbox.c.ts, outbox.c.group_key)
            .where(outbox.c.incident_id == incident_id, outbox.c.sink == sink, outbox.c.event == "opened", outbox.c.ts.is_not(None))
            .order_by(outbox.c.id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return SentMessage(row.channel, row.ts, row.group_key) if row else None

    def opened_group(self, incident_id: int, sink: str) -> str | None:
        """The key of the grouped message the incident's "opened" notification went out in on
        ``sink``, on any sink (an incoming webhook records no ``ts``); None when it went alone."""
        query = (
            sa.select(outbox.c.group_key)
            .where(outbox.c.incident_id == incident_id, outbox.c.sink == sink, outbox.c.event == "opened", outbox.c.status == "sent")
            .order_by(outbox.c.id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    def enqueue_reminders(self, now: dt.datetime, every: dt.timedelta, sinks: Iterable[str] | None = None) -> int:
        """Enqueue a "reminder" for each open, announced, unacknowledged incident on each sink
        (of ``sinks``, when given) whose latest sent notification (opened, updated or reminder)
        went out at least ``every`` before ``now`` (naive UTC), unless one of its notifications
        is still pending there. The key holds the time of that latest send and how many
        intervals have passed since, so calling this again within an interval enqueues nothing
        new, while a reminder that a silence held back is followed by one in a later interval.
        The payload is the incident's current one, with the mentions of its "opened" notification
        on that sink. Returns how many were enqueued."""
        latest = sa.func.max(outbox.c.sent_at).label("latest")
        due = (
            sa.select(outbox.c.incident_id, outbox.c.sink, latest)
            .join(incidents, incidents.c.id == outbox.c.incident_id)
            .where(
                outbox.c.status == "sent",
                outbox.c.event.in_(REMINDED_AFTER),
                incidents.c.status == "open",
                incidents.c.notified.is_(True),
                incidents.c.acknowledged_at.is_(None),
            )
            .group_by(outbox.c.incident_id, outbox.c.sink)
            .having(latest <= now - every)
        )
        if sinks is not None:
            due = due.where(outbox.c.sink.in_(list(sinks)))
        enqueued = 0
        with self.engine.begin() as conn:
            waiting = {tuple(row) for row in conn.execute(sa.select(outbox.c.incident_id, outbox.c.sink).where(outbox.c.status == "pending"))}
            for incident_id, sink, sent_at in conn.execute(due).all():
                if (incident_id, sink) in waiting:
                    continue
                details = json.loads(conn.execute(sa.select(incidents.c.details).where(incidents.c.id == incident_id)).scalar_one())
                opened = conn.execute(
                    sa.select(outbox.c.payload)
                    .where(outbox.c.incident_id == incident_id, outbox.c.sink == sink, outbox.c.event == "opened")
                    .order_by(outbox.c.id)
                    .limit(1)
                ).scalar()
                payload = {**details["payload"], "incident_id": incident_id, "event": "reminder"}
                mentions = json.loads(opened).get("mentions") if opened else None
                payload.pop("mentions", None)  # the route's, on this sink: those of its opened notification
                if mentions:
                    payload["mentions"] = mentions
                key = f"{incident_id}:reminder:{sent_at.isoformat(timespec='seconds')}:{(now - sent_at) // every}:{sink}"
                enqueued += self._enqueue(conn, key, incident_id, "reminder", sink, payload, now)
        return enqueued

    def mark_obsolete(self, item_id: int, reason: str) -> None:
        """Record that a notification is no longer worth sending (a reminder for an incident
        acknowledged or resolved since it was enqueued): it is never sent."""
        with self.engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id == item_id).values(status="obsolete", last_error=reason[:2000]))

    def mark_failed(self, item_id: int, error: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                outbox.update().where(outbox.c.id == item_id).values(attempts=outbox.c.attempts + 1, last_error=error[:2000])
            )

    def mark_silenced(self, item_id: int) -> None:
        """Record that a silence held the notification back: it is never sent."""
        with self.engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id == item_id).values(status="silenced", last_error=None))

    def outbox_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status))
            return {status: n for status, n in rows}


def _acknowledgement(at: dt.datetime | None, by: str | None) -> dict[str, Any]:
    return {"acknowledged_at": at.isoformat(timespec="seconds") if at is not None else None, "acknowledged_by": by}


def _incident_row(mapping) -> dict[str, Any]:
    row = dict(mapping)
    row["details"] = json.loads(row["details"])
    return row
