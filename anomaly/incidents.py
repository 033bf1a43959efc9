"""Incidents: detection episodes with attribution, change history and excess cost; their lifecycle.

An incident is one episode of one rule family on one campaign. Its *managing party* is the party
managing the campaign at onset; the *changes* are the change-history events from
``changes_before_onset_days`` before onset up to detection; the *excess cost* is the spend above
what the incident's leads would have cost at the baseline cost per lead of the onset day,
``sum(spend - leads × baseline_cpl)`` over the incident's days, split by the party managing each day.

``reconcile`` compares what detection derives now with what the store holds, and produces the
writes and notifications of one cycle: opened (a new incident that is open now), updated (severity
went up), resolved. An incident found in history that is already over is recorded, not announced.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from anomaly.alerts.routing import Router, Target
from anomaly.detect import Detection
from anomaly.detect.panel import ACCOUNT_TOTAL
from anomaly.mechanism import TRACKING, clear, diagnose
from anomaly.ownership import party_of_change
from anomaly.store import IncidentWrite

SEVERITY_RANK = {"warning": 1, "critical": 2}


@dataclass(frozen=True)
class Change:
    changed_at: dt.datetime
    campaign_id: str  # "" for an account-level change
    user_email: str
    party: str
    resource_type: str
    operation: str
    changed_fields: str
    client_type: str = ""  # how it was made, e.g. GOOGLE_ADS_AUTOMATED_RULE


@dataclass(frozen=True)
class Incident:
    family: str
    account_id: str
    account_name: str
    campaign_id: str
    campaign_name: str
    currency: str
    onset: dt.date
    detected_on: dt.date
    last_active: dt.date
    resolved_on: dt.date | None
    rule: str
    opening_severity: str
    severity: str  # the worst reached so far
    critical_on: dt.date | None
    metric: str
    observed: float  # the opening rule's observed value on the detection day
    baseline: float  # ... and the baseline it was compared with
    baseline_cpl: float  # cost per lead before onset: the reference for excess cost
    spend: float  # since onset
    leads: float
    excess_cost: float
    excess_by_party: dict[str, float]
    managing_party: str
    party_since: dt.date | None
    changes: tuple[Change, ...] = field(default=())
    party_now: str = ""  # the party managing the campaign on the incident's last day (routes may follow it)
    #: the days from three weeks before onset to the last one, for a chart: (date, spend, leads,
    #: the baseline cost per lead before that day, or None)
    series: tuple[tuple[str, float, float, float | None], ...] = field(default=())
    #: a spend incident that resolved because its step became the new level: the usual spend of an
    #: average day it settled at (its cost per click and per lead stayed at baseline)
    settled_spend: float | None = None
    #: a cost-per-lead incident that resolved because the baseline took its level as the new usual
    #: (it went on for ``max_excluded_days``): the baseline cost per lead it settled at
    settled_cpl: float | None = None
    clicks: float = 0.0  # since onset
    baseline_cpc: float = float("nan")  # cost per click before onset
    #: what broke (``anomaly.mechanism``): tracking, cost_per_click, conversion_rate, spend, volume;
    #: None when the data cannot tell
    mechanism: str | None = None
    #: the excess cost split into what the clicks cost above their baseline price and what they
    #: failed to buy in leads at it (``anomaly.mechanism``); empty when the data cannot tell
    excess_by_mechanism: dict[str, float] = field(default_factory=dict)
    #: closed at a change of managing party with the problem still open: the party that took the
    #: campaign over (its days are a new incident of their own)
    handed_over_to: str | None = None
    #: the ad platform the account is on (``anomaly.platforms``: google_ads, microsoft_ads,
    #: meta_ads); "" when the data does not say
    platform: str = ""

    @property
    def status(self) -> str:
        return "open" if self.resolved_on is None else "resolved"

    @property
    def cpl(self) -> float | None:
        """Cost per lead since onset (None with no leads)."""
        return self.spend / self.leads if self.leads > 0 else None

    def payload(self) -> dict[str, Any]:
        """Everything an alert sink renders, JSON-ready."""
        data = asdict(self)
        for key in ("onset", "detected_on", "last_active", "resolved_on", "critical_on", "party_since"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        for key in ("observed", "baseline", "baseline_cpl", "baseline_cpc"):
            data[key] = _finite(data[key])
        data["changes"] = [{**asdict(c), "changed_at": c.changed_at.isoformat(timespec="minutes")} for c in self.changes]
        data["status"] = self.status
        data["cpl"] = self.cpl
        return data

    def backtest_record(self) -> dict[str, Any]:
        """One object of the backtest JSON contract (see DESIGN.md)."""
        return {
            "account_id": self.account_id,
            "campaign_id": self.campaign_id or None,
            "rule": self.rule,
            "severity": self.opening_severity,
            "onset": self.onset.isoformat(),
            "detected_on": self.detected_on.isoformat(),
            "metric": self.metric,
            "observed": _finite(self.observed),
            "baseline": _finite(self.baseline),
            "managing_party": self.managing_party,
            "excess_cost": round(self.excess_cost, 2),
            "party_since": self.party_since.isoformat() if self.party_since else None,
            "family": self.family,
            "account_name": self.account_name,
            "campaign_name": self.campaign_name,
            "currency": self.currency,
            "max_severity": self.severity,
            "resolved_on": self.resolved_on.isoformat() if self.resolved_on else None,
            "excess_by_party": {k: round(v, 2) for k, v in self.excess_by_party.items()},
            "mechanism": self.mechanism,
            "excess_by_mechanism": dict(self.excess_by_mechanism),
            "platform": self.platform or None,
        }


SERIES_DAYS_BEFORE = 21


def _daily_series(panel, baseline, column: int, first: int, last: int) -> tuple[tuple[str, float, float, float | None], ...]:
    days = range(first, last + 1)
    return tuple(
        (panel.dates[d].date().isoformat(), float(np.nan_to_num(panel.spend[d, column])), float(np.nan_to_num(panel.leads[d, column])), _finite(baseline.cpl[d, column]))
        for d in days
    )


def _finite(value: float) -> float | None:
    """JSON has no infinity: an infinite cost per lead (spend, zero leads) is reported as null."""
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def build_incidents(
    detection: Detection,
    changes: pd.DataFrame,
    domains: dict[str, str],
    *,
    changes_before_onset_days: int = 7,
) -> list[Incident]:
    """Turn detection episodes into attributed incidents (one per episode, in detection order)."""
    panel, baseline = detection.panel, detection.baseline
    if detection.episodes.empty:
        return []
    last_day = len(panel.dates) - 1
    changes = changes.assign(_day=changes["changed_at"].dt.normalize())
    by_account = {account: group for account, group in changes.groupby("account_id", sort=False)}  # each episode reads its account's only
    no_changes = changes.iloc[:0]
    incidents = []
    for ep in detection.episodes.itertuples(index=False):
        c = ep.column
        on = panel.day_index(ep.onset)
        end = panel.day_index(ep.last_active) if not pd.isna(ep.resolved_on) else last_day
        days = slice(on, end + 1)
        base_cpl = float(baseline.cpl[on, c])
        spend = np.nan_to_num(panel.spend[days, c])
        leads = np.nan_to_num(panel.leads[days, c])
        daily_clicks = np.nan_to_num(panel.clicks[days, c])
        clicks = float(daily_clicks.sum())
        base_cpc = float(baseline.cpc[on, c])
        diagnosis = diagnose(ep.family, spend, daily_clicks, leads, base_cpl, base_cpc)
        excess_by_day = spend - leads * (base_cpl if np.isfinite(base_cpl) else 0.0)
        parties = detection.party[days, c]
        by_party: dict[str, float] = {}
        for party, amount in zip(parties, excess_by_day):
            by_party[party] = by_party.get(party, 0.0) + float(amount)
        since = detection.party_since[on, c]
        window_start = ep.onset - pd.Timedelta(days=changes_before_onset_days)
        account_changes = by_account.get(ep.account_id, no_changes)
        same_campaign = (account_changes["campaign_id"] == ep.campaign_id) | (account_changes["campaign_id"] == "") | (ep.campaign_id == ACCOUNT_TOTAL)
        nearby = account_changes[same_campaign & (account_changes["_day"] >= window_start) & (account_changes["_day"] <= ep.detected_on)]
        info = panel.campaigns.iloc[c]
        incidents.append(
            Incident(
                family=ep.family,
                account_id=ep.account_id,
                account_name=str(info["account_name"]),
                campaign_id=ep.campaign_id,
                campaign_name=str(info["campaign_name"]),
                currency=str(info["currency"]),
                onset=ep.onset.date(),
                detected_on=ep.detected_on.date(),
                last_active=ep.last_active.date(),
                resolved_on=None if pd.isna(ep.resolved_on) else ep.resolved_on.date(),
                rule=ep.rule,
                opening_severity=ep.opening_severity,
                severity=ep.severity,
                critical_on=None if pd.isna(ep.critical_on) else ep.critical_on.date(),
                metric=ep.metric,
                observed=float(ep.observed),
                baseline=float(ep.baseline),
                baseline_cpl=base_cpl,
                spend=float(spend.sum()),
                leads=float(leads.sum()),
                excess_cost=max(float(excess_by_day.sum()), 0.0),
                excess_by_party={k: max(v, 0.0) for k, v in by_party.items()},
                series=_daily_series(panel, baseline, c, max(on - SERIES_DAYS_BEFORE, 0), end),
                managing_party=str(parties[0]),
                party_now=str(parties[-1]),
                settled_spend=_finite(getattr(ep, "settled_spend", np.nan)),
                settled_cpl=_finite(getattr(ep, "settled_cpl", np.nan)),
                handed_over_to=str(detection.party[panel.day_index(ep.resolved_on), c]) if getattr(ep, "handed_over", False) else None,
                clicks=clicks,
                baseline_cpc=base_cpc,
                mechanism=diagnosis.mechanism,
                excess_by_mechanism={k: round(v, 2) for k, v in diagnosis.excess_by_mechanism.items()},
                party_since=None if np.isnat(since) else pd.Timestamp(since).date(),
                changes=tuple(
                    Change(
                        changed_at=row.changed_at.to_pydatetime(),
                        campaign_id=row.campaign_id,
                        user_email=row.user_email,
                        party=party_of_change(row.user_email, row.client_type, domains),
                        resource_type=row.resource_type,
                        client_type=row.client_type,
                        operation=row.operation,
                        changed_fields=row.changed_fields,
                    )
                    for row in nearby.itertuples(index=False)
                ),
            )
        )
    return incidents


# ---------------------------------------------------------------------------------------------
# Lifecycle against the store


def reconcile(
    stored: list[dict[str, Any]],
    derived: list[Incident],
    as_of: dt.date,
    sinks: Sequence[str] | Router,
    *,
    excess_steps: Sequence[float] = (),
) -> list[IncidentWrite]:
    """The writes that bring the store in line with ``derived`` as of ``as_of``.

    Matching: the same (family, account, campaign) and detection day, or else the open incident of
    that series. An announced incident is updated when its severity rises or its excess cost
    crosses one of ``excess_steps`` (one notification for both). ``sinks`` routes the
    notifications (a ``Router``, or sink names that all get everything); an incident's later
    notifications also go wherever its earlier ones went. Each is keyed so that re-running a cycle
    enqueues nothing new.
    """
    router = sinks if isinstance(sinks, Router) else Router.to_all(sinks)
    by_key = {_key(row): row for row in stored}
    open_by_series = {_series(row): row for row in stored if row["status"] == "open"}
    matched: set[int] = set()
    writes = []
    for incident in derived:
        values = _values(incident)
        payload = values["details"]["payload"]
        row = by_key.get(_key(values)) or open_by_series.get(_series(values))
        if row is not None and row["id"] in matched:
            row = None
        events: list[tuple[str, str]] = []
        if row is None:
            notify = incident.status == "open"
            targets = router.targets(payload) if notify else []
            if notify:
                events.append(("opened", incident.detected_on.isoformat()))
                values["details"]["targets"] = _as_stored(targets)
            writes.append(IncidentWrite(None, {**values, "notified": notify}, _notes(events, payload, targets)))
            continue
        matched.add(row["id"])
        values["detected_on"] = row["detected_on"]  # the stored identity stays
        targets = _merged(_stored_targets(row, router), router.targets(payload)) if row["notified"] else []
        if row["notified"]:
            values["details"]["targets"] = _as_stored(targets)
            update = _update(row, incident, excess_steps)
            if update is not None:
                key, reasons = update
                payload = {**payload, "update": reasons}  # what the notification says changed; not kept with the incident
                events.append(("updated", key))
            if incident.status == "resolved" and row["status"] == "open":
                events.append(("resolved", incident.resolved_on.isoformat()))
        if _changed(row, values) or events:
            writes.append(IncidentWrite(row["id"], {**values, "notified": row["notified"]}, _notes(events, payload, targets)))
    for row in stored:
        if row["status"] == "open" and row["id"] not in matched:
            # the data no longer shows this incident (e.g. restated conversions): close it
            values = {"status": "resolved", "resolved_on": as_of, "details": {**row["details"], "resolved_by_restatement": True}}
            events = [("resolved", as_of.isoformat())] if row["notified"] else []
            payload = {**row["details"]["payload"], "status": "resolved", "resolved_on": as_of.isoformat()}
            targets = _stored_targets(row, router) if row["notified"] else []
            writes.append(IncidentWrite(row["id"], values, _notes(events, payload, targets)))
    return writes


def _update(row: dict[str, Any], incident: Incident, excess_steps: Sequence[float]) -> tuple[str, dict[str, Any]] | None:
    """Whether an announced incident got worse, or clearly turned out to be another mechanism,
    since the store's version: its key part and what changed (``severity`` rose, ``excess_step``
    crossed: the highest one, ``mechanism``: the new one), or None."""
    rose = SEVERITY_RANK[incident.severity] > SEVERITY_RANK[row["severity"]]
    crossed = [step for step in excess_steps if row["excess_cost"] < step <= incident.excess_cost]
    was = row["details"].get("payload", {}).get("mechanism")
    # a clearer diagnosis is news; leads coming back after tracking stopped are not
    turned = (
        incident.status == "open"
        and incident.mechanism is not None
        and was not in (None, TRACKING, incident.mechanism)
        and clear(incident.mechanism, incident.excess_by_mechanism)
    )
    if not rose and not crossed and not turned:
        return None
    parts = ([incident.severity] if rose else []) + ([f"excess:{crossed[-1]:g}"] if crossed else []) + ([f"mechanism:{incident.mechanism}"] if turned else [])
    reasons = {"severity": incident.severity if rose else None, "excess_step": crossed[-1] if crossed else None}
    if turned:
        reasons["mechanism"] = incident.mechanism
    return ",".join(parts), reasons


def _stored_targets(row: dict[str, Any], router: Router) -> list[Target]:
    """Where the incident's notifications went so far; for one stored before routing kept that,
    where its payload routes now."""
    stored = row["details"].get("targets")
    if stored is None:
        return router.targets(row["details"]["payload"])
    return [Target(t["sink"], tuple(t["mentions"])) for t in stored]


def _merged(earlier: list[Target], now: list[Target]) -> list[Target]:
    """The earlier targets, then the new ones; a sink in both keeps its earlier mentions and gains the new."""
    by_sink = {t.sink: list(t.mentions) for t in earlier}
    for target in now:
        by_sink.setdefault(target.sink, []).extend(target.mentions)
    return [Target(sink, tuple(dict.fromkeys(mentions))) for sink, mentions in by_sink.items()]


def _as_stored(targets: list[Target]) -> list[dict[str, Any]]:
    return [{"sink": t.sink, "mentions": list(t.mentions)} for t in targets]


def _key(row: dict[str, Any]) -> tuple:
    return (row["family"], row["account_id"], row["campaign_id"], row["detected_on"])


def _series(row: dict[str, Any]) -> tuple:
    return (row["family"], row["account_id"], row["campaign_id"])


def _values(incident: Incident) -> dict[str, Any]:
    return {
        "family": incident.family,
        "account_id": incident.account_id,
        "campaign_id": incident.campaign_id,
        "detected_on": incident.detected_on,
        "onset": incident.onset,
        "status": incident.status,
        "last_active": incident.last_active,
        "resolved_on": incident.resolved_on,
        "severity": incident.severity,
        "rule": incident.rule,
        "metric": incident.metric,
        "observed": _finite(incident.observed),
        "baseline": _finite(incident.baseline),
        "managing_party": incident.managing_party,
        "party_since": incident.party_since,
        "excess_cost": round(incident.excess_cost, 2),
        "details": {"payload": incident.payload()},
    }


def _changed(row: dict[str, Any], values: dict[str, Any]) -> bool:
    return any(row.get(k) != v for k, v in values.items() if k != "details") or row["details"] != _jsonish(values["details"])


def _jsonish(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _notes(events: list[tuple[str, str]], payload: dict[str, Any], targets: list[Target]) -> tuple[dict[str, Any], ...]:
    """One notification per (event, target sink), with the target's mentions; ``key`` makes it
    unique for its incident."""
    return tuple(
        {"event": e, "key": k, "sink": t.sink, "payload": {**payload, "event": e, **({"mentions": list(t.mentions)} if t.mentions else {})}}
        for e, k in events
        for t in targets
    )
