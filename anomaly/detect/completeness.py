"""How complete the latest days' leads are: conversions are reported late.

A platform keeps adding conversions to a day for a week or more after it (a lead that comes in
two days after the click is credited to the click's day). When a cycle runs, yesterday holds
perhaps two thirds of the leads it will end up with, the day before four fifths, and so on.
Judged against a full day's worth, the lag alone would read as a lead shortfall on every account.

``share[d, c]`` is the part of day ``d``'s final leads expected to be in the data already; the
rules expect that part of a day's leads, no more. It comes from one of two places:

- **Learned from restatements** (``learned``): how much of each account's final leads the store
  had seen 0, 1, 2, … days after the day (``anomaly.store`` keeps the first figures each pull saw),
  as a frame ``account_id, days_after, share``; an account missing there uses the mean of the others.
- **Read from the data itself** when nothing was learned: the portfolio's leads on each of the
  last ``days`` days against what their spend buys at each campaign's baseline, relative to the
  same ratio over the four weeks before. Pooled over every campaign (an account whose own ratio
  is less than half the pool's is left out, as it may be a real loss; with fewer than
  ``MIN_ACCOUNTS`` accounts left, a lag cannot be told from a loss and the day counts as
  complete), taken at the upper end of
  what the counts allow (``CONFIDENCE_Z`` standard errors) and shrunk toward complete by
  ``PSEUDO_LEADS``, so a small portfolio's short day is not read as a lag; and never rising toward
  the latest day.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from anomaly.detect.panel import Panel

PSEUDO_LEADS = 20.0
CONFIDENCE_Z = 2.0
MIN_ACCOUNTS = 4  # a lag is the platform's, seen in every account; one account short is an incident
REFERENCE_DAYS = 28
OUTLIER_RATIO = 0.5


def lead_share(panel: Panel, base_cpl: np.ndarray, days: int, learned: pd.DataFrame | None = None) -> np.ndarray:
    """``share`` (days × columns) for the last ``days`` days; 1 elsewhere."""
    n_days, n_columns = panel.shape
    share = np.ones((n_days, n_columns))
    if days <= 0 or n_days == 0:
        return share
    recent = min(days, n_days)
    if learned is not None and not learned.empty:
        per_account = _from_learned(panel, learned, recent)
    else:
        per_account = None
    if per_account is not None:
        share[n_days - recent :] = per_account[::-1]
    else:
        curve = estimate(panel, base_cpl, recent)
        share[n_days - recent :] = curve[::-1, None]
    return share


def estimate(panel: Panel, base_cpl: np.ndarray, days: int) -> np.ndarray:
    """The pooled share for 0 .. ``days`` − 1 days before the last day (index 0: the last day)."""
    n_days = panel.shape[0]
    own = ~panel.is_total
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(np.isfinite(base_cpl) & (base_cpl > 0), np.nan_to_num(panel.spend) / base_cpl, np.nan)
    leads = np.nan_to_num(panel.leads)
    usable = np.isfinite(expected) & own[None, :]
    expected, leads = np.where(usable, expected, 0.0), np.where(usable, leads, 0.0)
    reference = slice(max(n_days - days - REFERENCE_DAYS, 0), n_days - days)
    ref_expected = expected[reference].sum()
    if ref_expected <= 0:
        return np.ones(days)
    rate = leads[reference].sum() / ref_expected  # leads per expected lead on complete days
    accounts = panel.campaigns["account_id"].to_numpy()
    codes, uniques = pd.factorize(accounts)
    curve = np.ones(days)
    for k in range(days):
        d = n_days - 1 - k
        by_account_leads = np.bincount(codes, leads[d], minlength=len(uniques))
        by_account_expected = np.bincount(codes, expected[d], minlength=len(uniques)) * rate
        pooled = (by_account_leads.sum() + PSEUDO_LEADS) / (by_account_expected.sum() + PSEUDO_LEADS)
        # an account far short of the pool may be losing leads for real: leave it out of the pool
        keep = (by_account_leads + 1.0) >= OUTLIER_RATIO * (pooled * by_account_expected + 1.0)
        if np.count_nonzero(keep & (by_account_expected >= 1.0)) < MIN_ACCOUNTS:
            continue  # too few accounts to tell a lag from a loss: taken as complete
        seen, wanted = by_account_leads[keep].sum(), by_account_expected[keep].sum()
        # the upper end of what the day's leads allow: a small portfolio's short day is not a lag
        curve[k] = (seen + CONFIDENCE_Z * np.sqrt(seen + 1.0) + PSEUDO_LEADS) / (wanted + PSEUDO_LEADS)
    return _never_rising(np.minimum(curve, 1.0))


def _never_rising(curve: np.ndarray) -> np.ndarray:
    """``curve[k]`` (k days before the last) at most ``curve[k + 1]``: a later day is never more complete."""
    out = curve.copy()
    for k in range(len(out) - 2, -1, -1):
        out[k] = min(out[k], out[k + 1])
    return out


def _from_learned(panel: Panel, learned: pd.DataFrame, days: int) -> np.ndarray | None:
    """(days × columns) shares from a learned ``account_id, days_after, share`` frame, index 0 the last day."""
    table = learned.pivot_table(index="account_id", columns="days_after", values="share", aggfunc="mean")
    table = table.reindex(columns=range(days))
    if table.empty:
        return None
    mean = table.mean(axis=0).fillna(1.0)
    accounts = panel.campaigns["account_id"].to_numpy()
    rows = table.reindex(pd.Index(accounts)).to_numpy()
    rows = np.where(np.isnan(rows), mean.to_numpy()[None, :], rows)
    return np.clip(rows.T, 0.0, 1.0)
