"""The detection-quality scorer on tiny hand-made portfolios whose answers are known by construction."""

from __future__ import annotations

import math

import numpy as np

import pandas as pd
import pytest

from benchmarks.score import score

EVAL_START, END = pd.Timestamp("2026-01-01"), pd.Timestamp("2026-03-31")


def truth_frame(*rows: dict) -> pd.DataFrame:
    defaults = {
        "magnitude": 3.0, "mechanism": "", "scope": "campaign", "party": "agency", "true_excess": 1000.0,
        "base_leads_per_day": 5.0, "doubles_on": pd.NaT, "after_handoff": False,
    }
    frame = pd.DataFrame([{**defaults, **row} for row in rows])
    for column in ("onset", "end", "doubles_on"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


def alert_frame(*rows: tuple) -> pd.DataFrame:
    columns = ["account_id", "campaign_id", "family", "detected_on", "managing_party", "excess_cost"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["onset"] = frame["detected_on"]
    return frame


def run(alerts: pd.DataFrame, truth: pd.DataFrame, campaign_days: int = 1000):
    return score(alerts, truth, campaign_days=campaign_days, eval_start=EVAL_START, end=END)


@pytest.fixture
def portfolio() -> pd.DataFrame:
    return truth_frame(
        {"incident_id": 1, "cls": "spike", "account_id": "A", "campaign_id": "a1", "onset": "2026-01-10", "end": "2026-01-15", "party": "beacon"},
        {"incident_id": 2, "cls": "tracking_loss", "magnitude": 0.0, "scope": "account", "account_id": "B", "campaign_id": "",
         "onset": "2026-02-01", "end": "2026-02-05", "true_excess": 2000.0},
        {"incident_id": 3, "cls": "creep", "magnitude": 0.05, "account_id": "A", "campaign_id": "a2", "onset": "2026-03-01",
         "end": "2026-03-20", "doubles_on": "2026-03-10", "true_excess": 500.0},
        {"incident_id": 4, "cls": "spend_runaway", "magnitude": 4.0, "account_id": "C", "campaign_id": "c9", "onset": "2026-03-01", "end": "2026-03-04"},
    )


@pytest.fixture
def alerts() -> pd.DataFrame:
    return alert_frame(
        ("A", "a1", "cost_per_lead", "2026-01-11", "beacon", 800.0),  # hit, one day after onset
        ("A", "a1", "cost_per_lead", "2026-01-17", "beacon", 300.0),  # late, within the grace days
        ("A", "", "spend", "2026-01-12", "beacon", 50.0),  # account-level: explained, not a detection
        ("B", "b5", "cost_per_lead", "2026-02-07", "beacon", 1500.0),  # account-wide incident: party mismatch
        ("B", "b5", "leads", "2026-02-07", "beacon", 1900.0),
        ("B", "b6", "cost_per_lead", "2026-02-07", "beacon", 300.0),
        ("C", "c9", "cost_per_lead", "2026-01-11", "agency", 10.0),  # false: nothing there
        ("A", "a1", "cost_per_lead", "2026-01-19", "beacon", 10.0),  # false: past the grace days
        ("A", "a1", "cost_per_lead", "2025-12-20", "agency", 10.0),  # before eval_start: ignored
        ("A", "a2", "cost_per_lead", "2026-03-08", "agency", 600.0),  # creep caught before it doubles
    )


def test_alert_counts_precision_recall(portfolio, alerts):
    s = run(alerts, portfolio)
    assert (s.alerts, s.true_alerts, s.false_alerts) == (9, 7, 2)
    assert s.precision == pytest.approx(7 / 9)
    assert s.recall == pytest.approx(3 / 4)
    assert s.f1 == pytest.approx(2 * (7 / 9) * 0.75 / (7 / 9 + 0.75))
    assert s.false_per_1k_campaign_days == pytest.approx(2.0)


def test_recall_by_class_and_large_spikes(portfolio, alerts):
    s = run(alerts, portfolio)
    assert s.recall_by_class == {"spike": 1.0, "tracking_loss": 1.0, "creep": 1.0, "spend_runaway": 0.0}
    assert s.recall_by_spike_factor[3.0] == 1.0 and math.isnan(s.recall_by_spike_factor[10.0])
    assert (s.recall_big_spikes, s.median_delay_big_spikes) == (1.0, 1.0)
    assert s.creep_before_double == 1.0


def test_delays_party_and_excess(portfolio, alerts):
    s = run(alerts, portfolio)
    per = s.incidents.set_index("incident_id")
    assert per["delay_days"].loc[[1, 2, 3]].tolist() == [1, 6, 7]
    assert (s.median_delay, s.p90_delay) == (6.0, pytest.approx(6.8))
    assert per["party_correct"].loc[[1, 2, 3]].tolist() == [True, False, True]
    assert s.party_accuracy == pytest.approx(2 / 3)
    # a1: 800 + 300 of one family; B: the best family summed over campaigns (leads 1900 > cpl 1800)
    assert per["excess_estimate"].loc[[1, 2, 3]].tolist() == [1100.0, 1900.0, 600.0]
    assert per["excess_error"].loc[[1, 2, 3]].tolist() == pytest.approx([0.1, 0.05, 0.2])
    assert s.median_excess_error == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("alerts", "detected", "false_alerts", "estimate"),
    [
        pytest.param(alert_frame(("B", "", "leads", "2026-02-02", "agency", 2100.0), ("B", "b5", "leads", "2026-02-02", "agency", 900.0)),
                     True, 0, 2100.0, id="account-level-alert-preferred-for-account-incident"),
        pytest.param(alert_frame(("B", "b5", "leads", "2026-02-09", "agency", 900.0)), False, 1, None, id="one-day-past-grace"),
        pytest.param(alert_frame(("B", "b5", "leads", "2026-01-31", "agency", 900.0)), False, 1, None, id="day-before-onset"),
    ],
)
def test_account_incident(alerts, detected, false_alerts, estimate):
    truth = truth_frame({"incident_id": 1, "cls": "tracking_loss", "scope": "account", "account_id": "B", "campaign_id": "",
                         "onset": "2026-02-01", "end": "2026-02-05", "true_excess": 2000.0})
    s = run(alerts, truth)
    assert (s.recall, s.false_alerts) == (float(detected), false_alerts)
    if estimate is not None:
        assert s.incidents["excess_estimate"].iloc[0] == estimate


def test_account_level_alert_explains_but_does_not_detect_a_campaign_incident():
    truth = truth_frame({"incident_id": 1, "cls": "spike", "account_id": "A", "campaign_id": "a1", "onset": "2026-01-10", "end": "2026-01-15"})
    s = run(alert_frame(("A", "", "spend", "2026-01-12", "agency", 100.0)), truth)
    assert (s.alerts, s.false_alerts, s.recall, s.precision) == (1, 0, 0.0, 1.0)
    assert math.isnan(s.median_delay) and math.isnan(s.party_accuracy)


def test_no_alerts():
    truth = truth_frame({"incident_id": 1, "cls": "spike", "account_id": "A", "campaign_id": "a1", "onset": "2026-01-10", "end": "2026-01-15"})
    s = run(alert_frame(), truth)
    assert (s.alerts, s.recall) == (0, 0.0)
    assert math.isnan(s.precision) and math.isnan(s.f1)
    assert not s.incidents["detected"].any()


def test_the_oracle_finds_what_the_data_can_show_and_nothing_else():
    from benchmarks.score import oracle_row

    days = pd.date_range("2026-01-10", periods=6, freq="D")

    def rows(campaign: str, leads: float, clicks: float) -> pd.DataFrame:
        return pd.DataFrame({"date": days, "account_id": "A", "campaign_id": campaign, "spend": 1000.0, "leads": leads, "clicks": clicks})

    # a1: no leads where 10 a day were due; a2: 8 leads a day for 10 due, too little to tell;
    # a3: a cost-per-click spike in a small campaign, 3 leads where 9 were due (not proof on its
    # own), but 60 clicks where 300 were due
    metrics = pd.concat([rows("a1", 0.0, 500.0), rows("a2", 8.0, 400.0), rows("a3", 0.5, 10.0)], ignore_index=True)
    truth = truth_frame(
        {"incident_id": 1, "cls": "spike", "magnitude": 10.0, "account_id": "A", "campaign_id": "a1", "onset": "2026-01-10", "end": "2026-01-15",
         "true_excess": 6000.0, "base_leads_per_day": 10.0},
        {"incident_id": 2, "cls": "spike", "magnitude": 1.5, "account_id": "A", "campaign_id": "a2", "onset": "2026-01-10", "end": "2026-01-15",
         "true_excess": 1200.0},
        {"incident_id": 3, "cls": "spike", "magnitude": 5.0, "mechanism": "cpc", "account_id": "A", "campaign_id": "a3", "onset": "2026-01-10",
         "end": "2026-01-15", "true_excess": 4000.0},
    )
    row = oracle_row(truth, metrics)
    assert row["recall"] == pytest.approx(2 / 3)
    assert (row["recall_spike_10x"], row["recall_spike_1.5x"], row["recall_spike_5x"]) == (1.0, 0.0, 1.0)
    without_clicks = oracle_row(truth.assign(mechanism=""), metrics)
    assert without_clicks["recall_spike_5x"] == 0.0  # the leads alone do not show it


def _history_then(span: dict[str, list[float]], before: dict[str, list[float]], campaign: str = "n1") -> pd.DataFrame:
    """Rows of one campaign: the ``before`` days (cycled over 28 days) up to 2026-02-28, then ``span`` from 2026-03-01."""
    days_before = pd.date_range("2026-02-01", "2026-02-28", freq="D")
    history = pd.DataFrame({name: np.resize(values, len(days_before)) for name, values in before.items()})
    history["date"] = days_before
    during = pd.DataFrame(span)
    during["date"] = pd.date_range("2026-03-01", periods=len(during), freq="D")
    return pd.concat([history, during], ignore_index=True).assign(account_id="N", campaign_id=campaign)


def test_the_oracle_allows_for_the_day_to_day_variation_the_campaigns_own_history_shows():
    from benchmarks.score import oracle_found

    # 40 leads a day due, 26 a day for three days (0.65×): implausible as Poisson counts ...
    span = {"spend": [1000.0] * 3, "leads": [26.0] * 3, "clicks": [500.0] * 3}
    truth = truth_frame({"incident_id": 1, "cls": "spike", "magnitude": 1.5, "account_id": "N", "campaign_id": "n1", "onset": "2026-03-01",
                         "end": "2026-03-03", "true_excess": 1000.0, "base_leads_per_day": 40.0})
    steady = _history_then(span, {"spend": [1000.0], "leads": [39.0, 41.0], "clicks": [500.0]})
    assert oracle_found(truth, steady)[0].loc[1]
    # ... but not for a campaign whose leads for the same spend swing from 20 to 60 from day to day
    swinging = _history_then(span, {"spend": [1000.0], "leads": [20.0, 60.0, 25.0, 55.0], "clicks": [500.0]})
    assert not oracle_found(truth, swinging)[0].loc[1]


@pytest.mark.parametrize(("history_spend", "visible"), [([950.0, 1050.0], True), ([300.0, 2500.0, 600.0, 1800.0], False)])
def test_a_spend_runaway_is_visible_when_its_spend_stands_out_from_the_campaigns_own(history_spend, visible):
    from benchmarks.score import oracle_found

    span = {"spend": [3000.0] * 2, "leads": [60.0] * 2, "clicks": [1500.0] * 2}
    metrics = _history_then(span, {"spend": history_spend, "leads": [20.0], "clicks": [500.0]})
    truth = truth_frame({"incident_id": 1, "cls": "spend_runaway", "magnitude": 3.0, "account_id": "N", "campaign_id": "n1",
                         "onset": "2026-03-01", "end": "2026-03-02"})
    assert oracle_found(truth, metrics)[0].loc[1] == visible
