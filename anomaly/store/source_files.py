"""The files a file source (CSV) has read: each one's content hash, so that a pull reads a file
that is new or changed in full and an unchanged one for its look-back only, and what the last pull
found of each (for ``anomaly status``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from anomaly.store.base import StoreBase
from anomaly.store.tables import pulls, source_files

#: What a pull found a file to be, against the hash the store kept of it.
FILE_STATUSES = ("new", "changed", "unchanged")


@dataclass(frozen=True)
class SourceFile:
    """One file a pull of a file source found, and what it took from it.

    ``status`` is ``new`` (never read before), ``changed`` (its content hash differs from the one
    last read) or ``unchanged``. ``rows`` counts the file's data rows, ``stored`` those the pull
    stored: every one (within ``history_days``) of a new or changed file, those in the look-back
    window of an unchanged one. A file with no rows (a header only, or zero bytes) is ``empty``.
    """

    path: str
    kind: str  # metrics | changes
    digest: str  # sha256 of its text
    status: str
    rows: int
    stored: int
    first_day: dt.date | None  # the dates of its rows (None: it has none)
    last_day: dt.date | None
    size: int  # bytes
    modified_at: dt.datetime | None  # UTC, naive

    @property
    def empty(self) -> bool:
        return self.rows == 0


class SourceFileStore(StoreBase):
    """The content hash of each file a source has read, and what its last pull found."""

    def file_digests(self, source: str) -> dict[str, str]:
        """Path → the content hash each file of ``source`` had when it was last read."""
        query = sa.select(source_files.c.path, source_files.c.digest).where(source_files.c.source == source)
        with self.engine.connect() as conn:
            return dict(conn.execute(query).all())

    def last_pull_files(self, source: str) -> list[SourceFile]:
        """The files the latest pull of ``source`` found, by path; empty before its first pull, when
        it found none, or when the source reads no files."""
        latest = sa.select(sa.func.max(pulls.c.id)).where(pulls.c.source == source).scalar_subquery()
        columns = [source_files.c[name] for name in SourceFile.__dataclass_fields__]
        query = sa.select(*columns).where(source_files.c.source == source, source_files.c.pull_id == latest).order_by(source_files.c.path)
        with self.engine.connect() as conn:
            return [SourceFile(*row) for row in conn.execute(query)]


def source_file_records(files: Sequence[SourceFile], source: str, pull_id: int) -> list[dict[str, Any]]:
    """The ``source_files`` rows of one pull's files."""
    return [{**asdict(f), "source": source, "pull_id": pull_id} for f in files]
