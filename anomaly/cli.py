"""The ``anomaly`` command line: demo, check, run, serve, status, backtest, incidents, report, silence."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import getpass
import importlib.metadata
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import pandas as pd

from anomaly.alerts.render import METRIC_LABELS, MONEY_METRICS, metric_value, money, render_text
from anomaly.config import Config, default_config_path, load_config, load_rules, undefined_references
from anomaly.errors import AnomalyError, ConfigError, InputError, Problem
from anomaly.ownership import ownership_periods, with_inferred
from anomaly.redaction import redact, redact_logs, redacted_traceback
from anomaly.silences import MATCHED_FIELDS, Silence, active_silences, describe_matchers, from_config, in_force, parse_until
from anomaly.store import Store, utcnow

# detection (scikit-learn, scipy) is imported by the commands that need it, so that `anomaly check`
# answers at once

def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, got {text!r}")
    return seconds


def _until(text: str) -> dt.datetime:
    try:
        return parse_until(text, utcnow())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config) if args.config else default_config_path()


def _load(args: argparse.Namespace, *, require_sources: bool = False, rules_dir: str | None = None) -> tuple[Config, list, pd.DataFrame, Path]:
    """Config, rules and ownership periods (the ownership file is config too), each read once.

    ``require_sources`` for the commands that validate or pull (check, run, serve, demo): the ones
    that only read the store (ack, backtest, incidents, report, silence, status) also take a config that
    names no source, e.g. one that only points at a store another config's service fills."""
    path = _config_path(args)
    config, rules = load_config(path, require_sources=require_sources, rules_dir=rules_dir)  # rules_dir: a folder under trial
    return config, rules, ownership_periods(config), path


def _store(config: Config) -> Store:
    store = Store(config.store.url.get_secret_value())
    store.migrate()
    return store


# ---------------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config, rules, periods, path = _load(args, require_sources=True, rules_dir=args.rules)
    except InputError as exc:
        print(exc, file=sys.stderr)
        print(f"{len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''} found.", file=sys.stderr)
        return 1
    enabled = sum(1 for r in rules if r.enabled)
    print(
        f"{path}: OK — {len(config.sources)} source(s), {len(config.parties)} part{'ies' if len(config.parties) != 1 else 'y'}, "
        f"{len(periods)} ownership period(s), {enabled} enabled rule(s) of {len(rules)} in {config.rules_dir}"
    )
    _say_unknown_ids(config, rules, path.resolve())
    return 0


def _say_unknown_ids(config: Config, rules: list, path: Path) -> None:
    """The ids of rule scopes and silences that the store's data has never held, a typo maybe: said,
    never a failure; nothing when the store is absent, empty or out of reach."""
    from anomaly.id_check import unknown_id_problems
    from anomaly.store import describe_url, peek_known_ids

    url = config.store.url.get_secret_value()
    problems = unknown_id_problems(config, rules, peek_known_ids(url), path)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        n = len(problems)
        print(f"The configuration is valid; {n} id{'s' if n != 1 else ''} in it {'are' if n != 1 else 'is'} not in the data of the store at {describe_url(url)}.", file=sys.stderr)


#: ``anomaly run`` exits with this when it did nothing because another run, or the service, was at
#: work on the store (EX_TEMPFAIL of sysexits.h: try again later)
EXIT_BUSY = 75
#: How long ``anomaly run`` waits for another run on the same store to finish, by default.
RUN_WAIT_SECONDS = 300.0


def cmd_run(args: argparse.Namespace) -> int:
    from anomaly.alerts import make_sinks
    from anomaly.pipeline import pull_lines, run_cycle
    from anomaly.service import HEARTBEAT_SECONDS, STALE_HEARTBEATS, new_holder
    from anomaly.store.lock import RunLockHeldError, ServiceRunningError, describe_run

    config, rules, periods, _ = _load(args, require_sources=True)
    if args.store_changes and args.as_of is None:
        raise InputError([_usage_problem("--store-changes goes with --as-of: a run without --as-of stores its changes anyway")])
    store = _store(config)
    if args.as_of is not None and not args.store_changes:
        return _evaluate_past(config, rules, periods, store, args.as_of)

    def waiting(run) -> None:  # noqa: ANN001 - RunHolder | None
        who = f" ({describe_run(run)})" if run is not None else ""
        print(f"anomaly run: another run is working on {store.describe()}{who}; waiting up to {args.wait:g} s for it to finish", file=sys.stderr, flush=True)

    service_stale_after = dt.timedelta(seconds=STALE_HEARTBEATS * HEARTBEAT_SECONDS)
    try:
        with store.run_lock(new_holder(), wait=args.wait, service_stale_after=service_stale_after, on_wait=waiting if args.wait > 0 else None):
            report = run_cycle(config, rules, periods, store, make_sinks(config), today=args.today, as_of=args.as_of)
    except RunLockHeldError as exc:
        print(f"anomaly run: {exc}; this run did nothing, the next one catches up", file=sys.stderr)
        return EXIT_BUSY
    except ServiceRunningError as exc:
        print(f"anomaly run: {exc}; this run did nothing: stop the service to run a cycle by hand", file=sys.stderr)
        return EXIT_BUSY
    for p in report.pulls:
        print("\n".join(pull_lines(p)), file=sys.stderr)
    d = report.delivery
    print(
        f"as of {report.as_of or 'no data'}: {report.incidents} incident(s), {report.open_incidents} open; "
        f"{report.enqueued} new notification(s), {d.sent} sent, {d.failed} failed, {d.pending} pending, {d.silenced} silenced",
        file=sys.stderr,
    )
    if d.failed or d.pending:
        from anomaly.alerts import waiting_lines

        print("\n".join(f"  {line}" for line in waiting_lines(store, utcnow())), file=sys.stderr)
    return 0 if d.failed == 0 else 1


def _evaluate_past(config: Config, rules: list, periods: pd.DataFrame, store: Store, as_of: dt.date) -> int:
    """``anomaly run --as-of D``: what detection finds on the stored data up to D, printed; the
    store (incidents, outbox) stays as it is, and nothing is pulled or sent."""
    from anomaly.pipeline import evaluate

    evaluated_on, incidents = evaluate(config, rules, periods, store, as_of)
    if evaluated_on is None:
        first, last = store.first_metric_day(), store.last_metric_day()
        held = f"holds metrics from {first} to {last}" if first is not None else "holds no metrics; run `anomaly run` first"
        print(f"No metrics up to {as_of}: the store at {store.describe()} {held}.", file=sys.stderr)
        return 1
    open_ones = sum(1 for i in incidents if i.status == "open")
    print(f"As of {as_of}, detection finds {len(incidents)} incident(s), {open_ones} open on that day:")
    _print_table(
        ["status", "detected", "onset", "account", "campaign", "rule", "severity", "managed by", "excess"],
        [
            [
                i.status if i.resolved_on is None else f"resolved {i.resolved_on}",
                i.detected_on.isoformat(),
                i.onset.isoformat(),
                _clip(i.account_name, 24),
                _clip(i.campaign_name or "all campaigns", 24),
                i.rule,
                i.severity,
                config.party_name(i.managing_party),
                money(i.excess_cost, i.currency),
            ]
            for i in incidents
        ],
    )
    print(
        f"Nothing was pulled, stored or sent: this looked at the past. `anomaly run --as-of {as_of} --store-changes` "
        f"writes these incidents to the store as they stood on {as_of} (an incident open today may be resolved or changed back) and sends their notifications.",
        file=sys.stderr,
    )
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    config, _, _, _ = _load(args)
    store = _store(config)
    now = utcnow().replace(microsecond=0)
    by = args.by or _user()
    row = store.acknowledge(args.incident_id, by, now=now)
    if row is None:
        print(f"no incident {args.incident_id}; `anomaly incidents` lists them", file=sys.stderr)
        return 1
    payload = row["details"]["payload"]
    what = f"incident {row['id']} ({payload['account_name']} / {payload['campaign_name'] or 'all campaigns'}, {row['status']})"
    if row["acknowledged_at"] == now and row["acknowledged_by"] == by:
        print(f"{what} acknowledged by {by} at {_utc(now)}: no more reminders")
    else:
        print(f"{what} was already acknowledged by {row['acknowledged_by']} at {_utc(row['acknowledged_at'])}; that stands")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from anomaly.service import serve

    path = _config_path(args)
    load_config(path, require_sources=True)  # the service loads it again for each job; without a source it does not start
    return serve(path)


def cmd_status(args: argparse.Namespace) -> int:
    from anomaly.service import status_text

    config, _, _, path = _load(args)
    print(status_text(config, _store(config), str(path.resolve())))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from anomaly import sample
    from anomaly.alerts import make_sinks
    from anomaly.pipeline import run_cycle

    config, rules, periods, path = _load(args, require_sources=True)
    folder = path.resolve().parent / "sample"
    _reset_demo_outputs(config, folder)
    sample.write_sample(folder)
    print(f"Sample portfolio written to {folder}: {len(sample.CAMPAIGNS)} campaigns, {sample.START} to {sample.END}.")
    print(
        f"The service runs once a day. Replaying its daily cycles from {sample.END - dt.timedelta(days=6)} to {sample.END};"
        " earlier history only builds baselines.\n"
    )
    store = _store(config)
    sinks = make_sinks(config)
    first = True
    for offset in range(6, -1, -1):
        day = sample.END - dt.timedelta(days=offset)
        print(f"── cycle for {day:%a %Y-%m-%d} " + "─" * 60)
        report = run_cycle(config, rules, periods, store, sinks, today=sample.END + dt.timedelta(days=1), as_of=day, pull_sources=first)
        first = False
        if report.delivery.sent == 0:
            print("no new alerts\n")
    open_incidents = store.load_incidents(status="open")
    print(f"── open incidents as of {sample.END} " + "─" * 52)
    for row in open_incidents:
        p = row["details"]["payload"]
        print(
            f"  #{row['id']} {p['account_name']} / {p['campaign_name']}: excess ~{money(row['excess_cost'], p['currency'])} since {p['onset']}, "
            f"managed by {config.party_name(row['managing_party'])}"
        )
    story = next((row["id"] for row in open_incidents if row["campaign_id"] == sample.STORY_CAMPAIGN.campaign_id), None)
    print(
        "\nNext: "
        + (f"`anomaly report {story}` (the handoff incident's evidence pack: who pays what), " if story is not None else "")
        + f"`anomaly report --party beacon`, `anomaly incidents`, `anomaly backtest --from {sample.START} --to {sample.END}`, "
        "`anomaly check`; notebooks/ for analysts."
    )
    return 0


def _reset_demo_outputs(config: Config, folder: Path) -> None:
    """The demo starts from scratch each time: its sample, its SQLite store and its alert log."""
    url = config.store.url.get_secret_value()
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        if folder in db.parents:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
    for sink in config.alerts.sinks:
        target = Path(getattr(sink, "path", "") or "")
        if getattr(sink, "path", None) and folder in target.parents:
            target.unlink(missing_ok=True)


def cmd_backtest(args: argparse.Namespace) -> int:
    from anomaly.pipeline import backtest, platforms_of

    if args.compare:
        return cmd_backtest_compare(args)
    config, rules, periods, _ = _load(args)
    if args.rules:
        rules = load_rules(Path(args.rules), config.parties)
    if args.date_from and args.date_to and args.date_to < args.date_from:
        raise InputError([_usage_problem(f"--to {args.date_to} is before --from {args.date_from}")])
    store = _store(config)
    started = time.perf_counter()
    metrics = store.load_metrics(end=args.date_to)
    last = store.last_metric_day()
    if last is None:
        print(f"The store at {store.describe()} holds no metrics; run `anomaly run` (or `anomaly demo`) first.", file=sys.stderr)
        return 1
    first = store.first_metric_day()
    start, end = args.date_from or first, args.date_to or last
    if end < first or start > last:
        asked = f"from {start} to {end}" if args.date_from and args.date_to else f"from {start} on" if args.date_from else f"up to {end}"
        print(
            f"No metrics {asked}: the store at {store.describe()} holds metrics from {first} to {last}; "
            "replay within that span, or leave out --from and --to to replay all of it.",
            file=sys.stderr,
        )
        return 1
    changes = store.load_changes()
    periods = with_inferred(periods, store.load_inferred_ownership())
    incidents = backtest(config, rules, periods, metrics, changes, start, end, platforms=platforms_of(config, store))
    elapsed = time.perf_counter() - started
    records = [i.backtest_record() for i in incidents]
    if args.format == "json":
        print(json.dumps(records, indent=2))
    else:
        _print_table(
            ["detected", "onset", "account", "campaign", "rule", "severity", "metric", "observed", "baseline", "managed by", "excess"],
            [
                [
                    r["detected_on"],
                    r["onset"],
                    _clip(r["account_name"], 24),
                    _clip(r["campaign_name"], 24),
                    r["rule"],
                    r["severity"],
                    METRIC_LABELS.get(r["metric"], r["metric"]),
                    metric_value(r["metric"], r["observed"], r["currency"]),
                    metric_value(r["metric"], r["baseline"], r["currency"]),
                    config.party_name(r["managing_party"]),
                    money(r["excess_cost"], r["currency"]),
                ]
                for r in records
            ],
        )
    days = (end - start).days + 1
    campaigns = metrics.groupby(["account_id", "campaign_id"]).ngroups
    print(
        f"{len(records)} alert(s) in {days} day(s) over {campaigns} campaign(s), "
        f"{len(records) / days * 7:.2f} per week; replayed in {elapsed:.2f} s",
        file=sys.stderr,
    )
    return 0


def cmd_backtest_compare(args: argparse.Namespace) -> int:
    """``anomaly backtest --rules DIR --compare``: the same history replayed with the project's
    rules (before) and with DIR's (after): alerts per week by rule and in total, the incidents
    gained and lost, and the change in excess cost caught."""
    from anomaly.analysis import NoData, Project, compare_backtests

    if not args.rules:
        raise InputError([_usage_problem("--compare compares the rules of --rules DIR with the project's: give --rules DIR")])
    if args.date_from and args.date_to and args.date_to < args.date_from:
        raise InputError([_usage_problem(f"--to {args.date_to} is before --from {args.date_from}")])
    path = _config_path(args)
    config, rules = load_config(path)
    _, trial = load_config(path, rules_dir=args.rules)  # checked against config.yaml as `anomaly check --rules DIR` does
    project = Project(config, rules, _store(config), config_path=path.resolve())
    try:
        before = project.backtest(args.date_from, args.date_to)
        after = project.backtest(args.date_from, args.date_to, rules=trial)
    except NoData:
        print(f"The store at {project.store.describe()} holds no metrics; run `anomaly run` (or `anomaly demo`) first.", file=sys.stderr)
        return 1
    comparison = compare_backtests(before, after, rules_before=rules, rules_after=trial)
    start, end = before.attrs["start"].date(), before.attrs["end"].date()
    if args.format == "json":
        print(json.dumps(_comparison_record(comparison, start, end, config.rules_dir, str(Path(args.rules).resolve())), indent=2))
        return 0
    _print_comparison(comparison, config, start, end, config.rules_dir, str(Path(args.rules).resolve()))
    return 0


def _print_comparison(comparison, config: Config, start: dt.date, end: dt.date, before_dir: str, after_dir: str) -> None:  # noqa: ANN001 - BacktestComparison
    by_rule, weeks = comparison.by_rule, comparison.weeks
    print(f"Before: the project's rules ({before_dir}). After: the rules in {after_dir}.")
    print(f"Replayed {start} to {end} ({weeks:.1f} weeks).\n")
    shown = by_rule[(by_rule["before"] > 0) | (by_rule["after"] > 0) | (by_rule["status"] != "same")]
    rows = [
        [name, r.status, r.before, r.after, f"{r.before_per_week:.2f}", f"{r.after_per_week:.2f}", _signed(r.after_per_week - r.before_per_week)]
        for name, r in shown.iterrows()
    ]
    before_total, after_total = int(by_rule["before"].sum()), int(by_rule["after"].sum())
    rows.append(["total", "", before_total, after_total, f"{before_total / weeks:.2f}", f"{after_total / weeks:.2f}", _signed((after_total - before_total) / weeks)])
    _print_table(["rule", "in trial", "alerts before", "alerts after", "per week before", "per week after", "change"], rows)
    if len(shown) < len(by_rule):
        quiet = len(by_rule) - len(shown)
        print(f"({quiet} more rule{'s' if quiet != 1 else ''}, the same in both, alerted on nothing either way.)")

    incidents = comparison.incidents
    for title, frame, side in (
        ("Gained", comparison.gained, "after"),
        ("Lost", comparison.lost, "before"),
    ):
        n = len(frame)
        whose = "only the rules under trial alert on" if side == "after" else "the project's rules alert on and the rules under trial do not"
        print(f"\n{title}: {n} incident{'s' if n != 1 else ''} {whose}" + (":" if n else "."))
        if n:
            _print_table(
                ["detected", "onset", "account", "campaign", "rule", "severity", "managed by", "excess"],
                [
                    [
                        f"{r[f'detected_{side}']:%Y-%m-%d}", f"{r['onset']:%Y-%m-%d}", _clip(r["account_name"], 24),
                        _clip(r["campaign_name"] or "all campaigns", 24), r[f"rule_{side}"], r[f"severity_{side}"],
                        config.party_name(r["managing_party"]), money(r[f"excess_{side}"], r["currency"]),
                    ]
                    for _, r in frame.iterrows()
                ],
            )
    both = incidents[incidents["caught_before"] & incidents["caught_after"]]
    moved = [(after - before).days for before, after in zip(both["detected_before"], both["detected_after"])]
    print(
        f"\nCaught by both: {len(both)}; the rules under trial detect {sum(d < 0 for d in moved)} earlier, "
        f"{sum(d > 0 for d in moved)} later, {sum(d == 0 for d in moved)} on the same day."
    )
    if incidents.empty:
        print("Excess cost caught: none, before or after.")
    for currency, before, after in _excess_caught(incidents):
        print(f"Excess cost caught: {money(before, currency)} before, {money(after, currency)} after ({_signed_money(after - before, currency)}).")


def _excess_caught(incidents: pd.DataFrame) -> list[tuple[str, float, float]]:
    """(currency, excess caught before, after), one per currency of the incidents (the account's)."""
    return [
        (currency, float(group["excess_before"].fillna(0).sum()), float(group["excess_after"].fillna(0).sum()))
        for currency, group in incidents.groupby("currency", sort=True)
    ]


def _signed(value: float) -> str:
    return f"{'+' if value >= 0 else '−'}{abs(value):.2f}"


def _signed_money(value: float, currency: str) -> str:
    if round(value, 2) == 0:
        return "no change"
    return f"{'+' if value > 0 else '−'}{money(abs(value), currency)}"


def _comparison_record(comparison, start: dt.date, end: dt.date, before_dir: str, after_dir: str) -> dict:  # noqa: ANN001 - BacktestComparison
    """``anomaly backtest --compare --format json``: one object."""

    def incident(r: pd.Series, side: str) -> dict:
        return {
            "account_id": r["account_id"], "account_name": r["account_name"], "campaign_id": r["campaign_id"] or None,
            "campaign_name": r["campaign_name"], "family": r["family"], "rule": r[f"rule_{side}"], "severity": r[f"severity_{side}"],
            "onset": f"{r['onset']:%Y-%m-%d}", "detected_on": f"{r[f'detected_{side}']:%Y-%m-%d}", "managing_party": r["managing_party"],
            "excess_cost": float(r[f"excess_{side}"]), "currency": r["currency"],
        }

    rules = [
        {"rule": name, "status": r.get("status"), "before": int(r["before"]), "after": int(r["after"]),
         "before_per_week": float(r["before_per_week"]), "after_per_week": float(r["after_per_week"])}
        for name, r in comparison.by_rule.iterrows()
    ]
    excess = _excess_caught(comparison.incidents)
    return {
        "from": start.isoformat(), "to": end.isoformat(), "weeks": round(comparison.weeks, 2),
        "before": {"rules_dir": before_dir, "alerts": int(comparison.summary.loc["before", "alerts"]),
                   "alerts_per_week": float(comparison.summary.loc["before", "alerts_per_week"]),
                   "excess_caught": {currency: round(b, 2) for currency, b, _ in excess}},
        "after": {"rules_dir": after_dir, "alerts": int(comparison.summary.loc["after", "alerts"]),
                  "alerts_per_week": float(comparison.summary.loc["after", "alerts_per_week"]),
                  "excess_caught": {currency: round(a, 2) for currency, _, a in excess}},
        "rules": rules,
        "gained": [incident(r, "after") for _, r in comparison.gained.iterrows()],
        "lost": [incident(r, "before") for _, r in comparison.lost.iterrows()],
    }


def _project(args: argparse.Namespace):
    from anomaly.analysis import Project

    config, rules, _, path = _load(args)
    return Project(config, rules, _store(config), config_path=path.resolve())


def _party_keys(config: Config, names: list[str] | None) -> list[str] | None:
    """Party keys from what the command line names: a key or a display name, any case."""
    if not names:
        return None
    by_name = {key: key for key in config.parties} | {p.name.casefold(): key for key, p in config.parties.items()}
    by_name |= {key.casefold(): key for key in config.parties}
    keys, problems = [], []
    for name in names:
        key = by_name.get(name.casefold())
        if key is None:
            known = ", ".join(f"{k} ({p.name})" for k, p in config.parties.items()) or "none are configured"
            problems.append(Problem("command line", "--party", f"no party is called {name!r} (defined: {known})"))
        else:
            keys.append(key)
    if problems:
        raise InputError(problems)
    return keys


INCIDENT_FIELDS = [
    "id", "status", "severity", "family", "rule", "platform", "account_id", "account_name", "campaign_id", "campaign_name", "currency",
    "onset", "detected_on", "critical_on", "last_active", "resolved_on", "managing_party", "party_name", "party_since",
    "metric", "observed", "baseline", "spend", "leads", "cpl", "baseline_cpl", "excess_cost", "excess_by_party",
    "changes", "announced", "acknowledged_at", "acknowledged_by",
]


def cmd_incidents(args: argparse.Namespace) -> int:
    project = _project(args)
    if args.date_from and args.date_to and args.date_to < args.date_from:
        raise InputError([_usage_problem(f"--to {args.date_to} is before --from {args.date_from}")])
    frame = project.incidents(
        status=args.status, party=_party_keys(project.config, args.party), account=args.account, start=args.date_from, end=args.date_to
    )
    records = [_plain(r) for r in frame[INCIDENT_FIELDS].to_dict("records")]
    if args.format == "json":
        print(json.dumps(records, indent=2))
        return 0
    if args.format == "csv":
        write_csv(sys.stdout, INCIDENT_FIELDS, (_csv_record(r, project.config) for r in records))
        return 0
    _print_table(
        ["id", "status", "severity", "detected", "onset", "account", "campaign", "rule", "managed by", "excess"],
        [
            [
                r["id"],
                r["status"] + ("" if r["announced"] else " (history)") + (" (acknowledged)" if r["acknowledged_at"] else ""),
                r["severity"],
                r["detected_on"],
                r["onset"],
                _clip(r["account_name"], 24),
                _clip(r["campaign_name"] or "all campaigns", 24),
                r["rule"],
                r["party_name"],
                money(r["excess_cost"], r["currency"]),
            ]
            for r in records
        ],
    )
    return 0


def cmd_handovers(args: argparse.Namespace) -> int:
    project = _project(args)
    frame = project.handovers()
    if args.format == "json":
        records = [
            {**r, "start": r["start"].date().isoformat(), "detected_on": r["detected_on"].date().isoformat()}
            for r in frame.to_dict("records")
        ]
        print(json.dumps(records, indent=2))
        return 0
    if frame.empty:
        print("No handovers recorded: the managing party of no account or campaign has changed in the stored data.")
        return 0
    rows = []
    for r in frame.to_dict("records"):
        total = (r["reference"] or {}).get("total") or {}
        currency = r["currency"]
        rows.append(
            [
                r["id"],
                f"{r['start']:%Y-%m-%d}",
                _clip(r["account_name"], 24),
                _clip(r["campaign_name"] or "whole account", 24),
                f"{r['from_name']} → {r['to_name']}",
                "announced" if r["announced"] else "history",
                money(total["cpl"], currency) if total.get("cpl") else "–",
                money(total["daily_spend"], currency) if total.get("daily_spend") is not None else "–",
            ]
        )
    _print_table(["id", "since", "account", "campaign", "handed over", "message", "cost/lead before", "spend/day before"], rows)
    return 0


#: the columns of an incident that are amounts of money (``observed`` and ``baseline`` too, when the metric is)
MONEY_FIELDS = ("spend", "cpl", "baseline_cpl", "excess_cost")


def _csv_record(record: dict, config: Config) -> dict:
    """One incident as a CSV row: money to the cent, leads to two decimals (platforms report
    fractions), and the excess by party as one text cell, ``Beacon Reach: 4733.10; Northwind
    Digital: 812.30`` (largest first), in the incident's currency like every money cell."""
    row = dict(record)
    money_fields = MONEY_FIELDS + (("observed", "baseline") if record["metric"] in MONEY_METRICS else ())
    for key in money_fields:
        row[key] = _rounded(record[key], 2)
    for key in {"observed", "baseline"} - set(money_fields):
        row[key] = _rounded(record[key], 4)
    row["leads"] = _rounded(record["leads"], 2)
    shares = sorted((record["excess_by_party"] or {}).items(), key=lambda item: (-item[1], item[0]))
    row["excess_by_party"] = "; ".join(f"{config.party_name(party)}: {amount:.2f}" for party, amount in shares)
    return row


def _rounded(value: float | None, places: int) -> float | None:
    return None if value is None else round(float(value), places)


#: what a spreadsheet reads as the start of a formula at the beginning of a cell (OWASP, CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell that a spreadsheet shows as written and never runs: text that begins like a
    formula gets a single quote in front (``'=HYPERLINK(…)``). Numbers stay numbers (-12.5)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(stream: TextIO, fields: list[str], records: Iterable[dict]) -> None:
    """``records`` as CSV with a header, safe to open in a spreadsheet: every text cell quoted (a
    separator in a name cannot start a new cell, whichever separator the spreadsheet expects)
    and neutralised by ``spreadsheet_safe``; numbers unquoted."""
    writer = csv.DictWriter(stream, fieldnames=fields, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writeheader()
    writer.writerows({key: spreadsheet_safe(value) for key, value in record.items()} for record in records)


def _plain(record: dict) -> dict:
    """One incident for JSON or CSV: dates as YYYY-MM-DD (times as ISO UTC), no NaN."""
    out = {}
    for key, value in record.items():
        if isinstance(value, pd.Timestamp):
            value = value.isoformat(timespec="seconds") if key == "acknowledged_at" else value.date().isoformat()
        elif value is pd.NaT or (isinstance(value, float) and value != value):
            value = None
        elif hasattr(value, "item"):  # numpy scalar
            value = value.item()
        out[key] = value
    return out


def cmd_report(args: argparse.Namespace) -> int:
    from anomaly.reports.evidence import incident_evidence
    from anomaly.reports.render import render_incident, render_scorecard, write_report
    from anomaly.reports.scorecard import party_scorecard

    project = _project(args)
    config = project.config
    out = Path(args.out)
    if args.incident_id is not None:
        if args.party or args.date_from or args.date_to:
            raise InputError([_usage_problem("--party, --from and --to make a party scorecard: give them without an incident id")])
        row = project.store.load_incident(args.incident_id)
        if row is None:
            print(f"no incident {args.incident_id}; `anomaly incidents` lists them", file=sys.stderr)
            return 1
        # the files first: a reader that stops reading the printout (`| head -2`) must not stop them
        evidence = incident_evidence(project, row["id"])
        html, markdown = render_incident(evidence, project)
        paths = write_report(out, f"incident-{row['id']}", html, markdown)
        payload = row["details"]["payload"]
        print(render_text("resolved" if row["status"] == "resolved" else "opened", {**payload, "incident_id": row["id"]}, config))
        if row["acknowledged_at"] is not None:
            print(f"  {'Acknowledged':<12} by {row['acknowledged_by']} at {_utc(row['acknowledged_at'])}")
        print("\n  Excess cost by managing party:")
        for party in evidence.by_party.itertuples():
            print(f"    {party.name:<24} {money(party.excess, evidence.currency)}")
        if evidence.split:
            print("\n  Proposed split (settlement in config.yaml):")
            for line in evidence.split:
                print(f"    {line.name:<24} {money(line.amount, evidence.currency):>10}  {line.percent:5.1f}%")
    else:
        keys = _party_keys(config, args.party)
        last = project.store.last_metric_day()
        if last is None:
            print(f"The store at {project.store.describe()} holds no metrics; run `anomaly run` (or `anomaly demo`) first.", file=sys.stderr)
            return 1
        end = args.date_to or last
        start = args.date_from or end - dt.timedelta(days=29)
        if end < start:
            raise InputError([_usage_problem(f"--to {end} is before --from {start}")])
        card = party_scorecard(project, start, end, keys)
        html, markdown = render_scorecard(card, project)
        named = "-".join(keys) if keys else "all"
        if len(named) > 64:  # several long party keys: the file name says how many instead
            named = f"{len(keys)}-parties"
        paths = write_report(out, f"scorecard-{named}-{start}-{end}", html, markdown)
        _print_scorecard(card)
    print(f"\nWritten: {paths[0]}\n         {paths[1]}")
    return 0


def _print_scorecard(card) -> None:
    currency = card.portfolio["currency"]
    print(f"Party scorecard {card.start} to {card.end}; portfolio cost per lead {money(card.portfolio['cpl'], currency)}")
    _print_table(
        ["party", "accounts", "campaigns", "spend", "cost/lead", "vs portfolio", "incidents", "days to detect", "days to resolve", "excess"],
        [
            [
                r["name"],
                r["accounts"],
                r["campaigns"],
                money(r["spend"], currency),
                money(r["cpl"], currency) if r["cpl"] == r["cpl"] else "n/a",
                f"{r['cpl_vs_portfolio']:.2f}×" if r["cpl_vs_portfolio"] == r["cpl_vs_portfolio"] else "n/a",
                f"{r['incidents']} ({r['still_open']} open)" if r["incidents"] else "0",
                _median(r["median_days_to_detect"]),
                _median(r["median_days_to_resolve"]),
                money(r["excess_cost"], currency),
            ]
            for r in card.parties.to_dict("records")
        ],
    )


def _median(value: float) -> str:
    return "–" if value != value else f"{value:g}"


def cmd_silence_add(args: argparse.Namespace) -> int:
    config, rules, _, _ = _load(args)
    now = utcnow()
    silence = Silence(
        until=args.until,
        **{name: getattr(args, name) for name in MATCHED_FIELDS},
        reason=args.reason,
        created_by=args.by or _user(),
    )
    problems = [
        Problem("command line", f"--{name}", message)
        for name, message in undefined_references(config, rules, party=silence.party, rule=silence.rule).items()
    ]
    if all(getattr(silence, name) is None for name in MATCHED_FIELDS):
        problems.append(_usage_problem(f"give at least one of {', '.join(f'--{name}' for name in MATCHED_FIELDS)}"))
    if silence.until <= now:
        problems.append(Problem("command line", "--until", f"{_utc(silence.until)} is in the past"))
    if problems:
        raise InputError(problems)
    store = _store(config)
    silence_id = store.add_silence(silence, now=now)
    print(silence_id)
    print(f"silence {silence_id}: {describe_matchers(silence)} until {_utc(silence.until)}", file=sys.stderr)
    _say_unknown_silence_ids(store, silence)
    return 0


def _say_unknown_silence_ids(store: Store, silence: Silence) -> None:
    """An account or campaign the store's data has never held (a typo?): said; the silence stands."""
    from anomaly.id_check import silence_problems

    for name, message in silence_problems(silence.account, silence.campaign, store.known_ids()).items():
        print(Problem("command line", f"--{name}", message), file=sys.stderr)


def cmd_silence_list(args: argparse.Namespace) -> int:
    config, _, _, _ = _load(args)
    store = _store(config)
    now = utcnow()
    if args.all:
        silences = [from_config(s) for s in config.alerts.silences] + store.silences()
    else:
        silences = active_silences(config, store, now)
    _print_table(
        ["id", "matchers", "until", "reason", "by", "source"],
        [
            [
                "-" if s.id is None else s.id,
                describe_matchers(s),
                _utc(s.until) + ("" if in_force(s, now) else " (expired)"),
                _clip(s.reason, 40),
                s.created_by,
                s.source,
            ]
            for s in silences
        ],
    )
    return 0


def cmd_silence_expire(args: argparse.Namespace) -> int:
    config, _, _, _ = _load(args)
    if not _store(config).expire_silence(args.silence_id):
        print(f"no silence {args.silence_id} in the store; `anomaly silence list --all` lists them", file=sys.stderr)
        return 1
    print(f"silence {args.silence_id} expired")
    return 0


def _user() -> str:
    """Who runs the command, for a silence's ``created_by``."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment and no passwd entry
        return "unknown"


# ---------------------------------------------------------------------------------------------


def _utc(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _usage_problem(message: str) -> Problem:
    return Problem("command line", "", message)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_table(headers: list[str], rows: list[list]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _common_options(*, suppress: bool) -> argparse.ArgumentParser:
    """``--config`` and ``-v``: taken before the command and after it (``anomaly status -v``).
    After it, they default to SUPPRESS: a sub-command's parser sets them only when given, so it
    never overwrites what was given before the command."""
    common = argparse.ArgumentParser(add_help=False)
    default = {"default": argparse.SUPPRESS} if suppress else {}
    common.add_argument(
        "--config", metavar="PATH", **default,
        help="config file (default: $ANOMALY_CONFIG, else ./config.yaml, else the project's embedded default)",
    )
    common.add_argument("-v", "--verbose", action="store_true", **default, help="log progress to stderr")
    return common


def _version() -> str:
    try:
        return importlib.metadata.version("paid-media-anomaly")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _trial_options(commands: argparse._SubParsersAction) -> None:
    """Trying a rule change: ``check --rules DIR`` validates the folder under trial, ``backtest
    --rules DIR --compare`` sets it against the project's rules."""
    commands.choices["check"].add_argument(
        "--rules", metavar="DIR", help="validate this rules folder (one under trial) against config.yaml instead of the configured one"
    )
    commands.choices["backtest"].add_argument(
        "--compare", action="store_true",
        help="with --rules DIR: replay with the project's rules and with DIR's; print alerts per week by rule and in total, "
        "the incidents gained and lost, and the change in excess cost caught",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomaly", description="Cost-per-lead anomaly detection and alerting for paid media.", parents=[_common_options(suppress=False)]
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common_options(suppress=True)]

    def command(name: str, help: str, description: str | None = None, **kwargs) -> argparse.ArgumentParser:  # noqa: A002 - argparse's name
        return sub.add_parser(name, help=help, description=description or help[:1].upper() + help[1:] + ".", parents=common, **kwargs)

    command(
        "demo", "generate the sample portfolio, run the pipeline on it, print the alerts",
        "Write the sample portfolio to sample/ beside the config file, replay a week of the service's daily cycles "
        "on it with a fresh store and alert log, and print the alerts.",
    ).set_defaults(func=cmd_demo)
    command(
        "check", "validate config.yaml and the rules; every problem as file: path: message",
        "Validate the config file, the rules folder and the ownership file: every problem as `file: path: message`, "
        "one a line. Exits 0 only when everything is valid. Names the account and campaign ids of rule scopes and silences "
        "that the store's data has never held (without failing); sends nothing.",
    ).set_defaults(func=cmd_check)

    run = command(
        "run", "one cycle: pull, detect, open/update/resolve incidents, notify",
        "One cycle: pull every source, detect on the stored data, open, update and resolve incidents, deliver "
        "the pending notifications. With --as-of, evaluate a past day without changing anything (add --store-changes "
        "to write its outcome to the store and send it).",
    )
    run.add_argument(
        "--as-of", type=_date, metavar="YYYY-MM-DD",
        help="evaluate the stored data as of this day and print what detection finds; pulls, writes and sends nothing unless --store-changes",
    )
    run.add_argument(
        "--store-changes", action="store_true",
        help="with --as-of: pull, and write the incidents as of that day to the store (resolving or reopening today's) and send their notifications",
    )
    run.add_argument("--today", type=_date, help="the day the pull runs up to (default: today)")
    run.add_argument(
        "--wait", type=_seconds, default=RUN_WAIT_SECONDS, metavar="SECONDS",
        help=f"how long to wait for another run on the same store to finish, then exit {EXIT_BUSY} having done nothing (default: {RUN_WAIT_SECONDS:g})",
    )
    run.set_defaults(func=cmd_run)

    command(
        "serve", "the scheduled service: pull, detect and notify on each source's schedule, until stopped",
        "The scheduled service in the foreground: pull each source on its schedule, detect, deliver every few minutes, "
        "refit daily, until SIGTERM or Ctrl-C. One instance per store: a second one is refused. See docs/operations.md.",
    ).set_defaults(func=cmd_serve)
    command(
        "status", "last pulls, next runs, the service lock, notifications waiting, open incidents",
        "What the service did last and will do next, whether or not it runs: each source's last pull and next run, "
        "the service lock, the notifications still waiting (with their sink, age and last error) and the open incidents "
        "(acknowledged, silenced). Reads the store, changes nothing.",
    ).set_defaults(func=cmd_status)

    ack = command(
        "ack", "acknowledge an incident: someone is on it (no more reminders)",
        "Record that someone took incident ID on, as the Slack button does: its reminders stop and `anomaly incidents`, "
        "`anomaly status` and its evidence pack say who. The first acknowledgement stands.",
    )
    ack.add_argument("incident_id", type=int, metavar="ID")
    ack.add_argument("--by", metavar="NAME", help="who takes it on (default: the login name)")
    ack.set_defaults(func=cmd_ack)

    bt = command(
        "backtest", "replay history causally; print the alerts that would have been sent",
        "Replay the stored history causally, day by day, and print exactly the alerts that would have been sent "
        "from --from to --to (default: the whole stored span). Changes nothing in the store.",
    )
    bt.add_argument("--from", dest="date_from", type=_date, metavar="YYYY-MM-DD", help="first day of alerts (default: the first day with data)")
    bt.add_argument("--to", dest="date_to", type=_date, metavar="YYYY-MM-DD", help="last day of alerts (default: the last day with data)")
    bt.add_argument("--rules", help="a rules folder to try instead of the configured one")
    bt.add_argument("--format", choices=("table", "json"), default="table")
    bt.set_defaults(func=cmd_backtest)

    inc = command("incidents", "list incidents, filtered; as a table, JSON or CSV")
    inc.add_argument("--status", choices=("open", "resolved"))
    inc.add_argument("--party", action="append", metavar="KEY|NAME", help="managed at onset by this party (repeatable)")
    inc.add_argument("--account", action="append", metavar="ID", help="on this account (repeatable)")
    inc.add_argument("--from", dest="date_from", type=_date, metavar="YYYY-MM-DD", help="still open or resolved on or after this day")
    inc.add_argument("--to", dest="date_to", type=_date, metavar="YYYY-MM-DD", help="begun on or before this day")
    inc.add_argument("--format", choices=("table", "json", "csv"), default="table")
    inc.set_defaults(func=cmd_incidents)

    hand = command(
        "handovers",
        "list the recorded changes of managing party, with the reference figures of the weeks before each",
        "`anomaly handovers`: every handover the service has recorded (declared in config.yaml or the ownership file, "
        "or inferred from change history), oldest first: what was handed over, from whom to whom, since when, whether it "
        "was announced, and the cost per lead and spend a day of the weeks before it (all the reference figures with --format json).",
    )
    hand.add_argument("--format", choices=("table", "json"), default="table")
    hand.set_defaults(func=cmd_handovers)

    rep = command(
        "report",
        "the evidence pack of one incident (HTML and Markdown), or with --party/--from/--to the party scorecard",
        "`anomaly report ID`: the evidence pack of incident ID. `anomaly report [--party KEY] [--from D] [--to D]`: "
        "the party scorecard (default: every party, the 30 days up to the last day with data).",
    )
    rep.add_argument("incident_id", type=int, nargs="?", metavar="ID")
    rep.add_argument("--party", action="append", metavar="KEY|NAME", help="scorecard of this party (repeatable; default: all)")
    rep.add_argument("--from", dest="date_from", type=_date, metavar="YYYY-MM-DD", help="scorecard period start (default: 29 days before --to)")
    rep.add_argument("--to", dest="date_to", type=_date, metavar="YYYY-MM-DD", help="scorecard period end (default: the last day with data)")
    rep.add_argument("--out", default="reports", metavar="DIR", help="where the HTML and Markdown files go (default: ./reports)")
    rep.set_defaults(func=cmd_report)

    silence = command("silence", "hold back the notifications of matching incidents for a while: add, list, expire")
    actions = silence.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="a new silence; at least one matcher; prints its id", description="A new silence; at least one matcher; prints its id.", parents=common)
    add.add_argument("--account", metavar="ID", help="account id")
    add.add_argument("--campaign", metavar="ID", help="campaign id")
    add.add_argument("--rule", metavar="NAME", help="the rule that opened the incident")
    add.add_argument("--party", metavar="KEY", help="the managing party's key under 'parties'")
    add.add_argument("--until", type=_until, required=True, metavar="DATE|DATETIME|+24h|+7d", help="expiry: a date (its end, UTC), a datetime (UTC unless offset) or a duration")
    add.add_argument("--reason", required=True, metavar="TEXT")
    add.add_argument("--by", metavar="NAME", help="who asks for it (default: the login name)")
    add.set_defaults(func=cmd_silence_add)
    ls = actions.add_parser("list", help="silences in force, from config.yaml and the store", description="The silences in force, from config.yaml and the store.", parents=common)
    ls.add_argument("--all", action="store_true", help="expired ones too")
    ls.set_defaults(func=cmd_silence_list)
    expire = actions.add_parser("expire", help="end a stored silence now", description="End a stored silence now.", parents=common)
    expire.add_argument("silence_id", type=int, metavar="ID")
    expire.set_defaults(func=cmd_silence_expire)
    _trial_options(sub)
    return parser


class _ReaderGoneStdout:
    """Standard output that a reader may close early (``anomaly demo | head -3``): the first
    write that finds the pipe closed sends the rest of the output to /dev/null, as Python's
    documentation advises for SIGPIPE, instead of raising BrokenPipeError in the middle of the
    command's work. The command goes on to the end (a report's files, the demo's replay, the
    store), then exits 1 quietly (``reader_gone``)."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._to_devnull()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._to_devnull()

    def _to_devnull(self) -> None:
        self.reader_gone = True
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a file (a test's capture): dropping the text is enough
            return
        # what is still buffered goes to /dev/null too, so that the flush at exit does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)

    def __getattr__(self, name: str):  # noqa: ANN204 - fileno, isatty, encoding… of the stream
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    stdout = sys.stdout
    guard = sys.stdout = _ReaderGoneStdout(stdout)
    try:
        code = _main(argv)
    finally:  # also after --help and --version (SystemExit)
        guard.flush()
        sys.stdout = stdout
    return 1 if guard.reader_gone else code


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    redact_logs()
    try:
        return args.func(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        trial = getattr(args, "rules", None)  # a rules folder under trial: its problems are its own
        check = f"`anomaly check --rules {trial}`" if trial else "`anomaly check`"
        print(f"The configuration is invalid; {check} lists every problem.", file=sys.stderr)
        return 1
    except AnomalyError as exc:
        print(redact(str(exc)), file=sys.stderr)
        return 1
    except Exception as exc:
        # an error no one foresaw may quote a configured secret (a library's message quoting the
        # URL it was given): then its traceback is printed with the secret replaced, as Python
        # would print it otherwise
        text = redacted_traceback(exc)
        if text == "".join(traceback.format_exception(exc)):
            raise
        print(text, end="", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
