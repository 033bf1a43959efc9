"""The command line as a Unix tool: a reader that stops reading, options after the command,
--help and --version, and commands that say what they found and what they left alone."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from anomaly import sample
from anomaly.cli import build_parser, main
from anomaly.config import load_config
from anomaly.service import status_text
from anomaly.store import Store
from tests.helpers import copy_default_project

HARBOR, LAKESIDE = "4821937710", "3307714460"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the embedded default with the sample written; its config.yaml."""
    config = copy_default_project(tmp_path)
    sample.write_sample(tmp_path / "sample")
    return config


def cli(config: Path, *argv: str) -> int:
    return main(["--config", str(config), *argv])


def closed_reader(config: Path, *argv: str) -> subprocess.CompletedProcess:
    """``anomaly ARGV`` in a process of its own whose standard output is a pipe that its reader
    closes before reading anything, as `| head -0` would: every write to it fails."""
    env = {**os.environ, "ANOMALY_CONFIG": str(config)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "anomaly.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=config.parent
    )
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err.decode())


def store_rows(config: Path) -> dict[str, list[tuple]]:
    """The incidents and the outbox as the SQLite store holds them."""
    with sqlite3.connect(config.parent / "sample" / "anomaly.db") as conn:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall() for table in ("incidents", "outbox")}


# --- a reader that closes early ------------------------------------------------------------------


def test_a_closed_pipe_ends_the_demo_quietly_after_it_replayed_every_day(project: Path) -> None:
    done = closed_reader(project, "demo")

    assert (done.returncode, done.stderr) == (1, "")
    store = Store(load_config(project)[0].store.url.get_secret_value())
    incidents = store.load_incidents()
    assert [(r["account_id"], r["status"], r["last_active"]) for r in incidents] == [
        (LAKESIDE, "open", dt.date(2026, 7, 12)),
        (HARBOR, "open", dt.date(2026, 7, 12)),
    ]
    # every notification went out: the console's into the closed pipe, the alert log's to its file
    assert store.outbox_counts() == {"sent": 10}  # the four alerts and Harbor Dental's handover, on both sinks
    assert len((project.parent / "sample" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()) == 5
    store.engine.dispose()


def test_a_closed_pipe_ends_report_quietly_after_it_wrote_its_files(project: Path) -> None:
    assert cli(project, "run", "--today", "2026-07-13") == 0
    out = project.parent / "out"

    done = closed_reader(project, "report", "2", "--out", str(out))

    assert (done.returncode, done.stderr) == (1, "")
    assert sorted(p.name for p in out.iterdir()) == ["incident-2.html", "incident-2.md"]
    assert "Beacon Reach" in (out / "incident-2.md").read_text(encoding="utf-8")


def test_a_closed_pipe_ends_incidents_quietly(project: Path) -> None:
    assert cli(project, "run", "--today", "2026-07-13") == 0

    done = closed_reader(project, "incidents", "--format", "json")

    assert (done.returncode, done.stderr) == (1, "")


def test_a_reader_that_reads_the_first_line_gets_it(project: Path, tmp_path: Path) -> None:
    assert cli(project, "run", "--today", "2026-07-13") == 0
    env = {**os.environ, "ANOMALY_CONFIG": str(project)}

    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{sys.executable} -m anomaly.cli report 2 --out {tmp_path / 'out'} | head -2"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )

    assert done.stdout.splitlines() == [
        "[CRITICAL] Cost per lead 9.0× baseline: fewer leads per click — Harbor Dental Group / Generic - Leads",
        "  Account      Harbor Dental Group (4821937710) on Google Ads",
    ]
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert (tmp_path / "out" / "incident-2.html").is_file()


# --- options, help, version ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "config", "verbose"),
    [
        pytest.param(["--config", "a.yaml", "-v", "status"], "a.yaml", True, id="before"),
        pytest.param(["status", "--config", "b.yaml", "-v"], "b.yaml", True, id="after"),
        pytest.param(["--config", "a.yaml", "status"], "a.yaml", False, id="before-only-kept"),
        pytest.param(["-v", "incidents", "--config", "b.yaml"], "b.yaml", True, id="mixed"),
        pytest.param(["--config", "a.yaml", "backtest", "--config", "b.yaml"], "b.yaml", False, id="after-wins"),
        pytest.param(["silence", "list", "--config", "c.yaml", "-v"], "c.yaml", True, id="silence-list"),
        pytest.param(["ack", "3", "--config", "c.yaml"], "c.yaml", False, id="ack"),
        pytest.param(["run"], None, False, id="neither"),
    ],
)
def test_config_and_verbose_are_taken_before_and_after_the_command(argv: list[str], config: str | None, verbose: bool) -> None:
    args = build_parser().parse_args(argv)
    assert (args.config, args.verbose) == (config, verbose)


def test_a_config_given_after_the_command_is_the_one_read(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["check", "--config", str(project)]) == 0
    assert capsys.readouterr().out.startswith(f"{project}: OK — 1 source(s)")


@pytest.mark.parametrize(
    ("command", "says"),
    [
        pytest.param("check", "Validate the config file, the rules folder and the ownership file", id="check"),
        pytest.param("serve", "The scheduled service in the foreground", id="serve"),
        pytest.param("status", "What the service did last and will do next", id="status"),
        pytest.param("run", "With --as-of, evaluate a past day without changing anything", id="run"),
        pytest.param("ack", "Record that someone took incident ID on", id="ack"),
        pytest.param("backtest", "(default: the whole stored span)", id="backtest"),
    ],
)
def test_each_command_describes_itself_in_its_help(command: str, says: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert says in " ".join(capsys.readouterr().out.split())


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"anomaly {importlib.metadata.version('paid-media-anomaly')}\n"


# --- run --as-of: the past, without changing the present -----------------------------------------


def test_run_as_of_a_past_day_says_what_it_finds_and_changes_nothing(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(project, "run", "--today", "2026-07-13") == 0
    before = store_rows(project)
    log = (project.parent / "sample" / "alerts.jsonl").read_text(encoding="utf-8")
    capsys.readouterr()

    assert cli(project, "run", "--as-of", "2026-07-09") == 0
    quiet = capsys.readouterr()
    assert cli(project, "run", "--as-of", "2026-07-11", "--today", "2026-07-20") == 0
    found = capsys.readouterr()

    assert quiet.out == "As of 2026-07-09, detection finds 0 incident(s), 0 open on that day:\n(none)\n"
    assert found.out.splitlines()[0] == "As of 2026-07-11, detection finds 2 incident(s), 2 open on that day:"
    assert found.out.splitlines()[1].split() == ["status", "detected", "onset", "account", "campaign", "rule", "severity", "managed", "by", "excess"]
    assert found.out.splitlines()[3].split() == [
        "open", "2026-07-10", "2026-07-09", "Lakeside", "Law", "Personal", "Injury", "lakeside-cpl-limit", "critical", "Northwind", "Digital", "$3,839",
    ]
    assert found.err == (
        "Nothing was pulled, stored or sent: this looked at the past. `anomaly run --as-of 2026-07-11 --store-changes` writes "
        "these incidents to the store as they stood on 2026-07-11 (an incident open today may be resolved or changed back) "
        "and sends their notifications.\n"
    )
    assert store_rows(project) == before
    assert (project.parent / "sample" / "alerts.jsonl").read_text(encoding="utf-8") == log


def test_run_as_of_with_store_changes_writes_the_past_to_the_store(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(project, "run", "--today", "2026-07-13") == 0
    before = store_rows(project)

    assert cli(project, "run", "--as-of", "2026-07-11", "--today", "2026-07-13", "--store-changes") == 0

    assert store_rows(project) != before
    assert "as of 2026-07-11: 2 incident(s), 2 open" in capsys.readouterr().err


def test_store_changes_goes_with_as_of(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(project, "run", "--store-changes") == 1
    assert capsys.readouterr().err.splitlines()[0] == "command line: --store-changes goes with --as-of: a run without --as-of stores its changes anyway"


def test_run_as_of_a_day_before_any_data_says_which_span_the_store_holds(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(project, "run", "--today", "2026-07-13") == 0
    capsys.readouterr()
    assert cli(project, "run", "--as-of", "2025-01-01") == 1
    assert capsys.readouterr().err == (
        f"No metrics up to 2025-01-01: the store at sqlite:///{project.parent / 'sample' / 'anomaly.db'} holds metrics from 2026-03-02 to 2026-07-12.\n"
    )


# --- what waits in the outbox, and who took an incident on ----------------------------------------


def _without_the_alert_log(config: Path) -> None:
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["alerts"]["sinks"] = [{"type": "console"}]
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")


def test_status_and_run_say_which_notifications_wait_where_and_why(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(project, "run", "--as-of", "2026-07-10", "--today", "2026-07-13", "--store-changes") == 0
    _without_the_alert_log(project)  # the incidents' updates are still due there
    log = project.parent / "sample" / "alerts.jsonl"
    capsys.readouterr()

    assert cli(project, "run", "--today", "2026-07-13") == 1
    run_err = capsys.readouterr().err
    config, _ = load_config(project)
    store = Store(config.store.url.get_secret_value())
    waiting = store.notifications(status="pending")
    status = status_text(config, store, str(project), now=waiting[0]["created_at"].replace(tzinfo=dt.UTC) + dt.timedelta(hours=3, minutes=5))
    store.engine.dispose()

    error = f"sink 'jsonl:{log}' is not configured any more; kept for redelivery"
    assert [(row["incident_id"], row["event"], row["attempts"]) for row in waiting] == [(1, "updated", 1), (2, "updated", 1)]
    summary, *failed = run_err.splitlines()[-3:]
    assert summary == "as of 2026-07-12: 2 incident(s), 2 open; 4 new notification(s), 2 sent, 2 failed, 2 pending, 0 silenced"
    assert [re.sub(r"waiting \d+ s;", "waiting N s;", line) for line in failed] == [
        f"  incident #1 updated → jsonl:{log}, waiting N s; failed 1 time, last error: {error}",
        f"  incident #2 updated → jsonl:{log}, waiting N s; failed 1 time, last error: {error}",
    ]
    lines = status.splitlines()
    at = lines.index("Notifications pending: 2, 2 failed (tried again at each delivery)")
    assert lines[at + 1 : at + 3] == [
        f"  incident #1 updated → jsonl:{log}, waiting 3 h 5 min; failed 1 time, last error: {error}",
        f"  incident #2 updated → jsonl:{log}, waiting 3 h 5 min; failed 1 time, last error: {error}",
    ]


def test_ack_and_silence_show_in_status(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(project, "run", "--today", "2026-07-13") == 0
    capsys.readouterr()

    assert cli(project, "ack", "2", "--by", "dana") == 0
    acked = capsys.readouterr().out
    assert cli(project, "ack", "2", "--by", "sam") == 0
    again = capsys.readouterr().out
    assert cli(project, "ack", "9") == 1
    missing = capsys.readouterr().err
    assert cli(project, "silence", "add", "--account", LAKESIDE, "--until", "2099-01-01", "--reason", "client paused the account", "--by", "sam") == 0
    assert cli(project, "status") == 0
    status = capsys.readouterr().out.splitlines()

    config, _ = load_config(project)
    store = Store(config.store.url.get_secret_value())
    at = store.load_incident(2)["acknowledged_at"]
    store.engine.dispose()
    when = f"{at:%Y-%m-%d %H:%M} UTC"
    assert acked == f"incident 2 (Harbor Dental Group / Generic - Leads, open) acknowledged by dana at {when}: no more reminders\n"
    assert again == f"incident 2 (Harbor Dental Group / Generic - Leads, open) was already acknowledged by dana at {when}; that stands\n"
    assert missing == "no incident 9; `anomaly incidents` lists them\n"
    assert "Notifications pending: 0" in status
    assert status[-2:] == [
        "  #1 Lakeside Law / Personal Injury: since 2026-07-09, excess ~$4,733, critical, managed by Northwind Digital, "
        "silenced until 2099-01-02 00:00:00 UTC (silence 1 by sam: 'client paused the account')",
        "  #2 Harbor Dental Group / Generic - Leads: since 2026-07-10, excess ~$5,617, critical, managed by Beacon Reach, "
        f"acknowledged by dana at {at:%Y-%m-%d %H:%M:%S} UTC",
    ]


def test_an_acknowledged_incident_gets_no_more_reminders(project: Path, capsys: pytest.CaptureFixture) -> None:
    raw = yaml.safe_load(project.read_text(encoding="utf-8"))
    raw["alerts"]["repeat_every_hours"] = 1
    project.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert cli(project, "run", "--today", "2026-07-13") == 0
    assert cli(project, "ack", "2", "--by", "dana") == 0
    config, _ = load_config(project)
    store = Store(config.store.url.get_secret_value())

    from anomaly.alerts import enqueue_reminders

    later = store.notifications()[-1]["sent_at"] + dt.timedelta(hours=2)
    assert enqueue_reminders(store, config, later) == 2  # Lakeside Law's on each sink
    assert {row["incident_id"] for row in store.notifications(status="pending")} == {1}
    store.engine.dispose()


# --- money one way -------------------------------------------------------------------------------


def test_the_csv_export_has_money_to_the_cent_and_no_json_in_a_cell(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(project, "run", "--today", "2026-07-13") == 0
    capsys.readouterr()
    assert cli(project, "incidents", "--format", "csv") == 0
    out = capsys.readouterr().out
    assert cli(project, "incidents", "--format", "json") == 0
    exact = json.loads(capsys.readouterr().out)

    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(out)))
    harbor = rows[1]
    assert (harbor["spend"], harbor["cpl"], harbor["excess_cost"], harbor["observed"], harbor["baseline"]) == (
        "6321.05", "903.01", "5617.44", "561.4", "100.52",
    )
    assert exact[1]["spend"] != 6321.05  # the store's own figure, with the float's noise
    assert harbor["excess_by_party"] == "Beacon Reach: 5617.44"
    assert rows[0]["excess_by_party"] == "Northwind Digital: 4732.80"
    for row in rows:
        for value in row.values():
            assert "{" not in value and "[" not in value
            if "." in value and value.replace(".", "", 1).isdigit():
                assert len(value.split(".")[1]) <= 2, value
