"""The party scorecard: how each party (the agency, each partner) did with what it managed.

Over a period, per party: the accounts and campaigns it managed and their spend, its cost per lead
against the portfolio's, the incidents that began while it managed, the median days from onset to
detection and from detection to resolution, and the excess cost incurred on its days. The monthly
partner review, from the store.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomaly.analysis import NoData, Project
from anomaly.platforms import platform_label


@dataclass(frozen=True)
class Scorecard:
    start: dt.date
    end: dt.date
    parties: pd.DataFrame  # one row per party: see party_scorecard
    portfolio: dict  # the same figures for the whole portfolio
    incidents: pd.DataFrame  # the incidents that began in the period (Project.incidents' columns)
    accounts: pd.DataFrame  # party, account_id, account_name, platform, days, spend, leads: who managed which account

    def party(self, key: str) -> dict:
        rows = self.parties[self.parties["party"] == key]
        if rows.empty:
            raise KeyError(key)
        return rows.iloc[0].to_dict()


def party_scorecard(project: Project, start: dt.date, end: dt.date, parties: list[str] | None = None) -> Scorecard:
    """The scorecard of ``parties`` (default: every party that managed something in the period,
    and every configured one) from ``start`` to ``end`` inclusive.

    Columns of ``parties``: ``party``, ``name``, ``accounts``, ``campaigns``, ``spend``, ``leads``,
    ``cpl``, ``portfolio_cpl``, ``cpl_vs_portfolio`` (ratio; above 1 is dearer than the portfolio),
    ``incidents`` (that began while the party managed), ``critical``, ``still_open``,
    ``median_days_to_detect`` (onset to detection), ``median_days_to_resolve`` (detection to
    resolution, resolved ones only), ``excess_cost`` (the excess incurred on days the party
    managed, within the period, of every incident), ``platforms`` (the ad platforms of the accounts
    it managed, by name: every figure sums across them).
    """
    metrics = project.metrics(start=start, end=end)
    if metrics.empty:
        raise NoData(f"the store at {project.store.describe()} holds no metrics from {start} to {end}")
    currency = metrics["currency"].mode().iat[0]
    totals = _volume(metrics)
    incidents = project.incidents(start=start, end=end)
    began = incidents[(incidents["onset"] >= pd.Timestamp(start)) & (incidents["onset"] <= pd.Timestamp(end))].reset_index(drop=True)
    excess = _excess_in_period(project, incidents, start, end)
    labels = {account: platform_label(key) for account, key in project.platforms().items()}
    metrics = metrics.assign(platform=metrics["account_id"].map(labels).fillna(""))
    keys = list(dict.fromkeys([*metrics["managing_party"].unique(), *project.config.parties]))
    if parties is not None:
        keys = parties
    rows = []
    for key in keys:
        managed = metrics[metrics["managing_party"] == key]
        mine = began[began["managing_party"] == key]
        volume = _volume(managed)
        rows.append(
            {
                "party": key,
                "name": project.party_name(key),
                "accounts": managed["account_id"].nunique(),
                "campaigns": managed[["account_id", "campaign_id"]].drop_duplicates().shape[0],
                **volume,
                "portfolio_cpl": totals["cpl"],
                "cpl_vs_portfolio": volume["cpl"] / totals["cpl"] if totals["cpl"] else np.nan,
                **_incident_figures(mine),
                "excess_cost": float(excess.get(key, 0.0)),
                "platforms": ", ".join(sorted(set(managed["platform"]) - {""})),
            }
        )
    accounts = (
        metrics.groupby(["managing_party", "account_id"], sort=True)
        .agg(account_name=("account_name", "last"), platform=("platform", "last"), days=("date", "nunique"), spend=("spend", "sum"), leads=("leads", "sum"))
        .reset_index()
        .rename(columns={"managing_party": "party"})
    )
    portfolio = {
        "accounts": metrics["account_id"].nunique(),
        "campaigns": metrics[["account_id", "campaign_id"]].drop_duplicates().shape[0],
        **totals,
        **_incident_figures(began),
        "excess_cost": float(sum(excess.values())),
        "currency": currency,
        "platforms": ", ".join(sorted(set(metrics["platform"]) - {""})),
    }
    return Scorecard(start, end, pd.DataFrame(rows), portfolio, began, accounts)


def _volume(metrics: pd.DataFrame) -> dict:
    spend, leads = float(metrics["spend"].sum()), float(metrics["leads"].sum())
    return {"spend": spend, "leads": leads, "cpl": spend / leads if leads > 0 else np.nan}


def _incident_figures(incidents: pd.DataFrame) -> dict:
    detect = (incidents["detected_on"] - incidents["onset"]).dt.days
    resolved = incidents[incidents["resolved_on"].notna()]
    resolve = (resolved["resolved_on"] - resolved["detected_on"]).dt.days
    return {
        "incidents": len(incidents),
        "critical": int((incidents["severity"] == "critical").sum()),
        "still_open": int((incidents["status"] == "open").sum()),
        "median_days_to_detect": float(detect.median()) if len(detect) else np.nan,
        "median_days_to_resolve": float(resolve.median()) if len(resolve) else np.nan,
    }


def _excess_in_period(project: Project, incidents: pd.DataFrame, start: dt.date, end: dt.date) -> dict[str, float]:
    """The excess incurred from ``start`` to ``end`` by the party managing each day, of every
    incident active then; each incident's part of a party floored at zero, as its own figures are."""
    totals: dict[str, float] = {}
    for incident_id in incidents["id"]:
        days = project.excess_by_day(int(incident_id))
        days = days[(days["date"] >= pd.Timestamp(start)) & (days["date"] <= pd.Timestamp(end))]
        for party, amount in days.groupby("managing_party")["excess"].sum().items():
            totals[party] = totals.get(party, 0.0) + max(float(amount), 0.0)
    return totals
