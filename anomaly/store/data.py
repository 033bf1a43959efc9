"""What the sources bring: metrics, change history and inferred ownership, and each source's pulls
(its cursor)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

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
from anomaly.store.base import StoreBase, utcnow
from anomaly.store.completeness import leads_seen_records
from anomaly.store.source_files import SourceFile, source_file_records
from anomaly.store.tables import changes, inferred_ownership, leads_seen, metrics, pulls, source_files


@dataclass(frozen=True)
class IngestResult:
    metric_rows: int
    change_rows: int


@dataclass(frozen=True)
class PullRecord:
    """One successful pull of a source (failed pulls store nothing, so they leave no record).
    ``complete`` is False when the source left some accounts out (an exhausted quota, a refused
    account) or, ``no_rows``, when its files held no rows: the next pull starts again from the last
    complete one."""

    source: str
    start: dt.date
    end: dt.date
    metric_rows: int
    change_rows: int
    pulled_at: dt.datetime  # UTC
    complete: bool = True
    no_rows: bool = False


class DataStore(StoreBase):
    """Metrics, change history and inferred ownership as the sources bring them, and their pulls."""

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
        no_rows: bool = False,
        files: Sequence[SourceFile] = (),
    ) -> IngestResult:
        """Upsert one fetch in a single transaction and record the pull (the source's cursor: a
        pull that is not ``complete``, some accounts left out or, ``no_rows``, nothing in the
        source's files, does not move it) with the ``files`` it read and their content hashes.

        ``ownership_frame`` holds the ownership periods the source inferred; their starts are kept
        (a later inference of the same day replaces the party), and ``load_inferred_ownership``
        joins them into periods. The leads of each account-day in the daily rows up to
        ``SETTLED_DAYS`` before ``end`` are kept as this pull saw them, unless an earlier pull saw
        the day as many days after it (see ``lead_completeness``)."""
        now = utcnow()
        metric_rows = _metric_records(metric_frame, source, now)
        seen_rows = leads_seen_records(metric_frame, source, end, now)
        change_rows = _change_records(change_frame, source)
        ownership_rows = [] if ownership_frame is None else [
            {"account_id": r.account_id, "campaign_id": r.campaign_id, "start": pd.Timestamp(r.start).date(), "party": r.party, "source": source}
            for r in ownership_frame.itertuples(index=False)
        ]
        with self.engine.begin() as conn:
            for chunk in _chunks(metric_rows, 2000):
                conn.execute(self._upsert(metrics, METRIC_KEY, update=True), chunk)
            for chunk in _chunks(seen_rows, 2000):  # what an earlier pull saw first stays
                conn.execute(self._upsert(leads_seen, ["source", "account_id", "date", "days_after"], update=False), chunk)
            for chunk in _chunks(change_rows, 2000):
                conn.execute(self._upsert(changes, ["change_key"], update=False), chunk)
            for chunk in _chunks(ownership_rows, 2000):
                conn.execute(self._upsert(inferred_ownership, ["account_id", "campaign_id", "start"], update=True), chunk)
            pull = conn.execute(
                pulls.insert().values(
                    source=source, start=start, end=end, metric_rows=len(metric_rows), change_rows=len(change_rows), pulled_at=now,
                    complete=complete and not no_rows, no_rows=no_rows,
                )
            )
            for chunk in _chunks(source_file_records(files, source, pull.inserted_primary_key[0]), 2000):
                conn.execute(self._upsert(source_files, ["source", "path"], update=True), chunk)
        return IngestResult(len(metric_rows), len(change_rows))

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

    def first_metric_day(self) -> dt.date | None:
        """The first day the store holds metrics for; None when it holds none."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.min(metrics.c.date))).scalar()

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
                r.source: PullRecord(r.source, r.start, r.end, r.metric_rows, r.change_rows, r.pulled_at, r.complete, r.no_rows)
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
