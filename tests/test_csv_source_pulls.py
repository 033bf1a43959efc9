"""A CSV source across pulls, through ``pull_source`` and ``anomaly run`` on SQLite and PostgreSQL:
what it refuses as beyond any real account (a ceiling per row, control characters in ids and
names), with the file, line and column, storing nothing from the file."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
import yaml

from anomaly import sample
from anomaly.cli import main
from anomaly.config import Config, load_config
from anomaly.errors import DataError
from anomaly.pipeline import pull_source
from anomaly.store import Store
from tests.helpers import copy_default_project

HEADER = "date,account_id,campaign_id,spend,clicks,leads\n"
D = dt.date(2026, 7, 10)


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


def export(folder: Path, name: str, rows: str) -> Path:
    """``exports/name`` holding ``rows`` after the header."""
    path = folder / "exports" / name
    path.write_text(HEADER + rows, encoding="utf-8")
    return path


def days(first: dt.date, last: dt.date, campaign: str = "55", spend: str = "100") -> str:
    count = (last - first).days + 1
    return "".join(f"{first + dt.timedelta(days=i)},1001,{campaign},{spend},50,2\n" for i in range(count))


def stored(store: Store) -> list[tuple[str, str, float]]:
    """(campaign, day, spend) of every stored metrics row."""
    frame = store.load_metrics()
    return [(r.campaign_id, f"{r.date:%Y-%m-%d}", r.spend) for r in frame.itertuples()]


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


def test_a_source_can_raise_its_ceilings(tmp_path: Path, store: Store) -> None:
    config = configure(tmp_path, store, currency="JPY", max_row_spend=500_000_000)
    export(tmp_path, "a.csv", days(D, D, spend="80000000"))
    pull_source(config, config.sources[0], store, D)
    assert stored(store) == [("55", f"{D}", 80_000_000.0)]
