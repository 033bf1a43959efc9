"""The canonical frames that connectors produce and the store and detector consume.

Metrics: one row per (account_id, campaign_id, date, hour). ``hour`` is ``DAILY`` (-1) for a row
that covers the whole day, 0–23 for an hourly row. Money is in account currency units (not micros);
``leads`` is a float because platforms report fractional conversions. Derived metrics (cpl, cpc,
ctr, cvr) are computed where needed, never stored.
"""

from __future__ import annotations

import re

import pandas as pd

DAILY = -1

#: What no id or name may hold: the C0 and C1 control characters (line breaks, tab, NUL, escape ...),
#: DEL, and the Unicode line and paragraph separators. No ad platform writes them; in a store they
#: would break log lines, tables and alerts, and PostgreSQL refuses a NUL.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

METRIC_KEY = ["account_id", "campaign_id", "date", "hour"]
METRIC_COLUMNS = [
    "date",
    "hour",
    "account_id",
    "account_name",
    "campaign_id",
    "campaign_name",
    "currency",
    "spend",
    "impressions",
    "clicks",
    "leads",
]

# campaign_id is "" for an account-level change; client_type is how it was made (the Google Ads
# client type, e.g. GOOGLE_ADS_WEB_CLIENT or GOOGLE_ADS_AUTOMATED_RULE; "" when the source does not say).
CHANGE_COLUMNS = [
    "changed_at",
    "account_id",
    "campaign_id",
    "user_email",
    "client_type",
    "resource_type",
    "operation",
    "changed_fields",
]

# campaign_id is "" for a period that covers the whole account; end is NaT while it lasts.
OWNERSHIP_COLUMNS = ["account_id", "campaign_id", "party", "start", "end"]


def empty_metrics() -> pd.DataFrame:
    return normalise_metrics(pd.DataFrame({c: [] for c in METRIC_COLUMNS}))


def empty_changes() -> pd.DataFrame:
    return normalise_changes(pd.DataFrame({c: [] for c in CHANGE_COLUMNS}))


def empty_ownership() -> pd.DataFrame:
    return normalise_ownership(pd.DataFrame({c: [] for c in OWNERSHIP_COLUMNS}))


def normalise_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with exactly the canonical metric columns and dtypes (already-valid data)."""
    out = pd.DataFrame(
        {
            "date": pd.to_datetime(df["date"]).dt.normalize().astype("datetime64[ns]"),
            "hour": df["hour"].astype("int64") if "hour" in df else DAILY,
            "account_id": df["account_id"].astype(str),
            "account_name": df["account_name"].astype(str) if "account_name" in df else df["account_id"].astype(str),
            "campaign_id": df["campaign_id"].astype(str),
            "campaign_name": df["campaign_name"].astype(str) if "campaign_name" in df else df["campaign_id"].astype(str),
            "currency": df["currency"].astype(str) if "currency" in df else "USD",
            "spend": df["spend"].astype("float64"),
            "impressions": df["impressions"].astype("int64") if "impressions" in df else 0,
            "clicks": df["clicks"].astype("int64"),
            "leads": df["leads"].astype("float64"),
        },
        index=df.index,
    )
    return out[METRIC_COLUMNS].reset_index(drop=True)


def normalise_changes(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "changed_at": pd.to_datetime(df["changed_at"]).astype("datetime64[ns]"),
            **{c: (df[c].astype(object) if c in df else pd.Series("", index=df.index)).fillna("").astype(str) for c in CHANGE_COLUMNS[1:]},
        },
        index=df.index,
    )
    return out[CHANGE_COLUMNS].reset_index(drop=True)


def normalise_ownership(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "account_id": df["account_id"].astype(str),
            "campaign_id": df["campaign_id"].fillna("").astype(str),
            "party": df["party"].astype(str),
            "start": pd.to_datetime(df["start"]).astype("datetime64[ns]"),
            "end": pd.to_datetime(df["end"]).astype("datetime64[ns]"),
        },
        index=df.index,
    )
    return out[OWNERSHIP_COLUMNS].reset_index(drop=True)
