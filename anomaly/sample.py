"""The bundled sample portfolio behind ``anomaly demo``, generated deterministically in code.

Three accounts managed by the agency Northwind Digital. On 2026-07-08 Harbor Dental Group is
handed to the partner Beacon Reach; on 07-09 Beacon's users change the bidding strategy, broaden
match types and raise the budget; from 07-10 the cost per lead of "Generic - Leads" goes from about
$100 to over $1,000 within two days while spend keeps flowing. On 07-10 Lakeside Law's lead
tracking breaks (spend continues, leads drop to zero).

Benign events that must not alert: weekend dips, two low-volume holidays (Memorial Day and the
observed Independence Day), a budget that doubles with an unchanged cost per lead, a cost per lead
that improves, and a low-volume campaign whose daily cost per lead is noise (0–2 leads a day).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly.schema import normalise_changes, normalise_metrics

START = dt.date(2026, 3, 2)
END = dt.date(2026, 7, 12)
HANDOFF = dt.date(2026, 7, 8)
ONSET = dt.date(2026, 7, 10)
HOLIDAYS = (dt.date(2026, 5, 25), dt.date(2026, 7, 3))
WEEKDAY_FACTOR = (1.0, 1.02, 1.0, 0.98, 0.92, 0.55, 0.5)  # Monday .. Sunday
SEED = 20260710


@dataclass(frozen=True)
class CampaignSpec:
    account_id: str
    account_name: str
    campaign_id: str
    campaign_name: str
    budget: float  # typical weekday spend
    cpl: float  # true cost per lead
    cpc: float
    story: str = "steady"


HARBOR = ("4821937710", "Harbor Dental Group")
SUMMIT = ("6150048821", "Summit Home Services")
LAKESIDE = ("3307714460", "Lakeside Law")

CAMPAIGNS = (
    CampaignSpec(*HARBOR, "20118341", "Generic - Leads", 1200, 100, 4.0, "handoff_spike"),
    CampaignSpec(*HARBOR, "20118342", "Brand", 320, 40, 1.6),
    CampaignSpec(*HARBOR, "20118343", "Implants - Remarketing", 150, 150, 2.5, "low_volume"),
    CampaignSpec(*SUMMIT, "31550017", "Plumbing - Search", 600, 80, 3.2, "budget_doubles"),
    CampaignSpec(*SUMMIT, "31550018", "Water Heaters - Search", 500, 120, 3.6, "improves"),
    CampaignSpec(*LAKESIDE, "47220091", "Personal Injury", 1800, 225, 9.0, "tracking_loss"),
    CampaignSpec(*LAKESIDE, "47220092", "Estate Planning", 420, 140, 5.5),
)

STORY_CAMPAIGN = CAMPAIGNS[0]
TRACKING_LOSS_CAMPAIGN = CAMPAIGNS[5]
BENIGN_CAMPAIGNS = tuple(c for c in CAMPAIGNS if c.story in ("steady", "low_volume", "budget_doubles", "improves"))

# The handoff campaign's last week, as the account's reports showed it: (spend, clicks, leads).
STORY_DAYS = {
    dt.date(2026, 7, 6): (1214.37, 301, 12),
    dt.date(2026, 7, 7): (1188.90, 297, 13),
    dt.date(2026, 7, 8): (1236.15, 306, 12),
    dt.date(2026, 7, 9): (1251.48, 312, 11),
    dt.date(2026, 7, 10): (1684.20, 702, 3),
    dt.date(2026, 7, 11): (2296.75, 1133, 2),
    dt.date(2026, 7, 12): (2340.10, 1187, 2),
}

PARTIES = {
    "northwind": ("Northwind Digital", "northwind-digital.example"),
    "beacon": ("Beacon Reach", "beaconreach.example"),
}


def generate_metrics(seed: int = SEED) -> pd.DataFrame:
    """Daily canonical metrics for every sample campaign from START to END."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(START, END, freq="D")
    rows = []
    for spec in CAMPAIGNS:
        for day in days:
            date = day.date()
            factor = WEEKDAY_FACTOR[date.weekday()] * (0.35 if date in HOLIDAYS else 1.0)
            budget, cpl = spec.budget, spec.cpl
            if spec.story == "budget_doubles" and date >= dt.date(2026, 6, 15):
                budget *= 2
            if spec.story == "improves":
                progress = min(max((date - dt.date(2026, 6, 1)).days / 21, 0.0), 1.0)
                cpl *= 1.0 - 0.42 * progress
            spend = budget * factor * rng.lognormal(0.0, 0.07)
            clicks = rng.poisson(spend / spec.cpc)
            leads = rng.poisson(spend / (cpl * rng.lognormal(0.0, 0.08)))
            if spec.story == "tracking_loss" and date >= ONSET:
                leads = 0
            if spec.story == "handoff_spike" and date in STORY_DAYS:
                spend, clicks, leads = STORY_DAYS[date]
            rows.append(
                {
                    "date": day,
                    "account_id": spec.account_id,
                    "account_name": spec.account_name,
                    "campaign_id": spec.campaign_id,
                    "campaign_name": spec.campaign_name,
                    "currency": "USD",
                    "spend": round(spend, 2),
                    "impressions": int(rng.poisson(clicks / 0.045)) if clicks else int(rng.poisson(40)),
                    "clicks": int(clicks),
                    "leads": float(leads),
                }
            )
    return normalise_metrics(pd.DataFrame(rows))


def generate_changes(seed: int = SEED) -> pd.DataFrame:
    """Change history: routine agency changes, the benign budget doubling, and the partner's changes
    the day before the spike."""
    rng = np.random.default_rng(seed + 1)
    agency_users = ("maria.lopez@northwind-digital.example", "tom.reed@northwind-digital.example")
    routine = (
        ("AD_GROUP_CRITERION", "CREATE", "keyword.text; keyword.match_type"),
        ("CAMPAIGN_BUDGET", "UPDATE", "amount_micros"),
        ("AD", "UPDATE", "responsive_search_ad.headlines"),
        ("AD_GROUP_CRITERION", "UPDATE", "cpc_bid_micros"),
    )
    rows = []
    day = START
    while day < HANDOFF:
        spec = CAMPAIGNS[int(rng.integers(len(CAMPAIGNS)))]
        resource, operation, fields = routine[int(rng.integers(len(routine)))]
        at = dt.datetime.combine(day, dt.time(9 + int(rng.integers(8)), int(rng.integers(60))))
        rows.append((at, spec.account_id, spec.campaign_id, agency_users[int(rng.integers(2))], resource, operation, fields))
        day += dt.timedelta(days=int(rng.integers(4, 11)))
    plumbing = CAMPAIGNS[3]
    rows.append((dt.datetime(2026, 6, 15, 8, 12), plumbing.account_id, plumbing.campaign_id, agency_users[0], "CAMPAIGN_BUDGET", "UPDATE", "amount_micros: 600000000 -> 1200000000"))
    story = STORY_CAMPAIGN
    rows += [
        (dt.datetime(2026, 7, 8, 10, 0), story.account_id, "", "tom.reed@northwind-digital.example", "CUSTOMER_USER_ACCESS", "CREATE", "access_role: ADMIN (Beacon Reach)"),
        (dt.datetime(2026, 7, 9, 15, 41), story.account_id, story.campaign_id, "dana.kim@beaconreach.example", "CAMPAIGN", "UPDATE", "bidding_strategy_type: MAXIMIZE_CONVERSIONS -> MAXIMIZE_CLICKS"),
        (dt.datetime(2026, 7, 9, 15, 52), story.account_id, story.campaign_id, "dana.kim@beaconreach.example", "AD_GROUP_CRITERION", "UPDATE", "keyword.match_type: PHRASE -> BROAD (38 keywords)"),
        (dt.datetime(2026, 7, 9, 16, 7), story.account_id, story.campaign_id, "ops@beaconreach.example", "CAMPAIGN_BUDGET", "UPDATE", "amount_micros: 1300000000 -> 2500000000"),
    ]
    frame = pd.DataFrame(rows, columns=["changed_at", "account_id", "campaign_id", "user_email", "resource_type", "operation", "changed_fields"])
    return normalise_changes(frame.sort_values("changed_at", kind="stable"))


def write_sample(folder: str | Path, seed: int = SEED) -> dict[str, Path]:
    """Write ``metrics.csv`` and ``changes.csv`` into ``folder`` in the CSV connector's format."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metrics = generate_metrics(seed).drop(columns="hour")
    metrics["date"] = metrics["date"].dt.strftime("%Y-%m-%d")
    changes = generate_changes(seed)
    changes["changed_at"] = changes["changed_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    paths = {"metrics": folder / "metrics.csv", "changes": folder / "changes.csv"}
    metrics.to_csv(paths["metrics"], index=False, float_format="%.2f")
    changes.to_csv(paths["changes"], index=False)
    return paths
