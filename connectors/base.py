"""What every connector returns."""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

from anomaly.config import OwnershipInferenceConfig
from anomaly.errors import SourceError
from anomaly.ownership import infer_ownership
from anomaly.schema import empty_changes, empty_metrics, empty_ownership
from anomaly.store.source_files import SourceFile

#: the platforms' API sources wait up to BACKOFF_BASE_SECONDS * 2^(attempt - 1) seconds, capped,
#: before retrying a transient failure
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 60.0


@dataclass(frozen=True)
class Batch:
    """One fetch: canonical metrics (see ``anomaly.schema``) and, where the source has them, change
    history and the ownership periods it inferred from that history.

    ``start``/``end`` are the inclusive dates that were asked for. Within them, a campaign-day the
    source does not return means zero activity, not missing data. ``failures`` are the accounts that
    failed while the others were fetched (their data is missing from this batch, not zero).

    A file source also says which ``files`` it read (``anomaly.store.SourceFile``: new, changed or
    unchanged, and what each held) and whether they held no metric rows at all (``no_rows``: none
    was found, or each is empty), which is no data rather than zero activity.
    """

    source: str
    start: dt.date
    end: dt.date
    metrics: pd.DataFrame = field(default_factory=empty_metrics)
    changes: pd.DataFrame = field(default_factory=empty_changes)
    ownership: pd.DataFrame = field(default_factory=empty_ownership)
    failures: tuple[SourceError, ...] = ()
    files: tuple[SourceFile, ...] = ()
    no_rows: bool = False


class Connector(Protocol):
    name: str

    def fetch(self, start: dt.date, end: dt.date) -> Batch:
        """Return every row dated ``start``..``end`` (inclusive). Raise ``DataError`` or ``SourceError``."""
        ...


def backoff(attempt: int) -> float:
    """Full jitter: a uniform wait up to BACKOFF_BASE_SECONDS * 2^(attempt - 1) seconds, capped."""
    return random.uniform(0.0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))


def all_failed(source: str, failures: Sequence[SourceError], accounts: str = "accounts") -> SourceError:
    """What a fetch raises when every account failed: the one failure, or all of them listed."""
    if len(failures) == 1:
        return failures[0]
    listed = "\n".join(f"  {f}" for f in failures)
    return SourceError(source, f"all {len(failures)} {accounts} failed:\n{listed}")


def inferred_ownership(
    source: str,
    changes: pd.DataFrame,
    inference: OwnershipInferenceConfig,
    domains: Mapping[str, str],
    declared_accounts: Set[str],
    logger: logging.Logger,
    *,
    account: str = "account ",
    history: str = "change history",
) -> pd.DataFrame:
    """The ownership periods an API source's change history implies (``infer_ownership``), for the
    accounts whose ownership the config does not declare; each is logged on the source's
    ``logger`` (``account`` before the id, ``history`` what it was read from)."""
    if not inference.enabled or changes.empty:
        return empty_ownership()
    undeclared = changes[~changes["account_id"].isin(list(declared_accounts))]
    periods = infer_ownership(undeclared, domains, inference.min_changes)
    for period in periods.itertuples(index=False):
        logger.info("%s: %s%s: managed by %s from %s (inferred from %s)", source, account, period.account_id, period.party, period.start.date(), history)
    return periods
