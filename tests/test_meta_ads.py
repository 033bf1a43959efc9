"""The Meta source against a local Graph API (``tests.meta_graph_fake``) through the real SDK: its
paging, report runs, error parsing and headers are exercised as they are against Meta."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from anomaly.alerts.change_words import describe
from anomaly.alerts.render import money
from anomaly.config import Config, MetaAdsSourceConfig, load_config
from anomaly.errors import ConfigError, SourceError
from anomaly.ownership import UNATTRIBUTED, domain_map, meta_actor, party_of_change, party_of_email
from anomaly.pipeline import make_connector
from anomaly.redaction import RedactingFilter
from connectors.meta_ads import MetaAdsConnector, TokenError, load_api, read_usage
from tests.meta_graph_fake import TOKEN, FakeAccount, FakeGraph, Failure, activity, insight

START, END = dt.date(2026, 3, 1), dt.date(2026, 3, 3)
RULES = Path(__file__).resolve().parent.parent / "rules"
DOMAINS = {"beaconreach.example": "beacon", "meta:100200300": "northwind", "meta:dana reyes": "beacon", "meta:777000": "beacon"}


class Clock:
    """An injected clock that the injected sleep moves on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def source(**settings) -> MetaAdsSourceConfig:
    return MetaAdsSourceConfig(type="meta_ads", name="meta", **{"ad_account_ids": ["act_111"], **settings})


def connector(graph: FakeGraph, clock: Clock | None = None, **settings) -> MetaAdsConnector:
    clock = clock or Clock()
    return MetaAdsConnector(source(**settings), DOMAINS, api=graph.api(), sleep=clock.sleep, clock=clock)


def acme(graph: FakeGraph, account_id: str = "111", **kw) -> FakeAccount:
    account = graph.add_account(FakeAccount(account_id, f"Acme {account_id}", **kw))
    account.insights += [
        insight("501", "2026-03-01", spend=120.50, impressions=4000, clicks=80, account=account,
                actions={"lead": 4, "onsite_conversion.lead_grouped": 3, "offsite_conversion.fb_pixel_lead": 1, "link_click": 80}),
        insight("501", "2026-03-02", spend=99.5, impressions=3500, clicks=70, account=account,
                actions={"onsite_conversion.lead_grouped": 2, "offsite_conversion.fb_pixel_lead": 1.5}),
        insight("502", "2026-03-02", spend=10, impressions=100, clicks=3, account=account),
        insight("501", "2026-02-27", spend=999, impressions=1, clicks=1, account=account),  # outside the range
    ]
    return account


@pytest.fixture
def graph():
    with FakeGraph() as fake:
        yield fake


# ---------------------------------------------------------------------------------------------
# insights and leads


def test_insights_become_daily_campaign_rows_with_leads_in_the_accounts_currency(graph):
    acme(graph, currency="EUR", timezone_name="Europe/Berlin")
    batch = connector(graph).fetch(START, END)
    rows = batch.metrics.set_index(["campaign_id", batch.metrics["date"].dt.strftime("%Y-%m-%d")])
    assert list(rows.index) == [("501", "2026-03-01"), ("501", "2026-03-02"), ("502", "2026-03-02")]
    assert rows["spend"].tolist() == [120.5, 99.5, 10.0]
    assert rows["impressions"].tolist() == [4000, 3500, 100]
    assert rows["clicks"].tolist() == [80, 70, 3]
    # the aggregate 'lead' stands for its parts where reported; the parts count where it is not
    assert rows["leads"].tolist() == [4.0, 3.5, 0.0]
    assert set(batch.metrics["currency"]) == {"EUR"}
    assert set(batch.metrics["account_id"]) == {"act_111"}
    assert set(batch.metrics["account_name"]) == {"Acme 111"}
    assert batch.failures == ()
    _, path, params = graph.calls("/act_111/insights")[0]
    assert params["level"] == "campaign" and params["time_increment"] == "1"
    assert json.loads(params["time_range"]) == {"since": "2026-03-01", "until": "2026-03-03"}
    assert set(params["fields"].split(",")) >= {"campaign_id", "spend", "actions", "account_currency", "date_start"}


@pytest.mark.parametrize(
    ("types", "leads"),
    [
        pytest.param(["offsite_conversion.fb_pixel_lead"], [1.0, 1.5], id="pixel-only"),
        pytest.param(["onsite_conversion.lead_grouped", "offsite_conversion.fb_pixel_lead"], [4.0, 3.5], id="parts-only"),
        pytest.param(["lead"], [4.0, 0.0], id="aggregate-only"),
    ],
)
def test_leads_count_the_configured_action_types(graph, types, leads):
    acme(graph)
    batch = connector(graph, lead_action_types=types).fetch(START, END)
    assert batch.metrics[batch.metrics["campaign_id"] == "501"]["leads"].tolist() == leads


def test_pages_of_insights_are_all_read(graph):
    account = graph.add_account(FakeAccount("111", "Big"))
    account.insights += [insight(str(600 + c), "2026-03-02", spend=1, impressions=10, clicks=1) for c in range(1200)]
    batch = connector(graph).fetch(START, END)
    assert len(batch.metrics) == 1200
    assert len(graph.calls("/act_111/insights")) == 3  # 500 + 500 + 200


def test_a_long_range_is_asked_for_as_an_asynchronous_report_run(graph):
    acme(graph)
    graph.run_statuses = [("Job Not Started", 0), ("Job Running", 50), ("Job Completed", 100)]
    clock = Clock()
    batch = connector(graph, clock, async_after_days=2).fetch(START, END)
    assert len(batch.metrics) == 3
    assert len(graph.calls("/act_111/insights", "POST")) == 1
    assert not graph.calls("/act_111/insights", "GET")
    assert len(graph.calls("/900000/", "GET")) == 4  # three polls and the rows
    assert clock.slept == [1.0, 2.0]


def test_a_report_run_that_fails_on_metas_side_is_started_again(graph):
    acme(graph)
    graph.run_statuses = [("Job Failed", 0)]
    with pytest.raises(SourceError, match=r"report run failed on Meta's side 2 times \(last 'Job Failed'"):
        connector(graph, async_after_days=0, max_attempts=2).fetch(START, END)
    assert len(graph.calls("/act_111/insights", "POST")) == 2


def test_too_much_data_for_one_answer_switches_to_a_report_run(graph):
    acme(graph)
    graph.fail("/act_111/insights", Failure(1, "Please reduce the amount of data you're asking for, then retry your request", status=500))
    batch = connector(graph).fetch(START, END)
    assert len(batch.metrics) == 3
    assert len(graph.calls("/act_111/insights", "POST")) == 1


# ---------------------------------------------------------------------------------------------
# accounts


def test_a_business_owned_and_client_accounts_are_pulled_minus_closed_and_excluded(graph):
    for n in ("111", "222", "333", "444"):
        acme(graph, n)
    graph.accounts["444"].account_status = 101  # closed
    graph.businesses["9000"] = {"owned": ["111", "444"], "client": ["222", "333"]}
    batch = connector(graph, ad_account_ids=[], business_id="9000", exclude_ad_account_ids=["333"]).fetch(START, END)
    assert sorted(set(batch.metrics["account_id"])) == ["act_111", "act_222"]
    assert not graph.calls("/act_111/", "GET")[0][1].endswith("act_111/")  # the listing told name and currency


def test_one_failing_account_is_reported_with_its_fbtrace_id_and_the_others_are_pulled(graph):
    acme(graph, "111")
    acme(graph, "222")
    acme(graph, "333")
    graph.fail("act_222/insights", Failure(100, "Invalid parameter"))
    batch = connector(graph, ad_account_ids=["111", "act_222", "333"]).fetch(START, END)
    assert sorted(set(batch.metrics["account_id"])) == ["act_111", "act_333"]
    [failure] = batch.failures
    assert failure.account_id == "act_222"
    assert failure.request_id and failure.request_id.startswith("AfakeTrace")
    assert str(failure) == f"source 'meta', account act_222, request id {failure.request_id}: the insights query failed: error 100: Invalid parameter"


def test_when_every_account_fails_the_fetch_raises(graph):
    acme(graph, "111")
    acme(graph, "222")
    graph.fail("/insights", Failure(100, "Invalid parameter"), Failure(100, "Invalid parameter"))
    with pytest.raises(SourceError, match=r"all 2 ad accounts failed:\n  source 'meta', account act_111"):
        connector(graph, ad_account_ids=["111", "222"]).fetch(START, END)


# ---------------------------------------------------------------------------------------------
# errors, retries and rate limits


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(Failure(2, "Service temporarily unavailable", status=500, is_transient=True), id="transient-code-2"),
        pytest.param(Failure(1, "An unknown error occurred", status=500), id="unknown-code-1"),
        pytest.param(Failure(None, status=503), id="bare-503"),
        pytest.param(Failure(80000, "There have been too many calls from this ad-account", subcode=2446079), id="buc-throttle"),
        pytest.param(Failure(613, "Calls to this api have exceeded the rate limit"), id="613"),
        pytest.param(Failure(17, "User request limit reached"), id="user-throttle"),
    ],
)
def test_throttling_and_transient_errors_are_retried(graph, failure):
    acme(graph)
    graph.fail("/act_111/insights", failure)
    clock = Clock()
    batch = connector(graph, clock).fetch(START, END)
    assert len(batch.metrics) == 3 and batch.failures == ()
    assert len(graph.calls("/act_111/insights")) == 2
    assert len(clock.slept) == 1


def test_a_throttle_is_waited_out_as_long_as_meta_says(graph):
    acme(graph)
    usage = json.dumps({"111": [{"type": "ads_insights", "call_count": 100, "total_cputime": 40, "total_time": 40,
                                 "estimated_time_to_regain_access": 3}]})
    graph.fail("/act_111/insights", Failure(80000, "There have been too many calls", headers={"x-business-use-case-usage": usage}))
    clock = Clock()
    connector(graph, clock).fetch(START, END)
    assert clock.slept == [180.0]


def test_an_error_that_cannot_pass_is_not_retried(graph):
    acme(graph)
    graph.fail("/act_111/insights", Failure(200, "Permissions error", status=403))
    clock = Clock()
    with pytest.raises(SourceError, match=r"error 200: Permissions error \(check that the system user has ads_read"):
        connector(graph, clock).fetch(START, END)
    assert clock.slept == [] and len(graph.calls("/act_111/insights")) == 1


def test_retries_stop_after_max_attempts(graph):
    acme(graph)
    graph.fail("/act_111/insights", *[Failure(2, "Temporary", status=500)] * 3)
    with pytest.raises(SourceError, match=r"the insights query failed after 3 attempts: error 2: Temporary"):
        connector(graph, max_attempts=3).fetch(START, END)


def test_usage_headers_near_the_limit_pause_before_the_next_call(graph):
    acme(graph)
    graph.usage["/act_111/insights"] = {"x-ad-account-usage": json.dumps({"acc_id_util_pct": 90, "reset_time_duration": 120})}
    clock = Clock()
    connector(graph, clock, change_history=True).fetch(START, END)
    # 90% used, pausing from 75%: a pause of 60 s x 15/25 before the activity log is read
    assert clock.slept == [pytest.approx(36.0)]


def test_a_business_use_case_at_its_limit_pauses_until_access_is_regained(graph):
    acme(graph, "111")
    acme(graph, "222")
    buc = {"9000": [{"type": "ads_insights", "call_count": 99, "total_cputime": 10, "total_time": 10, "estimated_time_to_regain_access": 5}]}
    graph.usage["/act_111/insights"] = {"x-business-use-case-usage": json.dumps(buc)}
    clock = Clock()
    connector(graph, clock, ad_account_ids=["111", "222"]).fetch(START, END)
    assert clock.slept == [300.0]  # before act_111's next call; act_222 is not held back
    assert graph.requests.index(graph.calls("/act_222/")[0]) > graph.requests.index(graph.calls("/act_111/activities")[0])


def test_the_apps_limit_pauses_every_account(graph):
    acme(graph, "111")
    acme(graph, "222")
    graph.usage["/act_111/activities"] = {"x-app-usage": json.dumps({"call_count": 100, "total_cputime": 5, "total_time": 5})}
    clock = Clock()
    connector(graph, clock, ad_account_ids=["111", "222"]).fetch(START, END)
    assert clock.slept == [60.0]


def test_a_throttle_longer_than_max_pause_fails_the_account(graph):
    acme(graph, "111")
    acme(graph, "222")
    buc = {"9000": [{"type": "ads_insights", "call_count": 100, "estimated_time_to_regain_access": 60}]}
    graph.usage["/act_111/insights"] = {"x-business-use-case-usage": json.dumps(buc)}
    clock = Clock()
    batch = connector(graph, clock, ad_account_ids=["111", "222"]).fetch(START, END)
    [failure] = batch.failures
    assert failure.account_id == "act_111"
    assert "pause of 60 min before the next call, longer than max_pause_seconds (15 min)" in str(failure)
    assert set(batch.metrics["account_id"]) == {"act_222"}
    assert clock.slept == []


@pytest.mark.parametrize(
    ("headers", "percent", "regain", "app_wide"),
    [
        ({}, None, None, None),
        ({"x-app-usage": '{"call_count": 28, "total_time": 25, "total_cputime": 25}'}, 28, 0, True),
        ({"x-ad-account-usage": '{"acc_id_util_pct": 100, "reset_time_duration": 100}'}, 100, 100, False),
        ({"x-business-use-case-usage": '{"1": [{"type": "ads_management", "call_count": 95, "estimated_time_to_regain_access": 2}]}',
          "x-app-usage": '{"call_count": 99}'}, 99, 120, False),
        ({"x-fb-ads-insights-throttle": '{"app_id_util_pct": 80, "acc_id_util_pct": 10}'}, 80, 0, True),
        ({"x-app-usage": "not json"}, None, None, None),
    ],
)
def test_usage_headers_are_read(headers, percent, regain, app_wide):
    usage = read_usage(headers)
    if percent is None:
        assert usage is None
    else:
        assert (usage.percent, usage.regain_seconds, usage.app_wide) == (percent, regain, app_wide)


def test_an_expired_token_says_what_to_renew_and_stops_the_fetch(graph, monkeypatch):
    acme(graph, "111")
    acme(graph, "222")
    monkeypatch.setenv("META_ACCESS_TOKEN", "EAAGexpired0987654321")
    api = load_api(source(ad_account_ids=["111", "222"]))
    api._session.GRAPH = graph.url
    with pytest.raises(TokenError) as raised:
        MetaAdsConnector(source(ad_account_ids=["111", "222"]), {}, api=api, sleep=lambda s: None).fetch(START, END)
    message = str(raised.value)
    assert "the access token was refused (error 190 (subcode 463): Error validating access token: Session has expired.)" in message
    assert "Generate new token, with ads_read) and put it in the environment variable META_ACCESS_TOKEN" in message
    assert "EAAGexpired" not in message
    assert len(graph.requests) == 1  # the other account is not tried


def test_no_token_at_all_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("META_ACCESS_TOKEN", raising=False)
    with pytest.raises(SourceError, match="no access token: set META_ACCESS_TOKEN"):
        load_api(source())


def test_a_connection_failure_is_retried_and_its_url_never_shown(graph):
    acme(graph)
    api = graph.api()
    api._session.GRAPH = "http://127.0.0.1:9"  # nothing listens there
    clock = Clock()
    with pytest.raises(SourceError) as raised:
        MetaAdsConnector(source(max_attempts=2), {}, api=api, sleep=clock.sleep, clock=clock).fetch(START, END)
    assert "could not connect (ConnectionError)" in str(raised.value)
    assert TOKEN not in str(raised.value)
    assert len(clock.slept) == 1


def test_the_token_and_app_secret_never_reach_a_log_line(graph, caplog, monkeypatch):
    acme(graph)
    graph.fail("/act_111/insights", Failure(2, "Temporary", status=500))
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("META_ACCESS_TOKEN", TOKEN)
    config_source = source(app_id="4321", app_secret=None)
    api = load_api(config_source)
    api._session.GRAPH = graph.url
    MetaAdsConnector(config_source, {}, api=api, sleep=lambda s: None).fetch(START, END)
    own = [r.getMessage() for r in caplog.records if r.name.startswith("connectors")]
    assert own and not any(TOKEN in line for line in own)
    # the libraries' own lines (urllib3 writes each URL at DEBUG) pass the project's redacting filter
    redacting = RedactingFilter()
    for record in caplog.records:
        redacting.filter(record)
        assert TOKEN not in record.getMessage()


def test_an_app_secret_signs_each_call(graph):
    acme(graph)
    MetaAdsConnector(source(), {}, api=graph.api(app_id="4321", app_secret="s3cr3t-app"), sleep=lambda s: None).fetch(START, END)
    assert graph.requests  # the fake drops appsecret_proof from what it records; the SDK sent it
    assert all("appsecret_proof" not in params for _, _, params in graph.requests)


# ---------------------------------------------------------------------------------------------
# activity log, attribution and ownership


def with_activities(graph: FakeGraph) -> FakeAccount:
    account = acme(graph, timezone_name="America/New_York")
    graph.objects["88001"] = {"campaign_id": "501"}  # an ad set of campaign 501
    account.activities += [
        activity("update_campaign_budget", "2026-03-01T15:00:00+0000", object_id="501", actor_id="100200300", actor_name="Ana Silva",
                 extra={"old_value": "7500", "new_value": "25000"}, translated="Edited campaign budget"),
        activity("update_ad_set_bid_strategy", "2026-03-02T04:30:00+0000", object_id="88001", actor_id="555", actor_name="Dana Reyes",
                 extra={"old_value": "LOWEST_COST_WITHOUT_CAP", "new_value": "COST_CAP"}, application="Ads Manager"),
        activity("update_campaign_run_status", "2026-03-02T16:00:00+0000", object_id="501", actor_id="555", actor_name="Dana Reyes",
                 extra={"old_value": "Active", "new_value": "Paused"}),
        activity("ad_review_declined", "2026-03-02T17:00:00+0000", object_id="99001", actor_name="Meta"),
        activity("ad_account_add_user_to_role", "2026-03-03T12:00:00+0000", object_id="111", actor_id="777000", actor_name="Beacon Reach",
                 translated="Added user to ad account"),
        activity("update_campaign_name", "2026-02-20T12:00:00+0000", object_id="501", actor_id="1", actor_name="Old"),  # before
    ]
    return account


def test_the_activity_log_becomes_canonical_changes(graph):
    with_activities(graph)
    batch = connector(graph).fetch(START, END)
    changes = batch.changes
    assert changes["changed_at"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2026-03-01 15:00", "2026-03-02 04:30", "2026-03-02 16:00", "2026-03-02 17:00", "2026-03-03 12:00"]
    assert changes["campaign_id"].tolist() == ["501", "501", "501", "", ""]
    assert changes["user_email"].tolist() == [
        "Ana Silva (Meta 100200300)", "Dana Reyes (Meta 555)", "Dana Reyes (Meta 555)", "", "Beacon Reach (Meta 777000)"]
    assert changes["client_type"].tolist() == ["", "Ads Manager", "", "META_SYSTEM", ""]
    assert changes["resource_type"].tolist() == ["META_CAMPAIGN", "META_AD_SET", "META_CAMPAIGN", "META_AD", "META_AD_ACCOUNT"]
    assert changes["operation"].tolist()[0] == "update_campaign_budget"
    assert changes["changed_fields"].tolist() == [
        "daily_budget: 75.00 -> 250.00", "bid_strategy: LOWEST_COST_WITHOUT_CAP -> COST_CAP", "status: Active -> Paused", "",
        "Added user to ad account"]
    _, _, params = graph.calls("/act_111/activities")[0]
    # the account's days, midnight to midnight New York time
    assert (int(params["since"]), int(params["until"])) == (1772341200, 1772600400)
    words = [describe(row, "USD", money) for row in changes.to_dict("records")]
    assert words == ["Budget raised from $75.00 to $250 a day", "Bid strategy: Highest volume → Cost per result goal",
                     "Paused the campaign", "Meta rejected the ad", "Gave a user access to the account"]


def test_changes_are_attributed_by_meta_users_and_businesses(graph):
    with_activities(graph)
    changes = connector(graph).fetch(START, END).changes
    parties = [party_of_change(e, c, DOMAINS) for e, c in zip(changes["user_email"], changes["client_type"])]
    assert parties == ["northwind", "beacon", "beacon", "automated", "beacon"]


@pytest.mark.parametrize(
    ("author", "party"),
    [
        pytest.param("Ana Silva (Meta 100200300)", "northwind", id="by-id"),
        pytest.param("DANA REYES (Meta 42)", "beacon", id="by-name-any-case"),
        pytest.param("Someone Else (Meta 42)", UNATTRIBUTED, id="unknown"),
        pytest.param("dana@beaconreach.example", "beacon", id="an-email-still"),
        pytest.param("Dana Reyes", UNATTRIBUTED, id="a-bare-name-is-no-meta-actor"),
    ],
)
def test_who_a_meta_author_belongs_to(author, party):
    assert party_of_email(author, DOMAINS) == party


def test_meta_actor_writes_the_name_and_the_id():
    assert meta_actor("123", "  Ana   Silva ") == "Ana Silva (Meta 123)"
    assert meta_actor("123", "") == "Meta user (Meta 123)"
    assert meta_actor("", "Ana") == "Ana (Meta)"
    assert meta_actor("", "") == ""


def test_ownership_is_inferred_from_the_activity_log_except_where_declared(graph):
    with_activities(graph)
    batch = connector(graph).fetch(START, END)
    periods = batch.ownership
    # Northwind's change came first, but Beacon Reach made two (the first at 23:30 on 1 March, New
    # York time, the account's day) and so took over the account that same day
    assert periods[["account_id", "party"]].values.tolist() == [["act_111", "beacon"]]
    assert periods["start"].dt.strftime("%Y-%m-%d").tolist() == ["2026-03-01"]
    declared = MetaAdsConnector(source(), DOMAINS, api=graph.api(), sleep=lambda s: None, declared_accounts={"act_111"})
    assert declared.fetch(START, END).ownership.empty


def test_without_change_history_the_log_is_not_read(graph):
    with_activities(graph)
    batch = connector(graph, change_history=False).fetch(START, END)
    assert batch.changes.empty and not graph.calls("/activities")


def test_a_lookup_of_deleted_objects_leaves_their_changes_with_the_account(graph):
    account = with_activities(graph)
    account.activities.append(activity("update_ad_set_budget", "2026-03-02T10:00:00+0000", object_id="88999", actor_id="555",
                                       extra={"old_value": "100", "new_value": "300"}))
    changes = connector(graph).fetch(START, END).changes
    row = changes[changes["operation"] == "update_ad_set_budget"].iloc[0]
    assert row["campaign_id"] == "" and row["changed_fields"] == "daily_budget: 1.00 -> 3.00"


def test_budgets_of_a_currency_without_cents_are_whole_units(graph):
    account = acme(graph, currency="JPY")
    account.activities.append(activity("update_campaign_budget", "2026-03-01T10:00:00+0000", object_id="501", actor_id="1",
                                       extra={"old_value": "5000", "new_value": "8000"}))
    changes = connector(graph).fetch(START, END).changes
    assert changes["changed_fields"].tolist() == ["daily_budget: 5000.00 -> 8000.00"]


# ---------------------------------------------------------------------------------------------
# config


def write_config(tmp_path, body: str):
    shutil.copytree(RULES, tmp_path / "rules", dirs_exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_meta_source_loads_from_config_yaml(tmp_path):
    path = write_config(tmp_path, """
        parties:
          northwind: {name: Northwind, meta_users: ["100200300", Ana Silva]}
          beacon: {name: Beacon Reach, domains: [beaconreach.example], meta_businesses: ["777000"]}
        sources:
          - type: meta_ads
            name: meta
            access_token: ${META_TOKEN_FOR_TEST}
            ad_account_ids: [act_111, 222]
            exclude_ad_account_ids: ["333"]
        """)
    config, _ = load_config(path, environ={"META_TOKEN_FOR_TEST": "EAAGfromenv123456"})
    meta = config.sources[0]
    assert meta.ad_account_ids == ["act_111", "act_222"] and meta.exclude_ad_account_ids == ["act_333"]
    assert meta.lead_action_types == ["lead", "onsite_conversion.lead_grouped", "offsite_conversion.fb_pixel_lead"]
    assert meta.access_token.get_secret_value() == "EAAGfromenv123456"
    assert domain_map(config) == {"beaconreach.example": "beacon", "meta:100200300": "northwind", "meta:ana silva": "northwind",
                                  "meta:777000": "beacon"}
    assert type(make_connector(meta, config)).__name__ == "MetaAdsConnector"


@pytest.mark.parametrize(
    ("source_yaml", "problem"),
    [
        pytest.param("{type: meta_ads, name: meta}", "sources[0].ad_account_ids: list the ad accounts to pull (act_ and digits), or set "
                     "business_id to pull every ad account a business owns or has client access to", id="no-accounts"),
        pytest.param("{type: meta_ads, name: meta, ad_account_ids: [acme]}", "sources[0].ad_account_ids[0]: expected a Meta "
                     "ad account id, act_ and its digits ('act_1234567890') or the digits alone, got 'acme'", id="bad-account-id"),
        pytest.param("{type: meta_ads, name: meta, ad_account_ids: ['1'], access_token: EAAGwritteninfile99}",
                     "sources[0].access_token: expected the system user's access token from the environment, written as "
                     "${META_ACCESS_TOKEN}: a value written in config.yaml itself is refused (not shown: it is a secret)", id="token-in-file"),
        pytest.param("{type: meta_ads, name: meta, ad_account_ids: ['1'], lead_action_types: [lead, lead]}",
                     "sources[0].lead_action_types: 'lead' is listed twice", id="lead-twice"),
        pytest.param("{type: meta_ads, name: meta, ad_account_ids: ['1'], lead_action_types: []}",
                     "sources[0].lead_action_types: expected a list of at least 1 item, got []", id="no-lead-types"),
        pytest.param("{type: meta_ads, name: meta, ad_account_ids: ['1'], app_secret: '${META_TEST_SECRET}'}",
                     "sources[0].app_id: set the app's id too: the app_secret signs calls with an appsecret_proof for that app",
                     id="secret-without-app"),
        pytest.param("{type: meta_ads, name: meta, ad_account_ids: ['1'], async_after_days: -1}",
                     "sources[0].async_after_days: input should be greater than or equal to 0, got -1", id="negative-async"),
        pytest.param("{type: meta_ads, name: meta, ad_account_ids: ['1'], lead_actions: [lead]}",
                     "sources[0].lead_actions: unknown key; did you mean 'lead_action_types'?", id="typo"),
    ],
)
def test_config_problems_are_reported_with_their_path(tmp_path, source_yaml, problem):
    path = write_config(tmp_path, f"sources:\n  - {source_yaml}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={"META_TEST_SECRET": "appsecret123456"})
    assert any(problem in str(p) for p in raised.value.problems), raised.value.problems
    assert "EAAGwritteninfile99" not in str(raised.value)


def test_a_meta_user_named_by_two_parties_is_refused(tmp_path):
    path = write_config(tmp_path, """
        parties:
          a: {name: A, meta_users: [Ana Silva]}
          b: {name: B, meta_users: [ana silva]}
        """)
    with pytest.raises(ConfigError, match=r"parties.b.meta_users\[0\]: 'ana silva' is already named by party 'a' \(meta_users\)"):
        load_config(path)


def test_meta_parties_are_optional_and_plain():
    config = Config.model_validate({"parties": {"a": {"name": "A", "meta_users": ["  Ana   Silva "]}}})
    assert config.parties["a"].meta_users == ["Ana Silva"] and config.parties["a"].meta_businesses == []


def test_a_pull_keeps_the_cursor_when_an_account_failed(graph, tmp_path, monkeypatch):
    from anomaly.pipeline import pull_source
    from anomaly.store import Store

    acme(graph, "111")
    acme(graph, "222")
    graph.fail("act_222/insights", Failure(100, "Invalid parameter"))
    config = Config.model_validate({"sources": [{"type": "meta_ads", "name": "meta", "ad_account_ids": ["111", "222"]}]})
    meta = config.sources[0]
    monkeypatch.setattr("connectors.meta_ads.load_api", lambda s: graph.api())
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    store.migrate()
    report = pull_source(config, meta, store, END)
    assert report.metric_rows == 4 and report.cursor is None  # act_111 stored (90 days back), but no cursor yet
    report = pull_source(config, meta, store, END)  # act_222 is fine now
    assert report.cursor == END
    stored = store.load_metrics()
    assert sorted(set(stored["account_id"])) == ["act_111", "act_222"]
    assert isinstance(stored, pd.DataFrame)


def test_the_pull_benchmark_runs_small():
    from benchmarks.meta_ads_pull import run

    rows = run(accounts=2, campaigns=3, days=4, seed=1)
    assert [r["insights"] for r in rows] == ["at once", "report runs"]
    assert all(r["metric_rows"] == 2 * 3 * 4 and r["change_rows"] > 0 for r in rows)
