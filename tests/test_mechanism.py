"""What broke: the mechanism of an incident and its excess cost split by mechanism."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from anomaly.alerts.render import headline, label, next_step, render_text
from anomaly.config import CplRatioRule, DetectionConfig, ThresholdRule
from anomaly.detect import detect
from anomaly.incidents import build_incidents, reconcile
from anomaly.mechanism import CONVERSION_RATE, COST_PER_CLICK, SPEND, TRACKING, VOLUME, change_explains, clear, diagnose
from anomaly.schema import empty_changes
from tests.helpers import daily_frame, periods


def test_leads_that_stop_while_clicks_go_on_are_tracking():
    # Lakeside Law in the demo: clicks 200, 172, 120, 119 and leads 3, 0, 0, 0 at about $9 a click
    spend = [1800.0, 1548.0, 1080.0, 1071.0]
    diagnosis = diagnose("cost_per_lead", spend, [200, 172, 120, 119], [3, 0, 0, 0], baseline_cpl=220.0, baseline_cpc=9.0)
    assert diagnosis.mechanism == TRACKING
    # the split still adds up to the excess
    assert sum(diagnosis.excess_by_mechanism.values()) == pytest.approx(sum(spend) - 3 * 220.0)


def test_cheaper_clicks_that_convert_far_worse_are_the_conversion_rate_with_both_parts_shown():
    # Harbor Dental in the demo: broad match and maximize clicks buy 702 clicks at $2.40 where $4 was
    # usual, and 3 leads where 1,684 / 101 ≈ 17 were due
    diagnosis = diagnose("cost_per_lead", [1684.20], [702], [3], baseline_cpl=101.0, baseline_cpc=4.0)
    assert diagnosis.mechanism == CONVERSION_RATE
    parts = diagnosis.excess_by_mechanism
    assert parts[COST_PER_CLICK] == pytest.approx(1684.20 - 702 * 4.0)  # negative: the clicks cost less than usual
    assert parts[CONVERSION_RATE] == pytest.approx(702 * 4.0 - 3 * 101.0)
    assert sum(parts.values()) == pytest.approx(1684.20 - 3 * 101.0)


def test_dearer_clicks_that_convert_as_usual_are_the_cost_per_click():
    # $1,000 buys 100 clicks at $10 where $4 was usual; they convert at the usual 5%
    diagnosis = diagnose("cost_per_lead", [1000.0], [100], [5], baseline_cpl=80.0, baseline_cpc=4.0)
    assert diagnosis.mechanism == COST_PER_CLICK
    assert diagnosis.excess_by_mechanism[COST_PER_CLICK] == pytest.approx(600.0)
    assert diagnosis.excess_by_mechanism[CONVERSION_RATE] == pytest.approx(0.0)


def test_a_spend_incident_is_spend_and_a_weak_day_is_not_tracking():
    assert diagnose("spend", [5000.0], [1200], [40], baseline_cpl=100.0, baseline_cpc=4.0).mechanism == SPEND
    # a tenth of the leads due, but not all but none: the conversion rate, not a broken tag
    assert diagnose("cost_per_lead", [2000.0, 2000.0], [500, 500], [2, 2], baseline_cpl=100.0, baseline_cpc=4.0).mechanism == CONVERSION_RATE
    # no clicks recorded and no baseline cost per click: the data cannot tell
    assert diagnose("cost_per_lead", [1000.0], [0], [1], baseline_cpl=100.0, baseline_cpc=float("nan")).mechanism is None


@pytest.mark.parametrize(
    ("change", "mechanism", "explains"),
    [
        (("CAMPAIGN", "UPDATE", "bidding_strategy_type: MAXIMIZE_CONVERSIONS -> MAXIMIZE_CLICKS"), COST_PER_CLICK, True),
        (("CAMPAIGN", "UPDATE", "bidding_strategy_type: MAXIMIZE_CONVERSIONS -> MAXIMIZE_CLICKS"), CONVERSION_RATE, True),
        (("AD_GROUP_CRITERION", "UPDATE", "keyword.match_type: PHRASE -> BROAD (38 keywords)"), CONVERSION_RATE, True),
        (("CAMPAIGN_BUDGET", "UPDATE", "amount_micros: 1300000000 -> 2500000000"), SPEND, True),
        (("CAMPAIGN_BUDGET", "UPDATE", "amount_micros: 1300000000 -> 2500000000"), CONVERSION_RATE, False),
        (("CUSTOMER_USER_ACCESS", "CREATE", "access_role: ADMIN (Beacon Reach)"), COST_PER_CLICK, False),
        (("CONVERSION_ACTION", "UPDATE", "status: ENABLED -> REMOVED"), TRACKING, False),  # a status change: no tracking words
        (("CONVERSION_ACTION", "UPDATE", "tag_snippets"), TRACKING, True),
    ],
)
def test_which_changes_plausibly_explain_which_mechanism(change, mechanism, explains):
    resource_type, operation, fields = change
    assert change_explains({"resource_type": resource_type, "operation": operation, "changed_fields": fields}, mechanism) is explains


def test_a_mechanism_is_clear_when_its_part_is_twice_the_others():
    assert clear(TRACKING, {})
    assert clear(COST_PER_CLICK, {COST_PER_CLICK: 900.0, CONVERSION_RATE: 300.0})
    assert not clear(COST_PER_CLICK, {COST_PER_CLICK: 500.0, CONVERSION_RATE: 400.0})
    assert not clear(CONVERSION_RATE, {COST_PER_CLICK: 0.0, CONVERSION_RATE: -5.0})


def _payload(mechanism: str, changes: list[dict]) -> dict:
    return {
        "family": "cost_per_lead", "account_name": "A", "campaign_name": "C", "leads": 3.0, "cpl": 500.0, "baseline_cpl": 100.0,
        "metric": "cpl", "rule": "r", "mechanism": mechanism, "managing_party": "beacon", "changes": changes, "currency": "USD",
    }


def test_the_next_step_follows_the_mechanism_and_the_changes_that_fit_it():
    name = {"beacon": "Beacon Reach"}.get
    bidding = {"party": "beacon", "resource_type": "CAMPAIGN", "operation": "UPDATE", "changed_fields": "bidding_strategy_type: TARGET_CPA -> MAXIMIZE_CLICKS"}
    assert next_step(_payload(COST_PER_CLICK, [bidding]), name) == "Review the bidding changes Beacon Reach made before onset; roll back if it continues."
    assert next_step(_payload(COST_PER_CLICK, []), name).startswith("Review bids, bid strategy and match types")
    assert next_step(_payload(CONVERSION_RATE, []), name).startswith("Check landing pages and lead forms")
    assert next_step(_payload(TRACKING, [bidding]), name).startswith("Check conversion tracking and lead forms")


def test_an_incident_that_turns_out_to_be_lost_tracking_is_updated_and_says_so(store):
    # a weak day (3 leads where 10 were due), then none at all while the clicks go on
    spend = np.full(64, 1000.0)
    leads = np.concatenate([np.tile([10.0, 9, 11, 10], 15), [3.0, 0, 0, 0]])
    clicks = np.full(64, 250.0)
    metrics = daily_frame({"c1": {"spend": spend, "leads": leads, "clicks": clicks}})
    rule = CplRatioRule(type="cpl_ratio", name="spike", warning=2.0, critical=20.0, max_p_value=0.05)
    day = metrics["date"].iloc[60].date()
    for as_of in (day, day + dt.timedelta(days=3)):
        detection = detect(metrics[metrics["date"] <= pd.Timestamp(as_of)], periods(), [rule], DetectionConfig(account_level=False))
        store.save_incidents(reconcile(store.load_incidents(), build_incidents(detection, empty_changes(), {}), as_of, ["console"]))
    opened, updated = store.pending()
    assert (opened.event, opened.payload["mechanism"]) == ("opened", CONVERSION_RATE)
    assert (updated.event, updated.payload["update"]["mechanism"]) == ("updated", TRACKING)
    assert label(updated.event, updated.payload) == "[NOW LEADS STOPPED]"
    assert render_text(updated.event, updated.payload).splitlines()[0] == "[NOW LEADS STOPPED] Leads stopped while clicks go on — A / c1"


def test_clicks_that_dry_up_are_volume_with_its_next_step():
    # 250 clicks a day for two months, then 20: ads disapproved, a budget run dry, a pause
    spend = np.concatenate([np.full(60, 1000.0), np.full(3, 80.0)])
    clicks = np.concatenate([np.full(60, 250.0), np.full(3, 20.0)])
    leads = np.concatenate([np.tile([10.0, 9, 11, 10], 15), [1.0, 1, 0]])
    metrics = daily_frame({"c1": {"spend": spend, "leads": leads, "clicks": clicks}})
    rule = ThresholdRule(type="threshold", name="clicks-floor", metric="clicks", direction="below", warning=100, window_days=1)
    detection = detect(metrics, periods(), [rule], DetectionConfig(account_level=False))
    (incident,) = build_incidents(detection, empty_changes(), {})
    assert (incident.family, incident.mechanism) == ("clicks", VOLUME)
    payload = incident.payload()
    assert headline(payload) == "Clicks down to 8% of usual — A / c1"
    assert next_step(payload, str) == "Check for disapproved ads, an exhausted budget or a paused campaign."
    status = {"resource_type": "CAMPAIGN", "operation": "UPDATE", "changed_fields": "status: ENABLED -> PAUSED"}
    assert change_explains(status, VOLUME)
