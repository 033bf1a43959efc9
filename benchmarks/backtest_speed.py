"""Backtest speed: generate a portfolio, store it, replay it with the shipped rules.

    python -m benchmarks.backtest_speed [--accounts 36 300] [--days 365] [--seed 0]

The portfolio is the detection benchmark's (``benchmarks.synth``: about 9 campaigns an account).
Prints one table: the sizes, the time to ingest into a SQLite store, to load it back, to replay
(detection + incidents), the whole `anomaly backtest` command, the alerts found and the peak memory
of the process so far (it includes generating and ingesting).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import tempfile
import time
from pathlib import Path

from anomaly.cli import main as cli
from anomaly.config import load_config
from anomaly.pipeline import backtest
from anomaly.schema import empty_ownership
from anomaly.store import Store
from benchmarks.synth import generate

PROJECT = Path(__file__).resolve().parent.parent


def run(accounts: int, days: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "config.yaml"
        config_path.write_text(
            f"store:\n  url: sqlite:///{tmp}/bench.db\nrules_dir: {PROJECT / 'rules'}\nalerts:\n  sinks: []\n",
            encoding="utf-8",
        )
        config, rules = load_config(config_path)
        t0 = time.perf_counter()
        portfolio = generate(seed, n_accounts=accounts, days=days)
        metrics = portfolio.metrics
        t_gen = time.perf_counter() - t0

        store = Store(config.store.url.get_secret_value())
        store.migrate()
        t0 = time.perf_counter()
        store.ingest("bench", metrics["date"].min().date(), metrics["date"].max().date(), metrics, portfolio.changes)
        t_ingest = time.perf_counter() - t0

        t0 = time.perf_counter()
        loaded = store.load_metrics()
        t_load = time.perf_counter() - t0

        start, end = loaded["date"].min().date(), loaded["date"].max().date()
        t0 = time.perf_counter()
        incidents = backtest(config, rules, empty_ownership(), loaded, store.load_changes(), start, end)
        t_replay = time.perf_counter() - t0

        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = cli(["--config", str(config_path), "backtest", "--from", str(start), "--to", str(end), "--format", "json"])
        t_cli = time.perf_counter() - t0
        assert code == 0
        return {
            "accounts": accounts,
            "campaigns": portfolio.n_campaigns,
            "days": days,
            "campaign_days": len(metrics),
            "generate_s": t_gen,
            "ingest_s": t_ingest,
            "load_s": t_load,
            "replay_s": t_replay,
            "cli_backtest_s": t_cli,
            "alerts": len(incidents),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[36], help="about 9 campaigns each")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = [run(n, args.days, args.seed) for n in args.accounts]
    headers = list(rows[0])
    print(" | ".join(headers))
    print(" | ".join("---" for _ in headers))
    for row in rows:
        print(" | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()))


if __name__ == "__main__":
    main()
