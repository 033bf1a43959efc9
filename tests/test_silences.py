"""Silences: parsing expiries, config.yaml's silences, delivery that holds notifications back while
detection goes on, and `anomaly silence add | list | expire`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from anomaly import sample
from anomaly.alerts import deliver
from anomaly.cli import main
from anomaly.config import Config, load_config
from anomaly.incidents import Incident, reconcile
from anomaly.silences import Silence, matches, parse_time, parse_until
from anomaly.store import SCHEMA_VERSION, Store, outbox, schema_version
from tests.helpers import copy_default_project
from tests.test_config import expected, load_error, write_case

NOW = dt.datetime(2026, 7, 13, 9, 30)

# ----------------------------------------------------------------------------------------------
# parse_until


@pytest.mark.parametrize(
    ("text", "until"),
    [
        pytest.param("2026-07-20", dt.datetime(2026, 7, 21), id="date-means-its-end"),
        pytest.param("2026-07-20T18:00", dt.datetime(2026, 7, 20, 18), id="datetime-is-utc"),
        pytest.param("2026-07-20 18:00:30", dt.datetime(2026, 7, 20, 18, 0, 30), id="datetime-with-space"),
        pytest.param("2026-07-20T18:00+02:00", dt.datetime(2026, 7, 20, 16), id="offset-converted"),
        pytest.param("2026-07-20T18:00Z", dt.datetime(2026, 7, 20, 18), id="zulu"),
        pytest.param("+24h", NOW + dt.timedelta(hours=24), id="hours"),
        pytest.param(" +7d ", NOW + dt.timedelta(days=7), id="days"),
    ],
)
def test_parse_until(text: str, until: dt.datetime) -> None:
    assert parse_until(text, NOW) == until


FORMS = "a date (2026-07-20), a datetime (2026-07-20T18:00, UTC unless an offset is given) or a duration (+24h, +7d)"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("tomorrow", id="word"),
        pytest.param("+0h", id="zero"),
        pytest.param("+2w", id="unknown-unit"),
        pytest.param("7d", id="no-plus"),
        pytest.param("2026-13-01", id="no-such-month"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_until_rejects(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_until(text, NOW)
    assert str(excinfo.value) == f"expected {FORMS}, got {text!r}"


@pytest.mark.parametrize("text", [pytest.param("9999-12-31", id="last-day"), pytest.param("+99999999d", id="far-ahead")])
def test_parse_until_rejects_a_time_past_the_last_day(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_until(text, NOW)
    assert str(excinfo.value) == f"expected {FORMS} before 9999-12-31, got {text!r}"


def test_parse_time_takes_what_yaml_makes_of_dates_and_timestamps() -> None:
    assert parse_time(dt.date(2026, 7, 20)) == dt.datetime(2026, 7, 21)
    aware = dt.datetime(2026, 7, 20, 18, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    assert parse_time(aware) == dt.datetime(2026, 7, 20, 22)


# ----------------------------------------------------------------------------------------------
# matching

PAYLOAD = {"account_id": "4821937710", "campaign_id": "20118341", "rule": "cpl-spike-1d", "managing_party": "beacon"}
UNTIL = dt.datetime(2026, 7, 20)


@pytest.mark.parametrize(
    ("silence", "matched"),
    [
        pytest.param(Silence(UNTIL, account="4821937710"), True, id="account"),
        pytest.param(Silence(UNTIL, account="4821937711"), False, id="other-account"),
        pytest.param(Silence(UNTIL, campaign="20118341", rule="cpl-spike-1d"), True, id="campaign-and-rule"),
        pytest.param(Silence(UNTIL, campaign="20118341", rule="cpl-spike-3d"), False, id="every-matcher-must-match"),
        pytest.param(Silence(UNTIL, party="beacon"), True, id="party-is-the-managing-party"),
        pytest.param(Silence(NOW, party="beacon"), False, id="until-is-exclusive"),
        pytest.param(Silence(UNTIL, party="beacon", expired_at=NOW), False, id="expired-by-hand"),
        pytest.param(Silence(UNTIL, party="beacon", expired_at=NOW + dt.timedelta(seconds=1)), True, id="expired-later"),
    ],
)
def test_matches(silence: Silence, matched: bool) -> None:
    assert matches(silence, PAYLOAD, NOW) is matched


# ----------------------------------------------------------------------------------------------
# config.yaml

RULES = {"a.yaml": "rules:\n  - {name: cpl-spike-1d, type: cpl_ratio, warning: 2}\n"}
BEACON = "parties:\n  beacon: {name: Beacon Reach}\n"


def test_config_silences(tmp_path: Path) -> None:
    path = write_case(
        tmp_path,
        """\
        parties:
          beacon: {name: Beacon Reach}
        alerts:
          silences:
            - {account: "4821937710", until: 2026-07-20, reason: client paused the account, created_by: ops}
            - {rule: cpl-spike-1d, party: beacon, until: 2026-07-20T18:00:00+02:00}
            - {campaign: "20118341", until: "2026-07-20T18:00"}
        """,
        RULES,
    )
    config, _ = load_config(path)
    first, second, third = config.alerts.silences
    assert (first.account, first.until, first.reason, first.created_by) == ("4821937710", dt.datetime(2026, 7, 21), "client paused the account", "ops")
    assert (second.rule, second.party, second.until) == ("cpl-spike-1d", "beacon", dt.datetime(2026, 7, 20, 16))
    assert (third.campaign, third.until, third.reason) == ("20118341", dt.datetime(2026, 7, 20, 18), "")


SILENCE_KEYS = "account, campaign, created_by, party, reason, rule, until"


@pytest.mark.parametrize(
    ("silence", "lines"),
    [
        pytest.param(
            "{until: 2026-07-20, reason: quiet}",
            ["config.yaml: alerts.silences[0]: expected at least one matcher (account, campaign, rule, party), got none"],
            id="no-matcher",
        ),
        pytest.param(
            '{account: "4821937710"}',
            ["config.yaml: alerts.silences[0].until: required key is missing"],
            id="missing-until",
        ),
        pytest.param(
            '{acount: "4821937710", until: 2026-07-20}',
            [f"config.yaml: alerts.silences[0].acount: unknown key; did you mean 'account'? expected one of: {SILENCE_KEYS}"],
            id="unknown-key",
        ),
        pytest.param(
            '{account: "4821937710", until: +7d}',
            ["config.yaml: alerts.silences[0].until: expected a date (2026-07-20) or a datetime (2026-07-20T18:00, UTC unless an offset is given), got '+7d'"],
            id="relative-until",
        ),
        pytest.param(
            '{account: "4821937710", until: 7}',
            ["config.yaml: alerts.silences[0].until: expected a date (2026-07-20) or a datetime (2026-07-20T18:00, UTC unless an offset is given), got 7"],
            id="number-until",
        ),
        pytest.param(
            "{party: beecon, rule: cpl-spike-d1, until: 2026-07-20}",
            [
                "config.yaml: alerts.silences[0].party: party 'beecon' is not defined under 'parties' (defined: beacon)",
                "config.yaml: alerts.silences[0].rule: rule 'cpl-spike-d1' is not defined in {root}/rules (defined: cpl-spike-1d)",
            ],
            id="undefined-party-and-rule",
        ),
    ],
)
def test_config_silence_errors(tmp_path: Path, silence: str, lines: list[str]) -> None:
    path = write_case(tmp_path, f"{BEACON}alerts:\n  silences:\n    - {silence}\n", RULES)
    root = tmp_path.resolve()
    assert str(load_error(path)) == expected(tmp_path, [line.format(root=root) for line in lines])


# ----------------------------------------------------------------------------------------------
# delivery


def _incident(account_id: str, campaign_id: str, party: str = "beacon") -> Incident:
    day = dt.date(2026, 7, 10)
    return Incident(
        family="cost_per_lead", account_id=account_id, account_name=f"Account {account_id}", campaign_id=campaign_id,
        campaign_name=f"Campaign {campaign_id}", currency="USD", onset=day, detected_on=day, last_active=day, resolved_on=None,
        rule="cpl-spike-1d", opening_severity="critical", severity="critical", critical_on=day, metric="cpl", observed=560.0,
        baseline=100.0, baseline_cpl=100.0, spend=1680.0, leads=3.0, excess_cost=1380.0, excess_by_party={party: 1380.0},
        managing_party=party, party_since=dt.date(2026, 7, 8),
    )


HARBOR = _incident("4821937710", "20118341")
LAKESIDE = _incident("5530019921", "30551877", party="northwind")


class RecordingSink:
    name = "recording"

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str]] = []

    def send(self, event: str, payload: dict, delivery=None) -> None:
        self.delivered.append((event, payload["account_id"]))


def _cycle(store: Store, *incidents: Incident) -> None:
    store.save_incidents(reconcile(store.load_incidents(), list(incidents), dt.date(2026, 7, 12), [RecordingSink.name]))


def _outbox(store: Store) -> list[tuple[str, str, str]]:
    """(account, event, status) of every notification, oldest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(outbox.c.payload, outbox.c.event, outbox.c.status).order_by(outbox.c.id)).all()
    return [(json.loads(payload)["account_id"], event, status) for payload, event, status in rows]


def test_a_silenced_notification_is_not_sent_and_the_incident_stays(store: Store) -> None:
    silence_id = store.add_silence(Silence(NOW + dt.timedelta(days=7), account="4821937710", reason="paused", created_by="ops"), now=NOW)
    _cycle(store, HARBOR, LAKESIDE)
    sink = RecordingSink()
    report = deliver(store, [sink], now=NOW)
    assert (report.sent, report.silenced, report.failed, report.pending) == (1, 1, 0, 0)
    assert sink.delivered == [("opened", "5530019921")]
    assert _outbox(store) == [("4821937710", "opened", "silenced"), ("5530019921", "opened", "sent")]
    assert store.outbox_counts() == {"sent": 1, "silenced": 1}
    assert [(row["account_id"], row["status"]) for row in store.load_incidents()] == [("4821937710", "open"), ("5530019921", "open")]
    assert deliver(store, [sink], now=NOW).silenced == 0  # held back once, not again and again

    assert store.expire_silence(silence_id, now=NOW + dt.timedelta(hours=1))
    _cycle(store, dataclasses.replace(HARBOR, resolved_on=dt.date(2026, 7, 12)), LAKESIDE)
    report = deliver(store, [sink], now=NOW + dt.timedelta(hours=2))
    assert (report.sent, report.silenced) == (1, 0)
    assert sink.delivered[1:] == [("resolved", "4821937710")]


def test_a_config_silence_holds_back_until_its_end(store: Store) -> None:
    config = Config.model_validate({"alerts": {"silences": [{"rule": "cpl-spike-1d", "party": "beacon", "until": "2026-07-20"}]}})
    _cycle(store, HARBOR, LAKESIDE)
    sink = RecordingSink()
    assert deliver(store, [sink], config=config, now=dt.datetime(2026, 7, 20, 23, 59)).silenced == 1
    assert sink.delivered == [("opened", "5530019921")]
    _cycle(store, dataclasses.replace(HARBOR, resolved_on=dt.date(2026, 7, 12)), LAKESIDE)
    report = deliver(store, [sink], config=config, now=dt.datetime(2026, 7, 21))  # the end of the 20th
    assert (report.sent, report.silenced) == (1, 0)
    assert sink.delivered[1:] == [("resolved", "4821937710")]


def test_stored_silences_in_force_and_expired(store: Store) -> None:
    ends = [NOW + dt.timedelta(hours=1), NOW + dt.timedelta(days=1), NOW - dt.timedelta(hours=1)]
    ids = [store.add_silence(Silence(until, party="beacon"), now=NOW - dt.timedelta(days=1)) for until in ends]
    assert store.expire_silence(ids[1], now=NOW)
    assert store.expire_silence(ids[1], now=NOW + dt.timedelta(hours=5))  # already expired: keeps its time
    assert not store.expire_silence(999)
    assert [s.id for s in store.silences(active_at=NOW)] == [ids[0]]
    assert [s.id for s in store.silences(active_at=NOW - dt.timedelta(minutes=1))] == ids[:2]
    every = store.silences()
    assert [(s.id, s.party, s.source, s.expired_at) for s in every] == [
        (ids[0], "beacon", "store", None),
        (ids[1], "beacon", "store", NOW),
        (ids[2], "beacon", "store", None),
    ]


def test_a_store_from_before_silences_gets_the_table(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE silences"))
        conn.execute(schema_version.update().values(version=6))
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema_version.c.version)).scalar_one() == SCHEMA_VERSION
    assert store.silences() == []


# ----------------------------------------------------------------------------------------------
# the command line


@pytest.fixture
def project(tmp_path: Path, store_url: str) -> Path:
    """The embedded default in ``tmp_path`` with its store on ``store_url``; returns config.yaml."""
    path = copy_default_project(tmp_path)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["store"]["url"] = store_url
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--config", str(config), "silence", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_add_list_expire(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(project, capsys, "add", "--account", "4821937710", "--rule", "cpl-spike-1d", "--until", "+7d", "--reason", "client paused", "--by", "dana")
    assert (code, out) == (0, "1\n")
    assert err.startswith("silence 1: account=4821937710 rule=cpl-spike-1d until ")

    code, out, _ = _run(project, capsys, "list")
    header, _dashes, row = out.splitlines()
    assert header.split() == ["id", "matchers", "until", "reason", "by", "source"]
    assert row.startswith("1   account=4821937710 rule=cpl-spike-1d  ") and row.endswith("  client paused  dana  store")

    assert _run(project, capsys, "expire", "1")[:2] == (0, "silence 1 expired\n")
    assert _run(project, capsys, "list")[1] == "(none)\n"
    assert "UTC (expired)  client paused  dana  store" in _run(project, capsys, "list", "--all")[1]


def test_cli_expire_an_unknown_silence(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(project, capsys, "expire", "42") == (1, "", "no silence 42 in the store; `anomaly silence list --all` lists them\n")


def test_cli_add_rejects_what_would_silence_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(project, capsys, "add", "--party", "beecon", "--until", "2026-01-01", "--reason", "typo")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "command line: --party: party 'beecon' is not defined under 'parties' (defined: beacon, northwind)",
        "command line: --until: 2026-01-02 00:00 UTC is in the past",
    ]
    assert _run(project, capsys, "add", "--until", "+1d", "--reason", "all")[2] == (
        "command line: give at least one of --account, --campaign, --rule, --party\n"
    )
    with pytest.raises(SystemExit) as excinfo:
        _run(project, capsys, "add", "--account", "4821937710", "--until", "soon", "--reason", "x")
    assert excinfo.value.code == 2
    assert f"argument --until: expected {FORMS}, got 'soon'" in capsys.readouterr().err


def test_cli_lists_config_silences_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = copy_default_project(tmp_path)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('  silences:\n    - {campaign: "20118341", until: 2099-12-31, reason: seasonal, created_by: ops}\n')
    (tmp_path / "sample").mkdir()
    code, out, _ = _run(path, capsys, "list")
    assert out.splitlines()[2].split() == ["-", "campaign=20118341", "2100-01-01", "00:00", "UTC", "seasonal", "ops", "config"]


def test_a_silenced_account_is_detected_but_not_announced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = copy_default_project(tmp_path)
    sample.write_sample(tmp_path / "sample")
    assert _run(config, capsys, "add", "--account", sample.STORY_CAMPAIGN.account_id, "--until", "+1d", "--reason", "handoff review")[0] == 0
    assert main(["--config", str(config), "run", "--today", str(sample.END + dt.timedelta(days=1))]) == 0
    out, err = capsys.readouterr()
    # console and jsonl: Lakeside Law's alert; Harbor Dental's alert and its handover's message held back
    assert "2 sent, 0 failed, 0 pending, 4 silenced" in err
    assert "Lakeside Law" in out and "Harbor Dental Group" not in out
    assert main(["--config", str(config), "incidents"]) == 0
    assert "Harbor Dental Group" in capsys.readouterr().out


def test_a_silence_in_config_holds_back_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = copy_default_project(tmp_path)
    sample.write_sample(tmp_path / "sample")
    until = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    text = config.read_text(encoding="utf-8").replace(
        "alerts:\n", f"alerts:\n  silences:\n    - {{account: '{sample.STORY_CAMPAIGN.account_id}', until: {until}, reason: handoff review}}\n", 1
    )
    config.write_text(text, encoding="utf-8")
    assert main(["--config", str(config), "run", "--today", str(sample.END + dt.timedelta(days=1))]) == 0
    out, err = capsys.readouterr()
    assert "4 silenced" in err and "Lakeside Law" in out and "Harbor Dental Group" not in out
