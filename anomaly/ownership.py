"""Who manages an account or campaign over time, and which party the author of a change belongs to.

A period ``(account_id, campaign_id, party, start, end)`` covers ``start <= day < end``: ``end`` is
the day the next party takes over (NaT while the period lasts). ``campaign_id`` "" covers the whole
account; a campaign's own periods take precedence over its account's.

A change's author (the change history's ``user_email``) is an email, attributed by its domain
(``parties.<key>.domains``), or, for Meta, whose activity log names people and businesses rather
than emails, an actor as ``meta_actor`` writes it (``Jane Doe (Meta 100012345)``), attributed by
``parties.<key>.meta_users`` and ``meta_businesses``. ``domain_map`` holds both kinds of key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from anomaly.config import Config
from anomaly.schema import empty_ownership, normalise_ownership

UNKNOWN = "unknown"
UNATTRIBUTED = "unattributed"
AUTOMATED = "automated"
#: The client type of a change Meta itself made (delivery, review, billing, learning phase).
META_SYSTEM = "META_SYSTEM"
#: The client types of Microsoft Advertising changes no person made: automated rules, scripts,
#: and Microsoft Advertising itself (its change history's user "Administrator").
MICROSOFT_ADS_AUTOMATED = frozenset({"MICROSOFT_ADS_AUTOMATED_RULES", "MICROSOFT_ADS_SCRIPTS", "MICROSOFT_ADS_SYSTEM"})
#: Client types through which no person makes the change: Google Ads rules, scripts and
#: recommendations, Meta's own events, and Microsoft Advertising's rules, scripts and own changes.
AUTOMATED_CLIENT_TYPES = frozenset(
    {"GOOGLE_ADS_AUTOMATED_RULE", "GOOGLE_ADS_RECOMMENDATIONS", "GOOGLE_ADS_RECOMMENDATIONS_SUBSCRIPTION", "GOOGLE_ADS_SCRIPTS", "INTERNAL_TOOL",
     META_SYSTEM, *MICROSOFT_ADS_AUTOMATED}
)
_META_ACTOR = re.compile(r"^(?P<name>.*?)\s*\(Meta(?: (?P<id>\d+))?\)$")
_META_KEY = "meta:"


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


def meta_actor(actor_id: str, actor_name: str) -> str:
    """A Meta activity's actor (a person, a system user or a business) as the change history's
    ``user_email`` holds it: ``Jane Doe (Meta 100012345)``, the name Meta shows and the actor's id."""
    name = " ".join((actor_name or "").split())
    actor_id = (actor_id or "").strip()
    if actor_id.isdigit():
        return f"{name or 'Meta user'} (Meta {actor_id})"
    return f"{name} (Meta)" if name else ""


def party_of_email(email: str, domains: dict[str, str]) -> str:
    """The party a change's author belongs to (``domains`` as ``domain_map`` makes it): an email by
    its domain, a Meta actor (``meta_actor``) by its id, else by its name; else "unattributed"."""
    actor = _META_ACTOR.match(email or "")
    if actor:
        keys = [actor["id"], actor["name"].casefold()]
        return next((domains[_META_KEY + k] for k in keys if k and _META_KEY + k in domains), UNATTRIBUTED)
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
    """Who each party's people are: email domain → party, and ``meta:`` and a Meta user's or
    business's id or folded name → party (see ``party_of_email``)."""
    identities = {domain: key for key, party in config.parties.items() for domain in party.domains}
    for key, party in config.parties.items():
        for actor in (*party.meta_users, *party.meta_businesses):
            identities.setdefault(_META_KEY + actor.casefold(), key)
    return identities


def infer_ownership(changes: pd.DataFrame, domains: dict[str, str], min_changes: int) -> pd.DataFrame:
    """Account-wide ownership periods implied by who made the changes (canonical ownership frame).

    ``changes`` has ``account_id``, ``local_day`` (the account's own day), ``user_email`` and
    ``client_type``, oldest first. Changes by automated clients (``AUTOMATED_CLIENT_TYPES``) and by
    authors of no known party are ignored. Per account, the first party seen making a change manages
    it from that day; a party other than the managing one that then makes ``min_changes`` changes
    manages it from the day of the first of them (the same day: it takes over that day).
    """
    rows = []
    human = ~changes["client_type"].isin(list(AUTOMATED_CLIENT_TYPES))
    for account, group in changes[human].groupby("account_id", sort=True):
        parties = (party_of_email(e, domains) for e in group["user_email"])
        authors = [(day, p) for day, p in zip(group["local_day"], parties) if p != UNATTRIBUTED]
        periods = _periods(authors, min_changes)
        for i, (party, start) in enumerate(periods):
            end = periods[i + 1][1] if i + 1 < len(periods) else pd.NaT
            rows.append((account, "", party, start, end))
    if not rows:
        return empty_ownership()
    return normalise_ownership(pd.DataFrame(rows, columns=["account_id", "campaign_id", "party", "start", "end"]))


def _periods(authors: Iterable[tuple[pd.Timestamp, str]], min_changes: int) -> list[tuple[str, pd.Timestamp]]:
    """(party, start) of each management period, from (day, party) of each change in time order."""
    periods: list[tuple[str, pd.Timestamp]] = []
    challengers: dict[str, list[pd.Timestamp]] = {}  # each other party's change days since the last handoff
    for day, party in authors:
        if not periods:
            periods.append((party, day))
            continue
        if party == periods[-1][0]:
            continue
        days = challengers.setdefault(party, [])
        days.append(day)
        if len(days) < min_changes:
            continue
        challengers.clear()
        if days[0] > periods[-1][1]:
            periods.append((party, days[0]))
            continue
        periods[-1] = (party, periods[-1][1])  # taken over the day the period began
        if len(periods) > 1 and periods[-2][0] == party:
            periods.pop()
    return periods
