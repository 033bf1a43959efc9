"""CSV connector: tiny files with known answers; every error asserted as the whole message."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomaly.config import CsvSourceConfig
from anomaly.errors import DataError
from anomaly.schema import CHANGE_COLUMNS, DAILY, METRIC_COLUMNS, OWNERSHIP_COLUMNS
from connectors.csv_files import CsvConnector, read_changes_csv, read_metrics_csv, read_ownership_csv

HEADER = "date,account_id,campaign_id,spend,clicks,leads\n"
ALLOWED = (
    "allowed columns: date, account_id, campaign_id, spend, clicks, leads, "
    "account_name, campaign_name, currency, impressions, hour"
)


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def message(path: Path, *lines: str) -> str:
    """The whole DataError text for problems of one file, each line given as ``where: message``."""
    return "\n".join(f"{path}: {line}" for line in lines)


# ----------------------------------------------------------------------------------------------
# metrics: one bad file per error class


METRIC_ERRORS = [
    pytest.param(
        HEADER + "2026-07-01,1001,55,100,20,2\n07/01/2026,1001,55,100,20,2\n",
        ["line 3, column date: expected a date as YYYY-MM-DD, got '07/01/2026'"],
        id="unparseable-date",
    ),
    pytest.param(
        HEADER + "2026-02-30,1001,55,100,20,2\n",
        ["line 2, column date: expected a date as YYYY-MM-DD, got '2026-02-30'"],
        id="impossible-date",
    ),
    pytest.param(
        HEADER + "0226-07-01,1001,55,100,20,2\n",
        ["line 2, column date: expected a date between 1900-01-01 and 2199-12-31, got '0226-07-01'"],
        id="date-out-of-range",
    ),
    pytest.param(
        HEADER + "2026-07-01,1001,55,-12.5,20,2\n",
        ["line 2, column spend: expected a number >= 0, got '-12.5'"],
        id="negative-spend",
    ),
    pytest.param(
        HEADER + "2026-07-01,1001,55,\"1,200.50\",20,2\n",
        ["line 2, column spend: expected a number >= 0, got '1,200.50'"],
        id="spend-with-thousands-separator",
    ),
    pytest.param(
        HEADER + "2026-07-01,1001,55,inf,20,2\n",
        ["line 2, column spend: expected a number >= 0, got 'inf'"],
        id="infinite-spend",
    ),
    pytest.param(
        HEADER + "2026-07-01,1001,55,100,20,n/a\n",
        ["line 2, column leads: expected a number >= 0, got 'n/a'"],
        id="non-numeric-leads",
    ),
    pytest.param(
        HEADER + "2026-07-01,1001,55,100,12.5,2\n",
        ["line 2, column clicks: expected a whole number >= 0, got '12.5'"],
        id="fractional-clicks",
    ),
    pytest.param(
        "date,account_id,campaign_id,spend,clicks,leads,impressions\n2026-07-01,1001,55,100,20,2,-3\n",
        ["line 2, column impressions: expected a whole number >= 0, got '-3'"],
        id="negative-impressions",
    ),
    pytest.param(
        HEADER + "2026-07-01, ,55,100,20,2\n",
        ["line 2, column account_id: expected a non-empty value, got ' '"],
        id="empty-account-id",
    ),
    pytest.param(
        "date,account_id,campaign_id,spend,clicks\n2026-07-01,1001,55,100,20\n",
        ["header: missing required column 'leads'"],
        id="missing-column",
    ),
    pytest.param(
        "date,account_id,campaign_id,spend,clicks,leeds\n2026-07-01,1001,55,100,20,2\n",
        [f"header: unknown column 'leeds'; {ALLOWED}", "header: missing required column 'leads'"],
        id="unknown-column",
    ),
    pytest.param(
        "date,account_id,campaign_id,spend,clicks,leads,Spend\n",
        ["header: duplicate column 'spend' (fields 4 and 7)"],
        id="duplicate-column",
    ),
    pytest.param(
        "date,account_id,campaign_id,spend,clicks,leads,\n",
        [f"header: field 7 has no column name; {ALLOWED}"],
        id="unnamed-column",
    ),
    pytest.param(
        HEADER
        + "2026-07-01,1001,55,100,20,2\n2026-07-02,1001,55,100,20,2\n2026-07-01,1001,56,100,20,2\n"
        + "2026-07-01,1001,55,90,10,1\n",
        ["line 5: duplicate of line 2 (account_id '1001', campaign_id '55', date 2026-07-01)"],
        id="duplicate-key",
    ),
    pytest.param(
        "date,hour,account_id,campaign_id,spend,clicks,leads\n"
        "2026-07-01,9,1001,55,100,20,2\n2026-07-01,10,1001,55,100,20,2\n2026-07-01,9.0,1001,55,1,1,1\n",
        ["line 4: duplicate of line 2 (account_id '1001', campaign_id '55', date 2026-07-01, hour 9)"],
        id="duplicate-hourly-key",
    ),
    pytest.param(
        HEADER + "2026-07-01,1001,55,100,20\n",
        ["line 2: expected 6 fields as in the header, got 5"],
        id="wrong-field-count",
    ),
    pytest.param(
        HEADER + '2026-07-01,1001,"55,100,20,2\n2026-07-02,1001,55,100,20,2\n',
        ["line 2: expected 6 fields as in the header, got 3 "
         "(the row runs from line 2 to line 3; is a closing quote missing?)"],
        id="unclosed-quote",
    ),
    pytest.param(
        HEADER + '2026-07-01,1001,"55,100,20,2\n' + "x" * 140_000,
        ["line 2: cannot be read as CSV (field larger than field limit (131072)); "
         "is a closing quote missing?"],
        id="unclosed-quote-runs-past-field-limit",
    ),
    pytest.param(
        "date,hour,account_id,campaign_id,spend,clicks,leads\n"
        "2026-07-01,24,1001,55,100,20,2\n2026-07-01,3.5,1001,55,100,20,2\n2026-07-01,-1,1001,55,1,1,1\n",
        [
            "line 2, column hour: expected an hour 0-23, or empty for a daily row, got '24'",
            "line 3, column hour: expected an hour 0-23, or empty for a daily row, got '3.5'",
            "line 4, column hour: expected an hour 0-23, or empty for a daily row, got '-1'",
        ],
        id="bad-hour",
    ),
    pytest.param(
        "date,account_id,campaign_id,currency,spend,clicks,leads\n2026-07-01,1001,55,US$,100,20,2\n",
        ["line 2, column currency: expected a 3-letter currency code such as USD, got 'US$'"],
        id="bad-currency",
    ),
    pytest.param(
        "date,hour,account_id,campaign_id,spend,clicks,leads\n"
        "2026-07-01,8,1001,55,10,2,0\n2026-07-01,9,1001,55,10,2,0\n2026-07-01,,1001,55,20,4,0\n"
        "2026-07-01,,1001,56,20,4,0\n",
        ["line 4: daily row (empty hour) for a campaign-day that also has hourly rows, first on line 2 "
         "(account_id '1001', campaign_id '55', date 2026-07-01); use either one daily row or hourly rows"],
        id="mixed-daily-hourly",
    ),
    pytest.param(
        HEADER + "2026-07-01,1001,55,100,20,2\n2026-07-01,1001,55,100,20,2\n"
        + "07/02/2026,1001,,-1,x,2\n2026-07-03,1001\n",
        [
            "line 3: duplicate of line 2 (account_id '1001', campaign_id '55', date 2026-07-01)",
            "line 4, column date: expected a date as YYYY-MM-DD, got '07/02/2026'",
            "line 4, column campaign_id: expected a non-empty value, got ''",
            "line 4, column spend: expected a number >= 0, got '-1'",
            "line 4, column clicks: expected a whole number >= 0, got 'x'",
            "line 5: expected 6 fields as in the header, got 2",
        ],
        id="several-problems-together",
    ),
    pytest.param(
        HEADER + "2026-07-01,1001,55," + "9" * 30 + "x" * 70 + ",20,2\n",
        ["line 2, column spend: expected a number >= 0, got "
         "'999999999999999999999999999999xxxxxxxxxx...' (100 characters)"],
        id="huge-cell-truncated",
    ),
    pytest.param(
        HEADER + '2026-07-01,1001,55,100,20,2\n2026-07-01,1001,56,"1\n2",20,2\n2026-07-01,1001,57,100,20,x\n',
        [
            "line 3, column spend: expected a number >= 0, got '1\\n2'",
            "line 5, column leads: expected a number >= 0, got 'x'",
        ],
        id="line-numbers-after-multiline-cell",
    ),
    pytest.param(b"", ["the file is empty; expected a header line"], id="empty-file"),
    pytest.param(b"\xef\xbb\xbf\r\n\r\n", ["the file is empty; expected a header line"], id="blank-file"),
    pytest.param(
        HEADER.encode() + b"2026-07-01,1001,Caf\xe9,100,20,2\n",
        ["not valid UTF-8 (byte 0xe9 at offset 66); save the file as UTF-8"],
        id="non-utf8-bytes",
    ),
    pytest.param(
        HEADER.encode("utf-16"),
        ["not valid UTF-8 (the file is UTF-16); save the file as UTF-8"],
        id="utf16-file",
    ),
]


LIMIT_ERRORS = [
    pytest.param(
        HEADER + "2026-07-01,1001,55,10\x00,2,1\n",
        ["line 2: not valid UTF-8 text (a NUL byte at offset 68; is the file UTF-16 or binary?); save the file as UTF-8"],
        id="nul-byte",
    ),
    pytest.param(
        HEADER.encode("utf-16-le") + "2026-07-01,1001,55,10,2,1\n".encode("utf-16-le"),
        ["line 1: not valid UTF-8 text (a NUL byte at offset 1; is the file UTF-16 or binary?); save the file as UTF-8"],
        id="utf16-without-byte-order-mark",
    ),
    pytest.param(
        HEADER + "2026-07-01," + "1" * 65 + ",55,10,2,1\n",
        ["line 2, column account_id: expected at most 64 characters, got '" + "1" * 40 + "...' (65 characters)"],
        id="account-id-longer-than-the-store-holds",
    ),
    pytest.param(
        HEADER + "2026-07-01,1001," + "Ω" * 65 + ",10,2,1\n",
        ["line 2, column campaign_id: expected at most 64 characters, got '" + "Ω" * 40 + "...' (65 characters)"],
        id="campaign-id-longer-than-the-store-holds",
    ),
    pytest.param(
        HEADER + "2026-07-01,1001,55," + "9" * 140_000 + ",2,1\n",
        ["line 2: expected cells of at most 131,072 characters, got a longer one"],
        id="cell-longer-than-the-csv-limit",
    ),
    pytest.param(
        HEADER + '2026-07-01,1001,55,"' + "9" * 140_000 + '",2,1\n',
        ["line 2: expected cells of at most 131,072 characters, got a longer one"],
        id="quoted-cell-longer-than-the-csv-limit",
    ),
]


PLAIN = "expected text without control characters (a line break, tab, NUL or other C0/C1 control)"
NAMED = "date,account_id,account_name,campaign_id,campaign_name,spend,clicks,leads\n"

CONTROL_ERRORS = [
    pytest.param(
        HEADER + '2026-07-01,"10\n01",55,100,20,2\n2026-07-01,1001,56,100,20,x\n',
        [f"line 2, column account_id: {PLAIN}, got '10\\n01'", "line 4, column leads: expected a number >= 0, got 'x'"],
        id="newline-in-account-id",
    ),
    pytest.param(HEADER + '2026-07-01,1001,"5\r5",100,20,2\n', [f"line 2, column campaign_id: {PLAIN}, got '5\\r5'"], id="carriage-return-in-campaign-id"),
    pytest.param(NAMED + "2026-07-01,1001,Acme,55,Brand\tExact,100,20,2\n", [f"line 2, column campaign_name: {PLAIN}, got 'Brand\\tExact'"], id="tab-in-campaign-name"),
    pytest.param(NAMED + "2026-07-01,1001,Ac\x1b[31mme,55,Brand,100,20,2\n", [f"line 2, column account_name: {PLAIN}, got 'Ac\\x1b[31mme'"], id="escape-in-account-name"),
    pytest.param(NAMED + "2026-07-01,1001,Acme,55,Br\x85and,100,20,2\n", [f"line 2, column campaign_name: {PLAIN}, got 'Br\\x85and'"], id="c1-control-in-campaign-name"),
    pytest.param(HEADER + "2026-07-01,10\x7f01,55,100,20,2\n", [f"line 2, column account_id: {PLAIN}, got '10\\x7f01'"], id="delete-in-account-id"),
    pytest.param(NAMED + "2026-07-01,1001,Acme,55,Brand\u2028Exact,100,20,2\n", [f"line 2, column campaign_name: {PLAIN}, got 'Brand\\u2028Exact'"], id="line-separator-in-campaign-name"),
]


@pytest.mark.parametrize("content, expected", METRIC_ERRORS + LIMIT_ERRORS + CONTROL_ERRORS)
def test_metrics_error(tmp_path, content, expected):
    path = write(tmp_path / "m.csv", content)
    with pytest.raises(DataError) as excinfo:
        read_metrics_csv(path)
    assert str(excinfo.value) == message(path, *expected)


#: the ceilings a CSV source has unless its config says otherwise
CEILINGS = CsvSourceConfig(type="csv", name="s", metrics=["m.csv"]).row_ceilings
IMPRESSIONS = "date,account_id,campaign_id,spend,impressions,clicks,leads\n"


@pytest.mark.parametrize(
    "content, expected",
    [
        pytest.param(
            HEADER + "2026-07-01,1001,55,100,20,2\n2026-07-02,1001,55,1e300,20,2\n",
            ["line 3, column spend: expected at most 10,000,000 (the source's max_row_spend), got '1e300'"],
            id="spend-1e300",
        ),
        pytest.param(
            HEADER + "2026-07-01,1001,55,10000000.01,20,2\n",
            ["line 2, column spend: expected at most 10,000,000 (the source's max_row_spend), got '10000000.01'"],
            id="spend-just-over",
        ),
        pytest.param(
            IMPRESSIONS + "2026-07-01,1001,55,100,1000000001,20,2\n",
            ["line 2, column impressions: expected at most 1,000,000,000 (the source's max_row_impressions), got '1000000001'"],
            id="impressions-over",
        ),
        pytest.param(
            HEADER + "2026-07-01,1001,55,100,1e9,2\n",
            ["line 2, column clicks: expected at most 100,000,000 (the source's max_row_clicks), got '1e9'"],
            id="clicks-over",
        ),
        pytest.param(
            HEADER + "2026-07-01,1001,55,100,20,1000000.5\n",
            ["line 2, column leads: expected at most 1,000,000 (the source's max_row_leads), got '1000000.5'"],
            id="leads-over",
        ),
        pytest.param(
            HEADER + "2026-07-01,1001,55,1e300,20,-1\n",
            ["line 2, column spend: expected at most 10,000,000 (the source's max_row_spend), got '1e300'",
             "line 2, column leads: expected a number >= 0, got '-1'"],
            id="with-other-problems-in-line-and-column-order",
        ),
    ],
)
def test_metrics_beyond_any_real_account(tmp_path, content, expected):
    path = write(tmp_path / "m.csv", content)
    with pytest.raises(DataError) as excinfo:
        read_metrics_csv(path, ceilings=CEILINGS)
    assert str(excinfo.value) == message(path, *expected)


def test_metrics_at_the_ceilings_and_under_raised_ones_load(tmp_path):
    at = write(tmp_path / "at.csv", IMPRESSIONS + "2026-07-01,1001,55,10000000,1000000000,100000000,1000000\n")
    assert read_metrics_csv(at, ceilings=CEILINGS)[["spend", "impressions", "clicks", "leads"]].values.tolist() == [
        [10_000_000, 1_000_000_000, 100_000_000, 1_000_000]
    ]
    yen = CsvSourceConfig(type="csv", name="s", metrics=["m.csv"], currency="JPY", max_row_spend=500_000_000).row_ceilings
    big = write(tmp_path / "yen.csv", HEADER + "2026-07-01,1001,55,80000000,20,2\n")
    assert read_metrics_csv(big, "JPY", ceilings=yen)["spend"].tolist() == [80_000_000]


def test_metrics_file_not_found(tmp_path):
    path = tmp_path / "missing.csv"
    with pytest.raises(DataError) as excinfo:
        read_metrics_csv(path)
    assert str(excinfo.value) == message(path, "file not found")


def test_problems_are_capped_at_fifty_per_file(tmp_path):
    rows = "".join(f"2026-07-01,1001,{i},-1,20,2\n" for i in range(60))
    path = write(tmp_path / "m.csv", HEADER + "2026-07-01,1001,x,1,1,y\n" + rows)
    with pytest.raises(DataError) as excinfo:
        read_metrics_csv(path)
    expected = ["line 2, column leads: expected a number >= 0, got 'y'"]
    expected += [f"line {n}, column spend: expected a number >= 0, got '-1'" for n in range(3, 52)]
    expected += ["... and 11 more problems"]
    assert str(excinfo.value) == message(path, *expected)
    assert len(excinfo.value.problems) == 51


# ----------------------------------------------------------------------------------------------
# metrics: good files


def test_good_metrics_file_loads_canonical_frame(tmp_path):
    content = (
        "\ufeff Date ,ACCOUNT_ID,campaign_id,campaign_name,account_name,currency,"
        "spend,impressions,clicks,leads\r\n"
        '2026-07-01,00123,0055,"Brand, exact ""EU""",,eur,12.50,1000,12.0,1.5\r\n'
        "\r\n"
        ",,,,,,,,,\r\n"
        "2026-07-02, 00123 ,0055,,Acme,,0,,0,0.25\r\n"
    )
    frame = read_metrics_csv(write(tmp_path / "m.csv", content), currency="gbp")
    expected = pd.DataFrame(
        {
            "date": pd.to_datetime(["2026-07-01", "2026-07-02"]).astype("datetime64[ns]"),
            "hour": np.array([DAILY, DAILY], dtype="int64"),
            "account_id": ["00123", "00123"],
            "account_name": ["00123", "Acme"],
            "campaign_id": ["0055", "0055"],
            "campaign_name": ['Brand, exact "EU"', "0055"],
            "currency": ["EUR", "GBP"],
            "spend": [12.5, 0.0],
            "impressions": np.array([1000, 0], dtype="int64"),
            "clicks": np.array([12, 0], dtype="int64"),
            "leads": [1.5, 0.25],
        }
    ).astype({c: "str" for c in ["account_id", "account_name", "campaign_id", "campaign_name", "currency"]})
    assert list(frame.columns) == METRIC_COLUMNS
    pd.testing.assert_frame_equal(frame, expected)


def test_hourly_metrics_keep_their_hours(tmp_path):
    content = (
        "date,hour,account_id,campaign_id,spend,clicks,leads\n"
        "2026-07-01,0,1,2,1,1,0\n2026-07-01,23.0,1,2,1,1,0\n2026-07-01,,1,3,1,1,0\n"
    )
    frame = read_metrics_csv(write(tmp_path / "m.csv", content))
    assert frame["hour"].tolist() == [0, 23, DAILY]
    assert frame["hour"].dtype == "int64"


def test_header_only_file_has_no_rows(tmp_path):
    frame = read_metrics_csv(write(tmp_path / "m.csv", HEADER))
    assert len(frame) == 0
    assert list(frame.columns) == METRIC_COLUMNS


# ----------------------------------------------------------------------------------------------
# change history


def test_changes_are_converted_to_naive_utc(tmp_path):
    content = (
        "changed_at,account_id,campaign_id,user_email,resource_type,operation,changed_fields\n"
        "2026-07-09T14:03:00,1001,55,a@agency.com,CAMPAIGN_BUDGET,UPDATE,amount_micros\n"
        "2026-07-09 14:03,1001,55,a@agency.com,CAMPAIGN_BUDGET,UPDATE,amount_micros\n"
        "2026-07-09T14:03:00+02:00,1001,,b@partner.com,CAMPAIGN,CREATE,\n"
        "2026-07-09T23:30Z,1001,55,,,,\n"
        "2026-07-09T20:00:00-05:00,1001,55,,,,\n"
    )
    frame = read_changes_csv(write(tmp_path / "c.csv", content))
    assert list(frame.columns) == CHANGE_COLUMNS
    assert frame["changed_at"].dtype == "datetime64[ns]"
    assert frame["changed_at"].tolist() == [
        pd.Timestamp("2026-07-09 14:03"),
        pd.Timestamp("2026-07-09 14:03"),  # duplicates are kept
        pd.Timestamp("2026-07-09 12:03"),
        pd.Timestamp("2026-07-09 23:30"),
        pd.Timestamp("2026-07-10 01:00"),
    ]
    assert frame["campaign_id"].tolist() == ["55", "55", "", "55", "55"]
    assert frame.loc[2, "user_email"] == "b@partner.com"


def test_changes_optional_columns_default_to_empty(tmp_path):
    frame = read_changes_csv(write(tmp_path / "c.csv", "changed_at,account_id\n2026-07-09T14:03,007\n"))
    assert frame.iloc[0].tolist() == [pd.Timestamp("2026-07-09 14:03"), "007", "", "", "", "", "", ""]


CHANGE_ERRORS = [
    pytest.param(
        "changed_at,account_id\n2026-07-09,1001\n09/07/2026 14:03,1001\n2026-07-09T25:00,1001\n",
        [
            "line 2, column changed_at: expected a date-time as YYYY-MM-DDTHH:MM[:SS] with an optional Z "
            "or +HH:MM offset, got '2026-07-09'",
            "line 3, column changed_at: expected a date-time as YYYY-MM-DDTHH:MM[:SS] with an optional Z "
            "or +HH:MM offset, got '09/07/2026 14:03'",
            "line 4, column changed_at: expected a date-time as YYYY-MM-DDTHH:MM[:SS] with an optional Z "
            "or +HH:MM offset, got '2026-07-09T25:00'",
        ],
        id="bad-changed-at",
    ),
    pytest.param(
        "changed_at,account_id,user\n",
        ["header: unknown column 'user'; allowed columns: changed_at, account_id, campaign_id, user_email, "
         "client_type, resource_type, operation, changed_fields"],
        id="unknown-column",
    ),
    pytest.param(
        "changed_at,account_id\n2026-07-09T14:03,\n",
        ["line 2, column account_id: expected a non-empty value, got ''"],
        id="empty-account-id",
    ),
]


CHANGE_LIMIT_ERRORS = [
    pytest.param(
        "changed_at,account_id,client_type\n2026-07-09T14:03,1001," + "X" * 41 + "\n",
        ["line 2, column client_type: expected at most 40 characters, got '" + "X" * 40 + "...' (41 characters)"],
        id="client-type-longer-than-the-store-holds",
    ),
    pytest.param(
        "changed_at,account_id,campaign_id\n2026-07-09T14:03,1001," + "5" * 65 + "\n",
        ["line 2, column campaign_id: expected at most 64 characters, got '" + "5" * 40 + "...' (65 characters)"],
        id="campaign-id-longer-than-the-store-holds",
    ),
    pytest.param(
        "changed_at,account_id\n2026-07-09T14:03,10\x0001\n",
        ["line 2: not valid UTF-8 text (a NUL byte at offset 41; is the file UTF-16 or binary?); save the file as UTF-8"],
        id="nul-byte",
    ),
    pytest.param(
        'changed_at,account_id,campaign_id\n2026-07-09T14:03,1001,"5\n5"\n2026-07-09T14:04,10\x1b01,55\n',
        [f"line 2, column campaign_id: {PLAIN}, got '5\\n5'", f"line 4, column account_id: {PLAIN}, got '10\\x1b01'"],
        id="control-characters-in-ids",
    ),
]


@pytest.mark.parametrize("content, expected", CHANGE_ERRORS + CHANGE_LIMIT_ERRORS)
def test_changes_error(tmp_path, content, expected):
    path = write(tmp_path / "c.csv", content)
    with pytest.raises(DataError) as excinfo:
        read_changes_csv(path)
    assert str(excinfo.value) == message(path, *expected)


# ----------------------------------------------------------------------------------------------
# ownership

PARTIES = ["partner", "agency"]


def test_ownership_handoff_loads(tmp_path):
    content = (
        "account_id,campaign_id,party,start,end\n"
        "1001,,agency,2026-01-01,2026-07-01\n"
        "1001,,partner,2026-07-01,\n"
        "1001,55,agency,2026-03-01,2026-04-01\n"
    )
    frame = read_ownership_csv(write(tmp_path / "o.csv", content), PARTIES)
    assert list(frame.columns) == OWNERSHIP_COLUMNS
    assert frame["campaign_id"].tolist() == ["", "", "55"]
    assert frame["party"].tolist() == ["agency", "partner", "agency"]
    assert frame["start"].dtype == frame["end"].dtype == "datetime64[ns]"
    assert frame["end"].isna().tolist() == [False, True, False]


OWNERSHIP_ERRORS = [
    pytest.param(
        "account_id,campaign_id,party,start,end\n"
        "1001,55,agency,2026-06-01,2026-07-15\n"
        "1001,,partner,2026-07-01,\n"
        "1001,55,partner,2026-07-01,\n"
        "1001,55,agency,2026-07-20,2026-08-01\n",
        [
            "line 4: period 2026-07-01 to (no end) overlaps line 2's period 2026-06-01 to 2026-07-15 "
            "(account_id '1001', campaign_id '55')",
            "line 5: period 2026-07-20 to 2026-08-01 overlaps line 4's period 2026-07-01 to (no end) "
            "(account_id '1001', campaign_id '55')",
        ],
        id="overlap",
    ),
    pytest.param(
        "account_id,party,start,end\n1001,agency,2026-01-01,2026-12-31\n1001,partner,2026-02-01,2026-03-01\n",
        ["line 3: period 2026-02-01 to 2026-03-01 overlaps line 2's period 2026-01-01 to 2026-12-31 "
         "(account_id '1001', the whole account)"],
        id="overlap-whole-account",
    ),
    pytest.param(
        "account_id,party,start\n1001,acme,2026-01-01\n",
        ["line 2, column party: expected one of the parties 'agency', 'partner', got 'acme'"],
        id="unknown-party",
    ),
    pytest.param(
        "account_id,party,start,end\n1001,agency,2026-07-10,2026-07-01\n1001,agency,2026-08-10,2026-08-10\n",
        [
            "line 2, column end: expected a date after start 2026-07-10, got '2026-07-01'",
            "line 3, column end: expected a date after start 2026-08-10, got '2026-08-10'",
        ],
        id="end-not-after-start",
    ),
    pytest.param(
        "account_id,campaign_id,party\n",
        ["header: missing required column 'start'"],
        id="missing-start",
    ),
    pytest.param(
        'account_id,campaign_id,party,start\n"10\n01",,agency,2026-07-01\n1001,5\t5,agency,2026-07-01\n',
        [f"line 2, column account_id: {PLAIN}, got '10\\n01'", f"line 4, column campaign_id: {PLAIN}, got '5\\t5'"],
        id="control-characters-in-ids",
    ),
]


@pytest.mark.parametrize("content, expected", OWNERSHIP_ERRORS)
def test_ownership_error(tmp_path, content, expected):
    path = write(tmp_path / "o.csv", content)
    with pytest.raises(DataError) as excinfo:
        read_ownership_csv(path, PARTIES)
    assert str(excinfo.value) == message(path, *expected)


# ----------------------------------------------------------------------------------------------
# the connector


def _days(tmp_path: Path, name: str, *dates: str, campaign: str = "55") -> Path:
    return write(tmp_path / name, HEADER + "".join(f"{d},1001,{campaign},10,2,1\n" for d in dates))


def test_fetch_filters_by_date_range(tmp_path):
    _days(tmp_path, "a.csv", "2026-06-30", "2026-07-01", "2026-07-02")
    _days(tmp_path, "b.csv", "2026-07-03", "2026-07-04", campaign="56")
    changes = write(
        tmp_path / "changes.csv",
        "changed_at,account_id\n2026-06-30T23:59,1\n2026-07-01T00:00,2\n2026-07-03T23:59:59,3\n"
        "2026-07-03T23:30-01:00,4\n",
    )
    connector = CsvConnector("files", [tmp_path / "a.csv", str(tmp_path / "b.csv")], changes=[changes])
    batch = connector.fetch(dt.date(2026, 7, 1), dt.date(2026, 7, 3))
    assert (batch.source, batch.start, batch.end) == ("files", dt.date(2026, 7, 1), dt.date(2026, 7, 3))
    dates = batch.metrics["date"].dt.strftime("%Y-%m-%d").tolist()
    assert dates == ["2026-07-01", "2026-07-02", "2026-07-03"]
    assert batch.changes["account_id"].tolist() == ["2", "3"]


def test_fetch_expands_globs_sorted(tmp_path):
    (tmp_path / "in").mkdir()
    _days(tmp_path / "in", "2.csv", "2026-07-02")
    _days(tmp_path / "in", "1.csv", "2026-07-01")
    (tmp_path / "in" / "dir.csv").mkdir()
    # 1.csv is named twice (glob and path): read once, so no duplicate keys
    patterns = [str(tmp_path / "in" / "*.csv"), str(tmp_path / "none" / "*.csv"), tmp_path / "in" / "1.csv"]
    connector = CsvConnector("files", patterns)
    batch = connector.fetch(dt.date(2026, 7, 1), dt.date(2026, 7, 31))
    assert batch.metrics["date"].dt.day.tolist() == [1, 2]
    empty = CsvConnector("empty", [str(tmp_path / "nothing*.csv")])
    nothing = empty.fetch(dt.date(2026, 7, 1), dt.date(2026, 7, 2))
    assert nothing.metrics.empty and nothing.changes.empty


def test_fetch_reports_problems_of_every_file_together(tmp_path):
    a = write(tmp_path / "a.csv", HEADER + "2020-01-01,1001,55,-5,2,1\n2026-07-01,1001,55,10,2,1\n")
    b = write(tmp_path / "b.csv", HEADER + "2026-07-01,1001,55,10,2,1\n2026-07-02,1001,55,10,2,oops\n")
    missing = tmp_path / "c.csv"
    changes = write(tmp_path / "ch.csv", "changed_at,account_id\nyesterday,1001\n")
    connector = CsvConnector("files", [a, b, missing], changes=[changes])
    with pytest.raises(DataError) as excinfo:
        # line 2 of a.csv is outside the range: it is checked all the same
        connector.fetch(dt.date(2026, 7, 1), dt.date(2026, 7, 31))
    assert str(excinfo.value) == "\n".join(
        [
            message(a, "line 2, column spend: expected a number >= 0, got '-5'"),
            message(b, f"line 2: duplicate of line 3 of {a} "
                       "(account_id '1001', campaign_id '55', date 2026-07-01)"),
            message(b, "line 3, column leads: expected a number >= 0, got 'oops'"),
            message(missing, "file not found"),
            message(changes, "line 2, column changed_at: expected a date-time as YYYY-MM-DDTHH:MM[:SS] "
                             "with an optional Z or +HH:MM offset, got 'yesterday'"),
        ]
    )


# ----------------------------------------------------------------------------------------------
# what the store could not hold, and cells too long to be cells


def test_ids_as_long_as_the_store_holds_load(tmp_path):
    content = HEADER + f"2026-07-01,{'1' * 64},{'Ω' * 64},10,2,1\n"
    frame = read_metrics_csv(write(tmp_path / "m.csv", content))
    assert (frame.at[0, "account_id"], frame.at[0, "campaign_id"]) == ("1" * 64, "Ω" * 64)


def test_numbers_with_a_plus_sign_are_read_exactly(tmp_path):
    # pandas alone reads "+479592.22742610885" one unit in the last place off
    content = HEADER + "2026-07-01,1001,55,+479592.22742610885,+20,+3.926059076079149\n"
    frame = read_metrics_csv(write(tmp_path / "m.csv", content))
    assert frame.iloc[0][["spend", "clicks", "leads"]].tolist() == [479592.22742610885, 20, 3.926059076079149]
