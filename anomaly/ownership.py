"""Who manages an account or campaign over time, and which party a change-history email belongs to.

A period ``(account_id, campaign_id, party, start, end)`` covers ``start <= day < end``: ``end`` is
the day the next party takes over (NaT while the period lasts). ``campaign_id`` "" covers the whole
account; a campaign's own periods take precedence over its account's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from anomaly.config import Config
from anomaly.schema import empty_ownership, normalise_ownership

UNKNOWN = "unknown"
UNATTRIBUTED = "unattributed"
AUTOMATED = "automated"
#: Google Ads client types through which no person makes the change.
AUTOMATED_CLIENT_TYPES = frozenset(
    {"GOOGLE_ADS_AUTOMATED_RULE", "GOOGLE_ADS_RECOMMENDATIONS", "GOOGLE_ADS_RECOMMENDATIONS_SUBSCRIPTION", "GOOGLE_ADS_SCRIPTS", "INTERNAL_TOOL"}
)


def ownership_periods(config: Config) -> pd.DataFrame:
    """Every ownership period from config: the inline assignments and the ``ownership.file`` CSV."""
    from connectors.csv_files import read_ownership_csv

    frames = []
    rows = []
    for assignment in config.ownership.assignments:
        history = assignment.history
        for i, period in enumerate(history):
            end = history[i + 1].since if i + 1 < len(history) else None
            rows.append((assignment.account_id, assignment.campaign_id or "", period.party, period.since, end))
    if rows:
        frames.append(normalise_ownership(pd.DataFrame(rows, columns=["account_id", "campaign_id", "party", "start", "end"])))
    if config.ownership.file:
        frames.append(read_ownership_csv(config.ownership.file, list(config.parties)))
    return pd.concat(frames, ignore_index=True) if frames else empty_ownership()


def with_inferred(declared: pd.DataFrame, inferred: pd.DataFrame) -> pd.DataFrame:
    """The declared periods, and the inferred ones of every account that none of them covers:
    ownership written in config always wins over what change history suggests."""
    extra = inferred[~inferred["account_id"].isin(set(declared["account_id"]))]
    return pd.concat([declared, extra], ignore_index=True) if len(extra) else declared


def party_matrix(
    periods: pd.DataFrame,
    account_ids: np.ndarray,
    campaign_ids: np.ndarray,
    dates: pd.DatetimeIndex,
    default_party: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The managing party of each (day, campaign) and the day that party's period started.

    Returns ``party`` (object array, days × campaigns; ``default_party`` or ``"unknown"`` where no
    period covers the day) and ``since`` (datetime64 array; NaT where unknown).
    """
    n_days, n_campaigns = len(dates), len(campaign_ids)
    party = np.full((n_days, n_campaigns), default_party or UNKNOWN, dtype=object)
    since = np.full((n_days, n_campaigns), np.datetime64("NaT"), dtype="datetime64[ns]")
    if periods.empty or n_campaigns == 0:
        return party, since
    day_values = dates.values
    accounts = pd.Series(np.arange(n_campaigns)).groupby(pd.Series(account_ids)).apply(list).to_dict()
    by_campaign = {(a, c): i for i, (a, c) in enumerate(zip(account_ids, campaign_ids))}
    # account-wide periods first, campaign periods after, so the campaign's own periods win
    ordered = periods.assign(_level=(periods["campaign_id"] != "").astype(int)).sort_values(["_level", "start"], kind="stable")
    for row in ordered.itertuples(index=False):
        if row.campaign_id:
            column = by_campaign.get((row.account_id, row.campaign_id))
            columns = [] if column is None else [column]
        else:
            columns = accounts.get(row.account_id, [])
        if not columns:
            continue
        in_period = day_values >= np.datetime64(row.start)
        if not pd.isna(row.end):
            in_period &= day_values < np.datetime64(row.end)
        rows = np.nonzero(in_period)[0]
        if rows.size:
            party[np.ix_(rows, columns)] = row.party
            since[np.ix_(rows, columns)] = np.datetime64(row.start)
    return party, since


def party_of_email(email: str, domains: dict[str, str]) -> str:
    """The party an email belongs to by its domain (``domains``: domain → party), else "unattributed"."""
    _, _, domain = (email or "").rpartition("@")
    domain = domain.strip().lower()
    while domain:
        if domain in domains:
            return domains[domain]
        _, _, domain = domain.partition(".")  # a subdomain belongs to its parent's party
    return UNATTRIBUTED


def party_of_change(email: str, client_type: str, domains: dict[str, str]) -> str:
    """The party behind a change: "automated" for rules, scripts and recommendations, else by email."""
    return AUTOMATED if client_type in AUTOMATED_CLIENT_TYPES else party_of_email(email, domains)


def domain_map(config: Config) -> dict[str, str]:
    return {domain: key for key, party in config.parties.items() for domain in party.domains}
