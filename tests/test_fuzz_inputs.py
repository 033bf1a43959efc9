"""Bad input, generated: every CSV and YAML file either loads, and loads what it says, or is
rejected with a clear error; never a traceback, a hang or a memory blow-up, and a rejected metrics
or change-history file leaves the store as it was.

"A clear error" is an ``InputError`` whose every problem names the file it is about, says where
(a CSV line and column, a YAML line and column or a YAML path), keeps to one line and leaks no
Python internals. Files go through the loaders the service uses: a CSV source's connector
(``make_connector``) and ``Store.ingest`` as ``pull_source`` calls them, ``read_ownership_csv`` as
``ownership_periods`` calls it, and ``load_config`` for config.yaml and the rules.

Examples are derandomized, so a failure is not a new random draw's; ``benchmarks.fuzz_inputs`` runs
ten thousand more files through the same loaders, and its cases run here too: a few hundred of them,
and each of its hostile cases about what a file is (a device, a named pipe, a folder, a file over
its size limit), a row beyond the source's ceilings, control characters in ids and names, empty
files, numbers that are not whole or not finite, a config without a source, empty Slack secrets and
a mistyped webhook URL.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import itertools
import random
import re
import string
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from anomaly.config import Config, CsvSourceConfig, load_config
from benchmarks import fuzz_inputs as bench
from anomaly.errors import ConfigError, DataError, InputError
from anomaly.pipeline import make_connector
from anomaly.schema import CONTROL_CHARACTERS
from anomaly.store import Store, changes, metrics, pulls
from connectors.csv_files import read_ownership_csv

FIRST, LAST = dt.date(1900, 1, 1), dt.date(2199, 12, 31)  # the dates a data file may hold
PARTIES = ["agency", "partner"]
ENVIRON = {"SLACK_BOT_TOKEN": "xoxb-test", "PARTY_NAME": "From The Environment"}
SECONDS = 5.0  # no single file may take longer to load or reject (2 s in the benchmark; room here for a busy machine)


def fuzz(examples: int, *checks: HealthCheck) -> settings:
    """The same examples on every run, no deadline per example (the test times what matters)."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(checks))


# Python's own words in a message mean that an exception's text leaked through unexplained.
LEAKS = re.compile(
    r"Traceback|NoneType|object has no attribute|invalid literal for|unhashable type|could not convert string|"
    r"<unicode string>|Exceeds the limit|\[Errno|embedded null|codec can't|index out of range"
)
CSV_WHERE = re.compile(r"(line \d+(, column [a-z_]+)?|header)?")


def assert_clear(exc: InputError, files: set[Path | str], *, csv_file: bool) -> None:
    """Every problem is one line ``file: where: message`` about one of ``files``."""
    names = {str(f) for f in files}
    assert exc.problems
    assert str(exc).count("\n") == len(exc.problems) - 1
    for problem, line in zip(exc.problems, str(exc).splitlines()):
        assert problem.file in names, line
        assert line.startswith(f"{problem.file}: "), line
        assert problem.message.strip() and "\n" not in problem.where + problem.message, line
        if csv_file:
            assert CSV_WHERE.fullmatch(problem.where), line
        assert not LEAKS.search(problem.message), line


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each example writes its file (the same name every time: one file at a time)."""
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def sqlite_store(folder: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{folder / 'store.db'}")
    store.migrate()
    yield store
    store.engine.dispose()


def snapshot(store: Store) -> dict[str, list]:
    """Everything a pull may write: the metrics, the changes and the pulls."""
    with store.engine.connect() as conn:
        return {t.name: sorted(map(tuple, conn.execute(sa.select(t)).all()), key=repr) for t in (metrics, changes, pulls)}


def empty(store: Store) -> None:
    with store.engine.begin() as conn:
        for table in (metrics, changes, pulls):
            conn.execute(table.delete())


def pull(store: Store, path: Path, *, as_changes: bool, name: str = "fuzz") -> None:
    """Fetch ``path`` as a CSV source's metrics (or changes) over every date a file may hold and
    ingest the batch, as ``pull_source`` does."""
    nothing = str(path.parent / "no-metrics-*.csv")
    source = CsvSourceConfig(type="csv", name=name, metrics=[nothing] if as_changes else [str(path)], changes=[str(path)] if as_changes else [])
    batch = make_connector(source, Config()).fetch(FIRST, LAST)
    store.ingest(source.name, FIRST, LAST, batch.metrics, batch.changes, batch.ownership, complete=not batch.failures)


def stored(store: Store, table: sa.Table, source: str = "fuzz") -> list:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(table).where(table.c.source == source)).all()


def valid_metric_rows(rows: list) -> bool:
    return all(
        r.account_id.strip() and r.campaign_id.strip() and len(r.account_id) <= 64 and len(r.campaign_id) <= 64
        and FIRST <= r.date <= LAST and -1 <= r.hour <= 23 and re.fullmatch(r"[A-Z]{3}", r.currency)
        and np.isfinite(r.spend) and r.spend >= 0 and np.isfinite(r.leads) and r.leads >= 0 and r.clicks >= 0 and r.impressions >= 0
        and r.spend <= CEILINGS["spend"] and r.leads <= CEILINGS["leads"] and r.clicks <= CEILINGS["clicks"]
        and r.impressions <= CEILINGS["impressions"]
        and not CONTROL_CHARACTERS.search(r.account_id + r.campaign_id + r.account_name + r.campaign_name)
        for r in rows
    )


def valid_change_rows(rows: list) -> bool:
    return all(r.account_id.strip() and len(r.account_id) <= 64 and len(r.client_type) <= 40
               and not CONTROL_CHARACTERS.search(r.account_id + r.campaign_id)
               and dt.datetime(1900, 1, 1) <= r.changed_at < dt.datetime(2200, 1, 1) for r in rows)


def timed(load: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    try:
        return load()
    finally:
        assert time.perf_counter() - start < SECONDS


# ----------------------------------------------------------------------------------------------
# strategies: text and numbers as spreadsheets write them


# any character but surrogates (not UTF-8) and NUL (no text file holds one)
any_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
names = any_text.map(str.strip)
# what an id or a campaign's or account's name may hold: any character but the controls and line
# separators (anomaly.schema.CONTROL_CHARACTERS)
plain_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30)
plain_names = plain_text.map(str.strip)
ids = st.one_of(
    st.integers(0, 10**12).map(str),
    st.from_regex(r"0[0-9]{1,10}", fullmatch=True),  # leading zeros are kept
    st.text(string.ascii_letters + string.digits + "-_.:/ éΩ中", min_size=1, max_size=20),
    plain_text,
).map(str.strip).filter(lambda s: 0 < len(s) <= 64)


def written(value: float, whole: bool = False) -> st.SearchStrategy[str]:
    """``value`` in one of the forms a spreadsheet or a script writes."""
    if whole:
        return st.sampled_from([str(int(value)), f"{int(value)}.0", f" {int(value)} ", f"+{int(value)}"])
    return st.sampled_from([repr(value), f"{value:.17g}", f" {value!r}\t", f"{value:.17e}", f"+{value!r}"])


#: a CSV source's ceilings by default: one row holds no more (max_row_spend ...)
CEILINGS = CsvSourceConfig(type="csv", name="fuzz", metrics=["m.csv"]).row_ceilings
spend_money = st.floats(min_value=0, max_value=CEILINGS["spend"], allow_nan=False, allow_infinity=False)
lead_counts = st.floats(min_value=0, max_value=CEILINGS["leads"], allow_nan=False, allow_infinity=False)
click_counts = st.integers(0, int(CEILINGS["clicks"]))
impression_counts = st.integers(0, int(CEILINGS["impressions"]))


def csv_file(draw: st.DrawFn, header: list[str], rows: list[list[str]]) -> bytes:
    """Rows as a CSV: header case, quoting and line ends vary; sometimes a UTF-8 byte-order mark."""
    out = io.StringIO(newline="")
    # a cell with a bare \r must be quoted, which the writer does not do when lines end in \n
    breaks = any("\r" in cell for row in rows for cell in row)
    writer = csv.writer(out, quoting=csv.QUOTE_ALL if breaks else draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
                        lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    spell = draw(st.sampled_from([str, str.upper, lambda h: f" {h} ", str.title]))
    writer.writerow([spell(h) for h in header])
    writer.writerows(rows)
    data = out.getvalue().encode("utf-8")
    return codecs.BOM_UTF8 + data if draw(st.booleans()) else data


# ----------------------------------------------------------------------------------------------
# strategies: valid files with what they must load as


METRIC_OPTIONAL = ["account_name", "campaign_name", "currency", "impressions", "hour"]


@st.composite
def metric_files(draw: st.DrawFn) -> tuple[bytes, list[tuple]]:
    """A valid metrics CSV and its rows as the store holds them (the ``metrics`` columns in order)."""
    columns = ["date", "account_id", "campaign_id", "spend", "clicks", "leads"]
    columns += [c for c in METRIC_OPTIONAL if draw(st.booleans())]
    columns = draw(st.permutations(columns))
    keys = draw(st.lists(st.tuples(ids, ids, st.dates(FIRST, LAST)), max_size=8, unique=True))  # one row per campaign-day
    rows, expected = [], []
    for account, campaign, day in keys:
        spend, leads, clicks = draw(spend_money), draw(lead_counts), draw(click_counts)
        impressions, hour = draw(st.none() | impression_counts), draw(st.none() | st.integers(0, 23))
        account_name, campaign_name = draw(plain_names), draw(plain_names)
        currency = draw(st.sampled_from(["", "usd", "EUR", "Gbp"]))
        cells = {
            "date": day.isoformat(),
            "account_id": draw(st.sampled_from([account, f" {account} "])),
            "campaign_id": campaign,
            "spend": draw(written(spend)),
            "clicks": draw(written(clicks, whole=True)),
            "leads": draw(written(leads)),
            "account_name": account_name,
            "campaign_name": campaign_name,
            "currency": currency,
            "impressions": "" if impressions is None else draw(written(impressions, whole=True)),
            "hour": "" if hour is None else draw(written(hour, whole=True)),
        }
        rows.append([cells[c] for c in columns])
        has = set(columns)
        expected.append((
            account, campaign, day, -1 if hour is None or "hour" not in has else hour,
            account_name if "account_name" in has and account_name else account,
            campaign_name if "campaign_name" in has and campaign_name else campaign,
            currency.upper() if "currency" in has and currency else "USD",
            spend, (impressions or 0) if "impressions" in has else 0, clicks, leads,
        ))
    return csv_file(draw, columns, rows), sorted(expected, key=repr)


CHANGE_COLUMNS = ["changed_at", "account_id", "campaign_id", "user_email", "client_type", "resource_type", "operation", "changed_fields"]


@st.composite
def change_files(draw: st.DrawFn) -> tuple[bytes, list[tuple]]:
    """A valid change-history CSV and its changes as the store holds them: ``changed_at`` in naive
    UTC, a change written twice held once (its key leaves ``client_type`` out)."""
    columns = draw(st.permutations(["changed_at", "account_id"] + [c for c in CHANGE_COLUMNS[2:] if draw(st.booleans())]))
    rows, expected, seen = [], [], set()
    for _ in range(draw(st.integers(0, 8))):
        # fold only tells apart the two readings of a local time: a UTC time has one
        utc = draw(st.datetimes(dt.datetime(1900, 1, 1, 0, 0), dt.datetime(2199, 12, 31, 23, 59, 59, 999_999))).replace(fold=0)
        offset = draw(st.none() | st.integers(-14 * 60, 14 * 60))  # minutes
        local = utc + dt.timedelta(minutes=offset or 0)
        text = local.strftime(draw(st.sampled_from(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"])))
        if local.microsecond:
            text += f".{local.microsecond:06d}"
        if offset is not None:
            sign = "-" if offset < 0 else "+"
            text += "Z" if offset == 0 and draw(st.booleans()) else f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
        cells = {
            "changed_at": text,
            "account_id": draw(ids),
            "campaign_id": draw(st.just("") | ids),
            "user_email": draw(st.just("") | st.emails()),
            "client_type": draw(st.sampled_from(["GOOGLE_ADS_WEB_CLIENT", "GOOGLE_ADS_AUTOMATED_RULE", "", "X" * 40])),
            "resource_type": draw(names),
            "operation": draw(st.sampled_from(["CREATE", "UPDATE", "REMOVE", ""])),
            "changed_fields": draw(names),
        }
        rows.append([cells[c] for c in columns])
        change = tuple([utc] + [cells[c] if c in columns else "" for c in CHANGE_COLUMNS[1:]])
        if change[:4] + change[5:] not in seen:
            seen.add(change[:4] + change[5:])
            expected.append(change)
    return csv_file(draw, columns, rows), sorted(expected, key=repr)


@st.composite
def ownership_files(draw: st.DrawFn) -> tuple[bytes, list[tuple]]:
    """A valid ownership CSV and its periods in file order; periods of one account or campaign
    follow one another (a handoff: one's end is the next one's start) or leave gaps."""
    columns = draw(st.permutations(["account_id", "party", "start", "end", "campaign_id"]))
    rows, expected = [], []
    scopes = draw(st.lists(st.tuples(ids, st.just("") | ids), max_size=4, unique=True))
    for account, campaign in scopes:
        days = draw(st.lists(st.dates(FIRST, LAST), min_size=1, max_size=5, unique=True))
        days.sort()
        open_end = draw(st.booleans()) or len(days) == 1
        for start, end in zip(days, days[1:] + [None] if open_end else days[1:]):
            party = draw(st.sampled_from(PARTIES))
            cells = {"account_id": account, "campaign_id": campaign, "party": party, "start": start.isoformat(), "end": end.isoformat() if end else ""}
            rows.append([cells[c] for c in columns])
            expected.append((account, campaign, party, pd.Timestamp(start), pd.Timestamp(end) if end else pd.NaT))
    order = draw(st.permutations(range(len(rows))))
    return csv_file(draw, columns, [rows[i] for i in order]), [expected[i] for i in order]


slugs = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,15}", fullmatch=True)
config_ids = st.text(string.ascii_letters + string.digits + "-_ éΩ中", min_size=1, max_size=20)
# what a name in config.yaml may hold: no "$" (${VAR} is expanded) and no NEL or line separator,
# which PyYAML's dump writes as line breaks that its load folds into spaces
config_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00$\x85\u2028\u2029"), min_size=1, max_size=20)
CRONS = ["15 7 * * *", "0 */6 * * *", "30 4 * * 1-5", "*/15 * * * *"]
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata"]


def dump(draw: st.DrawFn, data: Any) -> bytes:
    """``data`` as YAML, in block or flow style; an object used twice becomes an anchor and aliases."""
    text = yaml.safe_dump(data, default_flow_style=draw(st.sampled_from([False, None, True])), sort_keys=draw(st.booleans()),
                          allow_unicode=draw(st.booleans()))
    return (codecs.BOM_UTF8 if draw(st.booleans()) else b"") + text.encode("utf-8")


@st.composite
def config_files(draw: st.DrawFn) -> tuple[bytes, dict]:
    """A valid config.yaml (its rules folder holds one valid rule) and the settings it writes."""
    keys = draw(st.lists(slugs, max_size=3, unique=True))
    data: dict[str, Any] = {}
    if keys:
        data["parties"] = {
            key: {"name": draw(config_text | st.just("${PARTY_NAME}")), **({"domains": [f"d{i}.Example"]} if draw(st.booleans()) else {})}
            for i, key in enumerate(keys)
        }
        history = sorted(draw(st.lists(st.dates(dt.date(2000, 1, 1), dt.date(2100, 1, 1)), min_size=1, max_size=3, unique=True)))
        data["ownership"] = {
            "default_party": draw(st.sampled_from(keys)),
            "assignments": [{"account_id": draw(config_ids), "history": [{"party": draw(st.sampled_from(keys)), "since": d} for d in history]}],
        }
    schedule = {"cron": draw(st.sampled_from(CRONS)), "timezone": draw(st.none() | st.sampled_from(ZONES))}
    data["sources"] = [
        {"name": name, "type": "csv", "metrics": [draw(st.sampled_from(["exports/*.csv", "m.csv", "data/ä ö.csv"]))],
         "lookback_days": draw(st.integers(0, 90)), "history_days": draw(st.integers(1, 3650)), "schedule": schedule}
        for name in draw(st.lists(slugs, max_size=3, unique=True))
    ]
    data["detection"] = {
        "baseline": {"half_life_days": draw(st.floats(0.01, 365)), "min_days": draw(st.integers(1, 365)),
                     "elevated_ratio": draw(st.floats(1.0, 10, exclude_min=True)), "elevated_p_value": draw(st.floats(0, 1, exclude_min=True))},
        "variation": {"leads": draw(st.floats(0, 2)), "clicks": draw(st.floats(0, 2))},
    }
    data["alerts"] = {
        "sinks": [{"type": "console"}, {"type": "jsonl", "path": "alerts.jsonl"}][: draw(st.integers(0, 2))],
        "excess_steps": sorted(draw(st.lists(st.floats(0.01, 1e9), min_size=1, max_size=6, unique=True))),
        "repeat_every_hours": draw(st.floats(0, 2160)),
    }
    data["service"] = {"timezone": draw(st.sampled_from(ZONES)), "deliver_every_minutes": draw(st.integers(1, 1440))}
    data["store"] = {"url": draw(st.sampled_from(["sqlite:///:memory:", "sqlite:////var/lib/ads.db", "postgresql+psycopg://ads@db/ads"]))}
    for key in draw(st.lists(st.sampled_from(sorted(data)), unique=True)):
        data.pop(key, None)  # every setting has a default ...
        if key == "parties":  # ... but the settings that name a party need it
            data.pop("ownership", None)
    return dump(draw, data), data


@st.composite
def rules_files(draw: st.DrawFn) -> tuple[bytes, list[dict]]:
    """A valid rules file (config: parties agency and partner, the forest on) and its rules."""
    rules = []
    for name in draw(st.lists(slugs, min_size=1, max_size=5, unique=True)):
        kind = draw(st.sampled_from(["cpl_ratio", "lead_shortfall", "threshold", "spend_ratio", "isolation_forest"]))
        rule: dict[str, Any] = {"name": name, "type": kind}
        if kind in ("cpl_ratio", "spend_ratio"):
            rule["warning"] = draw(st.floats(1, 100, exclude_min=True))
            rule["critical"] = draw(st.floats(rule["warning"], 1000))
        elif kind == "lead_shortfall":
            rule["warning"] = draw(st.floats(0, 1, exclude_max=True))
            rule["critical"] = draw(st.floats(0, rule["warning"]))
        elif kind == "threshold":
            rule["metric"] = draw(st.sampled_from(["cpl", "cpc", "ctr", "cvr", "spend", "leads", "clicks", "impressions"]))
            rule["warning"] = draw(st.floats(0, 1e6))
        else:
            rule["warning"] = draw(st.floats(0, 1, exclude_min=True, exclude_max=True))
        optional = {
            "description": draw(config_text),
            "enabled": draw(st.booleans()),
            "window_days": draw(st.integers(1, 28)),
            "min_spend": draw(st.floats(0, 1e6)),
            "max_p_value": draw(st.floats(0, 1, exclude_min=True)),
            "baseline_lag_days": draw(st.integers(0, 90)),
            "scope": {"accounts": draw(st.lists(config_ids, max_size=3)), "parties": draw(st.lists(st.sampled_from(PARTIES), max_size=2))},
            "after_ownership_change": {"within_days": draw(st.integers(1, 365)), "min_spend": draw(st.floats(0, 1e6))},
        }
        rule.update((k, v) for k, v in optional.items() if draw(st.booleans()))
        rules.append(rule)
    return dump(draw, {"rules": rules}), rules


def mismatches(loaded: Any, written: Any, where: str, base: Path) -> Iterator[str]:
    """Each place where a loaded model differs from what the YAML file wrote."""
    if isinstance(written, dict):
        for key, value in written.items():
            got = getattr(loaded, key) if isinstance(loaded, BaseModel) else loaded[key]
            yield from mismatches(got, value, f"{where}.{key}" if where else key, base)
    elif isinstance(written, list):
        if len(loaded) != len(written):
            yield f"{where}: {len(written)} items written, {len(loaded)} loaded"
        for i, (got, value) in enumerate(zip(loaded, written)):
            yield from mismatches(got, value, f"{where}[{i}]", base)
    else:
        key = re.sub(r"\[\d+\]$", "", where).rsplit(".", 1)[-1]
        expected = written
        if isinstance(written, str):
            expected = written.replace("${PARTY_NAME}", ENVIRON["PARTY_NAME"])
            expected = str((base / written).resolve()) if key in ("metrics", "path") else expected
            expected = expected.lower() if key == "domains" else expected
        got = loaded.get_secret_value() if isinstance(loaded, SecretStr) else loaded
        if got != expected:
            yield f"{where}: wrote {written!r}, loaded {got!r}"


# ----------------------------------------------------------------------------------------------
# strategies: edits that may or may not break a file, and noise


BAD_CELLS = [
    "-1", "-0", "nan", "NaN", "inf", "-inf", "1e309", "-1e309", "", " ", "n/a", "0000-01-01", "9999-12-31", "2026-02-30",
    "1899-12-31", "2200-01-01", "2026-07-01T25:00", "2026-07-01T10:00+99:00", "24", "3.5", "9007199254740993", "1e20",
    "0x10", "1,000", "١٢٣", '"', 'a"b', '"unclosed', "\r", "\x00", "\ufeff", "1" * 65, "X" * 41, "x" * 200_000, "US$",
    "1e300", "100000001", "a\x85b", "a\x1bb",
]
YAML_VALUES = [
    ".nan", ".inf", "-.inf", "-1", "1e309", "0000-01-01", "9999-12-31", "2026-02-30", "9999-12-31 23:59:59 -05:00",
    "2026-01-01 10:00:00 +99:00", "~", "''", "0x1F", "1:2:3", "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system", "!!timestamp nope", "!!int x", "!!bool maybe", "!!map x", "!!set {[a]: ~}", "*nowhere",
    "&a [*a]", "${UNSET}", "${SLACK_BOT_TOKEN}", "'$$'", "1" * 5000, "[" * 100, "{a: {b: [c]}}", "[a, b", "{a: 1, a: 2}",
    '"\\0"', '"\\ud800"', "? [a, b]\n  : c", "'" + "x" * 200_000 + "'", "true", "1e400", "7.0",
]
ENCODINGS = ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252", "utf-8-sig"]
# (what, where in the file as a fraction, a value)
edits = st.tuples(
    st.sampled_from(["cell", "cell", "row", "drop", "header", "char", "bytes", "truncate", "encode", "alias", "bomb", "deep"]),
    st.floats(0, 1),
    st.integers(0, 10**6),
)


def edit_csv(data: bytes, edit: tuple[str, float, int]) -> bytes:
    what, at, n = edit
    lines = data.decode("utf-8").splitlines(keepends=True) or ["\n"]
    i = min(int(at * len(lines)), len(lines) - 1)
    body = lines[i].rstrip("\r\n")
    end = lines[i][len(body):] or "\n"
    fields = body.split(",")
    j = n % len(fields)
    if what in ("cell", "alias", "bomb", "deep"):
        fields[j] = BAD_CELLS[n % len(BAD_CELLS)]
        lines[i] = ",".join(fields) + end
    elif what == "row":
        lines.insert(i, lines[i] if lines[i].endswith(("\n", "\r")) else lines[i] + "\n")  # a duplicate row
    elif what == "drop":
        del fields[j]
        lines[i] = ",".join(fields) + end
    elif what == "header":
        header = lines[0].rstrip("\r\n").split(",")
        lines[0] = ",".join(header + [header[n % len(header)]]) + "\n"  # a duplicate column
    elif what == "char":
        k = n % (len(lines[i]) + 1)
        lines[i] = lines[i][:k] + '",\r\n\x00'[n % 5] + lines[i][k:]
    elif what == "bytes":
        raw = bytearray(data)
        if raw:
            raw[n % len(raw)] = n % 256
        return bytes(raw)
    elif what == "truncate":
        return data[: n % (len(data) + 1)]
    elif what == "encode":
        return data.decode("utf-8").encode(ENCODINGS[n % len(ENCODINGS)], errors="replace")
    return "".join(lines).encode("utf-8")


def bomb(levels: int, width: int) -> str:
    """The "billion laughs": each level an anchored list of ``width`` aliases of the level below."""
    lines = [f"lol0: &lol0 [{', '.join(['lol'] * width)}]"]
    lines += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def edit_yaml(data: bytes, edit: tuple[str, float, int]) -> bytes:
    what, at, n = edit
    lines = data.decode("utf-8").splitlines(keepends=True) or ["\n"]
    i = min(int(at * len(lines)), len(lines) - 1)
    body = lines[i].rstrip("\r\n")
    k = body.find(": ")
    head = body[: k + 2] if k >= 0 else body + ": "
    if what == "cell":
        lines[i] = head + YAML_VALUES[n % len(YAML_VALUES)] + "\n"
    elif what == "row":
        lines.insert(i, lines[i])  # often a duplicate key
    elif what == "drop":
        del lines[i]
    elif what == "header":
        lines[i] = " \t"[n % 2] * (n % 3 + 1) + lines[i]  # indentation
    elif what == "char":
        k = n % (len(lines[i]) + 1)
        lines[i] = lines[i][:k] + ":-[]{}&*!|>'\"%@`#,?\\\t\x00"[n % 22] + lines[i][k:]
    elif what == "alias":
        lines[i] = head + "&x " + body[k + 2:] + "\n" if k >= 0 else lines[i]
        lines.insert(min(i + 1 + n % 3, len(lines)), head.lstrip() + "*x\n")
    elif what == "bomb":
        lines.append(bomb(2 + n % 8, 2 + n // 8 % 8))
    elif what == "deep":
        depth = [10, 63, 64, 65, 1000, 10_000][n % 6]
        lines[i] = head + ("[" * depth + "]" * depth if n % 2 else "{a: " * depth + "1" + "}" * depth) + "\n"
    else:
        return edit_csv(data, edit)  # bytes, truncation, another encoding
    return "".join(lines).encode("utf-8", errors="surrogatepass")


def mutated(files: st.SearchStrategy[tuple[bytes, Any]], edit: Callable[[bytes, tuple], bytes]) -> st.SearchStrategy[bytes]:
    def apply(args: tuple[tuple[bytes, Any], list[tuple]]) -> bytes:
        (data, _), chosen = args
        for one in chosen:
            data = edit(data, one) if _is_utf8(data) else data
        return data

    return st.tuples(files, st.lists(edits, min_size=1, max_size=3)).map(apply)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encoded(alphabet: str) -> st.SearchStrategy[bytes]:
    """Text of the format's own characters (or any), in any of several encodings."""
    text = st.text(alphabet, max_size=500) | st.text(max_size=200)
    return st.tuples(text, st.sampled_from(ENCODINGS + ["utf-8"])).map(lambda t: t[0].encode(t[1], errors="replace"))


noise_csv = st.binary(max_size=2000) | encoded(string.digits * 3 + ',,,"\n\r-.: eETZ' + string.ascii_lowercase)
noise_yaml = st.binary(max_size=2000) | encoded(":-[]{}&*!|>'\"%@`#,? \n\n    " + string.ascii_lowercase + string.digits + "._$")


# ----------------------------------------------------------------------------------------------
# metrics and change history, through the connector into the store


def check_pull(store: Store, path: Path, data: bytes, *, as_changes: bool) -> list | None:
    """Write ``data`` to ``path`` and pull it: return the stored rows when it loaded (each a valid
    one), None when it was rejected with a clear error and the store left as it was."""
    path.write_bytes(data)
    before = snapshot(store)
    try:
        timed(lambda: pull(store, path, as_changes=as_changes))
    except DataError as exc:
        assert_clear(exc, {path}, csv_file=True)
        assert snapshot(store) == before
        event("rejected")
        return None
    event("loaded")
    rows = stored(store, changes if as_changes else metrics)
    assert (valid_change_rows if as_changes else valid_metric_rows)(rows)
    return rows


@fuzz(150)
@given(file=metric_files())
def test_a_valid_metrics_file_is_stored_as_written(sqlite_store: Store, folder: Path, file: tuple[bytes, list]) -> None:
    data, expected = file
    empty(sqlite_store)
    rows = check_pull(sqlite_store, folder / "metrics.csv", data, as_changes=False)
    assert rows is not None
    assert as_written(rows) == expected


def as_written(rows: list) -> list[tuple]:
    """Stored metric rows in the form ``metric_files`` gives what it wrote."""
    got = [(r.account_id, r.campaign_id, r.date, r.hour, r.account_name, r.campaign_name, r.currency, r.spend, r.impressions, r.clicks, r.leads)
           for r in rows]
    return sorted(got, key=repr)


@fuzz(250)
@given(data=mutated(metric_files(), edit_csv) | noise_csv)
def test_a_bad_metrics_file_is_rejected_clearly_and_changes_nothing(sqlite_store: Store, folder: Path, data: bytes) -> None:
    check_pull(sqlite_store, folder / "metrics.csv", data, as_changes=False)


@fuzz(100)
@given(file=change_files())
def test_a_valid_change_history_is_stored_as_written(sqlite_store: Store, folder: Path, file: tuple[bytes, list]) -> None:
    data, expected = file
    empty(sqlite_store)
    rows = check_pull(sqlite_store, folder / "changes.csv", data, as_changes=True)
    assert rows is not None
    assert sorted((tuple([r.changed_at] + [getattr(r, c) for c in CHANGE_COLUMNS[1:]]) for r in rows), key=repr) == expected


@fuzz(200)
@given(data=mutated(change_files(), edit_csv) | noise_csv)
def test_a_bad_change_history_is_rejected_clearly_and_changes_nothing(sqlite_store: Store, folder: Path, data: bytes) -> None:
    check_pull(sqlite_store, folder / "changes.csv", data, as_changes=True)


@st.composite
def beyond_the_columns(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A one-row file with a cell PostgreSQL cannot store as it is: a NUL, or an id or client type
    longer than its column (SQLite would take them)."""
    bad = draw(st.sampled_from(["a\x00b", "1" * 65, "\x00", "Ω" * 65]))
    if draw(st.booleans()):
        cells = {"account_id": "1001", "campaign_id": "55", "client_type": "GOOGLE_ADS_API", draw(st.sampled_from(["account_id", "campaign_id", "client_type"])): bad}
        if len(bad) > 40 and len(cells["client_type"]) > 40:
            cells["client_type"] = "X" * 41
        return f"changed_at,account_id,campaign_id,client_type\n2026-07-01T10:00,{cells['account_id']},{cells['campaign_id']},{cells['client_type']}\n".encode(), True
    cells = {"account_id": "1001", "campaign_id": "55", "campaign_name": "Brand", draw(st.sampled_from(["account_id", "campaign_id", "campaign_name"])): bad}
    return f"date,account_id,campaign_id,campaign_name,spend,clicks,leads\n2026-07-01,{cells['account_id']},{cells['campaign_id']},{cells['campaign_name']},1,1,1\n".encode(), False


# The store fixture runs on SQLite and PostgreSQL, which refuses more than SQLite does (NUL, ids
# longer than their column): shared by the examples on purpose, each comparing it before and after.
@fuzz(30, HealthCheck.function_scoped_fixture)
@given(file=beyond_the_columns() | st.tuples(mutated(metric_files(), edit_csv), st.just(False)) | st.tuples(mutated(change_files(), edit_csv), st.just(True)))
def test_a_rejected_file_leaves_every_store_unchanged(store: Store, tmp_path: Path, file: tuple[bytes, bool]) -> None:
    data, as_changes = file
    if not snapshot(store)["metrics"]:
        (tmp_path / "seed.csv").write_text("date,account_id,campaign_id,spend,clicks,leads\n2026-07-01,1001,55,100,20,2\n", encoding="utf-8")
        pull(store, tmp_path / "seed.csv", as_changes=False, name="seed")
    check_pull(store, tmp_path / "file.csv", data, as_changes=as_changes)


# ----------------------------------------------------------------------------------------------
# ownership


@fuzz(150)
@given(file=ownership_files())
def test_a_valid_ownership_file_loads_as_written(folder: Path, file: tuple[bytes, list]) -> None:
    data, expected = file
    path = folder / "ownership.csv"
    path.write_bytes(data)
    frame = timed(lambda: read_ownership_csv(path, PARTIES))
    got = list(frame.itertuples(index=False, name=None))
    assert [tuple("NaT" if v is pd.NaT else v for v in row) for row in got] == [tuple("NaT" if v is pd.NaT else v for v in row) for row in expected]


@fuzz(250)
@given(data=mutated(ownership_files(), edit_csv) | noise_csv)
def test_a_bad_ownership_file_is_rejected_clearly(folder: Path, data: bytes) -> None:
    path = folder / "ownership.csv"
    path.write_bytes(data)
    try:
        frame = timed(lambda: read_ownership_csv(path, PARTIES))
    except DataError as exc:
        assert_clear(exc, {path}, csv_file=True)
        return
    for row in frame.itertuples(index=False):
        assert row.account_id and row.party in PARTIES and not pd.isna(row.start)
        assert pd.isna(row.end) or row.end > row.start


# ----------------------------------------------------------------------------------------------
# config.yaml and rules


@pytest.fixture(scope="module")
def config_folder(folder: Path) -> Path:
    (folder / "cfg" / "rules").mkdir(parents=True)
    (folder / "cfg" / "rules" / "a.yaml").write_text("rules:\n  - {name: r1, type: cpl_ratio, warning: 2}\n", encoding="utf-8")
    return (folder / "cfg").resolve()


@pytest.fixture(scope="module")
def rules_folder(folder: Path) -> Path:
    (folder / "rul" / "rules").mkdir(parents=True)
    (folder / "rul" / "config.yaml").write_text(
        "parties:\n  agency: {name: Agency}\n  partner: {name: Partner}\ndetection:\n  forest: {enabled: true}\n", encoding="utf-8"
    )
    return (folder / "rul").resolve()


def check_config(path: Path, files: set[Path]) -> tuple[Config, list] | None:
    """Load config.yaml at ``path``: the config and rules, or None when it was rejected clearly."""
    try:
        loaded = timed(lambda: load_config(path, environ=ENVIRON))
    except ConfigError as exc:
        # a broken rules_dir may name another folder: blaming that folder is fair
        named = {Path(p.file) for p in exc.problems if "rules folder" in p.message}
        assert_clear(exc, files | named, csv_file=False)
        event("rejected")
        return None
    event("loaded")
    return loaded


@fuzz(200)
@given(file=config_files())
def test_a_valid_config_loads_as_written(config_folder: Path, file: tuple[bytes, dict]) -> None:
    data, written_settings = file
    (config_folder / "config.yaml").write_bytes(data)
    config, rules = load_config(config_folder / "config.yaml", environ=ENVIRON)
    assert list(mismatches(config, written_settings, "", config_folder)) == []
    assert [r.name for r in rules] == ["r1"]


@fuzz(300)
@given(data=mutated(config_files(), edit_yaml) | noise_yaml)
def test_a_bad_config_is_rejected_clearly(config_folder: Path, data: bytes) -> None:
    path = config_folder / "config.yaml"
    path.write_bytes(data)
    check_config(path, {path, config_folder / "rules", config_folder / "rules" / "a.yaml"})


@fuzz(150)
@given(file=rules_files())
def test_valid_rules_load_as_written(rules_folder: Path, file: tuple[bytes, list]) -> None:
    data, written_rules = file
    (rules_folder / "rules" / "r.yaml").write_bytes(data)
    _, rules = load_config(rules_folder / "config.yaml", environ=ENVIRON)
    assert [r.name for r in rules] == [r["name"] for r in written_rules]
    assert [m for rule, w in zip(rules, written_rules) for m in mismatches(rule, w, w["name"], rules_folder)] == []


@fuzz(250)
@given(data=mutated(rules_files(), edit_yaml) | noise_yaml)
def test_a_bad_rules_file_is_rejected_clearly(rules_folder: Path, data: bytes) -> None:
    path = rules_folder / "rules" / "r.yaml"
    path.write_bytes(data)
    check_config(rules_folder / "config.yaml", {rules_folder / "config.yaml", rules_folder / "rules", path})


@fuzz(150)
@given(key=st.text(max_size=12), value=st.sampled_from([1, "x", None, [1], {"a": 1}]), at=st.sampled_from(["", "parties", "detection", "alerts"]))
def test_any_key_is_reported_on_one_line(config_folder: Path, key: str, value: Any, at: str) -> None:
    # a key may hold a line break, a NUL or half a surrogate pair ("\\ud800" in a quoted key)
    data = {key: value} if not at else {at: {key: value}}
    path = config_folder / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8", errors="surrogatepass")
    check_config(path, {path, config_folder / "rules", config_folder / "rules" / "a.yaml"})


# ----------------------------------------------------------------------------------------------
# attacks and accidents: each ends quickly, in bounded memory, with a clear error


def peak_megabytes(load: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError):
            timed(load)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


@fuzz(30)
@given(levels=st.integers(2, 12), width=st.integers(2, 12), where=st.sampled_from(["config.yaml", "rules/a.yaml"]))
def test_an_alias_bomb_is_refused_quickly_in_little_memory(folder: Path, levels: int, width: int, where: str) -> None:
    (folder / "bomb" / "rules").mkdir(parents=True, exist_ok=True)
    files = {"config.yaml": "parties: {agency: {name: Agency}}\n", "rules/a.yaml": "rules:\n  - {name: r1, type: cpl_ratio, warning: 2}\n"}
    files[where] += bomb(levels, width)
    for name, text in files.items():
        (folder / "bomb" / name).write_text(text, encoding="utf-8")
    config = (folder / "bomb" / "config.yaml").resolve()
    assert peak_megabytes(lambda: load_config(config, environ=ENVIRON)) < 50


@fuzz(30)
@given(depth=st.sampled_from([65, 100, 1000, 10_000, 100_000]), shape=st.sampled_from(["[", "{a: ", "- "]))
def test_deep_nesting_is_refused_without_a_recursion_error(folder: Path, depth: int, shape: str) -> None:
    path = folder / "deep.yaml"
    if shape == "[":
        text = "x: " + "[" * depth + "]" * depth + "\n"
    elif shape == "{a: ":
        text = "x: " + "{a: " * depth + "1" + "}" * depth + "\n"
    else:
        text = "x:\n" + "".join("  " * (i + 1) + "- \n" for i in range(min(depth, 2000)))
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        timed(lambda: load_config(path, environ=ENVIRON))
    assert_clear(excinfo.value, {path}, csv_file=False)
    assert re.fullmatch(
        rf"{re.escape(str(path))}: line \d+, column \d+: invalid YAML: expected at most 64 levels of nesting, got more"
        rf"|{re.escape(str(path))}: is [\d.,]+ MB(?: \([\d,]+ bytes\))?, over the 1 MB limit for a YAML file",
        str(excinfo.value),
    )


@fuzz(20)
@given(tag=st.sampled_from([
    "!!python/object/apply:pathlib.Path.touch [{marker}]", "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:pathlib.Path [{marker}]", "!!python/name:os.system", "!!python/object:builtins.dict {{}}",
    "!!python/module:os", "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {marker}']",
]), key=st.sampled_from(["store", "x", "rules_dir"]))
def test_python_tags_are_refused_and_nothing_runs(folder: Path, tag: str, key: str) -> None:
    marker = folder / "executed"
    path = folder / "tagged.yaml"
    path.write_text(f"{key}: {tag.format(marker=marker)}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, environ=ENVIRON)
    assert_clear(excinfo.value, {path}, csv_file=False)
    assert "could not determine a constructor for the tag" in str(excinfo.value)
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------
# encodings: a byte-order mark is fine, another encoding is named


@fuzz(40)
@given(file=metric_files())
def test_a_utf8_byte_order_mark_changes_nothing(sqlite_store: Store, folder: Path, file: tuple[bytes, list]) -> None:
    # spreadsheets save "CSV UTF-8" with a byte-order mark: it is UTF-8 all the same
    data, expected = file
    body = data.removeprefix(codecs.BOM_UTF8)
    for content in (body, codecs.BOM_UTF8 + body):
        empty(sqlite_store)
        rows = check_pull(sqlite_store, folder / "bom.csv", content, as_changes=False)
        assert rows is not None and as_written(rows) == expected


def test_a_utf8_byte_order_mark_in_yaml_loads(config_folder: Path) -> None:
    path = config_folder / "config.yaml"
    path.write_bytes(codecs.BOM_UTF8 + b"parties:\n  a: {name: Agence \xc3\xa9}\n")
    config, _ = load_config(path, environ=ENVIRON)
    assert config.parties["a"].name == "Agence é"


@fuzz(40)
@given(text=st.text(min_size=1, max_size=50).filter(lambda t: not t.isascii()), encoding=st.sampled_from(["utf-16", "latin-1", "cp1252"]))
def test_another_encoding_is_named_or_read_as_the_utf8_it_happens_to_be(folder: Path, text: str, encoding: str) -> None:
    # a latin-1 file can happen to be valid UTF-8 (mojibake): then it is read as such
    path = folder / "encoded.csv"
    path.write_bytes(f"account_id,party,start\n1001,agency,2026-07-01\n{text}\n".encode(encoding, errors="replace"))
    try:
        read_ownership_csv(path, PARTIES)
    except DataError as exc:
        assert_clear(exc, {path}, csv_file=True)
        if encoding == "utf-16":
            assert str(exc) == f"{path}: not valid UTF-8 (the file is UTF-16); save the file as UTF-8"
        return
    assert encoding != "utf-16"


# ----------------------------------------------------------------------------------------------
# the benchmark's cases (benchmarks.fuzz_inputs), through its runner


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> bench.Runner:
    return bench.Runner(tmp_path_factory.mktemp("bench").resolve())


_numbers = itertools.count(1_000_000)  # each case a source of its own in the runner's store


def run_attack(runner: bench.Runner, kind: str, attack: str | bench.Attack, seed: int = 0) -> bench.Result:
    """One hostile case: ``attack`` by name (its variant drawn from ``seed``), or as given."""
    if isinstance(attack, str):
        draw = bench.hostile_csv if kind in bench.CSV_KINDS else bench.hostile_yaml
        attack = draw(random.Random(seed), kind, attack)
    return runner.run(bench.hostile_case(next(_numbers), kind, attack), SECONDS)


def test_a_few_hundred_cases_of_the_benchmark_have_no_bug(runner: bench.Runner) -> None:
    results = [runner.run(bench.draw(1, n), SECONDS) for n in range(300)]
    bugs = [f"case {r.case.number} ({r.case.kind} · {r.case.generator}: {r.case.notes}): {r.outcome}: {r.detail}" for r in results
            if r.outcome.startswith("BUG")]
    assert bugs == []
    assert {(r.case.kind, r.case.generator) for r in results} == set(itertools.product(bench.KINDS, bench.GENERATORS))
    assert {r.outcome for r in results} == {"loaded", "rejected"}


NEW_HOSTILE = [
    *(pytest.param(kind, place, "rejected", id=f"{kind}-{place}") for kind in bench.KINDS for place in bench.PLACES),
    *(pytest.param("config", f"ownership-{place}", "rejected", id=f"ownership-file-{place}") for place in bench.PLACES),
    pytest.param("metrics", "spend-1e300", "rejected", id="spend-1e300"),
    pytest.param("metrics", "beyond-ceiling", "rejected", id="beyond-a-ceiling"),
    *(pytest.param(kind, "control-character", "rejected", id=f"{kind}-control-character") for kind in bench.CSV_KINDS),
    *(pytest.param(kind, empty, "loaded", id=f"{kind}-{empty}") for kind in ("metrics", "changes") for empty in ("header-only", "zero-bytes", "blank")),
    pytest.param("ownership", "header-only", "loaded", id="ownership-header-only"),
    pytest.param("ownership", "zero-bytes", "rejected", id="ownership-zero-bytes"),
    pytest.param("ownership", "blank", "rejected", id="ownership-blank"),
    *(pytest.param(kind, number, "rejected", id=f"{kind}-{number}") for kind in ("config", "rules") for number in ("not-whole", "not-finite")),
    pytest.param("config", "no-source", "rejected", id="no-source"),
    pytest.param("config", "empty-slack-secret", "rejected", id="empty-slack-secret"),
    pytest.param("config", "webhook-url", "rejected", id="webhook-url"),
]


@pytest.mark.parametrize(("kind", "attack", "outcome"), NEW_HOSTILE)
def test_each_new_hostile_case_ends_as_it_must(runner: bench.Runner, kind: str, attack: str, outcome: str) -> None:
    # twelve variants: which column, which control character, which value, which setting, which URL
    for seed in range(12):
        result = run_attack(runner, kind, attack, seed)
        assert (result.outcome, result.detail) == (outcome, ""), result.message
        assert result.seconds < SECONDS


def test_a_named_pipe_for_a_metrics_file_is_refused_without_waiting_for_a_writer(runner: bench.Runner) -> None:
    result = run_attack(runner, "metrics", "fifo")
    assert result.outcome == "rejected"
    assert result.message == f"{runner.folder}/case-{result.case.number}.csv: is a named pipe (FIFO), not a regular file; expected a CSV file"
    assert result.seconds < 1


def test_an_ownership_file_of_dev_zero_is_refused_by_check(runner: bench.Runner) -> None:
    result = run_attack(runner, "config", "ownership-device")
    assert result.outcome == "rejected"
    assert result.message == "/dev/zero: is a character device, not a regular file; expected a CSV file"


def test_a_folder_for_config_yaml_is_refused(runner: bench.Runner) -> None:
    result = run_attack(runner, "config", "directory")
    assert result.message == f"{runner.folder}/cfg/config.yaml: is a directory, not a regular file; expected a YAML file"


def test_a_sparse_rules_file_over_the_limit_is_refused_before_it_is_read(runner: bench.Runner) -> None:
    result = run_attack(runner, "rules", "oversize")
    assert result.message == f"{runner.folder}/rules-case/rules/r.yaml: is 1.0 MB (1,000,001 bytes), over the 1 MB limit for a YAML file"


ROW = "date,account_id,campaign_id,spend,clicks,leads,impressions\n2026-07-01,1001,55,{spend},{clicks},1,{impressions}\n"


@pytest.mark.parametrize(("cells", "message"), [
    pytest.param({"spend": "1e300"}, "line 2, column spend: expected at most 10,000,000 (the source's max_row_spend), got '1e300'", id="spend-1e300"),
    pytest.param({"clicks": "1e20"}, "line 2, column clicks: expected at most 100,000,000 (the source's max_row_clicks), got '1e20'",
                 id="clicks-1e20-beyond-2**53"),
    pytest.param({"impressions": "1.7976931348623157e308"},
                 "line 2, column impressions: expected at most 1,000,000,000 (the source's max_row_impressions), got '1.7976931348623157e308'",
                 id="impressions-largest-double"),
    pytest.param({"clicks": "1e309"}, "line 2, column clicks: expected a whole number >= 0, got '1e309'", id="clicks-infinite"),
])
def test_a_row_beyond_a_ceiling_names_the_ceiling(runner: bench.Runner, cells: dict[str, str], message: str) -> None:
    data = ROW.format(**{"spend": "10", "clicks": "2", "impressions": "100", **cells}).encode()
    result = run_attack(runner, "metrics", bench.Attack(data, "beyond-ceiling"))
    assert result.outcome == "rejected"
    assert result.message == f"{runner.folder}/case-{result.case.number}.csv: {message}"


def test_a_header_only_metrics_file_loads_and_is_reported_empty(runner: bench.Runner) -> None:
    header = "date,account_id,campaign_id,spend,clicks,leads\n"
    assert run_attack(runner, "metrics", bench.Attack(header.encode(), "header-only", empty=True)).outcome == "loaded"
    # a file that holds a row is not empty: the runner tells the difference
    held = run_attack(runner, "metrics", bench.Attack(f"{header}2026-07-01,1001,55,10,2,1\n".encode(), "header-only", empty=True))
    assert held.outcome == "BUG loaded wrong"
    assert held.detail.startswith("an empty file not reported as empty: 1 rows stored")


def test_a_webhook_url_without_its_scheme_is_refused_without_showing_it(runner: bench.Runner) -> None:
    url = "hooks.slack.com/services/T0FUZZ/B0FUZZ/NotToBeShown123"
    text = f"{bench._SOURCE}alerts:\n  sinks:\n    - type: slack_webhook\n      url: '{url}'\n"
    result = run_attack(runner, "config", bench.Attack(text.encode(), "webhook-url", check=True, secret="NotToBeShown123"))
    assert result.outcome == "rejected"
    assert result.message == (
        f"{runner.folder}/cfg/config.yaml: alerts.sinks[0].url: expected the URL Slack gave for the incoming webhook, "
        "https://hooks.slack.com/services/…, got a value that does not start with https:// (not shown: it is a secret)"
    )


@pytest.mark.parametrize(("demands", "outcome", "message", "judged"), [
    pytest.param({"secret": "s3cret"}, "rejected", "config.yaml: url: got 's3cret'", "BUG secret shown", id="secret-shown"),
    pytest.param({"secret": "s3cret"}, "BUG unclear error", "config.yaml: got s3cret", "BUG secret shown", id="secret-shown-in-a-bug"),
    pytest.param({"refusal": "is a directory"}, "loaded", "", "BUG invalid loaded", id="loaded-not-refused"),
    pytest.param({"refusal": "is a directory"}, "rejected", "m.csv: line 1: bad header", "BUG unclear error", id="refused-for-another-reason"),
    pytest.param({"refusal": "is a directory"}, "rejected", "m.csv: bad header\nm.csv: is a directory, not a regular file", "rejected",
                 id="refused-for-its-reason-among-others"),
    pytest.param({"secret": "s3cret", "refusal": "url: "}, "rejected", "config.yaml: url: not shown", "rejected", id="refused-unshown"),
])
def test_the_benchmark_judges_a_hostile_case_by_its_demands(demands: dict, outcome: str, message: str, judged: str) -> None:
    case = bench.Case(0, "config", "hostile", b"", **demands)
    assert bench.judged(case, outcome, "", message)[0] == judged
