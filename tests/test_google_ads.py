"""The Google Ads connector against the client library's own messages and errors, offline.

``search_stream`` of the library's real ``GoogleAdsServiceClient`` is patched to answer from
``FakeGoogleAds``: a tiny server that reads the GAQL text (resource, date range, category filter,
change-history window and LIMIT) and answers with real ``SearchGoogleAdsStreamResponse`` messages.
Errors are the library's ``GoogleAdsException`` with a real ``GoogleAdsFailure``, and
``google.api_core`` exceptions carrying gRPC trailing metadata, as the transport raises them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import grpc
import pandas as pd
import pytest
from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.errors import GoogleAdsException
from google.ads.googleads.v26.services.services.google_ads_service import GoogleAdsServiceClient
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import RefreshError
from google.protobuf import field_mask_pb2

from anomaly.config import GoogleAdsSourceConfig
from anomaly.errors import SourceError
from anomaly.ownership import infer_ownership
from connectors import google_ads
from connectors.google_ads import DailyQuotaExhausted, GoogleAdsConnector, load_client

MANAGER = "9990001111"
A1, A2, A3 = "1234567890", "2345678901", "3456789012"
TODAY = dt.date(2026, 7, 12)
DOMAINS = {"northwind-digital.example": "northwind", "beaconreach.example": "beacon"}
TOM = "tom.reed@northwind-digital.example"
DANA = "dana.kim@beaconreach.example"
CLIENT = GoogleAdsClient(
    credentials=AnonymousCredentials(), developer_token="x", use_proto_plus=True, login_customer_id=MANAGER
)
FAILURE_KEY = "google.ads.googleads.v26.errors.googleadsfailure-bin"
ERROR_ENUMS = {
    "quota_error": ("QuotaErrorEnum", "QuotaError"),
    "internal_error": ("InternalErrorEnum", "InternalError"),
    "authentication_error": ("AuthenticationErrorEnum", "AuthenticationError"),
    "authorization_error": ("AuthorizationErrorEnum", "AuthorizationError"),
    "query_error": ("QueryErrorEnum", "QueryError"),
}


# ----------------------------------------------------------------------------------------------
# a fake Google Ads server


@dataclass
class Account:
    name: str
    currency: str = "USD"
    time_zone: str = "America/New_York"
    level: int = 1
    manager: bool = False
    status: str = "ENABLED"


@dataclass
class Broken:
    """Fail a query after ``after_batches`` batches of its stream have been read."""

    error: Exception
    after_batches: int = 1


@dataclass
class FakeGoogleAds:
    accounts: dict[str, Account] = field(default_factory=dict)
    metrics: dict[str, list[tuple]] = field(default_factory=dict)
    conversions: dict[str, list[tuple]] = field(default_factory=dict)
    changes: dict[str, list[tuple]] = field(default_factory=dict)
    errors: dict[tuple[str, str], list[Exception | Broken]] = field(default_factory=dict)
    calls: list[tuple[str, str, str, float]] = field(default_factory=list)
    batch_size: int = 2

    def account(self, account_id: str, name: str = "", **kw: Any) -> None:
        self.accounts[account_id] = Account(name or f"Account {account_id}", **kw)

    def add_metrics(self, account: str, day: str, campaign: str, cost_micros: int, clicks: int,
                    impressions: int = 100) -> None:
        self.metrics.setdefault(account, []).append((day, campaign, cost_micros, clicks, impressions))

    def add_conversions(self, account: str, day: str, campaign: str, category: str, conversions: float,
                        action: str = "Website form") -> None:
        self.conversions.setdefault(account, []).append((day, campaign, category, action, conversions))

    def add_change(self, account: str, when: str, email: str, *, client_type: str = "GOOGLE_ADS_WEB_CLIENT",
                   resource: str = "CAMPAIGN", operation: str = "UPDATE", campaign: str = "111",
                   fields: tuple[str, ...] = ("status",), old: dict | None = None, new: dict | None = None) -> None:
        number = len(self.changes.get(account, []))
        self.changes.setdefault(account, []).append(
            (when, f"customers/{account}/changeEvents/{number}", email, client_type, resource, operation,
             campaign, fields, old or {}, new or {})
        )

    def fail(self, account: str, kind: str, *errors: Exception | Broken) -> None:
        self.errors.setdefault((account, kind), []).extend(errors)

    def queried(self, kind: str) -> list[str]:
        return [account for account, k, _, _ in self.calls if k == kind]

    def queries(self, kind: str) -> list[str]:
        return [query for _, k, query, _ in self.calls if k == kind]

    # -- the service

    def search_stream(self, *, customer_id: str, query: str, timeout: float) -> Iterator[Any]:
        kind = _kind(query)
        self.calls.append((customer_id, kind, query, timeout))
        pending = self.errors.get((customer_id, kind))
        error = pending.pop(0) if pending else None
        if isinstance(error, Exception):
            raise error
        rows = getattr(self, f"_{kind}")(customer_id, query)
        return self._stream(rows, error)

    def _stream(self, rows: list[Any], broken: Broken | None) -> Iterator[Any]:
        for n, i in enumerate(range(0, max(len(rows), 1), self.batch_size)):
            if broken and n == broken.after_batches:
                raise broken.error
            response = CLIENT.get_type("SearchGoogleAdsStreamResponse")
            response.request_id = f"req-{n}"
            for row in rows[i : i + self.batch_size]:
                response.results.append(row)
            yield response

    def _row(self, account: str) -> Any:
        row = CLIENT.get_type("GoogleAdsRow")
        info = self.accounts[account]
        row.customer.id = int(account)
        row.customer.descriptive_name = info.name
        row.customer.currency_code = info.currency
        return row

    def _accounts(self, manager: str, query: str) -> list[Any]:
        rows = []
        for account_id, info in self.accounts.items():
            if "customer_client.level <= 1" in query and info.level > 1:
                continue
            if "customer_client.manager = FALSE" in query and info.manager:
                continue
            if "customer_client.status = 'ENABLED'" in query and info.status != "ENABLED":
                continue
            row = CLIENT.get_type("GoogleAdsRow")
            row.customer_client.id = int(account_id)
            row.customer_client.level = info.level
            rows.append(row)
        return rows

    def _metrics(self, account: str, query: str) -> list[Any]:
        first, last = re.search(r"segments\.date BETWEEN '([\d-]+)' AND '([\d-]+)'", query).groups()
        rows = []
        for day, campaign, cost_micros, clicks, impressions in self.metrics.get(account, []):
            if first <= day <= last:
                row = self._row(account)
                row.segments.date = day
                row.campaign.id = int(campaign)
                row.campaign.name = f"Campaign {campaign}"
                row.metrics.cost_micros = cost_micros
                row.metrics.clicks = clicks
                row.metrics.impressions = impressions
                rows.append(row)
        return rows

    def _leads(self, account: str, query: str) -> list[Any]:
        first, last = re.search(r"segments\.date BETWEEN '([\d-]+)' AND '([\d-]+)'", query).groups()
        listed = re.search(r"conversion_action_category IN \(([^)]*)\)", query)
        categories = re.findall(r"'(\w+)'", listed.group(1)) if listed else None
        named = "segments.conversion_action_name" in query
        rows = []
        for day, campaign, category, action, conversions in self.conversions.get(account, []):
            if first <= day <= last and (categories is None or category in categories):
                row = self._row(account)
                row.segments.date = day
                row.campaign.id = int(campaign)
                row.campaign.name = f"Campaign {campaign}"
                row.segments.conversion_action_category = getattr(CLIENT.enums.ConversionActionCategoryEnum, category)
                if named:
                    row.segments.conversion_action_name = action
                row.metrics.conversions = conversions
                rows.append(row)
        return rows

    def _changes(self, account: str, query: str) -> list[Any]:
        after = re.search(r"change_date_time >= '([^']+)'", query).group(1)
        until = re.search(r"change_date_time < '([^']+)'", query).group(1)
        limit = int(re.search(r"LIMIT (\d+)", query).group(1))
        assert "ORDER BY change_event.change_date_time" in query
        events = sorted(self.changes.get(account, []), key=lambda e: e[0])
        return [self._change(account, *e) for e in events if after <= e[0] < until][:limit]

    def _change(self, account: str, when: str, resource_name: str, email: str, client_type: str, resource: str,
                operation: str, campaign: str, fields: tuple[str, ...], old: dict, new: dict) -> Any:
        row = CLIENT.get_type("GoogleAdsRow")
        row.customer.time_zone = self.accounts[account].time_zone
        event = row.change_event
        event.resource_name = resource_name
        event.change_date_time = when
        event.user_email = email
        event.client_type = getattr(CLIENT.enums.ChangeClientTypeEnum, client_type)
        event.change_resource_type = getattr(CLIENT.enums.ChangeEventResourceTypeEnum, resource)
        event.resource_change_operation = getattr(CLIENT.enums.ResourceChangeOperationEnum, operation)
        event.changed_fields = field_mask_pb2.FieldMask(paths=list(fields))
        if campaign:
            event.campaign = f"customers/{account}/campaigns/{campaign}"
        for values, changed in ((old, event.old_resource), (new, event.new_resource)):
            for name, value in values.items():
                setattr(getattr(changed, resource.lower()), name, value)
        return row


def _kind(query: str) -> str:
    if "FROM customer_client" in query:
        return "accounts"
    if "FROM change_event" in query:
        return "changes"
    return "leads" if "conversion_action_category" in query else "metrics"


@pytest.fixture
def ads() -> Iterator[FakeGoogleAds]:
    fake = FakeGoogleAds()
    for account in (A1, A2, A3):
        fake.account(account)
    with mock.patch.object(GoogleAdsServiceClient, "search_stream", side_effect=fake.search_stream):
        yield fake


def source(**settings: Any) -> GoogleAdsSourceConfig:
    settings.setdefault("customer_ids", [A1])
    settings.setdefault("login_customer_id", MANAGER)
    return GoogleAdsSourceConfig(type="google_ads", name="ads", **settings)


def connect(settings: GoogleAdsSourceConfig, sleeps: list[float] | None = None,
            declared: frozenset[str] = frozenset()) -> GoogleAdsConnector:
    sleep = sleeps.append if sleeps is not None else _no_sleep
    return GoogleAdsConnector(settings, DOMAINS, client=CLIENT, sleep=sleep, today=lambda: TODAY,
                              declared_accounts=declared)


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected retry wait of {seconds} s")


def fetch(settings: GoogleAdsSourceConfig, start: str = "2026-07-06", end: str = "2026-07-12", **kw: Any):
    return connect(settings, **kw).fetch(dt.date.fromisoformat(start), dt.date.fromisoformat(end))


# ----------------------------------------------------------------------------------------------
# errors as the library raises them


class FakeCall(grpc.RpcError, grpc.Call):
    def __init__(self, code: grpc.StatusCode, metadata: tuple = ()):
        self._code = code
        self._metadata = metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "failed"

    def trailing_metadata(self) -> tuple:
        return self._metadata

    def initial_metadata(self) -> tuple:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def failure(kind: str, code: str, message: str = "", retry_delay: float | None = None) -> Any:
    failure = CLIENT.get_type("GoogleAdsFailure")
    error = CLIENT.get_type("GoogleAdsError")
    enum_type, inner = ERROR_ENUMS[kind]
    setattr(error.error_code, kind, getattr(getattr(CLIENT.get_type(enum_type), inner), code))
    error.message = message or f"{code.lower()} happened"
    if retry_delay is not None:
        error.details.quota_error_details.retry_delay = dt.timedelta(seconds=retry_delay)
    failure.errors.append(error)
    return failure


def ads_error(kind: str, code: str, request_id: str = "req-x", **kw: Any) -> GoogleAdsException:
    call = FakeCall(grpc.StatusCode.INVALID_ARGUMENT)
    return GoogleAdsException(call, call, failure(kind, code, **kw), request_id)


def grpc_error(cls: type[api_exceptions.GoogleAPICallError], request_id: str | None = "req-g",
               ads_failure: Any = None) -> api_exceptions.GoogleAPICallError:
    metadata = (("request-id", request_id),) if request_id else ()
    if ads_failure is not None:
        metadata += ((FAILURE_KEY, type(ads_failure).serialize(ads_failure)),)
    return cls("the service said no", response=FakeCall(grpc.StatusCode.UNAVAILABLE, metadata))


# ----------------------------------------------------------------------------------------------
# metrics and leads


def test_metrics_and_leads_merge_into_canonical_daily_rows(ads: FakeGoogleAds) -> None:
    ads.account(A1, "Harbor Dental Group", currency="EUR")
    ads.add_metrics(A1, "2026-07-06", "111", 12_345_678, 10, 400)
    ads.add_metrics(A1, "2026-07-07", "111", 5_000_000, 4, 90)
    ads.add_metrics(A1, "2026-07-07", "222", 1_500_000, 1, 30)
    ads.add_metrics(A1, "2026-07-13", "111", 9_000_000, 9, 99)  # after the range
    ads.add_conversions(A1, "2026-07-06", "111", "SUBMIT_LEAD_FORM", 2.0)
    ads.add_conversions(A1, "2026-07-06", "111", "PHONE_CALL_LEAD", 1.5, action="Calls")
    ads.add_conversions(A1, "2026-07-06", "111", "PURCHASE", 4.0, action="Checkout")  # not a lead
    ads.add_conversions(A1, "2026-07-08", "222", "IMPORTED_LEAD", 1.0, action="CRM")  # a day without spend

    batch = fetch(source())

    expected = pd.DataFrame(
        [
            ("2026-07-06", A1, "111", 12.345678, 400, 10, 3.5),
            ("2026-07-07", A1, "111", 5.0, 90, 4, 0.0),
            ("2026-07-07", A1, "222", 1.5, 30, 1, 0.0),
            ("2026-07-08", A1, "222", 0.0, 0, 0, 1.0),
        ],
        columns=["date", "account_id", "campaign_id", "spend", "impressions", "clicks", "leads"],
    ).assign(date=lambda f: pd.to_datetime(f["date"]))
    got = batch.metrics.sort_values(["date", "campaign_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
    assert set(got["hour"]) == {-1}
    assert set(got["account_name"]) == {"Harbor Dental Group"}
    assert set(got["currency"]) == {"EUR"}
    assert list(got["campaign_name"]) == ["Campaign 111", "Campaign 111", "Campaign 222", "Campaign 222"]
    assert (batch.source, batch.start, batch.end) == ("ads", dt.date(2026, 7, 6), dt.date(2026, 7, 12))
    assert batch.failures == ()
    assert {timeout for *_, timeout in ads.calls} == {120.0}


def test_a_stream_broken_midway_is_read_again_from_the_start(ads: FakeGoogleAds) -> None:
    for day in ("2026-07-06", "2026-07-07", "2026-07-08"):
        ads.add_metrics(A1, day, "111", 1_000_000, 1)
    ads.fail(A1, "metrics", Broken(grpc_error(api_exceptions.ServiceUnavailable), after_batches=1))
    sleeps: list[float] = []

    batch = fetch(source(), sleeps=sleeps)

    assert list(batch.metrics["spend"]) == [1.0, 1.0, 1.0]
    assert ads.queried("metrics") == [A1, A1] and len(sleeps) == 1


@pytest.mark.parametrize(
    "leads, expected",
    [
        pytest.param({}, {A1: 2.0, A2: 2.0}, id="default-categories"),
        pytest.param({"account_leads": {A2: {"categories": ["BOOK_APPOINTMENT"]}}}, {A1: 2.0, A2: 5.0},
                     id="per-account-categories"),
        pytest.param({"account_leads": {A2: {"conversion_actions": ["Booked call"]}}}, {A1: 2.0, A2: 7.0},
                     id="per-account-named-actions"),
        pytest.param({"leads": {"conversion_actions": ["Website form", "Booked call"]}}, {A1: 2.0, A2: 9.0},
                     id="named-actions-everywhere"),
    ],
)
def test_what_counts_as_a_lead(ads: FakeGoogleAds, leads: dict, expected: dict[str, float]) -> None:
    for account in (A1, A2):
        ads.add_metrics(account, "2026-07-06", "111", 1_000_000, 1)
        ads.add_conversions(account, "2026-07-06", "111", "SUBMIT_LEAD_FORM", 2.0, action="Website form")
    ads.add_conversions(A2, "2026-07-06", "111", "BOOK_APPOINTMENT", 5.0, action="Appointment")
    ads.add_conversions(A2, "2026-07-06", "111", "PURCHASE", 7.0, action="Booked call")

    batch = fetch(source(customer_ids=[A1, A2], **leads))

    assert batch.metrics.groupby("account_id")["leads"].sum().to_dict() == expected
    named = {account for account, kind, query, _ in ads.calls
             if kind == "leads" and "segments.conversion_action_name" in query}
    expected_named = {A1, A2} if "leads" in leads else {A2} if "conversion_actions" in str(leads) else set()
    assert named == expected_named


# ----------------------------------------------------------------------------------------------
# accounts


def test_every_enabled_client_of_the_manager_minus_the_excluded(ads: FakeGoogleAds) -> None:
    ads.account(MANAGER, "The agency", level=0, manager=True)
    ads.account("4444444444", "Sub-manager", manager=True)
    ads.account("5555555555", "Client of a sub-manager", level=2)
    ads.account("6666666666", "Closed", status="CANCELED")
    for account in (A1, A2, A3):
        ads.add_metrics(account, "2026-07-06", "111", 1_000_000, 1)

    batch = fetch(source(customer_ids=[], exclude_customer_ids=[A2]))

    assert ads.queried("accounts") == [MANAGER]
    assert ads.queried("metrics") == [A1, A3]
    assert sorted(batch.metrics["account_id"]) == [A1, A3]


def test_listed_accounts_are_pulled_without_listing_the_manager(ads: FakeGoogleAds) -> None:
    fetch(source(customer_ids=[A3, A1, A2, A1], exclude_customer_ids=[A2]))

    assert ads.queried("accounts") == []
    assert ads.queried("metrics") == [A3, A1]


def test_a_manager_that_cannot_be_listed_is_an_error(ads: FakeGoogleAds) -> None:
    ads.fail(MANAGER, "accounts", ads_error("authorization_error", "USER_PERMISSION_DENIED", request_id="req-list"))

    with pytest.raises(SourceError) as caught:
        fetch(source(customer_ids=[]))

    assert caught.value.account_id == MANAGER and caught.value.request_id == "req-list"
    assert "listing the client accounts failed: authorization_error USER_PERMISSION_DENIED" in str(caught.value)


def test_nothing_to_pull_is_an_error(ads: FakeGoogleAds) -> None:
    with pytest.raises(SourceError, match="no accounts to pull"):
        fetch(source(customer_ids=[A1], exclude_customer_ids=[A1]))


# ----------------------------------------------------------------------------------------------
# change history


def test_change_history_pages_by_timestamp_past_the_row_limit(ads: FakeGoogleAds,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(google_ads, "CHANGE_PAGE", 10)
    # 25 changes in the range; the first page of 10 ends inside three changes made the same second
    times = [f"2026-07-08 10:{m:02d}:00.000000" for m in range(9)] + ["2026-07-08 10:30:00.000000"] * 3
    times += [f"2026-07-09 09:{m:02d}:00.000000" for m in range(7)] + ["2026-07-09 12:00:00.000000"] * 3
    times += [f"2026-07-10 08:{m:02d}:00.000000" for m in range(3)]
    for when in times:
        ads.add_change(A1, when, DANA)
    ads.add_change(A1, "2026-07-05 23:59:00.000000", DANA)  # before the range

    batch = fetch(source(), start="2026-07-06", end="2026-07-10")

    assert len(batch.changes) == 25
    assert batch.changes["changed_at"].is_monotonic_increasing
    pages = ads.queries("changes")
    assert len(pages) == 3
    assert "change_event.change_date_time >= '2026-07-06'" in pages[0]
    assert "change_event.change_date_time < '2026-07-11'" in pages[0]
    assert "change_event.change_date_time >= '2026-07-08 10:30:00.000000'" in pages[1]
    assert "change_event.change_date_time >= '2026-07-09 09:06:00.000000'" in pages[2]


def test_change_history_reaches_back_30_days_at_most(ads: FakeGoogleAds) -> None:
    fetch(source(), start="2026-05-01", end="2026-07-12")
    fetch(source(), start="2026-05-01", end="2026-06-12")

    assert len(ads.queries("changes")) == 1
    assert "change_event.change_date_time >= '2026-06-13'" in ads.queries("changes")[0]


def test_change_rows_are_canonical(ads: FakeGoogleAds) -> None:
    status = CLIENT.enums.CampaignStatusEnum
    ads.add_change(A1, "2026-07-08 10:00:00.000000", DANA, fields=("status",),
                   old={"status": status.ENABLED}, new={"status": status.PAUSED})
    ads.add_change(A1, "2026-07-09 15:41:00.000000", "Ops@BeaconReach.example", resource="CAMPAIGN_BUDGET",
                   campaign="", fields=("amount_micros",), old={"amount_micros": 50_000_000},
                   new={"amount_micros": 80_000_000})
    ads.add_change(A1, "2026-07-10 09:00:00.000000", "", client_type="GOOGLE_ADS_AUTOMATED_RULE",
                   operation="CREATE", campaign="222", resource="AD_GROUP", fields=("name", "status"))

    changes = fetch(source(), start="2026-07-06", end="2026-07-12").changes

    expected = pd.DataFrame(
        {
            "changed_at": pd.to_datetime(["2026-07-08 14:00", "2026-07-09 19:41", "2026-07-10 13:00"]).astype(
                "datetime64[ns]"
            ),
            "account_id": [A1, A1, A1],
            "campaign_id": ["111", "", "222"],
            "user_email": [DANA, "Ops@BeaconReach.example", ""],
            "client_type": ["GOOGLE_ADS_WEB_CLIENT", "GOOGLE_ADS_WEB_CLIENT", "GOOGLE_ADS_AUTOMATED_RULE"],
            "resource_type": ["CAMPAIGN", "CAMPAIGN_BUDGET", "AD_GROUP"],
            "operation": ["UPDATE", "UPDATE", "CREATE"],
            "changed_fields": ["status: ENABLED -> PAUSED", "amount: 50.00 -> 80.00", "name, status"],
        }
    )
    pd.testing.assert_frame_equal(changes, expected)


def test_change_history_can_be_turned_off(ads: FakeGoogleAds) -> None:
    ads.add_change(A1, "2026-07-08 10:00:00.000000", DANA)

    batch = fetch(source(change_history=False))

    assert ads.queries("changes") == [] and batch.changes.empty and batch.ownership.empty


# ----------------------------------------------------------------------------------------------
# ownership inferred from change history


def _changes(*rows: tuple[str, str, str]) -> pd.DataFrame:
    """(day, email, client_type) of each change to account A1, oldest first."""
    return pd.DataFrame(
        {
            "account_id": A1,
            "local_day": pd.to_datetime([day for day, _, _ in rows]),
            "user_email": [email for _, email, _ in rows],
            "client_type": [client for _, _, client in rows],
        }
    )


WEB, RULE, SCRIPT = "GOOGLE_ADS_WEB_CLIENT", "GOOGLE_ADS_AUTOMATED_RULE", "GOOGLE_ADS_SCRIPTS"


@pytest.mark.parametrize(
    "changes, min_changes, expected",
    [
        pytest.param([("2026-07-01", TOM, WEB)], 2, [("northwind", "2026-07-01", None)], id="first-party-seen"),
        pytest.param(
            [("2026-07-01", TOM, WEB), ("2026-07-08", DANA, WEB), ("2026-07-09", DANA, WEB)],
            2,
            [("northwind", "2026-07-01", "2026-07-08"), ("beacon", "2026-07-08", None)],
            id="handoff-dated-at-first-change",
        ),
        pytest.param(
            [("2026-07-01", TOM, WEB), ("2026-07-08", DANA, WEB), ("2026-07-09", TOM, WEB)],
            2,
            [("northwind", "2026-07-01", None)],
            id="one-change-is-not-a-handoff",
        ),
        pytest.param(
            [("2026-07-01", TOM, WEB), ("2026-07-08", DANA, WEB)],
            1,
            [("northwind", "2026-07-01", "2026-07-08"), ("beacon", "2026-07-08", None)],
            id="min-changes-1",
        ),
        pytest.param(
            [("2026-07-01", "x@client.example", WEB), ("2026-07-02", DANA, RULE), ("2026-07-03", DANA, SCRIPT),
             ("2026-07-04", "", WEB), ("2026-07-05", TOM, WEB)],
            2,
            [("northwind", "2026-07-05", None)],
            id="unattributed-and-automated-ignored",
        ),
        pytest.param(
            [("2026-07-01", TOM, WEB), ("2026-07-01", DANA, WEB), ("2026-07-01", DANA, WEB)],
            2,
            [("beacon", "2026-07-01", None)],
            id="taken-over-the-same-day",
        ),
        pytest.param(
            [("2026-07-01", TOM, WEB), ("2026-07-05", DANA, WEB), ("2026-07-05", DANA, WEB),
             ("2026-07-05", "a@sub.northwind-digital.example", WEB), ("2026-07-05", TOM, WEB)],
            2,
            [("northwind", "2026-07-01", None)],
            id="handed-back-the-same-day",
        ),
    ],
)
def test_inferred_ownership(changes: list, min_changes: int, expected: list) -> None:
    periods = infer_ownership(_changes(*changes), DOMAINS, min_changes)

    got = [(p.party, p.start.date().isoformat(), None if pd.isna(p.end) else p.end.date().isoformat())
           for p in periods.itertuples()]
    assert got == expected
    assert set(periods["account_id"]) <= {A1} and set(periods["campaign_id"]) <= {""}


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
def test_fetch_infers_ownership(ads: FakeGoogleAds, settings: dict, declared: frozenset[str], expected: dict) -> None:
    ads.account(A1, time_zone="Australia/Sydney")
    ads.add_change(A1, "2026-07-07 09:00:00.000000", TOM)
    ads.add_change(A1, "2026-07-08 08:00:00.000000", DANA)  # still 2026-07-07 in UTC
    ads.add_change(A1, "2026-07-09 10:00:00.000000", DANA)
    ads.add_change(A2, "2026-07-09 10:00:00.000000", DANA)

    batch = fetch(source(customer_ids=[A1, A2], **settings), declared=declared)

    assert batch.ownership.groupby("account_id")["party"].apply(list).to_dict() == expected
    if A1 in expected and len(expected[A1]) == 2:
        handoff = batch.ownership[batch.ownership["party"] == "beacon"].iloc[0]
        assert handoff["start"] == pd.Timestamp("2026-07-08")  # the account's own day, not UTC's


# ----------------------------------------------------------------------------------------------
# errors and retries


@pytest.mark.parametrize(
    "errors",
    [
        pytest.param([grpc_error(api_exceptions.ServiceUnavailable)] * 2, id="unavailable"),
        pytest.param([grpc_error(api_exceptions.InternalServerError), grpc_error(api_exceptions.DeadlineExceeded)],
                     id="internal-then-deadline"),
        pytest.param([grpc_error(api_exceptions.ResourceExhausted, request_id=None)], id="resource-exhausted"),
        pytest.param([ads_error("internal_error", "TRANSIENT_ERROR")], id="transient-error"),
        pytest.param([ads_error("internal_error", "INTERNAL_ERROR"), ads_error("internal_error", "DEADLINE_EXCEEDED")],
                     id="internal-error"),
    ],
)
def test_transient_failures_are_retried_with_backoff(ads: FakeGoogleAds, errors: list[Exception]) -> None:
    ads.add_metrics(A1, "2026-07-06", "111", 1_000_000, 1)
    ads.fail(A1, "metrics", *errors)
    sleeps: list[float] = []

    batch = fetch(source(), sleeps=sleeps)

    assert list(batch.metrics["spend"]) == [1.0] and batch.failures == ()
    assert len(sleeps) == len(errors)
    assert all(0 <= wait <= 2.0 * 2**i for i, wait in enumerate(sleeps))


def test_a_temporary_quota_waits_as_long_as_the_api_asks(ads: FakeGoogleAds) -> None:
    ads.fail(A1, "leads", ads_error("quota_error", "RESOURCE_TEMPORARILY_EXHAUSTED", retry_delay=7))
    ads.fail(A1, "changes", grpc_error(api_exceptions.ResourceExhausted,
                                       ads_failure=failure("quota_error", "RESOURCE_TEMPORARILY_EXHAUSTED",
                                                           retry_delay=31)))
    sleeps: list[float] = []

    batch = fetch(source(), sleeps=sleeps)

    assert sleeps == [7.0, 31.0] and batch.failures == ()


def test_retries_stop_after_max_attempts(ads: FakeGoogleAds) -> None:
    ads.fail(A1, "metrics", *[grpc_error(api_exceptions.ServiceUnavailable, request_id=f"req-{i}") for i in range(3)])
    ads.add_metrics(A2, "2026-07-06", "111", 1_000_000, 1)
    sleeps: list[float] = []

    batch = fetch(source(customer_ids=[A1, A2], max_attempts=3), sleeps=sleeps)

    assert len(sleeps) == 2 and ads.queried("metrics") == [A1, A1, A1, A2]
    [error] = batch.failures
    assert str(error) == (f"source 'ads', account {A1}, request id req-2: the daily metrics query failed after "
                          "3 attempts: ServiceUnavailable: the service said no")


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ads_error("authentication_error", "OAUTH_TOKEN_INVALID"), id="authentication"),
        pytest.param(ads_error("authorization_error", "USER_PERMISSION_DENIED"), id="authorization"),
        pytest.param(ads_error("query_error", "PROHIBITED_FIELD_IN_SELECT_CLAUSE"), id="query"),
        pytest.param(grpc_error(api_exceptions.PermissionDenied), id="permission-denied"),
    ],
)
def test_a_failing_account_is_reported_without_retry_while_the_others_are_pulled(ads: FakeGoogleAds,
                                                                                error: Exception) -> None:
    ads.add_metrics(A1, "2026-07-06", "111", 1_000_000, 1)
    ads.add_metrics(A2, "2026-07-06", "111", 2_000_000, 1)
    ads.add_metrics(A3, "2026-07-06", "111", 3_000_000, 1)
    ads.fail(A2, "leads", error)

    batch = fetch(source(customer_ids=[A1, A2, A3]))  # any retry wait would fail the test

    assert sorted(batch.metrics["account_id"]) == [A1, A3]
    [failed] = batch.failures
    assert failed.account_id == A2 and ads.queried("leads") == [A1, A2, A3]


def test_authentication_errors_say_what_to_check(ads: FakeGoogleAds) -> None:
    ads.fail(A1, "metrics", ads_error("authentication_error", "OAUTH_TOKEN_INVALID", request_id="req-auth",
                                      message="Oauth token in the header is not valid."))

    with pytest.raises(SourceError) as caught:
        fetch(source())

    assert str(caught.value) == (
        f"source 'ads', account {A1}, request id req-auth: the daily metrics query failed: authentication_error "
        "OAUTH_TOKEN_INVALID: Oauth token in the header is not valid. (check the developer token and the OAuth "
        "credentials (client_id, client_secret, refresh_token or the service account key))"
    )


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ads_error("quota_error", "RESOURCE_EXHAUSTED", request_id="req-q"), id="google-ads-exception"),
        pytest.param(grpc_error(api_exceptions.ResourceExhausted, request_id="req-q",
                                ads_failure=failure("quota_error", "RESOURCE_EXHAUSTED")),
                     id="grpc-resource-exhausted"),
    ],
)
def test_an_exhausted_daily_quota_stops_the_fetch(ads: FakeGoogleAds, error: Exception) -> None:
    ads.add_metrics(A1, "2026-07-06", "111", 1_000_000, 1)
    ads.fail(A2, "metrics", error)

    batch = fetch(source(customer_ids=[A1, A2, A3]))  # any retry wait would fail the test

    assert list(batch.metrics["account_id"]) == [A1]
    assert ads.queried("metrics") == [A1, A2]
    assert [f.account_id for f in batch.failures] == [A2, A3]
    assert all(isinstance(f, DailyQuotaExhausted) for f in batch.failures)
    hit, skipped = map(str, batch.failures)
    assert hit.startswith(f"source 'ads', account {A2}, request id req-q: the daily metrics query failed: the daily "
                          "API quota is exhausted (quota_error RESOURCE_EXHAUSTED")
    assert skipped == (f"source 'ads', account {A3}: not pulled: the daily API quota was exhausted on account {A2} "
                       "(request id req-q); it is pulled again once the quota resets")


def test_when_every_account_fails_the_fetch_fails(ads: FakeGoogleAds) -> None:
    ads.fail(A1, "metrics", ads_error("authorization_error", "USER_PERMISSION_DENIED", request_id="req-1"))
    ads.fail(A2, "metrics", ads_error("authorization_error", "CUSTOMER_NOT_ENABLED", request_id="req-2"))

    with pytest.raises(SourceError) as caught:
        fetch(source(customer_ids=[A1, A2]))

    message = str(caught.value)
    assert message.startswith("source 'ads': all 2 accounts failed:\n")
    assert f"account {A1}, request id req-1" in message and f"account {A2}, request id req-2" in message


@pytest.mark.parametrize(
    "kind, error, request_id",
    [
        pytest.param("metrics", ads_error("authorization_error", "USER_PERMISSION_DENIED", request_id="r-a"), "r-a",
                     id="metrics-authorization"),
        pytest.param("leads", ads_error("query_error", "BAD_FIELD_NAME", request_id="r-q"), "r-q", id="leads-query"),
        pytest.param("changes", ads_error("internal_error", "ERROR_CODE_NOT_PUBLISHED", request_id="r-i"), "r-i",
                     id="changes-unpublished"),
        pytest.param("changes", grpc_error(api_exceptions.InvalidArgument, request_id="r-g"), "r-g",
                     id="changes-invalid-argument"),
    ],
)
def test_every_error_names_the_source_account_and_request(ads: FakeGoogleAds, kind: str, error: Exception,
                                                          request_id: str) -> None:
    ads.fail(A1, kind, error)
    with pytest.raises(SourceError) as caught:
        fetch(source())
    assert (caught.value.source, caught.value.account_id, caught.value.request_id) == ("ads", A1, request_id)
    assert str(caught.value).startswith(f"source 'ads', account {A1}, request id {request_id}: ")


def test_logs_carry_email_domains_never_addresses(ads: FakeGoogleAds, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="connectors.google_ads")
    ads.add_change(A1, "2026-07-08 10:00:00.000000", TOM)
    ads.add_change(A1, "2026-07-09 10:00:00.000000", DANA)
    ads.add_change(A1, "2026-07-09 11:00:00.000000", DANA)
    ads.fail(A2, "metrics", ads_error("authorization_error", "USER_PERMISSION_DENIED"))
    ads.fail(A3, "metrics", grpc_error(api_exceptions.ServiceUnavailable))

    batch = fetch(source(customer_ids=[A1, A2, A3], ownership_inference={"min_changes": 1}), sleeps=[])

    assert len(batch.changes) == 3 and len(batch.failures) == 1
    assert "beaconreach.example" in caplog.text and "northwind-digital.example" in caplog.text
    assert "@" not in caplog.text


# ----------------------------------------------------------------------------------------------
# credentials


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [n for n in os.environ if n.startswith("GOOGLE_ADS_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def _offline_credentials(**kw: Any) -> Any:
    return mock.patch("google.ads.googleads.oauth2.get_credentials", **kw)


def test_credentials_from_a_file_with_the_configured_login_customer_id(tmp_path: Path) -> None:
    path = tmp_path / "google-ads.yaml"
    path.write_text("use_proto_plus: True\ndeveloper_token: dev-t0ken\nclient_id: i\nclient_secret: s\n"
                    "refresh_token: r\nlogin_customer_id: 1111111111\n", encoding="utf-8")
    with _offline_credentials(return_value=AnonymousCredentials()):
        client = load_client(source(credentials=str(path), login_customer_id="2222222222"))
    assert (client.version, client.login_customer_id, client.developer_token) == ("v26", "2222222222", "dev-t0ken")


def test_credentials_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in [("USE_PROTO_PLUS", "True"), ("DEVELOPER_TOKEN", "dev-t0ken"), ("CLIENT_ID", "i"),
                        ("CLIENT_SECRET", "s"), ("REFRESH_TOKEN", "r")]:
        clean_env.setenv(f"GOOGLE_ADS_{name}", value)
    with _offline_credentials(return_value=AnonymousCredentials()):
        client = load_client(source())
    assert (client.version, client.login_customer_id) == ("v26", MANAGER)


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("developer_token: dev-t0ken\nclient_id: i\nclient_secret: s\nrefresh_token: r\n",
                     "missing the required \"use_proto_plus\" key", id="no-use-proto-plus"),
        pytest.param("use_proto_plus: True\ndeveloper_token: dev-t0ken\nrefresh_token: s3cret\n",
                     "incorrectly configured for OAuth2", id="no-oauth-client"),
        pytest.param("use_proto_plus: True\nrefresh_token: [s3cret\n", "is not valid YAML (line 3, column 1)",
                     id="bad-yaml"),
        pytest.param("use_proto_plus: True\nlogin_customer_id: 123-456-7890\n", "login customer ID is invalid",
                     id="bad-login-customer-id"),
    ],
)
def test_a_bad_credentials_file_is_a_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "google-ads.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(SourceError) as caught:
        load_client(source(credentials=str(path)))

    message = str(caught.value)
    assert message.startswith(f"source 'ads': the credentials file {path}")
    assert expected in message and "s3cret" not in message


def test_missing_environment_variables_are_named(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("GOOGLE_ADS_USE_PROTO_PLUS", "True")
    with pytest.raises(SourceError, match="the GOOGLE_ADS_\\* environment variables: .* GOOGLE_ADS_REFRESH_TOKEN"):
        load_client(source())


def test_a_missing_developer_token_is_named(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in [("USE_PROTO_PLUS", "True"), ("CLIENT_ID", "i"), ("CLIENT_SECRET", "s"), ("REFRESH_TOKEN", "r")]:
        clean_env.setenv(f"GOOGLE_ADS_{name}", value)
    with _offline_credentials(return_value=AnonymousCredentials()), \
            pytest.raises(SourceError, match="no developer token: set GOOGLE_ADS_DEVELOPER_TOKEN"):
        load_client(source())


def test_a_refused_refresh_token_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "google-ads.yaml"
    path.write_text("use_proto_plus: True\ndeveloper_token: d\nclient_id: i\nclient_secret: s\nrefresh_token: s3cret\n",
                    encoding="utf-8")
    refused = RefreshError("invalid_grant: Token has been expired or revoked.")
    with _offline_credentials(side_effect=refused), pytest.raises(SourceError) as caught:
        load_client(source(credentials=str(path)))
    assert "could not get an OAuth access token" in str(caught.value)
    assert "invalid_grant" in str(caught.value) and "s3cret" not in str(caught.value)


def test_the_connector_reports_credentials_errors_when_it_fetches(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    connector = GoogleAdsConnector(source(credentials=str(missing)), DOMAINS)
    with pytest.raises(SourceError, match=f"cannot read the credentials file {re.escape(str(missing))}: "
                                          "file not found"):
        connector.fetch(dt.date(2026, 7, 6), dt.date(2026, 7, 12))


# ----------------------------------------------------------------------------------------------
# end to end: config.yaml → the pipeline's pull → detection → an alert naming the partner's change


def _ads_project(ads: FakeGoogleAds, folder: Path, env: pytest.MonkeyPatch) -> tuple[Path, dt.date, dt.date]:
    """A config.yaml with one Google Ads account whose leads stop two days before today, after a
    partner started changing it; returns the config path, today and the first day of data."""
    import shutil

    today = dt.date.today()  # the connector keeps to the API's real 30-day change window
    first = today - dt.timedelta(days=60)
    for offset in range(60):
        day = (first + dt.timedelta(days=offset)).isoformat()
        ads.add_metrics(A1, day, "111", cost_micros=1_000_000_000, clicks=500)
        if offset < 58:  # the last two days: the same spend, no leads
            ads.add_conversions(A1, day, "111", "SUBMIT_LEAD_FORM", 10.0)
    ads.add_change(A1, f"{(today - dt.timedelta(days=20)).isoformat()} 10:00:00", "tom.reed@northwind-digital.example")
    for minute in ("41", "52"):  # the partner starts working on the account: two changes take it over
        ads.add_change(A1, f"{(today - dt.timedelta(days=3)).isoformat()} 15:{minute}:00", "dana.kim@beaconreach.example")
    for name, value in [("USE_PROTO_PLUS", "True"), ("DEVELOPER_TOKEN", "dev-t0ken"), ("CLIENT_ID", "i"),
                        ("CLIENT_SECRET", "s"), ("REFRESH_TOKEN", "r")]:
        env.setenv(f"GOOGLE_ADS_{name}", value)
    shutil.copytree(Path(__file__).resolve().parent.parent / "rules", folder / "rules")
    (folder / "config.yaml").write_text(
        "store: {url: 'sqlite:///anomaly.db'}\n"
        "parties:\n  northwind: {name: Northwind Digital, domains: [northwind-digital.example]}\n"
        "  beacon: {name: Beacon Reach, domains: [beaconreach.example]}\n"
        f"sources:\n  - {{type: google_ads, name: ads, login_customer_id: '{MANAGER}', customer_ids: ['{A1}'], history_days: 70}}\n"
        "ownership: {default_party: northwind}\n"
        "alerts:\n  sinks: [{type: jsonl, path: alerts.jsonl}]\n",
        encoding="utf-8",
    )
    return folder / "config.yaml", today, first


def _sent(folder: Path) -> list[dict]:
    import json

    path = folder / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_a_google_ads_source_runs_through_the_pipeline_to_an_alert(ads: FakeGoogleAds, tmp_path: Path,
                                                                  clean_env: pytest.MonkeyPatch) -> None:
    from anomaly.alerts import make_sinks
    from anomaly.config import load_config
    from anomaly.ownership import ownership_periods
    from anomaly.pipeline import run_cycle
    from anomaly.store import Store

    config_path, today, first = _ads_project(ads, tmp_path, clean_env)
    config, rules = load_config(config_path, environ=dict(os.environ))
    store = Store(config.store.url.get_secret_value())
    store.migrate()
    with _offline_credentials(return_value=AnonymousCredentials()):
        report = run_cycle(config, rules, ownership_periods(config), store, make_sinks(config), today=today)
    assert report.pulls[0].metric_rows == 60 and report.pulls[0].change_rows == 3
    handover, alert = _sent(tmp_path)  # the handover the change history shows, three days ago, is told first
    assert (handover["event"], handover["account_id"], handover["from_party"], handover["to_party"]) == ("handover", A1, "northwind", "beacon")
    assert (alert["event"], alert["account_id"], alert["campaign_id"]) == ("opened", A1, "111")
    assert alert["detected_on"] == (first + dt.timedelta(days=58)).isoformat()  # the first day without leads
    assert [(c["user_email"], c["party"]) for c in alert["changes"]] == [("dana.kim@beaconreach.example", "beacon")] * 2
    # nobody declared who manages the account: the change history says the partner took it over
    assert (alert["managing_party"], alert["party_since"]) == ("beacon", (today - dt.timedelta(days=3)).isoformat())


def test_ownership_declared_in_config_wins_over_the_change_history(ads: FakeGoogleAds, tmp_path: Path,
                                                                   clean_env: pytest.MonkeyPatch) -> None:
    from anomaly.cli import main

    config_path, _, _ = _ads_project(ads, tmp_path, clean_env)
    text = config_path.read_text(encoding="utf-8").replace(
        "ownership: {default_party: northwind}",
        f"ownership:\n  assignments: [{{account_id: '{A1}', history: [{{party: northwind, since: 2025-01-01}}]}}]",
    )
    config_path.write_text(text, encoding="utf-8")
    with _offline_credentials(return_value=AnonymousCredentials()):
        assert main(["--config", str(config_path), "run"]) == 0
    (alert,) = _sent(tmp_path)
    assert alert["managing_party"] == "northwind"  # the partner's changes are listed, the contract says who manages
    assert {c["party"] for c in alert["changes"]} == {"beacon"}


def test_a_running_scheduler_pulls_google_ads_and_alerts_once(ads: FakeGoogleAds, tmp_path: Path,
                                                             clean_env: pytest.MonkeyPatch) -> None:
    import threading

    from apscheduler.schedulers.background import BackgroundScheduler

    from anomaly.service import DELIVER, HEARTBEAT, REFIT, Service
    from tests.test_service import WAIT, JobEvents, every

    config_path, _, _ = _ads_project(ads, tmp_path, clean_env)
    scheduler = BackgroundScheduler()
    with _offline_credentials(return_value=AnonymousCredentials()):
        service = Service(config_path, scheduler=scheduler, triggers={"pull:ads": every(0.3), DELIVER: every(0.3), REFIT: every(1), HEARTBEAT: every(0.3)})
        events = JobEvents(scheduler)
        alerted = threading.Event()
        events.on_executed = lambda event: alerted.set() if event.job_id == "pull:ads" and _sent(tmp_path) else None
        service.acquire_lock()
        try:
            service.run()
            assert alerted.wait(WAIT)
            assert events.wait_for(lambda e: e.executed["pull:ads"] >= 3)  # later pulls find nothing new to say
        finally:
            service.stop()
    assert [(a["event"], a["campaign_id"], a["managing_party"]) for a in _sent(tmp_path)] == [("handover", "", "beacon"), ("opened", "111", "beacon")]
    assert not events.failed


def test_accounts_an_exhausted_quota_left_out_are_pulled_in_full_next_time(ads: FakeGoogleAds, tmp_path: Path,
                                                                           clean_env: pytest.MonkeyPatch) -> None:
    """The first pull reaches 70 days back; the daily quota runs out before the second account. The
    next pull fetches that account's 60 days, not only the look-back's last week."""
    from anomaly.alerts import make_sinks
    from anomaly.config import load_config
    from anomaly.ownership import ownership_periods
    from anomaly.pipeline import run_cycle
    from anomaly.store import Store

    config_path, today, first = _ads_project(ads, tmp_path, clean_env)
    config_path.write_text(config_path.read_text(encoding="utf-8").replace(f"customer_ids: ['{A1}']", f"customer_ids: ['{A1}', '{A2}']"),
                           encoding="utf-8")
    for offset in range(60):
        ads.add_metrics(A2, (first + dt.timedelta(days=offset)).isoformat(), "222", cost_micros=500_000_000, clicks=100)
    ads.fail(A2, "metrics", ads_error("quota_error", "RESOURCE_EXHAUSTED", request_id="req-q"))
    config, rules = load_config(config_path, environ=dict(os.environ))
    store = Store(config.store.url.get_secret_value())
    store.migrate()

    def pulled_days(account: str) -> int:
        return int((store.load_metrics()["account_id"] == account).sum())

    with _offline_credentials(return_value=AnonymousCredentials()):
        run_cycle(config, rules, ownership_periods(config), store, make_sinks(config), today=today)
        assert (pulled_days(A1), pulled_days(A2)) == (60, 0)
        assert store.last_pull_end("ads") is None  # the cursor did not move past what was left out
        run_cycle(config, rules, ownership_periods(config), store, make_sinks(config), today=today + dt.timedelta(days=1))
    assert (pulled_days(A1), pulled_days(A2)) == (60, 60)
    assert store.last_pull_end("ads") == today + dt.timedelta(days=1)
