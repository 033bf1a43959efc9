"""Shared test helpers: a copy of the embedded default in a temporary folder, tiny frames."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly.schema import normalise_metrics, normalise_ownership

PROJECT = Path(__file__).resolve().parent.parent


def copy_default_project(folder: Path) -> Path:
    """config.yaml and rules/ copied into ``folder``; returns the config path."""
    shutil.copy(PROJECT / "config.yaml", folder / "config.yaml")
    shutil.copytree(PROJECT / "rules", folder / "rules")
    return folder / "config.yaml"


def daily_frame(columns: dict[str, dict], start: str = "2026-01-05") -> pd.DataFrame:
    """Canonical metrics from per-campaign series: {campaign_id: {"spend": [...], "leads": [...]}}.

    Clicks default to spend / 2 and impressions to clicks × 20; every campaign is in account "A".
    """
    frames = []
    for campaign_id, series in columns.items():
        spend = np.asarray(series["spend"], dtype=float)
        n = len(spend)
        clicks = np.asarray(series.get("clicks", np.round(spend / 2)), dtype=float)
        frames.append(
            pd.DataFrame(
                {
                    "date": pd.date_range(start, periods=n, freq="D"),
                    "account_id": series.get("account_id", "A"),
                    "campaign_id": campaign_id,
                    "spend": spend,
                    "clicks": clicks.astype(int),
                    "impressions": (clicks * 20).astype(int),
                    "leads": np.asarray(series["leads"], dtype=float),
                }
            )
        )
    return normalise_metrics(pd.concat(frames, ignore_index=True))


def periods(*rows: tuple) -> pd.DataFrame:
    """Ownership periods from (account_id, campaign_id, party, start, end) tuples."""
    return normalise_ownership(pd.DataFrame(list(rows), columns=["account_id", "campaign_id", "party", "start", "end"]))


def steady(days: int, spend: float, cpl: float, seed: int = 0) -> dict:
    """A campaign with Poisson leads at a constant cost per lead."""
    rng = np.random.default_rng(seed)
    spend_series = np.full(days, spend) * rng.lognormal(0, 0.05, days)
    return {"spend": spend_series, "leads": rng.poisson(spend_series / cpl).astype(float)}
