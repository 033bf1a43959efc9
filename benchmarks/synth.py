"""A synthetic paid-media portfolio with known incidents, for the detection-quality benchmark.

``generate(seed)`` builds about 36 accounts and 300 campaigns of daily metrics in the canonical
schema, with what makes real data hard: campaigns from 0.2 to 20 leads a day, weekly and holiday
seasonality, slow drift in cost per click and conversion rate, daily noise, budget changes and
improvements that are not incidents, and partner handoffs with the change history around them.

Into it go incidents whose every detail is known: cost-per-lead spikes (1.5× to 10×, through cost
per click, conversion rate or both; many right after a handoff), broken lead tracking across an
account, slow cost-per-lead creeps and spend runaways. ``Portfolio.truth`` lists them with their
onset, last day, managing party and the excess cost they really caused; ``Portfolio.benign`` lists
the events a detector should stay silent on.

Everything is drawn from ``numpy.random.default_rng(seed)`` in vectorised NumPy: the same seed gives
the same portfolio, and 300 campaigns × 300 days take a fraction of a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomaly.schema import DAILY, normalise_changes, normalise_metrics, normalise_ownership

PARTIES: dict[str, dict] = {
    "agency": {"name": "Northwind Digital", "domains": ["northwind-digital.example"]},
    "beacon": {"name": "Beacon Reach", "domains": ["beaconreach.example"]},
    "summit": {"name": "Summit Search Partners", "domains": ["summitsearch.example"]},
}
DEFAULT_PARTY = "agency"
PARTNERS = ("beacon", "summit")
USERS: dict[str, tuple[str, ...]] = {
    "agency": ("ana", "tom.reed", "li.wei"),
    "beacon": ("jo", "dana.kim"),
    "summit": ("sam", "priya.n"),
}
CAMPAIGN_KINDS = (
    "Generic - Leads",
    "Brand",
    "Competitor",
    "Remarketing",
    "Local - Services",
    "Performance Max",
    "Display - Prospecting",
)
CHANGE_KINDS = (
    ("CAMPAIGN", "campaign.bidding_strategy_type"),
    ("CAMPAIGN", "campaign.target_cpa.target_cpa_micros"),
    ("AD_GROUP", "ad_group.cpc_bid_micros"),
    ("AD_GROUP", "ad_group_criterion.keyword.match_type"),
    ("CAMPAIGN_BUDGET", "campaign_budget.amount_micros"),
)

WARM_UP_DAYS = 75  # no incident before: baselines need history
SEPARATION_DAYS = 14  # clean days between two incidents of one account (and around benign events)
MIN_DAYS_SHOWN = 7  # every incident starts at least this many days before the panel ends
HANDOFF_WINDOW_DAYS = 14  # an incident this many days or fewer after a handoff is "after handoff"
SPIKE_FACTORS = (1.5, 2.0, 3.0, 5.0, 10.0)
SPIKES_PER_FACTOR = 12
SPIKE_MECHANISMS = (("cpc", 0.3), ("cvr", 0.3), ("both", 0.4))
HANDOFF_SPIKE_SHARE = 0.4
INCIDENT_COUNTS = {"tracking_loss": 10, "creep": 12, "spend_runaway": 12}
MAX_PLACEMENT_TRIES = 500

TRUTH_COLUMNS = [
    "incident_id", "cls", "magnitude", "mechanism", "scope", "account_id", "campaign_id", "onset", "end",
    "party", "true_excess", "base_leads_per_day", "doubles_on", "after_handoff",
]
BENIGN_COLUMNS = ["kind", "account_id", "campaign_id", "day", "factor"]


@dataclass(frozen=True, eq=False)
class Portfolio:
    """Canonical metrics, changes and ownership periods, with the injected incidents as ground truth."""

    metrics: pd.DataFrame
    changes: pd.DataFrame
    ownership: pd.DataFrame
    parties: dict[str, dict]
    default_party: str
    truth: pd.DataFrame
    benign: pd.DataFrame
    eval_start: pd.Timestamp
    end: pd.Timestamp

    @property
    def n_campaigns(self) -> int:
        return self.metrics[["account_id", "campaign_id"]].drop_duplicates().shape[0]

    @property
    def campaign_days(self) -> int:
        """Campaign-days from ``eval_start`` to ``end``: the denominator of false-alert rates."""
        return self.n_campaigns * ((self.end - self.eval_start).days + 1)


@dataclass(frozen=True)
class _Layout:
    """Accounts and campaigns with their normal economics; campaigns of an account are contiguous."""

    account_ids: np.ndarray  # (A,) 10-digit strings
    account_of: np.ndarray  # (C,) account index of each campaign
    first_campaign: np.ndarray  # (A,) index of each account's first campaign
    campaign_count: np.ndarray  # (A,)
    campaign_ids: np.ndarray  # (C,)
    campaign_names: np.ndarray  # (C,)
    cpc: np.ndarray  # (C,) normal cost per click
    cvr: np.ndarray  # (C,) normal conversion rate (leads per click)
    ctr: np.ndarray  # (C,)
    daily_spend: np.ndarray  # (C,) normal spend per day

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
class _Planned:
    """One incident placed on the panel (day and campaign indices); ``campaign`` -1 = whole account."""

    cls: str
    magnitude: float
    mechanism: str
    account: int
    campaign: int
    onset: int
    end: int
    cpl_factor: float = 1.0  # spend runaway: cost-per-lead multiplier through cost per click


@dataclass(frozen=True)
class _Effects:
    """Multipliers on the normal (day × campaign) panel: benign ones and incident ones apart."""

    budget: np.ndarray  # spend, benign
    improvement: np.ndarray  # conversion rate, benign
    spend: np.ndarray  # incident
    cpc: np.ndarray  # incident
    cvr: np.ndarray  # incident
    tracking_lost: np.ndarray  # incident: leads not recorded (bool)


def generate(seed: int, *, n_accounts: int = 36, days: int = 300, start: str = "2025-09-01") -> Portfolio:
    """A portfolio of ``n_accounts`` accounts over ``days`` days from ``start``, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=days, freq="D")
    eval_day, last = WARM_UP_DAYS, days - 1
    layout = _layout(rng, n_accounts)
    handoffs = _handoffs(rng, n_accounts, eval_day, last)
    party = _party_by_day(handoffs, n_accounts, days)
    planned = _plan_incidents(rng, layout, handoffs, eval_day, last)
    benign = _plan_benign(rng, layout, planned, eval_day, last)
    holidays = _holidays(rng, dates)
    effects = _effects(layout, days, planned, benign)
    spend, clicks, leads, expected_spend, normal_cpl = _simulate(rng, layout, dates, holidays, effects)
    return Portfolio(
        metrics=_metrics_frame(layout, dates, spend, clicks, leads),
        changes=_changes(rng, layout, dates, handoffs, party),
        ownership=_ownership(layout, dates, handoffs),
        parties=PARTIES,
        default_party=DEFAULT_PARTY,
        truth=_truth(layout, dates, planned, handoffs, party, spend, leads, expected_spend, normal_cpl),
        benign=_benign_frame(layout, dates, benign, holidays),
        eval_start=dates[eval_day],
        end=dates[last],
    )


# ---------------------------------------------------------------------------------------------
# Accounts, campaigns and who manages them


def _layout(rng: np.random.Generator, n_accounts: int) -> _Layout:
    counts = rng.integers(4, 15, n_accounts)
    account_of = np.repeat(np.arange(n_accounts), counts)
    n_campaigns = len(account_of)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    account_cpl = np.exp(rng.uniform(np.log(30), np.log(300), n_accounts))
    cpl = account_cpl[account_of] * rng.lognormal(0.0, 0.35, n_campaigns)
    leads_per_day = np.exp(rng.uniform(np.log(0.2), np.log(20), n_campaigns))
    clicks_per_lead = rng.uniform(10, 50, n_campaigns)
    position = np.arange(n_campaigns) - first[account_of]
    kinds = np.array(CAMPAIGN_KINDS, dtype=object)[position % len(CAMPAIGN_KINDS)]
    round_ = position // len(CAMPAIGN_KINDS)
    names = np.where(round_ == 0, kinds, kinds + " " + (round_ + 1).astype(str))
    return _Layout(
        account_ids=(1_000_000_000 + rng.choice(9 * 10**9, n_accounts, replace=False)).astype(str),
        account_of=account_of,
        first_campaign=first,
        campaign_count=counts,
        campaign_ids=(10_000_000 + rng.choice(90_000_000, n_campaigns, replace=False)).astype(str),
        campaign_names=names.astype(str),
        cpc=cpl / clicks_per_lead,
        cvr=1.0 / clicks_per_lead,
        ctr=rng.uniform(0.02, 0.08, n_campaigns),
        daily_spend=leads_per_day * cpl,
    )


def _handoffs(rng: np.random.Generator, n_accounts: int, eval_day: int, last: int) -> list[_Handoff]:
    """About 40% of accounts go to a partner once; about one in five of those comes back 30–60 days later."""
    handed = rng.permutation(n_accounts)[: round(0.4 * n_accounts)]
    returning = set(rng.permutation(handed)[: round(0.2 * len(handed))].tolist())
    events = []
    for account in sorted(handed.tolist()):
        day = int(rng.integers(eval_day, last - 30 + 1))
        events.append(_Handoff(account, day, str(rng.choice(PARTNERS))))
        back = day + int(rng.integers(30, 61))
        if account in returning and back <= last:
            events.append(_Handoff(account, back, DEFAULT_PARTY))
    return events


def _party_by_day(handoffs: list[_Handoff], n_accounts: int, days: int) -> np.ndarray:
    """The managing party of each (day, account)."""
    party = np.full((days, n_accounts), DEFAULT_PARTY, dtype=object)
    for event in sorted(handoffs, key=lambda e: e.day):
        party[event.day :, event.account] = event.party
    return party


def _ownership(layout: _Layout, dates: pd.DatetimeIndex, handoffs: list[_Handoff]) -> pd.DataFrame:
    """Account-wide periods: the agency from the first day, then each handoff until the next."""
    rows = []
    for account in range(layout.n_accounts):
        starts = [(0, DEFAULT_PARTY)] + sorted((e.day, e.party) for e in handoffs if e.account == account)
        for i, (day, party) in enumerate(starts):
            end = dates[starts[i + 1][0]] if i + 1 < len(starts) else pd.NaT
            rows.append((layout.account_ids[account], "", party, dates[day], end))
    return normalise_ownership(pd.DataFrame(rows, columns=["account_id", "campaign_id", "party", "start", "end"]))


# ---------------------------------------------------------------------------------------------
# Where incidents and benign events go


def _fits(busy: list[tuple[int, int]], onset: int, end: int) -> bool:
    return all(onset > e + SEPARATION_DAYS or end < s - SEPARATION_DAYS for s, e in busy)


def _spike_specs(rng: np.random.Generator) -> list[tuple[float, str]]:
    factors = rng.permutation(np.repeat(SPIKE_FACTORS, SPIKES_PER_FACTOR))
    names = [name for name, _ in SPIKE_MECHANISMS]
    mechanisms = rng.choice(names, len(factors), p=[p for _, p in SPIKE_MECHANISMS])
    return [(float(f), str(m)) for f, m in zip(factors, mechanisms)]


def _creep_days(rate: float) -> int:
    """Days from onset until (1 + rate)^t first reaches 3 (the creep's last day)."""
    return math.ceil(math.log(3) / math.log1p(rate))


def _plan_incidents(rng: np.random.Generator, layout: _Layout, handoffs: list[_Handoff], eval_day: int, last: int) -> list[_Planned]:
    """Place every incident: distinct campaigns, none before ``eval_day``, and at least
    ``SEPARATION_DAYS`` clean days between two incidents of one account."""
    busy: dict[int, list[tuple[int, int]]] = {a: [] for a in range(layout.n_accounts)}
    used = np.zeros(layout.n_campaigns, dtype=bool)
    latest_onset = last - MIN_DAYS_SHOWN
    spikes = _spike_specs(rng)
    planned: list[_Planned] = []

    def place(item: _Planned) -> None:
        planned.append(item)
        busy[item.account].append((item.onset, item.end))
        if item.campaign >= 0:
            used[item.campaign] = True

    n_after_handoff = min(round(HANDOFF_SPIKE_SHARE * len(spikes)), len(handoffs))
    for event in (handoffs[i] for i in rng.permutation(len(handoffs))[:n_after_handoff]):
        factor, mechanism = spikes[-1]
        duration = int(rng.integers(4, 22))
        campaigns = layout.campaigns_of(event.account)
        for _ in range(MAX_PLACEMENT_TRIES):
            onset = event.day + int(rng.integers(0, 8))
            end = min(onset + duration - 1, last)
            free = campaigns[~used[campaigns]]
            if onset <= latest_onset and free.size and _fits(busy[event.account], onset, end):
                place(_Planned("spike", factor, mechanism, event.account, int(rng.choice(free)), onset, end))
                spikes.pop()
                break

    specs = [("creep", float(rng.uniform(0.03, 0.06)), "", 0) for _ in range(INCIDENT_COUNTS["creep"])]
    specs += [("tracking_loss", 0.0, "", int(rng.integers(3, 15))) for _ in range(INCIDENT_COUNTS["tracking_loss"])]
    specs += [("spike", f, m, int(rng.integers(4, 22))) for f, m in spikes]
    specs += [("spend_runaway", float(rng.uniform(3, 5)), "", int(rng.integers(2, 8))) for _ in range(INCIDENT_COUNTS["spend_runaway"])]
    for cls, magnitude, mechanism, duration in specs:
        if cls == "creep":
            duration = _creep_days(magnitude) + 1
        cpl_factor = float(rng.uniform(1.2, 1.5)) if cls == "spend_runaway" else 1.0
        for _ in range(MAX_PLACEMENT_TRIES):
            onset = int(rng.integers(eval_day, latest_onset + 1))
            end = min(onset + duration - 1, last)
            if cls == "tracking_loss":
                account, campaign = int(rng.integers(layout.n_accounts)), -1
            else:
                campaign = int(rng.choice(np.nonzero(~used)[0]))
                account = int(layout.account_of[campaign])
            if _fits(busy[account], onset, end):
                place(_Planned(cls, magnitude, mechanism, account, campaign, onset, end, cpl_factor))
                break
    return sorted(planned, key=lambda p: (p.onset, p.account, p.campaign))


def _incident_days(layout: _Layout, planned: list[_Planned]) -> list[list[tuple[int, int]]]:
    """Per campaign, the (onset, end) spans of the incidents that touch it."""
    spans: list[list[tuple[int, int]]] = [[] for _ in range(layout.n_campaigns)]
    for item in planned:
        campaigns = [item.campaign] if item.campaign >= 0 else layout.campaigns_of(item.account).tolist()
        for c in campaigns:
            spans[c].append((item.onset, item.end))
    return spans


def _plan_benign(rng: np.random.Generator, layout: _Layout, planned: list[_Planned], eval_day: int, last: int) -> pd.DataFrame:
    """Budget changes on ~15% of campaigns, improvements on ~10%: permanent from a day in the
    evaluated span, at least ``SEPARATION_DAYS`` away from the campaign's incidents."""
    order = rng.permutation(layout.n_campaigns)
    n_budget, n_improve = round(0.15 * layout.n_campaigns), round(0.10 * layout.n_campaigns)
    spans = _incident_days(layout, planned)
    rows = []
    for i, c in enumerate(order[: n_budget + n_improve]):
        kind = "budget_change" if i < n_budget else "improvement"
        factor = float(rng.choice([0.5, 0.7, 1.5, 2.0])) if kind == "budget_change" else float(rng.uniform(0.5, 0.8))
        for _ in range(MAX_PLACEMENT_TRIES):
            day = int(rng.integers(eval_day, last + 1))
            if _fits(spans[c], day, day):
                rows.append((kind, int(c), day, factor))
                break
    return pd.DataFrame(rows, columns=["kind", "campaign", "day", "factor"])


def _holidays(rng: np.random.Generator, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """US holidays in the panel, each with its spend factor (0.4–0.7) and cost-per-lead factor (1.0–1.2)."""
    found = []
    for year in range(dates[0].year, dates[-1].year + 1):
        november = pd.date_range(f"{year}-11-01", f"{year}-11-30")
        may = pd.date_range(f"{year}-05-01", f"{year}-05-31")
        september = pd.date_range(f"{year}-09-01", f"{year}-09-30")
        found += [
            ("New Year's Day", pd.Timestamp(f"{year}-01-01")),
            ("Memorial Day", may[may.day_of_week == 0][-1]),
            ("Independence Day", pd.Timestamp(f"{year}-07-04")),
            ("Labor Day", september[september.day_of_week == 0][0]),
            ("Thanksgiving", november[november.day_of_week == 3][3]),
            ("Christmas Eve", pd.Timestamp(f"{year}-12-24")),
            ("Christmas Day", pd.Timestamp(f"{year}-12-25")),
        ]
    inside = sorted((day, name) for name, day in found if dates[0] <= day <= dates[-1])
    return pd.DataFrame(
        {
            "name": [name for _, name in inside],
            "day": [dates.get_loc(day) for day, _ in inside],
            "spend_factor": rng.uniform(0.4, 0.7, len(inside)),
            "cpl_factor": rng.uniform(1.0, 1.2, len(inside)),
        }
    )


# ---------------------------------------------------------------------------------------------
# The panel


def _effects(layout: _Layout, days: int, planned: list[_Planned], benign: pd.DataFrame) -> _Effects:
    shape = (days, layout.n_campaigns)
    fx = _Effects(np.ones(shape), np.ones(shape), np.ones(shape), np.ones(shape), np.ones(shape), np.zeros(shape, dtype=bool))
    for row in benign.itertuples(index=False):
        if row.kind == "budget_change":
            fx.budget[row.day :, row.campaign] *= row.factor
        else:
            fx.improvement[row.day :, row.campaign] /= row.factor
    for item in planned:
        span = slice(item.onset, item.end + 1)
        if item.cls == "tracking_loss":
            fx.tracking_lost[span, layout.campaigns_of(item.account)] = True
        elif item.cls == "spike":
            share = {"cpc": (1.0, 0.0), "cvr": (0.0, 1.0), "both": (0.5, 0.5)}[item.mechanism]
            fx.cpc[span, item.campaign] *= item.magnitude ** share[0]
            fx.cvr[span, item.campaign] /= item.magnitude ** share[1]
        elif item.cls == "creep":
            t = np.arange(item.end - item.onset + 1)
            fx.cvr[span, item.campaign] /= (1 + item.magnitude) ** t
        else:
            fx.spend[span, item.campaign] *= item.magnitude
            fx.cpc[span, item.campaign] *= item.cpl_factor
    return fx


def _weekly_profile(rng: np.random.Generator, n_accounts: int) -> np.ndarray:
    """(accounts × 7) spend factors, Monday first, averaging 1: weekends at 0.4–1.1 of weekdays."""
    profile = 1 + rng.normal(0, 0.04, (n_accounts, 7))
    profile[:, 5:] *= rng.uniform(0.4, 1.1, (n_accounts, 1))
    return profile / profile.mean(axis=1, keepdims=True)


def _simulate(
    rng: np.random.Generator, layout: _Layout, dates: pd.DatetimeIndex, holidays: pd.DataFrame, fx: _Effects
) -> tuple[np.ndarray, ...]:
    """Observed spend, clicks and leads (day × campaign), and the no-incident, noise-free expected
    spend and cost per lead that the truth's excess cost and volumes are measured against."""
    days, n = len(dates), layout.n_campaigns
    dow = dates.day_of_week.to_numpy()
    account = layout.account_of
    weekly = _weekly_profile(rng, layout.n_accounts)[account][:, dow].T
    weekday_cvr = (1 + rng.uniform(-0.08, 0.08, (layout.n_accounts, 7)))[account][:, dow].T
    holiday_spend, holiday_cvr = np.ones((days, 1)), np.ones((days, 1))
    holiday_spend[holidays["day"].to_numpy(), 0] = holidays["spend_factor"].to_numpy()
    holiday_cvr[holidays["day"].to_numpy(), 0] = 1 / holidays["cpl_factor"].to_numpy()
    cpc = layout.cpc * np.exp(np.cumsum(rng.normal(0, 0.005, (days, n)), axis=0))
    cvr = layout.cvr * np.exp(np.cumsum(rng.normal(0, 0.003, (days, n)), axis=0)) * weekday_cvr * holiday_cvr * fx.improvement
    expected_spend = layout.daily_spend * weekly * holiday_spend * fx.budget

    target_spend = expected_spend * fx.spend * rng.lognormal(0, 0.10, (days, n))
    cpc_day = cpc * fx.cpc * rng.lognormal(0, 0.08, (days, n))
    cvr_day = np.minimum(cvr * fx.cvr * rng.lognormal(0, 0.08, (days, n)), 1.0)
    clicks = rng.poisson(target_spend / cpc_day)
    leads = np.where(fx.tracking_lost, 0, rng.binomial(clicks, cvr_day)).astype(float)
    spend = np.where(clicks > 0, np.round(target_spend, 2), 0.0)  # no clicks, no charge
    return spend, clicks, leads, expected_spend, cpc / cvr


def _metrics_frame(layout: _Layout, dates: pd.DatetimeIndex, spend: np.ndarray, clicks: np.ndarray, leads: np.ndarray) -> pd.DataFrame:
    days, n = spend.shape
    account_names = np.array([f"Client {a + 1:03d}" for a in range(layout.n_accounts)])
    return normalise_metrics(
        pd.DataFrame(
            {
                "date": np.repeat(dates.to_numpy(), n),
                "hour": DAILY,
                "account_id": np.tile(layout.account_ids[layout.account_of], days),
                "account_name": np.tile(account_names[layout.account_of], days),
                "campaign_id": np.tile(layout.campaign_ids, days),
                "campaign_name": np.tile(layout.campaign_names, days),
                "currency": "USD",
                "spend": spend.ravel(),
                "impressions": np.round(clicks / layout.ctr).astype(np.int64).ravel(),
                "clicks": clicks.ravel(),
                "leads": leads.ravel(),
            }
        )
    )


# ---------------------------------------------------------------------------------------------
# Change history


def _emails(rng: np.random.Generator, parties: np.ndarray) -> np.ndarray:
    """A user of each row's party, by the party's email domain."""
    pick = rng.integers(0, 6, len(parties))  # 6: a multiple of every party's number of users
    return np.array(
        [f"{USERS[p][k % len(USERS[p])]}@{PARTIES[p]['domains'][0]}" for p, k in zip(parties, pick)], dtype=object
    )


def _random_campaigns(rng: np.random.Generator, layout: _Layout, accounts: np.ndarray) -> np.ndarray:
    offset = np.floor(rng.random(len(accounts)) * layout.campaign_count[accounts]).astype(int)
    return layout.campaign_ids[layout.first_campaign[accounts] + offset]


def _changes(rng: np.random.Generator, layout: _Layout, dates: pd.DatetimeIndex, handoffs: list[_Handoff], party: np.ndarray) -> pd.DataFrame:
    """About one change per account a week by its managing party; on each handoff day the agency's
    access change; on the 1–3 days after it, 2–6 changes by the party that took over."""
    days = len(dates)
    n = rng.poisson(layout.n_accounts * days / 7)
    accounts = rng.integers(0, layout.n_accounts, n)
    day = rng.integers(0, days, n)
    kinds = rng.integers(0, len(CHANGE_KINDS), n)
    frames = [
        pd.DataFrame(
            {
                "day": day,
                "account": accounts,
                "campaign_id": _random_campaigns(rng, layout, accounts),
                "user_email": _emails(rng, party[day, accounts]),
                "resource_type": [CHANGE_KINDS[k][0] for k in kinds],
                "operation": "UPDATE",
                "changed_fields": [CHANGE_KINDS[k][1] for k in kinds],
            }
        )
    ]
    for event in handoffs:
        grant = pd.DataFrame(
            {
                "day": [event.day],
                "account": [event.account],
                "campaign_id": [""],
                "user_email": _emails(rng, np.array([DEFAULT_PARTY])),
                "resource_type": ["CUSTOMER_USER_ACCESS"],
                "operation": ["CREATE" if event.party != DEFAULT_PARTY else "REMOVE"],
                "changed_fields": ["customer_user_access.access_role"],
            }
        )
        k = int(rng.integers(2, 7))
        follow_kinds = rng.integers(0, len(CHANGE_KINDS), k)
        accounts = np.full(k, event.account)
        follow = pd.DataFrame(
            {
                "day": event.day + rng.integers(1, 4, k),
                "account": accounts,
                "campaign_id": _random_campaigns(rng, layout, accounts),
                "user_email": _emails(rng, np.full(k, event.party, dtype=object)),
                "resource_type": [CHANGE_KINDS[i][0] for i in follow_kinds],
                "operation": "UPDATE",
                "changed_fields": [CHANGE_KINDS[i][1] for i in follow_kinds],
            }
        )
        frames += [grant, follow[follow["day"] < days]]
    changes = pd.concat(frames, ignore_index=True)
    minutes = rng.integers(7 * 60, 20 * 60, len(changes))
    changes["changed_at"] = dates[changes["day"].to_numpy()] + pd.to_timedelta(minutes, unit="min")
    changes["account_id"] = layout.account_ids[changes["account"].to_numpy()]
    return normalise_changes(changes.sort_values("changed_at", kind="stable"))


# ---------------------------------------------------------------------------------------------
# Ground truth


def _truth(
    layout: _Layout,
    dates: pd.DatetimeIndex,
    planned: list[_Planned],
    handoffs: list[_Handoff],
    party: np.ndarray,
    spend: np.ndarray,
    leads: np.ndarray,
    expected_spend: np.ndarray,
    normal_cpl: np.ndarray,
) -> pd.DataFrame:
    """One row per incident; ``true_excess`` is spend above what its leads cost at the normal cost
    per lead of each day, and ``base_leads_per_day`` the expected leads a day over the 28 days
    before onset (both over every campaign of the account for an account-wide incident)."""
    excess_by_cell = spend - leads * normal_cpl
    expected_leads = expected_spend / normal_cpl
    rows = []
    for i, item in enumerate(planned, start=1):
        campaigns = [item.campaign] if item.campaign >= 0 else layout.campaigns_of(item.account).tolist()
        span = slice(item.onset, item.end + 1)
        doubles = item.onset + math.ceil(math.log(2) / math.log1p(item.magnitude)) if item.cls == "creep" else None
        after = any(e.account == item.account and 0 <= item.onset - e.day <= HANDOFF_WINDOW_DAYS for e in handoffs)
        rows.append(
            {
                "incident_id": i,
                "cls": item.cls,
                "magnitude": item.magnitude,
                "mechanism": item.mechanism,
                "scope": "campaign" if item.campaign >= 0 else "account",
                "account_id": layout.account_ids[item.account],
                "campaign_id": layout.campaign_ids[item.campaign] if item.campaign >= 0 else "",
                "onset": dates[item.onset],
                "end": dates[item.end],
                "party": party[item.onset, item.account],
                "true_excess": float(excess_by_cell[span, campaigns].sum()),
                "base_leads_per_day": float(expected_leads[item.onset - 28 : item.onset, campaigns].sum(axis=1).mean()),
                "doubles_on": dates[doubles] if doubles is not None and doubles < len(dates) else pd.NaT,
                "after_handoff": after,
            }
        )
    return pd.DataFrame(rows, columns=TRUTH_COLUMNS)


def _benign_frame(layout: _Layout, dates: pd.DatetimeIndex, benign: pd.DataFrame, holidays: pd.DataFrame) -> pd.DataFrame:
    """Budget changes (spend factor), improvements (cost-per-lead factor) and holidays (spend factor)."""
    campaigns = benign["campaign"].to_numpy()
    events = pd.DataFrame(
        {
            "kind": benign["kind"],
            "account_id": layout.account_ids[layout.account_of[campaigns]],
            "campaign_id": layout.campaign_ids[campaigns],
            "day": dates[benign["day"].to_numpy()],
            "factor": benign["factor"],
        }
    )
    days = pd.DataFrame(
        {"kind": "holiday", "account_id": "", "campaign_id": "", "day": dates[holidays["day"].to_numpy()], "factor": holidays["spend_factor"]}
    )
    return pd.concat([events, days], ignore_index=True)[BENIGN_COLUMNS].sort_values(["day", "kind"], kind="stable").reset_index(drop=True)
