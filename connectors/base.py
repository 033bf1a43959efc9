"""What every connector returns."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

from anomaly.errors import SourceError
from anomaly.schema import empty_changes, empty_metrics, empty_ownership
from anomaly.store.source_files import SourceFile


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
