"""Google Ads pull speed: one full fetch from a fake manager account with generated responses.

    python -m benchmarks.google_ads_pull [--accounts 200] [--campaigns 20] [--days 30] [--seed 0]

``search_stream`` of the client library's real ``GoogleAdsServiceClient`` is patched to answer from
responses generated and serialised beforehand; each call deserialises them into the library's
``SearchGoogleAdsStreamResponse`` messages, as the gRPC transport does, in batches of up to 10,000
rows. The fetch lists the manager's client accounts, runs the metrics and leads queries of every
account and reads its change history (about three changes a day, within the API's 30 days).

Prints one table row: the sizes, the rows returned, the wall time of the fetch alone and the peak
memory of the process (which includes the generated responses).
"""

from __future__ import annotations

import datetime as dt
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import numpy as np
from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.v26.services.services.google_ads_service import GoogleAdsServiceClient
from google.auth.credentials import AnonymousCredentials

from anomaly.config import GoogleAdsSourceConfig
from benchmarks import pull_table
from connectors.google_ads import CHANGE_HISTORY_DAYS, GoogleAdsConnector

MANAGER = "9990000000"
END = dt.date(2026, 7, 12)
BATCH_ROWS = 10_000
LEAD_CATEGORIES = ("SUBMIT_LEAD_FORM", "PHONE_CALL_LEAD")
USERS = ("ana@northwind-digital.example", "tom@northwind-digital.example", "dana@beaconreach.example")
CLIENT_TYPES = ("GOOGLE_ADS_WEB_CLIENT", "GOOGLE_ADS_EDITOR", "GOOGLE_ADS_AUTOMATED_RULE")
DOMAINS = {"northwind-digital.example": "northwind", "beaconreach.example": "beacon"}

CLIENT = GoogleAdsClient(credentials=AnonymousCredentials(), developer_token="x", use_proto_plus=True,
                         login_customer_id=MANAGER)
RESPONSE = type(CLIENT.get_type("SearchGoogleAdsStreamResponse"))

Responses = dict[tuple[str, str], list[bytes]]


def generate(accounts: int, campaigns: int, days: int, seed: int) -> tuple[list[str], Responses]:
    """Every answer of the fake service, keyed by (customer id, query kind), as serialised batches."""
    rng = np.random.default_rng(seed)
    ids = [f"{1_000_000_000 + 7919 * i:010d}" for i in range(accounts)]
    dates = [(END - dt.timedelta(days=days - 1 - d)).isoformat() for d in range(days)]
    responses: Responses = {(MANAGER, "accounts"): _batches(accounts, lambda row, i: _client(row, ids[i]))}
    for n, account in enumerate(ids):
        responses[(account, "metrics")] = _metrics(rng, n, account, campaigns, dates)
        responses[(account, "leads")] = _leads(rng, n, account, campaigns, dates)
        responses[(account, "changes")] = _changes(rng, account, campaigns, min(days, CHANGE_HISTORY_DAYS))
    return ids, responses


def _batches(count: int, fill: Callable[[Any, int], None]) -> list[bytes]:
    """``count`` rows set by ``fill(row, i)`` (raw protobuf rows), serialised in stream batches."""
    batches = []
    for first in range(0, count, BATCH_ROWS):
        response = RESPONSE.pb()(request_id=f"bench-{first}")
        for i in range(first, min(count, first + BATCH_ROWS)):
            fill(response.results.add(), i)
        batches.append(response.SerializeToString())
    return batches or [RESPONSE.pb()().SerializeToString()]


def _client(row: Any, account: str) -> None:
    row.customer_client.id = int(account)
    row.customer_client.level = 1


def _customer(row: Any, n: int, account: str) -> None:
    row.customer.id = int(account)
    row.customer.descriptive_name = f"Client {n}"
    row.customer.currency_code = "USD"


def _metrics(rng: np.random.Generator, n: int, account: str, campaigns: int, dates: list[str]) -> list[bytes]:
    days = len(dates)
    cost = rng.integers(1_000_000, 500_000_000, campaigns * days).tolist()
    clicks = rng.integers(1, 400, campaigns * days).tolist()

    def fill(row: Any, i: int) -> None:
        _customer(row, n, account)
        row.segments.date = dates[i % days]
        row.campaign.id = 100 + i // days
        row.campaign.name = f"Campaign {i // days}"
        row.metrics.cost_micros = cost[i]
        row.metrics.clicks = clicks[i]
        row.metrics.impressions = clicks[i] * 20

    return _batches(campaigns * days, fill)


def _leads(rng: np.random.Generator, n: int, account: str, campaigns: int, dates: list[str]) -> list[bytes]:
    days = len(dates)
    per_day = rng.choice(3, campaigns * days, p=[0.3, 0.5, 0.2])  # how many lead categories converted
    cells = np.repeat(np.arange(campaigns * days), per_day).tolist()  # the campaign-day of each row
    nth = (np.arange(len(cells)) - np.repeat(np.cumsum(per_day) - per_day, per_day)).tolist()
    category = [getattr(CLIENT.enums.ConversionActionCategoryEnum, c) for c in LEAD_CATEGORIES]
    conversions = rng.uniform(0.5, 6.0, len(cells)).round(1).tolist()

    def fill(row: Any, i: int) -> None:
        cell = cells[i]
        _customer(row, n, account)
        row.segments.date = dates[cell % days]
        row.campaign.id = 100 + cell // days
        row.campaign.name = f"Campaign {cell // days}"
        row.segments.conversion_action_category = category[nth[i]]
        row.metrics.conversions = conversions[i]

    return _batches(len(cells), fill)


def _changes(rng: np.random.Generator, account: str, campaigns: int, days: int) -> list[bytes]:
    count = 3 * days
    start = dt.datetime.combine(END - dt.timedelta(days=days - 1), dt.time())
    seconds = np.sort(rng.integers(0, days * 86_400, count)).tolist()
    users = rng.integers(0, len(USERS), count).tolist()
    campaign = rng.integers(0, campaigns, count).tolist()
    enums = CLIENT.enums

    def fill(row: Any, i: int) -> None:
        row.customer.time_zone = "America/New_York"
        event = row.change_event
        event.resource_name = f"customers/{account}/changeEvents/{i}"
        event.change_date_time = (start + dt.timedelta(seconds=seconds[i])).strftime("%Y-%m-%d %H:%M:%S.%f")
        event.user_email = USERS[users[i]]
        event.client_type = getattr(enums.ChangeClientTypeEnum, CLIENT_TYPES[users[i]])
        event.change_resource_type = enums.ChangeEventResourceTypeEnum.CAMPAIGN_BUDGET
        event.resource_change_operation = enums.ResourceChangeOperationEnum.UPDATE
        event.campaign = f"customers/{account}/campaigns/{100 + campaign[i]}"
        event.changed_fields.paths.append("amount_micros")
        event.old_resource.campaign_budget.amount_micros = 50_000_000
        event.new_resource.campaign_budget.amount_micros = 80_000_000

    return _batches(count, fill)


def _kind(query: str) -> str:
    if "FROM customer_client" in query:
        return "accounts"
    if "FROM change_event" in query:
        return "changes"
    return "leads" if "conversion_action_category" in query else "metrics"


def run(accounts: int, campaigns: int, days: int, seed: int) -> dict:
    _, responses = generate(accounts, campaigns, days, seed)

    def search_stream(*, customer_id: str, query: str, timeout: float) -> Iterator[Any]:
        for data in responses[(customer_id, _kind(query))]:
            yield RESPONSE.deserialize(data)

    source = GoogleAdsSourceConfig(type="google_ads", name="bench", login_customer_id=MANAGER)
    connector = GoogleAdsConnector(source, DOMAINS, client=CLIENT, today=lambda: END)
    with mock.patch.object(GoogleAdsServiceClient, "search_stream", side_effect=search_stream):
        t0 = time.perf_counter()
        batch = connector.fetch(END - dt.timedelta(days=days - 1), END)
        wall = time.perf_counter() - t0
    assert not batch.failures
    return {
        "accounts": accounts,
        "campaigns": campaigns,
        "days": days,
        "metric_rows": len(batch.metrics),
        "change_rows": len(batch.changes),
        "wall_s": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    pull_table.main(__doc__.splitlines()[0], run)


if __name__ == "__main__":
    main()
