"""The handoff story end to end through the command line, on the embedded default."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from anomaly import sample
from anomaly.cli import main
from tests.helpers import copy_default_project


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Run `anomaly demo` once in a copy of the project; return its folder, config and output."""
    folder = tmp_path_factory.mktemp("demo")
    config = copy_default_project(folder)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--config", str(config), "demo"]) == 0
    return folder, config, out.getvalue()


def _backtest(config, capsys, *extra) -> list[dict]:
    capsys.readouterr()
    assert main(["--config", str(config), "backtest", "--from", str(sample.START), "--to", str(sample.END), "--format", "json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _story_numbers(folder) -> pd.DataFrame:
    metrics = pd.read_csv(folder / "sample" / "metrics.csv", dtype={"campaign_id": str, "account_id": str})
    story = metrics[metrics["campaign_id"] == sample.STORY_CAMPAIGN.campaign_id].copy()
    story["date"] = pd.to_datetime(story["date"]).dt.date
    return story.sort_values("date")


def test_demo_prints_the_handoff_alert_with_everything_a_cmo_needs(demo):
    _, _, output = demo
    block = next(b for b in output.split("\n\n") if "Harbor Dental Group / Generic - Leads" in b)
    assert block.splitlines()[0] == "[CRITICAL] Cost per lead 5.6× baseline: fewer leads per click — Harbor Dental Group / Generic - Leads"
    assert "  Account      Harbor Dental Group (4821937710) on Google Ads" in block
    assert "  Campaign     Generic - Leads (20118341)" in block
    assert "  Onset        Fri 2026-07-10, detected the same day" in block
    assert "  Cost/lead    $561 since onset vs $101 baseline (5.6×)" in block
    assert "  Spend        $1,684 and 3 leads since onset (through Fri 2026-07-10)" in block
    assert "  Excess cost  ~$1,383 estimated" in block
    assert "  Managed by   Beacon Reach, since 2026-07-08 (2 days before onset)" in block
    assert "dana.kim@beaconreach.example (Beacon Reach): Bid strategy: Maximize conversions → Maximize clicks" in block
    assert "ops@beaconreach.example (Beacon Reach): Budget raised from $1,300 to $2,500 a day" in block
    assert "tom.reed@northwind-digital.example (Northwind Digital): Gave Beacon Reach admin access to the account" in block
    # it comes in the cycle of the first day whose data shows the spike, not later
    cycle_of_alert = output[: output.index(block)].rsplit("── cycle for ", 1)[1][:14]
    assert cycle_of_alert == "Fri 2026-07-10"


def test_handoff_alert_on_first_spike_day_names_partner_and_excess_within_10_percent(demo, capsys):
    folder, config, _ = demo
    story = _story_numbers(folder)
    baseline_cpl = sample.STORY_CAMPAIGN.cpl
    after_handoff = story[story["date"] >= sample.HANDOFF]
    first_spike_day = after_handoff.loc[after_handoff["spend"] > 2 * baseline_cpl * after_handoff["leads"], "date"].min()
    spike = story[story["date"] >= first_spike_day]
    hand_excess = float((spike["spend"] - spike["leads"] * baseline_cpl).sum())

    alerts = _backtest(config, capsys)
    story_alerts = [a for a in alerts if a["campaign_id"] == sample.STORY_CAMPAIGN.campaign_id]
    assert len(story_alerts) == 1
    alert = story_alerts[0]
    assert alert["detected_on"] == first_spike_day.isoformat() == "2026-07-10"
    assert alert["onset"] == "2026-07-10"
    assert alert["managing_party"] == "beacon"
    assert alert["party_since"] == sample.HANDOFF.isoformat()
    assert alert["excess_cost"] == pytest.approx(hand_excess, rel=0.10)
    assert alert["observed"] > 5 * baseline_cpl and alert["baseline"] == pytest.approx(baseline_cpl, rel=0.10)


def test_no_benign_event_alerts_over_the_whole_history(demo, capsys):
    _, config, _ = demo
    alerts = _backtest(config, capsys)
    alerted = {a["campaign_id"] for a in alerts}
    assert alerted == {sample.STORY_CAMPAIGN.campaign_id, sample.TRACKING_LOSS_CAMPAIGN.campaign_id}
    assert not alerted & {c.campaign_id for c in sample.BENIGN_CAMPAIGNS}
    assert all(a["detected_on"] >= sample.ONSET.isoformat() for a in alerts)  # holidays, weekends: silent


def test_backtest_json_follows_the_contract(demo, capsys):
    _, config, _ = demo
    alerts = _backtest(config, capsys)
    required = {"account_id", "campaign_id", "rule", "severity", "onset", "detected_on", "metric", "observed", "baseline", "managing_party", "excess_cost"}
    for alert in alerts:
        assert required <= alert.keys()
        assert alert["severity"] in ("warning", "critical")
        assert len(alert["onset"]) == len(alert["detected_on"]) == 10
    tracking = next(a for a in alerts if a["campaign_id"] == sample.TRACKING_LOSS_CAMPAIGN.campaign_id)
    assert tracking["managing_party"] == "northwind" and tracking["detected_on"] == "2026-07-10"
    # what broke, and the excess split by mechanism (adding up to the excess)
    assert tracking["mechanism"] == "tracking"
    handoff = next(a for a in alerts if a["campaign_id"] == sample.STORY_CAMPAIGN.campaign_id)
    assert handoff["mechanism"] == "conversion_rate"
    parts = handoff["excess_by_mechanism"]
    assert parts["cost_per_click"] < 0 < parts["conversion_rate"]  # cheaper clicks that convert far worse
    assert sum(parts.values()) == pytest.approx(handoff["excess_cost"], abs=1.0)


def test_the_demos_lakeside_alert_says_leads_stopped_and_to_check_tracking(demo):
    _, _, output = demo
    first = "[WARNING] Leads stopped while clicks go on — Lakeside Law / Personal Injury"
    block = output[output.index(first) :].split("\n\n", 1)[0]
    assert "  Next step    Check conversion tracking and lead forms: clicks go on with no leads recorded since Fri Jul 10." in block


def test_the_demos_harbor_alert_splits_its_excess_and_points_at_the_partners_changes(demo):
    _, _, output = demo
    block = next(b for b in output.split("\n\n") if "Harbor Dental Group / Generic - Leads" in b)
    assert "               the clicks cost $1,098 less than usual · $2,481 from fewer leads per click" in block
    assert "Match type: phrase → broad (38 keywords) ← may explain the fewer leads per click" in block
    assert "  Next step    Review the bid strategy, keyword, ad and targeting changes Beacon Reach made before onset; roll back if it continues." in block


def test_backtest_with_another_rules_folder(demo, capsys, tmp_path):
    _, config, _ = demo
    strict = tmp_path / "strict"
    strict.mkdir()
    (strict / "only.yaml").write_text(
        "rules:\n  - name: huge-spikes-only\n    type: cpl_ratio\n    warning: 50\n", encoding="utf-8"
    )
    assert _backtest(config, capsys, "--rules", str(strict)) == []


def test_backtest_table_and_timing_line(demo, capsys):
    _, config, _ = demo
    capsys.readouterr()
    assert main(["--config", str(config), "backtest", "--from", "2026-07-01", "--to", "2026-07-12"]) == 0
    captured = capsys.readouterr()
    header, _, *rows = captured.out.splitlines()
    assert header.split() == ["detected", "onset", "account", "campaign", "rule", "severity", "metric", "observed", "baseline", "managed", "by", "excess"]
    # money one way in every column: the currency's symbol, whole dollars from $100 (as the alerts write it)
    assert "cost/lead  $1,165    $220      Northwind Digital  $4,733" in rows[0]
    assert "cost/lead  $561      $101      Beacon Reach       $5,617" in rows[1]
    assert captured.err.startswith("2 alert(s) in 12 day(s) over 7 campaign(s)")


def test_backtest_replays_the_whole_stored_span_without_dates(demo, capsys):
    _, config, _ = demo
    capsys.readouterr()
    assert main(["--config", str(config), "backtest", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert [r["detected_on"] for r in json.loads(captured.out)] == ["2026-07-10", "2026-07-10"]
    assert captured.err.startswith("2 alert(s) in 133 day(s) over 7 campaign(s)")  # 2026-03-02 to 2026-07-12
    assert main(["--config", str(config), "backtest", "--from", "2026-07-11", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    ("argv", "asked"),
    [
        pytest.param(["--from", "2025-01-01", "--to", "2025-01-31"], "from 2025-01-01 to 2025-01-31", id="before-the-data"),
        pytest.param(["--from", "2026-08-01"], "from 2026-08-01 on", id="after-the-data"),
        pytest.param(["--to", "2026-01-31"], "up to 2026-01-31", id="up-to-before-the-data"),
    ],
)
def test_a_backtest_outside_the_stored_span_says_which_span_the_store_holds(demo, capsys, argv, asked):
    folder, config, _ = demo
    capsys.readouterr()
    assert main(["--config", str(config), "backtest", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"No metrics {asked}: the store at sqlite:///{folder / 'sample' / 'anomaly.db'} holds metrics from 2026-03-02 to 2026-07-12; "
        "replay within that span, or leave out --from and --to to replay all of it.\n"
    )


def test_run_twice_delivers_each_alert_once(demo, capsys):
    folder, config, _ = demo
    log = folder / "sample" / "alerts.jsonl"
    before = log.read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in before]
    assert [(e["event"], e["campaign_name"], e.get("update")) for e in events] == [
        ("handover", None, None),  # Harbor Dental handed over to Beacon Reach on 07-08
        ("opened", "Personal Injury", None),
        ("opened", "Generic - Leads", None),
        ("updated", "Personal Injury", {"severity": "critical", "excess_step": None}),
        ("updated", "Generic - Leads", {"severity": None, "excess_step": 5000.0}),  # the handoff's damage passed $5,000
    ]
    for _ in range(2):
        assert main(["--config", str(config), "run", "--today", "2026-07-13"]) == 0
    assert log.read_text(encoding="utf-8").splitlines() == before
    assert "0 new notification(s), 0 sent, 0 failed, 0 pending" in capsys.readouterr().err


def test_incidents_and_report_commands(demo, capsys, tmp_path):
    _, config, _ = demo
    capsys.readouterr()
    assert main(["--config", str(config), "incidents", "--status", "open"]) == 0
    listing = capsys.readouterr().out
    assert "Harbor Dental Group" in listing and "Beacon Reach" in listing
    assert main(["--config", str(config), "report", "2", "--out", str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert "Excess cost by managing party:" in report and "Beacon Reach" in report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["incident-2.html", "incident-2.md"]
    assert main(["--config", str(config), "report", "999", "--out", str(tmp_path)]) == 1


def test_a_bad_file_is_reported_with_its_line_and_changes_nothing(tmp_path, capsys):
    config = copy_default_project(tmp_path)
    sample.write_sample(tmp_path / "sample")
    assert main(["--config", str(config), "run", "--today", "2026-07-13"]) == 0
    from anomaly.config import load_config
    from anomaly.store import Store

    store = Store(load_config(config)[0].store.url.get_secret_value())
    before = store.load_metrics()
    metrics_file = tmp_path / "sample" / "metrics.csv"
    lines = metrics_file.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    restated = lines[-2].split(",")
    restated[header.index("leads")] = "99.00"  # a good restated row in the same file: must not land
    bad = lines[-1].split(",")
    bad[header.index("spend")] = "-12.5"
    lines[-2:] = [",".join(restated), ",".join(bad)]
    metrics_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["--config", str(config), "run", "--today", "2026-07-14"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"{metrics_file}: line {len(lines)}, column spend: expected a number >= 0, got '-12.5'"
    pd.testing.assert_frame_equal(store.load_metrics(), before)
    assert store.last_pull_end("sample") == sample.END + dt.timedelta(days=1)


def test_an_acknowledged_incident_says_who_took_it_on(tmp_path, capsys):
    import datetime as dt

    from anomaly.config import load_config
    from anomaly.service import status_text
    from anomaly.store import Store

    config_path = copy_default_project(tmp_path)
    sample.write_sample(tmp_path / "sample")
    assert main(["--config", str(config_path), "run", "--today", "2026-07-13"]) == 0
    config, _ = load_config(config_path)
    store = Store(config.store.url.get_secret_value())
    harbor = next(r for r in store.load_incidents(status="open") if r["managing_party"] == "beacon")
    store.acknowledge(harbor["id"], "slack:U0DANA1 (Dana)", now=dt.datetime(2026, 7, 10, 9, 30))
    capsys.readouterr()

    assert main(["--config", str(config_path), "incidents"]) == 0
    listing = capsys.readouterr().out
    assert main(["--config", str(config_path), "report", str(harbor["id"]), "--out", str(tmp_path / "reports")]) == 0
    report = capsys.readouterr().out

    row = next(line for line in listing.splitlines() if "Harbor Dental" in line)
    assert "open (acknowledged)" in row
    assert "  Acknowledged by slack:U0DANA1 (Dana) at 2026-07-10 09:30 UTC" in report.splitlines()
    assert "acknowledged by slack:U0DANA1 (Dana)" in status_text(config, store, str(config_path))
    store.engine.dispose()


def test_demo_ends_by_pointing_at_the_handoff_incidents_evidence_pack(demo):
    _, _, output = demo
    last = output.rstrip().splitlines()[-1]
    assert last.startswith("Next: `anomaly report 2` (the handoff incident's evidence pack: who pays what), `anomaly report --party beacon`")
