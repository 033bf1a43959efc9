"""Meta pull speed: one full fetch of a business's ad accounts from a local fake of the Graph API.

    python -m benchmarks.meta_ads_pull [--accounts 200] [--campaigns 20] [--days 30] [--seed 0]

The fake (``tests.meta_graph_fake``) serves generated insights and activity logs over real HTTP
from a child process, so that the CPU seconds measured are the connector's alone: the SDK's
requests, its paging and JSON parsing into ``AdsInsights`` and ``AdActivity`` objects, the lead
counting, the campaign look-ups of ad-set changes and the frames. The fetch lists the business's
owned ad accounts (name, currency and time zone come with the listing), reads every account's daily
campaign insights (pages of 500 rows) and its activity log (about three changes a day, a third of
them on ad sets). It runs twice: with the insights read at once (``async_after_days`` above the
range) and as asynchronous report runs (each polled twice; the waits between polls are not slept).

Prints a table: the sizes, the rows returned, the API calls, the wall time and CPU seconds of the
fetch, and the peak memory of this process.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import resource
import time
from typing import Any

import numpy as np

from anomaly.config import MetaAdsSourceConfig
from benchmarks import pull_table
from connectors.meta_ads import MetaAdsConnector

BUSINESS = "990000"
END = dt.date(2026, 7, 12)
USERS = (("100001", "Ana Silva"), ("100002", "Tom Berg"), ("200001", "Dana Reyes"))
DOMAINS = {"meta:100001": "northwind", "meta:100002": "northwind", "meta:200001": "beacon"}
EVENTS = (
    ("update_campaign_budget", "campaign"), ("update_campaign_run_status", "campaign"),
    ("update_ad_set_budget", "ad_set"), ("update_ad_set_bid_strategy", "ad_set"),
)


def populate(graph: Any, accounts: int, campaigns: int, days: int, seed: int) -> None:
    """Fill ``graph`` (a ``FakeGraph``) with a business's accounts, insights and activity logs."""
    from tests.meta_graph_fake import FakeAccount, activity, insight

    rng = np.random.default_rng(seed)
    dates = [(END - dt.timedelta(days=days - 1 - d)).isoformat() for d in range(days)]
    owned = []
    for n in range(accounts):
        account = graph.add_account(FakeAccount(str(10_000_000 + 7919 * n), f"Client {n}", currency="USD",
                                                timezone_name="America/New_York"))
        owned.append(account.account_id)
        campaign_ids = [str(23_000_000_000 + n * 1000 + c) for c in range(campaigns)]
        spend = rng.gamma(2.0, 40.0, size=(campaigns, days))
        clicks = rng.poisson(spend / 1.5)
        leads = rng.poisson(spend / 60.0)
        for c, campaign in enumerate(campaign_ids):
            graph.objects[str(int(campaign) * 10)] = {"campaign_id": campaign}  # one ad set per campaign
            for d, day in enumerate(dates):
                account.insights.append(insight(
                    campaign, day, spend=float(spend[c, d]), impressions=int(clicks[c, d] * 40), clicks=int(clicks[c, d]),
                    account=account, actions={"lead": float(leads[c, d]), "onsite_conversion.lead_grouped": float(leads[c, d]),
                                              "link_click": float(clicks[c, d])}))
        for _ in range(3 * days):
            event, level = EVENTS[int(rng.integers(len(EVENTS)))]
            campaign = campaign_ids[int(rng.integers(campaigns))]
            actor_id, actor_name = USERS[int(rng.integers(len(USERS)))]
            at = dt.datetime.combine(END, dt.time(12), dt.timezone.utc) - dt.timedelta(minutes=int(rng.integers(days * 24 * 60)))
            extra = {"old_value": "5000", "new_value": "8000"} if "budget" in event else (
                {"old_value": "Active", "new_value": "Paused"} if "status" in event else
                {"old_value": "LOWEST_COST_WITHOUT_CAP", "new_value": "COST_CAP"})
            account.activities.append(activity(event, at.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                                               object_id=campaign if level == "campaign" else str(int(campaign) * 10),
                                               actor_id=actor_id, actor_name=actor_name, extra=extra))
        account.activities.sort(key=lambda a: a["event_time"], reverse=True)
    graph.businesses[BUSINESS] = {"owned": owned, "client": []}


def _serve(conn: Any, accounts: int, campaigns: int, days: int, seed: int) -> None:
    from tests.meta_graph_fake import FakeGraph

    graph = FakeGraph()
    populate(graph, accounts, campaigns, days, seed)
    graph.start()
    conn.send(graph.url)
    conn.recv()  # until the benchmark is done
    graph.stop()


def run(accounts: int, campaigns: int, days: int, seed: int) -> list[dict]:
    from tests.meta_graph_fake import client

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=_serve, args=(child, accounts, campaigns, days, seed), daemon=True)
    server.start()
    url = parent.recv()
    rows = []
    try:
        for mode, async_after in (("at once", days), ("report runs", 0)):
            api = client(url)  # the SDK's client, pointed at the child's server
            source = MetaAdsSourceConfig(type="meta_ads", name="bench", business_id=BUSINESS, async_after_days=async_after)
            connector = MetaAdsConnector(source, DOMAINS, api=api, sleep=lambda s: None)
            wall, cpu = time.perf_counter(), time.process_time()
            batch = connector.fetch(END - dt.timedelta(days=days - 1), END)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert not batch.failures
            rows.append({
                "insights": mode, "accounts": accounts, "campaigns": campaigns, "days": days,
                "metric_rows": len(batch.metrics), "change_rows": len(batch.changes), "calls": connector.last_guard.calls,
                "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            })
    finally:
        parent.send("done")
        server.join(10)
    return rows


def main() -> None:
    pull_table.main(__doc__.splitlines()[0], run)


if __name__ == "__main__":
    main()
