"""How late each account's leads arrive, as the store learns it from successive pulls.

A small world whose platform reports 60% of a day's leads on the day, 85% a day later, 95% two
days later and all of them from the third day on (each day a little off those shares). A CSV
export of it is rewritten and pulled every day for five weeks, as ``anomaly serve`` does, on SQLite
and PostgreSQL; ``Store.lead_completeness`` must give the shares back.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from anomaly.alerts import make_sinks
from anomaly.analysis import Project
from anomaly.config import load_config
from anomaly.errors import AnomalyError
from anomaly.ownership import ownership_periods
from anomaly.pipeline import pull_source, run_cycle
from anomaly.schema import DAILY, METRIC_COLUMNS, empty_changes, normalise_metrics
from anomaly.store import SCHEMA_VERSION, SETTLED_DAYS, Store, leads_seen, schema_version
from tests.helpers import copy_default_project

START = dt.date(2026, 3, 2)
DAYS = 35  # pulled every day from START: 21 days are settled (SETTLED_DAYS before the last) at the end
LAST = START + dt.timedelta(days=DAYS - 1)
SHARES = (0.6, 0.85, 0.95, 1.0)  # of a day's final leads reported 0, 1, 2, 3 (and more) days after it
JITTER = 0.05  # each day's share is off by up to this fraction of it

#: (account_id, campaign_id, first day, hourly): A is pulled from the start; B only from day 15, so it
#: has 6 settled days at the end; H reports by the hour only, like A's campaign a3
CAMPAIGNS = [
    ("A", "a1", START, False),
    ("A", "a2", START, False),
    ("A", "a3", START, True),
    ("B", "b1", START + dt.timedelta(days=15), False),
    ("H", "h1", START, True),
]


def _final_leads() -> dict[tuple[str, dt.date], float]:
    rng = np.random.default_rng(7)
    days = [START + dt.timedelta(days=i) for i in range(DAYS + 7)]  # and the week after LAST
    return {(campaign, day): float(rng.integers(5, 16)) for _, campaign, _, _ in CAMPAIGNS for day in days}


FINAL = _final_leads()
_OFF = np.random.default_rng(11).uniform(-JITTER, JITTER, size=(DAYS + 7, len(SHARES)))


def reported(campaign: str, day: dt.date, today: dt.date, hourly: bool) -> float:
    """The leads of ``campaign`` on ``day`` as a pull on ``today`` sees them. The hourly campaigns
    report nothing on the day and everything after: were they counted, the shares would be far off."""
    k = (today - day).days
    if hourly:
        return FINAL[campaign, day] if k > 0 else 0.0
    if k >= len(SHARES) - 1:
        return FINAL[campaign, day]
    return round(FINAL[campaign, day] * SHARES[k] * (1 + _OFF[(day - START).days, k]), 4)


def as_pulled(today: dt.date) -> pd.DataFrame:
    """The world's metrics up to ``today`` as the platform reports them on ``today``."""
    rows = []
    for account, campaign, first, hourly in CAMPAIGNS:
        for i in range((today - first).days + 1):
            day = first + dt.timedelta(days=i)
            leads = reported(campaign, day, today, hourly)
            base = {"date": day, "account_id": account, "account_name": account, "campaign_id": campaign, "campaign_name": campaign,
                    "currency": "EUR", "impressions": 2000, "clicks": 100}
            if hourly:
                rows += [{**base, "hour": h, "spend": 25.0, "clicks": 25, "impressions": 500, "leads": leads / 4} for h in (9, 10, 11, 12)]
            else:
                rows.append({**base, "hour": DAILY, "spend": 100.0, "leads": leads})
    return normalise_metrics(pd.DataFrame(rows, columns=METRIC_COLUMNS))


def write_export(path: Path, frame: pd.DataFrame) -> None:
    """``frame`` as the platform's CSV export (an empty ``hour`` for a daily row)."""
    frame = frame.copy()
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    frame["hour"] = frame["hour"].map(lambda h: "" if h == DAILY else str(h))
    frame[["date", "hour", "account_id", "campaign_id", "spend", "impressions", "clicks", "leads"]].to_csv(path, index=False)


@pytest.fixture
def pulled(store: Store, tmp_path: Path):
    """The store after a pull of the export on each of the DAYS days; returns (config, export path)."""
    config_path = copy_default_project(tmp_path)
    export = tmp_path / "ads.csv"
    write_export(export, as_pulled(START))
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    raw["sources"] = [{"name": "ads", "type": "csv", "metrics": ["ads.csv"], "currency": "EUR", "lookback_days": 7}]
    raw["store"]["url"] = store.url
    raw["alerts"] = {"sinks": [{"type": "jsonl", "path": "alerts.jsonl"}]}
    config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    config, _ = load_config(config_path)
    for i in range(DAYS):
        today = START + dt.timedelta(days=i)
        write_export(export, as_pulled(today))
        pull_source(config, config.sources[0], store, today)
    return config, export


def seen_rows(store: Store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(leads_seen).order_by(*leads_seen.primary_key.columns))]


def shares(frame: pd.DataFrame, account: str) -> list[float]:
    return frame.loc[frame["account_id"] == account].sort_values("days_after")["share"].tolist()


# ----------------------------------------------------------------------------------------------
# what the pulls saw


def test_the_shares_are_those_the_platform_reported(pulled, store: Store) -> None:
    completeness = store.lead_completeness(7)

    assert list(completeness.columns) == ["account_id", "days_after", "share"]
    assert completeness.dtypes.tolist() == [store.load_metrics()["account_id"].dtype, np.dtype("int64"), np.dtype("float64")]
    assert completeness.loc[completeness["account_id"] == "A", "days_after"].tolist() == list(range(7))
    assert shares(completeness, "A") == pytest.approx([*SHARES, 1.0, 1.0, 1.0], abs=0.02)
    # B has 6 settled days, fewer than min_days; H reports by the hour only
    assert set(completeness["account_id"]) == {"A"}


def test_each_pull_leaves_the_leads_it_saw_first_of_the_daily_rows(pulled, store: Store) -> None:
    seen = {(r["account_id"], r["date"], r["days_after"]): r["leads"] for r in seen_rows(store)}

    day = LAST - dt.timedelta(days=1)
    daily = [c for a, c, _, hourly in CAMPAIGNS if a == "A" and not hourly]
    assert seen["A", day, 0] == pytest.approx(sum(reported(c, day, day, False) for c in daily))  # a3's hourly rows left out
    assert seen["A", day, 1] == pytest.approx(sum(reported(c, day, LAST, False) for c in daily))
    assert {a for (a, _, _) in seen} == {"A", "B"}  # H reports by the hour only
    # the export is rewritten every day: each pull reads it in full, so each day is seen up to
    # SETTLED_DAYS after it (not only within the cursor minus the 7-day look-back)
    assert {k for (_, _, k) in seen} == set(range(SETTLED_DAYS + 1))


def test_detection_takes_the_learned_shares_in_a_cycle_and_in_a_notebook(pulled, store: Store) -> None:
    config, export = pulled
    learned = shares(store.lead_completeness(config.detection.reporting_lag_days), "A")

    report = run_cycle(config, load_config(export.parent / "config.yaml")[1], ownership_periods(config), store, make_sinks(config), pull_sources=False)
    assert report.as_of == LAST

    detection = Project.open(export.parent / "config.yaml").detection()
    in_a = (detection.panel.campaigns["account_id"] == "A").to_numpy()
    for k in range(3):  # the last day is k = 0
        assert detection.lead_share[-1 - k, in_a] == pytest.approx(learned[k])
    # the accounts that learned nothing take the mean of those that did: A's
    assert detection.lead_share[-1, ~in_a] == pytest.approx(learned[0])


#: lead_completeness(3, **kwargs) → the accounts that have shares. A has 21 settled days with leads, B 6.
THRESHOLDS = [
    ("defaults", {}, {"A"}),
    ("min-days-just-met", {"min_days": 21}, {"A"}),
    ("min-days-not-met", {"min_days": 22}, set()),
    ("B-with-fewer-days-asked", {"min_days": 6}, {"A", "B"}),
    ("history-too-short", {"history_days": 25}, set()),  # 11 of A's settled days in it
]


def test_an_account_needs_enough_settled_days(pulled, store: Store) -> None:
    # one table on one pulled store: the pulls are the slow part
    for case, kwargs, accounts in THRESHOLDS:
        completeness = store.lead_completeness(3, **kwargs)
        assert set(completeness["account_id"]) == accounts, case
    assert shares(store.lead_completeness(3, min_days=6), "B") == pytest.approx(SHARES[:3], abs=0.05)
    # a cycle for an earlier day learns only from the days a cycle then had settled: 11 for A, fewer than 14
    earlier = store.last_metric_day() - dt.timedelta(days=10)
    assert store.lead_completeness(3, as_of=earlier).empty
    assert shares(store.lead_completeness(3, min_days=11, as_of=earlier), "A") == pytest.approx(SHARES[:3], abs=0.03)
    assert store.lead_completeness(3, min_days=12, as_of=earlier).empty


def test_pulling_the_same_day_again_changes_nothing(pulled, store: Store) -> None:
    config, export = pulled
    before = (seen_rows(store), store.lead_completeness(7))

    pull_source(config, config.sources[0], store, LAST)  # the same pull, run again
    assert seen_rows(store) == before[0]

    # later the same day the platform has more leads: the store takes them, the first figures stay
    later = as_pulled(LAST + dt.timedelta(days=3))
    write_export(export, later[later["date"] <= pd.Timestamp(LAST)])
    pull_source(config, config.sources[0], store, LAST)

    assert seen_rows(store) == before[0]
    pd.testing.assert_frame_equal(store.lead_completeness(7), before[1])
    assert store.load_metrics(LAST, LAST)["leads"].sum() == pytest.approx(sum(FINAL[c, LAST] for _, c, _, _ in CAMPAIGNS))


def test_a_bad_file_changes_nothing(pulled, store: Store) -> None:
    config, export = pulled
    before = (seen_rows(store), store.load_metrics())
    tomorrow = LAST + dt.timedelta(days=1)
    write_export(export, as_pulled(tomorrow))
    with export.open("a", encoding="utf-8") as f:
        f.write(f"{tomorrow},,A,a9,-5,100,10,1\n")  # negative spend, at the very end of the file

    with pytest.raises(AnomalyError, match="spend"):
        pull_source(config, config.sources[0], store, tomorrow)

    assert seen_rows(store) == before[0]
    pd.testing.assert_frame_equal(store.load_metrics(), before[1])


# ----------------------------------------------------------------------------------------------
# the store alone


def test_an_empty_store_has_no_shares(store: Store) -> None:
    completeness = store.lead_completeness()
    assert completeness.empty and list(completeness.columns) == ["account_id", "days_after", "share"]


def test_only_days_0_to_settled_days_before_the_pull_are_kept(store: Store) -> None:
    end = LAST - dt.timedelta(days=2)
    frame = as_pulled(LAST)  # two days past the pull's end too, as a clock running ahead would give
    store.ingest("ads", START, end, frame[frame["account_id"] == "A"], empty_changes())

    assert sorted({r["days_after"] for r in seen_rows(store)}) == list(range(SETTLED_DAYS + 1))
    assert min(r["date"] for r in seen_rows(store)) == end - dt.timedelta(days=SETTLED_DAYS)


def test_days_are_counted_back_from_the_last_day_the_pull_has_data_for(store: Store) -> None:
    frame = as_pulled(START)
    frame["date"] = pd.Timestamp("1900-01-01")  # the oldest day a data file may hold, pulled up to the latest
    store.ingest("ads", dt.date(1900, 1, 1), dt.date(2199, 12, 31), frame, empty_changes())

    # an export that ends before the pull's end (made the next morning) counts from its newest day
    assert {row["days_after"] for row in seen_rows(store)} == {0} and set(store.load_metrics()["campaign_id"]) == {"a1", "a2", "a3", "h1"}


def test_an_ingest_failing_after_the_leads_were_counted_keeps_none_of_them(store: Store) -> None:
    frame = as_pulled(LAST)
    unnamed_party = pd.DataFrame({"account_id": ["A"], "campaign_id": [""], "start": [LAST], "party": [None]})  # NOT NULL, written last

    with pytest.raises(sa.exc.IntegrityError):
        store.ingest("ads", START, LAST, frame, empty_changes(), unnamed_party)

    assert seen_rows(store) == [] and store.load_metrics().empty


def test_a_version_9_store_gains_leads_seen(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE leads_seen"))
        conn.execute(schema_version.update().values(version=9))

    store.migrate()

    frame = as_pulled(LAST)
    store.ingest("ads", LAST, LAST, frame[frame["date"] == pd.Timestamp(LAST)], empty_changes())
    assert [(r["account_id"], r["date"], r["days_after"]) for r in seen_rows(store)] == [("A", LAST, 0), ("B", LAST, 0)]
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema_version.c.version)).scalar_one() == SCHEMA_VERSION
