"""The service lock: which ``anomaly serve`` instance may run jobs on this store."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from anomaly.store.base import StoreBase, utcnow
from anomaly.store.tables import SERVICE_LOCK, service_lock


@dataclass(frozen=True)
class ServiceLock:
    """Who holds the service lock; times in UTC."""

    holder: str
    acquired_at: dt.datetime
    heartbeat_at: dt.datetime


class LockStore(StoreBase):
    """The service lock: one ``anomaly serve`` at a time runs jobs on a store."""

    def acquire_service_lock(self, holder: str, *, stale_before: dt.datetime, now: dt.datetime | None = None) -> ServiceLock:
        """Take the service lock for ``holder`` in one transaction: when nobody holds it, when
        ``holder`` already does, or when the holder's last heartbeat is older than ``stale_before``
        (UTC). Returns the lock as it stands afterwards: held by ``holder``, or by the live holder
        that kept it."""
        now = now or utcnow()
        row = {"holder": holder, "acquired_at": now, "heartbeat_at": now}
        with self.engine.begin() as conn:
            insert = self._upsert(service_lock, ["name"], update=False).values(name=SERVICE_LOCK, **row)
            if not conn.execute(insert.returning(service_lock.c.name)).all():
                conn.execute(
                    service_lock.update()
                    .where(service_lock.c.name == SERVICE_LOCK)
                    .where(sa.or_(service_lock.c.holder == holder, service_lock.c.heartbeat_at < stale_before))
                    .values(**row)
                )
            current = conn.execute(sa.select(service_lock).where(service_lock.c.name == SERVICE_LOCK)).one()
        return ServiceLock(current.holder, current.acquired_at, current.heartbeat_at)

    def refresh_service_lock(self, holder: str, *, now: dt.datetime | None = None) -> bool:
        """Record a heartbeat of ``holder``; False when it no longer holds the lock."""
        with self.engine.begin() as conn:
            result = conn.execute(
                service_lock.update()
                .where(service_lock.c.name == SERVICE_LOCK, service_lock.c.holder == holder)
                .values(heartbeat_at=now or utcnow())
            )
        return result.rowcount == 1

    def release_service_lock(self, holder: str) -> None:
        """Give the lock up, if ``holder`` still holds it."""
        with self.engine.begin() as conn:
            conn.execute(service_lock.delete().where(service_lock.c.name == SERVICE_LOCK, service_lock.c.holder == holder))

    def service_lock_holder(self) -> ServiceLock | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(service_lock).where(service_lock.c.name == SERVICE_LOCK)).first()
        return ServiceLock(row.holder, row.acquired_at, row.heartbeat_at) if row is not None else None
