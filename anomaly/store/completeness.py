"""How late each account's leads arrive: what each pull first saw of a day, against the day's final
figure.

A platform keeps adding conversions to a day for a week or more after it, and every pull re-reads
its last days, overwriting them. Before they are overwritten, each pull's figures are kept here:
the leads of each account-day as the first pull that many days after the day saw them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import sqlalchemy as sa

from anomaly.schema import DAILY
from anomaly.store.base import StoreBase
from anomaly.store.tables import leads_seen, metrics

#: A day's leads are taken as final this many days after it; until then each pull's first figure
#: for it is kept (``days_after`` 0 .. SETTLED_DAYS).
SETTLED_DAYS = 14

COMPLETENESS_COLUMNS = ["account_id", "days_after", "share"]


class CompletenessStore(StoreBase):
    """The share of each account's final leads that its source had reported so many days after the day."""

    def lead_completeness(self, max_days: int = 7, *, min_days: int = 14, history_days: int = 90, as_of: dt.date | None = None) -> pd.DataFrame:
        """How complete each account's leads were so many days after the day: for each account and
        each ``days_after`` 0 … ``max_days`` − 1, a row ``account_id, days_after, share``
        (``anomaly.detect.detect`` takes the frame as ``completeness``).

        ``share`` is the part of a day's final leads that the pulls had already reported
        ``days_after`` days after the day: the leads the first such pull saw, summed over the days,
        divided by the same days' leads as the store holds them now, clipped to 0 … 1. A share of
        0.6 at ``days_after`` 0 means that a pull on the day itself had seen 60% of the leads the
        day ended up with.

        Only days whose leads are final count (``SETTLED_DAYS`` or more before the last day with
        metrics), within the last ``history_days`` days, and only daily rows: campaigns reported by
        the hour are left out of both sums. An account has a share for a ``days_after`` only when
        at least ``min_days`` of those days had leads and were pulled that many days after; the
        frame is empty (with these columns) when no account qualifies, as in a store pulled for
        less than four weeks. With ``as_of``, only days up to it count, as a cycle for that day
        would have seen them.
        """
        last = self.last_metric_day()
        if last is not None and as_of is not None:
            last = min(last, as_of)
        rows = [] if last is None or max_days <= 0 else self._seen_and_final(last, max_days, min_days, history_days)
        frame = pd.DataFrame.from_records(rows, columns=["account_id", "days_after", "seen", "final"])
        share = (frame["seen"].astype("float64") / frame["final"].astype("float64")).clip(0.0, 1.0)
        return pd.DataFrame(
            {"account_id": frame["account_id"].astype(str), "days_after": frame["days_after"].astype("int64"), "share": share},
            columns=COMPLETENESS_COLUMNS,
        )

    def _seen_and_final(self, last: dt.date, max_days: int, min_days: int, history_days: int) -> list[tuple]:
        """(account_id, days_after, leads first seen, final leads) summed over the settled days
        that qualify (see ``lead_completeness``). Seen and final are matched by source too: an
        account pulled from two sources is compared within each."""
        final = (
            sa.select(metrics.c.source, metrics.c.account_id, metrics.c.date, sa.func.sum(metrics.c.leads).label("leads"))
            .where(
                metrics.c.hour == DAILY,
                metrics.c.date > last - dt.timedelta(days=history_days),
                metrics.c.date <= last - dt.timedelta(days=SETTLED_DAYS),
            )
            .group_by(metrics.c.source, metrics.c.account_id, metrics.c.date)
            .subquery()
        )
        final_sum = sa.func.sum(final.c.leads)
        days_with_leads = sa.func.count(sa.distinct(sa.case((final.c.leads > 0, leads_seen.c.date))))
        query = (
            sa.select(leads_seen.c.account_id, leads_seen.c.days_after, sa.func.sum(leads_seen.c.leads), final_sum)
            .join(
                final,
                sa.and_(final.c.source == leads_seen.c.source, final.c.account_id == leads_seen.c.account_id, final.c.date == leads_seen.c.date),
            )
            .where(leads_seen.c.days_after < max_days)
            .group_by(leads_seen.c.account_id, leads_seen.c.days_after)
            .having(days_with_leads >= min_days, final_sum > 0)
            .order_by(leads_seen.c.account_id, leads_seen.c.days_after)
        )
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]


def leads_seen_records(frame: pd.DataFrame, source: str, end: dt.date, now: dt.datetime) -> list[dict[str, Any]]:
    """The leads of each account-day in a pull's daily rows, with how many days before the last day
    the pull has data for (at most its ``end``) the day is: the rows of ``leads_seen`` (days
    0 .. SETTLED_DAYS before it only). Counted from the last day with data, as detection counts
    back from it: an export made the next morning ends yesterday, and yesterday is its newest day."""
    daily_dates = frame.loc[frame["hour"] == DAILY, "date"] if not frame.empty else frame.get("date")
    if frame.empty or daily_dates.empty:
        return []
    last = min(pd.Timestamp(end), daily_dates.max())
    # compared before subtracted: a day centuries before the end would overflow the difference
    recent = (frame["hour"] == DAILY) & frame["date"].between(last - pd.Timedelta(days=SETTLED_DAYS), last)
    daily = frame.loc[recent, ["account_id", "date", "leads"]]
    daily = daily.assign(days_after=(last - daily["date"]).dt.days)
    totals = daily.groupby(["account_id", "date", "days_after"], as_index=False, sort=False)["leads"].sum()
    return [
        {"source": source, "account_id": account_id, "date": date.date(), "days_after": int(days_after), "leads": float(leads), "pulled_at": now}
        for account_id, date, days_after, leads in totals.itertuples(index=False)
    ]
