"""Detection as a pure function: tiny series whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anomaly.config import (
    CplRatioRule,
    DetectionConfig,
    ForestConfig,
    LeadShortfallRule,
    SpendRatioRule,
    ThresholdRule,
    load_rules,
)
from anomaly.detect import detect
from anomaly.detect.panel import build_panel
from anomaly.sample import generate_metrics
from anomaly.schema import empty_ownership
from tests.helpers import PROJECT, daily_frame, periods, steady

DEFAULT_RULES = load_rules(PROJECT / "rules")
NO_FOREST = DetectionConfig(account_level=False)  # one campaign at a time, as the rules see it
WITH_FOREST = DetectionConfig(account_level=False, forest=ForestConfig(enabled=True))


def _run(metrics, rules=DEFAULT_RULES, ownership=None, params=NO_FOREST, **kw):
    return detect(metrics, empty_ownership() if ownership is None else ownership, rules, params, **kw)


def _with_tail(days: int, tail_spend, tail_leads, *, spend=1000.0, cpl=100.0, seed=1, tail_clicks=None) -> pd.DataFrame:
    series = steady(days, spend, cpl, seed)
    series["spend"] = np.concatenate([series["spend"], tail_spend])
    series["leads"] = np.concatenate([series["leads"], tail_leads])
    if tail_clicks is not None:
        series["clicks"] = np.concatenate([np.round(series["spend"][:days] / 2), tail_clicks])
    return daily_frame({"c1": series})


def _tail_findings(metrics, days: int = 2, **kw) -> pd.DataFrame:
    findings = _run(metrics, **kw).findings
    assert findings[findings["date"] < metrics["date"].max() - pd.Timedelta(days=days - 1)].empty, "nothing before the tail"
    return findings


@pytest.mark.parametrize(
    ("tail_spend", "tail_leads", "expected_rules"),
    [
        pytest.param([1000, 1000], [0, 0], {"cpl-spike-1d", "leads-stopped"}, id="zero-leads-with-spend"),
        pytest.param([1000, 1000], [10, 11], set(), id="normal-days"),
        pytest.param([1000, 1000], [20, 22], set(), id="cheaper-leads-never-alert"),
        pytest.param([2000, 2000], [20, 19], set(), id="budget-doubles-same-cpl"),
        pytest.param([500, 450], [5, 4], set(), id="weekend-dip"),
        pytest.param([1000, 1000], [1, 1], {"leads-stopped"}, id="10x-spike-proven-on-the-second-day"),
        pytest.param([1000, 1000], [4, 4], set(), id="2.5x-for-two-days-is-not-yet-proof"),
    ],
)
def test_rules_on_the_last_two_days(tail_spend, tail_leads, expected_rules):
    metrics = _with_tail(60, tail_spend, tail_leads)
    assert set(_tail_findings(metrics)["rule"]) == expected_rules


def test_zero_leads_with_spend_alerts_on_the_first_day():
    metrics = _with_tail(60, [1000], [0])
    findings = _tail_findings(metrics, days=1)
    assert set(findings["rule"]) == {"cpl-spike-1d"}
    assert set(findings["severity"]) == {"critical"}  # 0 of ~10 expected leads: (10 + 1) / (0 + 1) ≥ 4×


def test_a_two_lead_campaigns_empty_day_does_not_alert():
    metrics = _with_tail(60, [200, 200], [0, 0], spend=200.0)  # about 2 leads a day at $100
    assert _tail_findings(metrics).empty


def test_low_volume_noise_never_alerts():
    metrics = daily_frame({"small": steady(150, 150.0, 150.0, seed=7)})
    assert _run(metrics).findings.empty
    assert ((metrics["leads"] == 0).mean() > 0.3) and metrics["leads"].max() >= 2  # really 0..2+ a day


def test_a_cost_per_click_jump_shows_on_day_one_before_the_leads_can():
    # 1 lead a day; the day's clicks fall from 500 to 100 for the same spend (cost per click 5×)
    metrics = _with_tail(60, [200], [0], spend=200.0, cpl=200.0, tail_clicks=[20])
    metrics.loc[metrics["date"] < metrics["date"].max(), "clicks"] = 100
    with_clicks = _tail_findings(metrics, days=1)
    assert set(with_clicks["rule"]) == {"cpl-spike-1d"}
    without = [r.model_copy(update={"use_clicks": False}) if r.type == "cpl_ratio" else r for r in DEFAULT_RULES if r.type != "cpc_ratio"]
    assert _run(metrics, without).findings.empty  # one day without a lead proves nothing at 1 lead a day


def test_a_slow_small_campaign_problem_is_caught_by_the_two_week_window():
    # 3 leads a day, then 1 a day for two weeks (cost per lead 3×): no single day or week proves it
    base = steady(90, 300.0, 100.0, seed=11)
    metrics = daily_frame({"c1": {"spend": np.append(base["spend"], np.full(14, 300.0)), "leads": np.append(base["leads"], np.ones(14))}})
    findings = _run(metrics).findings
    assert set(findings["rule"]) == {"cpl-spike-14d"}
    assert findings["date"].min() >= metrics["date"].iloc[-2]  # it took the two weeks


def test_spend_runaway_alerts_and_a_budget_doubling_does_not():
    for factor, expected in ((4.0, {"spend-runaway"}), (2.0, set())):
        base = steady(60, 1000.0, 100.0, seed=3)
        series = {"spend": np.append(base["spend"], [1000 * factor]), "leads": np.append(base["leads"], [10 * factor / 1.3])}
        assert set(_tail_findings(daily_frame({"c1": series}), days=1)["rule"]) == expected, factor


def test_spend_compares_a_day_with_the_same_weekday():
    # weekends spend half; a Saturday at the weekday level is normal on a Monday, 2× on a Saturday
    dates = pd.date_range("2026-01-05", periods=84, freq="D")  # starts on a Monday
    weekly = np.where(dates.day_of_week >= 5, 500.0, 1000.0)
    rng = np.random.default_rng(4)
    spend = weekly * rng.lognormal(0, 0.03, len(dates))
    spend[-1] = 1500.0  # the last day is a Sunday: 3× its weekday, 1.6× the average day
    metrics = daily_frame({"c1": {"spend": spend, "leads": rng.poisson(spend / 100).astype(float)}})
    rule = SpendRatioRule(type="spend_ratio", name="s", warning=2.5)
    assert dates[-1].day_of_week == 6
    assert _run(metrics, [rule]).findings["date"].tolist() == [dates[-1]]


def test_cheaper_leads_never_alert_even_with_the_forest():
    series = steady(240, 1000.0, 100.0, seed=3)
    series["leads"][200:] = np.random.default_rng(5).poisson(series["spend"][200:] / 33)  # a third of the cost
    metrics = daily_frame({"c1": series, **{f"o{i}": steady(240, 800.0, 90.0, seed=10 + i) for i in range(4)}})
    detection = _run(metrics, params=WITH_FOREST)
    assert not np.isnan(detection.score).all()  # the forest did score
    findings = detection.findings
    assert findings[(findings["campaign_id"] == "c1") & (findings["date"] >= metrics["date"].iloc[200])].empty


def test_baseline_does_not_absorb_an_ongoing_incident():
    metrics = _with_tail(60, [1000] * 20, [2] * 20)
    detection = _run(metrics)
    baseline_after = detection.baseline.cpl[-1, 0]
    assert baseline_after == pytest.approx(100, rel=0.15)
    assert len(detection.episodes) == 1
    episode = detection.episodes.iloc[0]
    assert pd.isna(episode["resolved_on"]) and episode["onset"] == metrics["date"].iloc[60]


def test_incident_resolves_once_the_week_is_back_to_normal():
    normal = [10, 11, 9, 10, 10, 10, 9, 11, 10, 10, 10, 10]
    metrics = _with_tail(60, [1000] * 15, [1] * 3 + normal)
    episode = _run(metrics).episodes.iloc[0]
    first = metrics["date"].iloc[60]
    assert (episode["onset"], episode["detected_on"]) == (first, first + pd.Timedelta(days=1))  # 1 of 10: proven on day two
    assert episode["last_active"] == first + pd.Timedelta(days=2)  # the last bad day
    # open while the trailing week is still clearly short of leads, then two quiet days
    assert episode["resolved_on"] == first + pd.Timedelta(days=9)


def test_onset_is_when_it_began_not_when_it_was_noticed():
    metrics = _with_tail(60, [1000] * 4, [2] * 4)
    slow = CplRatioRule(type="cpl_ratio", name="slow", window_days=3, warning=4.0, max_p_value=0.0001)
    episode = _run(metrics, [slow]).episodes.iloc[0]
    began = metrics["date"].iloc[60]
    assert episode["onset"] == began
    assert episode["detected_on"] == began + pd.Timedelta(days=2)  # the 3-day window needed three bad days


RATIO_2 = CplRatioRule(type="cpl_ratio", name="r", warning=2.5, min_expected_leads=3, max_p_value=0.001,
                       after_ownership_change={"within_days": 14, "warning": 1.6, "max_p_value": 0.1})


@pytest.mark.parametrize(
    ("handoff_days_before", "fires"),
    [pytest.param(3, True, id="three-days-after-handoff-stricter"), pytest.param(30, False, id="long-after-handoff-normal"), pytest.param(None, False, id="no-handoff")],
)
def test_stricter_thresholds_after_an_ownership_change(handoff_days_before, fires):
    metrics = _with_tail(60, [1000, 1000], [5, 5])  # cost per lead doubles: 2×, below 2.5 but above 1.6
    last = metrics["date"].max()
    if handoff_days_before is None:
        ownership = periods(("A", "", "agency", "2025-01-01", None))
    else:
        change = last - pd.Timedelta(days=handoff_days_before)
        ownership = periods(("A", "", "agency", "2025-01-01", change), ("A", "", "partner", change, None))
    findings = _run(metrics, [RATIO_2], ownership).findings
    tail = findings[findings["date"] >= last - pd.Timedelta(days=1)]
    assert set(tail["date"]) == ({last - pd.Timedelta(days=1), last} if fires else set())


def test_scope_by_managing_party():
    metrics = pd.concat([_with_tail(60, [1000], [0]), _with_tail(60, [1000], [0]).assign(account_id="B")], ignore_index=True)
    ownership = periods(("A", "", "agency", "2025-01-01", None), ("B", "", "partner", "2025-01-01", None))
    rule = CplRatioRule(type="cpl_ratio", name="partner-only", warning=2, scope={"parties": ["partner"]})
    findings = _run(metrics, [rule], ownership).findings
    assert set(findings["account_id"]) == {"B"}


def _gate_metrics() -> pd.DataFrame:
    others = {f"o{i}": steady(240, 800.0, 90.0, seed=20 + i) for i in range(4)}
    series = steady(238, 1000.0, 100.0, seed=4)
    series["spend"] = np.append(series["spend"], [1000, 1000])
    series["leads"] = np.append(series["leads"], [0, 0])
    return daily_frame({"c1": series, **others})


NOISY = {"type": "cpl_ratio", "name": "g", "warning": 1.3, "max_p_value": None}  # fires on noise too


def test_forest_require_gate_keeps_only_high_scores():
    metrics = _gate_metrics()
    alone = _run(metrics, [CplRatioRule(**NOISY)], params=WITH_FOREST)
    gated = _run(metrics, [CplRatioRule(**NOISY, forest={"mode": "require", "min_score": 0.99})], params=WITH_FOREST)
    scored = gated.findings["score"].notna()
    assert (gated.findings.loc[scored, "score"] >= 0.99).all()
    assert len(gated.findings) < len(alone.findings)
    # where no model exists yet (too little history) the rule alone decides
    assert gated.findings[~scored].equals(alone.findings[alone.findings["score"].isna()].reset_index(drop=True).pipe(lambda f: f.set_axis(gated.findings[~scored].index)))
    last = metrics["date"].max()
    assert {"c1"} <= set(gated.findings.loc[gated.findings["date"] == last, "campaign_id"])  # the real outage stays


@pytest.mark.parametrize(
    ("gate", "params", "expected"),
    [
        pytest.param({"mode": "escalate", "min_score": 0.5}, WITH_FOREST, {"critical"}, id="escalate-warning-to-critical"),
        pytest.param({"mode": "escalate", "min_score": 0.5}, NO_FOREST, {"warning"}, id="escalate-without-model"),
        pytest.param({"mode": "ignore"}, WITH_FOREST, {"warning"}, id="ignore"),
    ],
)
def test_forest_escalate_gate(gate, params, expected):
    rule = CplRatioRule(type="cpl_ratio", name="g", warning=2, forest=gate)
    findings = _run(_gate_metrics(), [rule], params=params).findings
    assert set(findings.loc[findings["campaign_id"] == "c1", "severity"]) == expected


@pytest.mark.parametrize(
    ("rule", "expected_days"),
    [
        pytest.param(ThresholdRule(type="threshold", name="t", metric="cpl", warning=150), [61], id="cpl-above"),
        pytest.param(ThresholdRule(type="threshold", name="t", metric="leads", direction="below", warning=12, window_days=2), [61], id="leads-below-over-two-days"),
        pytest.param(ThresholdRule(type="threshold", name="t", metric="spend", warning=1500), [], id="spend-never-above"),
        pytest.param(LeadShortfallRule(type="lead_shortfall", name="s", warning=0.5, window_days=1, max_p_value=0.01), [61], id="shortfall"),
    ],
)
def test_threshold_and_shortfall(rule, expected_days):
    spend = np.full(62, 1000.0)
    leads = np.array([10.0] * 61 + [1.0])
    metrics = daily_frame({"c1": {"spend": spend, "leads": leads}})
    findings = _run(metrics, [rule]).findings
    assert [metrics["date"].tolist().index(d) for d in findings["date"]] == expected_days


def test_panel_missing_day_is_zero_unknown_after_coverage_is_nan():
    metrics = daily_frame({"c1": steady(10, 100, 50), "c2": steady(10, 100, 50)})
    metrics = metrics[~((metrics["campaign_id"] == "c1") & (metrics["date"] == metrics["date"].iloc[4]))]
    other_account = daily_frame({"c3": steady(12, 100, 50)}).assign(account_id="B")
    panel = build_panel(pd.concat([metrics, other_account], ignore_index=True))
    c1 = panel.campaigns.index[panel.campaigns["campaign_id"] == "c1"][0]
    assert panel.spend[4, c1] == 0.0 and panel.leads[4, c1] == 0.0  # a missing day: zero activity
    assert np.isnan(panel.spend[10:, c1]).all()  # account A has no data after day 9: unknown


# ---------------------------------------------------------------------------------------------
# Causality: the decision for day D uses only data up to D.


@pytest.mark.parametrize("cutoff", ["2026-06-01", "2026-06-30", "2026-07-09", "2026-07-10"])
def test_changing_data_after_a_day_changes_no_decision_up_to_it(cutoff):
    cutoff = pd.Timestamp(cutoff)
    metrics = generate_metrics()
    altered = metrics.copy()
    later = altered["date"] > cutoff
    altered.loc[later, "spend"] *= 7
    altered.loc[later, "leads"] = 0.0
    ownership = periods(("4821937710", "", "northwind", "2025-11-01", "2026-07-08"), ("4821937710", "", "beacon", "2026-07-08", None))
    params = DetectionConfig(forest=ForestConfig(enabled=True))  # account totals on: every part takes part
    runs = [
        detect(frame, ownership, DEFAULT_RULES, params)
        for frame in (metrics, altered, metrics[metrics["date"] <= cutoff])  # the last: a live run on day D
    ]
    def decided(d):
        findings = d.findings[d.findings["date"] <= cutoff].reset_index(drop=True)
        episodes = d.episodes[d.episodes["detected_on"] <= cutoff][["family", "campaign_id", "onset", "detected_on", "rule", "opening_severity", "observed", "baseline"]]
        return findings, episodes.reset_index(drop=True)
    reference = decided(runs[0])
    for run in runs[1:]:
        findings, episodes = decided(run)
        pd.testing.assert_frame_equal(findings, reference[0])
        pd.testing.assert_frame_equal(episodes, reference[1], check_dtype=False, check_index_type=False)
        days = runs[0].panel.dates <= cutoff
        np.testing.assert_array_equal(run.score[: days.sum()], runs[0].score[days])
    assert not np.isnan(runs[0].score).all()  # the forest took part


# ---------------------------------------------------------------------------------------------
# A change of managing party is a changepoint


def _handoff(metrics: pd.DataFrame, days_before_last: int) -> pd.DataFrame:
    change = metrics["date"].max() - pd.Timedelta(days=days_before_last)
    return periods(("A", "", "agency", "2025-01-01", change), ("A", "", "partner", change, None))


@pytest.mark.parametrize(("handoff", "alerts"), [pytest.param(True, True, id="day-one-after-handoff"), pytest.param(False, False, id="same-day-no-handoff")])
def test_a_handoff_spike_alerts_on_its_first_day(handoff, alerts):
    metrics = _with_tail(60, [1000], [1])  # 1 lead where 10 were usual: suggestive, not yet proof
    ownership = _handoff(metrics, 0) if handoff else periods(("A", "", "agency", "2025-01-01", None))
    findings = _run(metrics, ownership=ownership).findings
    assert set(findings["rule"]) == ({"cpl-spike-1d"} if alerts else set())
    if alerts:
        assert findings["date"].tolist() == [metrics["date"].max()]


def test_the_baseline_holds_its_pre_handoff_level_during_probation():
    # the new party runs the campaign at 1.5× the cost per lead: never significant on one day
    base = steady(60, 1000.0, 100.0, seed=2)
    worse = steady(40, 1000.0, 150.0, seed=3)
    metrics = daily_frame({"c1": {k: np.append(base[k], worse[k]) for k in ("spend", "leads")}})
    ownership = _handoff(metrics, 39)  # the partner took over on the first worse day
    held = _run(metrics, ownership=ownership).baseline
    moving = _run(metrics, ownership=ownership, params=DetectionConfig(account_level=False, baseline={"probation_days": 0})).baseline
    assert held.held[60:88, 0].all() and not held.held[88:, 0].any()  # 28 days of probation
    assert held.cpl[87, 0] == pytest.approx(held.cpl[60, 0])  # still the agency's level
    assert held.cpl[60, 0] == pytest.approx(100, rel=0.1)
    assert moving.cpl[87, 0] > 1.25 * held.cpl[87, 0]  # without the hold the new level becomes "normal"


# ---------------------------------------------------------------------------------------------
# Account totals, shrinkage, one incident per problem


def test_tracking_lost_across_an_account_shows_in_its_total():
    campaigns = {f"c{i}": steady(60, 150.0, 100.0, seed=30 + i) for i in range(5)}  # 1.5 leads a day each
    for series in campaigns.values():
        series["spend"] = np.append(series["spend"], [150.0, 150.0])
        series["leads"] = np.append(series["leads"], [0.0, 0.0])
    metrics = daily_frame(campaigns)
    findings = _run(metrics, params=DetectionConfig()).findings
    assert set(findings["campaign_id"]) == {""}  # only the account total: no campaign alone proves it
    assert set(findings["family"]) == {"cost_per_lead"}
    episodes = _run(metrics, params=DetectionConfig()).episodes
    assert episodes[["account_id", "campaign_id"]].values.tolist() == [["A", ""]]


def test_an_account_total_gives_way_to_the_campaign_that_explains_it():
    campaigns = {"big": steady(60, 1000.0, 100.0, seed=5), "small": steady(60, 150.0, 100.0, seed=6)}
    campaigns["big"]["spend"] = np.append(campaigns["big"]["spend"], [1000.0])
    campaigns["big"]["leads"] = np.append(campaigns["big"]["leads"], [0.0])
    campaigns["small"] = {k: np.append(v, [150.0 if k == "spend" else 1.0]) for k, v in campaigns["small"].items()}
    findings = _run(daily_frame(campaigns), params=DetectionConfig()).findings
    assert set(findings["campaign_id"]) == {"big"}


def test_a_spend_jump_that_wrecks_the_cost_per_lead_is_one_incident():
    base = steady(60, 1000.0, 100.0, seed=3)
    series = {"spend": np.append(base["spend"], [4000.0]), "leads": np.append(base["leads"], [0.0])}
    episodes = _run(daily_frame({"c1": series})).episodes
    assert episodes["family"].tolist() == ["cost_per_lead"]


def test_a_small_new_campaign_borrows_its_accounts_cost_per_lead():
    campaigns = {"old": steady(80, 1000.0, 100.0, seed=8)}
    young = steady(80, 60.0, 120.0, seed=9)
    young["spend"][:60] = 0.0
    young["leads"][:60] = 0.0
    campaigns["young"] = young
    baseline = _run(daily_frame(campaigns)).baseline
    young_col = 1
    assert baseline.ready[-1, young_col]
    own = np.nansum(young["spend"][60:]) / max(np.nansum(young["leads"][60:]), 1)
    assert min(own, 100) * 0.8 < baseline.cpl[-1, young_col] < max(own, 100) * 1.2  # between its own and the account's


# ---------------------------------------------------------------------------------------------
# The tail probabilities


def test_lower_tail_is_the_negative_binomial_and_poisson_in_the_limit():
    from scipy.stats import nbinom, poisson

    from anomaly.detect.stats import fisher, lower_tail

    k, mean, phi = np.array([0.0, 2, 7, 30]), np.array([3.0, 10, 7, 40]), np.array([0.1, 0.02, 0.5, 0.01])
    n = 1 / phi
    np.testing.assert_allclose(lower_tail(k, mean, phi), nbinom.cdf(k, n, n / (n + mean)), rtol=1e-9)
    np.testing.assert_allclose(lower_tail(k, mean, np.full(4, 1e-9)), poisson.cdf(k, mean), rtol=1e-4)
    assert lower_tail(np.array([np.nan, 3.0]), np.array([5.0, 0.0]), np.array([0.1, 0.1])).tolist() == [1.0, 1.0]  # no evidence
    from scipy.stats import combine_pvalues

    assert fisher(np.array([0.01]), np.array([0.2]))[0] == pytest.approx(combine_pvalues([0.01, 0.2], method="fisher").pvalue)


def test_the_onset_does_not_slip_across_a_handoff_on_a_days_noise(monkeypatch):
    import anomaly.detect as detection

    metrics = _with_tail(60, [1000.0] * 4, [4, 1, 1, 1])  # the last agency day low by chance
    ownership = _handoff(metrics, 2)  # the partner took over on the first 1-lead day
    handoff_day = metrics["date"].iloc[61]
    assert _run(metrics, ownership=ownership).episodes["onset"].tolist() == [handoff_day]
    monkeypatch.setattr(detection, "HANDOFF_PRIOR", 0.0)
    assert _run(metrics, ownership=ownership).episodes["onset"].tolist() == [metrics["date"].iloc[60]]  # without it: the day before


def test_a_long_window_that_still_holds_an_ended_incident_opens_no_second_one():
    # three days without leads (caught, then over); from day 10 the budget doubles at the same cost
    # per lead, which lets a two-week rule reach its spend guard while it still holds those days
    metrics = _with_tail(60, [1000.0] * 10 + [2000.0] * 8, [0, 0, 0] + [10] * 7 + [20] * 8)
    two_weeks = ThresholdRule(type="threshold", name="cpl-14d", metric="cpl", window_days=14, warning=115, min_spend=16_500)
    one_day = next(rule for rule in DEFAULT_RULES if rule.name == "cpl-spike-1d")
    detection = _run(metrics, [one_day, two_weeks])
    late = detection.findings[detection.findings["rule"] == "cpl-14d"]["date"]
    assert late.min() > detection.episodes["resolved_on"].iloc[0]  # it did fire after the incident ended
    assert len(detection.episodes) == 1


def test_a_spend_step_at_the_usual_unit_costs_becomes_the_new_level_and_its_resolve_says_so():
    from anomaly.alerts.render import render_text
    from anomaly.alerts.slack_message import build_thread_reply
    from anomaly.incidents import build_incidents
    from anomaly.schema import empty_changes

    base = steady(60, 1000.0, 100.0, seed=3)
    rng = np.random.default_rng(5)
    tail = 3200.0 * rng.lognormal(0, 0.05, 12)  # 3.2× the spend from one day on, leads at the same cost
    metrics = daily_frame({"c1": {"spend": np.append(base["spend"], tail), "leads": np.append(base["leads"], rng.poisson(tail / 100).astype(float))}})
    detection = _run(metrics)
    episode = detection.episodes.iloc[0]
    assert (episode["family"], episode["rule"], episode["detected_on"]) == ("spend", "spend-runaway", metrics["date"].iloc[60])
    assert pd.notna(episode["resolved_on"]) and 3000 < episode["settled_spend"] < 3400
    (incident,) = build_incidents(detection, empty_changes(), {})
    payload = {**incident.payload(), "incident_id": 1}
    assert "spend settled at a new level of about $3," in render_text("resolved", payload)
    assert "this is now its usual level" in build_thread_reply("resolved", payload).text


def test_a_cost_per_lead_that_stays_doubled_for_weeks_ends_as_the_new_usual_and_its_resolve_says_so():
    from anomaly.alerts.render import render_text
    from anomaly.alerts.slack_message import build_thread_reply
    from anomaly.incidents import build_incidents
    from anomaly.schema import empty_changes

    base = steady(60, 1000.0, 100.0, seed=4)
    rng = np.random.default_rng(6)
    tail = 1000.0 * rng.lognormal(0, 0.05, 70)  # from day 60 on, $200 a lead for ten weeks
    metrics = daily_frame({"c1": {"spend": np.append(base["spend"], tail), "leads": np.append(base["leads"], rng.poisson(tail / 200).astype(float))}})
    detection = _run(metrics)
    episodes = detection.episodes[detection.episodes["family"] == "cost_per_lead"]
    assert len(episodes) == 1
    episode = episodes.iloc[0]
    assert metrics["date"].iloc[60] <= episode["detected_on"] <= metrics["date"].iloc[70]  # 2× at ten leads a day: a week's rule sees it
    # it ends once the baseline has taken the new level in (max_excluded_days), not ten weeks later
    max_days = DetectionConfig().baseline.max_excluded_days
    assert pd.notna(episode["resolved_on"]) and episode["resolved_on"] <= metrics["date"].iloc[60 + max_days + 21]
    assert 150 < episode["settled_cpl"] < 230
    (incident,) = build_incidents(detection, empty_changes(), {})
    payload = {**incident.payload(), "incident_id": 1}
    assert "cost per lead stayed at about $" in render_text("resolved", payload)
    assert "the baseline now takes that as the usual" in build_thread_reply("resolved", payload).text
