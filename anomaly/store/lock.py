"""Who works on a store: the service lock, held by the one ``anomaly serve`` instance that runs
jobs on it, and the run lock, held by an ``anomaly run`` for its cycle.

The service lock is a row with a heartbeat: a holder that stops beating is presumed dead and
taken over. The run lock is the database's own, so it ends with the process that holds it, however
it ends: on PostgreSQL a session advisory lock of the store's schema, on SQLite an exclusive lock
(``flock``) of a file beside the database (``anomaly.db-runlock``). Its holder is written in the
row ``run`` of the same table, for messages. A run takes the run lock, then checks that no live
service holds the service lock; a service takes the service lock, then checks that no run holds
the run lock: whichever comes second sees the first and steps back.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from anomaly.store.base import StoreBase, advisory_key, utcnow
from anomaly.store.engine import StoreError
from anomaly.store.tables import SERVICE_LOCK, service_lock

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no run lock on SQLite there
    fcntl = None

#: The row of ``service_lock`` that names the run holding the run lock.
RUN_LOCK = "run"
#: The kind of the PostgreSQL advisory lock that is the run lock (see ``base.advisory_key``): ASCII "anon".
RUN_LOCK_KEY = 0x616E6F6E
#: How often a run waiting for the run lock of a SQLite store tries again, in seconds.
RUN_LOCK_RETRY_SECONDS = 0.1


@dataclass(frozen=True)
class ServiceLock:
    """Who holds the service lock; times in UTC."""

    holder: str
    acquired_at: dt.datetime
    heartbeat_at: dt.datetime


@dataclass(frozen=True)
class RunHolder:
    """The run that holds the run lock: its holder id and when it took the lock (UTC)."""

    holder: str
    acquired_at: dt.datetime


class RunLockHeldError(StoreError):
    """Another ``anomaly run`` held the run lock for as long as this one would wait.

    ``run`` names it (None when it had not written its name yet); ``waited`` is in seconds."""

    def __init__(self, store: str, run: RunHolder | None, waited: float):
        self.store = store
        self.run = run
        self.waited = waited
        who = f" ({describe_run(run)})" if run is not None else ""
        after = f" after {waited:g} s" if waited > 0 else ""
        super().__init__(f"another run on {store}{who} had not finished{after}")


class ServiceRunningError(StoreError):
    """A live ``anomaly serve`` holds the service lock: it runs the cycles of this store."""

    def __init__(self, store: str, lock: ServiceLock, now: dt.datetime):
        self.store = store
        self.lock = lock
        self.age = (now - lock.heartbeat_at).total_seconds()
        super().__init__(f"anomaly serve runs the cycles of {store} ({lock.holder}, last heartbeat {self.age:.0f} s ago)")


class RunInProgressError(StoreError):
    """An ``anomaly run`` holds the run lock: a service may not start meanwhile."""

    def __init__(self, store: str, run: RunHolder | None):
        self.store = store
        self.run = run
        who = f" ({describe_run(run)})" if run is not None else ""
        super().__init__(f"an anomaly run is working on {store}{who}; start the service once it has finished")


def describe_run(run: RunHolder) -> str:
    return f"{run.holder}, started {run.acquired_at:%Y-%m-%d %H:%M:%S} UTC"


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
        if current.holder == holder:
            # taken, and only now checked against a run: a run that took the run lock before then
            # is seen here, and one that takes it after sees this lock and steps back
            with self._run_lock(wait=0) as free:
                pass
            if not free:
                self.release_service_lock(holder)
                raise RunInProgressError(self.describe(), self.run_holder())
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

    # -- the run lock ---------------------------------------------------------------------------

    @contextmanager
    def run_lock(
        self,
        holder: str,
        *,
        wait: float,
        service_stale_after: dt.timedelta,
        on_wait: Callable[[RunHolder | None], None] | None = None,
    ) -> Iterator[None]:
        """Hold the run lock of this store for ``holder`` while the block runs.

        When another run holds it, call ``on_wait`` with that run (None until it has written its
        name) and wait up to ``wait`` seconds for it; then raise ``RunLockHeldError``. Once the
        lock is held, raise ``ServiceRunningError`` when a service holds the service lock with a
        heartbeat younger than ``service_stale_after``: it runs the cycles itself."""
        with self._run_lock(wait=0) as taken:
            if taken:
                with self._as_the_run(holder, service_stale_after):
                    yield
                return
        if on_wait is not None:
            on_wait(self.run_holder())
        if wait > 0:
            with self._run_lock(wait=wait) as taken:
                if taken:
                    with self._as_the_run(holder, service_stale_after):
                        yield
                    return
        raise RunLockHeldError(self.describe(), self.run_holder(), wait)

    @contextmanager
    def _as_the_run(self, holder: str, service_stale_after: dt.timedelta) -> Iterator[None]:
        """With the run lock taken: step back for a live service, else name ``holder`` the run."""
        now = utcnow()
        service = self.service_lock_holder()
        if service is not None and service.heartbeat_at >= now - service_stale_after:
            raise ServiceRunningError(self.describe(), service, now)
        with self.engine.begin() as conn:
            conn.execute(self._upsert(service_lock, ["name"], update=True).values(name=RUN_LOCK, holder=holder, acquired_at=now, heartbeat_at=now))
        try:
            yield
        finally:
            with self.engine.begin() as conn:
                conn.execute(service_lock.delete().where(service_lock.c.name == RUN_LOCK, service_lock.c.holder == holder))

    def run_holder(self) -> RunHolder | None:
        """The run that last took the run lock, as it wrote itself down (its row outlives a run
        that was killed: it means something only while the lock is held)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(service_lock).where(service_lock.c.name == RUN_LOCK)).first()
        return RunHolder(row.holder, row.acquired_at) if row is not None else None

    @contextmanager
    def _run_lock(self, *, wait: float) -> Iterator[bool]:
        """The database's run lock, held while the block runs: yields whether it was taken within
        ``wait`` seconds (0: only if it is free now)."""
        if self.dialect == "postgresql":
            with _advisory_lock(self.engine, RUN_LOCK_KEY, wait) as taken:
                yield taken
        elif self.dialect == "sqlite":
            with _file_lock(_run_lock_file(self.engine.url), wait, self.describe()) as taken:
                yield taken
        else:  # pragma: no cover - _upsert refuses other databases first
            raise StoreError(f"unsupported database {self.dialect!r}; use SQLite or PostgreSQL")


def _run_lock_file(url: sa.URL) -> Path | None:
    """The file whose lock is a SQLite store's run lock; None for a database in memory, which
    no other process can reach."""
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        return None
    return Path(f"{database.removeprefix('file:')}-runlock")


@contextmanager
def _file_lock(path: Path | None, wait: float, store: str) -> Iterator[bool]:
    if path is None or fcntl is None:
        yield True
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise StoreError(f"cannot take the run lock of the store at {store}: {path}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    yield False
                    return
                time.sleep(min(RUN_LOCK_RETRY_SECONDS, left))  # flock has no timeout of its own
        yield True
    finally:
        os.close(fd)  # closing the file ends its lock


@contextmanager
def _advisory_lock(engine: sa.Engine, kind: int, wait: float) -> Iterator[bool]:
    """A session advisory lock on a connection of its own, outside any transaction (an open one
    would hold back vacuuming for the whole cycle), closed afterwards: a lock of a connection that
    went back to the pool would outlive the run."""
    pooled = engine.raw_connection()
    connection = pooled.driver_connection
    pooled.detach()
    key = advisory_key(kind)
    taken = False
    try:
        connection.rollback()  # the pool's liveness check may have begun a transaction
        connection.autocommit = True
        cursor = connection.cursor()
        if wait <= 0:
            cursor.execute(f"SELECT pg_try_advisory_lock({key})")
            taken = bool(cursor.fetchone()[0])
        else:
            milliseconds = min(max(int(wait * 1000), 1), 2**31 - 1)  # lock_timeout's range: 0 means for ever
            cursor.execute("SELECT set_config('lock_timeout', %(timeout)s, false)", {"timeout": f"{milliseconds}ms"})
            try:
                cursor.execute(f"SELECT pg_advisory_lock({key})")
                taken = True
            except Exception as exc:  # noqa: BLE001 - the driver's error class; only a lock timeout is expected
                if _sqlstate(exc) != "55P03":  # lock_not_available
                    raise
        yield taken
    finally:
        try:
            if taken:
                # at once: the server ends a closed connection's session, and its locks, a moment later
                connection.cursor().execute(f"SELECT pg_advisory_unlock({key})")
        except Exception:  # noqa: BLE001, S110 - a broken connection: closing it ends the lock as well
            pass
        finally:
            pooled.close()  # detached: this closes the connection


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
