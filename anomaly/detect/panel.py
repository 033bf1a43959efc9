"""Canonical daily metrics as dense day × campaign arrays, so that detection runs vectorised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ACCOUNT_TOTAL = ""
ACCOUNT_TOTAL_NAME = "all campaigns"


@dataclass(frozen=True)
class Panel:
    """Daily metrics as arrays of shape (days, campaigns).

    A campaign is observed from its first row to the last day its account has data: a day in that
    span with no row is zero activity (ad platforms omit empty days); outside it the values are NaN
    (unknown), and detection gives no verdict there.

    With account totals, each account with more than one campaign gets one more column, campaign_id
    "" (``ACCOUNT_TOTAL``), holding the sum of its campaigns: a problem that hits every campaign a
    little (tracking broken site-wide) shows there first.
    """

    dates: pd.DatetimeIndex
    campaigns: pd.DataFrame  # account_id, campaign_id, account_name, campaign_name, currency
    spend: np.ndarray
    leads: np.ndarray
    clicks: np.ndarray
    impressions: np.ndarray

    @property
    def observed(self) -> np.ndarray:
        return ~np.isnan(self.spend)

    @property
    def shape(self) -> tuple[int, int]:
        return self.spend.shape

    def day_index(self, day) -> int:
        """Index of ``day`` in ``dates`` (KeyError when absent)."""
        return int(self.dates.get_loc(pd.Timestamp(day)))

    @property
    def is_total(self) -> np.ndarray:
        """Which columns are account totals."""
        return (self.campaigns["campaign_id"] == ACCOUNT_TOTAL).to_numpy()


def build_panel(metrics: pd.DataFrame, as_of: pd.Timestamp | None = None, *, account_totals: bool = False) -> Panel:
    """Pivot daily canonical metrics (dates ≤ ``as_of``) into a Panel, with account totals if asked."""
    if as_of is not None:
        metrics = metrics[metrics["date"] <= pd.Timestamp(as_of)]
    if metrics.empty:
        empty = np.zeros((0, 0))
        return Panel(pd.DatetimeIndex([]), pd.DataFrame(columns=["account_id", "campaign_id", "account_name", "campaign_name", "currency"]), empty, empty, empty, empty)
    key = ["account_id", "campaign_id"]
    latest = metrics.sort_values("date", kind="stable").groupby(key, sort=True).last()
    campaigns = latest[["account_name", "campaign_name", "currency"]].reset_index()
    dates = pd.date_range(metrics["date"].min(), metrics["date"].max(), freq="D")
    col = pd.MultiIndex.from_frame(campaigns[key])
    column_of = pd.Series(np.arange(len(col)), index=col)
    row_idx = dates.get_indexer(metrics["date"])
    col_idx = column_of.reindex(pd.MultiIndex.from_frame(metrics[key])).to_numpy()

    first = np.full(len(col), len(dates), dtype=np.int64)
    np.minimum.at(first, col_idx, row_idx)
    account_last = metrics.groupby("account_id")["date"].max()
    last = dates.get_indexer(account_last.reindex(campaigns["account_id"]).to_numpy())
    days = np.arange(len(dates))[:, None]
    observed = (days >= first[None, :]) & (days <= last[None, :])

    def dense(column: str) -> np.ndarray:
        out = np.zeros((len(dates), len(col)))
        np.add.at(out, (row_idx, col_idx), metrics[column].to_numpy(dtype=float))
        out[~observed] = np.nan
        return out

    panel = Panel(dates, campaigns, dense("spend"), dense("leads"), dense("clicks"), dense("impressions"))
    return _with_account_totals(panel) if account_totals else panel


def _with_account_totals(panel: Panel) -> Panel:
    accounts = panel.campaigns["account_id"]
    counts = accounts.value_counts()
    has_total = set(accounts[panel.campaigns["campaign_id"] == ACCOUNT_TOTAL])  # a source's own account-level rows
    several = [a for a in accounts.unique() if counts[a] > 1 and a not in has_total]
    if not several:
        return panel
    member = (accounts.to_numpy()[None, :] == np.array(several, dtype=object)[:, None]).astype(float)  # accounts × campaigns
    observed = panel.observed.astype(float) @ member.T > 0

    def total(values: np.ndarray) -> np.ndarray:
        out = np.nan_to_num(values) @ member.T
        out[~observed] = np.nan
        return np.concatenate([values, out], axis=1)

    first = panel.campaigns.drop_duplicates("account_id", keep="last").set_index("account_id")
    extra = pd.DataFrame(
        {
            "account_id": several,
            "campaign_id": ACCOUNT_TOTAL,
            "account_name": first.loc[several, "account_name"].to_numpy(),
            "campaign_name": ACCOUNT_TOTAL_NAME,
            "currency": first.loc[several, "currency"].to_numpy(),
        }
    )
    campaigns = pd.concat([panel.campaigns, extra], ignore_index=True)
    return Panel(panel.dates, campaigns, total(panel.spend), total(panel.leads), total(panel.clicks), total(panel.impressions))


def window_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing sum over ``window`` days ending on each day; NaN when any day in it is unknown."""
    if window == 1:
        return values.copy()
    filled = np.nan_to_num(values, nan=0.0)
    csum = np.cumsum(filled, axis=0)
    out = csum.copy()
    out[window:] -= csum[:-window]
    unknown = np.cumsum(np.isnan(values), axis=0)
    gaps = unknown.copy()
    gaps[window:] -= unknown[:-window]
    out[gaps > 0] = np.nan
    out[: window - 1] = np.nan
    return out


def shift(values: np.ndarray, days: int) -> np.ndarray:
    """Values moved ``days`` later along the day axis (the first ``days`` rows become NaN)."""
    if days == 0:
        return values
    out = np.full_like(values, np.nan, dtype=float)
    out[days:] = values[:-days]
    return out


def recent(flags: np.ndarray, within_days: int) -> np.ndarray:
    """True where ``flags`` was true on the day or any of the ``within_days - 1`` days before it."""
    total = np.cumsum(flags, axis=0)
    before = np.zeros_like(total)
    before[within_days:] = total[:-within_days]
    return total > before
