"""The analyst API: the demo's data, baselines, incidents and backtests as DataFrames."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from anomaly import sample
from anomaly.analysis import NoData, Project, compare_backtests
from anomaly.cli import main
from anomaly.errors import ConfigError
from anomaly.schema import normalise_changes, normalise_ownership
from tests.helpers import copy_default_project, daily_frame, steady

STORY = sample.STORY_CAMPAIGN


@pytest.fixture(scope="module")
def project(demo_config: Path) -> Project:
    return Project.open(demo_config)


def test_open_follows_anomaly_config(demo_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no config.yaml here
    monkeypatch.setenv("ANOMALY_CONFIG", str(demo_config))
    opened = Project.open()
    assert opened.config_path == demo_config.resolve()
    assert len(opened.incidents()) == 2


def test_metrics_derive_rates_and_the_managing_party(project):
    frame = project.metrics(account=STORY.account_id, campaign=STORY.campaign_id, start="2026-07-07", end="2026-07-10")
    assert frame["date"].dt.strftime("%m-%d").tolist() == ["07-07", "07-08", "07-09", "07-10"]
    spike = frame.iloc[-1]
    spend, clicks, leads = sample.STORY_DAYS[sample.ONSET]
    assert (spike["spend"], spike["clicks"], spike["leads"]) == (spend, clicks, leads)
    assert spike["cpl"] == pytest.approx(spend / leads) and spike["cpc"] == pytest.approx(spend / clicks) and spike["cvr"] == pytest.approx(leads / clicks)
    assert frame["party_name"].tolist() == ["Northwind Digital", "Beacon Reach", "Beacon Reach", "Beacon Reach"]
    assert project.metrics(account="0000000000").empty


def test_daily_shows_the_baseline_the_alert_compared_with(project):
    days = project.daily(account=STORY.account_id)
    assert set(days["campaign_id"]) == {"", "20118341", "20118342", "20118343"}  # the account total too
    onset = days[(days["campaign_id"] == STORY.campaign_id) & (days["date"] == pd.Timestamp(sample.ONSET))].iloc[0]
    incident = project.incidents(party="beacon").iloc[0]
    assert onset["baseline_cpl"] == pytest.approx(incident["baseline_cpl"], abs=1e-3)
    assert (onset["severity"], onset["rules"], onset["managing_party"]) == ("critical", "cpl-spike-1d", "beacon")
    assert onset["band_low"] == pytest.approx(0.7 * onset["baseline_cpl"]) and onset["band_high"] == pytest.approx(1.3 * onset["baseline_cpl"])
    assert bool(onset["left_out"]) and bool(onset["held"])  # the spike stays out of the baseline, held after the handoff
    quiet = days[(days["campaign_id"] == STORY.campaign_id) & (days["date"] < pd.Timestamp(sample.HANDOFF))]
    assert not quiet["held"].any() and (quiet["severity"] == "").all()
    assert project.scores(account=STORY.account_id).columns.tolist() == ["date", "account_id", "campaign_id", "forest_score", "severity", "rules"]
    assert project.baselines(account=STORY.account_id).columns.tolist() == [
        "date", "account_id", "campaign_id", "baseline_cpl", "band_low", "band_high", "baseline_cpc",
        "expected_leads", "expected_spend", "baseline_ready", "left_out", "held",
    ]


def test_findings_are_the_rule_firings(project):
    findings = project.findings()
    story = findings[findings["campaign_id"] == STORY.campaign_id]
    assert story["date"].min() == pd.Timestamp(sample.ONSET)
    assert set(story["rule"]) >= {"cpl-spike-1d"}


def test_incidents_and_their_notifications(project):
    incidents = project.incidents()
    assert incidents["id"].tolist() == [1, 2]
    assert incidents["party_name"].tolist() == ["Northwind Digital", "Beacon Reach"]
    assert incidents["onset"].dt.date.tolist() == [dt for dt in (pd.Timestamp("2026-07-09").date(), sample.ONSET)]
    notes = project.notifications(2)
    assert sorted(notes["event"]) == ["opened", "opened", "updated", "updated"] and set(notes["status"]) == {"sent"}
    assert project.excess_by_day(2)["excess"].sum() == pytest.approx(incidents.iloc[1]["excess_cost"], abs=0.01)


def empty_project(folder: Path) -> Project:
    """The embedded default's config over an empty store."""
    config = copy_default_project(folder)
    (folder / "sample").mkdir()  # where its SQLite store lives
    return Project.open(config)


def test_changes_name_the_party_behind_each(tmp_path):
    project = empty_project(tmp_path)
    metrics = daily_frame({"c1": steady(20, 100, 10)})
    changes = normalise_changes(
        pd.DataFrame(
            {
                "changed_at": ["2026-01-06 10:00", "2026-01-07 11:00", "2026-01-08 12:00"],
                "account_id": "A",
                "campaign_id": "c1",
                "user_email": ["dana@beaconreach.example", "someone@elsewhere.example", ""],
                "client_type": ["GOOGLE_ADS_WEB_CLIENT", "GOOGLE_ADS_WEB_CLIENT", "GOOGLE_ADS_AUTOMATED_RULE"],
                "resource_type": "CAMPAIGN",
                "operation": "UPDATE",
                "changed_fields": "x",
            }
        )
    )
    inferred = normalise_ownership(pd.DataFrame([{"account_id": "A", "campaign_id": "", "party": "beacon", "start": "2026-01-10", "end": None}]))
    project.store.ingest("test", metrics["date"].min().date(), metrics["date"].max().date(), metrics, changes, inferred)
    assert project.changes()["party"].tolist() == ["beacon", "unattributed", "automated"]
    assert project.changes(start="2026-01-07", end="2026-01-07")["user_email"].tolist() == ["someone@elsewhere.example"]
    ownership = project.ownership()
    assert ownership[["account_id", "party", "source"]].values.tolist() == [
        ["4821937710", "northwind", "config"], ["4821937710", "beacon", "config"], ["A", "beacon", "inferred"]
    ]
    assert project.metrics()["managing_party"].tolist()[-1] == "beacon"  # from the inferred takeover on
    assert project.metrics()["managing_party"].tolist()[0] == "northwind"  # before it: the default party


def test_an_empty_store_says_what_to_do(tmp_path):
    project = empty_project(tmp_path)
    with pytest.raises(NoData, match=r"holds no metrics; run `anomaly run` \(or `anomaly demo`\) first"):
        project.daily()
    assert project.incidents().empty and project.metrics().empty


# -- tuning and backtests ------------------------------------------------------------------------


def test_backtest_equals_the_command_line(project, demo_config):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["--config", str(demo_config), "backtest", "--from", str(sample.START), "--to", str(sample.END), "--format", "json"]) == 0
    cli = json.loads(out.getvalue())
    frame = project.backtest(sample.START, sample.END)
    assert [(r["rule"], r["onset"], r["detected_on"], r["excess_cost"]) for r in cli] == [
        (r.rule, f"{r.onset:%Y-%m-%d}", f"{r.detected_on:%Y-%m-%d}", r.excess_cost) for r in frame.itertuples()
    ]


def test_tune_rules_checks_each_change(project):
    tuned = project.tune_rules({"cpl-spike-1d": {"warning": 1.5, "after_ownership_change": {"warning": 1.4}}, "cpl-creep": {"enabled": False}})
    by_name = {r.name: r for r in tuned}
    assert by_name["cpl-spike-1d"].warning == 1.5
    assert by_name["cpl-spike-1d"].after_ownership_change.warning == 1.4
    assert by_name["cpl-spike-1d"].after_ownership_change.within_days == 28  # the rest of the nested setting stays
    assert not by_name["cpl-creep"].enabled
    assert {r.name: r.warning for r in project.rules}["cpl-spike-1d"] == 2.5  # the configured rules are untouched
    with pytest.raises(ConfigError) as error:
        project.tune_rules({"cpl-spike-1d": {"warning": 0.5, "critcal": 3}, "cpl-spike-2d": {}})
    lines = str(error.value).splitlines()
    assert lines[0].startswith("tune_rules: cpl-spike-2d: no rule is named 'cpl-spike-2d' (defined: cpc-spike-1d, cpl-creep, cpl-spike-14d, ")
    assert lines[1:] == [
        "tune_rules: cpl-spike-1d.warning: must be a ratio > 1, got 0.5",
        "tune_rules: cpl-spike-1d.critcal: unknown key; did you mean 'critical'? expected one of: after_changes, after_ownership_change, baseline_lag_days, "
        "critical, description, enabled, family, forest, max_p_value, min_expected_leads, min_spend, name, scope, type, use_clicks, warning, window_days",
    ]


def test_compare_backtests_of_a_looser_rule(project):
    before = project.backtest()
    looser = project.tune_rules({"cpl-spike-1d": {"warning": 1.5, "max_p_value": 0.05}, "cpl-spike-3d": {"warning": 1.5, "max_p_value": 0.05}})
    after = project.backtest(rules=looser)
    comparison = compare_backtests(before, after)
    summary = comparison.summary
    assert summary.loc["before", "alerts"] == 2 and summary.loc["after", "alerts"] == len(after) > 2
    assert summary.loc["before", "incidents_caught"] == 2 and comparison.lost.empty
    assert len(comparison.gained) == len(after) - 2
    assert comparison.weekly.sum().tolist() == [2, len(after)]
    weeks = (sample.END - sample.START).days / 7 + 1 / 7
    assert summary.loc["after", "alerts_per_week"] == pytest.approx(len(after) / weeks, abs=0.01)
    story = comparison.incidents[comparison.incidents["campaign_id"] == STORY.campaign_id].iloc[-1]
    assert story["caught_before"] and story["caught_after"] and story["detected_before"] == pd.Timestamp(sample.ONSET)
