"""The Microsoft Advertising connector against the real ``bingads`` SDK and a fake service, offline.

``FakeMicrosoftAds`` (tests/microsoft_ads_fake.py) serves the SOAP operations, the report downloads
(zipped CSV files as the service writes them) and the OAuth token endpoint on 127.0.0.1; the SDK's
own clients reach it through suds' ``location`` option, so the request objects, envelopes, polling,
download, faults (``WebFault``) and token errors (``OAuthTokenRequestException``) are the SDK's.
Waits are recorded, never slept.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from bingads.authorization import _UriOAuthService

from anomaly.alerts.change_words import describe
from anomaly.alerts.render import money
from anomaly.config import MicrosoftAdsSourceConfig, load_config
from anomaly.errors import ConfigError, SourceError
from anomaly.ownership import AUTOMATED, party_of_change
from connectors import microsoft_ads
from connectors.microsoft_ads import (
    CALL_RATE_WAIT_SECONDS,
    POLL_SECONDS,
    MicrosoftAdsConnector,
    change_rows,
    connect,
    load_credentials,
    read_report,
)
from tests.microsoft_ads_fake import (
    ACCESS_TOKEN,
    DEVELOPER_TOKEN,
    REFRESH_TOKEN,
    DownloadError,
    Fault,
    FakeMicrosoftAds,
    GenerationError,
    HttpError,
    Pending,
    _csv,
)

MANAGER = "9990001"
A1, A2, A3 = "1410001", "1410002", "1410003"
TODAY = dt.date(2026, 7, 12)
DOMAINS = {"northwind-digital.example": "northwind", "beaconreach.example": "beacon"}
TOM = "tom.reed@northwind-digital.example"
DANA = "dana.kim@beaconreach.example"
CLIENT_SECRET = "client-S3CRET-5d0e"


@pytest.fixture
def ads() -> Iterator[FakeMicrosoftAds]:
    fake = FakeMicrosoftAds()
    for account in (A1, A2, A3):
        fake.account(account)
    with fake.serve():
        yield fake


def source(**settings: Any) -> MicrosoftAdsSourceConfig:
    settings.setdefault("account_ids", [A1])
    return MicrosoftAdsSourceConfig(type="microsoft_ads", name="msads", **settings)


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected wait of {seconds} s")


def connector(ads: FakeMicrosoftAds, settings: MicrosoftAdsSourceConfig, sleeps: list[float] | None = None,
              declared: frozenset[str] = frozenset(), tmp: Path | None = None) -> MicrosoftAdsConnector:
    return MicrosoftAdsConnector(settings, DOMAINS, clients=ads.clients(settings.customer_id), declared_accounts=declared,
                                 sleep=sleeps.append if sleeps is not None else _no_sleep, today=lambda: TODAY,
                                 workdir=str(tmp) if tmp else None)


def fetch(ads: FakeMicrosoftAds, settings: MicrosoftAdsSourceConfig, start: str = "2026-07-06", end: str = "2026-07-12",
          **kw: Any):
    return connector(ads, settings, **kw).fetch(dt.date.fromisoformat(start), dt.date.fromisoformat(end))


def _texts(report, tag: str) -> list[str]:
    return [e.text for e in report.iter() if e.tag.endswith("}" + tag)]


# ----------------------------------------------------------------------------------------------
# metrics and leads


def test_metrics_are_canonical_daily_rows_in_the_accounts_currency(ads: FakeMicrosoftAds, tmp_path: Path) -> None:
    ads.account(A1, "Harbor Dental Group", currency="EUR")
    ads.add_metrics(A1, "2026-07-06", "5001", 12.34, 10, 400, conversions=2.5)
    ads.add_metrics(A1, "2026-07-07", "5001", 5.0, 4, 90, conversions=1.0, qualified=False)  # no fractional column
    ads.add_metrics(A1, "2026-07-07", "5002", 1.5, 1, 30)
    ads.add_metrics(A1, "2026-07-13", "5001", 9.0, 9, 99)  # after the range

    batch = fetch(ads, source(), tmp=tmp_path)

    expected = pd.DataFrame(
        [
            ("2026-07-06", A1, "5001", 12.34, 400, 10, 2.5),
            ("2026-07-07", A1, "5001", 5.0, 90, 4, 1.0),
            ("2026-07-07", A1, "5002", 1.5, 30, 1, 0.0),
        ],
        columns=["date", "account_id", "campaign_id", "spend", "impressions", "clicks", "leads"],
    ).assign(date=lambda f: pd.to_datetime(f["date"]))
    got = batch.metrics.sort_values(["date", "campaign_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
    assert set(got["hour"]) == {-1} and set(got["currency"]) == {"EUR"}
    assert set(got["account_name"]) == {"Harbor Dental Group"}
    assert list(got["campaign_name"]) == ["Campaign 5001", "Campaign 5001", "Campaign 5002"]
    assert (batch.source, batch.start, batch.end, batch.failures) == ("msads", dt.date(2026, 7, 6), dt.date(2026, 7, 12), ())
    assert list(tmp_path.iterdir()) == []  # downloads are removed once read


def test_the_report_request_is_the_sdks_with_the_accounts_days_and_columns(ads: FakeMicrosoftAds) -> None:
    fetch(ads, source(account_ids=[A1, A2]), start="2026-06-28", end="2026-07-12")

    submit = next(c for c in ads.calls if c.operation == "SubmitGenerateReport" and c.kind == "metrics")
    report = submit.request
    assert _texts(report, "CampaignPerformanceReportColumn") == list(microsoft_ads.METRIC_COLUMNS)
    assert _texts(report, "long") == [A1, A2]
    assert _texts(report, "Aggregation") == ["Daily"] and _texts(report, "Format") == ["Csv"]
    assert _texts(report, "ExcludeReportHeader") == ["true"] and _texts(report, "ReturnOnlyCompleteData") == ["false"]
    assert [_texts(report, part) for part in ("Year", "Month", "Day")] == [["2026", "2026"], ["7", "6"], ["12", "28"]]
    assert submit.headers["DeveloperToken"] == DEVELOPER_TOKEN and submit.headers["AuthenticationToken"] == ACCESS_TOKEN
    assert ads.submitted("metrics") == [[A1, A2]]  # one report for every account


@pytest.mark.parametrize(
    "leads, expected, by_goal",
    [
        pytest.param({}, {A1: 3.0, A2: 4.0}, [], id="every-conversion"),
        pytest.param({"leads": {"goals": ["Contact form", "booked CALL"]}}, {A1: 2.0, A2: 7.0}, [[A1, A2]],
                     id="named-goals-any-case"),
        pytest.param({"account_leads": {A2: {"goals": ["Booked call"]}}}, {A1: 3.0, A2: 5.0}, [[A2]],
                     id="per-account-goals"),
    ],
)
def test_what_counts_as_a_lead(ads: FakeMicrosoftAds, leads: dict, expected: dict, by_goal: list) -> None:
    ads.add_metrics(A1, "2026-07-06", "5001", 10.0, 3, conversions=3.0)
    ads.add_goal(A1, "2026-07-06", "5001", "Contact form", 2.0)
    ads.add_goal(A1, "2026-07-06", "5001", "Newsletter", 1.0)
    ads.add_metrics(A2, "2026-07-06", "6001", 10.0, 3, conversions=4.0)
    ads.add_goal(A2, "2026-07-06", "6001", "Booked call", 5.0)  # left out of the Conversions column
    ads.add_goal(A2, "2026-07-08", "6001", "Contact form", 2.0)  # a day without clicks

    batch = fetch(ads, source(account_ids=[A1, A2], **leads))

    assert batch.metrics.groupby("account_id")["leads"].sum().to_dict() == expected
    assert ads.submitted("goals") == by_goal


# ----------------------------------------------------------------------------------------------
# accounts


def test_every_active_or_paused_account_of_the_manager_minus_the_excluded(ads: FakeMicrosoftAds) -> None:
    ads.account("1410004", status="Pause")
    ads.account("1410005", status="Inactive")
    ads.account("1410006", status="Suspended")
    ads.account("1410007", status="Draft")
    for account in (A1, A2, A3, "1410004"):
        ads.add_metrics(account, "2026-07-06", "5001", 1.0, 1)

    batch = fetch(ads, source(account_ids=[], customer_id=MANAGER, exclude_account_ids=[A2]))

    listing = [c for c in ads.calls if c.operation == "GetAccountsInfo"]
    assert [c.accounts for c in listing] == [[MANAGER]]
    assert ads.submitted("metrics") == [[A1, A3, "1410004"]]
    assert sorted(batch.metrics["account_id"]) == [A1, A3, "1410004"]


def test_listed_accounts_are_pulled_without_listing_the_manager(ads: FakeMicrosoftAds) -> None:
    fetch(ads, source(account_ids=[A3, A1, A2, A1], exclude_account_ids=[A2], customer_id=MANAGER))

    assert [c for c in ads.calls if c.operation == "GetAccountsInfo"] == []
    assert ads.submitted("metrics") == [[A3, A1]]


def test_a_manager_that_cannot_be_listed_is_an_error(ads: FakeMicrosoftAds) -> None:
    ads.fail_listing(Fault(106, "UserIsNotAuthorized", "The user does not represent a authorized developer.",
                           tracking_id="trk-list"))

    with pytest.raises(SourceError) as caught:
        fetch(ads, source(account_ids=[], customer_id=MANAGER))

    assert (caught.value.account_id, caught.value.request_id) == (MANAGER, "trk-list")
    assert "listing the manager's accounts failed: 106 UserIsNotAuthorized" in str(caught.value)


def test_reports_cover_at_most_a_thousand_accounts_each(ads: FakeMicrosoftAds, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(microsoft_ads, "REPORT_ACCOUNTS", 2)
    fetch(ads, source(account_ids=[A1, A2, A3]))
    assert ads.submitted("metrics") == [[A1, A2], [A3]] and ads.submitted("changes") == [[A1, A2], [A3]]


def test_nothing_to_pull_is_an_error(ads: FakeMicrosoftAds) -> None:
    with pytest.raises(SourceError, match="no accounts to pull"):
        fetch(ads, source(account_ids=[A1], exclude_account_ids=[A1]))


def test_a_report_without_data_is_zero_activity(ads: FakeMicrosoftAds) -> None:
    batch = fetch(ads, source(account_ids=[A1, A2]))  # the service gives no download link: no rows at all

    assert batch.metrics.empty and batch.changes.empty and batch.failures == ()
    assert ads.downloads == []


# ----------------------------------------------------------------------------------------------
# failures, retries and authentication


def test_one_failing_account_is_reported_with_its_tracking_id_and_the_others_are_pulled(ads: FakeMicrosoftAds) -> None:
    for account in (A1, A2, A3):
        ads.add_metrics(account, "2026-07-06", "5001", 1.0, 1)
    # the multi-account report is refused, then A2's own report is refused again
    refused = Fault(2004, "InvalidAccountId", "The account id is not valid.", detail="Api", tracking_id="trk-a2")
    ads.fail("metrics", A2, refused, refused)

    batch = fetch(ads, source(account_ids=[A1, A2, A3]))  # any wait would fail the test

    assert sorted(batch.metrics["account_id"]) == [A1, A3]
    [failure] = batch.failures
    assert (failure.source, failure.account_id, failure.request_id) == ("msads", A2, "trk-a2")
    assert str(failure) == (f"source 'msads', account {A2}, request id trk-a2: the campaign performance report failed: "
                            "2004 InvalidAccountId: The account id is not valid.")
    assert ads.submitted("metrics") == [[A1, A2, A3], [A1], [A2], [A3]]


def test_an_account_fails_whole_when_one_of_its_reports_fails(ads: FakeMicrosoftAds) -> None:
    ads.add_metrics(A1, "2026-07-06", "5001", 1.0, 1)
    ads.add_metrics(A2, "2026-07-06", "5001", 1.0, 1)
    ads.fail("changes", A1, *[Fault(2004, "InvalidAccountId", detail="Api")] * 2)

    batch = fetch(ads, source(account_ids=[A1, A2]))

    assert list(batch.metrics["account_id"]) == [A2]  # A1's metrics are not stored without its changes
    assert [f.account_id for f in batch.failures] == [A1]
    assert "the change history report failed" in str(batch.failures[0])


@pytest.mark.parametrize(
    "kind, errors, waits",
    [
        pytest.param("metrics", [Fault(0, "InternalError", "An internal error has occurred.", detail="Api")], None,
                     id="internal-error"),
        pytest.param("metrics", [HttpError(503), HttpError(502)], None, id="gateway-errors"),
        pytest.param("changes", [GenerationError()], None, id="report-generation-error"),
        pytest.param("metrics", [DownloadError(500)], None, id="download-server-error"),
        pytest.param("metrics", [Fault(117, "CallRateExceeded", "You have exceeded the number of calls.")],
                     [CALL_RATE_WAIT_SECONDS], id="call-rate-waits-a-minute"),
    ],
)
def test_transient_failures_are_retried_with_backoff(ads: FakeMicrosoftAds, kind: str, errors: list, waits: list | None) -> None:
    ads.add_metrics(A1, "2026-07-06", "5001", 1.0, 1)
    ads.fail(kind, A1, *errors)
    sleeps: list[float] = []

    batch = fetch(ads, source(), sleeps=sleeps)

    assert list(batch.metrics["spend"]) == [1.0] and batch.failures == ()
    assert len(ads.submitted(kind)) == len(errors) + 1
    if waits is not None:
        assert sleeps == waits
    else:
        assert len(sleeps) == len(errors) and all(0 <= wait <= 2.0 * 2**i for i, wait in enumerate(sleeps))


def test_retries_stop_after_max_attempts_and_pin_the_failure_on_each_account(ads: FakeMicrosoftAds) -> None:
    ads.add_metrics(A1, "2026-07-06", "5001", 1.0, 1)
    ads.fail("metrics", A1, *[Fault(0, "InternalError", "An internal error has occurred.", tracking_id=f"trk-{i}")
                              for i in range(3)])
    sleeps: list[float] = []

    with pytest.raises(SourceError) as caught:
        fetch(ads, source(account_ids=[A1, A2], max_attempts=3), sleeps=sleeps)

    assert len(sleeps) == 2 and ads.submitted("metrics") == [[A1, A2]] * 3  # transient: not split by account
    assert str(caught.value).startswith("source 'msads': all 2 accounts failed:\n")
    assert (f"account {A1}, request id trk-2: the campaign performance report failed after 3 attempts: 0 "
            "InternalError: An internal error has occurred.") in str(caught.value)


def test_a_report_is_polled_until_ready(ads: FakeMicrosoftAds) -> None:
    ads.add_metrics(A1, "2026-07-06", "5001", 1.0, 1)
    ads.fail("metrics", A1, Pending(polls=2))
    sleeps: list[float] = []

    batch = fetch(ads, source(change_history=False), sleeps=sleeps)

    assert list(batch.metrics["spend"]) == [1.0] and sleeps == [POLL_SECONDS, POLL_SECONDS]
    assert len([c for c in ads.calls if c.operation == "PollGenerateReport"]) == 3


def test_a_report_not_ready_in_time_is_asked_for_again(ads: FakeMicrosoftAds) -> None:
    ads.add_metrics(A1, "2026-07-06", "5001", 1.0, 1)
    ads.fail("metrics", A1, Pending(polls=100))
    sleeps: list[float] = []

    batch = fetch(ads, source(change_history=False, timeout_seconds=10), sleeps=sleeps)

    assert list(batch.metrics["spend"]) == [1.0] and len(ads.submitted("metrics")) == 2
    assert sleeps[:1] == [POLL_SECONDS] and len(sleeps) == 2  # one poll wait, then the retry's backoff


def test_an_invalid_developer_token_stops_the_fetch_and_says_what_to_check(ads: FakeMicrosoftAds) -> None:
    ads.fail("metrics", A1, Fault(105, "InvalidCredentials", "Authentication failed. Either supplied credentials are "
                                  "invalid or the account is inactive", tracking_id="trk-auth"))

    with pytest.raises(SourceError) as caught:
        fetch(ads, source(account_ids=[A1, A2]))  # no retry, no split: no account would pass

    assert str(caught.value) == (
        "source 'msads', request id trk-auth: the campaign performance report failed: 105 InvalidCredentials: "
        "Authentication failed. Either supplied credentials are invalid or the account is inactive (check the developer "
        "token (MICROSOFT_ADS_DEVELOPER_TOKEN) and that the refresh token is for the same environment (production))"
    )
    assert ads.submitted("metrics") == [[A1, A2]]


def test_an_expired_access_token_is_renewed_by_the_sdk(ads: FakeMicrosoftAds, token_endpoint: FakeMicrosoftAds) -> None:
    ads.add_metrics(A1, "2026-07-06", "5001", 1.0, 1)
    ads.fail("metrics", A1, Fault(109, "AuthenticationTokenExpired", "Authentication token expired."))

    batch = fetch(ads, source())

    assert list(batch.metrics["spend"]) == [1.0] and batch.failures == ()
    assert [form["refresh_token"] for form in ads.token_requests] == [REFRESH_TOKEN]


def test_an_access_token_that_cannot_be_renewed_names_the_refresh_token(ads: FakeMicrosoftAds,
                                                                        token_endpoint: FakeMicrosoftAds) -> None:
    ads.refresh_tokens.clear()  # revoked since the connector signed in
    ads.fail("metrics", A1, Fault(109, "AuthenticationTokenExpired", "Authentication token expired."))

    with pytest.raises(SourceError) as caught:
        fetch(ads, source(account_ids=[A1, A2]))

    assert str(caught.value).startswith(
        "source 'msads': the campaign performance report failed: Microsoft's sign-in refused the refresh token "
        "(invalid_grant: AADSTS700082: The refresh token has expired due to inactivity.")
    assert "Renew MICROSOFT_ADS_REFRESH_TOKEN" in str(caught.value) and REFRESH_TOKEN not in str(caught.value)


# ----------------------------------------------------------------------------------------------
# signing in


@pytest.fixture
def token_endpoint(ads: FakeMicrosoftAds, monkeypatch: pytest.MonkeyPatch) -> FakeMicrosoftAds:
    """Microsoft's token endpoint for the production scope, served by the fake."""
    for key in [k for k in _UriOAuthService.AUTH_TOKEN_URI if k[0] in ("production", "sandbox")]:
        monkeypatch.setitem(_UriOAuthService.AUTH_TOKEN_URI, key, f"{ads.url}/token")
    return ads


def _environment(**overrides: str) -> dict[str, str]:
    env = {"MICROSOFT_ADS_DEVELOPER_TOKEN": DEVELOPER_TOKEN, "MICROSOFT_ADS_CLIENT_ID": "client-id",
           "MICROSOFT_ADS_REFRESH_TOKEN": REFRESH_TOKEN}
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


def test_signing_in_with_the_refresh_token_then_pulling(token_endpoint: FakeMicrosoftAds) -> None:
    ads = token_endpoint
    ads.add_metrics(A1, "2026-07-06", "5001", 1.0, 1)
    env = _environment(MICROSOFT_ADS_CLIENT_SECRET=CLIENT_SECRET)

    clients = connect(source(customer_id=MANAGER), env, location=f"{ads.url}/soap")
    batch = MicrosoftAdsConnector(source(customer_id=MANAGER), DOMAINS, clients=clients, sleep=_no_sleep,
                                  today=lambda: TODAY).fetch(dt.date(2026, 7, 6), TODAY)

    [form] = ads.token_requests
    assert (form["grant_type"], form["refresh_token"], form["client_id"], form["client_secret"]) == (
        "refresh_token", REFRESH_TOKEN, "client-id", CLIENT_SECRET)
    assert "msads.manage" in form["scope"]
    assert list(batch.metrics["spend"]) == [1.0]
    submit = next(c for c in ads.calls if c.operation == "SubmitGenerateReport")
    assert (submit.headers["AuthenticationToken"], submit.headers["CustomerId"]) == (ACCESS_TOKEN, MANAGER)


def test_an_expired_refresh_token_names_what_to_renew(token_endpoint: FakeMicrosoftAds) -> None:
    env = _environment(MICROSOFT_ADS_REFRESH_TOKEN="refresh-EXPIRED-0b7a", MICROSOFT_ADS_CLIENT_SECRET=CLIENT_SECRET)

    with pytest.raises(SourceError) as caught:
        MicrosoftAdsConnector(source(), DOMAINS, environ=env, sleep=_no_sleep).fetch(dt.date(2026, 7, 6), TODAY)

    message = str(caught.value)
    assert message.startswith("source 'msads': Microsoft's sign-in refused the refresh token (invalid_grant: AADSTS700082: "
                              "The refresh token has expired due to inactivity.")
    assert "Renew MICROSOFT_ADS_REFRESH_TOKEN: sign in again as a user with access to the accounts" in message
    assert "EXPIRED-0b7a" not in message and CLIENT_SECRET not in message and DEVELOPER_TOKEN not in message


def test_a_refresh_token_set_in_config_is_named_by_its_setting(token_endpoint: FakeMicrosoftAds) -> None:
    settings = source(refresh_token="refresh-EXPIRED-0b7a")
    with pytest.raises(SourceError, match="Renew refresh_token of source 'msads'"):
        connect(settings, _environment())


@pytest.mark.parametrize(
    "missing, named",
    [
        pytest.param(["MICROSOFT_ADS_DEVELOPER_TOKEN"], "no MICROSOFT_ADS_DEVELOPER_TOKEN: ", id="developer-token"),
        pytest.param(["MICROSOFT_ADS_CLIENT_ID", "MICROSOFT_ADS_REFRESH_TOKEN"],
                     "no MICROSOFT_ADS_CLIENT_ID, MICROSOFT_ADS_REFRESH_TOKEN: ", id="client-and-refresh-token"),
    ],
)
def test_missing_credentials_are_named(missing: list[str], named: str) -> None:
    env = _environment(**{name: "" for name in missing})
    with pytest.raises(SourceError) as caught:
        load_credentials(source(), env)
    assert str(caught.value).startswith(f"source 'msads': {named}set the MICROSOFT_ADS_* environment variables")


def test_credentials_from_config_come_before_the_environment() -> None:
    settings = source(developer_token="dev-from-config", client_id="app-from-config")
    credentials = load_credentials(settings, _environment())
    assert (credentials.developer_token, credentials.client_id, credentials.refresh_token) == (
        "dev-from-config", "app-from-config", REFRESH_TOKEN)
    assert credentials.client_secret is None and REFRESH_TOKEN not in repr(credentials)


# ----------------------------------------------------------------------------------------------
# change history


def test_change_history_rows_are_canonical(ads: FakeMicrosoftAds) -> None:
    ads.add_change(A1, "2026-07-08 10:00:00", DANA, attribute="Daily budget", old="$50.00", new="$1,300.00")
    ads.add_change(A1, "2026-07-08 15:41:07", "Ops@BeaconReach.example", attribute="Status", old="Active", new="Paused")
    for keyword in range(3):  # one edit to three keywords
        ads.add_change(A1, "2026-07-09 09:30:00", TOM, item="Keyword", attribute="Exact match bid", old="1.00", new="1.50",
                       campaign="5002", tool="Editor")
    ads.add_change(A1, "2026-07-09 11:00:00", TOM, item="Keyword", attribute="", how="Added", old="", new="emergency dentist")
    ads.add_change(A1, "2026-07-10 02:00:00", "Administrator", item="Ad", attribute="Editorial status", old="Pending",
                   new="Approved", tool="Other")
    ads.add_change(A1, "2026-07-10 06:00:00", DANA, item="Account", attribute="Tracking template", old="", new="{lpurl}",
                   campaign="", tool="Automated rules")
    ads.add_change(A1, "2026-07-05 23:59:00", DANA)  # before the range

    changes = fetch(ads, source()).changes

    expected = pd.DataFrame({
        "changed_at": pd.to_datetime(["2026-07-08 10:00:00", "2026-07-08 15:41:07", "2026-07-09 09:30:00",
                                      "2026-07-09 11:00:00", "2026-07-10 02:00:00", "2026-07-10 06:00:00"]),
        "account_id": [A1] * 6,
        "campaign_id": ["111", "111", "5002", "111", "111", ""],
        "user_email": [DANA, "Ops@BeaconReach.example", TOM, TOM, "Administrator", DANA],
        "client_type": ["MICROSOFT_ADS_WEB_CLIENT_MANUAL", "MICROSOFT_ADS_WEB_CLIENT_MANUAL", "MICROSOFT_ADS_EDITOR",
                        "MICROSOFT_ADS_WEB_CLIENT_MANUAL", "MICROSOFT_ADS_SYSTEM", "MICROSOFT_ADS_AUTOMATED_RULES"],
        "resource_type": ["CAMPAIGN", "CAMPAIGN", "KEYWORD", "KEYWORD", "AD", "ACCOUNT"],
        "operation": ["UPDATE", "UPDATE", "UPDATE", "CREATE", "UPDATE", "UPDATE"],
        "changed_fields": ["Daily budget: 50.00 -> 1300.00", "Status: Active -> Paused",
                           "Exact match bid: 1.00 -> 1.50 (3 keywords)", "Keyword: emergency dentist",
                           "Editorial status: Pending -> Approved", "Tracking template: (empty) -> {lpurl}"],
    }).astype({"changed_at": "datetime64[ns]"})
    pd.testing.assert_frame_equal(changes, expected)


@pytest.mark.parametrize(
    "fields, resource, operation, words",
    [
        pytest.param("Daily budget: 1300.00 -> 2500.00", "CAMPAIGN", "UPDATE", "Budget raised from $1,300 to $2,500 a day",
                     id="budget-raised"),
        pytest.param("Daily budget: 300.00 -> 150.00", "CAMPAIGN", "UPDATE", "Budget lowered from $300 to $150 a day",
                     id="budget-lowered"),
        pytest.param("Status: Active -> Paused", "CAMPAIGN", "UPDATE", "Paused the campaign", id="paused"),
        pytest.param("Pause status: Paused -> Not paused", "AD_GROUP", "UPDATE", "Enabled the ad group", id="resumed"),
        pytest.param("Status: Active -> Deleted", "KEYWORD", "UPDATE", "Removed the keyword", id="deleted"),
        pytest.param("Exact match bid: 1.00 -> 1.50 (38 keywords)", "KEYWORD", "UPDATE",
                     "Max cost per click (exact match): $1.00 → $1.50 (38 keywords)", id="bids-of-many-keywords"),
        pytest.param("Default broad match bid: 0.80 -> 1.10", "AD_GROUP", "UPDATE",
                     "Default max cost per click (broad match): $0.80 → $1.10", id="default-bid"),
        pytest.param("Match type: Phrase -> Broad", "KEYWORD", "UPDATE", "Match type: phrase → broad", id="match-type"),
        pytest.param("Keyword: emergency dentist", "KEYWORD", "CREATE", "Added a keyword: emergency dentist", id="keyword-added"),
        pytest.param("Negative keyword: free", "CAMPAIGN", "REMOVE", "Removed a negative keyword: free", id="negative-removed"),
        pytest.param("Ad group: Implants", "AD_GROUP", "CREATE", "Added an ad group: Implants", id="ad-group-added"),
        pytest.param("User: dana.kim@beaconreach.example", "USER", "CREATE",
                     "Gave dana.kim@beaconreach.example access to the account", id="user-added"),
        pytest.param("Tracking template: (empty) -> {lpurl}", "ACCOUNT", "UPDATE", "Tracking template: none → {lpurl}",
                     id="other-attribute"),
        pytest.param("Budget type: Daily target (standard) -> Daily target (accelerated)", "CAMPAIGN", "UPDATE",
                     "Budget type: Daily target (standard) → Daily target (accelerated)", id="values-in-brackets"),
        pytest.param("Name: Brand, US -> Brand, US & CA", "CAMPAIGN", "UPDATE", "Name: Brand, US → Brand, US & CA",
                     id="commas-in-values"),
    ],
)
def test_changes_read_in_words(fields: str, resource: str, operation: str, words: str) -> None:
    change = {"resource_type": resource, "operation": operation, "changed_fields": fields}
    assert describe(change, "USD", money) == words


def test_a_budget_change_in_the_accounts_currency() -> None:
    change = {"resource_type": "CAMPAIGN", "operation": "UPDATE", "changed_fields": "Daily budget: 100.00 -> 250.00"}
    assert describe(change, "EUR", money) == "Budget raised from €100 to €250 a day"


def test_detection_reads_a_budget_changes_size() -> None:
    from anomaly.detect.changes import budget_factor, kind_of

    history = pd.DataFrame([{"DateTime": "7/8/2026 10:00:00 AM", "AccountId": A1, "CampaignId": "5001", "ChangedBy": DANA,
                             "ItemChanged": "Campaign", "AttributeChanged": "Daily budget", "HowChanged": "Changed",
                             "OldValue": "$1,300.00", "NewValue": "$2,600.00", "Tool": "Web client (manual)"}])
    [row] = change_rows(history).itertuples()
    assert kind_of(row.resource_type, row.operation, row.changed_fields) == "budget"
    assert budget_factor(row.changed_fields) == 2.0


def test_change_history_reaches_back_six_months_at_most(ads: FakeMicrosoftAds) -> None:
    fetch(ads, source(), start="2025-10-01", end="2026-07-12")
    fetch(ads, source(), start="2025-10-01", end="2025-12-31")

    [changes] = [c.request for c in ads.calls if c.operation == "SubmitGenerateReport" and c.kind == "changes"]
    assert [_texts(changes, part) for part in ("Year", "Month", "Day")] == [["2026", "2026"], ["7", "1"], ["12", "14"]]


def test_change_history_can_be_turned_off(ads: FakeMicrosoftAds) -> None:
    ads.add_change(A1, "2026-07-08 10:00:00", DANA)
    batch = fetch(ads, source(change_history=False))
    assert ads.submitted("changes") == [] and batch.changes.empty and batch.ownership.empty


@pytest.mark.parametrize(
    "user, tool, party",
    [
        pytest.param(DANA, "Web client (manual)", "beacon", id="by-email-domain"),
        pytest.param("ops@eu.beaconreach.example", "API", "beacon", id="subdomain"),
        pytest.param(DANA, "Automated rules", AUTOMATED, id="automated-rule"),
        pytest.param(TOM, "Scripts", AUTOMATED, id="script"),
        pytest.param("Administrator", "Other", AUTOMATED, id="microsoft-itself"),
        pytest.param("someone@client.example", "Editor", "unattributed", id="unknown-domain"),
        pytest.param("jdoe", "Web client (manual)", "unattributed", id="user-name-without-domain"),
    ],
)
def test_changes_are_attributed_to_parties(ads: FakeMicrosoftAds, user: str, tool: str, party: str) -> None:
    ads.add_change(A1, "2026-07-08 10:00:00", user, tool=tool)
    [change] = fetch(ads, source()).changes.itertuples()
    assert party_of_change(change.user_email, change.client_type, DOMAINS) == party


@pytest.mark.parametrize(
    "settings, declared, expected",
    [
        pytest.param({}, frozenset(), {A1: ["northwind", "beacon"], A2: ["beacon"]}, id="on"),
        pytest.param({"ownership_inference": {"enabled": False}}, frozenset(), {}, id="off"),
        pytest.param({"ownership_inference": {"min_changes": 3}}, frozenset(), {A1: ["northwind"], A2: ["beacon"]},
                     id="min-changes-3"),
        pytest.param({}, frozenset({A1}), {A2: ["beacon"]}, id="declared-account-skipped"),
    ],
)
def test_ownership_is_inferred_from_the_change_history(ads: FakeMicrosoftAds, settings: dict, declared: frozenset,
                                                       expected: dict) -> None:
    ads.add_change(A1, "2026-07-07 09:00:00", TOM)
    ads.add_change(A1, "2026-07-08 23:30:00", DANA)
    ads.add_change(A1, "2026-07-09 10:00:00", DANA)
    ads.add_change(A1, "2026-07-10 10:00:00", DANA, tool="Automated rules")  # rules never take an account over
    ads.add_change(A2, "2026-07-09 10:00:00", DANA)

    batch = fetch(ads, source(account_ids=[A1, A2], **settings), declared=declared)

    assert batch.ownership.groupby("account_id")["party"].apply(list).to_dict() == expected
    if A1 in expected and len(expected[A1]) == 2:
        handoff = batch.ownership[batch.ownership["party"] == "beacon"].iloc[0]
        assert handoff["start"] == pd.Timestamp("2026-07-08")  # the campaign's own day, as the report gives it


# ----------------------------------------------------------------------------------------------
# report files


@pytest.mark.parametrize("header_lines", [pytest.param(True, id="with-header-lines"), pytest.param(False, id="plain")])
def test_a_report_file_is_read_as_the_service_writes_it(tmp_path: Path, header_lines: bool) -> None:
    rows = [{"TimePeriod": "2026-07-06", "AccountId": A1, "AccountName": "Harbor", "CampaignId": "5001",
             "CampaignName": 'Brand, "Core"', "CurrencyCode": "USD", "Spend": "1,234.50", "Impressions": "2,000",
             "Clicks": "12", "Conversions": "--", "ConversionsQualified": ""},
            {"TimePeriod": "7/7/2026", "AccountId": A1, "AccountName": "Harbor", "CampaignId": "5001",
             "CampaignName": "Brand", "CurrencyCode": "USD", "Spend": "0.50", "Impressions": "3",
             "Clicks": "1", "Conversions": "1", "ConversionsQualified": "0.40"}]
    path = tmp_path / "report.csv"
    path.write_bytes(_csv(list(microsoft_ads.METRIC_COLUMNS), rows, {"ExcludeReportHeader": not header_lines}))

    report = read_report(str(path), microsoft_ads.METRIC_COLUMNS)
    metrics = microsoft_ads.metric_rows(report)

    assert len(report) == 2 and report["CampaignName"][0] == 'Brand, "Core"'  # the copyright footer is dropped
    assert list(metrics["date"]) == [pd.Timestamp("2026-07-06"), pd.Timestamp("2026-07-07")]
    assert list(metrics["spend"]) == [1234.5, 0.5] and list(metrics["impressions"]) == [2000.0, 3.0]
    assert list(metrics["leads"]) == [0.0, 0.4]


def test_a_report_without_an_expected_column_fails_its_accounts(ads: FakeMicrosoftAds, monkeypatch: pytest.MonkeyPatch) -> None:
    ads.add_metrics(A1, "2026-07-06", "5001", 1.0, 1)
    monkeypatch.setattr(microsoft_ads, "_READERS", {**microsoft_ads._READERS, "metrics": (
        (*microsoft_ads.METRIC_COLUMNS, "Revenue"), microsoft_ads.metric_rows)})

    with pytest.raises(SourceError, match="the campaign performance report failed: the report has no column Revenue"):
        fetch(ads, source())


# ----------------------------------------------------------------------------------------------
# config


def _config_file(folder: Path, source_yaml: str) -> Path:
    shutil.copytree(Path(__file__).resolve().parent.parent / "rules", folder / "rules")
    path = folder / "config.yaml"
    path.write_text("store: {url: 'sqlite:///anomaly.db'}\n"
                    "parties:\n  northwind: {name: Northwind Digital, domains: [northwind-digital.example]}\n"
                    "  beacon: {name: Beacon Reach, domains: [beaconreach.example]}\n"
                    f"sources:\n  - {source_yaml}\n"
                    "alerts:\n  sinks: [{type: jsonl, path: alerts.jsonl}]\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "source_yaml, problem",
    [
        pytest.param("{type: microsoft_ads, name: ms}",
                     "sources[0].account_ids: list the accounts to pull, or set customer_id to pull every account of a "
                     "manager customer", id="no-accounts"),
        pytest.param("{type: microsoft_ads, name: ms, account_ids: ['F149MJ18']}",
                     "sources[0].account_ids[0]: string should match pattern '^[1-9][0-9]{0,18}$', got 'F149MJ18'",
                     id="account-number-not-id"),
        pytest.param("{type: microsoft_ads, name: ms, customer_id: '1', environment: staging}",
                     "sources[0].environment: input should be 'production' or 'sandbox', got 'staging'", id="environment"),
        pytest.param("{type: microsoft_ads, name: ms, customer_id: '1', leads: {goal: [Contact]}}",
                     "sources[0].leads.goal: unknown key; did you mean 'goals'? expected one of: goals", id="goal-typo"),
        pytest.param("{type: microsoft_ads, name: ms, customer_id: '1', leads: {goals: ['']}}",
                     "sources[0].leads.goals[0]: string should have at least 1 character, got ''", id="empty-goal"),
        pytest.param("{type: microsoft_ads, name: ms, customer_id: '1', refresh_tokn: x}",
                     "sources[0].refresh_tokn: unknown key; did you mean 'refresh_token'?", id="key-typo"),
        pytest.param("{type: microsoft_ads, name: ms, customer_id: '1', max_attempts: 0}",
                     "sources[0].max_attempts: input should be greater than or equal to 1, got 0", id="attempts"),
        pytest.param("{type: microsoft_ads, name: ms, customer_id: '1', refresh_token: M.C5_BAY.literal-refresh}",
                     "sources[0].refresh_token: expected the OAuth refresh token from the environment, written as "
                     "${MICROSOFT_ADS_REFRESH_TOKEN}", id="secret-written-in-the-file"),
    ],
)
def test_config_errors_are_clear(tmp_path: Path, source_yaml: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_config_file(tmp_path, source_yaml), environ={})
    messages = [f"{p.where}: {p.message}" for p in caught.value.problems]
    assert any(m.startswith(problem) for m in messages), messages
    assert "literal-refresh" not in str(caught.value)


def test_a_valid_config_reads_secrets_from_the_environment(tmp_path: Path) -> None:
    path = _config_file(tmp_path, "{type: microsoft_ads, name: ms, customer_id: '9990001', "
                                  "developer_token: '${MSADS_DEV}', refresh_token: '${MSADS_REFRESH}', "
                                  "account_leads: {'1410001': {goals: [Booked call]}}}")
    config, _ = load_config(path, environ={"MSADS_DEV": DEVELOPER_TOKEN, "MSADS_REFRESH": REFRESH_TOKEN})
    [settings] = config.sources
    assert settings.developer_token.get_secret_value() == DEVELOPER_TOKEN
    assert settings.account_leads["1410001"].goals == ["Booked call"] and settings.environment == "production"


# ----------------------------------------------------------------------------------------------
# secrets


def test_secrets_never_reach_logs_or_errors(token_endpoint: FakeMicrosoftAds, caplog: pytest.LogCaptureFixture) -> None:
    ads = token_endpoint
    caplog.set_level(logging.DEBUG)
    for name in ("suds", "suds.client", "suds.transport.http", "urllib3", "connectors.microsoft_ads"):
        caplog.set_level(logging.DEBUG, logger=name)
    ads.add_metrics(A1, "2026-07-06", "5001", 1.0, 1)
    ads.add_metrics(A2, "2026-07-06", "5001", 1.0, 1)
    ads.add_change(A1, "2026-07-08 10:00:00", DANA)
    ads.fail("metrics", A2, *[Fault(2004, "InvalidAccountId", detail="Api")] * 2)
    ads.fail("changes", A1, Fault(0, "InternalError"), DownloadError(503))
    env = _environment(MICROSOFT_ADS_CLIENT_SECRET=CLIENT_SECRET)
    settings = source(account_ids=[A1, A2], customer_id=MANAGER)

    clients = connect(settings, env, location=f"{ads.url}/soap")
    batch = MicrosoftAdsConnector(settings, DOMAINS, clients=clients, sleep=lambda s: None,
                                  today=lambda: TODAY).fetch(dt.date(2026, 7, 6), TODAY)
    env_bad = _environment(MICROSOFT_ADS_REFRESH_TOKEN="refresh-EXPIRED-0b7a", MICROSOFT_ADS_CLIENT_SECRET=CLIENT_SECRET)
    with pytest.raises(SourceError) as refused:
        connect(settings, env_bad)

    text = caplog.text + "\n".join(map(str, batch.failures)) + str(refused.value)
    assert len(batch.failures) == 1 and "DEBUG" in caplog.text
    for secret in (DEVELOPER_TOKEN, ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET, "refresh-EXPIRED-0b7a", "S3CRETSIGNATURE"):
        assert secret not in text
    assert DANA not in caplog.text and "beaconreach.example" in caplog.text


# ----------------------------------------------------------------------------------------------
# end to end: config.yaml → the pipeline's pull → detection → an alert naming the partner's change


def test_a_microsoft_ads_source_runs_through_the_pipeline_to_an_alert(token_endpoint: FakeMicrosoftAds, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from anomaly.alerts import make_sinks
    from anomaly.ownership import ownership_periods
    from anomaly.pipeline import make_connector, run_cycle
    from anomaly.store import Store

    ads = token_endpoint
    today = dt.date.today()
    first = today - dt.timedelta(days=60)
    for offset in range(60):
        day = (first + dt.timedelta(days=offset)).isoformat()
        ads.add_metrics(A1, day, "5001", 1000.0, 500, conversions=10.0 if offset < 58 else 0.0)
    ads.add_change(A1, f"{today - dt.timedelta(days=20)} 10:00:00", TOM, campaign="5001", attribute="Name",
                   old="Brand", new="Brand - US")
    for minute in ("41", "52"):  # the partner starts working on the account: two changes take it over
        ads.add_change(A1, f"{today - dt.timedelta(days=3)} 15:{minute}:00", DANA, campaign="5001",
                       attribute="Tracking template", old="", new="{lpurl}?src=beacon")
    for name, value in _environment().items():
        monkeypatch.setenv(name, value)
    real = microsoft_ads.make_clients
    monkeypatch.setattr(microsoft_ads, "make_clients", lambda *a, **kw: real(*a, **{**kw, "location": f"{ads.url}/soap"}))
    path = _config_file(tmp_path, f"{{type: microsoft_ads, name: msads, account_ids: ['{A1}'], history_days: 70}}")
    config, rules = load_config(path, environ=dict(os.environ))
    assert isinstance(make_connector(config.sources[0], config), MicrosoftAdsConnector)
    store = Store(config.store.url.get_secret_value())
    store.migrate()

    report = run_cycle(config, rules, ownership_periods(config), store, make_sinks(config), today=today)

    assert report.pulls[0].metric_rows == 60 and report.pulls[0].change_rows == 3
    lines = (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    handover, alert = [json.loads(line) for line in lines]  # the handover the change history shows, three days ago, is told first
    assert (handover["event"], handover["account_id"], handover["from_party"], handover["to_party"]) == ("handover", A1, "northwind", "beacon")
    assert (alert["event"], alert["account_id"], alert["campaign_id"]) == ("opened", A1, "5001")
    assert alert["detected_on"] == (first + dt.timedelta(days=58)).isoformat()
    assert [(c["user_email"], c["party"]) for c in alert["changes"]] == [(DANA, "beacon")] * 2
    assert (alert["managing_party"], alert["party_since"]) == ("beacon", (today - dt.timedelta(days=3)).isoformat())


def test_the_pull_benchmark_runs_on_a_small_portfolio() -> None:
    from benchmarks.microsoft_ads_pull import run

    row = run(accounts=3, campaigns=2, days=4, seed=1)

    assert (row["metric_rows"], row["change_rows"], row["reports"]) == (3 * 2 * 4, 3 * 3 * 4, 3)
    assert row["wall_s"] > 0 and row["cpu_s"] > 0
