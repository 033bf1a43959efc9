"""Known answers for detection on the shipped rules: small series built so that the right answer is
known by construction (a noisy small campaign, a budget step, a cost-per-click spike, reporting lag,
a paused campaign, a loss spread thinly over an account, a smart-bidding learning week).

Every case runs the rules in ``rules/`` with the default ``DetectionConfig`` (account totals off
unless the case is about them) on seeded series long enough for the baselines (60–120 days).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anomaly.config import DetectionConfig, load_rules
from anomaly.detect import Detection, detect
from anomaly.schema import empty_ownership, normalise_changes
from tests.helpers import PROJECT, daily_frame

SHIPPED_RULES = load_rules(PROJECT / "rules")
SPEND_RULES = {rule.name for rule in SHIPPED_RULES if rule.rule_family == "spend"}
CAMPAIGNS_ONLY = DetectionConfig(account_level=False)
WITH_ACCOUNTS = DetectionConfig(account_level=True)
START = pd.Timestamp("2026-01-05")  # a Monday


def _run(metrics: pd.DataFrame, params: DetectionConfig = CAMPAIGNS_ONLY, **kw) -> Detection:
    return detect(metrics, empty_ownership(), SHIPPED_RULES, params, **kw)


def _day(i: int) -> pd.Timestamp:
    return START + pd.Timedelta(days=i)


def _campaign(days: int, clicks: float, cpc: float, cvr: float, seed: int, cpc_noise: float = 0.1) -> dict:
    """A campaign as an ad platform makes one: Poisson clicks a day, each at a cost per click that
    moves from day to day (log-normal, ``cpc_noise``), each converting with probability ``cvr``."""
    rng = np.random.default_rng(seed)
    n_clicks = rng.poisson(clicks, days).astype(float)
    spend = n_clicks * cpc * rng.lognormal(0.0, cpc_noise, days)
    return {"spend": spend, "clicks": n_clicks, "leads": rng.binomial(n_clicks.astype(int), cvr).astype(float)}


def _spread(total: float, weights: np.ndarray) -> np.ndarray:
    """``round(total)`` whole leads shared out over days in proportion to ``weights`` (largest
    remainder): a known total with no extra noise on top of it."""
    share = round(total) * np.asarray(weights, dtype=float) / np.sum(weights)
    out = np.floor(share)
    out[np.argsort(share - out)[::-1][: int(round(total) - out.sum())]] += 1
    return out


def _own_cvr(series: dict, days: slice) -> float:
    return float(series["leads"][days].sum() / series["clicks"][days].sum())


def _append(series: dict, tail: dict) -> dict:
    return {key: np.concatenate([np.asarray(series[key], dtype=float), np.asarray(tail[key], dtype=float)]) for key in ("spend", "clicks", "leads")}


def _changes(*rows: tuple) -> pd.DataFrame:
    """A change history from (day index, campaign_id, resource_type, changed_fields) in account A."""
    return normalise_changes(
        pd.DataFrame(
            [
                {
                    "changed_at": _day(day) + pd.Timedelta(hours=10),
                    "account_id": "A",
                    "campaign_id": campaign_id,
                    "user_email": "someone@agency.example",
                    "client_type": "GOOGLE_ADS_WEB_CLIENT",
                    "resource_type": resource_type,
                    "operation": "UPDATE",
                    "changed_fields": fields,
                }
                for day, campaign_id, resource_type, fields in rows
            ]
        )
    )


def _days(findings: pd.DataFrame) -> list[int]:
    return sorted({int((d - START).days) for d in findings["date"]})


# ---------------------------------------------------------------------------------------------
# 1. A campaign of five clicks a day: its doubled day is noise


def test_a_five_click_campaigns_doubled_spend_day_does_not_alert():
    # ~5 clicks a day at ~$10 a click (about $50 a day, above every spend rule's min_spend), 0.3 leads a day
    series = _campaign(90, clicks=5, cpc=10.0, cvr=0.06, seed=102)
    # the last day: twice the campaign's usual spend (twice the clicks at its usual cost per click)
    series["clicks"][-1] = 10
    series["spend"][-1] = 2 * series["spend"][:-1].mean()
    metrics = daily_frame({"c1": series})
    assert 0.2 < series["leads"].mean() < 0.4 and 4 < series["clicks"][:-1].mean() < 6
    assert series["spend"][-1] > 25  # the spend rules' min_spend does not decide it
    assert _run(metrics).findings.empty


# ---------------------------------------------------------------------------------------------
# 2. A budget step with unchanged unit economics


STEP_DAY, STEP_DAYS = 84, 21


def _budget_step(factor_spend: float, factor_cpc: float, seed: int = 202) -> dict:
    """$1,000 a day at $2 a click (500 clicks), 5% of clicks convert ($40 a lead); from STEP_DAY on,
    spend × ``factor_spend`` with the cost per click × ``factor_cpc`` and the same conversion rate."""
    before = _campaign(STEP_DAY, clicks=500, cpc=2.0, cvr=0.05, seed=seed)
    after = _campaign(STEP_DAYS, clicks=500 * factor_spend / factor_cpc, cpc=2.0 * factor_cpc, cvr=0.05, seed=seed + 1)
    return _append(before, after)


BUDGET_DOUBLED = ((STEP_DAY, "c1", "CAMPAIGN_BUDGET", "campaign_budget.amount: 100.00 -> 200.00"),)


def test_a_recorded_budget_step_with_steady_unit_costs_does_not_alert():
    metrics = daily_frame({"c1": _budget_step(2.0, 1.0)})
    assert _run(metrics, changes=_changes(*BUDGET_DOUBLED)).findings.empty


@pytest.mark.parametrize(
    ("factor", "flagged"),
    [pytest.param(2.0, False, id="doubled-below-the-spend-rules"), pytest.param(3.0, True, id="tripled-flagged-until-accepted")],
)
def test_an_unrecorded_budget_step_with_steady_unit_costs_becomes_the_new_level(factor, flagged):
    series = _budget_step(factor, 1.0)
    detection = _run(daily_frame({"c1": series}))
    settle = STEP_DAY + CAMPAIGNS_ONLY.baseline.new_spend_level_days  # the first day judged at the new level
    old_level = series["spend"][:STEP_DAY].mean()
    new_level = series["spend"][STEP_DAY:].mean()
    level = detection.baseline.spend_level[:, 0]
    assert level[STEP_DAY] == pytest.approx(old_level, rel=0.15)
    np.testing.assert_allclose(level[settle:], new_level, rtol=0.15)
    findings = detection.findings
    assert set(findings["family"]) <= {"spend"}, "cost per click and per lead held: nothing else fires"
    spend = findings[findings["family"] == "spend"]
    assert not spend.empty if flagged else spend.empty
    if flagged:  # flagged on its first day, and no more once the step is the new level
        assert min(_days(spend)) == STEP_DAY and max(_days(spend)) < settle
    episodes = detection.episodes[detection.episodes["family"] == "spend"]
    assert len(episodes) == (1 if flagged else 0)
    for _, episode in episodes.iterrows():  # it resolves once the step is accepted
        assert pd.notna(episode["resolved_on"])
        assert episode["resolved_on"] <= _day(settle - 1 + CAMPAIGNS_ONLY.incidents.resolve_after_days)


def test_a_budget_typed_ten_times_too_high_keeps_its_runaway_open_and_is_not_the_new_level():
    # the budget × 10 in the change history, spend 4× for six days at the usual cost per click and
    # per lead, then back: one spend incident over all six days, never accepted as the usual
    step = {key: values[: STEP_DAY + 6] for key, values in _budget_step(4.0, 1.0).items()}
    runaway = _append(step, _campaign(7, clicks=500, cpc=2.0, cvr=0.05, seed=909))
    typo = ((STEP_DAY, "c1", "CAMPAIGN_BUDGET", "campaign_budget.amount: 100.00 -> 1000.00"),)
    detection = _run(daily_frame({"c1": runaway}), changes=_changes(*typo))
    episodes = detection.episodes[detection.episodes["family"] == "spend"]
    assert len(episodes) == 1
    episode = episodes.iloc[0]
    assert (episode["onset"], episode["last_active"]) == (_day(STEP_DAY), _day(STEP_DAY + 5))
    assert not detection.baseline.new_spend_level[:, 0].any()
    assert pd.isna(episode["settled_spend"])
    assert detection.baseline.spend_level[-1, 0] == pytest.approx(runaway["spend"][:STEP_DAY].mean(), rel=0.15)


def test_money_moved_between_campaigns_is_not_a_typo_but_the_same_raise_alone_is():
    from anomaly.detect.changes import change_days
    from anomaly.detect.panel import build_panel

    # a small campaign's budget × 6, paid for the same day by a big one's cut: a reallocation
    series = {"big": _campaign(90, clicks=500, cpc=2.0, cvr=0.05, seed=11), "small": _campaign(90, clicks=50, cpc=2.0, cvr=0.05, seed=12)}
    panel = build_panel(daily_frame(series), None, account_totals=False)
    raise_small = (60, "small", "CAMPAIGN_BUDGET", "campaign_budget.amount: 100.00 -> 600.00")
    cut_big = (60, "big", "CAMPAIGN_BUDGET", "campaign_budget.amount: 1,000.00 -> 500.00")
    small = list(panel.campaigns["campaign_id"]).index("small")
    moved = change_days(panel, _changes(raise_small, cut_big))
    alone = change_days(panel, _changes(raise_small))
    for days in (moved, alone):  # either way the change explains spend up to its new budget
        assert days.budget_factor[60, small] == pytest.approx(6.0)
    assert moved.stroke_factor[60, small] == 1.0  # moved, not typed
    assert alone.stroke_factor[60, small] == pytest.approx(6.0)  # added at a stroke: suspect


# ---------------------------------------------------------------------------------------------
# 3. A budget step that buys dearer clicks


def test_a_budget_step_with_dearer_clicks_alerts_on_its_first_day():
    # spend 3.5× with the cost per click 1.8× (clicks 1.94×, leads 1.94× at the same conversion
    # rate: cost per lead 1.8×), and no change in the history to explain it
    series = _budget_step(3.5, 1.8)
    metrics = daily_frame({"c1": series})
    detection = _run(metrics)
    findings = detection.findings
    assert findings[findings["date"] < _day(STEP_DAY)].empty
    first = findings[findings["date"] == _day(STEP_DAY)]
    assert not first.empty, "the step alerts on its first day"
    assert set(first["rule"]) <= SPEND_RULES | {"cpc-spike-1d", "cpl-spike-1d"}
    for _, finding in first.iterrows():  # 3.5× spend or 1.8× cost per click: above warning, below 4× critical
        assert finding["severity"] == ("critical" if finding["observed"] >= 4 * finding["baseline"] else "warning")
    assert detection.episodes["detected_on"].min() == _day(STEP_DAY)
    # the step is not accepted as the new level: its money buys worse
    assert detection.baseline.spend_level[-1, 0] == pytest.approx(series["spend"][:STEP_DAY].mean(), rel=0.15)


def _more_volume(factor_clicks: float, factor_cpc: float, seed: int = 909) -> pd.DataFrame:
    """$1,000 a day at $2 a click and 5% conversion; for the last two weeks the campaign buys
    ``factor_clicks`` × the clicks at ``factor_cpc`` × the cost per click (same conversion rate),
    with no change in the history: demand rose, or bids did."""
    before = _campaign(STEP_DAY, clicks=500, cpc=2.0, cvr=0.05, seed=seed)
    after = _campaign(14, clicks=500 * factor_clicks, cpc=2.0 * factor_cpc, cvr=0.05, seed=seed + 1)
    return daily_frame({"c1": _append(before, after)})


def test_more_clicks_at_the_dearer_price_volume_brings_do_not_alert_on_cost_per_lead():
    # 3× the clicks at 3 ** 0.3 ≈ 1.39× the cost per click: diminishing returns, as an auction gives them
    elasticity = CAMPAIGNS_ONLY.baseline.volume_elasticity
    metrics = _more_volume(3.0, 3.0**elasticity)
    findings = _run(metrics).findings
    assert findings[findings["family"] == "cost_per_lead"].empty
    # the same figures judged as if volume came at the baseline price: two weeks 39% dearer at
    # 1,500 clicks a day is then a significant cost-per-lead rise
    without = _run(metrics, DetectionConfig(account_level=False, baseline={"volume_elasticity": 0})).findings
    assert not without[without["family"] == "cost_per_lead"].empty


def test_a_cost_per_click_rise_beyond_what_volume_explains_still_alerts():
    # 3× the clicks at 2× the cost per click: far dearer than the volume explains
    findings = _run(_more_volume(3.0, 2.0)).findings
    assert not findings[findings["family"] == "cost_per_lead"].empty


# ---------------------------------------------------------------------------------------------
# 4. A cost-per-click spike shows on its first day


def test_a_cost_per_click_spike_alerts_on_its_first_day():
    # ~200 clicks a day at $2.50 ($500), 2% convert (~4 leads, $125 a lead); on the last day the same
    # $500 buys a third of the clicks, which convert as usual
    series = _campaign(90, clicks=200, cpc=2.5, cvr=0.02, seed=404)
    series["spend"][-1] = 500.0
    series["clicks"][-1] = 67
    series["leads"][-1] = 1  # 67 × 2% ≈ 1.3
    metrics = daily_frame({"c1": series})
    findings = _run(metrics).findings
    assert _days(findings) == [89]
    assert set(findings["family"]) == {"cost_per_lead"}
    assert set(findings["rule"]) & {"cpc-spike-1d", "cpl-spike-1d"}
    assert set(findings.loc[findings["rule"] == "cpc-spike-1d", "severity"]) <= {"warning"}  # 3×: above 2, below 4


# ---------------------------------------------------------------------------------------------
# 5. The latest days' leads are not all in yet


LAG = {0: 0.60, 1: 0.75, 2: 0.90}  # days after the day → share of its final leads reported
PORTFOLIO_DAYS = 90


def _portfolio(lost_account: str | None = None, seed: int = 505) -> pd.DataFrame:
    """Four accounts of five campaigns (~3 to ~15 leads a day each); on the last three days each
    day's leads are thinned to the share of them reported so far. ``lost_account`` also loses 90%
    of its leads on those days (tracking broken)."""
    rng = np.random.default_rng(seed)
    frames = []
    for a, account in enumerate("ABCD"):
        campaigns = {}
        for c in range(5):
            clicks = rng.uniform(100, 500)
            series = _campaign(PORTFOLIO_DAYS, clicks=clicks, cpc=rng.uniform(1.0, 3.0), cvr=rng.uniform(0.02, 0.04), seed=seed + 10 * a + c)
            leads = series["leads"]
            for after, share in LAG.items():
                day = PORTFOLIO_DAYS - 1 - after
                kept = share * (0.1 if account == lost_account else 1.0)
                leads[day] = rng.binomial(int(leads[day]), kept)
            campaigns[f"{account}{c}"] = {**series, "account_id": account}
        frames.append(daily_frame(campaigns))
    return pd.concat(frames, ignore_index=True)


def _learned_completeness() -> pd.DataFrame:
    return pd.DataFrame(
        [{"account_id": account, "days_after": after, "share": LAG.get(after, 1.0)} for account in "ABCD" for after in range(7)]
    )


def test_reporting_lag_on_the_last_days_does_not_alert():
    metrics = _portfolio()
    assert metrics["campaign_id"].nunique() == 20
    read = _run(metrics)  # the lag read from the data
    assert read.findings.empty
    share = read.lead_share[-len(LAG):, 0][::-1]  # the last day first
    assert share[0] < 0.8 and np.all(np.diff(share) >= 0), "the lag was read: the last day the least complete"
    assert _run(metrics, completeness=_learned_completeness()).findings.empty  # the lag as learned


@pytest.mark.parametrize("learned", [pytest.param(True, id="learned-completeness"), pytest.param(False, id="lag-read-from-data")])
def test_a_tracking_loss_on_the_lagging_days_still_alerts(learned):
    metrics = _portfolio(lost_account="B")
    detection = _run(metrics, completeness=_learned_completeness() if learned else None)
    findings = detection.findings
    assert set(findings["account_id"]) == {"B"}
    assert set(findings["campaign_id"]) == {f"B{c}" for c in range(5)}  # every campaign of the account
    assert set(findings["family"]) == {"cost_per_lead"}
    assert min(_days(findings)) >= PORTFOLIO_DAYS - len(LAG)  # only on the lost days
    episodes = detection.episodes
    assert len(episodes) == 5 and (episodes["detected_on"] >= _day(PORTFOLIO_DAYS - len(LAG))).all()


# ---------------------------------------------------------------------------------------------
# 6. A campaign resumed after a pause


def test_a_campaign_resumed_after_two_paused_weeks_does_not_alert():
    series = _campaign(98, clicks=300, cpc=2.0, cvr=0.04, seed=606)  # ~12 leads a day
    paused = np.arange(70, 84)
    metrics = daily_frame({"c1": series})
    metrics = metrics[~metrics["date"].isin([_day(d) for d in paused])]  # no rows while paused
    detection = _run(metrics)
    assert np.all(detection.panel.spend[paused, 0] == 0)  # read as zero activity, not as unknown
    assert detection.findings.empty


# ---------------------------------------------------------------------------------------------
# 7. A loss spread thinly over an account's campaigns is one account-level incident


LOSS_DAYS = np.arange(80, 87)


def _thin_loss(seed: int = 3000) -> tuple[pd.DataFrame, dict]:
    """Account A: six campaigns of ~5 leads a day (250 clicks, 2% convert); for a week each gets
    60% of the leads its clicks bring at its own past conversion rate, then 14 normal days."""
    campaigns = {}
    for c in range(6):
        series = _campaign(100, clicks=250, cpc=2.0, cvr=0.02, seed=seed + 1 + c)
        rate = _own_cvr(series, slice(0, LOSS_DAYS[0]))
        series["leads"][LOSS_DAYS] = _spread(0.6 * rate * series["clicks"][LOSS_DAYS].sum(), series["clicks"][LOSS_DAYS])
        campaigns[f"c{c}"] = series
    return daily_frame(campaigns), campaigns


def test_a_thin_loss_across_an_accounts_campaigns_is_one_account_incident():
    metrics, campaigns = _thin_loss()
    for series in campaigns.values():  # each campaign really lost ~40% of its week
        lost = 1 - series["leads"][LOSS_DAYS].sum() / (_own_cvr(series, slice(0, 80)) * series["clicks"][LOSS_DAYS].sum())
        assert lost == pytest.approx(0.4, abs=0.03)
    assert _run(metrics).findings.empty  # no campaign proves it on its own
    detection = _run(metrics, WITH_ACCOUNTS)
    findings = detection.findings
    assert set(findings["campaign_id"]) == {""}  # only the account total, and only during the loss
    assert min(_days(findings)) >= LOSS_DAYS[0] and max(_days(findings)) <= LOSS_DAYS[-1] + 13
    episodes = detection.episodes
    assert episodes[["account_id", "campaign_id", "family"]].values.tolist() == [["A", "", "cost_per_lead"]]
    episode = episodes.iloc[0]
    assert LOSS_DAYS[0] <= (episode["detected_on"] - START).days <= LOSS_DAYS[-1]
    assert pd.notna(episode["resolved_on"])  # the week ended: so does the incident


# ---------------------------------------------------------------------------------------------
# 8. Smart bidding relearns after a strategy change: quieter, not silent


LEARNING_DAY, LEARNING_DAYS, AFTER_DAYS = 84, 7, 14
STRATEGY_CHANGE = ((LEARNING_DAY, "c1", "CAMPAIGN", "campaign.bidding_strategy_type: TARGET_CPA -> MAXIMIZE_CONVERSIONS"),)


def _learning_week(cpl_factor: float, seed: int = 808) -> pd.DataFrame:
    """$2,000 a day at $2 a click, 5% convert ($40 a lead, ~50 a day); for the week from the
    strategy change the same clicks bring ``cpl_factor`` times fewer leads than the campaign's own
    past conversion rate gives (cost per lead × ``cpl_factor``); then two normal weeks, so that
    every window holding a learning day is judged."""
    series = _campaign(LEARNING_DAY + LEARNING_DAYS + AFTER_DAYS, clicks=1000, cpc=2.0, cvr=0.05, seed=seed)
    week = slice(LEARNING_DAY, LEARNING_DAY + LEARNING_DAYS)
    rate = _own_cvr(series, slice(0, LEARNING_DAY))
    series["leads"][week] = _spread(rate * series["clicks"][week].sum() / cpl_factor, series["clicks"][week])
    return daily_frame({"c1": series})


@pytest.mark.parametrize("seed", [808, 908, 1008, 1108, 1208])
def test_a_learning_week_at_1_6x_cost_per_lead_does_not_alert(seed):
    metrics = _learning_week(1.6, seed)
    assert _run(metrics, changes=_changes(*STRATEGY_CHANGE)).findings.empty
    assert not _run(metrics).findings.empty  # unannounced, the same week does alert: the change is what explains it


def test_a_learning_week_at_6x_cost_per_lead_still_alerts():
    metrics = _learning_week(6.0)
    detection = _run(metrics, changes=_changes(*STRATEGY_CHANGE))
    findings = detection.findings
    assert set(findings["family"]) == {"cost_per_lead"}
    days = _days(findings)
    assert LEARNING_DAY <= days[0] < LEARNING_DAY + LEARNING_DAYS  # within the learning week
    assert len(detection.episodes) == 1
    # quieter: no earlier than without the change record
    unannounced = _run(metrics).findings
    assert days[0] >= min(_days(unannounced))
