"""Incidents over time: attribution, excess cost, open → updated → resolved, and the outbox."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from anomaly.alerts import DeliveryError, deliver
from anomaly.alerts.render import render_text
from anomaly.config import CplRatioRule, DetectionConfig, ForestConfig
from anomaly.detect import detect
from anomaly.incidents import build_incidents, reconcile
from anomaly.schema import empty_changes, normalise_changes
from tests.helpers import daily_frame, periods

NO_FOREST = DetectionConfig(forest=ForestConfig(enabled=False))
RULE = CplRatioRule(type="cpl_ratio", name="spike", warning=2.0, critical=6.0, max_p_value=0.05)
DOMAINS = {"agency.example": "agency", "partner.example": "partner"}


def _spike_metrics(tail_leads=(2, 2, 2, 2)) -> pd.DataFrame:
    spend = np.full(60 + len(tail_leads), 1000.0)
    leads = np.concatenate([np.tile([10.0, 9, 11, 10], 15), np.asarray(tail_leads, dtype=float)])
    return daily_frame({"c1": {"spend": spend, "leads": leads}})


def _incident(metrics, ownership=None, changes=None):
    ownership = periods(("A", "", "agency", "2025-01-01", None)) if ownership is None else ownership
    detection = detect(metrics, ownership, [RULE], NO_FOREST)
    incidents = build_incidents(detection, empty_changes() if changes is None else changes, DOMAINS)
    assert len(incidents) == 1
    return incidents[0]


def test_excess_cost_is_split_by_the_party_managing_each_day():
    metrics = _spike_metrics()
    onset = metrics["date"].iloc[60]
    handoff = onset + pd.Timedelta(days=2)
    ownership = periods(("A", "", "agency", "2025-01-01", handoff), ("A", "", "partner", handoff, None))
    incident = _incident(metrics, ownership)
    per_day = 1000 - 2 * incident.baseline_cpl
    assert incident.onset == onset.date() and incident.managing_party == "agency"
    assert incident.excess_cost == pytest.approx(4 * per_day)
    assert incident.excess_by_party == pytest.approx({"agency": 2 * per_day, "partner": 2 * per_day})
    assert incident.baseline_cpl == pytest.approx(100, rel=0.05)


def test_changes_before_onset_are_attributed_by_email_domain():
    metrics = _spike_metrics()
    onset = metrics["date"].iloc[60]
    changes = normalise_changes(
        pd.DataFrame(
            [
                (onset - pd.Timedelta(days=10), "A", "c1", "old@agency.example", "CAMPAIGN", "UPDATE", "too early"),
                (onset - pd.Timedelta(hours=20), "A", "c1", "x@partner.example", "CAMPAIGN", "UPDATE", "bid strategy"),
                (onset - pd.Timedelta(hours=2), "A", "", "y@mail.partner.example", "CUSTOMER", "UPDATE", "account level"),
                (onset - pd.Timedelta(hours=1), "A", "c9", "z@agency.example", "CAMPAIGN", "UPDATE", "another campaign"),
                (onset - pd.Timedelta(hours=1), "B", "c1", "z@agency.example", "CAMPAIGN", "UPDATE", "another account"),
                (onset + pd.Timedelta(hours=3), "A", "c1", "someone@gmail.example", "AD", "CREATE", "same day"),
            ],
            columns=["changed_at", "account_id", "campaign_id", "user_email", "resource_type", "operation", "changed_fields"],
        )
    )
    rule_run = (onset + pd.Timedelta(hours=4), "A", "c1", "x@partner.example", "GOOGLE_ADS_AUTOMATED_RULE", "CAMPAIGN_BUDGET", "UPDATE", "by a rule")
    changes = pd.concat([changes, normalise_changes(pd.DataFrame([rule_run], columns=["changed_at", "account_id", "campaign_id", "user_email", "client_type", "resource_type", "operation", "changed_fields"]))])
    incident = _incident(metrics, changes=changes)
    assert [(c.changed_fields, c.party) for c in incident.changes] == [
        ("bid strategy", "partner"),
        ("account level", "partner"),
        ("same day", "unattributed"),
        ("by a rule", "automated"),  # a rule the partner set up is not the partner's hand
    ]


SINKS = ["console", "jsonl:/tmp/a.jsonl"]


def _events(store) -> list[tuple[str, str]]:
    return [(item.event, item.sink) for item in store.pending()]


def test_lifecycle_opened_updated_resolved_each_notified_once(store):
    metrics = _spike_metrics(tail_leads=(4, 4, 0, 0) + (10,) * 8)
    day = metrics["date"].iloc[60].date()

    def cycle(as_of: dt.date) -> None:
        detection = detect(metrics[metrics["date"] <= pd.Timestamp(as_of)], periods(), [RULE], NO_FOREST)
        incidents = build_incidents(detection, empty_changes(), DOMAINS)
        store.save_incidents(reconcile(store.load_incidents(), incidents, as_of, SINKS))

    cycle(day)
    assert _events(store) == [("opened", s) for s in SINKS]
    cycle(day)  # the same cycle again: nothing new
    assert len(store.pending()) == 2
    cycle(day + dt.timedelta(days=2))  # no leads at all: critical
    assert _events(store)[2:] == [("updated", s) for s in SINKS]
    cycle(day + dt.timedelta(days=9))  # normal since day 4, but the week is still short of leads
    assert len(store.pending()) == 4
    cycle(day + dt.timedelta(days=10))  # the week is back to normal, and two quiet days: resolved
    assert _events(store)[4:] == [("resolved", s) for s in SINKS]
    cycle(day + dt.timedelta(days=10))
    assert len(store.pending()) == 6
    (row,) = store.load_incidents()
    assert (row["status"], row["severity"], row["resolved_on"]) == ("resolved", "critical", day + dt.timedelta(days=10))


def test_history_is_recorded_not_announced(store):
    metrics = _spike_metrics(tail_leads=(2, 2, 10, 10, 10, 10))
    incident = _incident(metrics)
    assert incident.status == "resolved"
    store.save_incidents(reconcile([], [incident], metrics["date"].max().date(), SINKS))
    (row,) = store.load_incidents()
    assert row["notified"] is False and store.pending() == []


def test_an_open_incident_that_restated_data_no_longer_shows_is_resolved(store):
    incident = _incident(_spike_metrics())
    as_of = dt.date(2026, 3, 10)
    store.save_incidents(reconcile([], [incident], as_of, SINKS))
    store.save_incidents(reconcile(store.load_incidents(), [], as_of, SINKS))
    (row,) = store.load_incidents()
    assert row["status"] == "resolved" and row["details"]["resolved_by_restatement"] is True
    assert [e for e, _ in _events(store)] == ["opened", "opened", "resolved", "resolved"]


class FlakySink:
    """Fails the first ``failures`` sends, then records what it delivered."""

    def __init__(self, name: str, failures: int = 0):
        self.name, self.failures, self.delivered = name, failures, []

    def send(self, event: str, payload: dict, delivery=None) -> None:
        if self.failures:
            self.failures -= 1
            raise DeliveryError("service unavailable", retryable=True)
        self.delivered.append((event, payload["incident_id"]))


def test_an_outage_loses_nothing_and_sends_nothing_twice(store):
    incident = _incident(_spike_metrics())
    store.save_incidents(reconcile([], [incident], dt.date(2026, 3, 10), ["flaky"]))
    sink = FlakySink("flaky", failures=2)
    first = deliver(store, [sink])
    assert (first.sent, first.failed, first.pending) == (0, 1, 1)
    assert store.pending()[0].attempts == 1
    deliver(store, [sink])
    third = deliver(store, [sink])
    assert (third.sent, third.pending) == (1, 0)
    deliver(store, [sink])
    assert sink.delivered == [("opened", store.load_incidents()[0]["id"])]


def test_an_incidents_notifications_go_out_in_order_after_an_outage(store):
    metrics = _spike_metrics(tail_leads=(4, 4, 0, 0) + (10,) * 8)
    day = metrics["date"].iloc[60].date()
    sink = FlakySink("flaky", failures=1)
    for as_of in (day, day + dt.timedelta(days=2)):  # opened, then critical: two notifications pending
        detection = detect(metrics[metrics["date"] <= pd.Timestamp(as_of)], periods(), [RULE], NO_FOREST)
        store.save_incidents(reconcile(store.load_incidents(), build_incidents(detection, empty_changes(), DOMAINS), as_of, ["flaky"]))
    first = deliver(store, [sink])  # "opened" fails: "updated" waits for it instead of overtaking it
    assert (first.sent, first.failed, first.pending) == (0, 1, 2) and sink.delivered == []
    deliver(store, [sink])
    assert [event for event, _ in sink.delivered] == ["opened", "updated"]


def test_a_notification_for_a_sink_no_longer_configured_is_kept(store):
    incident = _incident(_spike_metrics())
    store.save_incidents(reconcile([], [incident], dt.date(2026, 3, 10), ["old-sink"]))
    report = deliver(store, [FlakySink("new-sink")])
    assert (report.sent, report.failed, report.pending) == (0, 1, 1)
    assert "not configured" in (store.pending()[0].attempts and "not configured")


def test_payload_is_json_ready_with_infinite_cost_per_lead():
    metrics = _spike_metrics(tail_leads=(0, 0))
    incident = _incident(metrics)
    payload = incident.payload()
    assert payload["observed"] is None and payload["leads"] == 0 and payload["cpl"] is None
    record = incident.backtest_record()
    assert record["observed"] is None and record["campaign_id"] == "c1"
    assert dataclasses.replace(incident, campaign_id="").backtest_record()["campaign_id"] is None


def test_a_warning_handed_over_that_the_new_party_makes_critical_is_two_incidents():
    # a warning under the agency (leads 4 where 10 were due), the partner takes over two days in,
    # and three days later its own days turn critical (no leads for $1,000 a day)
    spend = np.full(70, 1000.0)
    leads = np.concatenate([np.tile([10.0, 9, 11, 10], 15), [4.0, 4, 4, 4, 4, 0, 0, 0, 0, 0]])
    metrics = daily_frame({"c1": {"spend": spend, "leads": leads}})
    handoff = metrics["date"].iloc[62]
    ownership = periods(("A", "", "agency", "2025-01-01", handoff), ("A", "", "partner", handoff, None))
    detection = detect(metrics, ownership, [RULE], NO_FOREST)
    first, second = build_incidents(detection, empty_changes(), DOMAINS)

    assert (first.managing_party, first.severity, first.handed_over_to) == ("agency", "warning", "partner")
    assert first.resolved_on == handoff.date() and first.last_active < handoff.date()
    assert set(first.excess_by_party) == {"agency"}
    assert (second.managing_party, second.severity, second.status) == ("partner", "critical", "open")
    assert second.onset >= handoff.date()
    assert render_text("resolved", first.payload()).splitlines()[-2].endswith(
        "; handed over to partner with the problem still open: their days are a new incident of their own"
    )

    kept = DetectionConfig(forest=ForestConfig(enabled=False), incidents={"split_at_handover": False})
    (one,) = build_incidents(detect(metrics, ownership, [RULE], kept), empty_changes(), DOMAINS)
    assert one.managing_party == "agency" and set(one.excess_by_party) == {"agency", "partner"}
