"""What broke: an incident's mechanism, and its excess cost split by mechanism.

Each mechanism has a different owner and fix, so an alert names it first:

- ``tracking``: leads stopped while the clicks go on (a conversion tag or a form broke);
- ``cost_per_click``: the clicks got dearer (bids, bid strategy, match types, the auction);
- ``conversion_rate``: the clicks convert less at their usual price (landing page, targeting,
  search terms, lead quality);
- ``spend``: spend ran far above its usual level (a budget, a bid strategy let loose);
- ``volume``: the clicks or impressions went (disapprovals, a budget exhausted, a pause by mistake).

The excess cost of a cost-per-lead incident, spend ``S`` with ``K`` clicks and ``L`` leads against
the baseline cost per click ``c`` and cost per lead ``b``, splits exactly in two::

    S − L·b  =  (S − K·c)  +  (K·c − L·b)

what the clicks cost above their baseline price (the cost-per-click part), and what those clicks
at the baseline price should have bought in leads and did not (the conversion-rate part). A part
can be negative (clicks got cheaper while conversion fell further); the mechanism is the larger
part. Leads that all but stopped while clicks went on at about their usual price are tracking,
whatever the split says.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from anomaly.detect.changes import kind_of

TRACKING = "tracking"
COST_PER_CLICK = "cost_per_click"
CONVERSION_RATE = "conversion_rate"
SPEND = "spend"
VOLUME = "volume"
MECHANISMS = (TRACKING, COST_PER_CLICK, CONVERSION_RATE, SPEND, VOLUME)

#: Leads at most this share of what the spend should have bought ...
STOPPED_SHARE = 0.05
#: ... where at least this many were due, while the clicks held at least this share of what the
#: spend buys at the baseline cost per click: tracking.
STOPPED_MIN_EXPECTED = 3.0
CLICKS_HELD_SHARE = 0.5


#: Which change-history entries plausibly explain each mechanism: the change kind
#: (``anomaly.detect.changes.kind_of``: budget, bidding, status) or words in what was changed.
_TARGETING = re.compile(r"keyword|match_type|criterion|audience|location|final_url|ad_group_ad|\bad\b|asset|landing|negative", re.IGNORECASE)
_TRACKING = re.compile(r"conversion|tag|goal|attribution", re.IGNORECASE)


def change_explains(change: dict, mechanism: str | None) -> bool:
    """Whether a change (``resource_type``, ``operation``, ``changed_fields``) plausibly explains
    ``mechanism``: a bid or budget change dearer clicks or a runaway, a keyword, match-type, ad or
    targeting change fewer leads per click, a conversion-action change lost tracking."""
    resource, operation, fields = change.get("resource_type", ""), change.get("operation", ""), change.get("changed_fields", "")
    kind = kind_of(resource, operation, fields)
    text = f"{resource} {fields}"
    if mechanism == COST_PER_CLICK:
        return kind == "bidding" or (kind is None and bool(re.search(r"cpc_bid|bid_modifier|match_type", text, re.IGNORECASE)))
    if mechanism == SPEND:
        return kind in ("budget", "bidding")
    if mechanism == CONVERSION_RATE:  # a new bid strategy changes which clicks it buys, too
        return (kind is None and bool(_TARGETING.search(text))) or (kind == "bidding" and "strategy" in text.lower())
    if mechanism == TRACKING:
        return kind is None and bool(_TRACKING.search(text))
    if mechanism == VOLUME:
        return kind in ("budget", "status")
    return False


@dataclass(frozen=True)
class Diagnosis:
    mechanism: str | None  # None: the data cannot tell (no clicks, no baseline)
    excess_by_mechanism: dict[str, float]  # cost_per_click and conversion_rate parts (empty when unknown)


def diagnose(family: str, spend, clicks, leads, baseline_cpl: float, baseline_cpc: float) -> Diagnosis:
    """The mechanism of an incident of ``family`` from its days since onset (``spend``, ``clicks``
    and ``leads``, one value a day) and its baselines. Tracking is judged on the incident's latest
    days: the run of days, up to the last, whose leads all but stopped (a tag that broke after a
    weak day is still a broken tag)."""
    spend, clicks, leads = (np.nan_to_num(np.asarray(values, dtype=float)) for values in (spend, clicks, leads))
    known_cpl = math.isfinite(baseline_cpl) and baseline_cpl > 0
    known_cpc = math.isfinite(baseline_cpc) and baseline_cpc > 0
    parts: dict[str, float] = {}
    if known_cpl and known_cpc and clicks.sum() > 0:
        at_usual_price = float(clicks.sum()) * baseline_cpc
        parts = {COST_PER_CLICK: float(spend.sum()) - at_usual_price, CONVERSION_RATE: at_usual_price - float(leads.sum()) * baseline_cpl}
    if family == "spend":
        return Diagnosis(SPEND, parts)
    if family in ("clicks", "impressions"):
        return Diagnosis(VOLUME, parts)
    if known_cpl and _leads_stopped(spend, clicks, leads, baseline_cpl, baseline_cpc if known_cpc else None):
        return Diagnosis(TRACKING, parts)
    if not parts:
        return Diagnosis(None, parts)
    return Diagnosis(max(parts, key=parts.get), parts)


def stopped(spend, leads, baseline_cpl: float):
    """Whether a day's (or each day's) leads all but stopped: at most ``STOPPED_SHARE`` of what its
    spend should have bought at the baseline cost per lead."""
    return leads <= STOPPED_SHARE * (spend / baseline_cpl)


def _leads_stopped(spend: np.ndarray, clicks: np.ndarray, leads: np.ndarray, baseline_cpl: float, baseline_cpc: float | None) -> bool:
    """The latest days' leads at most ``STOPPED_SHARE`` of what their spend should have bought,
    with at least ``STOPPED_MIN_EXPECTED`` due, while their clicks held."""
    due = spend / baseline_cpl
    stopped_days = stopped(spend, leads, baseline_cpl)
    run = len(stopped_days) - (int(np.nonzero(~stopped_days)[0][-1]) + 1 if (~stopped_days).any() else 0)  # the trailing run
    if run == 0:
        return False
    days = slice(len(stopped_days) - run, None)
    if due[days].sum() < STOPPED_MIN_EXPECTED or clicks[days].sum() <= 0:
        return False
    return baseline_cpc is None or clicks[days].sum() >= CLICKS_HELD_SHARE * spend[days].sum() / baseline_cpc


def clear(mechanism: str | None, excess_by_mechanism: dict[str, float]) -> bool:
    """Whether ``mechanism`` is clear enough to announce a change to it: tracking, spend and volume
    always; cost per click or conversion rate when its part is at least twice the other's."""
    if mechanism in (TRACKING, SPEND, VOLUME):
        return True
    if mechanism not in (COST_PER_CLICK, CONVERSION_RATE) or len(excess_by_mechanism) < 2:
        return False
    other = CONVERSION_RATE if mechanism == COST_PER_CLICK else COST_PER_CLICK
    part = excess_by_mechanism[mechanism]
    return part > 0 and part >= 2 * abs(excess_by_mechanism[other])
