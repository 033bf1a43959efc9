"""The store on SQLite and PostgreSQL: tiny frames in, the same frames out; a bad batch changes nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from anomaly.schema import CHANGE_COLUMNS, DAILY, METRIC_COLUMNS, empty_changes, empty_metrics, normalise_changes, normalise_metrics
from anomaly.store import SCHEMA_VERSION, IncidentWrite, OutboxItem, Store, StoreError, metrics, outbox, pulls, schema_version

D1, D2, D3 = dt.date(2026, 7, 1), dt.date(2026, 7, 2), dt.date(2026, 7, 3)


def metric_rows(*rows: dict[str, Any]) -> pd.DataFrame:
    """Canonical metrics from partial rows; unspecified fields take a fixed default."""
    defaults = {
        "date": D1,
        "hour": DAILY,
        "account_id": "00123",
        "account_name": "Acme",
        "campaign_id": "0042",
        "campaign_name": "Brand",
        "currency": "EUR",
        "spend": 10.0,
        "impressions": 1000,
        "clicks": 10,
        "leads": 1.0,
    }
    return normalise_metrics(pd.DataFrame([{**defaults, **r} for r in rows], columns=METRIC_COLUMNS))


def change_rows(*rows: dict[str, Any]) -> pd.DataFrame:
    defaults = {
        "changed_at": dt.datetime(2026, 7, 1, 9, 30),
        "account_id": "00123",
        "campaign_id": "0042",
        "user_email": "ana@agency.example",
        "resource_type": "CAMPAIGN_BUDGET",
        "operation": "UPDATE",
        "changed_fields": "amount_micros",
    }
    return normalise_changes(pd.DataFrame([{**defaults, **r} for r in rows], columns=CHANGE_COLUMNS))


def ingest(store: Store, frame: pd.DataFrame, *, changes: pd.DataFrame | None = None, source: str = "csv", start=D1, end=D3):
    return store.ingest(source, start, end, frame, empty_changes() if changes is None else changes)


def sort_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["account_id", "campaign_id", "date"], kind="stable").reset_index(drop=True)


def count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


# ----------------------------------------------------------------------------------------------
# schema


def test_migrate_twice_keeps_version_and_data(store: Store) -> None:
    ingest(store, metric_rows({}))
    store.migrate()
    Store(store.url, engine=store.engine).migrate()
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema_version.c.version)).scalars().all() == [SCHEMA_VERSION]
    assert len(store.load_metrics()) == 1


def test_newer_schema_version_is_refused(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(schema_version.update().values(version=SCHEMA_VERSION + 1))
    newer = Store(store.url)
    try:
        with pytest.raises(StoreError) as caught:
            newer.migrate()
    finally:
        newer.engine.dispose()
    assert str(caught.value) == (
        f"the store at {newer.describe()} has schema version {SCHEMA_VERSION + 1}, newer than this "
        f"software understands ({SCHEMA_VERSION}); upgrade the software"
    )


# ----------------------------------------------------------------------------------------------
# metrics


def test_metrics_round_trip_keeps_values_and_dtypes(store: Store) -> None:
    frame = metric_rows(
        {"date": D1, "spend": 12.34, "impressions": 5_000_000_000, "clicks": 7, "leads": 2.5},
        {"date": D2, "spend": 0.0, "impressions": 0, "clicks": 0, "leads": 0.0},
        {"account_id": "0009", "campaign_id": "", "campaign_name": "Überweisung ✓", "currency": "JPY", "leads": 0.333},
    )
    result = ingest(store, frame)

    loaded = store.load_metrics()

    assert (result.metric_rows, result.change_rows) == (3, 0)
    pd.testing.assert_frame_equal(loaded, sort_metrics(frame))
    assert loaded["account_id"].tolist() == ["0009", "00123", "00123"]
    assert loaded["date"].dtype == "datetime64[ns]"


def test_load_metrics_of_an_empty_store_is_the_empty_canonical_frame(store: Store) -> None:
    pd.testing.assert_frame_equal(store.load_metrics(), empty_metrics())


def test_last_pull_end_is_the_latest_end_per_source(store: Store) -> None:
    for source, end in [("csv", D2), ("csv", dt.date(2026, 7, 5)), ("csv", D3), ("google_ads", D1)]:
        store.ingest(source, D1, end, empty_metrics(), empty_changes())

    assert store.last_pull_end("csv") == dt.date(2026, 7, 5)
    assert store.last_pull_end("google_ads") == D1
    assert store.last_pull_end("meta") is None


def test_restated_rows_overwrite_without_duplicates(store: Store) -> None:
    ingest(store, metric_rows({"date": D1, "spend": 10.0, "leads": 1.0}, {"date": D2, "spend": 20.0, "leads": 2.0}))
    ingest(store, metric_rows({"date": D1, "spend": 11.5, "leads": 3.5, "campaign_name": "Brand (renamed)"}))

    loaded = store.load_metrics()

    assert count(store, metrics) == 2
    assert loaded[["date", "campaign_name", "spend", "leads"]].to_dict("records") == [
        {"date": pd.Timestamp(D1), "campaign_name": "Brand (renamed)", "spend": 11.5, "leads": 3.5},
        {"date": pd.Timestamp(D2), "campaign_name": "Brand", "spend": 20.0, "leads": 2.0},
    ]


HOURLY_CASES = [
    pytest.param(
        [{"hour": 0, "spend": 1.0, "clicks": 1, "leads": 0.5}, {"hour": 13, "spend": 2.5, "clicks": 2, "leads": 0.25}],
        [(D1, 3.5, 3, 0.75)],
        id="hours-summed-into-the-day",
    ),
    pytest.param(
        [{"hour": DAILY, "spend": 100.0, "clicks": 9, "leads": 4.0}, {"hour": 3, "spend": 1.0, "clicks": 1, "leads": 1.0}],
        [(D1, 100.0, 9, 4.0)],
        id="daily-row-wins-over-hours",
    ),
    pytest.param(
        [
            {"date": D1, "hour": DAILY, "spend": 50.0, "clicks": 5, "leads": 1.0},
            {"date": D1, "hour": 8, "spend": 7.0, "clicks": 7, "leads": 7.0},
            {"date": D2, "hour": 8, "spend": 4.0, "clicks": 1, "leads": 0.0},
            {"date": D2, "hour": 9, "spend": 6.0, "clicks": 2, "leads": 1.5},
        ],
        [(D1, 50.0, 5, 1.0), (D2, 10.0, 3, 1.5)],
        id="daily-on-one-day-hours-on-the-next",
    ),
]


@pytest.mark.parametrize(("rows", "expected"), HOURLY_CASES)
def test_hourly_rows_become_days(store: Store, rows: list[dict], expected: list[tuple]) -> None:
    ingest(store, metric_rows(*rows))

    loaded = store.load_metrics()

    assert loaded.dtypes.to_dict() == empty_metrics().dtypes.to_dict()
    assert (loaded["hour"] == DAILY).all()
    got = [(d.date(), s, c, lead) for d, s, c, lead in loaded[["date", "spend", "clicks", "leads"]].itertuples(index=False)]
    assert got == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(None, None, [D1, D2, D3], id="unbounded"),
        pytest.param(D2, None, [D2, D3], id="start-inclusive"),
        pytest.param(None, D2, [D1, D2], id="end-inclusive"),
        pytest.param(D2, D2, [D2], id="one-day"),
        pytest.param(dt.date(2026, 8, 1), None, [], id="after-all-data"),
    ],
)
def test_load_metrics_filters_by_date(store: Store, start, end, expected: list[dt.date]) -> None:
    ingest(store, metric_rows({"date": D1}, {"date": D2}, {"date": D3}))

    assert [d.date() for d in store.load_metrics(start, end)["date"]] == expected


# ----------------------------------------------------------------------------------------------
# changes

T0 = dt.datetime(2026, 7, 1, 9, 30)


def test_the_same_change_is_stored_once(store: Store) -> None:
    frame = change_rows({}, {"changed_at": T0 + dt.timedelta(hours=1), "campaign_id": "", "operation": "CREATE"})
    ingest(store, empty_metrics(), changes=frame)
    ingest(store, empty_metrics(), changes=frame)

    pd.testing.assert_frame_equal(store.load_changes(), frame)


@pytest.mark.parametrize(
    ("start", "end", "expected_hours"),
    [
        pytest.param(None, None, [0, 1, 2], id="unbounded"),
        pytest.param(T0 + dt.timedelta(hours=1), None, [1, 2], id="start-inclusive"),
        pytest.param(None, T0 + dt.timedelta(hours=2), [0, 1], id="end-exclusive"),
        pytest.param(T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(hours=1, seconds=1), [1], id="window"),
        pytest.param(T0 + dt.timedelta(days=1), None, [], id="after-all-changes"),
    ],
)
def test_load_changes_filters_by_time(store: Store, start, end, expected_hours: list[int]) -> None:
    ingest(store, empty_metrics(), changes=change_rows(*[{"changed_at": T0 + dt.timedelta(hours=h)} for h in (2, 0, 1)]))

    loaded = store.load_changes(start, end)

    assert loaded["changed_at"].tolist() == [pd.Timestamp(T0 + dt.timedelta(hours=h)) for h in expected_hours]
    assert loaded.dtypes.to_dict() == empty_changes().dtypes.to_dict()


# ----------------------------------------------------------------------------------------------
# a bad batch changes nothing


@pytest.mark.parametrize("stored_before", [pytest.param(False, id="empty-store"), pytest.param(True, id="restating-stored-rows")])
def test_an_ingest_failing_part_way_changes_nothing(store: Store, stored_before: bool) -> None:
    if stored_before:
        ingest(store, metric_rows({"date": D1, "spend": 1.0}), changes=change_rows({}), end=D1)
    before = (store.load_metrics(), store.load_changes(), store.last_pull_end("csv"), count(store, pulls))
    dates = pd.date_range(D1, periods=3000, freq="D")  # row 0 restates the stored D1
    bad = metric_rows({"spend": 99.0}).loc[[0] * len(dates)].reset_index(drop=True).assign(date=dates)
    bad["campaign_name"] = bad["campaign_name"].astype(object)
    bad.loc[2999, "campaign_name"] = None  # violates NOT NULL in the second chunk of 2,000

    with pytest.raises(sa.exc.IntegrityError):
        ingest(store, bad, changes=change_rows({"changed_at": T0 + dt.timedelta(days=1)}), end=dates[-1].date())

    after = (store.load_metrics(), store.load_changes(), store.last_pull_end("csv"), count(store, pulls))
    pd.testing.assert_frame_equal(after[0], before[0])
    pd.testing.assert_frame_equal(after[1], before[1])
    assert after[2:] == before[2:] == ((D1, 1) if stored_before else (None, 0))


# ----------------------------------------------------------------------------------------------
# incidents and the outbox


def incident(**overrides: Any) -> dict[str, Any]:
    """Every NOT NULL column of ``incidents`` (and the nullable ones), as ``incidents._values`` builds them."""
    return {
        "family": "cpl",
        "account_id": "00123",
        "campaign_id": "0042",
        "detected_on": D2,
        "onset": D1,
        "status": "open",
        "last_active": D2,
        "resolved_on": None,
        "severity": "warning",
        "rule": "cpl_ratio",
        "metric": "cpl",
        "observed": 42.5,
        "baseline": 10.0,
        "managing_party": "agency",
        "party_since": D1,
        "excess_cost": 130.25,
        "notified": True,
        "details": {"payload": {"title": "CPL up 4.3x", "currency": "EUR"}, "changes": [{"field": "bid", "at": "2026-07-01"}]},
        **overrides,
    }


def note(sink: str, event: str = "opened", key: str = "2026-07-02") -> dict[str, Any]:
    return {"event": event, "key": key, "sink": sink, "payload": {"title": "CPL up 4.3x", "event": event}}


def outbox_row(store: Store, item_id: int) -> dict[str, Any]:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(outbox).where(outbox.c.id == item_id)).one()._mapping)


def test_a_sink_named_by_a_long_file_path_is_stored(store: Store) -> None:
    sink = "jsonl:/srv/agency/" + "clients/" * 40 + "alerts.jsonl"  # over 300 characters
    assert store.save_incidents([IncidentWrite(None, incident(), (note(sink),))]) == 1
    assert [item.sink for item in store.pending()] == [sink]


def test_outbox_enqueues_once_and_tracks_delivery(store: Store) -> None:
    notes = (note("slack:#media"), note("console"))

    assert store.save_incidents([IncidentWrite(None, incident(), notes)]) == 2
    (stored,) = store.load_incidents()
    assert store.save_incidents([IncidentWrite(stored["id"], incident(), notes)]) == 0

    first, second = store.pending()
    payload = {"title": "CPL up 4.3x", "event": "opened", "incident_id": stored["id"], "acknowledged_at": None, "acknowledged_by": None}
    assert [first, second] == [
        OutboxItem(first.id, stored["id"], "opened", "slack:#media", payload, 0),
        OutboxItem(second.id, stored["id"], "opened", "console", payload, 0),
    ]
    assert first.id < second.id
    assert store.outbox_counts() == {"pending": 2}

    store.mark_failed(first.id, "HTTP 503 from Slack")
    store.mark_failed(first.id, "timeout after 10 s")
    store.mark_sent(second.id)

    assert store.pending() == [OutboxItem(first.id, stored["id"], "opened", "slack:#media", payload, 2)]
    assert outbox_row(store, first.id)["last_error"] == "timeout after 10 s"
    assert outbox_row(store, second.id)["sent_at"] is not None
    assert store.outbox_counts() == {"pending": 1, "sent": 1}

    store.mark_sent(first.id)

    assert store.pending() == []
    assert (outbox_row(store, first.id)["attempts"], outbox_row(store, first.id)["last_error"]) == (3, None)
    assert store.outbox_counts() == {"sent": 2}


def test_an_incidents_notifications_are_listed_with_what_became_of_them(store: Store) -> None:
    store.save_incidents([IncidentWrite(None, incident(), (note("console"), note("slack:C0ALERTS"))), IncidentWrite(None, incident(campaign_id="0077"), (note("console"),))])
    first, other = (row["id"] for row in store.load_incidents())
    console, slack, _ = store.pending()
    store.mark_sent(slack.id, ("C0ALERTS", "1720000000.000100"), now=dt.datetime(2026, 7, 2, 7, 20))
    store.mark_failed(console.id, "disk full")

    listed = store.notifications(first)

    assert [(n["event"], n["sink"], n["status"], n["attempts"], n["last_error"]) for n in listed] == [
        ("opened", "console", "pending", 1, "disk full"),
        ("opened", "slack:C0ALERTS", "sent", 1, None),
    ]
    assert (listed[1]["channel"], listed[1]["ts"], listed[1]["sent_at"]) == ("C0ALERTS", "1720000000.000100", dt.datetime(2026, 7, 2, 7, 20))
    assert "payload" not in listed[0]
    assert [n["incident_id"] for n in store.notifications()] == [first, first, other]


def test_last_metric_day(store: Store) -> None:
    assert store.last_metric_day() is None
    ingest(store, metric_rows({"date": D1}, {"date": D3, "campaign_id": "0077"}))
    assert store.last_metric_day() == D3


def test_a_new_event_for_a_known_incident_is_enqueued(store: Store) -> None:
    store.save_incidents([IncidentWrite(None, incident(), (note("console"),))])
    (stored,) = store.load_incidents()

    assert store.save_incidents([IncidentWrite(stored["id"], incident(severity="critical"), (note("console", "updated", "critical"),))]) == 1
    assert [(i.event, i.payload["event"]) for i in store.pending()] == [("opened", "opened"), ("updated", "updated")]


def test_load_and_update_incidents(store: Store) -> None:
    store.save_incidents(
        [
            IncidentWrite(None, incident(detected_on=D3)),
            IncidentWrite(None, incident(campaign_id="0077", status="resolved", resolved_on=D3, notified=False)),
        ]
    )

    open_ = store.load_incidents(status="open")
    resolved = store.load_incidents(status="resolved")

    assert [(r["campaign_id"], r["detected_on"]) for r in store.load_incidents()] == [("0077", D2), ("0042", D3)]
    assert [r["campaign_id"] for r in open_] == ["0042"]
    assert [(r["campaign_id"], r["resolved_on"], r["notified"]) for r in resolved] == [("0077", D3, False)]
    assert store.load_incidents(status="snoozed") == []
    row = store.load_incident(open_[0]["id"])
    expected = incident(detected_on=D3)
    assert {k: row[k] for k in expected} == expected
    assert isinstance(row["created_at"], dt.datetime) and row["created_at"] == row["updated_at"]

    store.save_incidents(
        [IncidentWrite(row["id"], {"status": "resolved", "resolved_on": D3, "severity": "critical", "details": {"resolved_by_restatement": True}})]
    )

    updated = store.load_incident(row["id"])
    assert updated == {
        **row,
        "status": "resolved",
        "resolved_on": D3,
        "severity": "critical",
        "details": {"resolved_by_restatement": True},
        "updated_at": updated["updated_at"],
    }
    assert updated["updated_at"] >= row["updated_at"]
    assert store.load_incidents(status="open") == []
    assert store.load_incident(row["id"] + 1000) is None


def test_a_failing_incident_batch_enqueues_nothing(store: Store) -> None:
    duplicate = incident()  # same (family, account, campaign, detected_on): uq_incident

    with pytest.raises(sa.exc.IntegrityError):
        store.save_incidents([IncidentWrite(None, incident(), (note("console"),)), IncidentWrite(None, duplicate)])

    assert store.load_incidents() == []
    assert store.pending() == []
    assert store.outbox_counts() == {}


def test_a_version_1_store_gains_client_type_and_keeps_its_changes(store_url):
    store = Store(store_url)
    store.migrate()
    change = normalise_changes(
        pd.DataFrame(
            {"changed_at": [pd.Timestamp("2026-07-09 15:41")], "account_id": ["4821937710"], "campaign_id": ["20118341"],
             "user_email": ["dana.kim@beaconreach.example"], "resource_type": ["CAMPAIGN"], "operation": ["UPDATE"],
             "changed_fields": ["bidding_strategy_type"]}
        )
    )
    store.ingest("csv", dt.date(2026, 7, 9), dt.date(2026, 7, 9), empty_metrics(), change)
    with store.engine.begin() as conn:  # back to how version 1 stored it
        conn.execute(sa.text("ALTER TABLE changes DROP COLUMN client_type"))
        conn.execute(schema_version.update().values(version=1))
    store.migrate()
    loaded = store.load_changes()
    assert loaded["client_type"].tolist() == [""] and loaded["user_email"].tolist() == ["dana.kim@beaconreach.example"]
    store.ingest("csv", dt.date(2026, 7, 9), dt.date(2026, 7, 9), empty_metrics(), change)  # the same change again
    assert len(store.load_changes()) == 1


def test_inferred_ownership_is_kept_and_joined_into_periods(store: Store) -> None:
    from anomaly.schema import normalise_ownership

    def inferred(*rows: tuple) -> pd.DataFrame:
        return normalise_ownership(pd.DataFrame([(a, "", p, s, None) for a, p, s in rows], columns=["account_id", "campaign_id", "party", "start", "end"]))

    day = dt.date(2026, 7, 9)
    store.ingest("ads", day, day, empty_metrics(), empty_changes(), inferred(("A", "agency", "2026-06-12"), ("A", "beacon", "2026-07-08")))
    # a later pull sees only its own window: the partner again, and a hand-back; B for the first time
    store.ingest("ads", day, day, empty_metrics(), empty_changes(), inferred(("A", "beacon", "2026-06-20"), ("A", "agency", "2026-07-20"), ("B", "summit", "2026-07-01")))
    periods = store.load_inferred_ownership()
    assert [(r.account_id, r.party, r.start.date(), None if pd.isna(r.end) else r.end.date()) for r in periods.itertuples()] == [
        ("A", "agency", dt.date(2026, 6, 12), dt.date(2026, 6, 20)),
        ("A", "beacon", dt.date(2026, 6, 20), dt.date(2026, 7, 20)),  # the same party found twice: one period
        ("A", "agency", dt.date(2026, 7, 20), None),
        ("B", "summit", dt.date(2026, 7, 1), None),
    ]


def test_declared_ownership_wins_over_inferred() -> None:
    from anomaly.ownership import with_inferred
    from anomaly.schema import normalise_ownership

    declared = normalise_ownership(pd.DataFrame([("A", "", "agency", "2026-01-01", None)], columns=["account_id", "campaign_id", "party", "start", "end"]))
    inferred = normalise_ownership(pd.DataFrame([("A", "", "beacon", "2026-07-08", None), ("B", "", "summit", "2026-07-01", None)],
                                                columns=["account_id", "campaign_id", "party", "start", "end"]))
    assert with_inferred(declared, inferred)[["account_id", "party"]].values.tolist() == [["A", "agency"], ["B", "summit"]]


def test_the_first_acknowledgement_stands_and_pending_notifications_carry_it(store: Store) -> None:
    store.save_incidents([IncidentWrite(None, incident(), (note("console"),))])
    (stored,) = store.load_incidents()
    at = dt.datetime(2026, 7, 10, 9, 30)

    first = store.acknowledge(stored["id"], "slack:U0DANA (Dana)", now=at)
    again = store.acknowledge(stored["id"], "slack:U0LEE (Lee)", now=at + dt.timedelta(hours=1))

    assert (first["acknowledged_by"], first["acknowledged_at"]) == ("slack:U0DANA (Dana)", at)
    assert (again["acknowledged_by"], again["acknowledged_at"]) == ("slack:U0DANA (Dana)", at)
    (item,) = store.pending()
    assert (item.payload["acknowledged_by"], item.payload["acknowledged_at"]) == ("slack:U0DANA (Dana)", "2026-07-10T09:30:00")
    assert store.acknowledge(stored["id"] + 1, "slack:U0DANA (Dana)") is None


def test_a_version_7_store_gains_acknowledgements_and_group_keys(store: Store) -> None:
    store.save_incidents([IncidentWrite(None, incident(), (note("console"),))])
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE outbox DROP COLUMN group_key"))
        conn.execute(sa.text("ALTER TABLE incidents DROP COLUMN acknowledged_by"))
        conn.execute(sa.text("ALTER TABLE incidents DROP COLUMN acknowledged_at"))
        conn.execute(schema_version.update().values(version=7))

    store.migrate()

    (item,) = store.pending()
    store.mark_sent(item.id, ("C0ALERTS", "1700000000.000100"), group_key="group:1")
    assert outbox_row(store, item.id)["group_key"] == "group:1"
    assert store.acknowledge(item.incident_id, "slack:U0DANA (Dana)")["acknowledged_by"] == "slack:U0DANA (Dana)"
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema_version.c.version)).scalar_one() == SCHEMA_VERSION


def test_an_incomplete_pull_does_not_move_the_cursor(store: Store) -> None:
    store.ingest("ads", D1, D2, empty_metrics(), empty_changes())
    store.ingest("ads", D1, D3, empty_metrics(), empty_changes(), complete=False)  # accounts left out

    assert store.last_pull_end("ads") == D2  # the next pull reaches back past what was left out
    last = store.last_pulls()["ads"]
    assert (last.end, last.complete) == (D3, False)  # while status shows the latest pull


def test_a_version_8_store_counts_its_pulls_complete(store: Store) -> None:
    store.ingest("csv", D1, D2, empty_metrics(), empty_changes())
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE pulls DROP COLUMN complete"))
        conn.execute(schema_version.update().values(version=8))

    store.migrate()

    assert store.last_pull_end("csv") == D2 and store.last_pulls()["csv"].complete
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema_version.c.version)).scalar_one() == SCHEMA_VERSION


# -- the password stays out of messages -----------------------------------------------------------

SECRET = "Pw-7f3a9c2e"


@pytest.mark.parametrize(
    ("url", "described"),
    [
        pytest.param(f"postgresql+psycopg://ads:{SECRET}@db.example:5432/ads", "postgresql+psycopg://ads:***@db.example:5432/ads", id="user-info"),
        pytest.param(
            f"postgresql+psycopg://ads@db.example/ads?sslmode=require&password={SECRET}&sslpassword={SECRET}",
            "postgresql+psycopg://ads@db.example/ads?password=***&sslmode=require&sslpassword=***",
            id="query",
        ),
        pytest.param(f"postgresql+psycopg://ads:{SECRET}@x/y@db.example/ads", "postgresql+psycopg://ads:***@db.example/ads", id="raw-at-and-slash"),
        pytest.param(f"postgresql+psycopg://ads:{SECRET}@x#y?z@db.example:5432/ads", "postgresql+psycopg://ads:***@db.example:5432/ads", id="raw-at-hash-question"),
        pytest.param("postgresql+psycopg://ads@corp:pw@db.example/ads", "postgresql+psycopg://ads@corp:***@db.example/ads", id="at-in-the-user-name"),
        pytest.param("sqlite:////srv/anomaly/anomaly.db", "sqlite:////srv/anomaly/anomaly.db", id="sqlite"),
    ],
)
def test_describe_hides_the_password_wherever_the_url_holds_it(url: str, described: str) -> None:
    assert Store(url).describe() == described


def test_an_unreachable_store_names_it_without_the_password() -> None:
    with pytest.raises(StoreError) as raised:
        Store(f"postgresql+psycopg://ads:{SECRET}@127.0.0.1:1/ads?password={SECRET}").migrate()
    assert str(raised.value).startswith("cannot open the store at postgresql+psycopg://ads:***@127.0.0.1:1/ads?password=***: ")
    assert "Pw-" not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql+psycopg://ads:Pw@7f3a@127.0.0.1:1/ads", id="the-rest-read-as-the-host"),
        pytest.param("postgresql+psycopg://ads:Pw@7f3a:99@127.0.0.1:1/ads", id="the-rest-read-as-a-port"),
    ],
)
def test_a_password_with_a_raw_at_sign_is_named_as_the_problem_never_quoted(url: str) -> None:
    with pytest.raises(StoreError) as raised:
        Store(url).migrate()
    message = str(raised.value)
    assert "postgresql+psycopg://ads:***@127.0.0.1:1/ads: the URL does not read as meant" in message
    assert "percent-encoded (%40" in message and "7f3a" not in message


def test_a_store_failure_that_needs_someone_to_act_names_the_store_without_the_password() -> None:
    from types import SimpleNamespace

    from anomaly.store import _explain_failure

    url = sa.make_url(f"postgresql+psycopg://ads:{SECRET}@db.example/ads?password={SECRET}")
    context = SimpleNamespace(original_exception=Exception("canceling statement due to lock timeout"), engine=SimpleNamespace(url=url))
    with pytest.raises(StoreError) as raised:
        _explain_failure(context)
    assert str(raised.value).startswith("the store at postgresql+psycopg://ads:***@db.example/ads?password=*** could not be written: ")
