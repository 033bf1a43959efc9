"""Routing by party, account and severity to sinks, with mentions; updates when the excess cost
crosses a step; and the config that sets both, with its errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from anomaly import sample
from anomaly.alerts.routing import Router, Target
from anomaly.cli import main
from anomaly.config import AlertsConfig, RouteConfig, load_config
from anomaly.incidents import Incident, reconcile
from anomaly.store import Store, outbox
from tests.helpers import copy_default_project
from tests.test_config import expected, load_error, write_case
from tests.test_silences import HARBOR, LAKESIDE

AS_OF = dt.date(2026, 7, 12)
SINKS = ["console", "slack:C0BEACON", "slack:C0LEADS", "slack:C0ALERTS"]


def alerts(routes: list[dict], default_sinks: list[str] | None = None) -> AlertsConfig:
    return AlertsConfig(
        sinks=[{"type": "console"}] + [{"type": "slack", "channel": s.split(":")[1], "token": "x"} for s in SINKS[1:]],
        routes=[RouteConfig.model_validate(r) for r in routes],
        default_sinks=default_sinks or [],
    )


BEACON_ROUTE = {"party": "beacon", "sinks": "slack:C0BEACON", "mentions": ["S0BEACON"]}
CRITICAL_ROUTE = {"severity": "critical", "sinks": ["slack:C0LEADS"], "mentions": ["U0CMO"]}


def payload(**overrides) -> dict:
    return {"account_id": "4821937710", "managing_party": "beacon", "party_now": "beacon", "severity": "warning", **overrides}


# ----------------------------------------------------------------------------------------------
# the router


@pytest.mark.parametrize(
    ("routes", "default", "incident", "targets"),
    [
        pytest.param([], None, payload(), [Target(s) for s in SINKS], id="no-routes-every-sink"),
        pytest.param(
            [BEACON_ROUTE], ["slack:C0ALERTS"], payload(),
            [Target("console"), Target("slack:C0BEACON", ("S0BEACON",)), Target("slack:C0LEADS")], id="party-route",  # C0LEADS: named by no route
        ),
        pytest.param(
            [BEACON_ROUTE], ["slack:C0ALERTS"], payload(managing_party="northwind", party_now="northwind"),
            [Target("console"), Target("slack:C0LEADS"), Target("slack:C0ALERTS")], id="the-rest-to-the-default",
        ),
        pytest.param(
            [BEACON_ROUTE, CRITICAL_ROUTE], None, payload(severity="critical"),
            [Target("console"), Target("slack:C0BEACON", ("S0BEACON",)), Target("slack:C0ALERTS")], id="first-match-decides",
        ),
        pytest.param(
            [{**BEACON_ROUTE, "continue": True}, CRITICAL_ROUTE], None, payload(severity="critical"),
            [Target("console"), Target("slack:C0BEACON", ("S0BEACON",)), Target("slack:C0LEADS", ("U0CMO",)), Target("slack:C0ALERTS")],
            id="continue-adds-the-next-match",
        ),
        pytest.param(
            [{**BEACON_ROUTE, "continue": True}, CRITICAL_ROUTE], ["slack:C0ALERTS"], payload(severity="warning"),
            [Target("console"), Target("slack:C0BEACON", ("S0BEACON",))], id="warning-below-a-critical-route",
        ),
        pytest.param(
            [{"party": "beacon", "party_at": "now", "sinks": ["slack:C0BEACON"]}], ["slack:C0ALERTS"],
            payload(managing_party="northwind", party_now="beacon"),
            [Target("console"), Target("slack:C0BEACON"), Target("slack:C0LEADS")], id="follows-the-party-managing-now",
        ),
        pytest.param(
            [BEACON_ROUTE], ["slack:C0ALERTS"], payload(managing_party="northwind", party_now="beacon"),
            [Target("console"), Target("slack:C0LEADS"), Target("slack:C0ALERTS")], id="party-at-onset-by-default",
        ),
        pytest.param(
            [{"account": "4821937710", "sinks": ["slack:C0LEADS", "slack:C0BEACON"], "mentions": "here"}, {"sinks": "slack:C0BEACON", "mentions": "U0X"}],
            None, payload(), [Target("console"), Target("slack:C0BEACON", ("here",)), Target("slack:C0LEADS", ("here",)), Target("slack:C0ALERTS")],
            id="account-route-to-two-sinks",
        ),
        pytest.param(
            [{"account": ["111", "222"], "sinks": ["slack:C0LEADS"]}, {"sinks": "slack:C0BEACON", "mentions": "U0X"}],
            None, payload(), [Target("console"), Target("slack:C0BEACON", ("U0X",)), Target("slack:C0ALERTS")],
            id="a-route-without-matchers-catches-all",
        ),
    ],
)
def test_router(routes, default, incident, targets) -> None:
    assert Router(alerts(routes, default), SINKS).targets(incident) == targets


# ----------------------------------------------------------------------------------------------
# reconcile: routed notifications, their mentions, and later notifications that follow them


def _notes(store: Store) -> list[tuple[str, str, str, list[str]]]:
    """(account, event, sink, mentions) of every notification, oldest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(outbox.c.payload, outbox.c.event, outbox.c.sink).order_by(outbox.c.id)).all()
    return [(json.loads(p)["account_id"], event, sink, json.loads(p).get("mentions", [])) for p, event, sink in rows]


def _cycle(store: Store, router: Router, *incidents: Incident, steps=(1000.0, 5000.0)) -> int:
    return store.save_incidents(reconcile(store.load_incidents(), list(incidents), AS_OF, router, excess_steps=steps))


def test_opened_goes_where_its_route_says_with_the_routes_mentions(store: Store) -> None:
    router = Router(alerts([BEACON_ROUTE], ["slack:C0ALERTS"]), [s for s in SINKS if s != "slack:C0LEADS"])

    assert _cycle(store, router, HARBOR, LAKESIDE) == 4

    assert _notes(store) == [
        ("4821937710", "opened", "console", []),
        ("4821937710", "opened", "slack:C0BEACON", ["S0BEACON"]),
        ("5530019921", "opened", "console", []),
        ("5530019921", "opened", "slack:C0ALERTS", []),
    ]
    assert _cycle(store, router, HARBOR, LAKESIDE) == 0  # a second run enqueues nothing


def test_a_later_notification_goes_where_the_earlier_went_and_where_it_routes_now(store: Store) -> None:
    router = Router(alerts([{**BEACON_ROUTE, "continue": True}, CRITICAL_ROUTE], ["slack:C0ALERTS"]), SINKS)
    warning = dataclasses.replace(HARBOR, severity="warning", opening_severity="warning", critical_on=None)
    _cycle(store, router, warning)

    _cycle(store, router, HARBOR)  # now critical: the leads' channel hears of it too
    resolved = dataclasses.replace(HARBOR, resolved_on=AS_OF, last_active=AS_OF)
    _cycle(store, router, resolved)

    assert [(event, sink, mentions) for _, event, sink, mentions in _notes(store)] == [
        ("opened", "console", []),
        ("opened", "slack:C0BEACON", ["S0BEACON"]),
        ("updated", "console", []),
        ("updated", "slack:C0BEACON", ["S0BEACON"]),
        ("updated", "slack:C0LEADS", ["U0CMO"]),
        ("resolved", "console", []),
        ("resolved", "slack:C0BEACON", ["S0BEACON"]),
        ("resolved", "slack:C0LEADS", ["U0CMO"]),
    ]


def test_routing_changed_in_config_still_finishes_the_thread_it_started(store: Store) -> None:
    _cycle(store, Router(alerts([BEACON_ROUTE], ["slack:C0ALERTS"]), SINKS), HARBOR)

    moved = Router(alerts([{"party": "beacon", "sinks": ["slack:C0LEADS"]}], ["slack:C0ALERTS"]), SINKS)
    _cycle(store, moved, dataclasses.replace(HARBOR, resolved_on=AS_OF))

    resolved = [(sink, mentions) for _, event, sink, mentions in _notes(store) if event == "resolved"]
    assert resolved == [("console", []), ("slack:C0BEACON", ["S0BEACON"]), ("slack:C0LEADS", [])]


# ----------------------------------------------------------------------------------------------
# excess steps


@pytest.mark.parametrize(
    ("later", "update"),
    [
        pytest.param({"excess_cost": 4999.0}, None, id="below-the-next-step"),
        pytest.param({"excess_cost": 5000.0}, ("excess:5000", {"severity": None, "excess_step": 5000.0}), id="on-the-step"),
        pytest.param({"excess_cost": 30000.0}, ("excess:25000", {"severity": None, "excess_step": 25000.0}), id="several-steps-one-update"),
        pytest.param(
            {"excess_cost": 6000.0, "severity": "critical"}, ("critical,excess:5000", {"severity": "critical", "excess_step": 5000.0}),
            id="severity-and-excess-one-update",
        ),
        pytest.param({"excess_cost": 900.0}, None, id="smaller-after-restatement"),
    ],
)
def test_an_update_when_the_excess_crosses_a_step(store: Store, later: dict, update) -> None:
    warning = dataclasses.replace(HARBOR, severity="warning", opening_severity="warning", critical_on=None)  # excess 1,380
    router = Router.to_all(["console"])
    _cycle(store, router, warning, steps=(1000.0, 5000.0, 10000.0, 25000.0))

    _cycle(store, router, dataclasses.replace(warning, **later), steps=(1000.0, 5000.0, 10000.0, 25000.0))

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(outbox.c.dedupe_key, outbox.c.payload).where(outbox.c.event == "updated")).all()
    if update is None:
        assert rows == []
    else:
        ((key, body),) = rows
        assert key.split(":", 2)[2].rsplit(":console", 1)[0] == update[0]
        assert json.loads(body)["update"] == update[1]
    assert "update" not in store.load_incidents()[0]["details"]["payload"]  # the notification's, not the incident's


# ----------------------------------------------------------------------------------------------
# config


ROUTED_CONFIG = """\
parties:
  beacon: {name: Beacon Reach}
  northwind: {name: Northwind Digital}
alerts:
  sinks:
    - type: console
    - type: jsonl
      path: out/beacon.jsonl
    - type: jsonl
      path: out/all.jsonl
    - type: slack
      channel: C0LEADS
      token: ${SLACK_BOT_TOKEN}
  routes:
    - party: beacon
      sinks: jsonl:out/beacon.jsonl
      mentions: [S0BEACON, U0DANA1]
      continue: true
    - severity: critical
      account: ["4821937710"]
      sinks: [slack:C0LEADS]
      mentions: here
  default_sinks: [jsonl:out/all.jsonl]
  excess_steps: [500, 2500]
  repeat_every_hours: 12
"""


def test_routes_load_with_sink_names_as_written(tmp_path: Path) -> None:
    config, _ = load_config(write_case(tmp_path, ROUTED_CONFIG), environ={"SLACK_BOT_TOKEN": "xoxb-1"})

    first, second = config.alerts.routes
    assert (first.party, first.sinks, first.mentions, first.continue_matching) == (
        ["beacon"], [f"jsonl:{tmp_path.resolve() / 'out/beacon.jsonl'}"], ["S0BEACON", "U0DANA1"], True,
    )
    assert (second.account, second.severity, second.sinks, second.mentions, second.continue_matching) == (
        ["4821937710"], "critical", ["slack:C0LEADS"], ["here"], False,
    )
    assert config.alerts.default_sinks == [f"jsonl:{tmp_path.resolve() / 'out/all.jsonl'}"]
    assert (config.alerts.excess_steps, config.alerts.repeat_every_hours) == ([500.0, 2500.0], 12.0)


ROUTE_ERRORS = [
    pytest.param(
        "  routes:\n    - party: beacon\n      sinks: [slack:C0LAEDS]\n",
        ["config.yaml: alerts.routes[0].sinks[0]: no configured alert sink is named 'slack:C0LAEDS'; did you mean 'slack:C0LEADS'? configured: console, slack:C0LEADS"],
        id="unknown-sink",
    ),
    pytest.param(
        "  routes:\n    - party: beakon\n      sinks: [console]\n",
        ["config.yaml: alerts.routes[0].party[0]: party 'beakon' is not defined under 'parties' (defined: beacon)"],
        id="unknown-party",
    ),
    pytest.param(
        "  routes:\n    - party: beacon\n      sinks: [console]\n      mentions: ['<!everyone>']\n",
        ["config.yaml: alerts.routes[0].mentions[0]: expected a user ID (U0123ABCD), a user group ID (S0123ABCD), 'here' or 'channel', got '<!everyone>'"],
        id="bad-mention",
    ),
    pytest.param(
        "  routes:\n    - party: beacon\n",
        ["config.yaml: alerts.routes[0].sinks: required key is missing"],
        id="route-without-sinks",
    ),
    pytest.param(
        "  routes:\n    - severity: urgent\n      sinks: [console]\n",
        ["config.yaml: alerts.routes[0].severity: input should be 'warning' or 'critical', got 'urgent'"],
        id="bad-severity",
    ),
    pytest.param(
        "  routes:\n    - party: beacon\n      sink: [console]\n",
        [
            "config.yaml: alerts.routes[0].sinks: required key is missing",
            "config.yaml: alerts.routes[0].sink: unknown key; did you mean 'sinks'? expected one of: account, continue, mentions, party, party_at, platform, severity, sinks",
        ],
        id="typo-in-a-route",
    ),
    pytest.param(
        "  default_sinks: [jsonl:nowhere.jsonl]\n",
        ["config.yaml: alerts.default_sinks[0]: no configured alert sink is named 'jsonl:{root}/nowhere.jsonl'; configured: console, slack:C0LEADS"],
        id="unknown-default-sink",
    ),
    pytest.param(
        "  excess_steps: [5000, 1000]\n",
        ["config.yaml: alerts.excess_steps: expected ascending amounts, got [5000.0, 1000.0]"],
        id="steps-not-ascending",
    ),
    pytest.param(
        "  campaign_url: 'https://ads.example/{account_id.__class__}'\n",
        ["config.yaml: alerts.campaign_url: expected only {account_id} and {campaign_id} between braces, got 'https://ads.example/{account_id.__class__}'"],
        id="campaign-url-with-other-fields",
    ),
    pytest.param(
        "  campaign_url: 'javascript:alert(1)'\n",
        ["config.yaml: alerts.campaign_url: expected an https:// URL, got 'javascript:alert(1)'"],
        id="campaign-url-not-https",
    ),
    pytest.param(
        "  slack_app:\n    bot_token: xoxb-1\n",
        ["config.yaml: alerts.slack_app: expected app_token (Socket Mode) or signing_secret (HTTP requests from Slack), got neither"],
        id="slack-app-without-a-way-in",
    ),
]


@pytest.mark.parametrize(("alerts_tail", "lines"), ROUTE_ERRORS)
def test_route_config_errors(tmp_path: Path, alerts_tail: str, lines: list[str]) -> None:
    text = (
        "parties:\n  beacon: {name: Beacon Reach}\n"
        "alerts:\n  sinks:\n    - type: console\n    - {type: slack, channel: C0LEADS, token: xoxb-1}\n" + alerts_tail
    )
    error = load_error(write_case(tmp_path, text))
    assert str(error) == expected(tmp_path, [line.replace("{root}", str(tmp_path.resolve())) for line in lines])


# ----------------------------------------------------------------------------------------------
# end to end: the demo with a route for the partner


def test_the_demo_routes_the_partners_incident_to_the_partners_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = copy_default_project(tmp_path)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["alerts"]["sinks"] = [{"type": "jsonl", "path": "sample/beacon.jsonl"}, {"type": "jsonl", "path": "sample/alerts.jsonl"}]
    config["alerts"]["routes"] = [{"party": "beacon", "sinks": ["jsonl:sample/beacon.jsonl"], "mentions": ["S0BEACON"]}]
    config["alerts"]["default_sinks"] = ["jsonl:sample/alerts.jsonl"]
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    sample.write_sample(tmp_path / "sample")

    assert main(["--config", str(path), "run", "--today", str(sample.END + dt.timedelta(days=1))]) == 0

    def lines(name: str) -> list[tuple[str, str, list[str]]]:
        records = [json.loads(line) for line in (tmp_path / "sample" / name).read_text(encoding="utf-8").splitlines()]
        return [(r["event"], r["account_name"], r.get("mentions", [])) for r in records]

    # the handover goes to both parties' routes: Beacon Reach's (taking over) and, for Northwind
    # Digital (handing over), which no route names, the default sinks
    assert lines("beacon.jsonl") == [("handover", "Harbor Dental Group", ["S0BEACON"]), ("opened", "Harbor Dental Group", ["S0BEACON"])]
    assert lines("alerts.jsonl") == [("handover", "Harbor Dental Group", []), ("opened", "Lakeside Law", [])]


# ----------------------------------------------------------------------------------------------
# on the wire: two channels of one workspace


def test_each_channel_gets_its_incidents_and_its_mentions(store: Store) -> None:
    from anomaly.alerts import deliver
    from anomaly.alerts.slack import SlackSink
    from anomaly.config import SlackSinkConfig
    from tests.slack_fake import FakeSlack

    with FakeSlack(channels={"C0BEACON": "#beacon", "C0ALERTS": "#media-alerts"}) as fake:
        sinks = [
            SlackSink(SlackSinkConfig(type="slack", channel=channel, token=fake.token, base_url=fake.base_url))
            for channel in ("C0BEACON", "C0ALERTS")
        ]
        routes = alerts([{"party": "beacon", "sinks": ["slack:C0BEACON"], "mentions": ["S0BEACON", "U0DANA1"]}], ["slack:C0ALERTS"])
        _cycle(store, Router(routes, [s.name for s in sinks]), HARBOR, LAKESIDE)

        report = deliver(store, sinks)

        assert (report.sent, report.pending) == (2, 0)
        (beacon,) = fake.messages("C0BEACON")
        (rest,) = fake.messages("C0ALERTS")
    assert "Account 4821937710" in beacon["text"] and beacon["text"].endswith("<!subteam^S0BEACON> <@U0DANA1>")
    assert "<!subteam^S0BEACON> <@U0DANA1>" in json.dumps(beacon["blocks"])
    assert "Account 5530019921" in rest["text"] and "<!" not in rest["text"] and "<@" not in json.dumps(rest["blocks"])
