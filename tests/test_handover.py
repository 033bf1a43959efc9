"""Handovers: found in declared and inferred ownership, their reference figures frozen in the store,
their message sent once through the outbox to both parties' routes, rendered for the console,
JSON lines and Slack (escaped, within Slack's limits), and told in the demo before the incident."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from anomaly import sample
from anomaly.alerts import DeliveryError, deliver
from anomaly.alerts.render import render_text
from anomaly.alerts.routing import Router
from anomaly.alerts.sinks import Delivery, JsonlSink
from anomaly.alerts.slack import SlackSink
from anomaly.alerts.slack_message import FIELD_CHARS, HEADER_CHARS, MAX_BLOCKS, SECTION_CHARS, TEXT_CHARS, build_handover
from anomaly.cli import main
from anomaly.config import Config, SlackSinkConfig
from anomaly.handover import Handover, find_handovers, handover_writes, reference_figures
from anomaly.ownership import infer_ownership, with_inferred
from anomaly.pipeline import record_handovers
from anomaly.schema import empty_changes, empty_ownership, normalise_changes, normalise_metrics
from anomaly.store import SCHEMA_VERSION, IncidentWrite, Store, handovers, schema_version
from tests.helpers import copy_default_project, periods
from tests.slack_fake import FakeSlack, fake_slack, sleeps  # noqa: F401 - the fixtures
from tests.test_store import incident

D = dt.date(2026, 7, 8)  # the handover's first day


def config(**alerts) -> Config:
    return Config.model_validate(
        {
            "parties": {
                "northwind": {"name": "Northwind Digital", "domains": ["northwind.example"]},
                "beacon": {"name": "Beacon Reach", "domains": ["beacon.example"]},
            },
            "alerts": {"sinks": [{"type": "console"}], **alerts},
        }
    )


def metrics_frame(days: int = 40, end: dt.date = dt.date(2026, 7, 12), campaigns: dict | None = None, account_name: str = "Acme Clinics") -> pd.DataFrame:
    """Account "A": per campaign a constant day (spend, clicks, leads), ``days`` days up to ``end``."""
    campaigns = campaigns or {"c1": ("Brand", 100.0, 50, 2.0), "c2": ("Generic", 300.0, 100, 3.0)}
    rows = []
    for campaign_id, (name, spend, clicks, leads) in campaigns.items():
        for day in pd.date_range(end - dt.timedelta(days=days - 1), end):
            rows.append(
                {"date": day, "account_id": "A", "account_name": account_name, "campaign_id": campaign_id, "campaign_name": name,
                 "currency": "USD", "spend": spend, "clicks": clicks, "impressions": clicks * 20, "leads": leads}
            )
    return normalise_metrics(pd.DataFrame(rows))


HANDED = periods(("A", "", "northwind", "2026-01-01", "2026-07-08"), ("A", "", "beacon", "2026-07-08", None))


# ----------------------------------------------------------------------------------------------
# which changes of party are handovers


@pytest.mark.parametrize(
    ("rows", "default", "expected"),
    [
        pytest.param(
            [("A", "", "northwind", "2026-01-01", "2026-07-08"), ("A", "", "beacon", "2026-07-08", None)], None,
            [Handover("A", "", D, "northwind", "beacon")], id="account-handed-over",
        ),
        pytest.param([("A", "", "beacon", "2026-07-08", None)], "northwind", [], id="an-accounts-first-period-hands-nothing-over"),
        pytest.param(
            [("A", "", "northwind", "2026-01-01", None), ("A", "c1", "beacon", "2026-07-08", None)], None,
            [Handover("A", "c1", D, "northwind", "beacon")], id="one-campaign-from-its-accounts-party",
        ),
        pytest.param([("A", "c1", "beacon", "2026-07-08", None)], "northwind", [Handover("A", "c1", D, "northwind", "beacon")], id="one-campaign-from-the-default-party"),
        pytest.param([("A", "c1", "beacon", "2026-07-08", None)], None, [], id="one-campaign-from-nobody-known"),
        pytest.param(
            [("A", "", "northwind", "2026-01-01", "2026-07-08"), ("A", "", "northwind", "2026-07-08", None)], None, [], id="same-party-again",
        ),
        pytest.param(
            [("A", "", "northwind", "2026-01-01", "2026-07-08"), ("A", "", "beacon", "2026-07-08", "2026-08-01"), ("A", "", "northwind", "2026-08-01", None)],
            None,
            [Handover("A", "", D, "northwind", "beacon"), Handover("A", "", dt.date(2026, 8, 1), "beacon", "northwind")],
            id="handed-back",
        ),
    ],
)
def test_declared_handovers(rows, default, expected) -> None:
    assert find_handovers(periods(*rows), default) == expected


def test_an_inferred_handover_is_found_where_config_declares_nothing() -> None:
    changes = normalise_changes(
        pd.DataFrame(
            [(dt.datetime(2026, 6, 1, 9), "B", "c9", "ann@northwind.example"), *[(dt.datetime(2026, 7, 8, 10 + i), "B", "c9", "dana@beacon.example") for i in range(3)]],
            columns=["changed_at", "account_id", "campaign_id", "user_email"],
        ).assign(resource_type="CAMPAIGN", operation="UPDATE", changed_fields="status")
    )
    inferred = infer_ownership(changes.assign(local_day=changes["changed_at"].dt.normalize()), {"northwind.example": "northwind", "beacon.example": "beacon"}, 3)
    declared = periods(("A", "", "northwind", "2026-01-01", None))
    assert find_handovers(with_inferred(declared, inferred)) == [Handover("B", "", D, "northwind", "beacon")]


# ----------------------------------------------------------------------------------------------
# the reference figures


def test_the_reference_is_each_campaigns_four_weeks_before_the_handover() -> None:
    metrics = metrics_frame()
    metrics.loc[(metrics["campaign_id"] == "c1") & (metrics["date"] == pd.Timestamp("2026-07-08")), "spend"] = 9999.0  # the handover day: not in it
    metrics = metrics[~((metrics["campaign_id"] == "c2") & (metrics["date"] == pd.Timestamp("2026-07-01")))]  # a day without a row: no activity

    reference = reference_figures(metrics, Handover("A", "", D, "northwind", "beacon"), 28)

    assert (reference["from"], reference["to"], reference["days"]) == ("2026-06-10", "2026-07-07", 28)
    generic, brand = reference["campaigns"]  # most spend first
    assert brand == {
        "campaign_id": "c1", "campaign_name": "Brand", "spend": 2800.0, "clicks": 1400, "leads": 56.0, "days": 28,
        "cpl": 50.0, "cpc": 2.0, "cvr": 0.04, "daily_spend": 100.0, "leads_per_day": 2.0,
    }
    assert (generic["spend"], generic["days"], generic["daily_spend"], generic["cpl"], generic["cpc"], generic["cvr"]) == (8100.0, 28, 289.29, 100.0, 3.0, 0.03)
    assert reference["total"]["spend"] == 10900.0 and reference["total"]["leads"] == 137.0


def test_a_campaign_that_began_within_the_window_counts_its_own_days_and_one_without_leads_has_no_cost_per_lead() -> None:
    metrics = metrics_frame(days=14, campaigns={"c1": ("New", 70.0, 0, 0.0)}, end=dt.date(2026, 7, 20))
    (new,) = reference_figures(metrics, Handover("A", "", D, "northwind", "beacon"), 28)["campaigns"]
    assert (new["days"], new["daily_spend"], new["cpl"], new["cpc"], new["cvr"]) == (1, 70.0, None, None, None)  # its first day was 07-07


def test_an_accounts_handover_leaves_out_a_campaign_kept_by_a_period_of_its_own() -> None:
    own = periods(*[tuple(r) for r in HANDED.astype(object).where(HANDED.notna(), None).itertuples(index=False)], ("A", "c2", "northwind", "2026-01-01", None))
    reference = reference_figures(metrics_frame(), Handover("A", "", D, "northwind", "beacon"), 28, own)
    assert [c["campaign_id"] for c in reference["campaigns"]] == ["c1"]


def test_the_reference_is_frozen_when_the_handover_is_first_seen(store: Store) -> None:
    cfg = config()
    store.ingest("s", dt.date(2026, 6, 1), dt.date(2026, 7, 12), metrics_frame(), empty_changes())
    record_handovers(cfg, HANDED, store, dt.date(2026, 7, 9), Router.to_all(["console"]))
    restated = metrics_frame().assign(leads=0.0)
    store.ingest("s", dt.date(2026, 6, 1), dt.date(2026, 7, 12), restated, empty_changes())
    assert record_handovers(cfg, HANDED, store, dt.date(2026, 7, 10), Router.to_all(["console"])) == 0

    (row,) = store.load_handovers()
    assert (row["account_id"], row["campaign_id"], row["start"], row["from_party"], row["to_party"], row["detected_on"], row["notified"]) == (
        "A", "", D, "northwind", "beacon", dt.date(2026, 7, 9), True,
    )
    assert [c["cpl"] for c in row["details"]["payload"]["reference"]["campaigns"]] == [100.0, 50.0]  # as first seen, not as restated


# ----------------------------------------------------------------------------------------------
# routes: both parties'


def test_the_message_goes_to_the_routes_of_both_parties_with_their_mentions() -> None:
    cfg = config(
        sinks=[{"type": "console"}, {"type": "jsonl", "path": "/b.jsonl"}, {"type": "jsonl", "path": "/n.jsonl"}, {"type": "jsonl", "path": "/leads.jsonl"}, {"type": "jsonl", "path": "/other.jsonl"}],
        routes=[
            {"party": "beacon", "sinks": ["jsonl:/b.jsonl"], "mentions": ["S0BEACON"], "continue": True},
            {"party": "northwind", "party_at": "now", "sinks": ["jsonl:/n.jsonl"], "mentions": ["U0DANA123"]},
            {"severity": "critical", "sinks": ["jsonl:/leads.jsonl"]},
        ],
        default_sinks=["jsonl:/other.jsonl"],
    )
    router = Router(cfg.alerts, ["console", "jsonl:/b.jsonl", "jsonl:/n.jsonl", "jsonl:/leads.jsonl", "jsonl:/other.jsonl"])
    (write,) = handover_writes(HANDED, metrics_frame(), dt.date(2026, 7, 8), set(), router, cfg.handoff)
    targets = [(n["sink"], n["payload"].get("mentions")) for n in write.notifications]
    # beacon's route; northwind's route whatever its party_at; the console, which no route names;
    # never the route for critical incidents, nor the default sinks, since routes matched
    assert targets == [("console", None), ("jsonl:/b.jsonl", ["S0BEACON"]), ("jsonl:/n.jsonl", ["U0DANA123"])]
    assert write.values["details"]["targets"][1] == {"sink": "jsonl:/b.jsonl", "mentions": ["S0BEACON"]}


# ----------------------------------------------------------------------------------------------
# through the outbox: once, whatever happens


class Failing:
    def __init__(self, name: str):
        self.name = name

    def send(self, event, payload, delivery=None):
        raise DeliveryError("down")


def test_a_handover_is_sent_once_across_cycles_and_after_a_failed_send(store: Store, tmp_path: Path) -> None:
    cfg = config()
    log = tmp_path / "alerts.jsonl"
    sink = JsonlSink(log)
    store.ingest("s", dt.date(2026, 6, 1), dt.date(2026, 7, 12), metrics_frame(), empty_changes())
    router = Router.to_all([sink.name])
    assert record_handovers(cfg, HANDED, store, dt.date(2026, 7, 7), router) == 0  # not begun yet
    assert record_handovers(cfg, HANDED, store, dt.date(2026, 7, 8), router) == 1
    assert deliver(store, [Failing(sink.name)]).failed == 1  # the sink is down: it stays pending
    for day in (8, 9, 10):
        assert record_handovers(cfg, HANDED, store, dt.date(2026, 7, day), router) == 0
    assert deliver(store, [sink]).sent == 1
    assert deliver(store, [sink]).sent == 0

    (line,) = log.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert (record["event"], record["from_party"], record["to_party"], record["since"], record["handover_id"]) == ("handover", "northwind", "beacon", "2026-07-08", 1)
    assert "incident_id" not in record and "acknowledged_at" not in record
    (row,) = store.notifications()
    assert (row["incident_id"], row["handover_id"], row["event"], row["status"], row["attempts"]) == (None, 1, "handover", "sent", 2)


def test_a_crash_after_the_message_was_written_and_before_it_was_recorded_sends_it_once(store: Store, tmp_path: Path) -> None:
    cfg = config()
    sink = JsonlSink(tmp_path / "alerts.jsonl")
    store.ingest("s", dt.date(2026, 6, 1), dt.date(2026, 7, 12), metrics_frame(), empty_changes())
    record_handovers(cfg, HANDED, store, dt.date(2026, 7, 8), Router.to_all([sink.name]))
    (item,) = store.pending()
    sink.send(item.event, item.payload, Delivery(item.key, None, item.created_at, handover_id=item.handover_id))  # then the process dies
    assert record_handovers(cfg, HANDED, store, dt.date(2026, 7, 9), Router.to_all([sink.name])) == 0  # the next cycle
    assert deliver(store, [sink]).sent == 1
    assert len((tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()) == 1
    assert store.pending() == []


@pytest.mark.parametrize(
    ("as_of", "settings", "announced"),
    [
        pytest.param(dt.date(2026, 7, 15), {}, True, id="a-week-ago-is-announced"),
        pytest.param(dt.date(2026, 7, 16), {}, False, id="older-is-history"),
        pytest.param(dt.date(2026, 7, 20), {"announce_within_days": 14}, True, id="a-longer-window"),
        pytest.param(dt.date(2026, 7, 8), {"announce": False}, False, id="announce-off"),
    ],
)
def test_a_handover_found_in_history_is_recorded_not_announced(store: Store, as_of, settings, announced) -> None:
    cfg = Config.model_validate({**config().model_dump(mode="json", exclude={"rules_dir", "store"}), "handoff": settings})
    store.ingest("s", dt.date(2026, 6, 1), dt.date(2026, 7, 20), metrics_frame(end=dt.date(2026, 7, 20)), empty_changes())
    enqueued = record_handovers(cfg, HANDED, store, as_of, Router.to_all(["console"]))
    (row,) = store.load_handovers()
    assert (row["notified"], enqueued, len(store.notifications())) == ((True, 1, 1) if announced else (False, 0, 0))


def test_an_inferred_handover_is_announced_by_a_cycle(store: Store) -> None:
    cfg = config()
    inferred = pd.DataFrame([("A", "", "northwind", "2026-06-01"), ("A", "", "beacon", "2026-07-08")], columns=["account_id", "campaign_id", "party", "start"])
    store.ingest("s", dt.date(2026, 6, 1), dt.date(2026, 7, 12), metrics_frame(), empty_changes(), inferred.assign(start=pd.to_datetime(inferred["start"]), source="s"))
    assert record_handovers(cfg, empty_ownership(), store, dt.date(2026, 7, 9), Router.to_all(["console"])) == 1
    (row,) = store.load_handovers()
    assert (row["from_party"], row["to_party"], row["start"]) == ("northwind", "beacon", D)


# ----------------------------------------------------------------------------------------------
# the message


def payload(**overrides) -> dict:
    cfg = config()
    (write,) = handover_writes(HANDED, metrics_frame(), dt.date(2026, 7, 8), set(), Router.to_all(["console"]), cfg.handoff)
    return {**write.notifications[0]["payload"], "handover_id": 3, "event": "handover", **overrides}


def test_the_console_shows_who_handed_what_over_to_whom_since_when_and_the_reference() -> None:
    text = render_text("handover", payload(), config())
    assert text.splitlines() == [
        "[HANDOVER] Acme Clinics handed over: Northwind Digital → Beacon Reach",
        "  Account      Acme Clinics (A)",
        "  Handed over  the whole account (2 campaigns with data before it)",
        "  From         Northwind Digital",
        "  To           Beacon Reach, since Wed 2026-07-08",
        "  Before       the 4 weeks before it, Wed 2026-06-10 to Tue 2026-07-07 (kept as the reference):",
        "                 campaign                       cost/lead  cost/click  conv. rate   spend/day   leads/day",
        "                 Generic                             $100       $3.00       3.00%        $300         3.0",
        "                 Brand                             $50.00       $2.00       4.00%        $100         2.0",
        "                 all 2 campaigns                   $80.00       $2.67       3.33%        $400         5.0",
        "  Handover     #3, seen in the data of Wed 2026-07-08",
    ]


def test_slack_message_says_it_in_a_few_lines() -> None:
    message = build_handover(payload(mentions=["S0BEACON"]), config())
    header, lead, reference, context = message.blocks
    assert header["text"]["text"] == "Handover: Acme Clinics handed over: Northwind Digital → Beacon Reach"
    assert lead["text"]["text"] == (
        "*Acme Clinics* (A), the whole account (2 campaigns with data before it), is managed by *Beacon Reach* since *Wed Jul 8*, "
        "handed over by *Northwind Digital*. <!subteam^S0BEACON>"
    )
    assert reference["text"]["text"].splitlines() == [
        "*Before the handover* (4 weeks, Jun 10 – Jul 7), kept as the reference:",
        "• *Generic*: $100/lead · $3.00/click · 3.00% convert · $300/day · 3.0 leads/day",
        "• *Brand*: $50.00/lead · $2.00/click · 4.00% convert · $100/day · 2.0 leads/day",
        "• *All 2 campaigns*: $80.00/lead · $2.67/click · 3.33% convert · $400/day · 5.0 leads/day",
    ]
    assert context["elements"][0]["text"] == "Acme Clinics (A) · handover 3"
    assert message.text.endswith("since Wed Jul 8 <!subteam^S0BEACON>")


def test_names_are_escaped_and_keep_to_their_line() -> None:
    hostile = "<!channel> & <https://evil.example|Budget>\n*Next step*"
    metrics = metrics_frame(account_name=hostile, campaigns={"c1": (hostile, 100.0, 50, 2.0)})
    (write,) = handover_writes(HANDED, metrics, D, set(), Router.to_all(["console"]), config().handoff)
    cfg = Config.model_validate({**config().model_dump(mode="json", exclude={"rules_dir", "store"}), "parties": {"northwind": {"name": "<@U999> North"}, "beacon": {"name": "Beacon"}}})
    message = build_handover({**write.notifications[0]["payload"], "handover_id": 1}, cfg)
    wire = json.dumps(message.blocks) + message.text
    assert "<!channel>" not in wire and "<https://evil" not in wire and "<@U999>" not in wire
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|Budget&gt; *Next step*" in message.blocks[1]["text"]["text"]
    assert message.blocks[0]["text"]["text"].startswith("Handover: ‹!channel› & ‹https://evil.example|Budget› *Next step*")
    assert "\n*Next step*" not in wire


def test_the_slack_message_keeps_within_slacks_limits_with_many_long_names() -> None:
    campaigns = {f"c{i}": ("Ж" * 300 + f" {i}", 100.0 + i, 50, 2.0) for i in range(60)}
    metrics = metrics_frame(account_name="A" * 400, campaigns=campaigns)
    (write,) = handover_writes(HANDED, metrics, D, set(), Router.to_all(["console"]), config().handoff)
    message = build_handover({**write.notifications[0]["payload"], "handover_id": 1, "mentions": ["here"]}, config())
    assert len(message.blocks) <= MAX_BLOCKS and len(message.text) <= TEXT_CHARS and message.text.endswith("<!here>")
    assert len(message.blocks[0]["text"]["text"]) <= HEADER_CHARS
    for block in message.blocks[1:3]:
        assert len(block["text"]["text"]) <= SECTION_CHARS
    assert message.blocks[1]["text"]["text"].endswith("<!here>")
    assert "… and 40 more" in message.blocks[2]["text"]["text"]
    assert all(len(e["text"]) <= FIELD_CHARS for e in message.blocks[3]["elements"])


def test_the_slack_sink_posts_the_handover_once_with_its_key(fake_slack: FakeSlack, store: Store) -> None:
    sink = SlackSink(SlackSinkConfig(type="slack", channel="C0ALERTS", token=fake_slack.token, base_url=fake_slack.base_url, timeout_seconds=5), config())
    store.ingest("s", dt.date(2026, 6, 1), dt.date(2026, 7, 12), metrics_frame(), empty_changes())
    record_handovers(config(), HANDED, store, D, Router.to_all([sink.name]))
    (item,) = store.pending()
    fake_slack.fail_next("chat.postMessage", drop=True, after_store=True)  # stored, the answer lost
    assert deliver(store, [sink]).failed == 1
    assert deliver(store, [sink]).sent == 1
    (message,) = fake_slack.messages("C0ALERTS")
    assert message["metadata"] == {"event_type": "anomaly_alert", "event_payload": {"key": item.key, "handover_id": item.handover_id}}
    assert message["blocks"] == build_handover(item.payload, config()).blocks


# ----------------------------------------------------------------------------------------------
# the store: a version 11 store migrates, its outbox kept


def test_a_version_11_store_gains_handovers_and_keeps_its_outbox(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE outbox"))
        conn.execute(sa.text("DROP TABLE handovers"))
        conn.execute(
            sa.text(
                f"CREATE TABLE outbox (id {'SERIAL' if store.dialect == 'postgresql' else 'INTEGER NOT NULL'} PRIMARY KEY, dedupe_key TEXT NOT NULL UNIQUE, "
                "incident_id INTEGER NOT NULL REFERENCES incidents (id), event VARCHAR(16) NOT NULL, sink TEXT NOT NULL, "
                "payload TEXT NOT NULL, status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, last_error TEXT, "
                "created_at TIMESTAMP NOT NULL, sent_at TIMESTAMP, channel TEXT, ts VARCHAR(32), group_key TEXT)"
            )
        )
        conn.execute(sa.text("CREATE INDEX ix_outbox_pending ON outbox (status, id)"))
        conn.execute(schema_version.update().values(version=11))
    store.save_incidents([IncidentWrite(None, incident(), ())])
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO outbox (dedupe_key, incident_id, event, sink, payload, status, attempts, created_at) "
                "VALUES ('1:opened:2026-07-10:console', 1, 'opened', 'console', '{\"account_id\": \"A\"}', 'pending', 0, '2026-07-10 08:00:00')"
            )
        )

    store.migrate()

    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema_version.c.version)).scalar_one() == SCHEMA_VERSION == 12
        assert conn.execute(sa.select(sa.func.count()).select_from(handovers)).scalar_one() == 0
    (kept,) = store.pending()
    assert (kept.incident_id, kept.handover_id, kept.event) == (1, None, "opened")
    store.ingest("s", dt.date(2026, 6, 1), dt.date(2026, 7, 12), metrics_frame(), empty_changes())
    assert record_handovers(config(), HANDED, store, D, Router.to_all(["console"])) == 1
    assert [(i.incident_id, i.handover_id, i.event) for i in store.pending()] == [(1, None, "opened"), (None, 1, "handover")]


# ----------------------------------------------------------------------------------------------
# the demo


def test_the_demo_tells_harbor_dentals_handover_before_its_incident(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = copy_default_project(tmp_path)
    assert main(["--config", str(path), "demo"]) == 0
    out = capsys.readouterr().out
    cycle_08 = out.index("── cycle for Wed 2026-07-08")
    handover = out.index("[HANDOVER] Harbor Dental Group handed over: Northwind Digital → Beacon Reach")
    incident = out.index("[CRITICAL] Cost per lead 5.6× baseline: fewer leads per click — Harbor Dental Group / Generic - Leads")
    assert cycle_08 < handover < out.index("── cycle for Thu 2026-07-09") < incident
    block = out[handover:].split("\n\n", 1)[0].splitlines()
    assert block[:6] == [
        "[HANDOVER] Harbor Dental Group handed over: Northwind Digital → Beacon Reach",
        "  Account      Harbor Dental Group (4821937710) on Google Ads",
        "  Handed over  the whole account (3 campaigns with data before it)",
        "  From         Northwind Digital",
        "  To           Beacon Reach, since Wed 2026-07-08",
        "  Before       the 4 weeks before it, Wed 2026-06-10 to Tue 2026-07-07 (kept as the reference):",
    ]
    assert [line.split()[0:2] for line in block[7:10]] == [["Generic", "-"], ["Brand", "$37.25"], ["Implants", "-"]]
    assert block[-1] == "  Handover     #1, seen in the data of Wed 2026-07-08"
    assert out.count("[HANDOVER]") == 1
    store = Store(f"sqlite:///{tmp_path / 'sample' / 'anomaly.db'}")
    (row,) = store.load_handovers()
    generic = row["details"]["payload"]["reference"]["campaigns"][0]
    assert (row["notified"], generic["campaign_name"], round(generic["cpl"])) == (True, "Generic - Leads", 103)
    records = [json.loads(line) for line in (tmp_path / "sample" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert records[0]["event"] == "handover" and records[1]["event"] == "opened"
    store.engine.dispose()


def test_handovers_are_listed_with_the_figures_before_them(demo_config, tmp_path, capsys):
    from anomaly.analysis import Project

    frame = Project.open(demo_config).handovers()
    (harbor,) = frame.to_dict("records")
    assert (harbor["account_name"], harbor["campaign_id"], harbor["from_name"], harbor["to_name"]) == (
        "Harbor Dental Group", "", "Northwind Digital", "Beacon Reach",
    )
    assert harbor["start"] == pd.Timestamp("2026-07-08") and harbor["announced"] and harbor["platform"] == "google_ads"
    total = harbor["reference"]["total"]

    capsys.readouterr()
    assert main(["--config", str(demo_config), "handovers"]) == 0
    header, _, line = capsys.readouterr().out.splitlines()
    assert header.split() == ["id", "since", "account", "campaign", "handed", "over", "message", "cost/lead", "before", "spend/day", "before"]
    assert line.split("  ")[0] == "1" and "2026-07-08" in line and "whole account" in line
    assert "Northwind Digital → Beacon Reach" in line and "announced" in line
    assert f"${total['cpl']:,.2f}" in line and f"${total['daily_spend']:,.0f}" in line

    assert main(["--config", str(demo_config), "handovers", "--format", "json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert (record["start"], record["to_party"], record["reference"]["total"]) == ("2026-07-08", "beacon", total)

    empty = copy_default_project(tmp_path)
    text = empty.read_text().replace("sqlite:///sample/anomaly.db", f"sqlite:///{tmp_path}/empty.db")
    empty.write_text(text)
    assert main(["--config", str(empty), "handovers"]) == 0
    assert capsys.readouterr().out.strip() == (
        "No handovers recorded: the managing party of no account or campaign has changed in the stored data."
    )
