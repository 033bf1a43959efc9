"""The partner manager's loop: ids that the data has never seen (in rule scopes, in silences), a
rules folder under trial validated with `anomaly check --rules DIR`, and set against the project's
rules with `anomaly backtest --rules DIR --compare`.

The commands run on a copy of the demo (its store read, never written, unless a test copies it).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from anomaly.cli import main
from anomaly.id_check import silence_problems, unknown_account, unknown_campaign
from anomaly.store import KnownIds, Store, peek_known_ids
from tests.helpers import PROJECT

LAKESIDE, HARBOR = "3307714460", "4821937710"

KNOWN = KnownIds(
    accounts={LAKESIDE: "Lakeside Law", HARBOR: "Harbor Dental Group", "6150048821": "Summit Home Services"},
    campaigns={"20118341": (HARBOR, "Generic - Leads"), "20118342": (HARBOR, "Brand"), "47220091": (LAKESIDE, "Personal Injury")},
)
MANY = KnownIds(accounts={f"10000{i}": f"Client {i}" for i in range(8)}, campaigns={})
FIRE = "the rule cannot fire on it"


@pytest.mark.parametrize(
    "given, known, said",
    [
        pytest.param(LAKESIDE, KNOWN, None, id="known"),
        pytest.param("3307714461", KNOWN, f"account 3307714461 is not in the store's data, so {FIRE}; did you mean 3307714460 (Lakeside Law)?", id="one-digit-off"),
        pytest.param(
            "99999", KNOWN,
            f"account 99999 is not in the store's data, so {FIRE}; the data holds 3 accounts: "
            "3307714460 (Lakeside Law), 4821937710 (Harbor Dental Group), 6150048821 (Summit Home Services)",
            id="nothing-close",
        ),
        pytest.param(
            "7", MANY,
            f"account 7 is not in the store's data, so {FIRE}; the data holds 8 accounts: "
            "100000 (Client 0), 100001 (Client 1), 100002 (Client 2), 100003 (Client 3), 100004 (Client 4) and 3 more",
            id="many-known",
        ),
        pytest.param("Lakeside Law", KNOWN, f"account 'Lakeside Law' is not in the store's data, so {FIRE}; the data holds 3 accounts: "
                     "3307714460 (Lakeside Law), 4821937710 (Harbor Dental Group), 6150048821 (Summit Home Services)", id="a-name-not-an-id"),
        pytest.param("99999", KnownIds(), None, id="no-data-no-word"),
    ],
)
def test_an_account_the_data_has_never_seen(given: str, known: KnownIds, said: str | None) -> None:
    assert unknown_account(given, known, FIRE) == said


@pytest.mark.parametrize(
    "given, said",
    [
        pytest.param("20118341", None, id="known"),
        pytest.param(
            "20118344",
            f"campaign 20118344 is not in the store's data, so {FIRE}; did you mean 20118341 (Generic - Leads, Harbor Dental Group) "
            "or 20118342 (Brand, Harbor Dental Group)?",
            id="one-digit-off",
        ),
    ],
)
def test_a_campaign_the_data_has_never_seen(given: str, said: str | None) -> None:
    assert unknown_campaign(given, KNOWN, FIRE) == said


@pytest.mark.parametrize(
    "account, campaign, said",
    [
        pytest.param(HARBOR, "20118341", {}, id="campaign-in-its-account"),
        pytest.param(None, "20118341", {}, id="campaign-alone"),
        pytest.param(
            LAKESIDE, "20118341",
            {"campaign": "campaign 20118341 (Generic - Leads) is in account 4821937710 (Harbor Dental Group), not 3307714460, "
                         "so the silence holds nothing back"},
            id="campaign-in-another-account",
        ),
        pytest.param(
            "482193771", "2011834",
            {
                "account": "account 482193771 is not in the store's data, so the silence holds nothing back; did you mean 4821937710 (Harbor Dental Group)?",
                "campaign": "campaign 2011834 is not in the store's data, so the silence holds nothing back; did you mean "
                            "20118341 (Generic - Leads, Harbor Dental Group) or 20118342 (Brand, Harbor Dental Group)?",
            },
            id="both-unknown",
        ),
    ],
)
def test_what_a_silence_names(account: str | None, campaign: str | None, said: dict[str, str]) -> None:
    assert silence_problems(account, campaign, KNOWN) == said


# ----------------------------------------------------------------------------------------------
# anomaly check


def _rules_copy(folder: Path) -> Path:
    shutil.copytree(PROJECT / "rules", folder)
    return folder


def test_check_rules_names_an_id_the_data_has_never_seen(demo_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trial = _rules_copy(tmp_path / "try")
    thresholds = trial / "thresholds.yaml"
    text = thresholds.read_text(encoding="utf-8")
    thresholds.write_text(text.replace('accounts: ["3307714460"]', 'accounts: ["3307714461"]\n      campaigns: ["47220019"]'), encoding="utf-8")
    capsys.readouterr()
    assert main(["--config", str(demo_config), "check", "--rules", str(trial)]) == 0
    out, err = capsys.readouterr()
    store = demo_config.parent / "sample" / "anomaly.db"
    assert out == f"{demo_config}: OK — 1 source(s), 2 parties, 2 ownership period(s), 9 enabled rule(s) of 11 in {trial}\n"
    assert err.splitlines() == [
        f"{trial}/thresholds.yaml: line 16, rule lakeside-cpl-limit: scope.accounts[0]: account 3307714461 is not in the store's data, "
        "so the rule cannot fire on it; did you mean 3307714460 (Lakeside Law)?",
        f"{trial}/thresholds.yaml: line 17, rule lakeside-cpl-limit: scope.campaigns[0]: campaign 47220019 is not in the store's data, "
        "so the rule cannot fire on it; did you mean 47220091 (Personal Injury, Lakeside Law) or 47220092 (Estate Planning, Lakeside Law)?",
        f"The configuration is valid; 2 ids in it are not in the data of the store at sqlite:///{store}.",
    ]


def test_check_names_the_ids_of_silences_in_config(demo_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = demo_config.parent / "sample" / "anomaly.db"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"store: {{url: 'sqlite:///{store}'}}\n"
        "sources: [{type: csv, name: s, metrics: [m.csv]}]\n"
        f"rules_dir: {PROJECT / 'rules'}\n"
        "alerts:\n"
        "  silences:\n"
        "    - {account: '99999', until: 2026-08-01, reason: holiday}\n"
        f"    - {{account: '{LAKESIDE}', campaign: '20118341', until: 2026-08-01, reason: rebuild}}\n"
        f"    - {{account: '{HARBOR}', until: 2026-08-01, reason: fine}}\n",
        encoding="utf-8",
    )
    assert main(["--config", str(config), "check"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{config}: OK — ")
    assert err.splitlines() == [
        f"{config}: alerts.silences[0].account: account 99999 is not in the store's data, so the silence holds nothing back; the data holds "
        "3 accounts: 3307714460 (Lakeside Law), 4821937710 (Harbor Dental Group), 6150048821 (Summit Home Services)",
        f"{config}: alerts.silences[1].campaign: campaign 20118341 (Generic - Leads) is in account 4821937710 (Harbor Dental Group), "
        "not 3307714460, so the silence holds nothing back",
        f"The configuration is valid; 2 ids in it are not in the data of the store at sqlite:///{store}.",
    ]


@pytest.mark.parametrize("store", ["absent", "empty"])
def test_check_says_nothing_of_ids_without_data(tmp_path: Path, capsys: pytest.CaptureFixture[str], store: str) -> None:
    db = tmp_path / "anomaly.db"
    if store == "empty":
        Store(f"sqlite:///{db}").migrate()
    config = tmp_path / "config.yaml"
    config.write_text(
        "store: {url: 'sqlite:///anomaly.db'}\nsources: [{type: csv, name: s, metrics: [m.csv]}]\nrules_dir: rules\n"
        "alerts: {silences: [{account: '99999', until: 2026-08-01}]}\n",
        encoding="utf-8",
    )
    trial = _rules_copy(tmp_path / "rules")
    (trial / "thresholds.yaml").write_text(
        (trial / "thresholds.yaml").read_text(encoding="utf-8").replace("3307714460", "3307714461"), encoding="utf-8"
    )
    assert main(["--config", str(config), "check"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{config}: OK — ") and err == ""
    assert db.exists() == (store == "empty")  # check creates no store
    assert not peek_known_ids(f"sqlite:///{db}")


def test_check_rules_validates_the_folder_under_trial(demo_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trial = _rules_copy(tmp_path / "try")
    cpl = trial / "cost_per_lead.yaml"
    cpl.write_text(cpl.read_text(encoding="utf-8").replace("    critical: 4.0\n    min_spend: 50 ", "    critical: 2.0\n    min_spend: 50 ", 1), encoding="utf-8")
    (trial / "spend.yaml").write_text("rules:\n  - name: spend-runaway\n    type: spend_ratio\n   warning: 3\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["--config", str(demo_config), "check", "--rules", str(trial)]) == 1
    assert capsys.readouterr() == (
        "",
        f"{trial}/cost_per_lead.yaml: line 14, rule cpl-spike-1d: critical: must be at least warning (2.5), got 2\n"
        f"{trial}/cost_per_lead.yaml: line 24, rule cpl-spike-1d: after_changes[0].warning: must be at most critical (2), got 4\n"
        f"{trial}/spend.yaml: line 4: the indentation does not line up with the lines above (a key or list item is indented differently)\n"
        "3 problems found.\n",
    )
    # the project's own rules are not what was checked, and stay valid
    assert main(["--config", str(demo_config), "check"]) == 0
    assert main(["--config", str(demo_config), "check", "--rules", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err.endswith(f"{tmp_path / 'nope'}: rules folder not found\n1 problem found.\n")


# ----------------------------------------------------------------------------------------------
# anomaly silence add


def test_silence_add_names_an_account_the_data_has_never_seen(demo_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "anomaly.db"
    with sqlite3.connect(demo_config.parent / "sample" / "anomaly.db") as demo, sqlite3.connect(store) as copy:
        demo.backup(copy)  # the demo's store with what its write-ahead log holds
    config = tmp_path / "config.yaml"
    config.write_text(f"store: {{url: 'sqlite:///anomaly.db'}}\nrules_dir: {PROJECT / 'rules'}\n", encoding="utf-8")
    assert main(["--config", str(config), "silence", "add", "--account", "99999", "--until", "+7d", "--reason", "holiday", "--by", "pm"]) == 0
    out, err = capsys.readouterr()
    assert out == "1\n"
    assert err.splitlines()[1:] == [
        "command line: --account: account 99999 is not in the store's data, so the silence holds nothing back; the data holds 3 accounts: "
        "3307714460 (Lakeside Law), 4821937710 (Harbor Dental Group), 6150048821 (Summit Home Services)"
    ]
    assert [s.account for s in Store(f"sqlite:///{store}").silences()] == ["99999"]  # said, and the silence stands
    assert main(["--config", str(config), "silence", "add", "--account", LAKESIDE, "--until", "+7d", "--reason", "x", "--by", "pm"]) == 0
    out, err = capsys.readouterr()
    assert out == "2\n" and len(err.splitlines()) == 1  # only the silence's own line


def test_silence_add_on_an_empty_store_says_nothing_of_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"store: {{url: 'sqlite:///anomaly.db'}}\nrules_dir: {PROJECT / 'rules'}\n", encoding="utf-8")
    assert main(["--config", str(config), "silence", "add", "--account", "99999", "--until", "+7d", "--reason", "new client", "--by", "pm"]) == 0
    out, err = capsys.readouterr()
    assert out == "1\n" and len(err.splitlines()) == 1


# ----------------------------------------------------------------------------------------------
# anomaly backtest --compare

LOOSE = """\
rules:
  - name: cpl-spike-1d-loose
    type: cpl_ratio
    warning: 1.8
    critical: 4.0
    min_spend: 50
    max_p_value: 0.01
    scope:
      accounts: ["4821937710", "6150048821"]
"""


@pytest.fixture
def trial(tmp_path: Path) -> Path:
    """A rules folder under trial: the cost-per-lead rules replaced by one looser rule that leaves
    Lakeside Law out, and Lakeside's cost-per-lead limit switched off."""
    folder = tmp_path / "try"
    folder.mkdir()
    shutil.copy(PROJECT / "rules" / "spend.yaml", folder)
    limit = (PROJECT / "rules" / "thresholds.yaml").read_text(encoding="utf-8").replace("    metric: cpl\n", "    metric: cpl\n    enabled: false\n")
    (folder / "thresholds.yaml").write_text(limit, encoding="utf-8")
    (folder / "cpl.yaml").write_text(LOOSE, encoding="utf-8")
    return folder


def test_backtest_compare_prints_before_and_after(demo_config: Path, trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--config", str(demo_config), "backtest", "--rules", str(trial), "--compare"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        f"Before: the project's rules ({demo_config.parent / 'rules'}). After: the rules in {trial}.",
        "Replayed 2026-03-02 to 2026-07-12 (19.0 weeks).",
        "",
        "rule                in trial  alerts before  alerts after  per week before  per week after  change",
        "------------------  --------  -------------  ------------  ---------------  --------------  ------",
        "cpl-spike-1d        removed   1              0             0.05             0.00            −0.05",
        "cpc-spike-1d        removed   0              0             0.00             0.00            +0.00",
        "cpl-spike-3d        removed   0              0             0.00             0.00            +0.00",
        "cpl-spike-7d        removed   0              0             0.00             0.00            +0.00",
        "cpl-spike-14d       removed   0              0             0.00             0.00            +0.00",
        "cpl-creep           removed   0              0             0.00             0.00            +0.00",
        "leads-stopped       removed   0              0             0.00             0.00            +0.00",
        "forest-cpl          removed   0              0             0.00             0.00            +0.00",
        "lakeside-cpl-limit  changed   1              0             0.05             0.00            −0.05",
        "cpl-spike-1d-loose  new       0              2             0.00             0.11            +0.11",
        "total                         2              2             0.11             0.11            +0.00",
        "(2 more rules, the same in both, alerted on nothing either way.)",
        "",
        "Gained: 1 incident only the rules under trial alert on:",
        "detected    onset       account              campaign         rule                severity  managed by         excess",
        "----------  ----------  -------------------  ---------------  ------------------  --------  -----------------  ------",
        "2026-04-28  2026-04-27  Harbor Dental Group  Generic - Leads  cpl-spike-1d-loose  warning   Northwind Digital  $1,409",
        "",
        "Lost: 1 incident the project's rules alert on and the rules under trial do not:",
        "detected    onset       account       campaign         rule                severity  managed by         excess",
        "----------  ----------  ------------  ---------------  ------------------  --------  -----------------  ------",
        "2026-07-10  2026-07-09  Lakeside Law  Personal Injury  lakeside-cpl-limit  warning   Northwind Digital  $4,733",
        "",
        "Caught by both: 1; the rules under trial detect 0 earlier, 0 later, 1 on the same day.",
        "Excess cost caught: $10,350 before, $7,027 after (−$3,323).",
    ]


def _alerts(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict]:
    capsys.readouterr()
    assert main(["--config", str(config), "backtest", "--format", "json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_backtest_compare_json_agrees_with_the_two_backtests(demo_config: Path, trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    span = ["--from", "2026-04-01", "--to", "2026-07-12"]
    before = _alerts(demo_config, capsys, *span)
    after = _alerts(demo_config, capsys, *span, "--rules", str(trial))
    compared = _alerts(demo_config, capsys, *span, "--rules", str(trial), "--compare")
    assert (compared["from"], compared["to"], compared["weeks"]) == ("2026-04-01", "2026-07-12", 14.71)
    assert compared["before"]["alerts"] == len(before) and compared["after"]["alerts"] == len(after)
    assert compared["before"]["excess_caught"] == {"USD": round(sum(a["excess_cost"] for a in before), 2)}
    assert compared["after"]["excess_caught"] == {"USD": round(sum(a["excess_cost"] for a in after), 2)}
    by_rule = {r["rule"]: (r["status"], r["before"], r["after"]) for r in compared["rules"]}
    assert by_rule["cpl-spike-1d-loose"] == ("new", 0, sum(a["rule"] == "cpl-spike-1d-loose" for a in after))
    assert by_rule["lakeside-cpl-limit"] == ("changed", 1, 0)
    assert by_rule["spend-runaway"] == ("same", 0, 0)

    def key(alert: dict) -> tuple:
        return alert["account_id"], alert["campaign_id"], alert["onset"]

    assert [key(a) for a in compared["gained"]] == [key(a) for a in after if key(a) not in {key(b) for b in before}]
    assert [key(a) for a in compared["lost"]] == [key(a) for a in before if key(a) not in {key(b) for b in after}]
    assert compared["lost"][0] | {"excess_cost": None} == {
        "account_id": LAKESIDE, "account_name": "Lakeside Law", "campaign_id": "47220091", "campaign_name": "Personal Injury",
        "family": "cost_per_lead", "rule": "lakeside-cpl-limit", "severity": "warning", "onset": "2026-07-09", "detected_on": "2026-07-10",
        "managing_party": "northwind", "excess_cost": None, "currency": "USD",
    }


def test_backtest_compare_with_the_same_rules_changes_nothing(demo_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--config", str(demo_config), "backtest", "--rules", str(PROJECT / "rules"), "--compare", "--from", "2026-07-01"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3:] == [
        "rule                in trial  alerts before  alerts after  per week before  per week after  change",
        "------------------  --------  -------------  ------------  ---------------  --------------  ------",
        "cpl-spike-1d        same      1              1             0.58             0.58            +0.00",
        "lakeside-cpl-limit  same      1              1             0.58             0.58            +0.00",
        "total                         2              2             1.17             1.17            +0.00",
        "(9 more rules, the same in both, alerted on nothing either way.)",
        "",
        "Gained: 0 incidents only the rules under trial alert on.",
        "",
        "Lost: 0 incidents the project's rules alert on and the rules under trial do not.",
        "",
        "Caught by both: 2; the rules under trial detect 0 earlier, 0 later, 2 on the same day.",
        "Excess cost caught: $10,350 before, $10,350 after (no change).",
    ]


def test_backtest_compare_over_a_quiet_span(demo_config: Path, trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--config", str(demo_config), "backtest", "--rules", str(trial), "--compare", "--from", "2026-03-02", "--to", "2026-03-20"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "Replayed 2026-03-02 to 2026-03-20 (2.7 weeks).",
        "",
        "rule                in trial  alerts before  alerts after  per week before  per week after  change",
        "------------------  --------  -------------  ------------  ---------------  --------------  ------",
        *[f"{name:<18}  removed   0              0             0.00             0.00            +0.00" for name in (
            "cpl-spike-1d", "cpc-spike-1d", "cpl-spike-3d", "cpl-spike-7d", "cpl-spike-14d", "cpl-creep", "leads-stopped", "forest-cpl")],
        "lakeside-cpl-limit  changed   0              0             0.00             0.00            +0.00",
        "cpl-spike-1d-loose  new       0              0             0.00             0.00            +0.00",
        "total                         0              0             0.00             0.00            +0.00",
        "(2 more rules, the same in both, alerted on nothing either way.)",
        "",
        "Gained: 0 incidents only the rules under trial alert on.",
        "",
        "Lost: 0 incidents the project's rules alert on and the rules under trial do not.",
        "",
        "Caught by both: 0; the rules under trial detect 0 earlier, 0 later, 0 on the same day.",
        "Excess cost caught: none, before or after.",
    ]


def test_backtest_compare_on_a_store_without_metrics(tmp_path: Path, trial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"store: {{url: 'sqlite:///anomaly.db'}}\nrules_dir: {PROJECT / 'rules'}\n", encoding="utf-8")
    assert main(["--config", str(config), "backtest", "--rules", str(trial), "--compare"]) == 1
    assert capsys.readouterr() == (
        "", f"The store at sqlite:///{tmp_path / 'anomaly.db'} holds no metrics; run `anomaly run` (or `anomaly demo`) first.\n"
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        pytest.param([], "command line: --compare compares the rules of --rules DIR with the project's: give --rules DIR", id="without-rules"),
        pytest.param(
            ["--rules", "rules", "--from", "2026-07-10", "--to", "2026-07-01"], "command line: --to 2026-07-01 is before --from 2026-07-10",
            id="dates-reversed",
        ),
    ],
)
def test_backtest_compare_usage(demo_config: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    capsys.readouterr()
    assert main(["--config", str(demo_config), "backtest", "--compare", *extra]) == 1
    assert capsys.readouterr() == ("", message + "\n")


def test_backtest_compare_refuses_a_broken_folder_under_trial(demo_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trial = tmp_path / "try"
    trial.mkdir()
    (trial / "a.yaml").write_text("rules:\n  - {name: r1, type: cpl_ratio, warning: 0.5}\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["--config", str(demo_config), "backtest", "--rules", str(trial), "--compare"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[0] == f"{trial}/a.yaml: line 2, rule r1: warning: must be a ratio > 1, got 0.5"
    assert err.splitlines()[-1] == f"The configuration is invalid; `anomaly check --rules {trial}` lists every problem."


# ----------------------------------------------------------------------------------------------
# the ids a store knows


def test_a_store_knows_each_id_by_its_latest_name(store: Store) -> None:
    import datetime as dt

    import pandas as pd

    from anomaly.schema import empty_changes, normalise_metrics

    assert not store.known_ids()
    rows = [
        ("2026-07-01", "A1", "Old Client", "c1", "Brand (old)"),
        ("2026-07-02", "A1", "New Client", "c1", "Brand"),
        ("2026-07-01", "A1", "Old Client", "c2", "Generic"),
        ("2026-07-01", "B2", "Other", "c3", "Leads"),
    ]
    frame = normalise_metrics(pd.DataFrame(
        [{"date": d, "account_id": a, "account_name": an, "campaign_id": c, "campaign_name": cn, "spend": 10.0, "clicks": 5, "leads": 1.0}
         for d, a, an, c, cn in rows]
    ))
    store.ingest("s", dt.date(2026, 7, 1), dt.date(2026, 7, 2), frame, empty_changes())
    known = store.known_ids()
    assert known.accounts == {"A1": "New Client", "B2": "Other"}
    assert known.campaigns == {"c1": ("A1", "Brand"), "c2": ("A1", "Generic"), "c3": ("B2", "Leads")}
    assert peek_known_ids(store.url) == known
