"""A synthetic portfolio for benchmarks: many accounts and campaigns, realistic volumes.

Campaigns average from about 0.2 to 20 leads a day (log-uniform), with weekly seasonality, a slow
drift in cost per click, Poisson leads, and a few injected cost-per-lead spikes with known onsets.
Generated in vectorised NumPy, so a million campaign-days take a second or two.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from anomaly.schema import normalise_metrics

WEEKLY = np.array([1.0, 1.02, 1.0, 0.98, 0.92, 0.55, 0.5])


def generate(n_campaigns: int, days: int, *, seed: int = 0, start: str = "2025-01-01", campaigns_per_account: int = 8, spike_share: float = 0.05):
    """Return (metrics, spikes): canonical daily metrics and a frame of injected spikes
    (account_id, campaign_id, onset, days, factor)."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=days, freq="D")
    leads_per_day = np.exp(rng.uniform(np.log(0.2), np.log(20), n_campaigns))
    cpl = rng.uniform(40, 300, n_campaigns)
    cpc = cpl * rng.uniform(0.02, 0.08, n_campaigns)
    season = WEEKLY[dates.dayofweek.to_numpy()][:, None]
    drift = np.exp(np.cumsum(rng.normal(0, 0.004, (days, n_campaigns)), axis=0))
    spend = leads_per_day * cpl * season * rng.lognormal(0, 0.08, (days, n_campaigns))
    true_cpl = cpl * drift * rng.lognormal(0, 0.05, (days, n_campaigns))

    spiking = rng.choice(n_campaigns, int(n_campaigns * spike_share), replace=False)
    spikes = []
    for c in spiking:
        onset = int(rng.integers(90, days - 7)) if days > 100 else days // 2
        length, factor = int(rng.integers(2, 8)), float(rng.choice([2.0, 3.0, 5.0, 10.0]))
        true_cpl[onset : onset + length, c] *= factor
        spikes.append((c, onset, length, factor))
    leads = rng.poisson(spend / true_cpl).astype(float)
    clicks = rng.poisson(spend / cpc)

    account = np.arange(n_campaigns) // campaigns_per_account
    frame = pd.DataFrame(
        {
            "date": np.repeat(dates.to_numpy(), n_campaigns),
            "account_id": np.tile([f"{1000000000 + a}" for a in account], days),
            "campaign_id": np.tile([f"{5000000 + c}" for c in range(n_campaigns)], days),
            "spend": np.round(spend.ravel(), 2),
            "clicks": clicks.ravel(),
            "impressions": (clicks.ravel() * 22),
            "leads": leads.ravel(),
        }
    )
    frame["account_name"] = "Account " + frame["account_id"].str[-4:]
    frame["campaign_name"] = "Campaign " + frame["campaign_id"].str[-4:]
    truth = pd.DataFrame(
        [(f"{1000000000 + account[c]}", f"{5000000 + c}", dates[o], n, f) for c, o, n, f in spikes],
        columns=["account_id", "campaign_id", "onset", "days", "factor"],
    )
    return normalise_metrics(frame), truth
