"""A CSV source across pulls, through ``pull_source``, ``anomaly run`` and ``anomaly status`` on SQLite
and PostgreSQL: what it refuses as beyond any real account, and which files it reads. A file new or
changed since it was last read is read in full whatever its dates, an unchanged one for the
look-back only; an empty one is reported and is no data; a refused one leaves no trace, its hash
included."""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from anomaly import sample
from anomaly.cli import main
from anomaly.config import Config, load_config
from anomaly.errors import DataError
from anomaly.pipeline import PullReport, pull_lines, pull_source
from anomaly.schema import empty_changes
from anomaly.service import status_text
from anomaly.store import SCHEMA_VERSION, SourceFile, Store, pulls, schema_version, source_files
from tests.helpers import copy_default_project

HEADER = "date,account_id,campaign_id,spend,clicks,leads\n"
D = dt.date(2026, 7, 10)
#: the files' modification time, fixed so that "the latest file" is known
MODIFIED = dt.datetime(2026, 7, 10, 6, 30)


def configure(folder: Path, store: Store, **settings) -> Config:
    """The default project with one CSV source, ``partner``: every ``exports/*.csv``, a look-back of 2 days."""
    path = copy_default_project(folder)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["store"]["url"] = store.url
    raw["sources"] = [{"name": "partner", "type": "csv", "metrics": ["exports/*.csv"], "lookback_days": 2, **settings}]
    raw["alerts"] = {"sinks": [{"type": "jsonl", "path": "alerts.jsonl"}]}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    (folder / "exports").mkdir(exist_ok=True)
    return load_config(path)[0]


def export(folder: Path, name: str, rows: str, *, minutes: int = 0) -> Path:
    """``exports/name`` holding ``rows`` (after the header unless they start with one), modified
    ``minutes`` after MODIFIED."""
    path = folder / "exports" / name
    path.write_text(rows if rows.startswith("date,") or not rows else HEADER + rows, encoding="utf-8")
    stamp = (MODIFIED + dt.timedelta(minutes=minutes)).replace(tzinfo=dt.UTC).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def days(first: dt.date, last: dt.date, campaign: str = "55", spend: str = "100") -> str:
    count = (last - first).days + 1
    return "".join(f"{first + dt.timedelta(days=i)},1001,{campaign},{spend},50,2\n" for i in range(count))


def stored(store: Store) -> list[tuple[str, str, float]]:
    """(campaign, day, spend) of every stored metrics row."""
    frame = store.load_metrics()
    return [(r.campaign_id, f"{r.date:%Y-%m-%d}", r.spend) for r in frame.itertuples()]


def source_lines(config: Config, store: Store) -> list[str]:
    """The lines ``anomaly status`` prints about the source ``partner`` (its pull and files)."""
    lines = status_text(config, store, "config.yaml").splitlines()
    first = lines.index(next(line for line in lines if line.startswith("  partner: ")))
    last = next(i for i in range(first, len(lines)) if lines[i].startswith("    next run "))
    return lines[first:last]


def when(store: Store) -> str:
    return f"{store.last_pulls()['partner'].pulled_at:%Y-%m-%d %H:%M:%S} UTC"


# ----------------------------------------------------------------------------------------------
# beyond any real account


def test_a_spend_of_1e300_is_refused_and_opens_no_incident(tmp_path: Path, store_url: str, capsys) -> None:
    """The sample portfolio with one day's spend written as 1e300: before, it was stored and opened
    incidents with an excess of about 1e300; now the file is refused with its line and the store
    holds nothing from it."""
    path = copy_default_project(tmp_path)
    sample.write_sample(tmp_path / "sample")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["store"]["url"] = store_url
    raw["alerts"] = {"sinks": [{"type": "jsonl", "path": "alerts.jsonl"}]}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    metrics = tmp_path / "sample" / "metrics.csv"
    rows = list(csv.reader(metrics.open(encoding="utf-8", newline="")))
    line = next(i for i, row in enumerate(rows) if row[0] == f"{sample.END}" and row[3] == "20118341") + 1
    rows[line - 1][rows[0].index("spend")] = "1e300"
    with metrics.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out, lineterminator="\n").writerows(rows)

    assert main(["--config", str(path), "run", "--today", f"{sample.END + dt.timedelta(days=1)}"]) == 1

    assert f"{metrics}: line {line}, column spend: expected at most 10,000,000 (the source's max_row_spend), got '1e300'" in capsys.readouterr().err
    store = Store(store_url)
    try:
        assert store.load_metrics().empty and store.load_incidents() == [] and store.last_pulls() == {}
        assert store.file_digests("sample") == {}
    finally:
        store.engine.dispose()
    assert not (tmp_path / "alerts.jsonl").exists()


def test_an_id_with_a_newline_is_refused_and_nothing_is_stored(tmp_path: Path, store: Store) -> None:
    config = configure(tmp_path, store)
    export(tmp_path, "a.csv", days(D - dt.timedelta(days=1), D))
    pull_source(config, config.sources[0], store, D)
    before = stored(store)
    bad = export(tmp_path, "b.csv", f'{D},1001,"55\n56",100,50,2\n')

    with pytest.raises(DataError) as excinfo:
        pull_source(config, config.sources[0], store, D + dt.timedelta(days=1))

    assert str(excinfo.value) == (
        f"{bad}: line 2, column campaign_id: expected text without control characters "
        "(a line break, tab, NUL or other C0/C1 control), got '55\\n56'"
    )
    assert stored(store) == before and "\n" not in "".join(c for c, _, _ in stored(store))
    assert set(store.file_digests("partner")) == {str(tmp_path / "exports" / "a.csv")}


def test_a_source_can_raise_its_ceilings(tmp_path: Path, store: Store) -> None:
    config = configure(tmp_path, store, currency="JPY", max_row_spend=500_000_000)
    export(tmp_path, "a.csv", days(D, D, spend="80000000"))
    pull_source(config, config.sources[0], store, D)
    assert stored(store) == [("55", f"{D}", 80_000_000.0)]


# ----------------------------------------------------------------------------------------------
# which files a pull reads


def test_a_late_export_for_days_before_the_look_back_is_read_when_it_arrives(tmp_path: Path, store: Store) -> None:
    """A partner export a week late, for days long before the cursor's look-back: before, its rows
    were never read (the pull said ``0 metric rows``); now the file is new, so it is read in full."""
    config = configure(tmp_path, store)
    export(tmp_path, "2026-07-09.csv", days(dt.date(2026, 7, 1), D - dt.timedelta(days=1)))
    pull_source(config, config.sources[0], store, D - dt.timedelta(days=1))
    late = export(tmp_path, "late-week.csv", days(dt.date(2026, 6, 29), dt.date(2026, 7, 3), campaign="77"), minutes=5)

    report = pull_source(config, config.sources[0], store, D)

    assert (report.start, report.end, report.metric_rows) == (D - dt.timedelta(days=3), D, 3 + 5)  # 07-07..07-09 of the unchanged file
    assert [day for campaign, day, _ in stored(store) if campaign == "77"] == [f"2026-06-{d}" for d in (29, 30)] + [f"2026-07-0{d}" for d in (1, 2, 3)]
    assert pull_lines(report) == [
        f"pulled partner {D - dt.timedelta(days=3)}..{D}: 8 metric rows, 0 changes",
        "  files: 2 read (1 new, 1 unchanged)",
        f"  new: {late}: 5 row(s) dated 2026-06-29..2026-07-03, all stored",
        f"  latest file: {late}, modified 2026-07-10 06:35:00 UTC",
    ]
    assert source_lines(config, store) == [
        f"  partner: last pull {when(store)}: {D - dt.timedelta(days=3)}..{D}, 8 metric row(s), 0 change(s)",
        "    files: 2 read (1 new, 1 unchanged)",
        f"    new: {late}: 5 row(s) dated 2026-06-29..2026-07-03, all stored",
        f"    latest file: {late}, modified 2026-07-10 06:35:00 UTC",
    ]


def test_rows_appended_for_a_past_day_are_read(tmp_path: Path, store: Store) -> None:
    """Rows appended to a file for a day before the look-back: before, skipped (``0 metric rows``);
    now the file has changed, so it is read in full."""
    config = configure(tmp_path, store)
    path = export(tmp_path, "metrics.csv", days(dt.date(2026, 7, 1), D))
    pull_source(config, config.sources[0], store, D)
    export(tmp_path, "metrics.csv", days(dt.date(2026, 7, 1), D) + days(dt.date(2026, 7, 2), dt.date(2026, 7, 2), campaign="56"))

    report = pull_source(config, config.sources[0], store, D)

    assert ("56", "2026-07-02", 100.0) in stored(store)
    assert report.metric_rows == 11
    assert pull_lines(report)[1:3] == ["  files: 1 read (1 changed)", f"  changed: {path}: 11 row(s) dated 2026-07-01..{D}, all stored"]


def test_an_unchanged_file_is_read_for_the_look_back_only(tmp_path: Path, store: Store) -> None:
    config = configure(tmp_path, store)
    path = export(tmp_path, "metrics.csv", days(dt.date(2026, 6, 1), D))
    first = pull_source(config, config.sources[0], store, D)
    second = pull_source(config, config.sources[0], store, D + dt.timedelta(days=1))

    assert (first.metric_rows, second.metric_rows) == (40, 3)  # then D - 2 .. D: the look-back's days only
    assert pull_lines(second)[1:] == ["  files: 1 read (1 unchanged)", f"  latest file: {path}, modified 2026-07-10 06:30:00 UTC"]
    assert store.last_pull_files("partner") == [
        SourceFile(str(path), "metrics", store.file_digests("partner")[str(path)], "unchanged", 40, 3,
                   dt.date(2026, 6, 1), D, path.stat().st_size, MODIFIED)
    ]


@pytest.mark.parametrize(
    "content, why",
    [pytest.param(HEADER, "no data rows", id="header-only"), pytest.param("", "0 bytes", id="zero-bytes")],
)
def test_an_empty_file_is_reported_and_does_not_move_the_cursor(tmp_path: Path, store: Store, content: str, why: str) -> None:
    config = configure(tmp_path, store)
    path = export(tmp_path, "metrics.csv", days(D - dt.timedelta(days=1), D))
    pull_source(config, config.sources[0], store, D)
    export(tmp_path, "metrics.csv", content, minutes=60)

    report = pull_source(config, config.sources[0], store, D + dt.timedelta(days=1))

    assert report.no_rows and report.cursor == D and store.last_pull_end("partner") == D
    assert pull_lines(report) == [
        f"pulled partner {D - dt.timedelta(days=2)}..{D + dt.timedelta(days=1)}: 0 metric rows, 0 changes",
        "  files: 1 read (1 changed), 1 empty",
        f"  empty: {path} ({why}): not counted as data",
        f"  latest file: {path}, modified 2026-07-10 07:30:00 UTC",
        f"  no metrics file holds a row, which is no data (not zero activity): the cursor stays at {D}",
    ]
    assert source_lines(config, store) == [
        f"  partner: last pull {when(store)}: {D - dt.timedelta(days=2)}..{D + dt.timedelta(days=1)}, 0 metric row(s), 0 change(s); "
        f"no metrics file holds a row, which is no data (not zero activity): the cursor stays at {D}",
        "    files: 1 read (1 changed), 1 empty",
        f"    empty: {path} ({why}): not counted as data",
        f"    latest file: {path}, modified 2026-07-10 07:30:00 UTC",
    ]
    # the next day's export with rows moves it on, and the days it holds are stored
    export(tmp_path, "metrics.csv", days(D + dt.timedelta(days=1), D + dt.timedelta(days=1)))
    assert pull_source(config, config.sources[0], store, D + dt.timedelta(days=1)).metric_rows == 1
    assert store.last_pull_end("partner") == D + dt.timedelta(days=1)


def test_an_empty_file_beside_files_with_rows_is_reported_and_the_cursor_moves(tmp_path: Path, store: Store) -> None:
    config = configure(tmp_path, store)
    export(tmp_path, "2026-07-09.csv", days(D - dt.timedelta(days=1), D - dt.timedelta(days=1)))
    empty = export(tmp_path, "2026-07-10.csv", HEADER, minutes=1)

    report = pull_source(config, config.sources[0], store, D)

    assert not report.no_rows and store.last_pull_end("partner") == D
    assert pull_lines(report)[1:] == [
        "  files: 2 read (2 new), 1 empty",
        f"  new: {tmp_path / 'exports' / '2026-07-09.csv'}: 1 row(s) dated 2026-07-09..2026-07-09, all stored",
        f"  empty: {empty} (no data rows): not counted as data",
        f"  latest file: {empty}, modified 2026-07-10 06:31:00 UTC",
    ]


def test_a_glob_that_finds_no_file_does_not_move_the_cursor(tmp_path: Path, store: Store) -> None:
    config = configure(tmp_path, store)
    report = pull_source(config, config.sources[0], store, D)
    assert report.no_rows and store.last_pull_end("partner") is None
    assert pull_lines(report)[1:] == ["  no metrics file holds a row, which is no data (not zero activity): the source has no cursor yet"]


def test_a_refused_file_leaves_no_hash_and_is_read_in_full_once_fixed(tmp_path: Path, store: Store) -> None:
    config = configure(tmp_path, store)
    export(tmp_path, "a.csv", days(D, D))
    pull_source(config, config.sources[0], store, D)
    digests, pulled = store.file_digests("partner"), store.last_pulls()
    late = export(tmp_path, "late.csv", days(dt.date(2026, 6, 1), dt.date(2026, 6, 2), campaign="77") + f"{D},1001,77,-5,50,2\n")

    with pytest.raises(DataError):
        pull_source(config, config.sources[0], store, D + dt.timedelta(days=1))
    assert store.file_digests("partner") == digests and store.last_pulls() == pulled
    assert [c for c, _, _ in stored(store)] == ["55"]

    export(tmp_path, "late.csv", days(dt.date(2026, 6, 1), dt.date(2026, 6, 2), campaign="77") + f"{D},1001,77,5,50,2\n")
    report = pull_source(config, config.sources[0], store, D + dt.timedelta(days=1))
    assert [(f.path, f.status, f.stored) for f in report.files] == [(str(tmp_path / "exports" / "a.csv"), "unchanged", 1), (str(late), "new", 3)]
    assert sorted(day for c, day, _ in stored(store) if c == "77") == ["2026-06-01", "2026-06-02", f"{D}"]


def test_a_change_history_file_that_arrives_late_is_read_in_full(tmp_path: Path, store: Store) -> None:
    config = configure(tmp_path, store, changes=["exports/changes-*.txt"])
    export(tmp_path, "a.csv", days(D, D))
    pull_source(config, config.sources[0], store, D)
    path = tmp_path / "exports" / "changes-late.txt"
    path.write_text("changed_at,account_id,campaign_id,user_email\n2026-06-15T10:00,1001,55,a@beaconreach.example\n", encoding="utf-8")

    report = pull_source(config, config.sources[0], store, D + dt.timedelta(days=1))

    assert report.change_rows == 1 and store.load_changes()["changed_at"].tolist() == [dt.datetime(2026, 6, 15, 10)]
    assert [(f.kind, f.status, f.rows, f.stored) for f in report.files] == [("metrics", "unchanged", 1, 1), ("changes", "new", 1, 1)]


def test_the_pull_its_cursor_and_its_file_hashes_are_one_transaction(store: Store) -> None:
    metrics = sample.generate_metrics().head(3)
    broken = SourceFile("/exports/a.csv", None, "0" * 64, "new", 3, 3, None, None, 10, None)  # type: ignore[arg-type]
    with pytest.raises(sa.exc.IntegrityError):  # the file's record cannot be written: nothing is
        store.ingest("partner", D, D, metrics, empty_changes(), files=[broken])
    assert store.load_metrics().empty and store.last_pulls() == {} and store.file_digests("partner") == {}


def test_a_version_10_store_gains_the_file_hashes(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE source_files"))
        conn.execute(sa.text("ALTER TABLE pulls DROP COLUMN no_rows"))
        conn.execute(schema_version.update().values(version=10))
        old_pulls = sa.table("pulls", *(sa.column(c) for c in ("source", "start", "end", "metric_rows", "change_rows", "pulled_at", "complete")))
        conn.execute(old_pulls.insert().values(source="partner", start=D, end=D, metric_rows=0, change_rows=0, pulled_at=MODIFIED, complete=True))

    store.migrate()

    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema_version.c.version)).scalar_one() == SCHEMA_VERSION == 12
        assert conn.execute(sa.select(pulls.c.complete, pulls.c.no_rows)).all() == [(True, False)]
        assert conn.execute(sa.select(sa.func.count()).select_from(source_files)).scalar_one() == 0
    assert store.last_pull_end("partner") == D and store.last_pull_files("partner") == []


def test_a_pull_report_of_a_source_without_files_is_one_line() -> None:
    report = PullReport("ads", D, D, 12, 3)
    assert pull_lines(report) == [f"pulled ads {D}..{D}: 12 metric rows, 3 changes"]
