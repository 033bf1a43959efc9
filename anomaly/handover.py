"""Handovers: when the managing party of an account or campaign changes, a message of its own.

A handover is read from the ownership periods (config's, the ownership file's, and those inferred
from change history; see ``anomaly.ownership``): a period whose party differs from the party of the
period before it in the same scope (the account, or one campaign), or, for a campaign's first own
period, from the party managing its account the day before. An account's first period hands
nothing over: nobody managed it before, as far as the service knows.

Its message says which accounts and campaigns were handed over, from whom to whom, since when, and
each campaign's figures over the ``reference_days`` before the handover (cost per lead, cost per
click, conversion rate, spend and leads a day): the reference that a probation compares with. The
figures are computed once, by the first cycle that sees the handover, and kept in the store as
they were then.

It goes to the routes of both parties: the routes are asked once as if the party handing over
managed the account and once as if the party taking over did (``party_at`` makes no difference: a
handover has no onset, and both parties are the news), and the message goes to the sinks of both
answers, with their mentions. For a route's ``severity`` a handover counts as a warning: a route
for critical incidents only does not get it.

Everything here is pure: frames in, values out; the store and the sinks are the caller's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from anomaly.alerts.routing import Router, Target
from anomaly.config import HandoffConfig
from anomaly.platforms import guess_platform
from anomaly.store import HandoverWrite

#: what a handover counts as for a route's ``severity`` matcher
ROUTING_SEVERITY = "warning"


@dataclass(frozen=True)
class Handover:
    """The managing party of an account (``campaign_id`` "") or of one campaign changes from
    ``from_party`` to ``to_party``; ``start`` is the first day ``to_party`` manages it."""

    account_id: str
    campaign_id: str
    start: dt.date
    from_party: str
    to_party: str

    @property
    def key(self) -> tuple[str, str, dt.date]:
        return (self.account_id, self.campaign_id, self.start)


def find_handovers(periods: pd.DataFrame, default_party: str | None = None) -> list[Handover]:
    """Every handover the ownership ``periods`` (canonical ownership frame) hold, oldest first.

    ``default_party`` manages whatever no period covers: the party a campaign's first own period
    takes over from when no period of its account covers the day before."""
    if periods.empty:
        return []
    frame = periods.assign(start=pd.to_datetime(periods["start"]), end=pd.to_datetime(periods["end"]))
    # a period written twice (config and the ownership file) counts once: the last one written
    frame = frame.drop_duplicates(["account_id", "campaign_id", "start"], keep="last").sort_values(["account_id", "campaign_id", "start"], kind="stable")
    accounts = frame[frame["campaign_id"] == ""]
    found = []
    for (account_id, campaign_id), group in frame.groupby(["account_id", "campaign_id"], sort=False):
        previous = None
        for row in group.itertuples(index=False):
            start = row.start.date()
            if previous is not None:
                before = previous
            elif campaign_id:
                before = _party_on(accounts[accounts["account_id"] == account_id], start - dt.timedelta(days=1)) or default_party
            else:
                before = None
            if before and before != row.party:
                found.append(Handover(account_id, campaign_id, start, before, row.party))
            previous = row.party
    return sorted(found, key=lambda h: (h.start, h.account_id, h.campaign_id))


def _party_on(periods: pd.DataFrame, day: dt.date) -> str | None:
    stamp = pd.Timestamp(day)
    covering = periods[(periods["start"] <= stamp) & (periods["end"].isna() | (stamp < periods["end"]))]
    return None if covering.empty else str(covering.iloc[-1]["party"])


def reference_figures(metrics: pd.DataFrame, handover: Handover, days: int, periods: pd.DataFrame | None = None) -> dict[str, Any]:
    """The figures of each campaign handed over, over the ``days`` days before the handover.

    For an account's handover, the campaigns are those of the account with data in those days,
    less any that a period of its own keeps with another party on the handover's first day. Per
    campaign: ``spend``, ``clicks``, ``leads`` (totals), ``days`` (the calendar days counted: the
    window, or from the campaign's first day of data when it began within it; a day without a row
    counts as a day without activity), ``cpl`` and ``cpc`` (account currency; None with no leads
    or no clicks), ``cvr`` (leads per click, a fraction), ``daily_spend`` and ``leads_per_day``.
    ``total`` has the same figures for all of them together."""
    first, last = handover.start - dt.timedelta(days=days), handover.start - dt.timedelta(days=1)
    rows = metrics[(metrics["account_id"] == handover.account_id) & (metrics["campaign_id"] != "")]
    if handover.campaign_id:
        rows = rows[rows["campaign_id"] == handover.campaign_id]
    elif periods is not None and not periods.empty:
        kept = _kept_by_own_period(periods, handover)
        rows = rows[~rows["campaign_id"].isin(kept)]
    started = rows.groupby("campaign_id")["date"].min()
    window = rows[(rows["date"] >= pd.Timestamp(first)) & (rows["date"] <= pd.Timestamp(last))]
    campaigns = []
    for campaign_id, group in window.groupby("campaign_id", sort=False):
        counted = (last - max(first, started[campaign_id].date())).days + 1
        latest = group.sort_values("date").iloc[-1]
        campaigns.append({"campaign_id": str(campaign_id), "campaign_name": str(latest["campaign_name"]), **_figures(group, counted)})
    campaigns.sort(key=lambda c: (-c["spend"], c["campaign_name"], c["campaign_id"]))
    total = _figures(window, days) if campaigns else None
    return {"days": days, "from": first.isoformat(), "to": last.isoformat(), "campaigns": campaigns, "total": total}


def _kept_by_own_period(periods: pd.DataFrame, handover: Handover) -> set[str]:
    """The campaigns of the account whose own period covers the handover's first day with another party."""
    own = periods[(periods["account_id"] == handover.account_id) & (periods["campaign_id"] != "")]
    stamp = pd.Timestamp(handover.start)
    start, end = pd.to_datetime(own["start"]), pd.to_datetime(own["end"])
    covering = own[(start <= stamp) & (end.isna() | (stamp < end)) & (own["party"] != handover.to_party)]
    return set(covering["campaign_id"])


def _figures(rows: pd.DataFrame, days: int) -> dict[str, Any]:
    spend, clicks, leads = float(rows["spend"].sum()), float(rows["clicks"].sum()), float(rows["leads"].sum())
    days = max(int(days), 1)
    return {
        "spend": round(spend, 2),
        "clicks": int(clicks),
        "leads": round(leads, 2),
        "days": days,
        "cpl": round(spend / leads, 2) if leads > 0 else None,
        "cpc": round(spend / clicks, 2) if clicks > 0 else None,
        "cvr": round(leads / clicks, 4) if clicks > 0 else None,
        "daily_spend": round(spend / days, 2),
        "leads_per_day": round(leads / days, 2),
    }


def handover_payload(
    handover: Handover, metrics: pd.DataFrame, as_of: dt.date, days: int, *, periods: pd.DataFrame | None = None, platform: str = ""
) -> dict[str, Any]:
    """What the sinks render for a handover: where, from whom to whom, since when, the reference."""
    rows = metrics[metrics["account_id"] == handover.account_id]
    latest = rows.sort_values("date").iloc[-1] if len(rows) else None
    campaign_name = None
    if handover.campaign_id:
        own = rows[rows["campaign_id"] == handover.campaign_id].sort_values("date")
        campaign_name = str(own.iloc[-1]["campaign_name"]) if len(own) else handover.campaign_id
    return {
        "kind": "handover",
        "account_id": handover.account_id,
        "account_name": str(latest["account_name"]) if latest is not None else handover.account_id,
        "campaign_id": handover.campaign_id,
        "campaign_name": campaign_name,
        "currency": str(latest["currency"]) if latest is not None else "USD",
        "platform": platform or guess_platform(handover.account_id),
        "from_party": handover.from_party,
        "to_party": handover.to_party,
        "since": handover.start.isoformat(),
        "detected_on": as_of.isoformat(),
        "managing_party": handover.to_party,  # a silence's party matcher reads this
        "reference": reference_figures(metrics, handover, days, periods),
    }


def handover_targets(router: Router, payload: Mapping[str, Any]) -> list[Target]:
    """The sinks of both parties' routes, in the order of the sinks, with the mentions of both."""
    mentions: dict[str, list[str]] = {}
    for party in (payload["from_party"], payload["to_party"]):
        asked = {**payload, "managing_party": party, "party_now": party, "severity": ROUTING_SEVERITY}
        for target in router.targets(asked):
            mentions.setdefault(target.sink, []).extend(target.mentions)
    return [Target(sink, tuple(dict.fromkeys(mentions[sink]))) for sink in router.sinks if sink in mentions]


def handover_writes(
    periods: pd.DataFrame,
    metrics: pd.DataFrame,
    as_of: dt.date,
    recorded: set[tuple[str, str, dt.date]],
    router: Router,
    settings: HandoffConfig,
    *,
    default_party: str | None = None,
    platforms: Mapping[str, str] | None = None,
) -> list[HandoverWrite]:
    """The handovers to record as of ``as_of``: those that have begun by then and are not
    ``recorded`` yet, each announced to both parties' routes when ``settings.announce`` and it
    began at most ``settings.announce_within_days`` before ``as_of``; else recorded only."""
    writes = []
    for handover in find_handovers(periods, default_party):
        if handover.start > as_of or handover.key in recorded:
            continue
        payload = handover_payload(
            handover, metrics[metrics["date"] <= pd.Timestamp(as_of)], as_of, settings.reference_days,
            periods=periods, platform=(platforms or {}).get(handover.account_id, ""),
        )
        notify = settings.announce and (as_of - handover.start).days <= settings.announce_within_days
        targets = handover_targets(router, payload) if notify else []
        details = {"payload": payload, "targets": [{"sink": t.sink, "mentions": list(t.mentions)} for t in targets]}
        values = {
            "account_id": handover.account_id,
            "campaign_id": handover.campaign_id,
            "start": handover.start,
            "from_party": handover.from_party,
            "to_party": handover.to_party,
            "detected_on": as_of,
            "notified": notify,
            "details": details,
        }
        notes = tuple({"sink": t.sink, "payload": {**payload, **({"mentions": list(t.mentions)} if t.mentions else {})}} for t in targets)
        writes.append(HandoverWrite(values, notes))
    return writes
