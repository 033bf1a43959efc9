"""Detection quality: the service against the methods agencies use today, on portfolios with known incidents.

    python -m benchmarks.detection_quality [--worlds budget auction] [--seeds 1 2 3 4 5] [--rules DIR]
                                           [--ablation] [--per-seed] [--no-peers] [--causes]

Two independently built worlds (``WORLDS``) generate the portfolios: ``budget`` (``benchmarks.synth``:
spend paced around a budget, clicks bought with it) and ``auction`` (``benchmarks.synth_auction``:
spend = clicks × cost per click, capped and shared budgets, conversions reported late, pauses,
launches and smart-bidding learning weeks). For each world and seed it replays the service with
``anomaly.pipeline.backtest`` over the evaluated span, runs the three peer methods
(``benchmarks.peers``), and scores every method's alerts against the injected incidents
(``benchmarks.score``). Every table has a row per method and world, each cell the mean over seeds
with the range in brackets; ``--per-seed`` adds each seed's main numbers, ``--causes`` what the
service's false alerts followed (a benign event on the campaign, the last days of data, nothing).

The "oracle" row is what the data can show at all (``benchmarks.score.oracle_found``): the recall
of an oracle that knows every incident's true span and normal rates, a ceiling for any detector.
The columns "of visible" give each method's recall among the incidents the oracle sees.

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
import importlib
from benchmarks.score import ALERT_COLUMNS, CLASSES, Scores, oracle_found, oracle_row, score
from benchmarks.synth import Portfolio

PROJECT = Path(__file__).resolve().parent.parent


def _one_day_rules(rules: list[RuleBase]) -> list[RuleBase]:
    """Only the single-day cost-per-lead rules, and the rules of other families."""
    return [rule for rule in rules if rule.window_days == 1 or rule.rule_family != "cost_per_lead"]


def _without_clicks(rules: list[RuleBase]) -> list[RuleBase]:
    return [rule.model_copy(update={"use_clicks": False}) if rule.type == "cpl_ratio" else rule for rule in rules]


def _without_handoff_settings(rules: list[RuleBase]) -> list[RuleBase]:
    return [rule.model_copy(update={"after_ownership_change": None}) for rule in rules]


def _without_type(kind: str) -> Callable[[list[RuleBase]], list[RuleBase]]:
    return lambda rules: [rule for rule in rules if rule.type != kind]


def _without_after_changes(rules: list[RuleBase]) -> list[RuleBase]:
    return [rule.model_copy(update={"after_changes": []}) for rule in rules]


def _bare_spend_ratio(rules: list[RuleBase]) -> list[RuleBase]:
    """The spend rule as it was: the ratio to the weekday's usual spend alone."""
    return [rule.model_copy(update={"max_p_value": None, "explained_by": None}) if rule.type == "spend_ratio" else rule for rule in rules]


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
    "fixed variation (not learned)": {"detection": {"variation": {"learn": False}}, "rules": None},
    "no cost-per-click rule": {"detection": {}, "rules": _without_type("cpc_ratio")},
    "bare spend ratio": {"detection": {"baseline": {"new_spend_level_days": 60}}, "rules": _bare_spend_ratio},
    "no settings after changes": {"detection": {}, "rules": _without_after_changes},
    "account totals mute, not pool": {"detection": {"pool_accounts": False}, "rules": None},
    "no reporting lag": {"detection": {"reporting_lag_days": 0}, "rules": None},
    "no diminishing returns": {"detection": {"baseline": {"volume_elasticity": 0}}, "rules": None},
    "no new incident after a handover": {"detection": {"incidents": {"split_at_handover": False}}, "rules": None},
}
BASE_VARIANT = "service"

@dataclass(frozen=True)
class World:
    """A generator module (its ``generate(seed, n_accounts=, days=)``) and the portfolio size the benchmark asks of it."""

    module: str
    accounts: int
    days: int

    def generate(self, seed: int) -> Portfolio:
        return importlib.import_module(self.module).generate(seed, n_accounts=self.accounts, days=self.days)


WORLDS: dict[str, World] = {
    "budget": World("benchmarks.synth", accounts=36, days=300),
    "auction": World("benchmarks.synth_auction", accounts=50, days=180),
}

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
    ("recall of visible", "visible_recall", "{:.2f}"),
    ("spikes ≥3× of visible", "visible_recall_big_spikes", "{:.2f}"),
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
VISIBLE_COLUMNS = [
    ("all", "visible_recall"),
    ("spikes ≥3×", "visible_recall_big_spikes"),
    ("spike", "visible_recall_spike"),
    ("tracking loss", "visible_recall_tracking_loss"),
    ("creep", "visible_recall_creep"),
    ("spend runaway", "visible_recall_spend_runaway"),
]


@dataclass(frozen=True)
class Result:
    """One method on one seed of one world."""

    method: str
    world: str
    seed: int
    scores: Scores
    wall_s: float

    def row(self) -> dict[str, float]:
        return {**self.scores.row(), "wall_s": self.wall_s}


@dataclass(frozen=True)
class OracleResult:
    """The oracle's recall on one seed; it sends no alerts, so every other figure is blank."""

    method: str
    world: str
    seed: int
    values: dict[str, float]

    def row(self) -> dict[str, float]:
        return defaultdict(lambda: float("nan"), self.values)


ORACLE = "oracle (true spans: the ceiling)"


def incidents_to_alerts(incidents: list[Incident]) -> pd.DataFrame:
    """The scorer's alert frame from the service's incidents (one alert each)."""
    columns = ALERT_COLUMNS + ["rule"]
    return pd.DataFrame([{name: getattr(i, name) for name in columns} for i in incidents], columns=columns)


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


def evaluate_seed(world: str, seed: int, *, rules_dir: Path, variants: list[str], with_peers: bool = True) -> tuple[Portfolio, list[Result]]:
    """Every method on the portfolio of one seed of one world, scored."""
    portfolio = WORLDS[world].generate(seed)
    runs: list[tuple[str, tuple[pd.DataFrame, float]]] = [(BASE_VARIANT, run_service(portfolio, VARIANTS[BASE_VARIANT], rules_dir))]
    if with_peers:
        runs += [(name, run_peer(portfolio, method)) for name, method in PEERS.items()]
    runs += [(name, run_service(portfolio, VARIANTS[name], rules_dir)) for name in variants if name != BASE_VARIANT]
    visible, _ = oracle_found(portfolio.truth, portfolio.metrics)
    results: list[Result | OracleResult] = []
    for name, (alerts, seconds) in runs:
        scores = score(
            alerts, portfolio.truth, campaign_days=portfolio.campaign_days, eval_start=portfolio.eval_start, end=portfolio.end, visible=visible
        )
        results.append(Result(name, world, seed, scores, seconds))
    results.insert(1, OracleResult(ORACLE, world, seed, oracle_row(portfolio.truth, portfolio.metrics)))
    return portfolio, results


CAUSE_WINDOW_DAYS = 21
LAST_DAYS = 7


def false_alert_causes(portfolio: Portfolio, alerts: pd.DataFrame) -> pd.DataFrame:
    """What each false alert followed: the latest benign event on its campaign (or, for an
    account-level alert, in its account) in the ``CAUSE_WINDOW_DAYS`` before it, a holiday, the
    last ``LAST_DAYS`` days of data, or nothing known. Columns: rule, cause."""
    false = alerts[alerts["false"]]
    benign = portfolio.benign
    causes = []
    for alert in false.itertuples(index=False):
        start = alert.detected_on - pd.Timedelta(days=CAUSE_WINDOW_DAYS)
        near = benign[(benign["day"] >= start) & (benign["day"] <= alert.detected_on)]
        here = near[(near["account_id"] == alert.account_id) & ((near["campaign_id"] == alert.campaign_id) | (alert.campaign_id == ""))]
        if alert.detected_on > portfolio.end - pd.Timedelta(days=LAST_DAYS):
            cause = "last days of data"
        elif len(here):
            cause = str(here.sort_values("day")["kind"].iloc[-1])
        elif (near["kind"] == "holiday").any():
            cause = "holiday"
        else:
            cause = "none known"
        causes.append({"rule": getattr(alert, "rule", alert.family), "cause": cause, "level": "account" if alert.campaign_id == "" else "campaign"})
    return pd.DataFrame(causes, columns=["rule", "cause", "level"])


# ---------------------------------------------------------------------------------------------
# Output


def describe(world: str, seed: int, portfolio: Portfolio) -> str:
    """One line on the size of a seed's portfolio."""
    truth, benign = portfolio.truth, portfolio.benign
    by_class = truth["cls"].value_counts()
    classes = ", ".join(f"{by_class.get(cls, 0)} {cls}" for cls in CLASSES)
    handoff_spikes = int((truth["after_handoff"] & (truth["cls"] == "spike")).sum())
    kinds = benign["kind"].value_counts()
    events = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in kinds.items())
    return (
        f"{world} seed {seed}: {portfolio.metrics['account_id'].nunique()} accounts, {portfolio.n_campaigns} campaigns, "
        f"{portfolio.campaign_days:,} campaign-days evaluated ({portfolio.eval_start.date()} to {portfolio.end.date()}); "
        f"incidents: {classes} ({handoff_spikes} spikes within 14 days of a handoff); benign: {events}"
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


def table(results: list[Result], columns: list[tuple[str, str, str]], label: Callable[[Result], tuple[str, ...]], headers: tuple[str, ...] = ("method", "world")) -> str:
    """One row per label (methods in first-seen order, the worlds of each together), each cell
    summarised over the results with that label."""
    groups: dict[tuple[str, ...], list[Result]] = {}
    for result in sorted(results, key=lambda r: _first_seen(results, r.method)):
        groups.setdefault(label(result), []).append(result)
    rows = [[*name] + [cell([r.row()[key] for r in group], fmt) for _, key, fmt in columns] for name, group in groups.items()]
    return markdown([*headers] + [header for header, _, _ in columns], rows)


def _first_seen(results: list[Result], method: str) -> int:
    return next(i for i, r in enumerate(results) if r.method == method)


def causes_table(causes: dict[str, pd.DataFrame]) -> str:
    """False alerts of the service by cause and rule, summed over seeds, one block of rows per world."""
    rows = []
    rules = sorted({rule for frame in causes.values() for rule in frame["rule"]})
    for world, frame in causes.items():
        counts = frame.groupby(["cause", "rule"]).size().unstack(fill_value=0).reindex(columns=rules, fill_value=0)
        for cause, values in counts.iterrows():
            rows.append([world, cause] + [str(int(v)) for v in values] + [str(int(values.sum()))])
    return markdown(["world", "followed"] + rules + ["all"], rows)


def report(portfolios: dict[tuple[str, int], Portfolio], results: list[Result], *, per_seed: bool, causes: dict[str, pd.DataFrame] | None = None) -> str:
    recall_columns = [(header, key, "{:.2f}") for header, key in RECALL_COLUMNS]
    visible_columns = [(header, key, "{:.2f}") for header, key in VISIBLE_COLUMNS]
    seeds = sorted({seed for _, seed in portfolios})
    by_world = lambda r: (r.method, r.world)  # noqa: E731
    parts = [
        "\n".join(describe(world, seed, p) for (world, seed), p in portfolios.items()),
        f"## Detection quality (mean (min–max) over seeds {', '.join(map(str, seeds))})",
        table(results, MAIN_COLUMNS, by_world),
        "## Recall by class and magnitude",
        table(results, recall_columns, by_world),
        "## Recall of what the oracle can see, by class",
        table([r for r in results if r.method != ORACLE], visible_columns, by_world),
    ]
    if causes:
        parts += ["## What the service's false alerts followed (all seeds)", causes_table(causes)]
    if per_seed:
        parts += ["## Per seed", table(results, MAIN_COLUMNS, lambda r: (r.method, r.world, str(r.seed)), ("method", "world", "seed"))]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", choices=list(WORLDS), default=list(WORLDS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--rules", type=Path, default=PROJECT / "rules", help="rules directory for the service (default: the project's rules/)")
    parser.add_argument("--ablation", action="store_true", help="also run the ablation variants in VARIANTS")
    parser.add_argument("--per-seed", action="store_true", help="also print each seed's numbers")
    parser.add_argument("--no-peers", action="store_true", help="leave the peer methods out (faster, for tuning)")
    parser.add_argument("--causes", action="store_true", help="also print what the service's false alerts followed")
    args = parser.parse_args(argv)
    variants = list(VARIANTS) if args.ablation else [BASE_VARIANT]
    t0 = time.perf_counter()
    portfolios, results, causes = {}, [], {}
    for world in args.worlds:
        for seed in args.seeds:
            portfolio, seed_results = evaluate_seed(world, seed, rules_dir=args.rules.resolve(), variants=variants, with_peers=not args.no_peers)
            portfolios[world, seed] = portfolio
            results += seed_results
            service = next(r for r in seed_results if r.method == BASE_VARIANT)
            causes.setdefault(world, []).append(false_alert_causes(portfolio, service.scores.alerts_scored))
    causes = {world: pd.concat(frames, ignore_index=True) for world, frames in causes.items()} if args.causes else None
    print(report(portfolios, results, per_seed=args.per_seed, causes=causes))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
