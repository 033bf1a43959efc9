"""The store: metrics, change history, pulls, incidents, the alert outbox and silences (SQLAlchemy Core).

A SQLite file by default, PostgreSQL by URL; the same statements serve both. Metrics are upserted
on their natural key, so restated data overwrites. Each write is one transaction: a batch that
fails leaves the store as it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from anomaly.errors import AnomalyError
from anomaly.schema import (
    CHANGE_COLUMNS,
    DAILY,
    METRIC_COLUMNS,
    METRIC_KEY,
    OWNERSHIP_COLUMNS,
    empty_changes,
    empty_metrics,
    empty_ownership,
    normalise_ownership,
)

SCHEMA_VERSION = 9

metadata = sa.MetaData()

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("campaign_id", sa.String(64), primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("hour", sa.SmallInteger, primary_key=True),  # -1 = the whole day
    sa.Column("account_name", sa.Text, nullable=False),
    sa.Column("campaign_name", sa.Text, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("spend", sa.Float, nullable=False),
    sa.Column("impressions", sa.BigInteger, nullable=False),
    sa.Column("clicks", sa.BigInteger, nullable=False),
    sa.Column("leads", sa.Float, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("change_key", sa.String(40), primary_key=True),  # sha1 of the row: the same change stored once
    sa.Column("changed_at", sa.DateTime, nullable=False, index=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("campaign_id", sa.String(64), nullable=False),
    sa.Column("user_email", sa.Text, nullable=False),
    sa.Column("client_type", sa.String(40), nullable=False, server_default=""),
    sa.Column("resource_type", sa.Text, nullable=False),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("changed_fields", sa.Text, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
)

pulls = sa.Table(
    "pulls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(64), nullable=False, index=True),
    sa.Column("start", sa.Date, nullable=False),
    sa.Column("end", sa.Date, nullable=False),
    sa.Column("metric_rows", sa.Integer, nullable=False),
    sa.Column("change_rows", sa.Integer, nullable=False),
    sa.Column("pulled_at", sa.DateTime, nullable=False),
    # False when some accounts could not be pulled: such a pull does not move the source's cursor
    sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.true()),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("family", sa.String(64), nullable=False),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("campaign_id", sa.String(64), nullable=False),
    sa.Column("detected_on", sa.Date, nullable=False),
    sa.Column("onset", sa.Date, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | resolved
    sa.Column("last_active", sa.Date, nullable=False),
    sa.Column("resolved_on", sa.Date),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("metric", sa.String(32), nullable=False),
    sa.Column("observed", sa.Float),
    sa.Column("baseline", sa.Float),
    sa.Column("managing_party", sa.String(64)),
    sa.Column("party_since", sa.Date),
    sa.Column("excess_cost", sa.Float, nullable=False),
    sa.Column("notified", sa.Boolean, nullable=False),  # False: found in history, never announced
    sa.Column("acknowledged_at", sa.DateTime),  # UTC: someone took it on (Slack's Acknowledge button)
    sa.Column("acknowledged_by", sa.Text),  # ... who: e.g. "slack:U0123ABCD (Dana)"
    sa.Column("details", sa.Text, nullable=False),  # JSON: names, currency, spend, leads, changes, excess by party
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("family", "account_id", "campaign_id", "detected_on", name="uq_incident"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),  # opened | updated | resolved | reminder
    sa.Column("sink", sa.Text, nullable=False),  # e.g. jsonl:/an/absolute/path, as long as the path
    sa.Column("payload", sa.Text, nullable=False),  # JSON: the alert as the sinks render it
    sa.Column("status", sa.String(16), nullable=False),  # pending | sent | silenced | obsolete
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("sent_at", sa.DateTime),
    sa.Column("channel", sa.Text),  # where the sink put it, when it says (a Slack channel ID) ...
    sa.Column("ts", sa.String(32)),  # ... and the message's id there (Slack ts)
    sa.Column("group_key", sa.Text),  # sent as part of one grouped message: that message's key
)
sa.Index("ix_outbox_pending", outbox.c.status, outbox.c.id)

# who a source found managing an account, from its change history: one row per takeover day
inferred_ownership = sa.Table(
    "inferred_ownership",
    metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("campaign_id", sa.String(64), primary_key=True),  # "" for the whole account
    sa.Column("start", sa.Date, primary_key=True),
    sa.Column("party", sa.String(64), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
)

# notifications to hold back (see anomaly.silences); a NULL matcher matches anything
silences = sa.Table(
    "silences",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account", sa.String(64)),
    sa.Column("campaign", sa.String(64)),
    sa.Column("rule", sa.String(64)),
    sa.Column("party", sa.String(64)),
    sa.Column("until", sa.DateTime, nullable=False),  # UTC, exclusive
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expired_at", sa.DateTime),  # set by `anomaly silence expire`
)

# one row while `anomaly serve` runs: which instance may run jobs on this store
service_lock = sa.Table(
    "service_lock",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),  # always SERVICE_LOCK
    sa.Column("holder", sa.String(200), nullable=False),  # host:pid:random, see anomaly.service
    sa.Column("acquired_at", sa.DateTime, nullable=False),
    sa.Column("heartbeat_at", sa.DateTime, nullable=False),
)
SERVICE_LOCK = "serve"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class IngestResult:
    metric_rows: int
    change_rows: int


@dataclass(frozen=True)
class PullRecord:
    """One successful pull of a source (failed pulls store nothing, so they leave no record).
    ``complete`` is False when the source left some accounts out (an exhausted quota, a refused
    account): the next pull starts again from the last complete one."""

    source: str
    start: dt.date
    end: dt.date
    metric_rows: int
    change_rows: int
    pulled_at: dt.datetime  # UTC
    complete: bool = True


@dataclass(frozen=True)
class ServiceLock:
    """Who holds the service lock; times in UTC."""

    holder: str
    acquired_at: dt.datetime
    heartbeat_at: dt.datetime


@dataclass(frozen=True)
class OutboxItem:
    id: int
    incident_id: int
    event: str
    sink: str
    payload: dict
    attempts: int
    key: str = field(default="", compare=False)  # unique among all notifications
    created_at: dt.datetime | None = field(default=None, compare=False)


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


class StoreError(AnomalyError):
    """The store cannot be used (unreachable database, a schema from a newer version)."""


#: a password given in the query of a PostgreSQL URL, as libpq (and so psycopg) reads it
_PASSWORD_PARAMETER = re.compile(r"([?&](?:password|sslpassword)=)[^&#]*", re.IGNORECASE)
_MISREAD_PASSWORD = (
    "the URL does not read as meant: its user name or password seems to hold an '@' that must be percent-encoded "
    "(%40; also ':' as %3A and '/' as %2F)"
)


def describe_url(url: str) -> str:
    """A database URL with its password hidden, for messages: the password of the user info, also
    one holding an '@' that was not percent-encoded, and a password in the query (``?password=``)."""
    scheme, _, rest = url.partition("://")
    if rest.count("@") > 1:
        # read up to the last '@' as the user info: read up to the first, as URL parsers do, the
        # rest of such a password would show as the host or the database
        userinfo, _, location = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        return f"{scheme}://{user}{':***' if colon else ''}@" + _PASSWORD_PARAMETER.sub(r"\1***", location)
    try:
        rendered = sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return f"{scheme}://… (a URL that does not parse)"
    return _PASSWORD_PARAMETER.sub(r"\1***", rendered)


def _password_misread(url: str) -> bool:
    """Whether the URL parser reads a password other than the one up to the last '@': a password
    holding an '@' that was not percent-encoded, the rest of it taken for the host or the database."""
    rest = url.partition("://")[2]
    if rest.count("@") < 2:
        return False
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return True
    return parsed.password is not None and parsed.password != rest.rpartition("@")[0].partition(":")[2]


class Store:
    """All persistence. Construct with a SQLAlchemy URL; call ``migrate()`` once before use."""

    def __init__(self, url: str, *, engine: Engine | None = None):
        self.url = url
        try:
            self.engine = engine or make_engine(url)
        except (sa.exc.ArgumentError, ValueError) as exc:
            # the parser's own message quotes the part it could not read, which may be a password's
            reason = _MISREAD_PASSWORD if _password_misread(url) else exc
            raise StoreError(f"cannot use the store URL {describe_url(url)}: {reason}") from None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        """The URL with any password hidden, for messages (see ``describe_url``)."""
        return describe_url(self.url)

    # -- schema -------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create the tables, or check that an existing store has a schema this code understands.

        Migrations are explicit: each version step is listed in ``_MIGRATIONS`` and runs once.
        """
        try:
            with self.engine.begin() as conn:
                metadata.create_all(conn, tables=[schema_version])
                current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
                if current is None:
                    metadata.create_all(conn)
                    conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
                    return
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store at {self.describe()} has schema version {current}, newer than this "
                        f"software understands ({SCHEMA_VERSION}); upgrade the software"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    _MIGRATIONS[version](conn)
                    conn.execute(schema_version.update().values(version=version))
        except sa.exc.OperationalError as exc:
            # with a misread password, the driver's message names a piece of it as the host
            reason = _MISREAD_PASSWORD if _password_misread(self.url) else exc.orig
            raise StoreError(f"cannot open the store at {self.describe()}: {reason}") from None

    # -- data ---------------------------------------------------------------------------------

    def ingest(
        self,
        source: str,
        start: dt.date,
        end: dt.date,
        metric_frame: pd.DataFrame,
        change_frame: pd.DataFrame,
        ownership_frame: pd.DataFrame | None = None,
        *,
        complete: bool = True,
    ) -> IngestResult:
        """Upsert one fetch in a single transaction and record the pull (the source's cursor: a
        pull that is not ``complete``, some accounts left out, does not move it).

        ``ownership_frame`` holds the ownership periods the source inferred; their starts are kept
        (a later inference of the same day replaces the party), and ``load_inferred_ownership``
        joins them into periods."""
        now = utcnow()
        metric_rows = _metric_records(metric_frame, source, now)
        change_rows = _change_records(change_frame, source)
        ownership_rows = [] if ownership_frame is None else [
            {"account_id": r.account_id, "campaign_id": r.campaign_id, "start": pd.Timestamp(r.start).date(), "party": r.party, "source": source}
            for r in ownership_frame.itertuples(index=False)
        ]
        with self.engine.begin() as conn:
            for chunk in _chunks(metric_rows, 2000):
                conn.execute(self._upsert(metrics, METRIC_KEY, update=True), chunk)
            for chunk in _chunks(change_rows, 2000):
                conn.execute(self._upsert(changes, ["change_key"], update=False), chunk)
            for chunk in _chunks(ownership_rows, 2000):
                conn.execute(self._upsert(inferred_ownership, ["account_id", "campaign_id", "start"], update=True), chunk)
            conn.execute(
                pulls.insert().values(
                    source=source, start=start, end=end, metric_rows=len(metric_rows), change_rows=len(change_rows), pulled_at=now,
                    complete=complete,
                )
            )
        return IngestResult(len(metric_rows), len(change_rows))

    def _upsert(self, table: sa.Table, key: Sequence[str], *, update: bool):
        insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(self.dialect)
        if insert is None:
            raise StoreError(f"unsupported database {self.dialect!r}; use SQLite or PostgreSQL")
        stmt = insert(table)
        if not update:
            return stmt.on_conflict_do_nothing(index_elements=list(key))
        columns = [c.name for c in table.columns if c.name not in key]
        return stmt.on_conflict_do_update(index_elements=list(key), set_={c: stmt.excluded[c] for c in columns})

    def load_inferred_ownership(self) -> pd.DataFrame:
        """The inferred ownership periods (``anomaly.schema.OWNERSHIP_COLUMNS``): each party from its
        takeover day until the next party's, a party that is found again continuing its period."""
        query = sa.select(inferred_ownership.c.account_id, inferred_ownership.c.campaign_id, inferred_ownership.c.party, inferred_ownership.c.start)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(inferred_ownership.c.account_id, inferred_ownership.c.campaign_id, inferred_ownership.c.start)).all()
        periods = []
        for row in rows:
            same_scope = periods and periods[-1][:2] == [row.account_id, row.campaign_id]
            if same_scope and periods[-1][2] == row.party:
                continue  # the same party again: its period goes on
            if same_scope:
                periods[-1][4] = row.start
            periods.append([row.account_id, row.campaign_id, row.party, row.start, None])
        if not periods:
            return empty_ownership()
        return normalise_ownership(pd.DataFrame(periods, columns=OWNERSHIP_COLUMNS))

    def last_metric_day(self) -> dt.date | None:
        """The last day the store holds metrics for; None when it holds none."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(metrics.c.date))).scalar()

    def last_pull_end(self, source: str) -> dt.date | None:
        """The source's cursor: the end of its last complete pull (None before the first)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(pulls.c.end)).where(pulls.c.source == source, pulls.c.complete.is_(True))).scalar()

    def last_pulls(self) -> dict[str, PullRecord]:
        """The latest successful pull of each source that has one, by source name."""
        latest = sa.select(sa.func.max(pulls.c.id)).group_by(pulls.c.source)
        query = sa.select(pulls).where(pulls.c.id.in_(latest))
        with self.engine.connect() as conn:
            return {
                r.source: PullRecord(r.source, r.start, r.end, r.metric_rows, r.change_rows, r.pulled_at, r.complete)
                for r in conn.execute(query)
            }

    def load_metrics(self, start: dt.date | None = None, end: dt.date | None = None) -> pd.DataFrame:
        """Daily canonical metrics (hour = DAILY). Hourly rows are summed into their day; where a day
        has both a daily row and hourly rows, the daily row is the total and wins."""
        query = sa.select(*[metrics.c[c] for c in METRIC_COLUMNS])
        if start is not None:
            query = query.where(metrics.c.date >= start)
        if end is not None:
            query = query.where(metrics.c.date <= end)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return empty_metrics()
        # plain tuples: pandas reads a million of them several times faster than row objects
        frame = _normalise_loaded(pd.DataFrame.from_records([tuple(row) for row in rows], columns=METRIC_COLUMNS))
        hourly = frame["hour"] != DAILY
        if hourly.any():
            key = ["account_id", "campaign_id", "date"]
            has_daily = frame.loc[~hourly, key].drop_duplicates()
            only_hourly = frame[hourly].merge(has_daily, on=key, how="left", indicator=True)
            only_hourly = only_hourly[only_hourly["_merge"] == "left_only"].drop(columns="_merge")
            summed = (
                only_hourly.groupby(key, as_index=False)
                .agg({"account_name": "last", "campaign_name": "last", "currency": "last", "spend": "sum", "impressions": "sum", "clicks": "sum", "leads": "sum"})
                .assign(hour=DAILY)
            )
            frame = pd.concat([frame[~hourly], summed[METRIC_COLUMNS]], ignore_index=True)
        return frame.sort_values(["account_id", "campaign_id", "date"], kind="stable").reset_index(drop=True)

    def load_changes(self, start: dt.datetime | None = None, end: dt.datetime | None = None) -> pd.DataFrame:
        query = sa.select(*[changes.c[c] for c in CHANGE_COLUMNS]).order_by(changes.c.changed_at)
        if start is not None:
            query = query.where(changes.c.changed_at >= start)
        if end is not None:
            query = query.where(changes.c.changed_at < end)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return empty_changes()
        frame = pd.DataFrame(rows, columns=CHANGE_COLUMNS)
        frame["changed_at"] = pd.to_datetime(frame["changed_at"]).astype("datetime64[ns]")
        return frame

    # -- incidents and the outbox -------------------------------------------------------------

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

    def _enqueue(self, conn: sa.Connection, key: str, incident_id: int, event: str, sink: str, payload: dict[str, Any], now: dt.datetime) -> int:
        """Add a pending notification unless one with ``key`` exists; 1 when it was added, else 0."""
        stmt = self._upsert(outbox, ["dedupe_key"], update=False).values(
            dedupe_key=key,
            incident_id=incident_id,
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
            .join(incidents, incidents.c.id == outbox.c.incident_id)
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
                {**json.loads(r.payload), **_acknowledgement(r.acknowledged_at, r.acknowledged_by)},
                r.attempts, r.dedupe_key, r.created_at,
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

    def notifications(self, incident_id: int | None = None) -> list[dict[str, Any]]:
        """Every notification in the outbox (of one incident, when given), oldest first: what it
        said (``event``), where (``sink``, and ``channel``/``ts`` when the sink said), what became
        of it (``status``: pending, sent, silenced or obsolete; ``attempts``, ``last_error``) and
        when (``created_at``, ``sent_at``, naive UTC). The payload is left out."""
        columns = [c for c in outbox.columns if c.name not in ("payload", "dedupe_key")]
        query = sa.select(*columns).order_by(outbox.c.id)
        if incident_id is not None:
            query = query.where(outbox.c.incident_id == incident_id)
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

    # -- silences -----------------------------------------------------------------------------

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

    # -- the service lock ---------------------------------------------------------------------

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


@dataclass(frozen=True)
class IncidentWrite:
    """One incident to insert (``incident_id`` None) or update, with the notifications it triggers.

    Each notification is a dict with ``event``, ``key`` (what makes it unique for the incident),
    ``sink`` and ``payload``.
    """

    incident_id: int | None
    values: dict[str, Any]
    notifications: tuple[dict[str, Any], ...] = ()


#: How long a SQLite write waits for another connection's write lock before it fails, unless the
#: URL says (``sqlite:///anomaly.db?timeout=60``).
SQLITE_TIMEOUT_SECONDS = 30


def make_engine(url: str) -> Engine:
    """An engine with settings that let an analyst read while the service writes (SQLite WAL), and
    that turns the database's failures that need someone to act (a lock held too long, a full disk)
    into a StoreError."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        waits = {} if "timeout" in parsed.query else {"timeout": SQLITE_TIMEOUT_SECONDS}
        engine = sa.create_engine(url, connect_args=waits)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001 - DB-API connection
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    sa.event.listen(engine, "handle_error", _explain_failure)
    return engine


#: What the database says, in lower case → what it means for whoever runs the service.
_FAILURES = (
    ("database is locked", "another connection held a write lock on it for too long (an open write transaction, a backup?); "
     "the SQLite URL's ?timeout= sets how long a write waits"),
    ("database table is locked", "another connection held a lock on it for too long"),
    ("database or disk is full", "the disk (or the database's size limit) is full"),
    ("no space left on device", "the disk is full"),
    ("could not extend file", "the disk is full"),
    ("disk i/o error", "the disk failed to read or write"),
    ("attempt to write a readonly database", "the database file or its folder is read-only for this user"),
    ("lock timeout", "another connection held a lock on it for too long"),
)


def _explain_failure(context) -> None:  # noqa: ANN001 - sqlalchemy.engine.ExceptionContext
    """Raise a StoreError in place of a database failure that needs someone to act (a lock held
    too long, a full disk): what happened, to which store, and that the statement's transaction was
    rolled back, so nothing of it was written. Other errors pass through unchanged."""
    original = context.original_exception
    text = str(original).lower()
    for symptom, meaning in _FAILURES:
        if symptom in text:
            # hide_password alone would show a password given in the URL's query
            where = describe_url(context.engine.url.render_as_string(hide_password=False)) if context.engine is not None else "the store"
            first_line = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
            raise StoreError(f"the store at {where} could not be written: {meaning} ({first_line}); nothing of this write was kept") from None


def _acknowledgement(at: dt.datetime | None, by: str | None) -> dict[str, Any]:
    return {"acknowledged_at": at.isoformat(timespec="seconds") if at is not None else None, "acknowledged_by": by}


def _incident_row(mapping) -> dict[str, Any]:
    row = dict(mapping)
    row["details"] = json.loads(row["details"])
    return row


def _metric_records(frame: pd.DataFrame, source: str, now: dt.datetime) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    out = frame[METRIC_COLUMNS].copy()
    out["date"] = out["date"].dt.date
    out["source"] = source
    out["updated_at"] = now
    records = out.to_dict("records")
    for r in records:  # numpy scalars → Python, which every DB-API driver accepts
        r["hour"] = int(r["hour"])
        r["impressions"] = int(r["impressions"])
        r["clicks"] = int(r["clicks"])
        r["spend"] = float(r["spend"])
        r["leads"] = float(r["leads"])
    return records


def _change_records(frame: pd.DataFrame, source: str) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    records = []
    for row in frame[CHANGE_COLUMNS].itertuples(index=False):
        values = dict(zip(CHANGE_COLUMNS, row))
        values["changed_at"] = pd.Timestamp(values["changed_at"]).to_pydatetime()
        digest = hashlib.sha1("\x1f".join(str(values[c]) for c in IDENTITY_COLUMNS).encode()).hexdigest()
        records.append({**values, "change_key": digest, "source": source})
    return records


def _normalise_loaded(frame: pd.DataFrame) -> pd.DataFrame:
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
    for column in ("hour", "impressions", "clicks"):
        frame[column] = frame[column].astype("int64")
    for column in ("spend", "leads"):
        frame[column] = frame[column].astype("float64")
    for column in ("account_id", "account_name", "campaign_id", "campaign_name", "currency"):
        frame[column] = frame[column].astype(str)
    return frame


def _chunks(rows: list, size: int):
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


#: The columns that identify a change (its key is their digest). ``client_type`` came later and is
#: left out, so a change stored before it existed is not stored again.
IDENTITY_COLUMNS = [c for c in CHANGE_COLUMNS if c != "client_type"]


def _add_columns(conn: sa.Connection, table: str, columns: dict[str, str]) -> None:
    # only the missing ones: a store whose version number was set back by hand may have them
    present = {c["name"] for c in sa.inspect(conn).get_columns(table)}
    for name, definition in columns.items():
        if name not in present:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {name} {definition}"))


def _add_client_type(conn: sa.Connection) -> None:
    _add_columns(conn, "changes", {"client_type": "VARCHAR(40) NOT NULL DEFAULT ''"})


def _add_service_lock(conn: sa.Connection) -> None:
    # IF NOT EXISTS: a store whose version number was set back by hand already has the table
    conn.execute(
        sa.text(
            "CREATE TABLE IF NOT EXISTS service_lock (name VARCHAR(32) NOT NULL PRIMARY KEY, holder VARCHAR(200) NOT NULL, "
            "acquired_at TIMESTAMP NOT NULL, heartbeat_at TIMESTAMP NOT NULL)"
        )
    )


def _unbounded_sink_names(conn: sa.Connection) -> None:
    # a sink's name holds a file path; SQLite never enforced the old lengths, PostgreSQL did
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ALTER TABLE outbox ALTER COLUMN sink TYPE TEXT, ALTER COLUMN dedupe_key TYPE TEXT"))


def _add_inferred_ownership(conn: sa.Connection) -> None:
    inferred_ownership.create(conn, checkfirst=True)


def _add_receipts(conn: sa.Connection) -> None:
    _add_columns(conn, "outbox", {"channel": "TEXT", "ts": "VARCHAR(32)"})


def _add_silences(conn: sa.Connection) -> None:
    silences.create(conn, checkfirst=True)


def _add_acknowledgements_and_groups(conn: sa.Connection) -> None:
    _add_columns(conn, "incidents", {"acknowledged_at": "TIMESTAMP", "acknowledged_by": "TEXT"})
    _add_columns(conn, "outbox", {"group_key": "TEXT"})


def _add_pull_completeness(conn: sa.Connection) -> None:
    _add_columns(conn, "pulls", {"complete": "BOOLEAN NOT NULL DEFAULT TRUE"})


#: version → function(conn) that brings a store from version − 1 to version.
_MIGRATIONS: dict[int, Any] = {
    2: _add_client_type,
    3: _add_service_lock,
    4: _unbounded_sink_names,
    5: _add_inferred_ownership,
    6: _add_receipts,
    7: _add_silences,
    8: _add_acknowledgements_and_groups,
    9: _add_pull_completeness,
}
