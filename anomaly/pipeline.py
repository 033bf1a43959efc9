"""One cycle (pull ▶ upsert ▶ detect ▶ incidents ▶ notify) and the backtest, on top of the pure core."""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import pandas as pd

from anomaly.alerts import DeliveryReport, Sink, deliver
from anomaly.alerts.routing import Router
from anomaly.config import Config, CsvSourceConfig, GoogleAdsSourceConfig, RuleBase
from anomaly.detect import detect
from anomaly.errors import AnomalyError
from anomaly.incidents import Incident, build_incidents, reconcile
from anomaly.ownership import domain_map, ownership_periods, with_inferred
from anomaly.store import Store
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
    raise TypeError(f"no connector for source type {source.type!r}")  # pragma: no cover - config validates types


@dataclass(frozen=True)
class PullReport:
    source: str
    start: dt.date
    end: dt.date
    metric_rows: int
    change_rows: int


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
    again. A source with bad data changes nothing."""
    last = store.last_pull_end(source.name)
    earliest = today - dt.timedelta(days=source.history_days)
    start = max(last - dt.timedelta(days=source.lookback_days), earliest) if last else earliest
    start = min(start, today)
    log.info("pulling %s %s..%s", source.name, start, today)
    batch = make_connector(source, config).fetch(start, today)
    for failure in batch.failures:
        log.error("source %r: left out of the pull of %s..%s, pulled again next time: %s", source.name, start, today, failure)
    result = store.ingest(source.name, start, today, batch.metrics, batch.changes, batch.ownership, complete=not batch.failures)
    log.info("pulled %s %s..%s: %d metric rows, %d changes", source.name, start, today, result.metric_rows, result.change_rows)
    return PullReport(source.name, start, today, result.metric_rows, result.change_rows)


def derive_incidents(
    config: Config,
    rules: list[RuleBase],
    ownership: pd.DataFrame,
    metrics: pd.DataFrame,
    changes: pd.DataFrame,
    as_of: dt.date,
    completeness: pd.DataFrame | None = None,
) -> list[Incident]:
    """Detection and attribution on stored data up to ``as_of``: exactly what a live run decides.

    ``ownership`` holds the periods of ``anomaly.ownership.ownership_periods(config)``, read once
    by the caller; ``completeness`` how complete each account's latest leads are
    (``Store.lead_completeness``; without it detection reads the lag from the data itself).
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
    return build_incidents(
        detection,
        changes,
        domain_map(config),
        changes_before_onset_days=config.detection.incidents.changes_before_onset_days,
    )


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
    metrics = store.load_metrics(end=as_of)
    enqueued = 0
    derived: list[Incident] = []
    if not metrics.empty:
        as_of = as_of or metrics["date"].max().date()
        changes = store.load_changes(end=dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time()))
        periods = with_inferred(ownership, store.load_inferred_ownership())
        completeness = store.lead_completeness(config.detection.reporting_lag_days, as_of=as_of)
        derived = derive_incidents(config, rules, periods, metrics, changes, as_of, completeness)
        router = Router(config.alerts, [sink.name for sink in sinks])
        writes = reconcile(store.load_incidents(), derived, as_of, router, excess_steps=config.alerts.excess_steps)
        enqueued = store.save_incidents(writes)
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


def backtest(
    config: Config, rules: list[RuleBase], ownership: pd.DataFrame, metrics: pd.DataFrame, changes: pd.DataFrame, start: dt.date, end: dt.date
) -> list[Incident]:
    """Replay ``start``..``end`` causally: the incidents whose alert would have been sent in that
    span (one alert per incident, on its detection day), with excess cost up to ``end``."""
    # every day is scored, not only those from ``start``: an episode that a live run would have
    # opened before ``start`` must not look new inside the window
    incidents = derive_incidents(config, rules, ownership, metrics[metrics["date"] <= pd.Timestamp(end)], changes, end)
    return [i for i in incidents if start <= i.detected_on <= end]
