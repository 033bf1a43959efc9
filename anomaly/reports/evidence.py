"""The evidence pack of one incident: everything two parties need to settle who pays for it.

``incident_evidence(project, incident_id)`` gathers, from the store through ``anomaly.analysis``:
the timeline (onset, detection, each alert, acknowledgement, resolution), the campaign's days
around the incident against baseline, the ownership periods, every change in the window with the
party behind it, the excess cost by day and by managing party, and a proposed split when
``settlement`` is configured. ``propose_split`` is the pure rule that turns the excess into shares.
"""

from __future__ import annotations

from pathlib import Path

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from anomaly.alerts.render import money
from anomaly.analysis import Project
from anomaly.config import SettlementConfig
from anomaly.incidents import SERIES_DAYS_BEFORE
from anomaly.ownership import AUTOMATED, UNATTRIBUTED, UNKNOWN

DAYS_AFTER = 7


@dataclass(frozen=True)
class TimelineEvent:
    """One moment of an incident's life. ``at`` is a date for what the data shows (onset,
    detection, resolution) and a UTC datetime for what people and the service did (alerts sent,
    acknowledgement)."""

    at: dt.date | dt.datetime
    what: str
    detail: str = ""

    @property
    def sort_key(self) -> dt.datetime:
        return self.at if isinstance(self.at, dt.datetime) else dt.datetime.combine(self.at, dt.time())

    @property
    def when(self) -> str:
        return f"{self.at:%a %Y-%m-%d %H:%M} UTC" if isinstance(self.at, dt.datetime) else f"{self.at:%a %Y-%m-%d}"


@dataclass(frozen=True)
class SplitLine:
    party: str
    name: str
    amount: float
    percent: float  # of the whole excess
    basis: str  # why this party pays this part, in words


@dataclass(frozen=True)
class IncidentEvidence:
    incident: dict[str, Any]  # Project.incidents' columns
    payload: dict[str, Any]  # the alert as the service rendered it
    window: tuple[dt.date, dt.date]
    days: pd.DataFrame  # Project.daily for the campaign over the window
    excess: pd.DataFrame  # Project.excess_by_day
    by_party: pd.DataFrame  # party, name, days, spend, leads, excess
    ownership: pd.DataFrame  # the periods that touch the window
    changes: pd.DataFrame  # every change in the window, with its party
    notifications: pd.DataFrame
    timeline: list[TimelineEvent]
    split: list[SplitLine] | None  # None without settlement terms in config
    settlement: SettlementConfig | None
    as_of: dt.date  # the last day of data in the store

    @property
    def currency(self) -> str:
        return self.incident["currency"]

    @property
    def total_excess(self) -> float:
        return float(self.by_party["excess"].sum())


def incident_evidence(project: Project, incident_id: int) -> IncidentEvidence:
    """Everything the evidence pack of ``incident_id`` shows (see the module docstring)."""
    row = project.incident(incident_id)
    incidents = project.incidents(account=row["account_id"])
    record = incidents[incidents["id"] == row["id"]].iloc[0].to_dict()
    payload = row["details"]["payload"]
    onset = record["onset"].date()
    end = (record["resolved_on"] if not pd.isna(record["resolved_on"]) else record["last_active"]).date()
    all_days = project.daily(account=row["account_id"], campaign=row["campaign_id"])
    as_of = all_days["date"].max().date()
    window = (onset - dt.timedelta(days=SERIES_DAYS_BEFORE), min(end + dt.timedelta(days=DAYS_AFTER), as_of))
    days = all_days[(all_days["date"] >= pd.Timestamp(window[0])) & (all_days["date"] <= pd.Timestamp(window[1]))].reset_index(drop=True)
    excess = project.excess_by_day(row["id"])
    changes = project.changes(account=row["account_id"], start=window[0], end=window[1])
    if row["campaign_id"]:
        changes = changes[changes["campaign_id"].isin([row["campaign_id"], ""])].reset_index(drop=True)
    ownership = project.ownership(account=row["account_id"])
    ownership = ownership[
        ownership["campaign_id"].isin(["", row["campaign_id"]])
        & (ownership["start"] <= pd.Timestamp(window[1]))
        & (ownership["end"].isna() | (ownership["end"] > pd.Timestamp(window[0])))
    ].reset_index(drop=True)
    notifications = project.notifications(row["id"])
    by_party = _by_party(excess, project)
    settlement = project.config.settlement
    split = None
    if settlement is not None:
        split = propose_split(
            dict(zip(by_party["party"], by_party["excess"])), payload.get("changes", []), record["managing_party"], settlement, project.party_name
        )
    return IncidentEvidence(
        incident=record,
        payload=payload,
        window=window,
        days=days,
        excess=excess,
        by_party=by_party,
        ownership=ownership,
        changes=changes,
        notifications=notifications,
        timeline=_timeline(record, days, notifications, project, as_of),
        split=split,
        settlement=settlement,
        as_of=as_of,
    )


def _by_party(excess: pd.DataFrame, project: Project) -> pd.DataFrame:
    """The excess by the party managing each day: its days, spend, leads, and excess (floored at
    zero, as the incident's own figures are)."""
    grouped = excess.groupby("managing_party", sort=False).agg(days=("date", "size"), spend=("spend", "sum"), leads=("leads", "sum"), excess=("excess", "sum"))
    grouped["excess"] = grouped["excess"].clip(lower=0.0)
    grouped = grouped.reset_index().rename(columns={"managing_party": "party"})
    grouped.insert(1, "name", grouped["party"].map(project.party_name))
    return grouped.sort_values("excess", ascending=False, kind="stable").reset_index(drop=True)


def propose_split(
    excess_by_party: Mapping[str, float],
    changes: list[Mapping[str, Any]],
    managing_party: str,
    settlement: SettlementConfig,
    party_name=lambda key: key,
) -> list[SplitLine]:
    """Who pays what of an incident's excess cost under ``settlement``.

    ``excess_by_party`` is the excess by the party managing each day (floored at zero);
    ``changes`` the changes shown with the incident (each with its ``party``). First the bearers:
    with ``bears: managing_party`` each managing party bears its days' excess; with
    ``bears: changed_by`` the whole excess falls to the parties whose people made those changes,
    in proportion to their number (automated, unattributed or no changes: the managing party at
    onset). Then each bearer's contract ``shares`` split what it bears. Lines come largest first.
    """
    total = sum(max(v, 0.0) for v in excess_by_party.values())
    bearers: dict[str, tuple[float, str]] = {}
    if settlement.bears == "changed_by":
        counts = Counter(c["party"] for c in changes if c["party"] not in (AUTOMATED, UNATTRIBUTED, UNKNOWN, ""))
        if counts:
            n = sum(counts.values())
            for party, k in counts.items():
                bearers[party] = (total * k / n, f"made {k} of the {n} changes before detection")
        else:
            bearers[managing_party] = (total, "managed the campaign at onset; no party's changes preceded it")
    else:
        for party, amount in excess_by_party.items():
            if amount > 0:
                bearers[party] = (amount, "managed the campaign on those days")
    amounts: dict[str, float] = {}
    reasons: dict[str, list[str]] = {}
    for bearer, (amount, why) in bearers.items():
        shares = settlement.shares.get(bearer, {bearer: 100.0})
        for party, percent in shares.items():
            amounts[party] = amounts.get(party, 0.0) + amount * percent / 100.0
            if party == bearer and percent == 100.0:
                reasons.setdefault(party, []).append(why)
            else:
                reasons.setdefault(party, []).append(f"{percent:g}% of {party_name(bearer)}'s part under its contract ({party_name(bearer)} {why})")
    return [
        SplitLine(party, party_name(party), amount, 100.0 * amount / total if total else 0.0, "; ".join(reasons[party]))
        for party, amount in sorted(amounts.items(), key=lambda kv: -kv[1])
    ]


def _timeline(record: Mapping[str, Any], days: pd.DataFrame, notifications: pd.DataFrame, project: Project, as_of: dt.date) -> list[TimelineEvent]:
    events: list[TimelineEvent] = []
    ordered = days.sort_values("date")
    previous = ordered["managing_party"].shift()
    for day in ordered[(previous.notna()) & (ordered["managing_party"] != previous)].itertuples():
        before = previous.loc[day.Index]
        events.append(TimelineEvent(day.date.date(), f"{project.party_name(day.managing_party)} takes over", f"from {project.party_name(before)}"))
    onset, detected = record["onset"].date(), record["detected_on"].date()
    events.append(TimelineEvent(onset, "Onset", "the first day of the worse rate, the most likely changepoint in the data"))
    lag = (detected - onset).days
    when = "the day of onset" if lag == 0 else f"{lag} day{'s' if lag != 1 else ''} after onset"
    events.append(TimelineEvent(detected, f"Detected by {record['rule']}", ", ".join(filter(None, [_compared(record), when]))))
    if not pd.isna(record["critical_on"]) and record["critical_on"].date() != detected:
        events.append(TimelineEvent(record["critical_on"].date(), "Became critical"))
    for note in notifications.itertuples():
        events.append(_notification_event(note))
    if not pd.isna(record["acknowledged_at"]):
        events.append(TimelineEvent(record["acknowledged_at"].to_pydatetime(), "Acknowledged", f"by {record['acknowledged_by']}"))
    if pd.isna(record["resolved_on"]):
        events.append(TimelineEvent(as_of, "Still open", f"last bad day {record['last_active']:%Y-%m-%d}; the store's data ends here"))
    else:
        events.append(TimelineEvent(record["resolved_on"].date(), "Resolved", f"last bad day {record['last_active']:%Y-%m-%d}"))
    return sorted(events, key=lambda e: e.sort_key)


_METRIC_WORDS = {"cpl": "cost per lead", "cpc": "cost per click", "ctr": "click-through rate", "cvr": "conversion rate"}


def _compared(record: Mapping[str, Any]) -> str:
    """``cost per lead $561 against a $101 baseline``: what the opening rule saw that day."""
    observed, baseline, metric = record["observed"], record["baseline"], record["metric"]
    if observed is None or baseline is None or pd.isna(observed) or pd.isna(baseline):
        return ""
    show = (lambda v: money(v, record["currency"])) if metric in ("cpl", "cpc", "spend") else (lambda v: f"{v:,.4g}")
    return f"{_METRIC_WORDS.get(metric, metric)} {show(observed)} against a {show(baseline)} baseline"


_EVENT_WORDS = {"opened": "Alert", "updated": "Update", "resolved": "Resolution notice", "reminder": "Reminder"}


def where_seen(sink: str) -> str:
    """Where a person saw a notification, not how the service names its sink: ``Slack C0ALERTS``
    (``#name`` when the configuration wrote one), ``Slack (webhook media-alerts)``, ``the
    console``, ``the alert log alerts.jsonl`` (its file name, not its path)."""
    kind, _, target = sink.partition(":")
    if kind == "slack":
        return f"Slack {target}" if target else "Slack"
    if kind == "slack-webhook":
        return f"Slack (webhook {target})" if target else "Slack (webhook)"
    if kind == "console":
        return "the console"
    if kind == "jsonl":
        return f"the alert log {Path(target).name}" if target else "the alert log"
    return sink


def _notification_event(note) -> TimelineEvent:
    what = f"{_EVENT_WORDS.get(note.event, note.event.capitalize())} to {where_seen(note.sink)}"
    if note.status == "sent":
        at = note.sent_at.to_pydatetime() if hasattr(note.sent_at, "to_pydatetime") else note.sent_at
        tries = f" after {note.attempts} attempts" if note.attempts and note.attempts > 1 else ""
        return TimelineEvent(at, f"{what} sent", f"delivered{tries}" + (f" (message {note.ts} in {note.channel})" if note.ts else ""))
    created = note.created_at.to_pydatetime() if hasattr(note.created_at, "to_pydatetime") else note.created_at
    status = {"silenced": "held back by a silence", "obsolete": "not sent: the incident was acknowledged or resolved first"}.get(
        note.status, f"not delivered yet ({note.attempts} attempt(s){': ' + note.last_error if note.last_error else ''})"
    )
    return TimelineEvent(created, what, status)
