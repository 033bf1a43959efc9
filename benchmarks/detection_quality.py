"""Detection quality: the service against the methods agencies use today, on portfolios with known incidents.

    python -m benchmarks.detection_quality [--seeds 1 2 3] [--accounts 36] [--days 300] [--rules DIR] [--ablation] [--per-seed]

For each seed it generates a synthetic portfolio (``benchmarks.synth``), replays the service on it
with ``anomaly.pipeline.backtest`` over the evaluated span, runs the three peer methods
(``benchmarks.peers``), and scores every method's alerts against the injected incidents
(``benchmarks.score``). It prints the portfolio sizes, one main table (a row per method, each cell
the mean over seeds with the range in brackets), recall by incident class and spike size, and with
``--per-seed`` the main numbers of each seed. The "oracle" row is what the data can show at all
(``benchmarks.score.oracle_row``): the recall of an oracle that knows every incident's true span
and normal rates, a ceiling for any detector.

``VARIANTS`` holds the service's configurations: "service" is the project's rules and defaults and
always runs; the others are ablations, run with ``--ablation``. A variant sets ``detection:``
settings (merged into the benchmark's config.yaml) and may edit the loaded rule list.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from anomaly.config import RuleBase, load_config
from anomaly.incidents import Incident
from anomaly.pipeline import backtest
from benchmarks import peers
from benchmarks.score import ALERT_COLUMNS, CLASSES, Scores, oracle_row, score
from benchmarks.synth import Portfolio, generate

PROJECT = Path(__file__).resolve().parent.parent


def _one_day_rules(rules: list[RuleBase]) -> list[RuleBase]:
    """Only the single-day cost-per-lead rules, and the rules of other families."""
    return [rule for rule in rules if rule.window_days == 1 or rule.rule_family != "cost_per_lead"]


def _without_clicks(rules: list[RuleBase]) -> list[RuleBase]:
    return [rule.model_copy(update={"use_clicks": False}) if rule.type == "cpl_ratio" else rule for rule in rules]


def _without_handoff_settings(rules: list[RuleBase]) -> list[RuleBase]:
    return [rule.model_copy(update={"after_ownership_change": None}) for rule in rules]


def _with_forest_rule(rules: list[RuleBase]) -> list[RuleBase]:
    return [rule.model_copy(update={"enabled": True}) if rule.type == "isolation_forest" else rule for rule in rules]


#: The service's configurations: ``detection`` settings for config.yaml, and ``rules``, None or a
#: function from the loaded rule list to the one to use (e.g. ``rule.model_copy(update=...)``).
#: Every variant but "service" removes (or adds) one technique, to show what it is worth.
VARIANTS: dict[str, dict] = {
    "service": {"detection": {}, "rules": None},
    "1-day rules only": {"detection": {}, "rules": _one_day_rules},
    "no clicks evidence": {"detection": {}, "rules": _without_clicks},
    "no account totals": {"detection": {"account_level": False}, "rules": None},
    "no shrinkage to account": {"detection": {"baseline": {"shrink_leads": 0}}, "rules": None},
    "no weekday spend profile": {"detection": {"baseline": {"weekday_prior_weeks": 1e9}}, "rules": None},
    "no baseline hold after handoff": {"detection": {"baseline": {"probation_days": 0}}, "rules": None},
    "no after-handoff thresholds": {"detection": {}, "rules": _without_handoff_settings},
    "+ isolation forest rule": {"detection": {"forest": {"enabled": True}}, "rules": _with_forest_rule},
}
BASE_VARIANT = "service"

PEERS: dict[str, Callable[[pd.DataFrame, pd.DataFrame, str], pd.DataFrame]] = {
    "same_weekday": peers.same_weekday,
    "ratio_28d": peers.ratio_28d,
    "iforest_per_campaign": peers.iforest_per_campaign,
}

#: (header, Scores.row() key or "wall_s", number format)
MAIN_COLUMNS = [
    ("F1", "f1", "{:.2f}"),
    ("precision", "precision", "{:.2f}"),
    ("recall", "recall", "{:.2f}"),
    ("false/1k campaign-days", "false_per_1k", "{:.2f}"),
    ("recall spikes ≥3× (≥1 lead/day)", "recall_big_spikes", "{:.2f}"),
    ("median delay spikes ≥3× (days)", "median_delay_big_spikes", "{:.1f}"),
    ("median delay (days)", "median_delay", "{:.1f}"),
    ("p90 delay (days)", "p90_delay", "{:.1f}"),
    ("party accuracy", "party_accuracy", "{:.2f}"),
    ("median excess error", "median_excess_error", "{:.2f}"),
    ("wall s", "wall_s", "{:.1f}"),
]
RECALL_COLUMNS = [
    ("spike 1.5×", "recall_spike_1.5x"),
    ("spike 2×", "recall_spike_2x"),
    ("spike 3×", "recall_spike_3x"),
    ("spike 5×", "recall_spike_5x"),
    ("spike 10×", "recall_spike_10x"),
    ("tracking loss", "recall_tracking_loss"),
    ("creep", "recall_creep"),
    ("creep before 2×", "creep_before_double"),
    ("spend runaway", "recall_spend_runaway"),
]


@dataclass(frozen=True)
class Result:
    """One method on one seed."""

    method: str
    seed: int
    scores: Scores
    wall_s: float

    def row(self) -> dict[str, float]:
        return {**self.scores.row(), "wall_s": self.wall_s}


@dataclass(frozen=True)
class OracleResult:
    """The oracle's recall on one seed; it sends no alerts, so every other figure is blank."""

    method: str
    seed: int
    values: dict[str, float]

    def row(self) -> dict[str, float]:
        return defaultdict(lambda: float("nan"), self.values)


ORACLE = "oracle (true spans: the ceiling)"


def incidents_to_alerts(incidents: list[Incident]) -> pd.DataFrame:
    """The scorer's alert frame from the service's incidents (one alert each)."""
    return pd.DataFrame([{name: getattr(i, name) for name in ALERT_COLUMNS} for i in incidents], columns=ALERT_COLUMNS)


def run_service(portfolio: Portfolio, variant: dict, rules_dir: Path) -> tuple[pd.DataFrame, float]:
    """Backtest the service over the portfolio's evaluated span; the alerts and the backtest's wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = {
            "store": {"url": f"sqlite:///{tmp}/bench.db"},
            "parties": portfolio.parties,
            "ownership": {"default_party": portfolio.default_party},
            "rules_dir": str(rules_dir),
            "alerts": {"sinks": []},
        }
        if variant.get("detection"):
            settings["detection"] = variant["detection"]
        config_path = Path(tmp) / "config.yaml"
        config_path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        config, rules = load_config(config_path)
        if variant.get("rules") is not None:
            rules = variant["rules"](rules)
        t0 = time.perf_counter()
        incidents = backtest(
            config, rules, portfolio.ownership, portfolio.metrics, portfolio.changes, portfolio.eval_start.date(), portfolio.end.date()
        )
        return incidents_to_alerts(incidents), time.perf_counter() - t0


def run_peer(portfolio: Portfolio, method: Callable[[pd.DataFrame, pd.DataFrame, str], pd.DataFrame]) -> tuple[pd.DataFrame, float]:
    t0 = time.perf_counter()
    alerts = method(portfolio.metrics, portfolio.ownership, portfolio.default_party)
    return alerts, time.perf_counter() - t0


def evaluate_seed(seed: int, *, accounts: int, days: int, rules_dir: Path, variants: list[str]) -> tuple[Portfolio, list[Result]]:
    """Every method on the portfolio of one seed, scored."""
    portfolio = generate(seed, n_accounts=accounts, days=days)
    runs: list[tuple[str, tuple[pd.DataFrame, float]]] = [(BASE_VARIANT, run_service(portfolio, VARIANTS[BASE_VARIANT], rules_dir))]
    runs += [(name, run_peer(portfolio, method)) for name, method in PEERS.items()]
    runs += [(name, run_service(portfolio, VARIANTS[name], rules_dir)) for name in variants if name != BASE_VARIANT]
    results: list[Result | OracleResult] = []
    for name, (alerts, seconds) in runs:
        scores = score(alerts, portfolio.truth, campaign_days=portfolio.campaign_days, eval_start=portfolio.eval_start, end=portfolio.end)
        results.append(Result(name, seed, scores, seconds))
    results.insert(1, OracleResult(ORACLE, seed, oracle_row(portfolio.truth, portfolio.metrics)))
    return portfolio, results


# ---------------------------------------------------------------------------------------------
# Output


def describe(seed: int, portfolio: Portfolio) -> str:
    """One line on the size of a seed's portfolio."""
    truth, benign = portfolio.truth, portfolio.benign
    by_class = truth["cls"].value_counts()
    classes = ", ".join(f"{by_class.get(cls, 0)} {cls}" for cls in CLASSES)
    handoff_spikes = int((truth["after_handoff"] & (truth["cls"] == "spike")).sum())
    kinds = benign["kind"].value_counts()
    return (
        f"seed {seed}: {portfolio.metrics['account_id'].nunique()} accounts, {portfolio.n_campaigns} campaigns, "
        f"{portfolio.campaign_days:,} campaign-days evaluated ({portfolio.eval_start.date()} to {portfolio.end.date()}); "
        f"incidents: {classes} ({handoff_spikes} spikes within 14 days of a handoff); "
        f"benign: {kinds.get('budget_change', 0)} budget changes, {kinds.get('improvement', 0)} improvements, {kinds.get('holiday', 0)} holidays"
    )


def cell(values: list[float], fmt: str) -> str:
    """``mean (min–max)`` over seeds, ignoring seeds without a value; the value alone for one seed."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return "–"
    mean = fmt.format(float(np.mean(finite)))
    if len(values) == 1:
        return mean
    return f"{mean} ({fmt.format(min(finite))}–{fmt.format(max(finite))})"


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def table(results: list[Result], columns: list[tuple[str, str, str]], label: Callable[[Result], str]) -> str:
    """One row per label (in first-seen order), each cell summarised over the results with that label."""
    groups: dict[str, list[Result]] = {}
    for result in results:
        groups.setdefault(label(result), []).append(result)
    rows = [[name] + [cell([r.row()[key] for r in group], fmt) for _, key, fmt in columns] for name, group in groups.items()]
    return markdown(["method"] + [header for header, _, _ in columns], rows)


def report(portfolios: dict[int, Portfolio], results: list[Result], *, per_seed: bool) -> str:
    recall_columns = [(header, key, "{:.2f}") for header, key in RECALL_COLUMNS]
    parts = [
        "\n".join(describe(seed, p) for seed, p in portfolios.items()),
        f"## Detection quality (mean (min–max) over seeds {', '.join(map(str, portfolios))})",
        table(results, MAIN_COLUMNS, lambda r: r.method),
        "## Recall by class and magnitude",
        table(results, recall_columns, lambda r: r.method),
    ]
    if per_seed:
        parts += ["## Per seed", table(results, MAIN_COLUMNS, lambda r: f"{r.method} · seed {r.seed}")]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--accounts", type=int, default=36)
    parser.add_argument("--days", type=int, default=300)
    parser.add_argument("--rules", type=Path, default=PROJECT / "rules", help="rules directory for the service (default: the project's rules/)")
    parser.add_argument("--ablation", action="store_true", help="also run the ablation variants in VARIANTS")
    parser.add_argument("--per-seed", action="store_true", help="also print each seed's numbers")
    args = parser.parse_args(argv)
    variants = list(VARIANTS) if args.ablation else [BASE_VARIANT]
    t0 = time.perf_counter()
    portfolios, results = {}, []
    for seed in args.seeds:
        portfolio, seed_results = evaluate_seed(seed, accounts=args.accounts, days=args.days, rules_dir=args.rules.resolve(), variants=variants)
        portfolios[seed] = portfolio
        results += seed_results
    print(report(portfolios, results, per_seed=args.per_seed))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
