"""The ``anomaly`` command line: demo, check, run, serve, status, backtest, incidents, report, silence."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import getpass
import json
import logging
import sys
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import pandas as pd

from anomaly.alerts.render import money, render_text
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


def _load(args: argparse.Namespace, *, require_sources: bool = False) -> tuple[Config, list, pd.DataFrame, Path]:
    """Config, rules and ownership periods (the ownership file is config too), each read once.

    ``require_sources`` for the commands that validate or pull (check, run, serve, demo): the ones
    that only read the store (backtest, incidents, report, silence, status) also take a config that
    names no source, e.g. one that only points at a store another config's service fills."""
    path = _config_path(args)
    config, rules = load_config(path, require_sources=require_sources)
    return config, rules, ownership_periods(config), path


def _store(config: Config) -> Store:
    store = Store(config.store.url.get_secret_value())
    store.migrate()
    return store


# ---------------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config, rules, periods, path = _load(args, require_sources=True)
    except InputError as exc:
        print(exc, file=sys.stderr)
        print(f"{len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''} found.", file=sys.stderr)
        return 1
    enabled = sum(1 for r in rules if r.enabled)
    print(
        f"{path}: OK — {len(config.sources)} source(s), {len(config.parties)} part{'ies' if len(config.parties) != 1 else 'y'}, "
        f"{len(periods)} ownership period(s), {enabled} enabled rule(s) of {len(rules)} in {config.rules_dir}"
    )
    return 0


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
    store = _store(config)

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
    return 0 if d.failed == 0 else 1


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
    from anomaly.pipeline import backtest

    config, rules, periods, _ = _load(args)
    if args.rules:
        rules = load_rules(Path(args.rules), config.parties)
    if args.date_to < args.date_from:
        raise InputError([_usage_problem(f"--to {args.date_to} is before --from {args.date_from}")])
    store = _store(config)
    started = time.perf_counter()
    metrics = store.load_metrics(end=args.date_to)
    if metrics.empty:
        print(f"The store at {store.describe()} holds no metrics; run `anomaly run` (or `anomaly demo`) first.", file=sys.stderr)
        return 1
    changes = store.load_changes()
    periods = with_inferred(periods, store.load_inferred_ownership())
    incidents = backtest(config, rules, periods, metrics, changes, args.date_from, args.date_to)
    elapsed = time.perf_counter() - started
    records = [i.backtest_record() for i in incidents]
    if args.format == "json":
        print(json.dumps(records, indent=2))
    else:
        _print_table(
            ["detected", "onset", "account", "campaign", "rule", "severity", "observed", "baseline", "managed by", "excess"],
            [
                [
                    r["detected_on"],
                    r["onset"],
                    _clip(r["account_name"], 24),
                    _clip(r["campaign_name"], 24),
                    r["rule"],
                    r["severity"],
                    _num(r["observed"]),
                    _num(r["baseline"]),
                    config.party_name(r["managing_party"]),
                    money(r["excess_cost"], r["currency"]),
                ]
                for r in records
            ],
        )
    days = (args.date_to - args.date_from).days + 1
    campaigns = metrics.groupby(["account_id", "campaign_id"]).ngroups
    print(
        f"{len(records)} alert(s) in {days} day(s) over {campaigns} campaign(s), "
        f"{len(records) / days * 7:.2f} per week; replayed in {elapsed:.2f} s",
        file=sys.stderr,
    )
    return 0


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
    "id", "status", "severity", "family", "rule", "account_id", "account_name", "campaign_id", "campaign_name", "currency",
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
        write_csv(sys.stdout, INCIDENT_FIELDS, ({**r, "excess_by_party": json.dumps(r["excess_by_party"], sort_keys=True)} for r in records))
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
        payload = row["details"]["payload"]
        print(render_text("resolved" if row["status"] == "resolved" else "opened", {**payload, "incident_id": row["id"]}, config))
        if row["acknowledged_at"] is not None:
            print(f"  {'Acknowledged':<12} by {row['acknowledged_by']} at {_utc(row['acknowledged_at'])}")
        evidence = incident_evidence(project, row["id"])
        print("\n  Excess cost by managing party:")
        for party in evidence.by_party.itertuples():
            print(f"    {party.name:<24} {money(party.excess, evidence.currency)}")
        if evidence.split:
            print("\n  Proposed split (settlement in config.yaml):")
            for line in evidence.split:
                print(f"    {line.name:<24} {money(line.amount, evidence.currency):>10}  {line.percent:5.1f}%")
        html, markdown = render_incident(evidence, project)
        paths = write_report(out, f"incident-{row['id']}", html, markdown)
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
        _print_scorecard(card)
        html, markdown = render_scorecard(card, project)
        named = "-".join(keys) if keys else "all"
        if len(named) > 64:  # several long party keys: the file name says how many instead
            named = f"{len(keys)}-parties"
        paths = write_report(out, f"scorecard-{named}-{start}-{end}", html, markdown)
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
    silence_id = _store(config).add_silence(silence, now=now)
    print(silence_id)
    print(f"silence {silence_id}: {describe_matchers(silence)} until {_utc(silence.until)}", file=sys.stderr)
    return 0


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


def _num(value) -> str:
    if value is None:
        return "∞"
    return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anomaly", description="Cost-per-lead anomaly detection and alerting for paid media.")
    parser.add_argument("--config", help="config file (default: $ANOMALY_CONFIG, else ./config.yaml, else the project's embedded default)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("demo", help="generate the sample portfolio, run the pipeline on it, print the alerts").set_defaults(func=cmd_demo)
    sub.add_parser("check", help="validate config.yaml and the rules; every problem as file: path: message").set_defaults(func=cmd_check)

    run = sub.add_parser("run", help="one cycle: pull, detect, open/update/resolve incidents, notify")
    run.add_argument("--as-of", type=_date, help="last day to evaluate (default: the last day with data)")
    run.add_argument("--today", type=_date, help="the day the pull runs up to (default: today)")
    run.add_argument(
        "--wait", type=_seconds, default=RUN_WAIT_SECONDS, metavar="SECONDS",
        help=f"how long to wait for another run on the same store to finish, then exit {EXIT_BUSY} having done nothing (default: {RUN_WAIT_SECONDS:g})",
    )
    run.set_defaults(func=cmd_run)

    sub.add_parser("serve", help="the scheduled service: pull, detect and notify on each source's schedule, until stopped").set_defaults(func=cmd_serve)
    sub.add_parser("status", help="last pulls, next runs, the service lock, pending notifications, open incidents").set_defaults(func=cmd_status)

    bt = sub.add_parser("backtest", help="replay history causally; print the alerts that would have been sent")
    bt.add_argument("--from", dest="date_from", type=_date, required=True, metavar="YYYY-MM-DD")
    bt.add_argument("--to", dest="date_to", type=_date, required=True, metavar="YYYY-MM-DD")
    bt.add_argument("--rules", help="a rules folder to try instead of the configured one")
    bt.add_argument("--format", choices=("table", "json"), default="table")
    bt.set_defaults(func=cmd_backtest)

    inc = sub.add_parser("incidents", help="list incidents, filtered; as a table, JSON or CSV")
    inc.add_argument("--status", choices=("open", "resolved"))
    inc.add_argument("--party", action="append", metavar="KEY|NAME", help="managed at onset by this party (repeatable)")
    inc.add_argument("--account", action="append", metavar="ID", help="on this account (repeatable)")
    inc.add_argument("--from", dest="date_from", type=_date, metavar="YYYY-MM-DD", help="still open or resolved on or after this day")
    inc.add_argument("--to", dest="date_to", type=_date, metavar="YYYY-MM-DD", help="begun on or before this day")
    inc.add_argument("--format", choices=("table", "json", "csv"), default="table")
    inc.set_defaults(func=cmd_incidents)

    rep = sub.add_parser(
        "report",
        help="the evidence pack of one incident (HTML and Markdown), or with --party/--from/--to the party scorecard",
        description="`anomaly report ID`: the evidence pack of incident ID. `anomaly report [--party KEY] [--from D] [--to D]`: "
        "the party scorecard (default: every party, the 30 days up to the last day with data).",
    )
    rep.add_argument("incident_id", type=int, nargs="?", metavar="ID")
    rep.add_argument("--party", action="append", metavar="KEY|NAME", help="scorecard of this party (repeatable; default: all)")
    rep.add_argument("--from", dest="date_from", type=_date, metavar="YYYY-MM-DD", help="scorecard period start (default: 29 days before --to)")
    rep.add_argument("--to", dest="date_to", type=_date, metavar="YYYY-MM-DD", help="scorecard period end (default: the last day with data)")
    rep.add_argument("--out", default="reports", metavar="DIR", help="where the HTML and Markdown files go (default: ./reports)")
    rep.set_defaults(func=cmd_report)

    silence = sub.add_parser("silence", help="hold back the notifications of matching incidents for a while: add, list, expire")
    actions = silence.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="a new silence; at least one matcher; prints its id")
    add.add_argument("--account", metavar="ID", help="account id")
    add.add_argument("--campaign", metavar="ID", help="campaign id")
    add.add_argument("--rule", metavar="NAME", help="the rule that opened the incident")
    add.add_argument("--party", metavar="KEY", help="the managing party's key under 'parties'")
    add.add_argument("--until", type=_until, required=True, metavar="DATE|DATETIME|+24h|+7d", help="expiry: a date (its end, UTC), a datetime (UTC unless offset) or a duration")
    add.add_argument("--reason", required=True, metavar="TEXT")
    add.add_argument("--by", metavar="NAME", help="who asks for it (default: the login name)")
    add.set_defaults(func=cmd_silence_add)
    ls = actions.add_parser("list", help="silences in force, from config.yaml and the store")
    ls.add_argument("--all", action="store_true", help="expired ones too")
    ls.set_defaults(func=cmd_silence_list)
    expire = actions.add_parser("expire", help="end a stored silence now")
    expire.add_argument("silence_id", type=int, metavar="ID")
    expire.set_defaults(func=cmd_silence_expire)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    redact_logs()
    try:
        return args.func(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        print("The configuration is invalid; `anomaly check` lists every problem.", file=sys.stderr)
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
