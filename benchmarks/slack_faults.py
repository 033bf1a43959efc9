"""Slack fault injection at scale: notifications through the outbox while requests fail at random.

    python -m benchmarks.slack_faults [--alerts 1200] [--rate 0.3] [--seed 1] [--timeout 0.2]

The scenario of ``tests/test_slack_faults.py``, sized to about ``--alerts`` notifications: incidents
opened alone (three to an account) and in groups of five on one account (one grouped message), two
delivery rounds, then a cycle that makes six in ten worse and one that resolves three in ten (while
some openings may still be pending), delivery until nothing is pending, and a day later the
reminders of those still open (one grouped reminder per group) until nothing is pending again. The
store is SQLite; Slack is the tests' local fake (``tests.slack_fake.FakeSlack``) with
``fail_randomly(--rate)``: each request fails, with even odds, with HTTP 429 (Retry-After: 1), 500,
503, a timeout (no answer within the client's ``--timeout``) or a dropped connection, half of them
after the request took effect. The SDK's retry pauses (Retry-After included) are recorded, not
slept; the client's timeouts are waited for.

Prints one table of the run (notifications enqueued, requests, delivery rounds, sent, lost,
duplicated, wall time...) and one of the failures injected by kind, before and after the request
took effect. Lost: a notification not sent, or sent but not in Slack where its receipt says.
Duplicated: a notification key carried by more than one message or reply.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path

from anomaly.store import Store
from benchmarks.detection_quality import markdown
from tests.slack_fake import RANDOM_KINDS, FakeSlack, recorded_sleeps
from tests.test_slack_faults import check, notifications, outbox_rows, plan, run_scenario, slack_sink


def singles_for(alerts: int) -> int:
    """The number of incidents alone on their accounts that makes at least ``alerts`` notifications."""
    singles = 1
    while notifications(plan(singles)) < alerts:
        singles += 1
    return singles


def run(alerts: int, rate: float, seed: int, timeout: float) -> tuple[str, str]:
    """Run the scenario; the run's table and the failures' table, as Markdown."""
    started = time.perf_counter()
    planned = plan(singles_for(alerts))
    with tempfile.TemporaryDirectory() as tmp, recorded_sleeps() as pauses, FakeSlack() as fake:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.migrate()
        fake.fail_randomly(rate, seed=seed, delay=2 * timeout)
        outcome = run_scenario(store, fake, slack_sink(fake, timeout), planned)
        findings = check(store, fake)
        counts = store.outbox_counts()
        events = Counter(row["event"] for row in outbox_rows(store))
        store.engine.dispose()
    requests = Counter(request.method for request in fake.requests)
    injected = fake.injected_counts()
    failed = sum(injected.values())
    total = sum(requests.values())
    grouped = sum(1 for item in planned if item.grouped) // 5
    rows = [
        ["notifications enqueued", f"{findings.notifications:,}", _events(events, grouped)],
        ["messages and replies expected", f"{findings.keys:,}", "a grouped message or reminder carries several notifications"],
        ["requests to Slack", f"{total:,}", ", ".join(f"{method} {n:,}" for method, n in requests.most_common())],
        ["failures injected", f"{failed:,}", f"{failed / total:.1%} of requests; by kind below"],
        ["SDK retry pauses (recorded, not slept)", f"{len(pauses):,}", f"{sum(pauses):,.0f} s in all"],
        ["delivery rounds", f"{outcome.rounds}", f"{outcome.idle_rounds} sent nothing"],
        ["sent", f"{counts.get('sent', 0):,}", f"pending {counts.get('pending', 0)}"],
        ["lost", f"{len(findings.lost)}", "; ".join(findings.lost[:3])],
        ["duplicated", f"{len(findings.duplicated)}", ", ".join(f"{key} ×{n}" for key, n in list(findings.duplicated.items())[:3])],
        ["in Slack under no notification's key", f"{len(findings.stray)}", ", ".join(findings.stray[:3])],
        ["alerts not as their last notification says", f"{len(findings.out_of_order)}", "; ".join(findings.out_of_order[:3])],
        ["charts shared", f"{findings.charts}", f"{findings.doubled_charts} threads with two or more"],
        ["wall time", f"{time.perf_counter() - started:.0f} s", f"delivery {outcome.seconds:.0f} s, client timeout {timeout:g} s"],
    ]
    kinds = [
        [kind, f"{injected.get(kind, 0):,}", f"{injected.get(f'{kind} after store', 0):,}", f"{injected.get(kind, 0) + injected.get(f'{kind} after store', 0):,}"]
        for kind in RANDOM_KINDS
    ]
    return markdown(["", "count", "details"], rows), markdown(["failure", "before store", "after store", "all"], kinds)


def _events(events: Counter, groups: int) -> str:
    order = ("opened", "updated", "resolved", "reminder")
    return ", ".join(f"{events.get(event, 0):,} {event}" for event in order) + f" ({groups} groups of five)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1200, help="notifications to enqueue, about (default 1200)")
    parser.add_argument("--rate", type=float, default=0.3, help="the share of requests that fail (default 0.3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=0.2, help="the client's timeout in seconds (default 0.2)")
    args = parser.parse_args(argv)
    logging.disable(logging.ERROR)  # a line for each injected failure would bury the tables, which count them
    summary, kinds = run(args.alerts, args.rate, args.seed, args.timeout)
    print(f"## Slack with {args.rate:.0%} of requests failing (seed {args.seed})\n\n{summary}\n\n## Failures injected\n\n{kinds}")


if __name__ == "__main__":
    main()
