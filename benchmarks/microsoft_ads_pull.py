"""Microsoft Advertising pull speed: one full fetch of a manager customer from the fake service.

    python -m benchmarks.microsoft_ads_pull [--accounts 200] [--campaigns 20] [--days 30] [--seed 0]

The fake (tests/microsoft_ads_fake.py) serves on 127.0.0.1 what the real ``bingads`` SDK asks for:
the manager's account listing, the campaign performance report and the change history report
(about three changes a day per account), each a zipped CSV built at submission. The connector
runs unchanged: the SDK's SOAP calls, polling and download, then reading the files into canonical
frames. Half the accounts count the conversions of named goals, which adds the report by goal.

Prints one table row: the sizes, the rows returned, the wall time of the fetch, the CPU seconds of
the thread that fetched (the connector and the SDK; the fake's own work runs on its server's
threads and is left out), and the peak memory of the process (which includes the fake's data).
"""

from __future__ import annotations

import datetime as dt
import resource
import time

import numpy as np

from anomaly.config import MicrosoftAdsSourceConfig
from benchmarks import pull_table
from connectors.microsoft_ads import MicrosoftAdsConnector
from tests.microsoft_ads_fake import FakeMicrosoftAds

MANAGER = "9990000"
END = dt.date(2026, 7, 12)
USERS = ("ana@northwind-digital.example", "tom@northwind-digital.example", "dana@beaconreach.example")
TOOLS = ("Web client (manual)", "Editor", "Automated rules")
GOALS = ("Contact form", "Booked call", "Newsletter")
DOMAINS = {"northwind-digital.example": "northwind", "beaconreach.example": "beacon"}


def generate(fake: FakeMicrosoftAds, accounts: int, campaigns: int, days: int, seed: int) -> list[str]:
    """Fill ``fake`` with ``accounts`` accounts of ``campaigns`` campaigns with activity every day."""
    rng = np.random.default_rng(seed)
    ids = [str(140_000_000 + 7919 * i) for i in range(accounts)]
    dates = [(END - dt.timedelta(days=days - 1 - d)).isoformat() for d in range(days)]
    for n, account in enumerate(ids):
        fake.account(account, f"Client {n}")
        cells = campaigns * days
        spend = rng.uniform(1.0, 500.0, cells).round(2).tolist()
        clicks = rng.integers(1, 400, cells).tolist()
        conversions = rng.uniform(0.0, 8.0, cells).round(1).tolist()
        for i in range(cells):
            campaign, day = str(100 + i // days), dates[i % days]
            fake.add_metrics(account, day, campaign, spend[i], clicks[i], clicks[i] * 20, conversions=conversions[i])
            if n % 2 == 0:
                fake.add_goal(account, day, campaign, GOALS[i % len(GOALS)], conversions[i])
        start = dt.datetime.combine(END - dt.timedelta(days=days - 1), dt.time())
        seconds = np.sort(rng.integers(0, days * 86_400, 3 * days)).tolist()
        who = rng.integers(0, len(USERS), 3 * days).tolist()
        for second, user in zip(seconds, who):
            fake.add_change(account, str(start + dt.timedelta(seconds=second)), USERS[user], attribute="Daily budget",
                            old="50.00", new="80.00", campaign=str(100 + second % campaigns), tool=TOOLS[user])
    return ids


def run(accounts: int, campaigns: int, days: int, seed: int) -> dict:
    fake = FakeMicrosoftAds()
    ids = generate(fake, accounts, campaigns, days, seed)
    goal_accounts = {account: {"goals": ["Contact form", "Booked call"]} for account in ids[::2]}
    source = MicrosoftAdsSourceConfig(type="microsoft_ads", name="bench", customer_id=MANAGER, account_leads=goal_accounts)
    with fake.serve():
        connector = MicrosoftAdsConnector(source, DOMAINS, clients=fake.clients(MANAGER), sleep=lambda s: None,
                                          today=lambda: END)
        t0, c0 = time.perf_counter(), time.thread_time()
        batch = connector.fetch(END - dt.timedelta(days=days - 1), END)
        cpu, wall = time.thread_time() - c0, time.perf_counter() - t0
    assert not batch.failures
    return {
        "accounts": accounts,
        "campaigns": campaigns,
        "days": days,
        "metric_rows": len(batch.metrics),
        "change_rows": len(batch.changes),
        "reports": len(fake.reports),
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    pull_table.main(__doc__.splitlines()[0], run)


if __name__ == "__main__":
    main()
