"""The three ways agencies catch cost-per-lead spikes today, implemented plainly, as baselines.

- ``same_weekday``: like Google's Account Anomaly Detector script, today against the same weekday
  of the previous four weeks: cost per lead at least 2× theirs, or spend at least 2× their average.
- ``ratio_28d``: a fixed rule, today's cost per lead at least 2× its trailing 28-day average.
- ``iforest_per_campaign``: one scikit-learn IsolationForest per campaign on raw daily spend,
  clicks, leads and spend per lead, refitted every 90 days on the 90 days before.

Each takes canonical daily metrics, ownership periods and the default party, and returns alerts in
the format of ``benchmarks.score``: a run of firing days of one campaign (with gaps of at most one
quiet day) is one alert, detected on its first day, attributed to the party managing the campaign
that day, with excess cost ``Σ max(spend − leads × reference_cpl, 0)`` over its days at the method's
own reference cost per lead of that first day (none where the reference has no leads).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.ensemble import IsolationForest

from anomaly.ownership import party_matrix
from benchmarks.score import ALERT_COLUMNS

FAMILY = "peer"
RATIO = 2.0
MAX_GAP_DAYS = 1  # quiet days that still continue an alert
WEEKS_BACK = 4
TRAILING_DAYS = 28
FOREST_WINDOW_DAYS = 90  # refit every this many days, on this many days before
FOREST_FIRST_FIT_DAYS = 60
FOREST_PARAMS = {"n_estimators": 50, "contamination": 0.02, "random_state": 0}
FOREST_JOBS = 2


@dataclass(frozen=True)
class Panel:
    """Dense day × campaign arrays of a canonical daily metrics frame (a missing day is zero)."""

    dates: pd.DatetimeIndex
    campaigns: pd.DataFrame  # account_id, campaign_id
    spend: np.ndarray
    clicks: np.ndarray
    leads: np.ndarray


def build_panel(metrics: pd.DataFrame) -> Panel:
    daily = metrics.groupby(["date", "account_id", "campaign_id"], as_index=False)[["spend", "clicks", "leads"]].sum()
    dates = pd.date_range(daily["date"].min(), daily["date"].max(), freq="D")
    campaigns = daily[["account_id", "campaign_id"]].drop_duplicates().sort_values(["account_id", "campaign_id"]).reset_index(drop=True)
    column = pd.MultiIndex.from_frame(campaigns).get_indexer(pd.MultiIndex.from_frame(daily[["account_id", "campaign_id"]]))
    row = dates.get_indexer(daily["date"])
    arrays = {}
    for name in ("spend", "clicks", "leads"):
        values = np.zeros((len(dates), len(campaigns)))
        values[row, column] = daily[name].to_numpy(dtype=float)
        arrays[name] = values
    return Panel(dates, campaigns, **arrays)


def same_weekday(metrics: pd.DataFrame, ownership: pd.DataFrame, default_party: str) -> pd.DataFrame:
    """Today's cost per lead ≥ 2× that of the same weekday over the previous 4 weeks (which need at
    least one lead), or today's spend ≥ 2× their average spend."""
    panel = build_panel(metrics)
    ref_spend = sum(_shift(panel.spend, 7 * k) for k in range(1, WEEKS_BACK + 1))
    ref_leads = sum(_shift(panel.leads, 7 * k) for k in range(1, WEEKS_BACK + 1))
    reference = _cost_per_lead(ref_spend, ref_leads, min_leads=1.0)
    cpl_high = _cost_per_lead(panel.spend, panel.leads) >= RATIO * reference
    spend_high = (ref_spend > 0) & (panel.spend >= RATIO * ref_spend / WEEKS_BACK)
    return _alerts(panel, cpl_high | spend_high, reference, ownership, default_party)


def ratio_28d(metrics: pd.DataFrame, ownership: pd.DataFrame, default_party: str) -> pd.DataFrame:
    """Today's cost per lead ≥ 2× its trailing 28-day average (which needs at least one lead)."""
    panel = build_panel(metrics)
    reference = _cost_per_lead(_trailing_sum(panel.spend, TRAILING_DAYS), _trailing_sum(panel.leads, TRAILING_DAYS), min_leads=1.0)
    firing = _cost_per_lead(panel.spend, panel.leads) >= RATIO * reference
    return _alerts(panel, firing, reference, ownership, default_party)


def iforest_per_campaign(metrics: pd.DataFrame, ownership: pd.DataFrame, default_party: str) -> pd.DataFrame:
    """An IsolationForest per campaign on [spend, clicks, leads, spend / (leads + 1)], first fitted
    once the campaign has 60 days of data, then refitted every 90 days on the 90 days before; a day
    fires when the forest calls it an outlier and its spend per lead is above the training median."""
    panel = build_panel(metrics)
    features = np.stack([panel.spend, panel.clicks, panel.leads, panel.spend / (panel.leads + 1)], axis=2)
    active = panel.spend > 0
    first_day = np.where(active.any(axis=0), active.argmax(axis=0), len(panel.dates))
    chunks = np.array_split(np.arange(len(panel.campaigns)), FOREST_JOBS)
    results = Parallel(n_jobs=FOREST_JOBS)(delayed(_forest_columns)(features[:, c], first_day[c]) for c in chunks if len(c))
    firing = np.concatenate([fired for fired, _ in results], axis=1)
    reference = np.concatenate([ref for _, ref in results], axis=1)
    return _alerts(panel, firing, reference, ownership, default_party)


def _forest_columns(features: np.ndarray, first_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Firing days and the reference cost per lead (training Σspend/Σleads) for some campaigns."""
    n_days, n_campaigns, _ = features.shape
    firing = np.zeros((n_days, n_campaigns), dtype=bool)
    reference = np.full((n_days, n_campaigns), np.nan)
    for c in range(n_campaigns):
        for fit_day in range(first_day[c] + FOREST_FIRST_FIT_DAYS, n_days, FOREST_WINDOW_DAYS):
            train = features[max(first_day[c], fit_day - FOREST_WINDOW_DAYS) : fit_day, c]
            scored = slice(fit_day, min(fit_day + FOREST_WINDOW_DAYS, n_days))
            forest = IsolationForest(**FOREST_PARAMS).fit(train)
            outlier = forest.predict(features[scored, c]) == -1
            firing[scored, c] = outlier & (features[scored, c, 3] > np.median(train[:, 3]))
            reference[scored, c] = _cost_per_lead(train[:, 0].sum(), train[:, 2].sum(), min_leads=1.0)
    return firing, reference


def _shift(values: np.ndarray, days: int) -> np.ndarray:
    """``values`` of ``days`` days earlier; NaN before the panel starts."""
    out = np.full_like(values, np.nan)
    out[days:] = values[:-days]
    return out


def _trailing_sum(values: np.ndarray, days: int) -> np.ndarray:
    """Sum of the ``days`` days before each day (not the day itself); NaN until there are that many."""
    total = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    out = np.full_like(values, np.nan)
    out[days:] = total[days:-1] - total[: -days - 1]
    return out


def _cost_per_lead(spend: np.ndarray, leads: np.ndarray, min_leads: float = 0.0) -> np.ndarray:
    """Spend per lead: infinite with spend and no leads, NaN with neither or below ``min_leads``
    leads when it is a reference that needs some."""
    with np.errstate(divide="ignore", invalid="ignore"):
        cpl = np.where(leads > 0, spend / leads, np.where(spend > 0, np.inf, np.nan))
    return np.where(leads >= min_leads, cpl, np.nan) if min_leads > 0 else cpl


def _alerts(panel: Panel, firing: np.ndarray, reference: np.ndarray, ownership: pd.DataFrame, default_party: str) -> pd.DataFrame:
    """Runs of firing days per campaign (gaps of at most ``MAX_GAP_DAYS``) as scorer alerts."""
    column, day = np.nonzero(firing.T)  # column-major: each campaign's days in order
    starts = np.ones(len(day), dtype=bool)
    starts[1:] = (column[1:] != column[:-1]) | (day[1:] - day[:-1] > MAX_GAP_DAYS + 1)
    ends = np.append(starts[1:], True)[: len(day)]
    first, last, col = day[starts], day[ends], column[starts]
    party, _ = party_matrix(ownership, panel.campaigns["account_id"].to_numpy(), panel.campaigns["campaign_id"].to_numpy(), panel.dates, default_party)
    onset = panel.dates[first]
    return pd.DataFrame(
        {
            "account_id": panel.campaigns["account_id"].to_numpy()[col],
            "campaign_id": panel.campaigns["campaign_id"].to_numpy()[col],
            "family": FAMILY,
            "onset": onset,
            "detected_on": onset,
            "managing_party": party[first, col],
            "excess_cost": _excess(panel, first, last, col, reference[first, col]),
        },
        columns=ALERT_COLUMNS,
    )


def _excess(panel: Panel, first: np.ndarray, last: np.ndarray, column: np.ndarray, reference_cpl: np.ndarray) -> np.ndarray:
    """Per alert, Σ max(spend − leads × reference, 0) from its first to its last day (0 without a
    finite reference)."""
    lengths = last - first + 1
    alert = np.repeat(np.arange(len(first)), lengths)
    day = np.repeat(first, lengths) + np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cells = (day, column[alert])
    excess = np.maximum(panel.spend[cells] - panel.leads[cells] * reference_cpl[alert], 0.0)
    excess = np.where(np.isfinite(reference_cpl[alert]), excess, 0.0)
    return np.bincount(alert, weights=excess, minlength=len(first))
