"""A second synthetic portfolio for the detection-quality benchmark: ads bought click by click in an auction.

``benchmarks.synth`` paces spend around a target and buys clicks with it. Here the causality runs
the other way, as on Google Ads, so that a detector tuned on one world can be checked on the other.
Each campaign has click demand (the clicks it would buy at its bids), a cost per click that rises
with the volume bought (CPC = cpc0 × (clicks / v0)^elasticity, elasticity 0.2–0.5) and a daily
budget. Spend is clicks × cost per click, so a campaign with five clicks a day has spend that
doubles or halves from one day to the next. About 40% of campaigns are budget-capped: their demand
costs more than the budget, so clicks are cut until spend meets it; Google lets a day spend up to
2× the daily budget, and a month stays near 30.4 budgets. Some accounts share one budget among 2–4
campaigns: when one campaign's demand rises, the others' spend falls.

Clicks are negative-binomial counts around demand × a weekday factor; every campaign has its own
day-to-day variation of cost per click (lognormal σ 0.04–0.20) and conversion rate (σ 0.05–0.25).
Conversions are credited by data-driven attribution, so leads are fractional: a split conversion
gives a third, a half or two thirds of its credit to another campaign of the account. They are
reported late: 55–70% on the click's day, most of the rest within three days, the tail up to
seven, with a lag profile per account. ``generate(seed).metrics`` is the data as known at the end
of the last day: the last week's leads are incomplete, and the last day itself is partial (pulled
mid-afternoon: 50–90% of its spend, clicks and leads). ``metrics_as_of(seed, day)`` gives the same
world as known at the end of any day.

Benign events, in ``Portfolio.benign`` (a detector should stay silent on them): budget changes of
0.5–2.5× (spend follows on capped campaigns, and cost per click rises with the volume bought),
smart-bidding strategy changes with a learning week of 1.2–1.8× worse cost per lead, campaigns
paused for 1–4 weeks and campaigns launched mid-panel (no rows while off, then 1–2 weeks of
ramp-up), budget moved between campaigns of an account, planned changes that settle cost per lead
at a new level, improvements, and holidays. Each change is in the change history with who made it
and the values before and after (``change_log``; ``Portfolio.changes`` has the canonical columns).

Incidents, in ``Portfolio.truth`` (``benchmarks.synth.TRUTH_COLUMNS`` plus ``campaigns``, the ids
of every campaign hit): cost-per-lead spikes of 1.5× to 10× through cost per click, conversion rate
or both, about 40% of them within a week of a handoff to a new managing party (through cost per
click, an uncapped campaign keeps its clicks and pays more for them until its budget stops it; a
capped one keeps its spend and gets fewer clicks); lost conversion tracking on two or more
campaigns of an account; creeps of 3–6% a day until ×3, through cost per click or conversion rate
(``mechanism``); and spend runaways, 3–5× the spend at 1.2–1.5× the cost per lead, through a budget
typo or a bidding strategy let loose. ``true_excess`` is the spend above what the incident's final
leads would have cost at each day's normal (no-incident, noise-free) cost per lead.

Everything is drawn from ``numpy.random.default_rng(seed)``, mostly in vectorised NumPy: the same
seed gives the same portfolio, and 50 accounts × 300 campaigns × 180 days take a fraction of a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from anomaly.schema import DAILY, empty_metrics, normalise_changes, normalise_metrics, normalise_ownership
from benchmarks.synth import BENIGN_COLUMNS, SPIKE_FACTORS, TRUTH_COLUMNS, Portfolio

PARTIES: dict[str, dict] = {
    "agency": {"name": "Larkspur Media Group", "domains": ["larkspur-media.example"]},
    "kestrel": {"name": "Kestrel Performance", "domains": ["kestrelperformance.example"]},
    "tidewater": {"name": "Tidewater Search Co", "domains": ["tidewatersearch.example"]},
}
DEFAULT_PARTY = "agency"
PARTNERS = ("kestrel", "tidewater")
USERS: dict[str, tuple[str, ...]] = {
    "agency": ("maria.lopez", "dev", "k.osei", "ellen.w"),
    "kestrel": ("ravi", "j.hart"),
    "tidewater": ("nora.b", "felix", "amara.c"),
}
CLIENT_TYPE = "GOOGLE_ADS_WEB_CLIENT"
TRADES = ("Plumbing", "Dental", "Roofing", "Law", "HVAC", "Solar", "Insurance", "Movers", "Pest Control", "Auto Glass")
TOWNS = ("Ashford", "Brookvale", "Cedar Falls", "Dunmore", "Elmhurst", "Fairview", "Glenrock", "Harlow")
CAMPAIGN_KINDS = (
    "Search - Core Services",
    "Search - Brand",
    "Search - Emergency",
    "Search - Competitors",
    "PMax - Leads",
    "Search - Local",
    "Demand Gen - Prospecting",
    "Display - Remarketing",
)
CAMPAIGNS_PER_ACCOUNT = np.array([8, 11, 12, 12, 11, 10, 8, 6, 4, 3, 2], dtype=float)  # weights of 2..12 campaigns
STRATEGIES = ("MAXIMIZE_CONVERSIONS", "TARGET_CPA", "MAXIMIZE_CLICKS", "MANUAL_CPC")
STRATEGY_SHARES = (0.35, 0.35, 0.15, 0.15)
NEXT_STRATEGY = {
    "MANUAL_CPC": "MAXIMIZE_CONVERSIONS",
    "MAXIMIZE_CLICKS": "MAXIMIZE_CONVERSIONS",
    "MAXIMIZE_CONVERSIONS": "TARGET_CPA",
    "TARGET_CPA": "MAXIMIZE_CONVERSIONS",
}
BUDGET_STEPS = (0.5, 0.6, 0.75, 0.8, 1.25, 1.5, 2.0, 2.5)  # the budget changes agencies make
MATCH_TYPES = ("BROAD", "PHRASE", "EXACT")
KEYWORDS = ("near me", "emergency", "same day", "cost", "quote", "best local", "24 hour", "free estimate")
NEGATIVES = ("free", "jobs", "diy", "salary", "training", "used")
ROUTINE_CHANGES = (  # resource type, operation, changed field, kind of value
    ("AD_GROUP_CRITERION", "CREATE", "ad_group_criterion.keyword.text", "keyword"),
    ("AD_GROUP_CRITERION", "UPDATE", "ad_group_criterion.keyword.match_type", "match"),
    ("AD_GROUP_CRITERION", "UPDATE", "ad_group_criterion.cpc_bid_micros", "bid"),
    ("AD_GROUP", "UPDATE", "ad_group.cpc_bid_micros", "bid"),
    ("CAMPAIGN_CRITERION", "CREATE", "campaign_criterion.keyword.text", "negative"),
)
BUDGET_CHANGE = ("CAMPAIGN_BUDGET", "campaign_budget.amount_micros")
STRATEGY_CHANGE = ("CAMPAIGN", "campaign.bidding_strategy_type")
STATUS_CHANGE = ("CAMPAIGN", "campaign.status")
TARGET_CPA_CHANGE = ("CAMPAIGN", "campaign.target_cpa.target_cpa_micros")
LANDING_PAGE_CHANGE = ("AD_GROUP_AD", "ad_group_ad.ad.final_urls")
ACCESS_CHANGE = ("CUSTOMER_USER_ACCESS", "customer_user_access.access_role")
HOLIDAYS = (  # name, month, day of month (fixed date) or weekday with its nth occurrence (-1: last)
    ("New Year's Day", 1, 1, None),
    ("Martin Luther King Jr. Day", 1, 0, 3),
    ("Presidents' Day", 2, 0, 3),
    ("Memorial Day", 5, 0, -1),
    ("Independence Day", 7, 4, None),
    ("Labor Day", 9, 0, 1),
    ("Thanksgiving", 11, 3, 4),
    ("Christmas Day", 12, 25, None),
)

EVAL_DAY = 60  # no incident before: baselines need history
MIN_DAYS_SHOWN = 7  # every incident starts at least this many days before the last day
SEPARATION_DAYS = 14  # clean days between two incidents of one campaign
BASE_DAYS = 28  # the days before onset that give an incident's base leads; its campaigns run on all of them
HANDOFF_WINDOW_DAYS = 14  # an incident this many days or fewer after a handoff is "after handoff"
HANDOFF_SPIKE_DAYS = 7  # spikes placed after a handoff start this many days after it or fewer
HANDOFF_SPIKE_SHARE = 0.4
INCIDENTS_PER_KIND = 12  # per spike factor and per other class, at 50 accounts; scaled with the account count
REFERENCE_ACCOUNTS = 50
SPIKE_MECHANISMS = (("cpc", 0.35), ("cvr", 0.35), ("both", 0.30))
MAX_PLACEMENT_TRIES = 400
OVERDELIVERY = 2.0  # a day may spend up to this many daily budgets ...
DAYS_PER_MONTH = 30.4  # ... and a month at most this many
MAX_LAG_DAYS = 7  # conversions are reported at most this many days after their click's day
CLICK_PRICE_VARIANCE = 0.3  # spread of single clicks' prices around the day's cost per click
MIN_DAYS = EVAL_DAY + 30

TRUTH = TRUTH_COLUMNS + ["campaigns"]


# ---------------------------------------------------------------------------------------------
# Public entry points


def generate(seed: int, *, n_accounts: int = 50, days: int = 180, start: str = "2026-01-05") -> Portfolio:
    """A portfolio of ``n_accounts`` accounts over ``days`` days from ``start``, deterministic in
    ``seed``, with its metrics as known at the end of the last day (a partial day)."""
    world = _world(seed, n_accounts, days, start)
    return Portfolio(
        metrics=_metrics(world, len(world.dates) - 1, partial_last_day=True),
        changes=normalise_changes(world.changes),
        ownership=world.ownership.copy(),
        parties=PARTIES,
        default_party=DEFAULT_PARTY,
        truth=world.truth.copy(),
        benign=world.benign.copy(),
        eval_start=world.dates[EVAL_DAY],
        end=world.dates[-1],
    )


def metrics_as_of(
    seed: int, as_of: pd.Timestamp | str, *, n_accounts: int = 50, days: int = 180, start: str = "2026-01-05"
) -> pd.DataFrame:
    """The canonical metrics of ``generate(seed, ...)``'s world as known at the end of ``as_of``:
    no days after it, ``as_of`` itself complete, and leads only as far as reported by then.
    ``as_of`` may lie past the panel: a week past its last day every lead is in."""
    world = _world(seed, n_accounts, days, start)
    return _metrics(world, (pd.Timestamp(as_of).normalize() - world.dates[0]).days, partial_last_day=False)


def change_log(seed: int, *, n_accounts: int = 50, days: int = 180, start: str = "2026-01-05") -> pd.DataFrame:
    """The change history of ``generate(seed, ...)`` before ``normalise_changes``: the canonical
    columns plus ``old_value`` and ``new_value`` (e.g. a budget "150.00" → "300.00")."""
    return _world(seed, n_accounts, days, start).changes.copy()


# ---------------------------------------------------------------------------------------------
# The world: every array of the panel, built once per (seed, size)


@dataclass(frozen=True)
class _Layout:
    """Accounts, budget groups and campaigns with their normal economics. Campaigns of an account
    are contiguous, and so are those of a budget group (a shared budget is an account's first campaigns)."""

    account_ids: np.ndarray  # (A,)
    account_names: np.ndarray  # (A,)
    account_of: np.ndarray  # (C,) account index of each campaign
    first_campaign: np.ndarray  # (A,)
    campaign_count: np.ndarray  # (A,)
    campaign_ids: np.ndarray  # (C,)
    campaign_names: np.ndarray  # (C,)
    group_of: np.ndarray  # (C,) budget group of each campaign
    group_first: np.ndarray  # (G,) first campaign of each budget group
    shared: np.ndarray  # (C,) in a budget shared with other campaigns
    capped: np.ndarray  # (C,) demand costs more than the budget in normal times
    budget: np.ndarray  # (G,) daily budget at the start
    v0: np.ndarray  # (C,) clicks a day at which the cost per click is cpc0 (normal demand)
    cpc0: np.ndarray  # (C,)
    cvr0: np.ndarray  # (C,) leads per click
    elasticity: np.ndarray  # (C,) cost per click ∝ clicks^elasticity
    sigma_cpc: np.ndarray  # (C,) day-to-day lognormal σ of cost per click
    sigma_cvr: np.ndarray  # (C,) day-to-day lognormal σ of conversion rate
    dispersion: np.ndarray  # (C,) gamma shape of demand (negative-binomial clicks)
    ctr: np.ndarray  # (C,)
    strategy: np.ndarray  # (C,) bidding strategy at the start
    split_share: np.ndarray  # (A,) share of conversions whose credit is split with another campaign
    lag: np.ndarray  # (A, MAX_LAG_DAYS + 1) probability that a conversion is reported that many days late

    @property
    def n_accounts(self) -> int:
        return len(self.account_ids)

    @property
    def n_campaigns(self) -> int:
        return len(self.campaign_ids)

    def campaigns_of(self, account: int) -> np.ndarray:
        first = self.first_campaign[account]
        return np.arange(first, first + self.campaign_count[account])


@dataclass(frozen=True)
class _Handoff:
    account: int
    day: int
    party: str  # the party that takes over


@dataclass
class _Change:
    """One change-history row in panel indices; ``party`` None: the account's managing party that day."""

    day: int
    account: int
    campaign: int  # -1: account-level
    resource_type: str
    operation: str
    changed_fields: str
    old_value: str = ""
    new_value: str = ""
    party: str | None = None


@dataclass
class _Incident:
    """One incident placed on the panel (day and campaign indices)."""

    cls: str
    magnitude: float
    mechanism: str
    account: int
    campaigns: list[int]
    onset: int
    end: int
    account_wide: bool = False
    cpl_factor: float = 1.0  # spend runaway: its cost-per-lead factor


@dataclass
class _Multipliers:
    """Multipliers on the (day × campaign) panel, and on each (day × budget group)'s budget."""

    demand: np.ndarray
    price: np.ndarray
    cvr: np.ndarray
    keep: np.ndarray  # share of conversions recorded
    budget: np.ndarray

    @classmethod
    def ones(cls, days: int, n_campaigns: int, n_groups: int) -> _Multipliers:
        shape = (days, n_campaigns)
        return cls(np.ones(shape), np.ones(shape), np.ones(shape), np.ones(shape), np.ones((days, n_groups)))


@dataclass(frozen=True)
class _Normal:
    """The no-incident, noise-free panel: what each campaign-day would be with benign events only."""

    demand: np.ndarray  # clicks wanted
    price: np.ndarray  # cost per click at v0 clicks
    cvr: np.ndarray
    budget: np.ndarray  # (D, G)
    demand_spend: np.ndarray  # cost of buying the whole demand
    scale: np.ndarray  # share of its demand spend each campaign's budget group lets it spend
    clicks: np.ndarray
    spend: np.ndarray
    leads: np.ndarray

    @property
    def cpl(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.spend / self.leads


@dataclass(frozen=True)
class _World:
    """Everything ``generate`` and ``metrics_as_of`` read, built once per parameters."""

    layout: _Layout
    dates: pd.DatetimeIndex
    active: np.ndarray  # (D, C) the campaign runs (has a row) that day
    spend: np.ndarray
    clicks: np.ndarray
    impressions: np.ndarray
    leads: np.ndarray  # final leads, once every conversion is reported
    reported: np.ndarray  # (D, C, MAX_LAG_DAYS + 1) share of the final leads reported by that many days after
    budget: np.ndarray  # (D, G) daily budget in force
    allowance: np.ndarray  # (D, G) what Google let each budget group spend that day
    partial: dict[str, np.ndarray | float]  # the last day as pulled mid-afternoon
    normal: _Normal
    changes: pd.DataFrame
    ownership: pd.DataFrame
    truth: pd.DataFrame
    benign: pd.DataFrame
    incidents: list[_Incident] = field(repr=False)


_CACHE: dict[tuple, _World] = {}


def _world(seed: int, n_accounts: int, days: int, start: str) -> _World:
    key = (int(seed), int(n_accounts), int(days), str(pd.Timestamp(start).date()))
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = _build(*key)
    return _CACHE[key]


def _build(seed: int, n_accounts: int, days: int, start: str) -> _World:
    if days < MIN_DAYS:
        raise ValueError(f"days must be at least {MIN_DAYS}")
    if n_accounts < 1:
        raise ValueError("n_accounts must be at least 1")
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=days, freq="D")
    layout = _layout(rng, n_accounts)
    handoffs = _handoffs(rng, n_accounts, days)
    party = _party_by_day(handoffs, n_accounts, days)
    holidays = _holidays(rng, dates)
    base = _base_panel(rng, layout, dates, holidays)
    changes: list[_Change] = []
    benign_rows: list[tuple[str, int, int, float]] = []
    active, benign_fx = _plan_benign(rng, layout, days, changes, benign_rows)
    normal = _normal(layout, base, active, benign_fx)
    incidents = _plan_incidents(rng, layout, handoffs, active, days)
    incident_fx = _incident_effects(rng, layout, normal, incidents, changes, days)
    world = _simulate(rng, layout, dates, active, normal, incident_fx)
    changes += _routine_changes(rng, layout, handoffs, days)
    return _World(
        layout=layout,
        dates=dates,
        active=active,
        normal=normal,
        changes=_change_frame(rng, layout, dates, changes, party),
        ownership=_ownership(layout, dates, handoffs),
        truth=_truth(layout, dates, incidents, handoffs, party, world["spend"], world["leads"], normal),
        benign=_benign_frame(layout, dates, benign_rows, holidays),
        incidents=incidents,
        **world,
    )


# ---------------------------------------------------------------------------------------------
# Accounts, campaigns, budgets and who manages them


def _nice(amount: np.ndarray | float) -> np.ndarray:
    """Budget amounts as people type them: whole units under 50, fives under 500, tens above."""
    amount = np.asarray(amount, dtype=float)
    step = np.where(amount < 50, 1.0, np.where(amount < 500, 5.0, 10.0))
    return np.maximum(np.round(amount / step) * step, 1.0)


def _layout(rng: np.random.Generator, n_accounts: int) -> _Layout:
    counts = rng.choice(np.arange(2, 13), n_accounts, p=CAMPAIGNS_PER_ACCOUNT / CAMPAIGNS_PER_ACCOUNT.sum())
    n = int(counts.sum())
    account_of = np.repeat(np.arange(n_accounts), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(n) - first[account_of]

    small = rng.random(n) < 0.2
    clicks = np.exp(np.where(small, rng.uniform(np.log(1.5), np.log(9.5), n), rng.uniform(np.log(10), np.log(400), n)))
    cvr = np.clip(np.exp(rng.uniform(np.log(0.02), np.log(0.2), n)), 0.12 / clicks, np.minimum(0.5, 30 / clicks))
    cpc0 = np.exp(rng.uniform(np.log(0.8), np.log(12), n_accounts))[account_of] * rng.lognormal(0, 0.35, n)
    elasticity = rng.uniform(0.2, 0.5, n)

    sharing = (counts >= 3) & (rng.random(n_accounts) < 0.3)
    size = np.where(sharing, rng.integers(2, 5, n_accounts), 0)
    size = np.minimum(size, counts)
    shared = position < size[account_of]
    starts_group = ~(shared & (position > 0))
    group_of = np.cumsum(starts_group) - 1
    group_first = np.nonzero(starts_group)[0]
    n_groups = len(group_first)

    alone = np.nonzero(~shared)[0]
    n_capped_alone = int(np.clip(round(0.4 * n) - shared.sum(), 0, len(alone)))
    capped = shared.copy()
    capped[rng.choice(alone, n_capped_alone, replace=False)] = True
    group_capped = capped[group_first]
    ratio = np.where(group_capped, rng.uniform(0.45, 0.85, n_groups), np.exp(rng.uniform(np.log(1.3), np.log(6), n_groups)))
    v0 = np.where(capped, clicks / ratio[group_of] ** (1 / (1 + elasticity)), clicks)
    demand_spend = np.bincount(group_of, weights=v0 * cpc0, minlength=n_groups)

    kinds = np.array(CAMPAIGN_KINDS, dtype=object)[position % len(CAMPAIGN_KINDS)]
    round_ = position // len(CAMPAIGN_KINDS)
    names = np.where(round_ == 0, kinds, kinds + " " + (round_ + 1).astype(str))
    towns = rng.choice(np.array(TOWNS, dtype=object), n_accounts)
    trades = np.array(TRADES, dtype=object)[np.arange(n_accounts) % len(TRADES)]

    p0 = rng.uniform(0.55, 0.70, n_accounts)
    within_three = rng.uniform(0.75, 0.92, n_accounts)
    early = rng.uniform(0.35, 0.7, n_accounts)[:, None] ** np.arange(3)
    tail = rng.uniform(0.45, 0.8, n_accounts)[:, None] ** np.arange(MAX_LAG_DAYS - 3)
    rest = 1 - p0
    lag = np.column_stack(
        [
            p0,
            (rest * within_three)[:, None] * early / early.sum(axis=1, keepdims=True),
            (rest * (1 - within_three))[:, None] * tail / tail.sum(axis=1, keepdims=True),
        ]
    )
    return _Layout(
        account_ids=(1_000_000_000 + rng.choice(9 * 10**9, n_accounts, replace=False)).astype(str),
        account_names=(towns + " " + trades + " " + (np.arange(n_accounts) + 1).astype(str)).astype(str),
        account_of=account_of,
        first_campaign=first,
        campaign_count=counts,
        campaign_ids=(20_000_000_000 + rng.choice(10**10, n, replace=False)).astype(str),
        campaign_names=names.astype(str),
        group_of=group_of,
        group_first=group_first,
        shared=shared,
        capped=capped,
        budget=_nice(demand_spend * ratio),
        v0=v0,
        cpc0=cpc0,
        cvr0=cvr,
        elasticity=elasticity,
        sigma_cpc=rng.uniform(0.04, 0.20, n),
        sigma_cvr=rng.uniform(0.05, 0.25, n),
        dispersion=np.exp(rng.uniform(np.log(8), np.log(60), n)),
        ctr=rng.uniform(0.02, 0.10, n),
        strategy=rng.choice(np.array(STRATEGIES, dtype=object), n, p=STRATEGY_SHARES),
        split_share=np.where(rng.random(n_accounts) < 0.4, 0.0, rng.uniform(0.15, 0.5, n_accounts)),
        lag=lag,
    )


def _handoffs(rng: np.random.Generator, n_accounts: int, days: int) -> list[_Handoff]:
    """About 40% of accounts go to a partner once; about a quarter of those come back 30–60 days later."""
    last = days - 1
    events = []
    for account in sorted(rng.choice(n_accounts, round(0.4 * n_accounts), replace=False).tolist()):
        day = int(rng.integers(EVAL_DAY - 15, last - 14 + 1))
        partner = PARTNERS[int(rng.integers(len(PARTNERS)))]
        events.append(_Handoff(account, day, partner))
        back = day + int(rng.integers(30, 61))
        if rng.random() < 0.25 and back <= last - MIN_DAYS_SHOWN:
            events.append(_Handoff(account, back, DEFAULT_PARTY))
    return events


def _party_by_day(handoffs: list[_Handoff], n_accounts: int, days: int) -> np.ndarray:
    """The managing party of each (day, account); a handoff day belongs to the party taking over."""
    party = np.full((days, n_accounts), DEFAULT_PARTY, dtype=object)
    for event in sorted(handoffs, key=lambda e: e.day):
        party[event.day :, event.account] = event.party
    return party


def _ownership(layout: _Layout, dates: pd.DatetimeIndex, handoffs: list[_Handoff]) -> pd.DataFrame:
    """Account-wide periods: the agency from the first day, then each new party until the next handoff."""
    rows = []
    for account in range(layout.n_accounts):
        periods = [(0, DEFAULT_PARTY)] + sorted((e.day, e.party) for e in handoffs if e.account == account)
        for (day, party), following in zip(periods, periods[1:] + [(None, None)]):
            end = dates[following[0]] if following[0] is not None else pd.NaT
            rows.append((layout.account_ids[account], "", party, dates[day], end))
    return normalise_ownership(pd.DataFrame(rows, columns=["account_id", "campaign_id", "party", "start", "end"]))


# ---------------------------------------------------------------------------------------------
# Calendar and the slowly moving market


def _holiday_date(year: int, month: int, day_or_weekday: int, nth: int | None) -> pd.Timestamp:
    if nth is None:
        return pd.Timestamp(year, month, day_or_weekday)
    days = pd.date_range(pd.Timestamp(year, month, 1), periods=pd.Timestamp(year, month, 1).days_in_month)
    return days[days.day_of_week == day_or_weekday][nth if nth < 0 else nth - 1]


def _holidays(rng: np.random.Generator, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """US holidays inside the panel, with their demand factor (0.35–0.75) and conversion-rate factor (0.8–1.0)."""
    found = [
        (name, _holiday_date(year, month, value, nth))
        for year in range(dates[0].year, dates[-1].year + 1)
        for name, month, value, nth in HOLIDAYS
    ]
    inside = sorted((day, name) for name, day in found if dates[0] <= day <= dates[-1])
    return pd.DataFrame(
        {
            "name": [name for _, name in inside],
            "day": np.array([dates.get_loc(day) for day, _ in inside], dtype=int),
            "demand": rng.uniform(0.35, 0.75, len(inside)),
            "cvr": rng.uniform(0.8, 1.0, len(inside)),
        }
    )


def _mean_reverting_walk(rng: np.random.Generator, shape: tuple[int, int], step: float, pull: float = 0.97) -> np.ndarray:
    """exp of an AR(1) walk per column: slow drift that stays within a few percent of 1."""
    shocks = rng.normal(0, step, shape)
    level = np.zeros(shape)
    for day in range(1, shape[0]):
        level[day] = pull * level[day - 1] + shocks[day]
    return np.exp(level)


def _base_panel(rng: np.random.Generator, layout: _Layout, dates: pd.DatetimeIndex, holidays: pd.DataFrame) -> dict[str, np.ndarray]:
    """Normal demand, price and conversion rate of each (day, campaign) before any event: weekday
    profile, holidays and slow drift."""
    days, n = len(dates), layout.n_campaigns
    dow = dates.day_of_week.to_numpy()
    account = layout.account_of
    weekday = 1 + rng.normal(0, 0.05, (layout.n_accounts, 7))
    weekday[:, 5:] *= rng.uniform(0.35, 1.1, (layout.n_accounts, 1))
    weekday /= weekday.mean(axis=1, keepdims=True)
    weekday_price = 1 + rng.normal(0, 0.03, (layout.n_accounts, 7))
    weekday_cvr = 1 + rng.normal(0, 0.06, (layout.n_accounts, 7))
    weekday_cvr[:, 5:] *= rng.uniform(0.8, 1.1, (layout.n_accounts, 1))
    holiday_demand, holiday_cvr = np.ones((days, 1)), np.ones((days, 1))
    holiday_demand[holidays["day"].to_numpy(), 0] = holidays["demand"].to_numpy()
    holiday_cvr[holidays["day"].to_numpy(), 0] = holidays["cvr"].to_numpy()
    return {
        "demand": layout.v0 * weekday[account][:, dow].T * holiday_demand * _mean_reverting_walk(rng, (days, n), 0.02),
        "price": layout.cpc0 * weekday_price[account][:, dow].T * _mean_reverting_walk(rng, (days, n), 0.01),
        "cvr": layout.cvr0 * weekday_cvr[account][:, dow].T * holiday_cvr * _mean_reverting_walk(rng, (days, n), 0.01),
    }


# ---------------------------------------------------------------------------------------------
# Benign events


def _ramp(days: int, demand_from: float, cvr_from: float) -> tuple[np.ndarray, np.ndarray]:
    """Demand and conversion-rate factors of a campaign's first ``days`` days back on air."""
    t = (np.arange(days) + 0.5) / days
    return demand_from + (1 - demand_from) * t, cvr_from + (1 - cvr_from) * t


def _edit(layout: _Layout, day: int, campaign: int, what: tuple[str, str], old: str, new: str, operation: str = "UPDATE") -> _Change:
    """A change of ``what`` (resource type, changed field) on ``campaign`` by the account's managing party."""
    return _Change(day, int(layout.account_of[campaign]), int(campaign), what[0], operation, what[1], old, new)


def _money(amount: float) -> str:
    return f"{amount:.2f}"


def _plan_benign(
    rng: np.random.Generator, layout: _Layout, days: int, changes: list[_Change], rows: list[tuple[str, int, int, float]]
) -> tuple[np.ndarray, _Multipliers]:
    """Launches, pauses, budget changes and shifts, learning periods, level shifts and improvements:
    the days each campaign runs, their multipliers, and their change-history rows and benign rows
    (kind, campaign, day, factor) appended to ``changes`` and ``rows``."""
    n, last = layout.n_campaigns, days - 1
    n_groups = len(layout.group_first)
    fx = _Multipliers.ones(days, n, n_groups)
    active = np.ones((days, n), dtype=bool)
    position = np.arange(n) - layout.first_campaign[layout.account_of]

    order = rng.permutation(n)
    can_launch = order[(position[order] > 0) & ~layout.shared[order]]
    launched = can_launch[: round(0.05 * n)]
    for c in launched:
        day, ramp_days = int(rng.integers(14, last - 21 + 1)), int(rng.integers(7, 15))
        active[:day, c] = False
        demand, cvr = _ramp(ramp_days, 0.15, 0.65)
        fx.demand[day : day + ramp_days, c] *= demand[: days - day]
        fx.cvr[day : day + ramp_days, c] *= cvr[: days - day]
        budget = float(layout.budget[layout.group_of[c]])
        changes.append(_edit(layout, day, c, STATUS_CHANGE, "", "ENABLED", "CREATE"))
        changes.append(_edit(layout, day, c, BUDGET_CHANGE, "", _money(budget), "CREATE"))
        rows.append(("launch", int(c), day, float(ramp_days)))

    paused = order[~np.isin(order, launched)][: round(0.05 * n)]
    for c in paused:
        day, length, ramp_days = int(rng.integers(14, last - 36 + 1)), int(rng.integers(7, 29)), int(rng.integers(7, 15))
        back = day + length
        active[day:back, c] = False
        demand, cvr = _ramp(ramp_days, 0.3, 0.75)
        fx.demand[back : back + ramp_days, c] *= demand[: days - back]
        fx.cvr[back : back + ramp_days, c] *= cvr[: days - back]
        changes.append(_edit(layout, day, c, STATUS_CHANGE, "ENABLED", "PAUSED"))
        changes.append(_edit(layout, back, c, STATUS_CHANGE, "PAUSED", "ENABLED"))
        rows.append(("pause", int(c), day, float(length)))

    def running_day(c: int, first: int, last_: int, length: int = 1) -> int | None:
        for _ in range(MAX_PLACEMENT_TRIES):
            day = int(rng.integers(first, last_ + 1))
            if active[day : day + length, c].all():
                return day
        return None

    # budget steps: (day, campaign, factor, kind); applied in day order so that "old" is the budget in force
    steps: list[tuple[int, int, float, str]] = []
    alone = rng.permutation(np.nonzero(~layout.shared)[0])
    for c in alone[: round(n / 3)]:
        day = running_day(int(c), 14, last)
        if day is not None:
            steps.append((day, int(c), float(rng.choice(BUDGET_STEPS)), "budget_change"))
    for a in rng.permutation(layout.n_accounts)[: max(1, round(layout.n_accounts / 5))]:
        campaigns = layout.campaigns_of(int(a))
        campaigns = campaigns[~layout.shared[campaigns]]
        capped = campaigns[layout.capped[campaigns]]
        pool = capped if len(capped) >= 2 else campaigns
        if len(pool) < 2:
            continue
        donor, receiver = (int(c) for c in rng.choice(pool, 2, replace=False))
        day = running_day(donor, 14, last)
        if day is None or not active[day, receiver]:
            continue
        moved = float(_nice(rng.uniform(0.2, 0.5) * layout.budget[layout.group_of[donor]]))
        steps.append((day, donor, -moved, "budget_shift"))
        steps.append((day, receiver, moved, "budget_shift"))
    budget = np.tile(layout.budget, (days, 1))
    for day, c, step, kind in sorted(steps, key=lambda s: (s[0], s[3], s[1])):
        g = layout.group_of[c]
        old = float(budget[day, g])
        new = float(_nice(old * step if kind == "budget_change" else max(old + step, 1.0)))
        if new == old:
            continue
        budget[day:, g] = new
        factor = new / old
        if not layout.capped[c]:
            fx.demand[day:, c] *= factor ** (1 / (1 + layout.elasticity[c]))  # bids follow the budget
        changes.append(_edit(layout, day, c, BUDGET_CHANGE, _money(old), _money(new)))
        rows.append((kind, c, day, factor))
    fx.budget = budget

    strategy_events = []
    for c in order[: round(0.08 * n)]:
        length = int(rng.integers(5, 11))
        day = running_day(int(c), 14, last - 3, length)
        if day is None:
            continue
        worse, settled = float(rng.uniform(1.2, 1.8)), float(rng.uniform(0.85, 1.0))
        fx.cvr[day : day + length, c] /= worse
        fx.cvr[day + length :, c] /= settled
        strategy_events.append((day, int(c)))
        rows.append(("learning_period", int(c), day, worse))
    current = dict(enumerate(layout.strategy.tolist()))
    for day, c in sorted(strategy_events):
        old, current[c] = current[c], NEXT_STRATEGY[current[c]]
        changes.append(_edit(layout, day, c, STRATEGY_CHANGE, old, current[c]))

    for kind, share in (("level_shift", 0.05), ("improvement", 0.05)):
        for c in rng.permutation(n)[: round(share * n)]:
            day = running_day(int(c), 14, last)
            if day is None:
                continue
            if kind == "level_shift":
                factor = float(rng.uniform(1.2, 1.4) if rng.random() < 0.5 else rng.uniform(0.6, 0.8))
                fx.demand[day:, c] *= factor**0.5  # a higher target cost per lead buys more volume
                target = float(np.round(layout.cpc0[c] / layout.cvr0[c] * rng.uniform(0.9, 1.2), 2))
                changes.append(_edit(layout, day, c, TARGET_CPA_CHANGE, _money(target), _money(target * factor)))
            else:
                factor = float(rng.uniform(0.6, 0.85))
                changes.append(_edit(layout, day, c, LANDING_PAGE_CHANGE, "", "landing page v2", "CREATE"))
            fx.cvr[day:, c] /= factor
            rows.append((kind, int(c), day, factor))
    fx.demand *= active
    return active, fx


# ---------------------------------------------------------------------------------------------
# Budgets and the auction


def _scale(demand_spend: np.ndarray, allowance: np.ndarray, layout: _Layout) -> np.ndarray:
    """(D, C) share of its demand spend each campaign may spend: its budget group's allowance over
    the group's demand spend, at most 1. A shared budget is divided in proportion to demand."""
    group_spend = np.add.reduceat(demand_spend, layout.group_first, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(group_spend > 0, np.minimum(1.0, allowance / group_spend), 1.0)
    return scale[:, layout.group_of]


def _expected_leads(layout: _Layout, conversions: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Expected credited leads from expected conversions under data-driven attribution: a split
    conversion keeps half its credit on average and gives the rest to another campaign of the
    account (picked at random; kept when that campaign is off)."""
    account = layout.account_of
    others = (layout.campaign_count - 1)[account]
    give = (layout.split_share / 2)[account]
    running = np.add.reduceat(active.astype(float), layout.first_campaign, axis=1)[:, account]
    total = np.add.reduceat(conversions, layout.first_campaign, axis=1)[:, account]
    leads = conversions * (1 - give * (running - 1) / others) + give / others * (total - conversions)
    return np.where(active, leads, 0.0)


def _deliver(layout: _Layout, demand: np.ndarray, price: np.ndarray, budget: np.ndarray) -> tuple[np.ndarray, ...]:
    """Noise-free demand spend, budget scale, clicks and spend of each (day, campaign)."""
    e = layout.elasticity
    with np.errstate(divide="ignore", invalid="ignore"):
        demand_spend = np.nan_to_num(demand * price * (demand / layout.v0) ** e)
    scale = _scale(demand_spend, budget, layout)
    clicks = demand * scale ** (1 / (1 + e))
    return demand_spend, scale, clicks, clicks * price * (clicks / layout.v0) ** e


def _normal(layout: _Layout, base: dict[str, np.ndarray], active: np.ndarray, fx: _Multipliers) -> _Normal:
    demand = base["demand"] * fx.demand * active
    price = base["price"] * fx.price
    cvr = np.minimum(base["cvr"] * fx.cvr, 1.0)
    demand_spend, scale, clicks, spend = _deliver(layout, demand, price, fx.budget)
    return _Normal(
        demand=demand,
        price=price,
        cvr=cvr,
        budget=fx.budget,
        demand_spend=demand_spend,
        scale=scale,
        clicks=clicks,
        spend=spend,
        leads=_expected_leads(layout, clicks * cvr, active),
    )


def _price_multiplier(target: np.ndarray, share: np.ndarray, room: np.ndarray, elasticity: float) -> np.ndarray:
    """The multiplier on a campaign's price that makes its cost per click ``target`` times normal
    once its budget group re-divides the budget. ``share``: the campaign's part of its group's
    demand spend; ``room``: the group's budget over that demand spend (≥ 1: not capped). An uncapped
    campaign pays ``target`` more at the same clicks; a capped one buys fewer, cheaper clicks, so
    its price must rise more for the same cost per click."""
    target, share, room = np.broadcast_arrays(np.asarray(target, float), np.asarray(share, float), np.asarray(room, float))
    k = elasticity / (1 + elasticity)
    before = np.minimum(1.0, room)

    def realised(log_p: np.ndarray) -> np.ndarray:
        p = np.exp(log_p)
        after = np.minimum(1.0, room / (1 + share * (p - 1)))
        return log_p + k * np.log(after / before)

    goal = np.log(target)
    lo = goal.copy()
    hi = (1 + elasticity) * goal + np.abs(np.log(room)) + np.abs(np.log(np.maximum(share, 1e-9))) + 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        below = realised(mid) < goal
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.exp((lo + hi) / 2)


# ---------------------------------------------------------------------------------------------
# Incidents


def _fits(busy: list[tuple[int, int]], onset: int, end: int) -> bool:
    return all(onset > e + SEPARATION_DAYS or end < s - SEPARATION_DAYS for s, e in busy)


def _creep_days(rate: float) -> int:
    """Days from onset until (1 + rate)^t first reaches 3 (the creep's last day)."""
    return math.ceil(math.log(3) / math.log1p(rate))


def _plan_incidents(rng: np.random.Generator, layout: _Layout, handoffs: list[_Handoff], active: np.ndarray, days: int) -> list[_Incident]:
    """Place every incident: from ``EVAL_DAY`` to ``MIN_DAYS_SHOWN`` days before the end, on
    campaigns that run from ``BASE_DAYS`` before onset to its end, at least ``SEPARATION_DAYS``
    clean days away from the campaign's other incidents."""
    last = days - 1
    latest_onset = last - MIN_DAYS_SHOWN
    per_kind = max(2, round(INCIDENTS_PER_KIND * layout.n_accounts / REFERENCE_ACCOUNTS))
    busy: list[list[tuple[int, int]]] = [[] for _ in range(layout.n_campaigns)]
    planned: list[_Incident] = []

    def free(campaigns: np.ndarray, onset: int, end: int) -> np.ndarray:
        running = active[onset - BASE_DAYS : end + 1, campaigns].all(axis=0)
        return campaigns[running & np.array([_fits(busy[c], onset, end) for c in campaigns], dtype=bool)]

    def place(item: _Incident) -> None:
        planned.append(item)
        for c in item.campaigns:
            busy[c].append((item.onset, item.end))

    factors = rng.permutation(np.repeat(SPIKE_FACTORS, per_kind))
    mechanisms = rng.choice([m for m, _ in SPIKE_MECHANISMS], len(factors), p=[p for _, p in SPIKE_MECHANISMS])
    spikes = [(float(f), str(m), int(rng.integers(4, 22))) for f, m in zip(factors, mechanisms)]

    eligible = [h for h in handoffs if h.day + HANDOFF_SPIKE_DAYS >= EVAL_DAY and h.day <= latest_onset]
    wanted = round(HANDOFF_SPIKE_SHARE * len(spikes))
    tries = 0
    while eligible and wanted and tries < MAX_PLACEMENT_TRIES:
        tries += 1
        event = eligible[int(rng.integers(len(eligible)))]
        factor, mechanism, duration = spikes[-1]
        onset = max(event.day + int(rng.integers(0, HANDOFF_SPIKE_DAYS + 1)), EVAL_DAY)
        end = min(onset + duration - 1, last)
        if onset > latest_onset:
            continue
        candidates = free(layout.campaigns_of(event.account), onset, end)
        if len(candidates):
            place(_Incident("spike", factor, mechanism, event.account, [int(rng.choice(candidates))], onset, end))
            spikes.pop()
            wanted -= 1

    specs: list[tuple[str, float, str, int]] = [("creep", float(rng.uniform(0.03, 0.06)), "", 0) for _ in range(per_kind)]
    specs += [("tracking_loss", float(rng.uniform(0.0, 0.2)), "", int(rng.integers(3, 15))) for _ in range(per_kind)]
    specs += [("spike", f, m, d) for f, m, d in spikes]
    specs += [("spend_runaway", float(rng.uniform(3, 5)), "", int(rng.integers(2, 9))) for _ in range(per_kind)]
    alone = np.nonzero(~layout.shared)[0]
    for cls, magnitude, mechanism, duration in specs:
        if cls == "creep":
            duration = _creep_days(magnitude) + 1
            mechanism = "cpc" if rng.random() < 0.5 else "cvr"
        for _ in range(MAX_PLACEMENT_TRIES):
            onset = int(rng.integers(EVAL_DAY, latest_onset + 1))
            end = min(onset + duration - 1, last)
            if cls == "tracking_loss":
                a = int(rng.integers(layout.n_accounts))
                candidates = free(layout.campaigns_of(a), onset, end)
                if len(candidates) < 2:
                    continue
                k = len(candidates) if rng.random() < 0.4 or len(candidates) == 2 else int(rng.integers(2, len(candidates)))
                hit = np.sort(rng.choice(candidates, k, replace=False))
                on_air = layout.campaigns_of(a)[active[onset : end + 1, layout.campaigns_of(a)].any(axis=0)]
                place(_Incident(cls, magnitude, "", a, hit.tolist(), onset, end, account_wide=set(on_air) <= set(hit.tolist())))
                break
            pool = alone if cls == "spend_runaway" else np.arange(layout.n_campaigns)
            c = int(rng.choice(pool))
            if len(free(np.array([c]), onset, end)):
                cpl_factor = float(rng.uniform(1.2, 1.5)) if cls == "spend_runaway" else 1.0
                place(_Incident(cls, magnitude, mechanism, int(layout.account_of[c]), [c], onset, end, cpl_factor=cpl_factor))
                break
    return sorted(planned, key=lambda p: (p.onset, p.account, p.campaigns[0]))


def _incident_effects(
    rng: np.random.Generator, layout: _Layout, normal: _Normal, incidents: list[_Incident], changes: list[_Change], days: int
) -> _Multipliers:
    """The incidents' multipliers on the panel, and the changes behind spend runaways."""
    fx = _Multipliers.ones(days, layout.n_campaigns, len(layout.group_first))
    group_spend = np.add.reduceat(normal.demand_spend, layout.group_first, axis=1)

    def price_for(c: int, span: slice, target: np.ndarray) -> np.ndarray:
        g = layout.group_of[c]
        total = np.maximum(group_spend[span, g], 1e-12)
        return _price_multiplier(target, normal.demand_spend[span, c] / total, normal.budget[span, g] / total, float(layout.elasticity[c]))

    for item in incidents:
        span = slice(item.onset, item.end + 1)
        c = item.campaigns[0]
        if item.cls == "spike":
            cpc_part = {"cpc": item.magnitude, "cvr": 1.0, "both": item.magnitude**0.5}[item.mechanism]
            if cpc_part > 1:
                fx.price[span, c] *= price_for(c, span, np.full(item.end - item.onset + 1, cpc_part))
            fx.cvr[span, c] /= item.magnitude / cpc_part
        elif item.cls == "creep":
            growth = (1 + item.magnitude) ** np.arange(item.end - item.onset + 1)
            if item.mechanism == "cpc":
                fx.price[span, c] *= price_for(c, span, growth)
            else:
                fx.cvr[span, c] /= growth
        elif item.cls == "tracking_loss":
            fx.keep[span, item.campaigns] = item.magnitude
        else:
            _runaway(rng, layout, normal, item, fx, changes, _strategy_on(layout, changes, c, item.onset), days)
    return fx


def _strategy_on(layout: _Layout, changes: list[_Change], campaign: int, day: int) -> str:
    """The bidding strategy of ``campaign`` on ``day``, after the strategy changes made so far."""
    current = str(layout.strategy[campaign])
    made = [x for x in changes if x.campaign == campaign and x.changed_fields == STRATEGY_CHANGE[1] and x.day <= day]
    for change in sorted(made, key=lambda x: x.day):
        current = change.new_value
    return current


def _runaway(
    rng: np.random.Generator, layout: _Layout, normal: _Normal, item: _Incident, fx: _Multipliers,
    changes: list[_Change], strategy: str, days: int,
) -> None:
    """A campaign buying G× its normal clicks at a price × x and conversion rate × y, chosen so that
    spend is ``magnitude`` × normal and cost per lead ``cpl_factor`` × normal (G^(1+e)·x = R and
    G^e·x / y = K). Behind it: a budget typo (×10) on a campaign that bids to spend its budget, or
    a target-CPA campaign switched to maximise conversions with its budget raised to match."""
    c, span = item.campaigns[0], slice(item.onset, item.end + 1)
    g = layout.group_of[c]
    e = float(layout.elasticity[c])
    y = float(rng.uniform(0.8, 1.0))
    more = item.magnitude / (item.cpl_factor * y)
    with np.errstate(divide="ignore", invalid="ignore"):
        bought = np.nan_to_num(normal.clicks[span, c] / normal.demand[span, c], nan=1.0)
    fx.demand[span, c] *= more * bought
    fx.price[span, c] *= item.magnitude / more ** (1 + e)
    fx.cvr[span, c] *= y
    old = float(normal.budget[item.onset, g])
    loose = strategy == "TARGET_CPA"
    new = float(_nice(old * (item.magnitude * rng.uniform(1.5, 2.0) if loose else 10.0)))
    fx.budget[span, g] *= new / old
    after = item.end + 1
    changes.append(_edit(layout, item.onset, c, BUDGET_CHANGE, _money(old), _money(new)))
    if loose:
        changes.append(_edit(layout, item.onset, c, STRATEGY_CHANGE, "TARGET_CPA", "MAXIMIZE_CONVERSIONS"))
    if after < days:
        changes.append(_edit(layout, after, c, BUDGET_CHANGE, _money(new), _money(old)))
        if loose:
            changes.append(_edit(layout, after, c, STRATEGY_CHANGE, "MAXIMIZE_CONVERSIONS", "TARGET_CPA"))


# ---------------------------------------------------------------------------------------------
# The observed panel


def _allowance(rng: np.random.Generator, dates: pd.DatetimeIndex, budget: np.ndarray) -> np.ndarray:
    """What Google lets each budget group spend on a day: about the budget, some days up to 2×,
    and at most ``DAYS_PER_MONTH`` budgets in a calendar month."""
    factor = np.clip(rng.lognormal(0, 0.08, budget.shape), 0.85, None)
    over = rng.random(budget.shape) < 0.08
    factor = np.minimum(np.where(over, rng.uniform(1.2, OVERDELIVERY, budget.shape), factor), OVERDELIVERY)
    _, month = np.unique((dates.year * 12 + dates.month).to_numpy(), return_inverse=True)
    month_total = np.stack([factor[month == m].sum(axis=0) for m in range(month.max() + 1)])
    return budget * factor / np.maximum(month_total[month] / DAYS_PER_MONTH, 1.0)


def _shared_credit(
    rng: np.random.Generator, layout: _Layout, clicks: np.ndarray, active: np.ndarray, split: np.ndarray, given: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where split conversions' shared credit goes: each conversion to one sibling, drawn in
    proportion to the siblings' clicks that day (a campaign is on a converting path as often as it
    is clicked), uniformly over the siblings on air when none had a click. Returns the credit each
    (day, campaign) receives and how many conversions it came in; credit with no sibling on air
    stays with the campaign that gave it."""
    days, n = clicks.shape
    received = np.zeros((days, n))
    pieces = np.zeros((days, n), dtype=np.int64)
    kept = np.zeros((days, n))
    for d, c in zip(*np.nonzero(split > 0)):
        a = layout.account_of[c]
        siblings = np.arange(layout.first_campaign[a], layout.first_campaign[a] + layout.campaign_count[a])
        siblings = siblings[(siblings != c) & active[d, siblings]]
        if not siblings.size:
            kept[d, c] = given[d, c]
            continue
        weights = clicks[d, siblings].astype(float)
        weights = weights / weights.sum() if weights.sum() > 0 else np.full(siblings.size, 1.0 / siblings.size)
        counts = rng.multinomial(split[d, c], weights)
        received[d, siblings] += counts * (given[d, c] / split[d, c])
        pieces[d, siblings] += counts
    return received, pieces, kept


def _simulate(
    rng: np.random.Generator, layout: _Layout, dates: pd.DatetimeIndex, active: np.ndarray, normal: _Normal, fx: _Multipliers
) -> dict:
    """The observed panel: clicks bought of negative-binomial demand under each day's allowance,
    spend at the day's cost per click, conversions credited by data-driven attribution and their
    reporting lags, and the last day as pulled mid-afternoon."""
    days, n = active.shape
    e, account = layout.elasticity, layout.account_of
    budget = normal.budget * fx.budget
    allowance = _allowance(rng, dates, budget)

    rate = normal.demand * fx.demand * rng.gamma(layout.dispersion, 1 / layout.dispersion, (days, n))
    demand = rng.poisson(rate)
    price = normal.price * fx.price * rng.lognormal(-layout.sigma_cpc**2 / 2, layout.sigma_cpc, (days, n))
    demand_spend = demand * price * (demand / layout.v0) ** e
    scale = _scale(demand_spend, allowance, layout)
    clicks = np.minimum(np.floor(demand * scale ** (1 / (1 + e)) + rng.random((days, n))), demand).astype(np.int64)
    variance = np.log1p(CLICK_PRICE_VARIANCE / np.maximum(clicks, 1))
    spend = clicks * price * (clicks / layout.v0) ** e * rng.lognormal(-variance / 2, np.sqrt(variance))
    group_spend = np.add.reduceat(spend, layout.group_first, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        over = np.where(group_spend > 0, np.minimum(1.0, OVERDELIVERY * budget / group_spend), 1.0)
    spend = np.floor(spend * over[:, layout.group_of] * 100) / 100

    cvr = np.minimum(normal.cvr * fx.cvr * rng.lognormal(-layout.sigma_cvr**2 / 2, layout.sigma_cvr, (days, n)), 1.0)
    conversions = rng.binomial(rng.binomial(clicks, cvr), fx.keep)
    split = rng.binomial(conversions, layout.split_share[account])
    thirds = rng.binomial(split, 1 / 3)
    halves = rng.binomial(split - thirds, 0.5)
    given = (2 / 3) * thirds + 0.5 * halves + (1 / 3) * (split - thirds - halves)
    received, pieces, kept = _shared_credit(rng, layout, clicks, active, split, given)
    given = given - kept
    # credit from others' conversions needs this campaign's clicks on the path: it moves with the
    # clicks an incident leaves it, its conversion rate and its tracking
    incident_clicks = _deliver(layout, normal.demand * fx.demand, normal.price * fx.price, budget)[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        assists = np.where(normal.clicks > 0, incident_clicks / normal.clicks, 1.0) * fx.cvr * fx.keep
    leads = np.maximum(conversions - given + received * assists, 0.0)

    units = conversions + pieces
    lag = layout.lag[account]
    tail = np.cumsum(lag[:, ::-1], axis=1)[:, ::-1]
    counts = np.zeros((days, n, MAX_LAG_DAYS + 1), dtype=np.int64)
    remaining = units.copy()
    for k in range(MAX_LAG_DAYS):
        counts[..., k] = rng.binomial(remaining, np.minimum(lag[:, k] / tail[:, k], 1.0))
        remaining -= counts[..., k]
    counts[..., MAX_LAG_DAYS] = remaining
    reported = np.where(units[..., None] > 0, np.cumsum(counts, axis=2) / np.maximum(units, 1)[..., None], 1.0)

    impressions = clicks + rng.poisson(np.maximum(clicks, 0.5) * (1 / layout.ctr - 1)) * active
    share = float(rng.uniform(0.5, 0.9))
    partial_clicks = rng.binomial(clicks[-1], share)
    partial = {
        "share": share,
        "clicks": partial_clicks,
        "impressions": partial_clicks + rng.binomial(impressions[-1] - clicks[-1], share),
        "spend": np.floor(np.where(clicks[-1] > 0, spend[-1] * partial_clicks / np.maximum(clicks[-1], 1), 0.0) * 100) / 100,
        "leads": leads[-1] * reported[-1, :, 0] * share,
    }
    return {
        "spend": spend,
        "clicks": clicks,
        "impressions": impressions.astype(np.int64),
        "leads": leads,
        "reported": reported,
        "budget": budget,
        "allowance": allowance,
        "partial": partial,
    }


def _metrics(world: _World, as_of: int, *, partial_last_day: bool) -> pd.DataFrame:
    """Rows of the days up to ``as_of`` (a day index, may be past the panel) on which a campaign
    runs, with leads as reported by the end of ``as_of``."""
    layout, last = world.layout, len(world.dates) - 1
    shown = min(as_of, last) + 1
    if shown <= 0:
        return empty_metrics()
    age = as_of - np.arange(shown)
    fraction = world.reported[np.arange(shown)[:, None], np.arange(layout.n_campaigns), np.minimum(age, MAX_LAG_DAYS)[:, None]]
    spend, clicks = world.spend[:shown].copy(), world.clicks[:shown].copy()
    impressions, leads = world.impressions[:shown].copy(), world.leads[:shown] * fraction
    if partial_last_day and as_of == last:
        for name, values in (("spend", spend), ("clicks", clicks), ("impressions", impressions), ("leads", leads)):
            values[last] = world.partial[name]
    day, c = np.nonzero(world.active[:shown])
    a = layout.account_of[c]
    return normalise_metrics(
        pd.DataFrame(
            {
                "date": world.dates[day],
                "hour": DAILY,
                "account_id": layout.account_ids[a],
                "account_name": layout.account_names[a],
                "campaign_id": layout.campaign_ids[c],
                "campaign_name": layout.campaign_names[c],
                "currency": "USD",
                "spend": spend[day, c],
                "impressions": impressions[day, c],
                "clicks": clicks[day, c],
                "leads": np.round(leads[day, c], 2),
            }
        )
    )


# ---------------------------------------------------------------------------------------------
# Change history


def _routine_changes(rng: np.random.Generator, layout: _Layout, handoffs: list[_Handoff], days: int) -> list[_Change]:
    """About one keyword or bid change per account a week by its managing party; on each handoff
    day the access change, and on the 1–4 days after it 2–5 changes by the party taking over."""
    n = int(rng.poisson(layout.n_accounts * days / 7))
    accounts = rng.integers(0, layout.n_accounts, n)
    day = rng.integers(0, days, n)
    out = [_routine(rng, layout, int(a), int(d)) for a, d in zip(accounts, day)]
    for event in handoffs:
        granted = event.party != DEFAULT_PARTY
        out.append(
            _Change(
                event.day, event.account, -1, ACCESS_CHANGE[0], "CREATE" if granted else "REMOVE", ACCESS_CHANGE[1],
                "" if granted else "ADMIN", "ADMIN" if granted else "", party=DEFAULT_PARTY,
            )
        )
        for _ in range(int(rng.integers(2, 6))):
            follow = event.day + int(rng.integers(1, 5))
            if follow < days:
                out.append(_routine(rng, layout, event.account, follow, party=event.party))
    return out


def _routine(rng: np.random.Generator, layout: _Layout, account: int, day: int, party: str | None = None) -> _Change:
    c = int(rng.choice(layout.campaigns_of(account)))
    resource, operation, changed, value = ROUTINE_CHANGES[int(rng.integers(len(ROUTINE_CHANGES)))]
    if value == "keyword":
        old, new = "", f"{TRADES[account % len(TRADES)].lower()} {rng.choice(KEYWORDS)}"
    elif value == "match":
        old, new = (str(m) for m in rng.choice(MATCH_TYPES, 2, replace=False))
    elif value == "bid":
        bid = float(layout.cpc0[c] * rng.uniform(0.8, 1.5))
        old, new = _money(bid), _money(bid * rng.uniform(0.8, 1.25))
    else:
        old, new = "", str(rng.choice(NEGATIVES))
    return _Change(day, account, c, resource, operation, changed, old, new, party=party)


def _described(change: _Change) -> str:
    """The changed field with its old and new values as the Google Ads connector writes them
    (``campaign_budget.amount: 150.00 -> 300.00``), or the field alone."""
    if not (change.old_value and change.new_value):
        return change.changed_fields
    return f"{change.changed_fields.removesuffix('_micros')}: {change.old_value} -> {change.new_value}"


def _change_frame(
    rng: np.random.Generator, layout: _Layout, dates: pd.DatetimeIndex, changes: list[_Change], party: np.ndarray
) -> pd.DataFrame:
    """The change rows with timestamps (08:00–19:00) and the email of a user of the party that made them."""
    who = [c.party or party[c.day, c.account] for c in changes]
    pick = rng.integers(0, 12, len(changes))  # 12: a multiple of every party's number of users
    minutes = rng.integers(8 * 60, 19 * 60, len(changes))
    frame = pd.DataFrame(
        {
            "changed_at": dates[[c.day for c in changes]] + pd.to_timedelta(minutes, unit="min"),
            "account_id": layout.account_ids[[c.account for c in changes]],
            "campaign_id": [layout.campaign_ids[c.campaign] if c.campaign >= 0 else "" for c in changes],
            "user_email": [f"{USERS[p][k % len(USERS[p])]}@{PARTIES[p]['domains'][0]}" for p, k in zip(who, pick)],
            "client_type": CLIENT_TYPE,
            "resource_type": [c.resource_type for c in changes],
            "operation": [c.operation for c in changes],
            "changed_fields": [_described(c) for c in changes],
            "old_value": [c.old_value for c in changes],
            "new_value": [c.new_value for c in changes],
        }
    )
    frame["changed_at"] = frame["changed_at"].astype("datetime64[ns]")
    return frame.sort_values("changed_at", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Ground truth and benign events


def _truth(
    layout: _Layout, dates: pd.DatetimeIndex, incidents: list[_Incident], handoffs: list[_Handoff], party: np.ndarray,
    spend: np.ndarray, leads: np.ndarray, normal: _Normal,
) -> pd.DataFrame:
    """One row per incident; ``true_excess`` is the spend above what its final leads cost at the
    normal cost per lead of each day, and ``base_leads_per_day`` the normal leads a day over the
    ``BASE_DAYS`` days before onset, both summed over the campaigns it hits."""
    excess = spend - leads * np.nan_to_num(normal.cpl)
    rows = []
    for i, item in enumerate(incidents, start=1):
        span = slice(item.onset, item.end + 1)
        hit = item.campaigns
        doubles = item.onset + math.ceil(math.log(2) / math.log1p(item.magnitude)) if item.cls == "creep" else None
        rows.append(
            {
                "incident_id": i,
                "cls": item.cls,
                "magnitude": item.magnitude,
                "mechanism": item.mechanism,
                "scope": "account" if item.account_wide else "campaign",
                "account_id": layout.account_ids[item.account],
                "campaign_id": "" if item.account_wide else layout.campaign_ids[hit[0]],
                "onset": dates[item.onset],
                "end": dates[item.end],
                "party": party[item.onset, item.account],
                "true_excess": float(excess[span, hit].sum()),
                "base_leads_per_day": float(normal.leads[item.onset - BASE_DAYS : item.onset, hit].sum(axis=1).mean()),
                "doubles_on": dates[doubles] if doubles is not None and doubles < len(dates) else pd.NaT,
                "after_handoff": any(e.account == item.account and 0 <= item.onset - e.day <= HANDOFF_WINDOW_DAYS for e in handoffs),
                "campaigns": tuple(layout.campaign_ids[hit].tolist()),
            }
        )
    truth = pd.DataFrame(rows, columns=TRUTH)
    truth["doubles_on"] = pd.to_datetime(truth["doubles_on"])
    return truth


def _benign_frame(
    layout: _Layout, dates: pd.DatetimeIndex, rows: list[tuple[str, int, int, float]], holidays: pd.DataFrame
) -> pd.DataFrame:
    """Benign events, one row each. ``factor``: the budget factor (budget_change, budget_shift), the
    cost-per-lead factor (learning_period: during learning; level_shift, improvement: after), the
    days paused (pause), the days of ramp-up (launch), the demand factor of the day (holiday)."""
    campaigns = np.array([r[1] for r in rows], dtype=int)
    events = pd.DataFrame(
        {
            "kind": [r[0] for r in rows],
            "account_id": layout.account_ids[layout.account_of[campaigns]],
            "campaign_id": layout.campaign_ids[campaigns],
            "day": dates[[r[2] for r in rows]],
            "factor": np.array([r[3] for r in rows], dtype=float),
        }
    )
    days = pd.DataFrame(
        {
            "kind": "holiday",
            "account_id": "",
            "campaign_id": "",
            "day": dates[holidays["day"].to_numpy()],
            "factor": holidays["demand"].to_numpy(),
        }
    )
    return pd.concat([events, days], ignore_index=True)[BENIGN_COLUMNS].sort_values(["day", "kind"], kind="stable").reset_index(drop=True)
