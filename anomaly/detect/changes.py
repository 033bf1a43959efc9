"""The change history as days × columns: which days a campaign's budget, bidding or status changed.

A change names its campaign, or none for an account-level change (a shared budget, an account
setting), which then counts for every campaign of the account and for the account total. A
budget change whose text gives the amounts (``amount: 150.00 -> 300.00``, as the Google Ads
connector writes it and a change-history CSV may, or ``Daily budget: 150.00 -> 300.00`` as the
Microsoft Advertising connector does) also gives its size, new over old.

A budget raised the same day as other campaigns of the account give up at least half as much is
money *moved* between campaigns, not added: its size counts for what it explains, not as a stroke
that might be a typo (``stroke_factor``).

A campaign that starts spending, or spends again after ``RESUMED_AFTER_DAYS`` days without, has
a *status* change that day whether or not the history records one: the data shows it launched or
resumed, and it ramps up from there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomaly.detect.panel import Panel

KINDS = ("budget", "bidding", "status")
RESUMED_AFTER_DAYS = 7
_BUDGET = re.compile(r"budget|amount", re.IGNORECASE)
_BIDDING = re.compile(r"bidding_strategy|target_cpa|target_roas|maximize_conversion|bid_strategy", re.IGNORECASE)
_STATUS = re.compile(r"(^|[._ ])status\b", re.IGNORECASE)
# a budget's amounts as Google Ads (amount, amount_micros) and Microsoft Advertising (Daily budget) name them
_AMOUNTS = re.compile(r"(?:amount(?:_micros)?|daily budget)\s*:\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s*->\s*([0-9][0-9,]*(?:\.[0-9]+)?)", re.IGNORECASE)


@dataclass(frozen=True)
class ChangeDays:
    """Boolean (days × columns) arrays per kind, and ``budget_factor``: the product of the sizes of
    the day's budget changes that state their amounts (1 where none does); ``stroke_factor`` the
    same without the raises that only move money from other campaigns of the account."""

    budget: np.ndarray
    bidding: np.ndarray
    status: np.ndarray
    budget_factor: np.ndarray
    stroke_factor: np.ndarray

    def of(self, kinds) -> np.ndarray:
        out = np.zeros(self.budget.shape, dtype=bool)
        for kind in kinds:
            out |= getattr(self, kind)
        return out

    @classmethod
    def none(cls, shape: tuple[int, int]) -> "ChangeDays":
        return cls(np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, bool), np.ones(shape), np.ones(shape))


def kind_of(resource_type: str, operation: str, changed_fields: str) -> str | None:
    """budget, bidding, status, or None for any other change (keywords, ads, access)."""
    text = f"{resource_type} {changed_fields}"
    if "BUDGET" in resource_type.upper() or _BUDGET.search(changed_fields):
        return "budget"
    if _BIDDING.search(text):
        return "bidding"
    if _STATUS.search(changed_fields) or (resource_type.upper() == "CAMPAIGN" and operation.upper() == "CREATE"):
        return "status"
    return None


def budget_amounts(changed_fields: str) -> tuple[float, float]:
    """(old, new) amounts stated in a budget change's text; NaNs when it states none."""
    match = _AMOUNTS.search(changed_fields)
    if not match:
        return float("nan"), float("nan")
    old, new = (float(value.replace(",", "")) for value in match.groups())
    return old, new


def budget_factor(changed_fields: str) -> float:
    """New over old amount stated in a budget change's text; NaN when it states none."""
    old, new = budget_amounts(changed_fields)
    return new / old if old > 0 else float("nan")


def change_days(panel: Panel, changes: pd.DataFrame | None) -> ChangeDays:
    n_days, n_columns = panel.shape
    days = ChangeDays.none((n_days, n_columns))
    if not n_days:
        return days
    days.status[:] = _started(panel)
    if changes is None or changes.empty:
        return days
    kinds = [kind_of(r, o, f) for r, o, f in zip(changes["resource_type"], changes["operation"], changes["changed_fields"])]
    frame = changes.assign(kind=kinds, day=panel.dates.get_indexer(pd.to_datetime(changes["changed_at"]).dt.normalize()))
    frame = frame[frame["kind"].notna() & (frame["day"] >= 0)]
    if frame.empty:
        return days
    amounts = np.array([budget_amounts(f) if k == "budget" else (np.nan, np.nan) for k, f in zip(frame["kind"], frame["changed_fields"])]).reshape(-1, 2)
    old, new = amounts[:, 0], amounts[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        frame = frame.assign(factor=np.where(old > 0, new / old, np.nan), delta=new - old)
    # a raise that other campaigns of the account paid for the same day (cuts of at least half of it)
    named = (frame["campaign_id"] != "") & np.isfinite(frame["delta"].to_numpy(dtype=float))
    cuts = (-frame["delta"].clip(upper=0)).where(named, 0.0).groupby([frame["account_id"], frame["day"]]).transform("sum")
    moved = named & (frame["delta"] > 0) & (cuts >= 0.5 * frame["delta"])
    frame = frame.assign(stroke=frame["factor"].where(~moved, np.nan))
    columns = panel.campaigns[["account_id", "campaign_id"]].assign(column=np.arange(n_columns), total=panel.is_total)
    # a campaign's change: its column and its account's total; an account-level one: every column of the account
    own = frame[frame["campaign_id"] != ""].merge(columns[~columns["total"]], on=["account_id", "campaign_id"])
    to_total = frame[frame["campaign_id"] != ""].merge(columns[columns["total"]].drop(columns="campaign_id"), on="account_id")
    account = frame[frame["campaign_id"] == ""].drop(columns="campaign_id").merge(columns.drop(columns="campaign_id"), on="account_id")
    hits = pd.concat([own, to_total, account], ignore_index=True)
    for kind in KINDS:
        rows = hits[hits["kind"] == kind]
        getattr(days, kind)[rows["day"].to_numpy(), rows["column"].to_numpy()] = True
    for name, target in (("factor", days.budget_factor), ("stroke", days.stroke_factor)):
        sized = hits[np.isfinite(hits[name].to_numpy(dtype=float))]
        np.multiply.at(target, (sized["day"].to_numpy(), sized["column"].to_numpy()), sized[name].to_numpy(dtype=float))
    return days


def _started(panel: Panel) -> np.ndarray:
    """Days a column spends after ``RESUMED_AFTER_DAYS`` days without spend, or for the first time
    after the panel's first week (a campaign there from the start did not launch)."""
    spending = np.nan_to_num(panel.spend) > 0
    idle = np.zeros(panel.shape[1], dtype=np.int64)
    seen = np.zeros(panel.shape[1], dtype=bool)
    out = np.zeros(panel.shape, dtype=bool)
    for d in range(panel.shape[0]):
        out[d] = spending[d] & ((seen & (idle >= RESUMED_AFTER_DAYS)) | (~seen & (d >= RESUMED_AFTER_DAYS)))
        idle = np.where(spending[d], 0, idle + 1)
        seen |= spending[d]
    return out


def recent_factor(days: ChangeDays, within_days: int, *, strokes: bool = False) -> np.ndarray:
    """The largest stated budget size among the budget changes of the last ``within_days`` days (1:
    none); with ``strokes``, leaving out the raises that only moved money between campaigns."""
    sizes = days.stroke_factor if strokes else days.budget_factor
    out = sizes.copy()
    for back in range(1, within_days):
        out[back:] = np.maximum(out[back:], sizes[:-back])
    return out
