"""Causal per-campaign baselines that do not absorb an ongoing incident.

The baseline of day D is built from days before D only: exponentially weighted sums of spend,
leads, clicks and impressions (``half_life_days``). A day whose cost per lead is significantly
worse than the baseline is *hot* and left out of it, and so are the days that follow while the cost
per lead stays above ``elevated_ratio`` × baseline, so an incident never becomes the new normal —
until it has lasted ``max_excluded_days``, after which the baseline accepts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import poisson

from anomaly.config import BaselineConfig
from anomaly.detect.panel import Panel


@dataclass(frozen=True)
class Baseline:
    """Arrays of shape (days, campaigns). Row D describes the baseline *before* day D.

    ``cpl`` is the baseline cost per lead (ratio of weighted sums), ``spend``/``leads``/``clicks``/
    ``impressions`` are weighted daily averages, ``ready`` says the baseline has enough history
    (``min_days`` days and ``min_leads`` weighted leads), and ``hot`` marks days left out of it.
    """

    cpl: np.ndarray
    spend: np.ndarray
    leads: np.ndarray
    clicks: np.ndarray
    impressions: np.ndarray
    ready: np.ndarray
    hot: np.ndarray


def compute_baseline(panel: Panel, params: BaselineConfig) -> Baseline:
    n_days, n_campaigns = panel.shape
    decay = 0.5 ** (1.0 / params.half_life_days)
    sums = {name: np.zeros(n_campaigns) for name in ("spend", "leads", "clicks", "impressions")}
    weight = np.zeros(n_campaigns)
    days_seen = np.zeros(n_campaigns)
    excluded_run = np.zeros(n_campaigns, dtype=np.int64)
    absorbing = np.zeros(n_campaigns, dtype=bool)  # an exclusion ran out: accept the new level

    out = {name: np.full((n_days, n_campaigns), np.nan) for name in ("cpl", *sums)}
    ready = np.zeros((n_days, n_campaigns), dtype=bool)
    hot = np.zeros((n_days, n_campaigns), dtype=bool)
    current = {name: getattr(panel, name) for name in sums}

    with np.errstate(divide="ignore", invalid="ignore"):
        for d in range(n_days):
            has_weight = weight > 0
            for name, total in sums.items():
                out[name][d] = np.where(has_weight, total / np.where(has_weight, weight, 1), np.nan)
            base_cpl = np.where(sums["leads"] > 0, sums["spend"] / sums["leads"], np.nan)
            out["cpl"][d] = base_cpl
            is_ready = (days_seen >= params.min_days) & (sums["leads"] >= params.min_leads) & (base_cpl > 0)
            ready[d] = is_ready

            spend, leads = current["spend"][d], current["leads"][d]
            observed = ~np.isnan(spend)
            active = observed & ((spend > 0) | (leads > 0))
            expected = np.where(is_ready, spend / base_cpl, np.nan)
            worse = is_ready & active & (leads * params.elevated_ratio <= expected)
            significant = worse & (poisson.cdf(np.floor(np.nan_to_num(leads)), np.nan_to_num(expected)) <= params.elevated_p_value)
            continuing = worse & (excluded_run > 0)
            absorbing = worse & (absorbing | (excluded_run >= params.max_excluded_days))
            exclude = (significant | continuing) & ~absorbing
            hot[d] = exclude
            excluded_run = np.where(exclude, excluded_run + 1, 0)

            update = active & ~exclude
            if update.any():
                for name, total in sums.items():
                    total[update] = decay * total[update] + current[name][d][update]
                weight[update] = decay * weight[update] + 1.0
                days_seen[update] += 1
    return Baseline(ready=ready, hot=hot, **out)
