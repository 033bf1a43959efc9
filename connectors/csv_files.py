"""CSV files as a data source: metrics, change history and ownership periods.

Every reader checks the whole file (every row, every cell) and raises one ``DataError`` that lists
every problem as ``file: line N, column NAME: expected ..., got '...'`` (at most
``MAX_PROBLEMS_PER_FILE`` per file, then a count of the rest). Nothing from a file with a problem is
returned. Rows are read with the csv module, which keeps physical line numbers right even when a
quoted cell spans lines; cells are then checked column by column with pandas/numpy, and messages are
built only for the problems that are shown.

Cells are stripped of surrounding whitespace; header names are also lower-cased. Blank lines and rows
whose cells are all empty (spreadsheet exports leave them) are ignored. A file must be UTF-8 text (a
byte-order mark is fine, a NUL byte is not); ids and client types may be as long as the store's
columns hold them (64 and 40 characters), any cell up to the csv module's 131,072. Ids and names hold
no control characters (``anomaly.schema.CONTROL_CHARACTERS``), and a metrics row holds no more than
its source's ceilings (``max_row_spend`` ...), beyond which a figure is a typo or garbage, not an
account's day.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import gc
import glob
import hashlib
import io
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly import store
from anomaly.errors import DataError, Problem
from anomaly.files import MAX_CSV_BYTES, FileReadError, read_limited
from anomaly.schema import (
    CONTROL_CHARACTERS,
    DAILY,
    empty_changes,
    empty_metrics,
    normalise_changes,
    normalise_metrics,
    normalise_ownership,
)
from connectors.base import Batch

MAX_PROBLEMS_PER_FILE = 50

METRICS_REQUIRED = ("date", "account_id", "campaign_id", "spend", "clicks", "leads")
METRICS_OPTIONAL = ("account_name", "campaign_name", "currency", "impressions", "hour")
CHANGES_REQUIRED = ("changed_at", "account_id")
CHANGES_OPTIONAL = ("campaign_id", "user_email", "client_type", "resource_type", "operation", "changed_fields")
OWNERSHIP_REQUIRED = ("account_id", "party", "start")
OWNERSHIP_OPTIONAL = ("campaign_id", "end")

_QUOTE_LIMIT = 40
# Dates outside this range are typos ("0226-07-01") and would not fit pandas' nanosecond timestamps.
_FIRST_DATE = np.datetime64("1900-01-01", "D")
_LAST_DATE = np.datetime64("2199-12-31", "D")
_DATE_RANGE = "a date between 1900-01-01 and 2199-12-31"
_ISO_DATETIME = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
_DATETIME = "a date-time as YYYY-MM-DDTHH:MM[:SS] with an optional Z or +HH:MM offset"
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_HOUR = "an hour 0-23, or empty for a daily row"
_ROW = -1  # sort key of a whole-row problem: before the cell problems of the same line
# The store keeps these in bounded columns; PostgreSQL refuses a longer value, and with it the pull.
_METRIC_LENGTHS = {c: store.metrics.c[c].type.length for c in ("account_id", "campaign_id")}
_CHANGE_LENGTHS = {c: store.changes.c[c].type.length for c in ("account_id", "campaign_id", "client_type")}
_PLAIN = "text without control characters (a line break, tab, NUL or other C0/C1 control)"


# ----------------------------------------------------------------------------------------------
# public API


def read_metrics_csv(path: str | Path, currency: str = "USD", ceilings: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Read one metrics CSV into the canonical metrics frame (``anomaly.schema``).

    ``hour`` is ``DAILY`` where the file has no ``hour`` column or the cell is empty; an empty
    ``currency`` cell means ``currency``. ``ceilings`` maps ``spend``, ``impressions``, ``clicks``
    and ``leads`` to the most one row may hold (a CSV source's ``max_row_*``). Raises ``DataError``
    listing every problem in the file.
    """
    path = Path(path)
    report = _Report(str(path))
    parsed = _parse_metrics(path, currency, report, ceilings or {})
    _check_metric_keys([parsed], [report])
    _raise_if_problems([report])
    assert parsed is not None
    return normalise_metrics(parsed.frame)


def read_changes_csv(path: str | Path) -> pd.DataFrame:
    """Read one change-history CSV into the canonical changes frame; ``changed_at`` is naive UTC.

    Duplicate rows are kept (two identical edits in the same minute are possible).
    """
    path = Path(path)
    report = _Report(str(path))
    parsed = _parse_changes(path, report)
    _raise_if_problems([report])
    assert parsed is not None
    return normalise_changes(parsed.frame)


def read_ownership_csv(path: str | Path, parties: Collection[str]) -> pd.DataFrame:
    """Read ownership periods: who manages an account (empty ``campaign_id``) or a campaign, and when.

    ``start`` is the first day managed; ``end`` is the day management stopped (exclusive: a handoff
    is written as one period's ``end`` equal to the next one's ``start``), empty while it lasts.
    ``party`` must be one of ``parties``. Periods of the same account/campaign must not overlap.
    """
    path = Path(path)
    report = _Report(str(path))
    frame = _parse_ownership(path, parties, report)
    _raise_if_problems([report])
    assert frame is not None
    return normalise_ownership(frame)


class CsvConnector:
    """Metrics (and optionally change history) from CSV files on disk.

    ``metrics`` and ``changes`` are file paths or glob patterns (anything with ``*?[``). Globs are
    expanded at every fetch, in sorted order, and may match nothing; a named file must exist.
    ``ceilings`` are the most one metrics row may hold (see ``read_metrics_csv``).
    """

    def __init__(
        self,
        name: str,
        metrics: Sequence[str | Path],
        changes: Sequence[str | Path] = (),
        currency: str = "USD",
        ceilings: Mapping[str, float] | None = None,
    ):
        self.name = name
        self.metrics = tuple(metrics)
        self.changes = tuple(changes)
        self.currency = currency
        self.ceilings = dict(ceilings or {})

    def fetch(self, start: dt.date, end: dt.date, *, read: Mapping[str, str] | None = None, earliest: dt.date | None = None) -> Batch:
        """Return the metrics dated ``start``..``end`` and the changes made on those days (inclusive),
        and from each file that is new or changed, every row from ``earliest`` (default ``start``)
        to ``end``.

        ``read`` maps each file read before (its path as found) to the content hash it had then
        (``Batch.files`` gives them; the store keeps them): a file it lacks is new, one whose hash
        differs is changed. Without it every file is new. Every file is checked in full, rows
        outside the range included, and duplicate keys are checked across files; any problem in
        any file raises one ``DataError`` listing them all. A file with no rows (a header only, or
        zero bytes) is no error: ``Batch.files`` shows it empty, and ``Batch.no_rows`` says when
        no metrics file held a row.
        """
        metric_paths = _expand(self.metrics)
        change_paths = _expand(self.changes)
        metric_reports = [_Report(str(p)) for p in metric_paths]
        change_reports = [_Report(str(p)) for p in change_paths]

        parsed = [_parse_metrics(p, self.currency, r, self.ceilings, blank_ok=True) for p, r in zip(metric_paths, metric_reports)]
        _check_metric_keys(parsed, metric_reports)
        changes = [_parse_changes(p, r, blank_ok=True) for p, r in zip(change_paths, change_reports)]
        _raise_if_problems(metric_reports + change_reports)

        read = read or {}
        first, last = pd.Timestamp(start), pd.Timestamp(end)
        since = pd.Timestamp(min(earliest, start)) if earliest is not None else first
        files: list[store.SourceFile] = []
        metric_frames, change_frames = [], []
        for path, metric_file in zip(metric_paths, parsed):
            assert metric_file is not None
            frame = normalise_metrics(metric_file.frame)
            status = _status(read, path, metric_file.digest)
            taken = frame["date"].between(first if status == "unchanged" else since, last)
            metric_frames.append(frame[taken])
            files.append(_source_file(path, "metrics", metric_file, status, frame["date"], int(taken.sum())))
        for path, change_file in zip(change_paths, changes):
            assert change_file is not None
            frame = normalise_changes(change_file.frame)
            status = _status(read, path, change_file.digest)
            at = frame["changed_at"]
            taken = (at >= (first if status == "unchanged" else since)) & (at < last + pd.Timedelta(days=1))
            change_frames.append(frame[taken])
            files.append(_source_file(path, "changes", change_file, status, at, int(taken.sum())))

        metrics = pd.concat(metric_frames, ignore_index=True) if metric_frames else empty_metrics()
        history = pd.concat(change_frames, ignore_index=True) if change_frames else empty_changes()
        return Batch(
            source=self.name, start=start, end=end, metrics=metrics, changes=history, files=tuple(files),
            no_rows=not any(f.rows for f in files if f.kind == "metrics"),
        )


def _status(read: Mapping[str, str], path: Path, digest: str) -> str:
    before = read.get(str(path))
    return "new" if before is None else "unchanged" if before == digest else "changed"


def _source_file(path: Path, kind: str, parsed: _Parsed, status: str, when: pd.Series, stored: int) -> store.SourceFile:
    try:
        modified = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)
    except OSError:  # gone since it was read
        modified = None
    days = when.dropna()
    return store.SourceFile(
        path=str(path), kind=kind, digest=parsed.digest, status=status, rows=len(when), stored=stored,
        first_day=days.min().date() if len(days) else None, last_day=days.max().date() if len(days) else None,
        size=parsed.size, modified_at=modified,
    )


# ----------------------------------------------------------------------------------------------
# problems


class _Report:
    """The problems of one file. Row problems are kept as arrays and described only when shown, so
    a garbage file with a million bad cells costs fifty messages, not a million."""

    def __init__(self, file: str):
        self.file = file
        self._file_problems: list[Problem] = []
        self._batches: list[tuple[np.ndarray, int, Callable[[int], tuple[str, str]]]] = []

    def add(self, where: str, message: str) -> None:
        self._file_problems.append(Problem(self.file, where, message))

    def add_rows(self, lines: np.ndarray, order: int, describe: Callable[[int], tuple[str, str]]) -> None:
        """Record one problem per entry of ``lines``; ``describe(i)`` gives (where, message) of the i-th."""
        if len(lines):
            self._batches.append((np.asarray(lines, dtype=np.int64), order, describe))

    def count(self) -> int:
        return len(self._file_problems) + sum(len(b[0]) for b in self._batches)

    def problems(self, limit: int = MAX_PROBLEMS_PER_FILE) -> list[Problem]:
        """File and header problems first, then row problems by line and column, capped at ``limit``."""
        shown = self._file_problems[:limit]
        room = limit - len(shown)
        if room > 0 and self._batches:
            lines = np.concatenate([b[0] for b in self._batches])
            orders = np.concatenate([np.full(len(b[0]), b[1]) for b in self._batches])
            batch = np.concatenate([np.full(len(b[0]), k) for k, b in enumerate(self._batches)])
            within = np.concatenate([np.arange(len(b[0])) for b in self._batches])
            for k in np.lexsort((orders, lines))[:room]:
                where, message = self._batches[batch[k]][2](int(within[k]))
                shown.append(Problem(self.file, where, message))
        rest = self.count() - len(shown)
        if rest > 0:
            shown.append(Problem(self.file, "", f"... and {rest} more problem{'s' if rest > 1 else ''}"))
        return shown


def _raise_if_problems(reports: Sequence[_Report]) -> None:
    problems = [p for r in reports for p in r.problems()]
    if problems:
        raise DataError(problems)


def _quote(value: object) -> str:
    """A cell as written, repr-quoted so that spaces and control characters show; long ones cut."""
    text = str(value)
    if len(text) > _QUOTE_LIMIT:
        return f"{text[:_QUOTE_LIMIT] + '...'!r} ({len(text)} characters)"
    return repr(text)


def _day(value: np.datetime64 | pd.Timestamp) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def _figure(value: float) -> str:
    """A ceiling as people write it: 10,000,000 or 2,500.5."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


# ----------------------------------------------------------------------------------------------
# reading a file into columns of cells


@dataclass
class _Table:
    """The data rows of one CSV: raw cells per (canonical) column and the line each row starts on."""

    header: dict[str, int]  # column name -> field position, which orders problems within a line
    cells: dict[str, np.ndarray]  # object arrays of the cells as written
    lines: np.ndarray
    digest: str = ""  # sha256 of the file's text, which tells a changed file from an unchanged one
    size: int = 0  # bytes of that text
    _stripped: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.lines)

    def stripped(self, column: str) -> np.ndarray:
        if column not in self._stripped:
            self._stripped[column] = _strip(self.cells[column])
        return self._stripped[column]

    def keep(self, rows: np.ndarray) -> None:
        self.cells = {c: v[rows] for c, v in self.cells.items()}
        self._stripped = {c: v[rows] for c, v in self._stripped.items()}
        self.lines = self.lines[rows]


def _strip(cells: np.ndarray) -> np.ndarray:
    # Strip each distinct value once: ids, dates and names repeat across many rows.
    codes, uniques = pd.factorize(cells)
    stripped = pd.Series(uniques, dtype=object).str.strip().to_numpy(dtype=object)
    return stripped[codes] if len(codes) else np.array([], dtype=object)


def _to_float(cells: np.ndarray) -> np.ndarray:
    """Numbers as float64, NaN where a cell is not a number (surrounding whitespace is fine)."""
    parsed = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce")
    values = parsed.to_numpy(dtype="float64", na_value=np.nan, copy=True)
    # pandas reads a number written with a plus sign ("+1.1") on a path that can be one unit in the
    # last place off; Python reads those few exactly.
    signed = np.fromiter(("+" in cell for cell in cells), dtype=bool, count=len(cells)) & np.isfinite(values)
    for i in np.flatnonzero(signed):
        with contextlib.suppress(ValueError):  # a form pandas reads and Python does not: keep pandas' value
            values[i] = float(cells[i])
    return values


def _read_text(path: Path, report: _Report) -> str | None:
    try:
        data = read_limited(path, expected="a CSV file", limit=MAX_CSV_BYTES)
    except FileReadError as e:
        report.add("", e.reason)
        return None
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            report.add("", "not valid UTF-8 (the file is UTF-16); save the file as UTF-8")
        else:
            report.add("", f"not valid UTF-8 (byte 0x{data[skip + e.start]:02x} at offset {skip + e.start}); "
                       "save the file as UTF-8")
        return None
    # A NUL is valid UTF-8 but never text in a CSV: it comes from UTF-16 without a byte-order mark
    # or from a binary file, and PostgreSQL cannot store it.
    nul = text.find("\0")
    if nul >= 0:
        line = _physical_lines(text[: nul + 1])
        report.add(f"line {line}", f"not valid UTF-8 text (a NUL byte at offset {skip + len(text[:nul].encode())}; "
                   "is the file UTF-16 or binary?); save the file as UTF-8")
        return None
    return text


def _read_table(
    path: Path, required: Sequence[str], optional: Sequence[str], report: _Report, *, blank_ok: bool = False
) -> _Table | None:
    """The file's rows as columns, or None (with problems reported) if its rows cannot be checked.
    With ``blank_ok``, a file with no header either (zero bytes, blank lines) is a table without
    columns or rows rather than a problem."""
    text = _read_text(path, report)
    if text is None:
        return None
    raw = text.encode("utf-8")
    digest, size = hashlib.sha256(raw).hexdigest(), len(raw)
    del raw
    # A million rows are millions of small objects; the cyclic collector would rescan them all
    # repeatedly while they are created, and none of them form cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        table = _split(text, required, optional, report, blank_ok)
    finally:
        if collecting:
            gc.enable()
    if table is not None:
        table.digest, table.size = digest, size
    return table


def _split(text: str, required: Sequence[str], optional: Sequence[str], report: _Report, blank_ok: bool) -> _Table | None:
    try:
        rows: list[list[str]] | None = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        rows = None
    total_lines = _physical_lines(text)
    if rows is not None and len(rows) == total_lines:
        # Every row is exactly one physical line (the csv module turns a blank line into an empty
        # row too), so row i starts on line i + 1 and numbering rows one by one would be wasted time.
        starts = np.arange(1, len(rows) + 1, dtype=np.int64)
    else:
        # A quoted cell spans lines: take each row's line from the csv module as it reads.
        numbered = _rows_with_lines(text, report)
        if numbered is None:
            return None
        rows, starts = numbered

    first = next((i for i, row in enumerate(rows) if any(cell.strip() for cell in row)), None)
    if first is None and blank_ok:
        return _Table(header={}, cells={}, lines=np.empty(0, dtype=np.int64))
    if first is None:
        report.add("", "the file is empty; expected a header line")
        return None
    header, rows = rows[first], rows[first + 1 :]
    ends = np.r_[starts[first + 2 :] - 1, total_lines]  # a row ends where the next one starts
    starts = starts[first + 1 :]
    positions = _check_header(header, required, optional, report)
    if positions is None:
        return None

    width = len(header)
    # Rows of unequal widths make a 1-d array of lists instead of a 2-d array of cells.
    block = np.array(rows, dtype=object) if rows else np.empty((0, width), dtype=object)
    if block.ndim != 2 or block.shape[1] != width:
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        wrong = np.flatnonzero(lengths != width)
        # Blank lines and rows of empty cells carry nothing; any other row of the wrong width does.
        wrong = np.array([i for i in wrong if any(cell.strip() for cell in rows[i])], dtype=np.int64)
        _report_ragged(report, width, lengths[wrong], starts[wrong], ends[wrong])
        right = lengths == width
        rows = [row for row, fits in zip(rows, right) if fits]
        starts = starts[right]
        block = np.array(rows, dtype=object) if rows else np.empty((0, width), dtype=object)
    del rows
    table = _Table(
        header=positions,
        cells={name: block[:, pos] for name, pos in positions.items()},
        lines=starts,
    )
    _drop_empty_rows(table)
    return table


def _physical_lines(text: str) -> int:
    """How many lines the csv module counts in ``text`` (a line ends at \\n, \\r\\n or \\r)."""
    breaks = text.count("\n") + text.count("\r") - text.count("\r\n")
    return breaks + (1 if text and not text.endswith(("\n", "\r")) else 0)


def _rows_with_lines(text: str, report: _Report) -> tuple[list[list[str]], np.ndarray] | None:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[list[str]] = []
    starts: list[int] = []
    start = 1
    try:
        for row in reader:
            rows.append(row)
            starts.append(start)
            start = reader.line_num + 1
    except csv.Error as e:
        if "field limit" in str(e) and reader.line_num == start:
            # the cell never left the row's first line: no quote is missing, the cell is that long
            report.add(f"line {start}", f"expected cells of at most {csv.field_size_limit():,} characters, got a longer one")
            return None
        hint = "; is a closing quote missing?" if "field limit" in str(e) else ""
        report.add(f"line {start}", f"cannot be read as CSV ({e}){hint}")
        return None
    return rows, np.array(starts, dtype=np.int64)


def _report_ragged(report: _Report, width: int, got: np.ndarray, first: np.ndarray, last: np.ndarray) -> None:
    def describe(i: int) -> tuple[str, str]:
        message = f"expected {width} fields as in the header, got {got[i]}"
        if last[i] > first[i]:
            message += f" (the row runs from line {first[i]} to line {last[i]}; is a closing quote missing?)"
        return f"line {first[i]}", message

    report.add_rows(first, _ROW, describe)


def _check_header(
    header: list[str], required: Sequence[str], optional: Sequence[str], report: _Report
) -> dict[str, int] | None:
    """Field position of each known column, or None (with problems reported) if the header is wrong."""
    allowed = list(required) + list(optional)
    allowed_text = ", ".join(allowed)
    positions: dict[str, int] = {}
    before = report.count()
    for pos, raw in enumerate(header):
        name = raw.strip().lower()
        if not name:
            report.add("header", f"field {pos + 1} has no column name; allowed columns: {allowed_text}")
        elif name not in allowed:
            report.add("header", f"unknown column {_quote(raw.strip())}; allowed columns: {allowed_text}")
        elif name in positions:
            report.add("header", f"duplicate column {name!r} (fields {positions[name] + 1} and {pos + 1})")
        else:
            positions[name] = pos
    for name in required:
        if name not in positions:
            report.add("header", f"missing required column {name!r}")
    return positions if report.count() == before else None


def _drop_empty_rows(table: _Table) -> None:
    if not len(table) or not table.header:
        return
    first, *others = table.header
    candidates = np.flatnonzero(table.stripped(first) == "")
    if not len(candidates):
        return
    empty = np.ones(len(candidates), dtype=bool)
    for column in others:
        empty &= _strip(table.cells[column][candidates]) == ""
    if empty.any():
        keep = np.ones(len(table), dtype=bool)
        keep[candidates[empty]] = False
        table.keep(keep)


# ----------------------------------------------------------------------------------------------
# checking cells column by column


class _Cells:
    """Column-wise checks over one table. Each check reports its failing cells and returns the
    parsed column; ``ok`` marks the rows whose cells all passed."""

    def __init__(self, table: _Table, report: _Report):
        self.table = table
        self.report = report
        self.ok = np.ones(len(table), dtype=bool)

    def has(self, column: str) -> bool:
        return column in self.table.header

    def fail(self, column: str, bad: np.ndarray, expected: str | Callable[[int], str]) -> None:
        """Report the cells of ``column`` where ``bad``; ``expected`` may depend on the row index."""
        rows = np.flatnonzero(bad)
        if not len(rows):
            return
        self.ok[rows] = False
        lines = self.table.lines[rows]
        cells = self.table.cells[column]

        def describe(i: int) -> tuple[str, str]:
            row = rows[i]
            what = expected(row) if callable(expected) else expected
            return f"line {lines[i]}, column {column}", f"expected {what}, got {_quote(cells[row])}"

        self.report.add_rows(lines, self.table.header[column], describe)

    def text(self, column: str, default: str | np.ndarray = "", *, plain: bool = False) -> np.ndarray:
        """Stripped cells; ``default`` (a value or a column) where the cell is empty or the column
        absent. ``plain``: an id or a name, which holds no control characters."""
        if not self.has(column):
            return np.broadcast_to(np.asarray(default, dtype=object), (len(self.table),)).copy()
        values = self.table.stripped(column)
        if plain:
            self._plain(column, values)
        return np.where(values == "", default, values).astype(object)

    def required_text(self, column: str, longest: int | None = None) -> np.ndarray:
        """An id: stripped cells, none empty, none with control characters, at most ``longest`` long."""
        values = self.table.stripped(column)
        self.fail(column, values == "", "a non-empty value")
        self._plain(column, values)
        if longest is not None:
            self.fail(column, self._longer(values, longest), f"at most {longest} characters")
        return values

    def bounded_text(self, column: str, longest: int, *, plain: bool = False) -> np.ndarray:
        """``text`` whose cells hold at most ``longest`` characters once stripped."""
        if self.has(column):
            self.fail(column, self._longer(self.table.stripped(column), longest), f"at most {longest} characters")
        return self.text(column, plain=plain)

    def _plain(self, column: str, values: np.ndarray) -> None:
        # ids and names repeat across rows: search each distinct value once
        codes, uniques = pd.factorize(values)
        if len(uniques):
            controls = pd.Series(uniques, dtype=object).str.contains(CONTROL_CHARACTERS).to_numpy(dtype=bool)
            self.fail(column, controls[codes], _PLAIN)

    @staticmethod
    def _longer(values: np.ndarray, longest: int) -> np.ndarray:
        return np.fromiter(map(len, values), dtype=np.int64, count=len(values)) > longest

    def date(self, column: str, *, optional: bool = False) -> np.ndarray:
        """datetime64[ns] dates written YYYY-MM-DD; NaT where empty (if ``optional``) or bad."""
        values = self.table.stripped(column)
        parsed = pd.to_datetime(pd.Series(values, dtype=object), format="%Y-%m-%d", errors="coerce")
        unparsed = parsed.isna().to_numpy()
        if optional:
            unparsed = unparsed & (values != "")
        self.fail(column, unparsed, "a date as YYYY-MM-DD")
        return self._in_range(column, parsed, unparsed)

    def datetime_utc(self, column: str) -> np.ndarray:
        """datetime64[ns] naive UTC from ISO 8601 date-times; an offset is converted, no offset is UTC."""
        values = self.table.stripped(column)
        shaped = pd.Series(values, dtype=object).str.fullmatch(_ISO_DATETIME).to_numpy(dtype=bool)
        parsed = pd.to_datetime(
            pd.Series(np.where(shaped, values, ""), dtype=object), format="ISO8601", utc=True, errors="coerce"
        ).dt.tz_convert(None)
        unparsed = parsed.isna().to_numpy()
        self.fail(column, unparsed, _DATETIME)
        return self._in_range(column, parsed, unparsed)

    def _in_range(self, column: str, parsed: pd.Series, unparsed: np.ndarray) -> np.ndarray:
        # Compare in microseconds: a typo year would overflow nanoseconds.
        stamps = parsed.to_numpy(dtype="datetime64[us]")
        after_last = stamps >= _LAST_DATE + np.timedelta64(1, "D")
        outside = ~unparsed & ~np.isnat(stamps) & ((stamps < _FIRST_DATE) | after_last)
        self.fail(column, outside, _DATE_RANGE)
        stamps = np.where(unparsed | outside, np.datetime64("NaT"), stamps)
        return stamps.astype("datetime64[ns]")

    def number(self, column: str, *, whole: bool = False, high: float | None = None,
               empty: float | None = None, expected: str | None = None, ceiling: float | None = None) -> np.ndarray:
        """Finite numbers >= 0 (``whole``: integers, as int64); an empty cell is ``empty`` if given.
        A number above ``ceiling`` (a source's ``max_row_<column>``) is reported as such."""
        cells = self.table.cells[column]
        codes, uniques = pd.factorize(cells)
        if len(uniques) * 4 < len(cells):
            # Counts repeat a lot: parse each distinct value once.
            values = _to_float(uniques)[codes]
        else:
            values = _to_float(cells)
        blank = np.zeros(len(values), dtype=bool)
        if empty is not None:
            missing = np.flatnonzero(np.isnan(values))
            if len(missing):
                blank[missing[_strip(cells[missing]) == ""]] = True
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values < 0)
            if whole:
                bad |= values != np.floor(values)
                if ceiling is None or ceiling > 2.0**53:  # 1e20 clicks is a whole number: over the ceiling is what is wrong
                    bad |= values > 2.0**53
            if high is not None:
                bad |= values > high
        bad &= ~blank
        if expected is None:
            expected = "a whole number >= 0" if whole else "a number >= 0"
        self.fail(column, bad, expected)
        if ceiling is not None:
            over = ~bad & ~blank & (values > ceiling)
            self.fail(column, over, f"at most {_figure(ceiling)} (the source's max_row_{column})")
            bad |= over
        values = np.where(bad, 0.0, values)
        if empty is not None:
            values[blank] = empty
        # +0.0 turns a written "-0" into 0.
        return values.astype(np.int64) if whole else values + 0.0

    def currency(self, column: str, default: str) -> np.ndarray:
        codes, uniques = pd.factorize(self.table.cells[column])
        uniques = [u.strip() for u in uniques]  # a handful of distinct codes
        valid = np.array([u == "" or bool(_CURRENCY.fullmatch(u)) for u in uniques], dtype=bool)
        upper = np.array([u.upper() if u else default for u in uniques], dtype=object)
        if not len(codes):
            return np.array([], dtype=object)
        self.fail(column, ~valid[codes], "a 3-letter currency code such as USD")
        return upper[codes]

    def choice(self, column: str, choices: Collection[str], expected: str) -> np.ndarray:
        values = self.table.stripped(column)
        self.fail(column, ~pd.Series(values, dtype=object).isin(list(choices)).to_numpy(), expected)
        return values


# ----------------------------------------------------------------------------------------------
# metrics


@dataclass
class _Parsed:
    frame: pd.DataFrame  # every row, bad cells replaced by placeholders; ``_line`` is the file line
    ok: np.ndarray  # rows whose cells all passed
    digest: str  # of the file's text (see _Table)
    size: int


def _parse_metrics(
    path: Path, currency: str, report: _Report, ceilings: Mapping[str, float], *, blank_ok: bool = False
) -> _Parsed | None:
    table = _read_table(path, METRICS_REQUIRED, METRICS_OPTIONAL, report, blank_ok=blank_ok)
    if table is None:
        return None
    if not table.header:  # a blank file (blank_ok)
        return _Parsed(empty_metrics().assign(_line=table.lines), table.lines == 0, table.digest, table.size)
    cells = _Cells(table, report)
    account_id = cells.required_text("account_id", _METRIC_LENGTHS["account_id"])
    campaign_id = cells.required_text("campaign_id", _METRIC_LENGTHS["campaign_id"])
    frame = pd.DataFrame(
        {
            "date": cells.date("date"),
            "hour": (
                cells.number("hour", whole=True, high=23, empty=DAILY, expected=_HOUR)
                if cells.has("hour")
                else np.full(len(table), DAILY, dtype=np.int64)
            ),
            "account_id": account_id,
            "account_name": cells.text("account_name", default=account_id, plain=True),
            "campaign_id": campaign_id,
            "campaign_name": cells.text("campaign_name", default=campaign_id, plain=True),
            "currency": (
                cells.currency("currency", currency.upper())
                if cells.has("currency")
                else np.full(len(table), currency.upper(), dtype=object)
            ),
            "spend": cells.number("spend", ceiling=ceilings.get("spend")),
            "impressions": (
                cells.number("impressions", whole=True, empty=0, ceiling=ceilings.get("impressions"))
                if cells.has("impressions")
                else 0
            ),
            "clicks": cells.number("clicks", whole=True, ceiling=ceilings.get("clicks")),
            "leads": cells.number("leads", ceiling=ceilings.get("leads")),
            "_line": table.lines,
        }
    )
    return _Parsed(frame, cells.ok, table.digest, table.size)


def _check_metric_keys(parsed: Sequence[_Parsed | None], reports: Sequence[_Report]) -> None:
    """Report duplicate (account_id, campaign_id, date, hour) keys, and campaign-days with both a
    daily row and hourly rows, within and across files; the first occurrence is the one kept."""
    key = ["account_id", "campaign_id", "date", "hour"]
    day = key[:3]
    frames = [
        p.frame.loc[p.ok, key + ["_line"]].assign(_file=i)
        for i, p in enumerate(parsed)
        if p is not None and p.ok.any()
    ]
    if not frames:
        return
    rows = pd.concat(frames, ignore_index=True)  # in file order, then line order

    duplicated = rows.duplicated(key, keep=False).to_numpy()
    if duplicated.any():
        dups = rows[duplicated]
        first = dups.groupby(key, sort=False)[["_file", "_line"]].transform("first")
        later = (dups["_file"] != first["_file"]) | (dups["_line"] != first["_line"])
        _report_pairs(reports, dups[later], first[later], "duplicate of {other}", key)

    daily = (rows["hour"] == DAILY).to_numpy()
    if daily.any() and not daily.all():
        first_hourly = rows[~daily].drop_duplicates(day)[day + ["_file", "_line"]]
        clash = rows[daily].drop_duplicates(day).merge(first_hourly, on=day, suffixes=("", "_other"))
        other = clash[["_file_other", "_line_other"]].set_axis(["_file", "_line"], axis=1)
        _report_pairs(
            reports,
            clash,
            other,
            "daily row (empty hour) for a campaign-day that also has hourly rows, first on {other}",
            day,
            suffix="; use either one daily row or hourly rows",
        )


def _report_pairs(reports: Sequence[_Report], rows: pd.DataFrame, others: pd.DataFrame,
                  template: str, key: list[str], suffix: str = "") -> None:
    """One row problem per row of ``rows``, naming the row of ``others`` it conflicts with."""
    for f, report in enumerate(reports):
        mine = (rows["_file"] == f).to_numpy()
        if not mine.any():
            continue
        here = rows[mine].reset_index(drop=True)
        there = others[mine].reset_index(drop=True)

        def describe(
            i: int, here: pd.DataFrame = here, there: pd.DataFrame = there, f: int = f
        ) -> tuple[str, str]:
            other_file, other = int(there.at[i, "_file"]), f"line {there.at[i, '_line']}"
            if other_file != f:
                other += f" of {reports[other_file].file}"
            parts = [f"account_id {here.at[i, 'account_id']!r}", f"campaign_id {here.at[i, 'campaign_id']!r}",
                     f"date {_day(here.at[i, 'date'])}"]
            if "hour" in key and here.at[i, "hour"] != DAILY:
                parts.append(f"hour {here.at[i, 'hour']}")
            message = template.format(other=other)
            return f"line {here.at[i, '_line']}", f"{message} ({', '.join(parts)}){suffix}"

        report.add_rows(here["_line"].to_numpy(), _ROW, describe)


# ----------------------------------------------------------------------------------------------
# change history


def _parse_changes(path: Path, report: _Report, *, blank_ok: bool = False) -> _Parsed | None:
    table = _read_table(path, CHANGES_REQUIRED, CHANGES_OPTIONAL, report, blank_ok=blank_ok)
    if table is None:
        return None
    if not table.header:  # a blank file (blank_ok)
        return _Parsed(empty_changes(), table.lines == 0, table.digest, table.size)
    cells = _Cells(table, report)
    frame = pd.DataFrame(
        {
            "changed_at": cells.datetime_utc("changed_at"),
            "account_id": cells.required_text("account_id", _CHANGE_LENGTHS["account_id"]),
            **{
                c: cells.bounded_text(c, _CHANGE_LENGTHS[c], plain=c == "campaign_id") if c in _CHANGE_LENGTHS else cells.text(c)
                for c in CHANGES_OPTIONAL
            },
        }
    )
    return _Parsed(frame, cells.ok, table.digest, table.size)


# ----------------------------------------------------------------------------------------------
# ownership


def _parse_ownership(path: Path, parties: Collection[str], report: _Report) -> pd.DataFrame | None:
    table = _read_table(path, OWNERSHIP_REQUIRED, OWNERSHIP_OPTIONAL, report)
    if table is None:
        return None
    cells = _Cells(table, report)
    known = sorted(set(parties))
    listed = ", ".join(repr(p) for p in known) if known else "(none are configured)"
    frame = pd.DataFrame(
        {
            "account_id": cells.required_text("account_id"),
            "campaign_id": cells.text("campaign_id", plain=True),
            "party": cells.choice("party", known, f"one of the parties {listed}"),
            "start": cells.date("start"),
            "end": (
                cells.date("end", optional=True)
                if cells.has("end")
                else np.full(len(table), np.datetime64("NaT", "ns"))
            ),
            "_line": table.lines,
        }
    )
    start, end = frame["start"].to_numpy(), frame["end"].to_numpy()
    not_after = ~np.isnat(start) & ~np.isnat(end) & (end <= start)
    cells.fail("end", not_after, lambda row: f"a date after start {_day(start[row])}")
    _check_overlaps(frame[cells.ok], report)
    return frame


def _check_overlaps(frame: pd.DataFrame, report: _Report) -> None:
    """Report each period that starts before an earlier-starting period of the same account/campaign ends."""
    if len(frame) < 2:
        return
    periods = frame.sort_values(["account_id", "campaign_id", "start", "_line"], kind="stable")
    periods = periods.reset_index(drop=True)
    group = periods.groupby(["account_id", "campaign_id"], sort=False).ngroup().to_numpy()
    start = periods["start"].to_numpy().astype(np.int64)
    end = np.where(periods["end"].isna(), np.iinfo(np.int64).max, periods["end"].to_numpy().astype(np.int64))
    latest_end = pd.Series(end).groupby(group).cummax().to_numpy()
    # The row holding its group's latest end so far; a group's first row always holds it, so a
    # running maximum of positions never reaches back into the previous group.
    holder = np.maximum.accumulate(np.where(end == latest_end, np.arange(len(end)), -1))
    same_group = np.r_[False, group[1:] == group[:-1]]
    previous_end = np.r_[np.iinfo(np.int64).min, latest_end[:-1]]
    previous_holder = np.r_[-1, holder[:-1]]
    overlapping = np.flatnonzero(same_group & (start < previous_end))
    if not len(overlapping):
        return

    def span(row: int) -> str:
        until = periods.at[row, "end"]
        return f"{_day(periods.at[row, 'start'])} to {'(no end)' if pd.isna(until) else _day(until)}"

    def describe(i: int) -> tuple[str, str]:
        row = overlapping[i]
        other = previous_holder[row]
        campaign = periods.at[row, "campaign_id"]
        scope = f"campaign_id {campaign!r}" if campaign else "the whole account"
        return (
            f"line {periods.at[row, '_line']}",
            f"period {span(row)} overlaps line {periods.at[other, '_line']}'s period {span(other)} "
            f"(account_id {periods.at[row, 'account_id']!r}, {scope})",
        )

    report.add_rows(periods["_line"].to_numpy()[overlapping], _ROW, describe)


# ----------------------------------------------------------------------------------------------
# file lists


def _expand(entries: Sequence[str | Path]) -> list[Path]:
    """Paths in order, globs expanded (sorted, directories skipped), each file once."""
    paths: dict[Path, Path] = {}
    for entry in entries:
        text = str(entry)
        if any(ch in text for ch in "*?["):
            found = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if not Path(p).is_dir()]
        else:
            found = [Path(text)]
        for path in found:
            paths.setdefault(path.resolve(), path)
    return list(paths.values())
