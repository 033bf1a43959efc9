"""One cycle (pull ▶ upsert ▶ detect ▶ incidents ▶ notify) and the backtest, on top of the pure core."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import pandas as pd

from anomaly.alerts import DeliveryReport, Sink, deliver
from anomaly.alerts.routing import Router
from anomaly.config import Config, CsvSourceConfig, GoogleAdsSourceConfig, MetaAdsSourceConfig, MicrosoftAdsSourceConfig, RuleBase, source_platform
from anomaly.detect import detect
from anomaly.errors import AnomalyError
from anomaly.handover import find_handovers, handover_writes
from anomaly.incidents import Incident, build_incidents, reconcile
from anomaly.ownership import domain_map, ownership_periods, with_inferred
from anomaly.platforms import account_platforms, guess_platform
from anomaly.store import FILE_STATUSES, SourceFile, Store
from connectors.base import Connector
from connectors.csv_files import CsvConnector

log = logging.getLogger(__name__)


def make_connector(source, config: Config) -> Connector:
    if isinstance(source, CsvSourceConfig):
        return CsvConnector(source.name, source.metrics, source.changes, currency=source.currency, ceilings=source.row_ceilings)
    if isinstance(source, GoogleAdsSourceConfig):
        from connectors.google_ads import GoogleAdsConnector  # the client library is large: load it only when used

        declared = set(ownership_periods(config)["account_id"])  # inference leaves these accounts alone
        return GoogleAdsConnector(source, domain_map(config), declared_accounts=declared)
    if isinstance(source, MetaAdsSourceConfig):
        from connectors.meta_ads import MetaAdsConnector  # the SDK is only loaded for a Meta source

        declared = set(ownership_periods(config)["account_id"])
        return MetaAdsConnector(source, domain_map(config), declared_accounts=declared)
    if isinstance(source, MicrosoftAdsSourceConfig):
        from connectors.microsoft_ads import MicrosoftAdsConnector  # the SDK and its WSDLs load only when used

        declared = set(ownership_periods(config)["account_id"])
        return MicrosoftAdsConnector(source, domain_map(config), declared_accounts=declared)
    raise TypeError(f"no connector for source type {source.type!r}")  # pragma: no cover - config validates types


@dataclass(frozen=True)
class PullReport:
    """One source pulled: the days asked for and the rows stored; for a file source, the files it
    read and whether they held no rows at all (then the cursor stayed at ``cursor``)."""

    source: str
    start: dt.date
    end: dt.date
    metric_rows: int
    change_rows: int
    files: tuple[SourceFile, ...] = ()
    no_rows: bool = False
    cursor: dt.date | None = None  # the source's cursor after the pull


def pull_lines(report: PullReport) -> list[str]:
    """A pull as ``anomaly run`` prints it: the rows stored, then what its files held (``file_lines``)."""
    lines = [f"pulled {report.source} {report.start}..{report.end}: {report.metric_rows} metric rows, {report.change_rows} changes"]
    lines += [f"  {line}" for line in file_lines(report.files, lambda moment: f"{moment:%Y-%m-%d %H:%M:%S} UTC")]
    if report.no_rows:
        lines.append(f"  {no_rows_text(report.cursor)}")
    return lines


def no_rows_text(cursor: dt.date | None) -> str:
    stays = f"the cursor stays at {cursor}" if cursor else "the source has no cursor yet"
    return f"no metrics file holds a row, which is no data (not zero activity): {stays}"


def file_lines(files: Sequence[SourceFile], when: Callable[[dt.datetime], str], *, most: int = 10) -> list[str]:
    """What a pull found in a file source's files: how many were new, changed or unchanged; each
    one read in full (new or changed) with its rows, their days and how many were stored; each
    empty metrics file; and the file modified last (``when`` writes its time). At most ``most``
    files are named of each kind."""
    if not files:
        return []
    counts = Counter(f.status for f in files)
    empty = [f for f in files if f.kind == "metrics" and f.empty]
    summary = ", ".join(f"{counts[status]} {status}" for status in FILE_STATUSES if counts[status])
    lines = [f"files: {len(files)} read ({summary})" + (f", {len(empty)} empty" if empty else "")]
    read_in_full = [
        f"{f.status}: {f.path}: {f.rows} row(s) dated {f.first_day}..{f.last_day}, "
        + ("all stored" if f.stored == f.rows else f"{f.stored} stored (the others are outside the days pulled)")
        for f in files
        if f.status != "unchanged" and not f.empty
    ]
    lines += _at_most(read_in_full, most)
    lines += _at_most([f"empty: {f.path} ({'0 bytes' if f.size == 0 else 'no data rows'}): not counted as data" for f in empty], most)
    latest = max((f for f in files if f.modified_at is not None), key=lambda f: (f.modified_at, f.path), default=None)
    if latest is not None:
        lines.append(f"latest file: {latest.path}, modified {when(latest.modified_at)}")
    return lines


def _at_most(lines: list[str], most: int) -> list[str]:
    return lines if len(lines) <= most else lines[:most] + [f"... and {len(lines) - most} more"]


@dataclass(frozen=True)
class PullFailure:
    source: str
    error: Exception


class PullError(AnomalyError):
    """Sources that could not be pulled, after the others were pulled and the cycle ran without them."""

    def __init__(self, failures: list[PullFailure]):
        self.failures = list(failures)
        super().__init__("\n".join(_describe(f) for f in self.failures))


def _describe(failure: PullFailure) -> str:
    # the project's own errors already say where (file and line, or source, account and request id)
    if isinstance(failure.error, AnomalyError):
        return str(failure.error)
    return f"source {failure.source!r}: {type(failure.error).__name__}: {failure.error}"


@dataclass(frozen=True)
class CycleReport:
    pulls: list[PullReport]
    as_of: dt.date | None
    incidents: int
    open_incidents: int
    enqueued: int
    delivery: DeliveryReport


def pull(config: Config, store: Store, today: dt.date) -> tuple[list[PullReport], list[PullFailure]]:
    """Pull every source (see ``pull_source``). A source that fails, whatever the reason, is logged
    and skipped: the others are still pulled."""
    reports, failures = [], []
    for source in config.sources:
        try:
            reports.append(pull_source(config, source, store, today))
        except Exception as exc:  # noqa: BLE001 - one broken source must not starve the others
            log.error("source %r was not pulled; the other sources go on: %s", source.name, exc, exc_info=not isinstance(exc, AnomalyError))
            failures.append(PullFailure(source.name, exc))
    return reports, failures


def pull_source(config: Config, source, store: Store, today: dt.date) -> PullReport:
    """Fetch one source from its cursor minus the restatement look-back (or ``history_days`` back on
    its first pull, and never further) through ``today``, and upsert it. Starting from the cursor
    catches up every day missed since the last pull; a pull that left accounts out (an exhausted
    quota, a refused account) keeps the cursor where it was, so the next pull fetches their days
    again. A source with bad data changes nothing.

    A file source reads each file that is new or changed since it was last read (the store keeps
    each one's content hash) in full, back to ``history_days``, whatever its dates: a late export
    is read when it arrives. An unchanged file gives the look-back's days only. A pull whose
    metrics files hold no rows (none found, or each empty) is recorded but does not move the
    cursor either."""
    last = store.last_pull_end(source.name)
    earliest = today - dt.timedelta(days=source.history_days)
    start = max(last - dt.timedelta(days=source.lookback_days), earliest) if last else earliest
    start = min(start, today)
    log.info("pulling %s %s..%s", source.name, start, today)
    connector = make_connector(source, config)
    if isinstance(connector, CsvConnector):
        batch = connector.fetch(start, today, read=store.file_digests(source.name), earliest=earliest)
    else:
        batch = connector.fetch(start, today)
    for failure in batch.failures:
        log.error("source %r: left out of the pull of %s..%s, pulled again next time: %s", source.name, start, today, failure)
    result = store.ingest(
        source.name, start, today, batch.metrics, batch.changes, batch.ownership,
        complete=not batch.failures, no_rows=batch.no_rows, files=batch.files,
    )
    report = PullReport(
        source.name, start, today, result.metric_rows, result.change_rows, batch.files, batch.no_rows,
        store.last_pull_end(source.name) if batch.no_rows or batch.failures else today,
    )
    for line in pull_lines(report):
        log.info("%s", line.strip())
    for empty in (f for f in batch.files if f.kind == "metrics" and f.empty):
        log.warning("source %r: the file %s holds no rows: not counted as data", source.name, empty.path)
    if batch.no_rows:
        log.warning("source %r: %s", source.name, no_rows_text(report.cursor))
    return report


def derive_incidents(
    config: Config,
    rules: list[RuleBase],
    ownership: pd.DataFrame,
    metrics: pd.DataFrame,
    changes: pd.DataFrame,
    as_of: dt.date,
    completeness: pd.DataFrame | None = None,
    platforms: Mapping[str, str] | None = None,
) -> list[Incident]:
    """Detection and attribution on stored data up to ``as_of``: exactly what a live run decides.

    ``ownership`` holds the periods of ``anomaly.ownership.ownership_periods(config)``, read once
    by the caller; ``completeness`` how complete each account's latest leads are
    (``Store.lead_completeness``; without it detection reads the lag from the data itself);
    ``platforms`` the ad platform of each account (``platforms_of``; without it, the id's shape
    tells where it can).
    """
    detection = detect(
        metrics,
        ownership,
        rules,
        config.detection,
        pd.Timestamp(as_of),
        default_party=config.ownership.default_party,
        changes=changes,
        completeness=completeness,
    )
    incidents = build_incidents(
        detection,
        changes,
        domain_map(config),
        changes_before_onset_days=config.detection.incidents.changes_before_onset_days,
    )
    platforms = platforms or {}
    return [replace(i, platform=platforms.get(i.account_id) or guess_platform(i.account_id)) for i in incidents]


def platforms_of(config: Config, store: Store) -> dict[str, str]:
    """The ad platform of each account the store holds, from the source that stored it."""
    return account_platforms(store.account_sources(), {source.name: source_platform(source) for source in config.sources})


def evaluate(
    config: Config, rules: list[RuleBase], ownership: pd.DataFrame, store: Store, as_of: dt.date | None = None
) -> tuple[dt.date | None, list[Incident]]:
    """The incidents detection derives from the stored data up to ``as_of`` (default: the last
    day with data), and that day; (None, []) when the store holds no metrics up to it. Reads the
    store, writes nothing."""
    metrics = store.load_metrics(end=as_of)
    if metrics.empty:
        return None, []
    as_of = as_of or metrics["date"].max().date()
    changes = store.load_changes(end=dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time()))
    periods = with_inferred(ownership, store.load_inferred_ownership())
    completeness = store.lead_completeness(config.detection.reporting_lag_days, as_of=as_of)
    return as_of, derive_incidents(config, rules, periods, metrics, changes, as_of, completeness, platforms_of(config, store))


def run_cycle(
    config: Config,
    rules: list[RuleBase],
    ownership: pd.DataFrame,
    store: Store,
    sinks: list[Sink],
    *,
    today: dt.date | None = None,
    as_of: dt.date | None = None,
    pull_sources: bool = True,
    delivery_lock: AbstractContextManager = nullcontext(),
) -> CycleReport:
    """One idempotent cycle. ``as_of`` (default: the last day with data) is the last day evaluated.

    A source that fails to pull does not stop the cycle: it runs on everything else, and then
    ``PullError`` names the failed sources, so that the caller still sees the failure.
    ``delivery_lock`` is held while the cycle delivers the outbox: a caller that also delivers
    elsewhere (the service's deliver job) passes the lock that keeps two deliveries apart.
    """
    today = today or dt.date.today()
    pulls, failures = pull(config, store, today) if pull_sources else ([], [])
    as_of, derived = evaluate(config, rules, ownership, store, as_of)
    enqueued = 0
    if as_of is not None:
        router = Router(config.alerts, [sink.name for sink in sinks])
        enqueued += record_handovers(config, ownership, store, as_of, router)
        writes = reconcile(store.load_incidents(), derived, as_of, router, excess_steps=config.alerts.excess_steps)
        enqueued += store.save_incidents(writes)
    with delivery_lock:
        report = deliver(store, sinks, config=config)
    if failures:
        raise PullError(failures)
    return CycleReport(
        pulls=pulls,
        as_of=as_of,
        incidents=len(derived),
        open_incidents=sum(1 for i in derived if i.status == "open"),
        enqueued=enqueued,
        delivery=report,
    )


def record_handovers(config: Config, ownership: pd.DataFrame, store: Store, as_of: dt.date, router: Router) -> int:
    """Record the handovers that have begun by ``as_of`` and that the store has not recorded yet,
    with their reference figures, and enqueue their messages (see ``anomaly.handover``). Reads
    metrics only when there is a new handover. Returns the number of notifications enqueued."""
    periods = with_inferred(ownership, store.load_inferred_ownership())
    recorded = store.handover_keys()
    due = [h for h in find_handovers(periods, config.ownership.default_party) if h.start <= as_of and h.key not in recorded]
    if not due:
        return 0
    earliest = min(h.start for h in due) - dt.timedelta(days=config.handoff.reference_days)
    metrics = store.load_metrics(start=earliest, end=as_of)
    writes = handover_writes(
        periods, metrics, as_of, recorded, router, config.handoff,
        default_party=config.ownership.default_party, platforms=platforms_of(config, store),
    )
    return store.save_handovers(writes)


def backtest(
    config: Config, rules: list[RuleBase], ownership: pd.DataFrame, metrics: pd.DataFrame, changes: pd.DataFrame, start: dt.date, end: dt.date,
    platforms: Mapping[str, str] | None = None,
) -> list[Incident]:
    """Replay ``start``..``end`` causally: the incidents whose alert would have been sent in that
    span (one alert per incident, on its detection day), with excess cost up to ``end``;
    ``platforms`` as for ``derive_incidents``."""
    # every day is scored, not only those from ``start``: an episode that a live run would have
    # opened before ``start`` must not look new inside the window
    incidents = derive_incidents(config, rules, ownership, metrics[metrics["date"] <= pd.Timestamp(end)], changes, end, platforms=platforms)
    return [i for i in incidents if start <= i.detected_on <= end]
