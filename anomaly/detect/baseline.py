"""Causal per-campaign baselines that do not absorb an ongoing incident or a new party's level.

The baseline of day D is built from days before D only: exponentially weighted sums of spend,
leads, clicks and impressions (``half_life_days``). Three things keep it a fair reference:

- **Incidents stay out.** A day whose cost per lead (from its leads, or its cost per click from
  its clicks) is significantly worse than the baseline, alone or with the two days before it, is
  *hot* and left out, and so are the days that follow while it stays above ``elevated_ratio`` ×
  baseline — until that has lasted ``max_excluded_days``, after which the new level is accepted.
- **A handoff is a changepoint.** For ``probation_days`` after the managing party changes, the
  baseline stays as it was before the handoff, so the new party's level never becomes "normal"
  after two days.
- **Small campaigns borrow strength.** The cost per lead is shrunk toward the account's by
  ``shrink_leads`` pseudo-leads, so a campaign with a handful of past leads has a sensible
  reference, and the number of leads behind each baseline is kept to widen the tests accordingly.

Spend also gets a weekday profile (each weekday's spend relative to the baseline, slowly
weighted and shrunk toward a flat week), so Monday is compared with Mondays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anomaly.config import BaselineConfig, VariationConfig
from anomaly.detect.panel import Panel
from anomaly.detect.stats import dispersion, lower_tail
from anomaly.detect.spend_level import SpendLevel
from anomaly.detect.variation import WEEK, Variation


@dataclass(frozen=True)
class Baseline:
    """Arrays of shape (days, campaigns). Row D describes the baseline *before* day D.

    ``cpl``: the reference cost per lead (shrunk toward the account's); ``cpc``: cost per click;
    ``spend``/``leads``/``clicks``/``impressions``: weighted daily averages; ``lead_info`` and
    ``click_info``: the effective number of past leads and clicks behind ``cpl`` and ``cpc``;
    ``lead_phi``/``lead_persist`` and ``click_phi``/``click_persist``: the campaign's own variation
    of leads given spend and clicks given spend, the part that averages out over days and the part
    that does not (``anomaly.detect.variation``; ``stats.dispersion`` takes both);
    ``spend_factor``: day D's weekday spend relative to the average day; ``spend_level`` and
    ``spend_spread``: the usual spend of an average day and the spread of log spend around it,
    ``new_spend_level``: a step in spend accepted as the new level on day D
    (``anomaly.detect.spend_level``); ``ready``: enough history
    (``min_days`` days and ``min_leads`` leads, pseudo-leads included); ``hot``: days left out as
    anomalous; ``held``: days in a post-handoff probation, when the baseline is held.
    """

    cpl: np.ndarray
    cpc: np.ndarray
    spend: np.ndarray
    leads: np.ndarray
    clicks: np.ndarray
    impressions: np.ndarray
    lead_info: np.ndarray
    click_info: np.ndarray
    lead_phi: np.ndarray
    lead_persist: np.ndarray
    click_phi: np.ndarray
    click_persist: np.ndarray
    spend_factor: np.ndarray
    spend_level: np.ndarray
    spend_spread: np.ndarray
    new_spend_level: np.ndarray
    ready: np.ndarray
    hot: np.ndarray
    held: np.ndarray


def compute_baseline(
    panel: Panel,
    params: BaselineConfig,
    variation: VariationConfig | None = None,
    days_since_change: np.ndarray | None = None,
    suspect_spend: np.ndarray | None = None,
) -> Baseline:
    """``suspect_spend`` (days × columns): days whose spend a step in it must not be accepted on
    as the new level, as if its money bought worse (a budget multiplied at a stroke, a typo?)."""
    variation = variation or VariationConfig()
    n_days, n_campaigns = panel.shape
    decay = 0.5 ** (1.0 / params.half_life_days)
    weekday_decay = 0.5 ** (1.0 / params.weekday_half_life_weeks)
    names = ("spend", "leads", "clicks", "impressions")
    sums = {name: np.zeros(n_campaigns) for name in names}
    weight = np.zeros(n_campaigns)
    weight_sq = np.zeros(n_campaigns)
    days_seen = np.zeros(n_campaigns)
    excluded_run = np.zeros(n_campaigns, dtype=np.int64)
    absorbing = np.zeros(n_campaigns, dtype=bool)  # an exclusion ran out: accept the new level
    weekday_sum = np.zeros((7, n_campaigns))
    weekday_weight = np.zeros((7, n_campaigns))
    weekdays = panel.dates.day_of_week.to_numpy() if n_days else np.zeros(0, dtype=int)

    # the account each campaign belongs to, for shrinkage (account totals are their own account)
    account_codes = panel.campaigns["account_id"].astype("category").cat.codes.to_numpy() if n_campaigns else np.zeros(0, int)
    is_total = panel.is_total if n_campaigns else np.zeros(0, bool)
    own = ~is_total
    n_accounts = int(account_codes.max()) + 1 if n_campaigns else 0

    held = np.zeros((n_days, n_campaigns), dtype=bool)
    if days_since_change is not None and params.probation_days > 0:
        held = days_since_change < params.probation_days

    out = {name: np.full((n_days, n_campaigns), np.nan) for name in ("cpl", "cpc", "lead_info", "click_info", "spend_factor", *names)}
    varying = ("lead_phi", "lead_persist", "click_phi", "click_persist")
    out.update({name: np.zeros((n_days, n_campaigns)) for name in varying})
    learners = {
        name: Variation(prior, variation.drift, variation.prior_days, variation.half_life_days, account_codes, own, variation.floor)
        for name, prior in (("leads", variation.leads), ("clicks", variation.clicks))
    }
    fixed = {"leads": (variation.leads**2, 0.0), "clicks": (variation.clicks**2, 0.0)}
    level = SpendLevel(n_campaigns, params.half_life_days, params.spend_spread, variation.prior_days, params.new_spend_level_days, account_codes, own)
    out.update({"spend_level": np.full((n_days, n_campaigns), np.nan), "spend_spread": np.zeros((n_days, n_campaigns))})
    new_level = np.zeros((n_days, n_campaigns), dtype=bool)
    week_spend = np.zeros((WEEK, n_campaigns))  # the trailing week, for the week's variation
    week_leads = np.zeros((WEEK, n_campaigns))
    week_clicks = np.zeros((WEEK, n_campaigns))
    week_valid = np.zeros((WEEK, n_campaigns), dtype=bool)
    ready = np.zeros((n_days, n_campaigns), dtype=bool)
    hot = np.zeros((n_days, n_campaigns), dtype=bool)
    current = {name: getattr(panel, name) for name in names}
    recent_spend = np.zeros((3, n_campaigns))  # the two days before D, and D
    recent_leads = np.zeros((3, n_campaigns))

    with np.errstate(divide="ignore", invalid="ignore"):
        for d in range(n_days):
            has_weight = weight > 0
            safe_weight = np.where(has_weight, weight, 1.0)
            for name, total in sums.items():
                out[name][d] = np.where(has_weight, total / safe_weight, np.nan)
            kish = np.where(has_weight, weight**2 / np.where(weight_sq > 0, weight_sq, 1.0), 0.0) / safe_weight
            lead_info = sums["leads"] * kish
            click_info = sums["clicks"] * kish

            # shrink toward the account's cost per lead
            acct_spend = np.bincount(account_codes[own], sums["spend"][own], minlength=n_accounts)
            acct_leads = np.bincount(account_codes[own], sums["leads"][own], minlength=n_accounts)
            prior = np.where(acct_leads > 0, acct_spend / np.where(acct_leads > 0, acct_leads, 1), np.nan)[account_codes]
            shrink = np.where(np.isfinite(prior) & own, params.shrink_leads, 0.0)
            base_cpl = (sums["spend"] + shrink * np.nan_to_num(prior)) / (sums["leads"] + shrink)
            base_cpl = np.where(np.isfinite(base_cpl) & (base_cpl > 0), base_cpl, np.nan)
            base_cpc = np.where(sums["clicks"] > 0, sums["spend"] / sums["clicks"], np.nan)
            out["cpl"][d], out["cpc"][d] = base_cpl, base_cpc
            out["lead_info"][d] = lead_info + shrink
            out["click_info"][d] = click_info
            lead_phi, lead_persist = learners["leads"].split() if variation.learn else fixed["leads"]
            click_phi, click_persist = learners["clicks"].split() if variation.learn else fixed["clicks"]
            out["lead_phi"][d], out["lead_persist"][d] = lead_phi, lead_persist
            out["click_phi"][d], out["click_persist"][d] = click_phi, click_persist
            factors = (weekday_sum + params.weekday_prior_weeks) / (weekday_weight + params.weekday_prior_weeks)
            out["spend_factor"][d] = factors[weekdays[d]] / factors.mean(axis=0)
            is_ready = (days_seen >= params.min_days) & (sums["leads"] + shrink >= params.min_leads) & ~np.isnan(base_cpl)
            ready[d] = is_ready

            spend, leads, clicks = current["spend"][d], current["leads"][d], current["clicks"][d]
            observed = ~np.isnan(spend)
            active = observed & ((spend > 0) | (leads > 0))
            recent_spend = np.vstack([recent_spend[1:], np.nan_to_num(spend)])
            recent_leads = np.vstack([recent_leads[1:], np.nan_to_num(leads)])

            expected = np.where(is_ready, np.nan_to_num(spend) / base_cpl, np.nan)
            expected_3 = np.where(is_ready, recent_spend.sum(axis=0) / base_cpl, np.nan)
            expected_clicks = np.where(is_ready & (base_cpc > 0), np.nan_to_num(spend) / base_cpc, np.nan)
            worse_cpl = is_ready & active & ((np.nan_to_num(leads) + 0.5) * params.elevated_ratio <= expected)
            worse_cpc = is_ready & active & ((np.nan_to_num(clicks) + 0.5) * params.elevated_ratio <= expected_clicks)
            alpha = params.elevated_p_value
            significant = (
                worse_cpl
                & (
                    (lower_tail(leads, expected, dispersion(lead_phi, 1, lead_info + shrink, lead_persist), where=worse_cpl) <= alpha)
                    | (lower_tail(recent_leads.sum(axis=0), expected_3, dispersion(lead_phi, 3, lead_info + shrink, lead_persist), where=worse_cpl) <= alpha)
                )
            ) | (worse_cpc & (lower_tail(clicks, expected_clicks, dispersion(click_phi, 1, click_info, click_persist), where=worse_cpc) <= alpha))
            worse = worse_cpl | worse_cpc
            continuing = worse & (excluded_run > 0)
            absorbing = worse & (absorbing | (excluded_run >= params.max_excluded_days)) & ~held[d]
            exclude = (significant | continuing) & ~absorbing
            hot[d] = exclude
            excluded_run = np.where(exclude, excluded_run + 1, 0)

            out["spend_level"][d], out["spend_spread"][d] = level.level(), level.spread()
            doubtful = exclude if suspect_spend is None else exclude | suspect_spend[d]
            new_level[d] = level.update(np.where(observed, spend, np.nan), out["spend_factor"][d], doubtful)

            update = active & ~exclude & ~held[d]
            if variation.learn:
                usable = active & is_ready & ~held[d]
                learners["leads"].day.update(usable, leads, expected)
                learners["clicks"].day.update(usable, clicks, expected_clicks)
                k = d % WEEK
                week_spend[k], week_leads[k], week_clicks[k] = np.nan_to_num(spend), np.nan_to_num(leads), np.nan_to_num(clicks)
                week_valid[k] = usable
                whole = week_valid.all(axis=0)
                if whole.any():
                    spend_7 = week_spend.sum(axis=0)
                    learners["leads"].week.update(whole, week_leads.sum(axis=0), spend_7 / base_cpl)
                    learners["clicks"].week.update(whole, week_clicks.sum(axis=0), spend_7 / base_cpc)
            if update.any():
                base_spend = out["spend"][d]
                with_profile = update & (base_spend > 0)
                k = weekdays[d]
                weekday_sum[k, with_profile] = weekday_decay * weekday_sum[k, with_profile] + spend[with_profile] / base_spend[with_profile]
                weekday_weight[k, with_profile] = weekday_decay * weekday_weight[k, with_profile] + 1.0
                for name, total in sums.items():
                    total[update] = decay * total[update] + current[name][d][update]
                weight[update] = decay * weight[update] + 1.0
                weight_sq[update] = decay**2 * weight_sq[update] + 1.0
                days_seen[update] += 1
    return Baseline(ready=ready, hot=hot, held=held, new_spend_level=new_level, **out)
