"""The command line and table of the pull benchmarks (``google_ads_pull``, ``microsoft_ads_pull``,
``meta_ads_pull``): one full pull of a fake account portfolio, a row of figures per way of pulling."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def main(description: str, run: Callable[[int, int, int, int], dict | list[dict]]) -> None:
    """Parse ``--accounts --campaigns --days --seed``, ``run`` the pull, print its row(s) as a table."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--campaigns", type=int, default=20, help="per account")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run(args.accounts, args.campaigns, args.days, args.seed)
    rows = result if isinstance(result, list) else [result]
    print(" | ".join(rows[0]))
    print(" | ".join("---" for _ in rows[0]))
    for row in rows:
        print(" | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()))
