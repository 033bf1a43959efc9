"""Silences: notifications to hold back (see ``anomaly.silences``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from anomaly.store.base import StoreBase, utcnow
from anomaly.store.tables import silences


@dataclass(frozen=True)
class Silence:
    """Holds back the notifications whose payload equals every matcher given (account_id,
    campaign_id, rule, managing_party) until ``until`` (naive UTC, exclusive), or until it is
    expired by hand (``expired_at``). ``id`` is None for a silence from config.yaml."""

    until: dt.datetime
    account: str | None = None
    campaign: str | None = None
    rule: str | None = None
    party: str | None = None
    reason: str = ""
    created_by: str = ""
    id: int | None = None
    source: str = "store"  # or "config"
    created_at: dt.datetime | None = None
    expired_at: dt.datetime | None = None


class SilenceStore(StoreBase):
    """Silences added by ``anomaly silence add`` or the Slack app, and their expiry."""

    def add_silence(self, silence: Silence, *, now: dt.datetime | None = None) -> int:
        """Store a silence (its matchers, expiry, reason and author); returns its id."""
        values = {name: getattr(silence, name) for name in ("account", "campaign", "rule", "party", "until", "reason", "created_by")}
        with self.engine.begin() as conn:
            stmt = silences.insert().values(**values, created_at=now or utcnow()).returning(silences.c.id)
            return conn.execute(stmt).scalar_one()

    def silences(self, active_at: dt.datetime | None = None) -> list[Silence]:
        """The stored silences by id: all of them, or those in force at ``active_at`` (naive UTC)."""
        query = sa.select(silences).order_by(silences.c.id)
        if active_at is not None:
            query = query.where(silences.c.until > active_at, sa.or_(silences.c.expired_at.is_(None), silences.c.expired_at > active_at))
        with self.engine.connect() as conn:
            return [Silence(**r._mapping) for r in conn.execute(query)]

    def expire_silence(self, silence_id: int, *, now: dt.datetime | None = None) -> bool:
        """End a silence now (one already expired keeps its time); False when there is no such id."""
        with self.engine.begin() as conn:
            result = conn.execute(
                silences.update().where(silences.c.id == silence_id).values(expired_at=sa.func.coalesce(silences.c.expired_at, now or utcnow()))
            )
        return result.rowcount == 1
