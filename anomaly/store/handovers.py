"""Handovers: each change of managing party recorded once, with its message in the outbox.

A handover is keyed by ``(account_id, campaign_id, start)``: the first cycle that sees it records
it, with the reference figures of the weeks before it frozen in ``details``, and enqueues its
message for each target sink in the same transaction. A later cycle, or a cycle run again after a
crash, finds it recorded and enqueues nothing; the outbox then delivers what is still pending.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from anomaly.store.base import utcnow
from anomaly.store.incidents_outbox import IncidentStore
from anomaly.store.tables import handovers

#: the outbox event of a handover's message
HANDOVER_EVENT = "handover"


@dataclass(frozen=True)
class HandoverWrite:
    """One handover to record, with the sinks its message goes to (empty when it is only recorded).

    ``values`` holds the row's columns but ``id`` and ``created_at``; ``values["details"]`` is a
    dict holding at least ``payload``. ``notifications`` are ``{"sink", "payload"}`` dicts."""

    values: dict[str, Any]
    notifications: tuple[dict[str, Any], ...] = ()


class HandoverStore(IncidentStore):
    """The handovers a cycle has seen, and the enqueueing of their messages."""

    def handover_keys(self) -> set[tuple[str, str, dt.date]]:
        """``(account_id, campaign_id, start)`` of every recorded handover."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(handovers.c.account_id, handovers.c.campaign_id, handovers.c.start))
            return {(a, c, s) for a, c, s in rows}

    def load_handovers(self) -> list[dict[str, Any]]:
        """Every recorded handover, oldest first, ``details`` parsed (its ``payload`` and the frozen
        ``reference`` figures of each campaign)."""
        query = sa.select(handovers).order_by(handovers.c.start, handovers.c.id)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["details"] = json.loads(row["details"])
        return rows

    def save_handovers(self, writes: Iterable[HandoverWrite]) -> int:
        """Record the handovers not recorded yet and enqueue their messages, in one transaction.

        A handover already recorded (by its key) is left as it was, its reference included, and
        enqueues nothing. Returns the number of notifications newly enqueued."""
        now = utcnow()
        enqueued = 0
        with self.engine.begin() as conn:
            for write in writes:
                values = {**write.values, "details": json.dumps(write.values["details"], sort_keys=True, default=str), "created_at": now}
                stmt = self._upsert(handovers, ["account_id", "campaign_id", "start"], update=False).values(**values).returning(handovers.c.id)
                inserted = conn.execute(stmt).all()
                if not inserted:
                    continue
                handover_id = inserted[0][0]
                for note in write.notifications:
                    key = f"handover:{handover_id}:{HANDOVER_EVENT}:{note['sink']}"
                    payload = {**note["payload"], "handover_id": handover_id, "event": HANDOVER_EVENT}
                    enqueued += self._enqueue(conn, key, None, HANDOVER_EVENT, note["sink"], payload, now, handover_id=handover_id)
        return enqueued
