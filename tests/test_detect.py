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
    ThresholdRule,
    load_rules,
)
from anomaly.detect import detect
from anomaly.detect.panel import build_panel
from anomaly.sample import generate_metrics
from anomaly.schema import empty_ownership
from tests.helpers import PROJECT, daily_frame, periods, steady

DEFAULT_RULES = load_rules(PROJECT / "rules")
NO_FOREST = DetectionConfig(forest=ForestConfig(enabled=False))


def _run(metrics, rules=DEFAULT_RULES, ownership=None, params=NO_FOREST, **kw):
    return detect(metrics, empty_ownership() if ownership is None else ownership, rules, params, **kw)


def _with_tail(days: int, tail_spend, tail_leads, *, spend=1000.0, cpl=100.0, seed=1) -> pd.DataFrame:
    series = steady(days, spend, cpl, seed)
    series["spend"] = np.concatenate([series["spend"], tail_spend])
    series["leads"] = np.concatenate([series["leads"], tail_leads])
    return daily_frame({"c1": series})


@pytest.mark.parametrize(
    ("tail_spend", "tail_leads", "expected_rules"),
    [
        pytest.param([1000, 1000], [0, 0], {"cpl-spike-1d", "cpl-spike-3d", "leads-stopped"}, id="zero-leads-with-spend"),
        pytest.param([1000, 1000], [10, 11], set(), id="normal-days"),
        pytest.param([1000, 1000], [20, 22], set(), id="cheaper-leads-never-alert"),
        pytest.param([2000, 2000], [20, 19], set(), id="budget-doubles-same-cpl"),
        pytest.param([500, 450], [5, 4], set(), id="weekend-dip"),
        pytest.param([1000, 1000], [1, 1], {"cpl-spike-1d", "leads-stopped"}, id="10x-spike"),
    ],
)
def test_rules_on_the_last_two_days(tail_spend, tail_leads, expected_rules):
    metrics = _with_tail(60, tail_spend, tail_leads)
    findings = _run(metrics).findings
    assert set(findings.loc[findings["date"] >= metrics["date"].max() - pd.Timedelta(days=1), "rule"]) == expected_rules
    assert findings[findings["date"] < metrics["date"].max() - pd.Timedelta(days=1)].empty


def test_low_volume_noise_never_alerts():
    metrics = daily_frame({"small": steady(150, 150.0, 150.0, seed=7)})
    assert _run(metrics).findings.empty
    assert ((metrics["leads"] == 0).mean() > 0.3) and metrics["leads"].max() >= 2  # really 0..2+ a day


def test_cheaper_leads_never_alert_even_with_the_forest():
    series = steady(240, 1000.0, 100.0, seed=3)
    series["leads"][200:] = np.random.default_rng(5).poisson(series["spend"][200:] / 33)  # a third of the cost
    metrics = daily_frame({"c1": series, **{f"o{i}": steady(240, 800.0, 90.0, seed=10 + i) for i in range(4)}})
    detection = _run(metrics, params=DetectionConfig())
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


def test_incident_resolves_after_quiet_days():
    metrics = _with_tail(60, [1000] * 3 + [1000] * 5, [1] * 3 + [10, 11, 9, 10, 10])
    episode = _run(metrics).episodes.iloc[0]
    first = metrics["date"].iloc[60]
    assert (episode["onset"], episode["detected_on"]) == (first, first)
    assert episode["last_active"] == first + pd.Timedelta(days=2)
    assert episode["resolved_on"] == first + pd.Timedelta(days=4)  # two quiet days (resolve_after_days)


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
    alone = _run(metrics, [CplRatioRule(**NOISY)], params=DetectionConfig())
    gated = _run(metrics, [CplRatioRule(**NOISY, forest={"mode": "require", "min_score": 0.99})], params=DetectionConfig())
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
        pytest.param({"mode": "escalate", "min_score": 0.5}, DetectionConfig(), {"critical"}, id="escalate-warning-to-critical"),
        pytest.param({"mode": "escalate", "min_score": 0.5}, NO_FOREST, {"warning"}, id="escalate-without-model"),
        pytest.param({"mode": "ignore"}, DetectionConfig(), {"warning"}, id="ignore"),
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
        pytest.param(LeadShortfallRule(type="lead_shortfall", name="s", warning=0.5, window_days=1), [61], id="shortfall"),
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
    params = DetectionConfig()
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
