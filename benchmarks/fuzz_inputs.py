"""Bad input: thousands of generated files through the real loaders, and what became of each.

    python -m benchmarks.fuzz_inputs [--cases 10000] [--seed 1] [--timeout 2] [--case N]

Five kinds of file, in equal shares: a metrics CSV, a change-history CSV, an ownership CSV,
config.yaml and a rules file. Each case is one of:

- ``valid``: a well-formed file drawn at random (ids, names in any script, numbers written several
  ways, hourly and daily rows, offsets, anchors and aliases in YAML, a byte-order mark, CRLF ...);
- ``mutated``: a valid file with one to three edits that may or may not break it (a negative, NaN
  or 1e309 number, a date out of range or impossible, a huge cell, a duplicate row, column or key,
  a lost quote, a NUL, flipped bytes, another encoding, a YAML tag, an alias, deep nesting ...);
- ``hostile``: one known attack or accident (an alias bomb up to 9 levels of 9, 20,000 nested
  brackets, a recursive alias, ``!!python/object`` tags, a 1 MB cell, 100,000 columns, UTF-16,
  an endless-looking file ...); in the place of the file, ``/dev/zero``, a named pipe, a folder or
  a sparse file one byte over its size limit (a CSV file, config.yaml, a rules file, and the
  ownership file config.yaml names); a metrics row of spend 1e300 or beyond a ceiling
  (``max_row_spend`` ...), an id or a name holding a line break, a NUL or a C0/C1 control; a
  header-only, zero-byte or blank file; ``true`` for a whole number, ``.inf``, ``1e400`` or
  ``.nan`` for a number; a config that is empty, ``---``, ``null`` or names no source; an empty
  Slack secret, and a webhook URL without ``https://`` (or on another host);
- ``random``: arbitrary bytes, or a soup of the format's own characters.

Every file goes through the loader the service uses: the CSV source is pulled into one SQLite store
by ``anomaly.pipeline.pull_source`` (each case a source of its own), the ownership file is read by
``read_ownership_csv`` as ``anomaly.ownership.ownership_periods`` does, config.yaml and the rules
by ``load_config``; a hostile config.yaml about a source, a number, the ownership file or Slack is
loaded as ``anomaly check`` loads it (``require_sources=True``, then ``ownership_periods``). A
hostile case may demand a refusal for a given reason (``/dev/zero`` must be refused as a device,
not as bad text), a load (an empty metrics file loads, is reported empty and is no data), and that
no error shows a secret (a webhook URL). Outcomes:

- ``loaded``: the file loaded; a valid file loaded exactly as written, and every stored or loaded
  value is a valid one;
- ``rejected``: an ``InputError`` whose every problem names the file (``file: where: message``,
  ``where`` a line and column or a YAML path) and leaks no Python internals;
- ``BUG ...``: anything else: another exception (a traceback), an unclear error (or the wrong
  reason for a hostile case), more than ``--timeout`` seconds, a store changed by a rejected file,
  a valid file rejected or loaded wrong, an invalid value loaded, a secret shown in an error.

Prints a table of kind × outcome, the same by generator, the hostile cases by attack, the total
time, the slowest cases, the process's peak memory and the first example of each bug; exits 1 when
any case is a bug.
``--case N`` runs case N alone and prints its file and outcome (cases are numbered from 0 and each
is drawn from its own seed, so a bug is reproduced by its number).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import datetime as dt
import io
import logging
import os
import random
import re
import resource
import signal
import string
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
import yaml
from pydantic import BaseModel, SecretStr

from anomaly.config import Config, CsvSourceConfig, load_config
from anomaly.config.loading import NO_SOURCE
from anomaly.config.yamlio import MAX_YAML_BYTES
from anomaly.errors import InputError
from anomaly.files import MAX_CSV_BYTES, describe_size
from anomaly.ownership import ownership_periods
from anomaly.pipeline import pull_source
from anomaly.schema import CONTROL_CHARACTERS
from anomaly.store import Store, changes, metrics, pulls
from connectors.csv_files import read_ownership_csv

KINDS = ("metrics", "changes", "ownership", "config", "rules")
CSV_KINDS = ("metrics", "changes", "ownership")
GENERATORS = ("valid", "mutated", "hostile", "random")
TODAY = dt.date(2026, 7, 12)
HISTORY_DAYS = 3650  # the pull reaches back this far: every valid row is inside it
#: the most a metrics row holds under a CSV source's default ceilings (max_row_spend ...)
CEILINGS = {column: int(most) for column, most in CsvSourceConfig(type="csv", name="fuzz", metrics=["m.csv"]).row_ceilings.items()}
FIRST_DAY = TODAY - dt.timedelta(days=HISTORY_DAYS)
HANG_SECONDS = 30  # a case still running after this is stopped and reported as a hang
PARTIES = ("agency", "partner", "beacon")
#: a webhook URL without its scheme, as a deployment's environment might hold it by mistake
WEBHOOK_NO_SCHEME = "hooks.slack.com/services/T0FUZZ000/B0FUZZ000/EnvWebhookSecret0000xyz"
ENVIRON = {"SLACK_BOT_TOKEN": "xoxb-fuzz", "PARTY_NAME": "Env Party", "EMPTY": "", "SLACK_WEBHOOK_URL": WEBHOOK_NO_SCHEME}
OUTCOMES = (
    "loaded",
    "rejected",
    "BUG exception",
    "BUG unclear error",
    "BUG timeout",
    "BUG store changed",
    "BUG valid rejected",
    "BUG loaded wrong",
    "BUG invalid loaded",
    "BUG secret shown",
)

# Python's own words in a message mean that an exception's text leaked through unexplained.
_LEAKS = re.compile(
    r"Traceback|NoneType|object has no attribute|invalid literal for|unhashable type|could not convert string|"
    r"<unicode string>|Exceeds the limit|\[Errno|embedded null|codec can't|index out of range"
)
_CSV_WHERE = re.compile(r"(line \d+(, column [a-z_]+)?|header)?")


@dataclass
class Case:
    number: int
    kind: str
    generator: str
    data: bytes
    expected: Any = None  # what a valid file must load as
    notes: list[str] = field(default_factory=list)  # the edits applied, for the report
    size: int = 0  # bytes of ``data``, kept once the case has run and its data is let go
    # a hostile case's demands (see Attack)
    place: str = "file"
    placed: str = ""
    check: bool = False
    refusal: str = ""
    secret: str = ""
    empty: bool = False

    def __post_init__(self) -> None:
        self.size = len(self.data)


@dataclass
class Result:
    case: Case
    outcome: str
    seconds: float
    detail: str = ""
    peak_mb: float = 0.0  # the process's peak memory after the case
    message: str = ""  # the error of a rejected case


# ---------------------------------------------------------------------------------------------
# Text and values


_NAME_CHARS = (
    string.ascii_letters + string.digits + " _-.,;:'\"/\\|()&#%@+=?!*"
    + "éßüñçØåЖжΩπ中文字日本語한국어العربيةעבריתहिन्दी🙂🚀\u200b\xa0\u2028\x85\t\r\n"
)
_ID_CHARS = string.ascii_letters + string.digits + "-_.:/ éΩ中"


def _text(rng: random.Random, low: int, high: int, chars: str = _NAME_CHARS) -> str:
    return "".join(rng.choice(chars) for _ in range(rng.randint(low, high)))


def _name(rng: random.Random) -> str:
    """A display name: any characters, no surrounding whitespace (cells are stripped)."""
    return _text(rng, 0, 30).strip()


# an account's or a campaign's name holds no control character or line separator
_LABEL_CHARS = CONTROL_CHARACTERS.sub("", _NAME_CHARS)


def _label(rng: random.Random) -> str:
    """An account's or a campaign's name: any script, no control characters (``_name`` otherwise)."""
    return _text(rng, 0, 30, _LABEL_CHARS).strip()


def _ident(rng: random.Random, prefix: str) -> str:
    """An id unique to its case: kept as written, so leading zeros and inner spaces must survive."""
    body = rng.choice([
        lambda: str(rng.randint(0, 10**12)).zfill(rng.randint(1, 12)),
        lambda: _text(rng, 1, 12, _ID_CHARS),
        lambda: f"{rng.randint(1000, 9999)}-{rng.randint(100, 999)}",
    ])().strip() or "0"
    return f"{prefix}{body}"[:64]


def _number(rng: random.Random, value: float, whole: bool = False) -> str:
    """``value`` written one of the ways a spreadsheet writes it."""
    if whole:
        forms = [str(int(value)), f"{int(value)}.0", f" {int(value)} ", f"{int(value):d}"]
        if value >= 10:
            forms.append(f"{value:.0e}" if float(f"{value:.0e}") == value else str(int(value)))
    else:
        forms = [repr(value), f"{value:.17g}", f" {value!r} ", f"{value:.17e}", f"+{value!r}"]
    return rng.choice(forms)


def _day(rng: random.Random, first: dt.date = FIRST_DAY + dt.timedelta(days=1), last: dt.date = TODAY) -> dt.date:
    return first + dt.timedelta(days=rng.randint(0, (last - first).days))


def _csv_text(rng: random.Random, header: list[str], rows: list[list[str]]) -> bytes:
    """A CSV as a spreadsheet or a script might write it: quoting, line ends, header case, blank
    lines and rows of empty cells vary; sometimes a UTF-8 byte-order mark."""
    out = io.StringIO(newline="")
    # the writer leaves a cell with a bare \r unquoted when lines end with \n: a broken file
    breaks = any("\r" in cell for row in rows for cell in row)
    quoting = csv.QUOTE_ALL if breaks else rng.choice([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])
    writer = csv.writer(out, quoting=quoting, lineterminator=rng.choice(["\n", "\r\n"]))
    writer.writerow([rng.choice([h, h.upper(), f" {h} ", h.title()]) for h in header])
    for row in rows:
        if rng.random() < 0.05:
            out.write(rng.choice(["\n", "\r\n", "," * (len(header) - 1) + "\n"]))
        writer.writerow(row)
    data = out.getvalue().encode("utf-8")
    return codecs.BOM_UTF8 + data if rng.random() < 0.1 else data


# ---------------------------------------------------------------------------------------------
# Valid files and what they must load as


METRIC_REQUIRED = ["date", "account_id", "campaign_id", "spend", "clicks", "leads"]
METRIC_OPTIONAL = ["account_name", "campaign_name", "currency", "impressions", "hour"]


def valid_metrics(rng: random.Random, case: int) -> tuple[bytes, list[tuple]]:
    """A metrics CSV and its rows as the store must hold them (``metrics`` table columns)."""
    columns = METRIC_REQUIRED + [c for c in METRIC_OPTIONAL if rng.random() < 0.5]
    rng.shuffle(columns)
    rows, expected = [], []
    for a in range(rng.randint(0, 3)):
        account = _ident(rng, f"{case}:{a}:")
        account_name = _label(rng)
        for c in range(rng.randint(1, 3)):
            campaign = _ident(rng, f"{c}-")
            campaign_name = _label(rng)
            hourly = "hour" in columns and rng.random() < 0.3
            for day in sorted({_day(rng) for _ in range(rng.randint(1, 4))}):
                for hour in sorted({rng.randint(0, 23) for _ in range(rng.randint(1, 3))}) if hourly else [None]:
                    spend = rng.choice([0.0, round(rng.uniform(0, 500), 2), rng.uniform(0, 1e6), float(rng.randint(0, CEILINGS["spend"]))])
                    clicks = rng.choice([0, rng.randint(0, 500), rng.randint(0, CEILINGS["clicks"])])
                    leads = rng.choice([0.0, float(rng.randint(0, 20)), rng.uniform(0, 10)])
                    impressions = rng.choice([None, 0, rng.randint(0, 10**7)])
                    currency = rng.choice(["", "USD", "eur", "Gbp", "JPY"])
                    cells = {
                        "date": day.isoformat(),
                        "account_id": rng.choice([account, f" {account} "]),
                        "campaign_id": campaign,
                        "spend": _number(rng, spend),
                        "clicks": _number(rng, clicks, whole=True),
                        "leads": _number(rng, leads),
                        "account_name": account_name,
                        "campaign_name": campaign_name,
                        "currency": currency,
                        "impressions": "" if impressions is None else _number(rng, impressions, whole=True),
                        "hour": "" if hour is None else _number(rng, hour, whole=True),
                    }
                    rows.append([cells[c] for c in columns])
                    expected.append((
                        account, campaign, day, -1 if hour is None else hour,
                        account_name if "account_name" in columns and account_name else account,
                        campaign_name if "campaign_name" in columns and campaign_name else campaign,
                        currency.upper() if "currency" in columns and currency else "USD",
                        spend, (impressions or 0) if "impressions" in columns else 0, clicks, leads,
                    ))
    rng.shuffle(rows)
    return _csv_text(rng, columns, rows), sorted(expected, key=repr)


CHANGE_COLUMNS = ["changed_at", "account_id", "campaign_id", "user_email", "client_type", "resource_type", "operation", "changed_fields"]
CLIENT_TYPES = ["GOOGLE_ADS_WEB_CLIENT", "GOOGLE_ADS_API", "GOOGLE_ADS_AUTOMATED_RULE", "GOOGLE_ADS_SCRIPTS", "", "OTHER"]


def valid_changes(rng: random.Random, case: int) -> tuple[bytes, list[tuple]]:
    """A change-history CSV and its rows as the store must hold them: ``changed_at`` in naive UTC,
    one row per distinct change (the store keeps a change written twice once)."""
    columns = ["changed_at", "account_id"] + [c for c in CHANGE_COLUMNS[2:] if rng.random() < 0.6]
    rng.shuffle(columns)
    rows, expected, seen = [], [], set()
    for _ in range(rng.randint(0, 12)):
        utc = dt.datetime.combine(_day(rng, last=TODAY - dt.timedelta(days=1)), dt.time()) + dt.timedelta(
            seconds=rng.randint(0, 86399), microseconds=rng.choice([0, 0, rng.randint(0, 999_999)])
        )
        offset = rng.choice([None, None, 0, rng.randint(-14 * 60, 14 * 60)])
        local = utc + dt.timedelta(minutes=offset or 0)
        text = local.strftime(rng.choice(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]))
        if local.microsecond:
            text += f".{local.microsecond:06d}"
        elif rng.random() < 0.3 and local.second == 0:
            text = text[:-3]
        if offset is not None:
            sign = "-" if offset < 0 else "+"
            text += "Z" if offset == 0 and rng.random() < 0.5 else f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
        cells = {
            "changed_at": text,
            "account_id": _ident(rng, f"{case}:"),
            "campaign_id": rng.choice(["", _ident(rng, "")]),
            "user_email": rng.choice(["", f"{_text(rng, 1, 8, string.ascii_lowercase)}@{rng.choice(['agency.example', 'Partner.Example'])}"]),
            "client_type": rng.choice(CLIENT_TYPES),
            "resource_type": rng.choice(["CAMPAIGN", "AD_GROUP", "CAMPAIGN_BUDGET", ""]),
            "operation": rng.choice(["CREATE", "UPDATE", "REMOVE", ""]),
            "changed_fields": _name(rng),
        }
        rows.append([cells[c] for c in columns])
        stored = tuple([utc] + [cells[c] if c in columns else "" for c in CHANGE_COLUMNS[1:]])
        identity = stored[:4] + stored[5:]  # the store's change key leaves client_type out
        if identity not in seen:
            seen.add(identity)
            expected.append(stored)
    return _csv_text(rng, columns, rows), sorted(expected, key=repr)


def valid_ownership(rng: random.Random, case: int) -> tuple[bytes, list[tuple]]:
    """An ownership CSV (periods of one account or campaign never overlap) and its periods."""
    columns = ["account_id", "party", "start"] + [c for c in ("campaign_id", "end") if rng.random() < 0.7]
    rng.shuffle(columns)
    rows, expected = [], []
    for a in range(rng.randint(0, 4)):
        account = _ident(rng, f"{case}:{a}:")
        for campaign in ["", _ident(rng, "")] if "campaign_id" in columns else [""]:
            day = _day(rng, dt.date(1900, 1, 1), dt.date(2150, 1, 1))
            for _ in range(rng.randint(1, 3)):
                end = day + dt.timedelta(days=rng.randint(1, 400)) if "end" in columns and rng.random() < 0.7 else None
                party = rng.choice(PARTIES)
                cells = {"account_id": account, "campaign_id": campaign, "party": party, "start": day.isoformat(),
                         "end": "" if end is None else end.isoformat()}
                rows.append([cells[c] for c in columns])
                expected.append((account, campaign, party, pd.Timestamp(day), pd.NaT if end is None else pd.Timestamp(end)))
                if end is None:
                    break
                day = end + dt.timedelta(days=rng.choice([0, 0, 3]))
    order = list(range(len(rows)))
    rng.shuffle(order)
    return _csv_text(rng, columns, [rows[i] for i in order]), [expected[i] for i in order]


TIMEZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe"]
CRONS = ["15 7 * * *", "0 */6 * * *", "30 4 * * 1-5", "*/15 * * * *", "0 0 1 * *"]


def _slug(rng: random.Random) -> str:
    return rng.choice(string.ascii_lowercase + string.digits) + _text(rng, 0, 12, string.ascii_lowercase + string.digits + "_.-")


def _unique_slugs(rng: random.Random, n: int) -> list[str]:
    slugs: dict[str, None] = {}
    while len(slugs) < n:
        slugs[_slug(rng)] = None
    return list(slugs)


def _yaml(rng: random.Random, data: Any) -> bytes:
    text = yaml.safe_dump(data, default_flow_style=rng.choice([False, None, True]), sort_keys=rng.random() < 0.5,
                          allow_unicode=rng.random() < 0.5, width=rng.choice([80, 10**6]))
    encoded = text.encode("utf-8")
    return codecs.BOM_UTF8 + encoded if rng.random() < 0.05 else encoded


_PLAIN_CHARS = re.sub("[$\x85\u2028]", "", _NAME_CHARS)


def _plain(rng: random.Random) -> str:
    """Text for a name in config: no ``$`` (``${VAR}`` is expanded) and no NEL or line separator,
    which PyYAML's dump writes as line breaks that its load then folds into spaces."""
    return _text(rng, 1, 20, _PLAIN_CHARS) if rng.random() < 0.9 else "${PARTY_NAME}"


def valid_config(rng: random.Random, case: int) -> tuple[bytes, dict]:
    """A config.yaml (rules in the fixed rules folder beside it) and the settings it writes."""
    data: dict[str, Any] = {}
    keys = _unique_slugs(rng, rng.randint(0, 3))
    if keys or rng.random() < 0.5:
        data["parties"] = {
            k: {"name": _plain(rng), **({"domains": [f"{_text(rng, 1, 10, string.ascii_lowercase + string.digits)}{i}.Example"]} if rng.random() < 0.6 else {})}
            for i, k in enumerate(keys)
        }
    if rng.random() < 0.6:
        shared = {"cron": rng.choice(CRONS), "timezone": rng.choice(TIMEZONES + [None])}
        data["sources"] = [
            {
                "name": name,
                "type": "csv",
                "metrics": [rng.choice(["exports/*.csv", "m.csv", "data/ä ö.csv"])],
                **({"changes": ["changes.csv"]} if rng.random() < 0.5 else {}),
                **({"currency": rng.choice(["USD", "EUR"])} if rng.random() < 0.5 else {}),
                "lookback_days": rng.randint(0, 90),
                "history_days": rng.randint(1, 3650),
                # one schedule object for every source: the dump writes it once, as an anchor and aliases
                **({"schedule": shared} if rng.random() < 0.7 else {}),
            }
            for name in _unique_slugs(rng, rng.randint(1, 3))
        ]
    if keys and rng.random() < 0.7:
        assignments = []
        for account in sorted({str(rng.randint(10**9, 10**10 - 1)) for _ in range(rng.randint(1, 3))}):
            since = sorted({_day(rng, dt.date(2000, 1, 1), dt.date(2099, 1, 1)) for _ in range(rng.randint(1, 3))})
            assignments.append({"account_id": account, "history": [{"party": rng.choice(keys), "since": d} for d in since]})
        data["ownership"] = {"default_party": rng.choice(keys), "assignments": assignments}
    baseline = {
        "half_life_days": rng.uniform(0.5, 365), "min_days": rng.randint(1, 365), "min_leads": rng.uniform(0, 50),
        "elevated_ratio": rng.uniform(1.01, 5), "elevated_p_value": rng.uniform(1e-6, 1), "probation_days": rng.randint(0, 365),
    }
    detection = {
        "account_level": rng.random() < 0.5,
        "baseline": dict(rng.sample(sorted(baseline.items()), rng.randint(0, len(baseline)))),
        "variation": {"leads": rng.uniform(0, 2), "clicks": rng.uniform(0, 2)},
        "incidents": {"resolve_after_days": rng.randint(1, 60)},
    }
    data["detection"] = dict(rng.sample(sorted(detection.items()), rng.randint(0, len(detection))))
    steps = sorted({round(rng.uniform(1, 10**6), 2) for _ in range(rng.randint(1, 6))})
    sinks = rng.choice([[{"type": "console"}], [{"type": "console"}, {"type": "jsonl", "path": "alerts.jsonl"}], []])
    alerts: dict[str, Any] = {"sinks": sinks, "excess_steps": steps, "group_min_incidents": rng.randint(2, 1000),
                              "repeat_every_hours": rng.choice([0, 24, rng.uniform(0, 2160)])}
    if sinks and sinks[0]["type"] == "console" and rng.random() < 0.5:
        alerts["routes"] = [{"severity": "critical", "sinks": ["console"], "continue": rng.random() < 0.5}]
    if rng.random() < 0.3:
        alerts["campaign_url"] = rng.choice([None, "https://ads.example/{account_id}/{campaign_id}"])
    data["alerts"] = alerts
    data["service"] = {"timezone": rng.choice(TIMEZONES), "deliver_every_minutes": rng.randint(1, 1440),
                       "refit": {"cron": rng.choice(CRONS)}}
    data["store"] = {"url": rng.choice(["sqlite:///:memory:", "sqlite:////var/lib/ads/anomaly.db", "postgresql+psycopg://ads@db/ads"])}
    if keys and rng.random() < 0.5:
        data["settlement"] = {"bears": rng.choice(["managing_party", "changed_by"]), "shares": {keys[0]: {keys[-1]: 100}}}
    for key in rng.sample(sorted(data), rng.randint(0, len(data))):
        data.pop(key, None)  # every setting has a default ...
        if key == "parties":  # ... but the settings that name a party need it
            data.pop("ownership", None)
            data.pop("settlement", None)
    return _yaml(rng, data), data


RULES_CONFIG = "parties:\n  agency: {name: Agency}\n  partner: {name: Partner}\ndetection:\n  forest: {enabled: true}\n"


def _rule(rng: random.Random, name: str) -> dict:
    kind = rng.choice(["cpl_ratio", "lead_shortfall", "threshold", "spend_ratio", "isolation_forest"])
    rule: dict[str, Any] = {"name": name, "type": kind}
    if kind in ("cpl_ratio", "spend_ratio"):
        warning = rng.uniform(1.01, 10)
        critical = rng.choice([None, warning * rng.uniform(1, 3)])
        override = rng.uniform(1.001, warning)
    elif kind == "lead_shortfall":
        warning = rng.uniform(0, 0.99)
        critical = rng.choice([None, warning * rng.uniform(0, 1)])
        override = rng.uniform(warning, 0.999)
    elif kind == "threshold":
        rule["metric"] = rng.choice(["cpl", "cpc", "ctr", "cvr", "spend", "leads", "clicks", "impressions"])
        rule["direction"] = rng.choice(["above", "below"])
        warning = rng.uniform(0, 1000)
        critical = rng.choice([None, warning * (rng.uniform(1, 3) if rule["direction"] == "above" else rng.uniform(0, 1))])
        override = warning * (rng.uniform(0, 1) if rule["direction"] == "above" else rng.uniform(1, 2))
    else:
        warning = rng.uniform(0.01, 0.98)
        critical = rng.choice([None, rng.uniform(warning, 0.999)])
        override = rng.uniform(0.001, warning)
    rule["warning"] = warning
    if critical is not None:
        rule["critical"] = critical
    optional = {
        "description": _plain(rng).replace("${PARTY_NAME}", "plain"),
        "enabled": rng.random() < 0.8,
        "family": _slug(rng),
        "window_days": rng.randint(1, 28),
        "min_spend": rng.uniform(0, 1000),
        "min_expected_leads": rng.uniform(0, 10),
        "max_p_value": rng.uniform(1e-9, 1),
        "baseline_lag_days": rng.randint(0, 90),
        "scope": {"accounts": [str(rng.randint(0, 10**10))], "parties": rng.sample(["agency", "partner"], rng.randint(0, 2))},
        "after_ownership_change": {"within_days": rng.randint(1, 365), "warning": override, "max_p_value": rng.uniform(1e-6, 1)},
    }
    if kind != "isolation_forest":
        optional["forest"] = {"mode": rng.choice(["ignore", "require", "escalate"]), "min_score": rng.uniform(0.01, 0.99)}
    rule.update(rng.sample(sorted(optional.items()), rng.randint(0, len(optional))))
    return rule


def valid_rules(rng: random.Random, case: int) -> tuple[bytes, list[dict]]:
    rules = [_rule(rng, name) for name in _unique_slugs(rng, rng.randint(1, 6))]
    return _yaml(rng, {"rules": rules}), rules


VALID: dict[str, Callable[[random.Random, int], tuple[bytes, Any]]] = {
    "metrics": valid_metrics,
    "changes": valid_changes,
    "ownership": valid_ownership,
    "config": valid_config,
    "rules": valid_rules,
}


# ---------------------------------------------------------------------------------------------
# Edits


BAD_CELLS = [
    "-1", "-12.5", "-0", "nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e309", "1e-400", "", " ", "n/a", "NULL",
    "0000-01-01", "9999-12-31", "2026-02-30", "1899-12-31", "1900-01-01", "2199-12-31", "2200-01-01", "2026-7-1",
    "07/01/2026", "2026-07-01T25:00", "2026-07-01T10:00+99:00", "2026-07-01T10:00:00.123456789", "24", "-1", "3.5",
    "9007199254740993", "9223372036854775808", "1e20", "0x10", "1,000", "1_000", "١٢٣", "½", "true", '"', 'a"b',
    '"unclosed', "\r", "\n", "\x00", "\ufeff", "x" * 200, "1" * 65, "€", "US$", "usd", "acme", "\u2028",
    # beyond a source's ceilings (max_row_spend ...), and control characters inside an id or a name
    "1e300", "10000001", "100000001", "1000000001", "1000001", "a\x85b", "a\x9bb", "a\x1b[31mb", "a\x7fb", "a\tb", "a\u2029b",
]
#: what no id or name may hold (anomaly.schema.CONTROL_CHARACTERS): line breaks, a tab, escape, DEL, NEL, CSI, separators, NUL
CONTROLS = ["\n", "\r", "\r\n", "\t", "\x0b", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\x00"]
YAML_VALUES = [
    ".nan", ".inf", "-.inf", "-1", "-0.0", "0", "1e309", "-1e309", "0000-01-01", "9999-12-31", "2026-02-30",
    "2026-07-01 25:00:00", "2026-01-01 10:00:00 +99:00", "9999-12-31 23:59:59 -05:00", "~", "''", "yes", "No", "0x1F",
    "0o17", "1_000", "0b102", "1:2:3", "!!python/object/apply:os.system ['true']", "!!python/name:os.system",
    "!!binary '@@'", "!!timestamp nope", "!!int x", "!!float x", "!!bool maybe", "!!map x", "!!set {[a]: ~}",
    "!!omap [1]", "*nowhere", "&a [*a]", "'${UNSET}'", "${SLACK_BOT_TOKEN}", "'$$'", "1" * 5000, "[" * 100,
    "{" * 50, "? [a, b]\n  : c", "[[[]]]", "{a: {b: {c: d}}}", "|\n  block\n  text", ">-\n  folded", "'\\x00'",
    '"\\0"', '"\\ud800"', "\t", "%YAML 1.1", "---", "...", "@", "`", "a: b: c", "[a, b", "{a: 1, a: 2}",
    # not a whole number, not a finite number, an empty secret
    "true", "false", "7.0", "'7'", "1e400", "-1e400", ".NaN", "1.8e308", "'  '",
]


def _bomb(levels: int, width: int, key: str = "lol") -> str:
    """The "billion laughs": each level an anchored list of ``width`` aliases of the level below."""
    lines = [f"{key}0: &{key}0 [{', '.join(['lol'] * width)}]"]
    lines += [f"{key}{i}: &{key}{i} [{', '.join([f'*{key}{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _deep(depth: int, flow: bool) -> str:
    if flow:
        return "[" * depth + "]" * depth
    return "\n".join("  " * i + "a:" for i in range(depth)) + " 1"


def _encode(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    text = data.decode("utf-8", errors="replace")
    encoding = rng.choice(["utf-16", "utf-16-le", "utf-16-be", "latin-1", "cp1252", "utf-8-sig", "utf-32"])
    return text.encode(encoding, errors="replace"), f"encoded {encoding}"


def _bytes_edit(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    edited = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not edited:
            break
        edited[rng.randrange(len(edited))] = rng.randrange(256)
    return bytes(edited), "flipped bytes"


def _truncate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    return data[: rng.randint(0, len(data))], "truncated"


def mutate_csv(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One edit of a CSV: a cell, a row, the header, the bytes or the encoding."""
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines(keepends=True) or ["\n"]
    i = rng.randrange(len(lines))
    fields = lines[i].rstrip("\r\n").split(",")
    end = lines[i][len(lines[i].rstrip("\r\n")):] or "\n"
    j = rng.randrange(len(fields))
    edit = rng.choice(["cell", "cell", "cell", "dup-row", "drop-cell", "add-cell", "dup-column", "rename-column", "drop-header",
                       "blank", "huge-cell", "encode", "bytes", "truncate", "nul", "lone-cr", "swap-rows", "control",
                       "header-only"])
    if edit == "cell":
        fields[j] = rng.choice(BAD_CELLS)
        lines[i] = ",".join(fields) + end
    elif edit == "dup-row":
        lines.insert(i, lines[i] if lines[i].endswith(("\n", "\r")) else lines[i] + "\n")
    elif edit == "drop-cell":
        del fields[j]
        lines[i] = ",".join(fields) + end
    elif edit == "add-cell":
        fields.insert(j, rng.choice(BAD_CELLS))
        lines[i] = ",".join(fields) + end
    elif edit == "dup-column":
        header = lines[0].rstrip("\r\n").split(",")
        lines[0] = ",".join(header + [rng.choice(header)]) + "\n"
    elif edit == "rename-column":
        header = lines[0].rstrip("\r\n").split(",")
        header[rng.randrange(len(header))] = rng.choice(["", "Spend ", "leeds", "date", "hour", "x" * 300, "änd"])
        lines[0] = ",".join(header) + "\n"
    elif edit == "drop-header":
        del lines[0]
    elif edit == "blank":
        lines.insert(i, rng.choice(["\n", ",,,\n", " \n", "\r\n"]))
    elif edit == "huge-cell":
        fields[j] = rng.choice(["x" * rng.choice([1000, 100_000, 140_000]), '"' + "y" * 200_000 + '"', "z" * 1_100_000])
        lines[i] = ",".join(fields) + end
    elif edit == "encode":
        return _encode(rng, data)
    elif edit == "bytes":
        return _bytes_edit(rng, data)
    elif edit == "truncate":
        return _truncate(rng, data)
    elif edit == "nul":
        k = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:k] + "\x00" + lines[i][k:]
    elif edit == "lone-cr":
        lines[i] = lines[i].rstrip("\r\n") + "\r"
    elif edit == "swap-rows":
        k = rng.randrange(len(lines))
        lines[i], lines[k] = lines[k], lines[i]
    elif edit == "control":  # inside a cell, quoted so that a line break stays in it
        k = rng.randint(0, len(fields[j]))
        cell = fields[j][:k] + rng.choice(CONTROLS) + fields[j][k:]
        fields[j] = cell if cell.startswith('"') else '"' + cell.replace('"', '""') + '"'
        lines[i] = ",".join(fields) + end
    elif edit == "header-only":
        del lines[1:]
    return "".join(lines).encode("utf-8", errors="surrogatepass"), edit


def mutate_yaml(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One edit of a YAML file: a value, a line, a key, an alias, nesting, the bytes or the encoding."""
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines(keepends=True) or ["\n"]
    i = rng.randrange(len(lines))
    edit = rng.choice(["value", "value", "value", "dup-line", "drop-line", "indent", "char", "anchor", "bomb", "deep",
                       "truncate", "encode", "bytes", "dup-key", "huge", "env", "swap-lines"])
    if edit == "value":
        line = lines[i].rstrip("\r\n")
        k = line.find(": ")
        value = rng.choice(YAML_VALUES)
        lines[i] = (line[: k + 2] + value if k >= 0 else line + " " + value) + "\n"
    elif edit == "dup-line":
        lines.insert(i, lines[i])
    elif edit == "drop-line":
        del lines[i]
    elif edit == "indent":
        lines[i] = rng.choice([" ", "  ", "\t", ""]) + (lines[i][1:] if rng.random() < 0.5 else lines[i])
    elif edit == "char":
        k = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:k] + rng.choice(list(":-[]{}&*!|>'\"%@`#,?\\ \t\n") + ["\x00", "\x85", "\ufeff"]) + lines[i][k + rng.randint(0, 1):]
    elif edit == "anchor":
        targets = [n for n, line in enumerate(lines) if ": " in line and not line.rstrip().endswith(":")]
        if len(targets) >= 2:
            a, b = sorted(rng.sample(targets, 2))
            if rng.random() < 0.5:
                a, b = b, a  # an alias before its anchor
            head, _, value = lines[a].partition(": ")
            lines[a] = f"{head}: &x {value}"
            head, _, _ = lines[b].partition(": ")
            lines[b] = f"{head}: *x\n"
    elif edit == "bomb":
        lines.append(_bomb(rng.randint(2, 9), rng.randint(2, 9), key=rng.choice(["lol", "x"])))
    elif edit == "deep":
        line = lines[i].rstrip("\r\n")
        k = line.find(": ")
        nested = _deep(rng.choice([10, 63, 64, 65, 100, 1000, 20_000]), flow=True)
        lines[i] = (line[: k + 2] if k >= 0 else line + ": ") + nested + "\n"
    elif edit == "truncate":
        return _truncate(rng, data)
    elif edit == "encode":
        return _encode(rng, data)
    elif edit == "bytes":
        return _bytes_edit(rng, data)
    elif edit == "dup-key":
        top = [n for n, line in enumerate(lines) if line[:1].isalpha()]
        if top:
            n = rng.choice(top)
            end = next((m for m in range(n + 1, len(lines)) if lines[m][:1].isalpha()), len(lines))
            lines.extend(lines[n:end])
    elif edit == "huge":
        line = lines[i].rstrip("\r\n")
        k = line.find(": ")
        lines[i] = (line[: k + 2] if k >= 0 else line + ": ") + "h" * rng.choice([1000, 100_000, 999_000, 1_200_000]) + "\n"
    elif edit == "env":
        line = lines[i].rstrip("\r\n")
        k = line.find(": ")
        value = rng.choice(["${UNSET}", "${UNSET:-fallback}", "'$${X}'", "${EMPTY}", "${SLACK_BOT_TOKEN}", "${1BAD}", "${"])
        lines[i] = (line[: k + 2] if k >= 0 else line + ": ") + value + "\n"
    elif edit == "swap-lines":
        k = rng.randrange(len(lines))
        lines[i], lines[k] = lines[k], lines[i]
    return "".join(lines).encode("utf-8", errors="surrogatepass"), edit


# ---------------------------------------------------------------------------------------------
# Hostile files and noise


DEVICE = Path("/dev/zero")
#: what may stand where a file should be: a device, a named pipe, a folder, a sparse file one byte
#: over the size limit (its size is there, its bytes are not)
PLACES = ("device", "fifo", "directory", "oversize")


@dataclass
class Attack:
    """A hostile file, and what must become of it."""

    data: bytes
    note: str
    place: str = "file"  # "file": ``data`` is written; else one of PLACES stands where the file should be
    placed: str = ""  # config: the file beside config.yaml that ``place`` is about (config.yaml itself when empty)
    check: bool = False  # config: loaded as ``anomaly check`` loads it (a source required, the ownership file read)
    refusal: str = ""  # a pattern the error must match: the file must be rejected, and for this reason
    secret: str = ""  # a value no error may show
    empty: bool = False  # a metrics file that must load, be reported empty, and be no data


def _refused_place(place: str, what: str) -> str:
    """The pattern of the error for ``place`` where a ``what`` ("CSV" or "YAML") file should be."""
    if place == "oversize":
        limit = MAX_CSV_BYTES if what == "CSV" else MAX_YAML_BYTES
        return re.escape(f"over the {describe_size(limit)} limit for a {what} file")
    kind = {"device": "a character device", "fifo": "a named pipe (FIFO)", "directory": "a directory"}[place]
    return re.escape(f"is {kind}, not a regular file; expected a {what} file")


_HEADERS = {"metrics": "date,account_id,campaign_id,campaign_name,spend,clicks,leads",
            "changes": "changed_at,account_id,campaign_id,user_email,client_type",
            "ownership": "account_id,campaign_id,party,start,end"}
#: one valid row of each CSV kind, every column filled
_ROWS = {
    "metrics": {"date": "2026-07-01", "account_id": "1001", "account_name": "Acme", "campaign_id": "55", "campaign_name": "Brand",
                "spend": "10", "impressions": "100", "clicks": "2", "leads": "1"},
    "changes": {"changed_at": "2026-07-01T10:00", "account_id": "1001", "campaign_id": "55", "user_email": "a@agency.example",
                "client_type": "GOOGLE_ADS_API"},
    "ownership": {"account_id": "1001", "campaign_id": "55", "party": "agency", "start": "2026-01-01", "end": ""},
}
#: the columns that hold an id or a name, which no control character may be in
_TEXT_COLUMNS = {"metrics": ("account_id", "account_name", "campaign_id", "campaign_name"),
                 "changes": ("account_id", "campaign_id"), "ownership": ("account_id", "campaign_id")}
CSV_ATTACKS = {
    kind: ("1MB-cell", "1MB-quoted-cell", "100k-columns", "100k-empty-columns", "wide-row", "50k-bad-rows", "utf16-bom",
           "utf16-no-bom", "utf8-bom", "latin1", "nul-file", "long-id", "quote-runs-to-end", "header-only", "zero-bytes",
           "blank", "edge-dates", "edge-numbers", "many-duplicates", *PLACES, "control-character")
    + (("spend-1e300", "beyond-ceiling") if kind == "metrics" else ())
    for kind in CSV_KINDS
}


def _one_row(kind: str, **cells: str) -> bytes:
    """A header and one row of ``kind``, ``cells`` replaced, every cell quoted."""
    row = {**_ROWS[kind], **cells}
    out = io.StringIO(newline="")
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(list(row))
    writer.writerow(list(row.values()))
    return out.getvalue().encode("utf-8")


def _over_ceiling(column: str) -> str:
    return re.escape(f"line 2, column {column}: expected at most {CEILINGS[column]:,} (the source's max_row_{column})")


def hostile_csv(rng: random.Random, kind: str, attack: str | None = None) -> Attack:
    """One attack on a CSV file of ``kind`` (drawn from CSV_ATTACKS when not given)."""
    attack = attack or rng.choice(CSV_ATTACKS[kind])
    header = _HEADERS[kind]
    row = {"metrics": "2026-07-01,1001,55,{},10,2,1", "changes": "2026-07-01T10:00,1001,55,{},GOOGLE_ADS_API",
           "ownership": "1001,{},agency,2026-01-01,"}[kind]
    # an empty file is no error in a CSV source (reported, no data); the ownership file needs its header
    empty = {"empty": kind == "metrics", "refusal": re.escape("the file is empty; expected a header line") if kind == "ownership" else ""}
    if attack in PLACES:
        return Attack(b"", attack, place=attack, refusal=_refused_place(attack, "CSV"))
    if attack == "spend-1e300":
        return Attack(_one_row(kind, spend=rng.choice(["1e300", "1E300", "1.0e+300", " 1e300 "])), attack, refusal=_over_ceiling("spend"))
    if attack == "beyond-ceiling":
        column = rng.choice(sorted(CEILINGS))
        most = CEILINGS[column]
        value = rng.choice([str(most + 1), f"{most * 10:.0f}", "1e20", "1e300", "1.7976931348623157e308"]
                           + ([f"{most}.5"] if column in ("spend", "leads") else []))
        return Attack(_one_row(kind, **{column: value}), attack, refusal=_over_ceiling(column))
    if attack == "control-character":
        column = rng.choice(_TEXT_COLUMNS[kind])
        value, control = _ROWS[kind][column], rng.choice(CONTROLS)
        k = rng.randint(1, len(value) - 1)  # inside the value: a cell is stripped of whitespace around it
        refusal = rf"line 2(, column {column}: expected text without control characters|: not valid UTF-8 text \(a NUL byte)"
        return Attack(_one_row(kind, **{column: value[:k] + control + value[k:]}), attack, refusal=refusal)
    if attack == "header-only":
        end = rng.choice(["\n", "\r\n", ""])
        data = (header + end).encode()
        return Attack(codecs.BOM_UTF8 + data if rng.random() < 0.3 else data, attack, empty=kind == "metrics")
    if attack == "zero-bytes":
        return Attack(b"", attack, **empty)
    if attack == "blank":
        return Attack(rng.choice([b"\n\n\n", b"\r\n", b"\xef\xbb\xbf", b" , , \n", b"\xef\xbb\xbf\n"]), attack, **empty)
    if attack == "1MB-cell":
        text = f"{header}\n{row.format('n' * 1_000_000)}\n"
    elif attack == "1MB-quoted-cell":
        text = f'{header}\n{row.format(chr(34) + "q, " * 333_333 + chr(34))}\n'
    elif attack == "100k-columns":
        text = header + "," + ",".join(f"x{n}" for n in range(100_000)) + "\n"
    elif attack == "100k-empty-columns":
        text = header + "," * 100_000 + "\n"
    elif attack == "wide-row":
        text = f"{header}\n{row.format('w')}" + ",1" * 100_000 + "\n"
    elif attack == "50k-bad-rows":
        text = header + "\n" + "".join(f"{rng.choice(BAD_CELLS)},{n},-1,x,y,z,w\n" for n in range(50_000))
    elif attack == "utf16-bom":
        return Attack(f"{header}\n{row.format('Café')}\n".encode("utf-16"), attack)
    elif attack == "utf16-no-bom":
        return Attack(f"{header}\n{row.format('Café')}\n".encode("utf-16-le"), attack)
    elif attack == "utf8-bom":
        return Attack(codecs.BOM_UTF8 + f"{header}\n{row.format('Café')}\n".encode(), attack)
    elif attack == "latin1":
        return Attack(f"{header}\n{row.format('Café')}\n".encode("latin-1"), attack)
    elif attack == "nul-file":
        return Attack(b"\x00" * rng.choice([1, 1000, 100_000]), attack)
    elif attack == "long-id":
        text = f"{header}\n" + row.replace("1001", "9" * rng.choice([64, 65, 1000])).format("n") + "\n"
    elif attack == "quote-runs-to-end":
        text = f'{header}\n{row.format(chr(34) + "open")}\n' + "more,lines\n" * rng.choice([10, 50_000])
    elif attack == "edge-dates":
        dates = ["0000-01-01", "0001-01-01", "1677-09-21", "1899-12-31", "1900-01-01", "2199-12-31", "2200-01-01", "2262-04-12",
                 "9999-12-31", "2026-02-30", "2024-02-29", "2023-02-29"]
        if kind == "changes":
            dates = [f"{d}T{rng.choice(['00:00', '23:59:59', '12:00+14:00', '12:00-14:00'])}" for d in dates]
        column = 0 if kind != "ownership" else 3
        text = header + "\n" + "".join(",".join(d if n == column else f for n, f in enumerate(row.format("d").split(","))) + "\n" for d in dates)
    elif attack == "edge-numbers":
        cells = ["-0", "0", "1e308", "1.7976931348623157e308", "1e309", "5e-324", "nan", "inf", "9007199254740992", "9007199254740993"]
        text = header + "\n" + "".join(row.format("n").replace(",10,2,1", f",{c},{c},{c}") + "\n" for c in cells)
    else:  # many-duplicates
        text = header + "\n" + (row.format("dup") + "\n") * 20_000
    return Attack(text.encode("utf-8"), attack)


_SOURCE = "sources:\n  - {type: csv, name: fuzz, metrics: [exports/*.csv]}\n"
#: (where, config.yaml with V for the value): settings that take a whole number, and a number
WHOLE_IN_CONFIG = [
    ("sources[0].lookback_days", "sources:\n  - {type: csv, name: fuzz, metrics: [exports/*.csv], lookback_days: V}\n"),
    ("sources[0].history_days", "sources:\n  - {type: csv, name: fuzz, metrics: [exports/*.csv], history_days: V}\n"),
    ("sources[0].max_row_clicks", "sources:\n  - {type: csv, name: fuzz, metrics: [exports/*.csv], max_row_clicks: V}\n"),
    ("detection.baseline.min_days", _SOURCE + "detection: {baseline: {min_days: V}}\n"),
    ("detection.incidents.resolve_after_days", _SOURCE + "detection: {incidents: {resolve_after_days: V}}\n"),
    ("alerts.group_min_incidents", _SOURCE + "alerts: {group_min_incidents: V}\n"),
    ("service.deliver_every_minutes", _SOURCE + "service: {deliver_every_minutes: V}\n"),
]
NUMBER_IN_CONFIG = [
    ("sources[0].max_row_spend", "sources:\n  - {type: csv, name: fuzz, metrics: [exports/*.csv], max_row_spend: V}\n"),
    ("detection.baseline.elevated_ratio", _SOURCE + "detection: {baseline: {elevated_ratio: V}}\n"),
    ("detection.baseline.half_life_days", _SOURCE + "detection: {baseline: {half_life_days: V}}\n"),
    ("detection.variation.leads", _SOURCE + "detection: {variation: {leads: V}}\n"),
    ("alerts.repeat_every_hours", _SOURCE + "alerts: {repeat_every_hours: V}\n"),
    ("alerts.excess_steps[1]", _SOURCE + "alerts: {excess_steps: [1000, V]}\n"),
]
#: (where, a rules file with V for the value), as above
WHOLE_IN_RULES = [
    ("rules[0].window_days", "rules:\n  - {name: r1, type: cpl_ratio, warning: 2, window_days: V}\n"),
    ("rules[0].baseline_lag_days", "rules:\n  - {name: r1, type: spend_ratio, warning: 2, baseline_lag_days: V}\n"),
    ("rules[0].after_ownership_change.within_days", "rules:\n  - {name: r1, type: cpl_ratio, warning: 2, after_ownership_change: {within_days: V}}\n"),
]
NUMBER_IN_RULES = [
    ("rules[0].warning", "rules:\n  - {name: r1, type: cpl_ratio, warning: V}\n"),
    ("rules[0].warning", "rules:\n  - {name: r1, type: threshold, metric: cpl, warning: V}\n"),
    ("rules[0].critical", "rules:\n  - {name: r1, type: spend_ratio, warning: 2, critical: V}\n"),
    ("rules[0].min_spend", "rules:\n  - {name: r1, type: cpl_ratio, warning: 2, min_spend: V}\n"),
    ("rules[0].max_p_value", "rules:\n  - {name: r1, type: cpl_ratio, warning: 2, max_p_value: V}\n"),
    ("rules[1].warning", "rules:\n  - {name: r0, type: cpl_ratio, warning: 2}\n  - {name: r1, type: lead_shortfall, warning: V}\n"),
]
#: YAML for what is not a whole number, and for what is no finite number
NOT_WHOLE = ["true", "false", "True", "yes", "7.0", "'7'"]
NOT_FINITE = [".inf", "-.inf", "+.inf", ".nan", ".NaN", "1e400", "-1e400", "1.8e308"]
#: config.yaml without a source, each of which ``anomaly check`` must refuse
NO_SOURCES = [b"", b"\n\n", b"---\n", b"---\n...\n", b"null\n", b"~\n", b"\xef\xbb\xbf", b"# settings to come\n", b"sources: []\n",
              b"parties: {agency: {name: Agency}}\n", b"alerts: {sinks: [{type: console}]}\n"]
#: (where, the alerts of config.yaml with V for the secret): every Slack secret setting
SLACK_SECRETS = [
    ("alerts.sinks[0].token", "alerts:\n  sinks:\n    - {type: slack, channel: C0123ABCD, token: V}\n"),
    ("alerts.sinks[1].url", "alerts:\n  sinks:\n    - {type: console}\n    - {type: slack_webhook, url: V}\n"),
    ("alerts.slack_app.bot_token", "alerts:\n  slack_app: {bot_token: V, signing_secret: fuzz-signing-secret}\n"),
    ("alerts.slack_app.app_token", "alerts:\n  slack_app: {bot_token: xoxb-fuzz-bot-token, app_token: V}\n"),
    ("alerts.slack_app.signing_secret", "alerts:\n  slack_app: {bot_token: xoxb-fuzz-bot-token, signing_secret: V}\n"),
]
EMPTY_SECRETS = ["''", '""', "'   '", "'${EMPTY}'", "'${EMPTY}  '"]
#: a webhook URL as it may be mistyped; {path} is the secret part, which no error may show
WEBHOOK_URLS = [
    "hooks.slack.com/services/{path}", "//hooks.slack.com/services/{path}", "hooks.slack.com:443/services/{path}",
    "https//hooks.slack.com/services/{path}", "https:/hooks.slack.com/services/{path}", "http://hooks.slack.com/services/{path}",
    "ftp://hooks.slack.com/services/{path}", "https://hooks.slack.com.example.net/services/{path}",
    "https://hooks.slack.com:x/services/{path}", "https://hooks.slack.com/services/{path} ", "services/{path}",
]
YAML_ATTACKS = {
    kind: ("bomb-9x9", "bomb", "bomb-merge", "deep-flow", "deep-block", "deep-dict", "recursive-alias", "python-object",
           "python-apply", "python-name", "huge-scalar", "huge-file", "many-keys", "many-values", "utf16-bom", "utf8-bom",
           "latin1", "nul", "dates", "unhashable-key", "tag-soup", "multi-doc", *PLACES, "not-whole", "not-finite")
    + (("no-source", "empty-slack-secret", "webhook-url", *(f"ownership-{p}" for p in PLACES)) if kind == "config" else ())
    for kind in ("config", "rules")
}


def _at(where: str) -> str:
    """The pattern of a problem at the YAML path ``where``, by its last key: a rule's problem may be
    located as ``rules[0].warning`` or as ``line 2, rule r1: warning``."""
    return r"(^|[.: ])" + re.escape(f"{where.rsplit('.', 1)[-1]}: ")


def hostile_yaml(rng: random.Random, kind: str, attack: str | None = None) -> Attack:
    """One attack on config.yaml or a rules file (drawn from YAML_ATTACKS when not given)."""
    attack = attack or rng.choice(YAML_ATTACKS[kind])
    prefix = "rules:\n  - {name: r1, type: cpl_ratio, warning: 2}\n" if kind == "rules" else "alerts: {sinks: [{type: console}]}\n"
    if attack in PLACES:
        return Attack(b"", attack, place=attack, refusal=_refused_place(attack, "YAML"))
    if attack.startswith("ownership-"):  # the ownership file that config.yaml names
        place = attack.removeprefix("ownership-")
        named = str(DEVICE) if place == "device" else "owners.csv"
        text = _SOURCE + f"parties: {{agency: {{name: Agency}}}}\nownership: {{file: {named}}}\n"
        return Attack(text.encode(), attack, place="file" if place == "device" else place, placed="" if place == "device" else named,
                      check=True, refusal=_refused_place(place, "CSV"))
    if attack in ("not-whole", "not-finite"):
        whole = attack == "not-whole"
        where, template = rng.choice((WHOLE_IN_CONFIG if whole else NUMBER_IN_CONFIG) if kind == "config" else (WHOLE_IN_RULES if whole else NUMBER_IN_RULES))
        value = rng.choice(NOT_WHOLE if whole else NOT_FINITE)
        got = r"expected a whole number, got " if whole else r"expected a finite number, got (infinity|minus infinity|NaN)"
        return Attack(template.replace("V", value).encode(), attack, check=kind == "config", refusal=_at(where) + got)
    if attack == "no-source":
        return Attack(rng.choice(NO_SOURCES), attack, check=True, refusal=re.escape(f"sources: {NO_SOURCE}"))
    if attack == "empty-slack-secret":
        where, template = rng.choice(SLACK_SECRETS)
        text = _SOURCE + template.replace("V", rng.choice(EMPTY_SECRETS))
        return Attack(text.encode(), attack, check=True, refusal=_at(where) + "expected .*, got an empty value$")
    if attack == "webhook-url":
        if rng.random() < 0.2:  # from the environment
            url, secret = "${SLACK_WEBHOOK_URL}", WEBHOOK_NO_SCHEME.rsplit("/", 1)[1]
        else:
            secret = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(24))
            url = rng.choice(WEBHOOK_URLS).format(path=f"T{rng.randint(10**8, 10**9)}/B{rng.randint(10**8, 10**9)}/{secret}")
        text = _SOURCE + f"alerts:\n  sinks:\n    - type: slack_webhook\n      url: '{url}'\n"
        refusal = _at("alerts.sinks[0].url") + re.escape("expected the URL Slack gave for the incoming webhook") + r".*\(not shown: it is a secret\)$"
        return Attack(text.encode(), attack, check=True, refusal=refusal, secret=secret)
    if attack == "bomb-9x9":
        text = prefix + _bomb(9, 9)
    elif attack == "bomb":
        text = prefix + _bomb(rng.randint(2, 12), rng.randint(2, 12))
    elif attack == "bomb-merge":
        text = prefix + "b0: &b0 {a: 1, b: 2}\n" + "".join(f"b{n}: &b{n} {{<<: [{', '.join([f'*b{n - 1}'] * 9)}], k{n}: 1}}\n" for n in range(1, 9))
    elif attack == "deep-flow":
        text = prefix + "x: " + _deep(rng.choice([65, 1000, 10_000, 20_000]), flow=True) + "\n"
    elif attack == "deep-block":
        text = prefix + "x:\n" + "\n".join("  " * (n + 1) + "- " for n in range(rng.choice([65, 500, 1000]))) + "1\n"
    elif attack == "deep-dict":
        depth = rng.choice([65, 1000, 10_000])
        text = prefix + "x: " + "{a: " * depth + "1" + "}" * depth + "\n"
    elif attack == "recursive-alias":
        text = prefix + rng.choice(["x: &a [*a]\n", "x: &a {b: *a}\n", "x: &a {<<: *a}\n", "x: &a [1, [2, *a]]\n"])
    elif attack == "python-object":
        text = prefix + "x: !!python/object:builtins.dict {}\n"
    elif attack == "python-apply":
        text = prefix + "x: !!python/object/apply:os.system ['echo pwned > /tmp/fuzz-inputs-pwned']\n"
    elif attack == "python-name":
        text = prefix + "x: !!python/name:os.system\n"
    elif attack == "huge-scalar":
        text = prefix + "x: '" + "s" * rng.choice([100_000, 990_000]) + "'\n"
    elif attack == "huge-file":
        text = prefix + "# " + "c" * rng.choice([1_000_001, 5_000_000]) + "\n"
    elif attack == "many-keys":
        text = prefix + "x:\n" + "".join(f"  k{n}: {n}\n" for n in range(rng.choice([1000, 30_000])))
    elif attack == "many-values":
        text = prefix + "x: [" + ", ".join("1" for _ in range(rng.choice([1000, 49_000, 60_000]))) + "]\n"
    elif attack == "utf16-bom":
        return Attack(prefix.encode("utf-16"), attack)
    elif attack == "utf8-bom":
        return Attack(codecs.BOM_UTF8 + prefix.encode(), attack)
    elif attack == "latin1":
        return Attack((prefix + "# café\n").encode("latin-1"), attack)
    elif attack == "nul":
        return Attack(prefix.encode() + b"x: \x00\n", attack)
    elif attack == "dates":
        value = rng.choice(["0000-01-01", "9999-12-31", "2026-02-30", "9999-12-31 23:59:59 -05:00", "0001-01-01 00:00:00 +05:00"])
        text = prefix + f"x: {value}\n"
    elif attack == "unhashable-key":
        text = prefix + rng.choice(["? [a, b]\n: 1\n", "? {a: 1}\n: 1\n", "x: {[1]: 2}\n"])
    elif attack == "tag-soup":
        text = prefix + f"x: {rng.choice(YAML_VALUES[19:33])}\n"
    else:  # multi-doc
        text = prefix + "---\n" + prefix
    return Attack(text.encode("utf-8"), attack)


_CSV_SOUP = string.digits * 3 + ",,,,\"\"\n\n\r-.: eE+TZxn" + "abcdefghijklmnopqrstuvwxyz_"
_YAML_SOUP = ":-[]{}&*!|>'\"%@`#,? \n\n\n    " + string.ascii_lowercase + string.digits + "._$"


def random_data(rng: random.Random, kind: str) -> tuple[bytes, str]:
    if rng.random() < 0.4:
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 16, 256, 4096]))), "bytes"
    if kind in ("metrics", "changes", "ownership"):
        header = {"metrics": "date,account_id,campaign_id,spend,clicks,leads\n", "changes": "changed_at,account_id\n",
                  "ownership": "account_id,party,start\n"}[kind]
        soup = _text(rng, 0, 2000, _CSV_SOUP)
        return ((header if rng.random() < 0.5 else "") + soup).encode("utf-8"), "soup"
    soup = _text(rng, 0, 2000, _YAML_SOUP)
    return soup.encode("utf-8"), "soup"


# ---------------------------------------------------------------------------------------------
# Drawing a case


def draw(seed: int, number: int) -> Case:
    """Case ``number`` of the run with ``seed``: its kind by position, everything else by its own seed."""
    rng = random.Random(f"{seed}:{number}")
    kind = KINDS[number % len(KINDS)]
    generator = rng.choices(GENERATORS, weights=[3, 5, 2, 1])[0]
    prefix = f"c{number}"
    if generator == "random":
        data, note = random_data(rng, kind)
        return Case(number, kind, generator, data, notes=[note])
    if generator == "hostile":
        return hostile_case(number, kind, (hostile_csv if kind in CSV_KINDS else hostile_yaml)(rng, kind))
    data, expected = VALID[kind](rng, prefix)
    if generator == "valid":
        return Case(number, kind, generator, data, expected)
    notes = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        data, note = (mutate_yaml if kind in ("config", "rules") else mutate_csv)(rng, data)
        notes.append(note)
    return Case(number, kind, generator, data, notes=notes)


#: every attack, in the order the report lists them
ATTACKS = list(dict.fromkeys(a for attacks in (*CSV_ATTACKS.values(), *YAML_ATTACKS.values()) for a in attacks))


def hostile_case(number: int, kind: str, attack: Attack) -> Case:
    return Case(number, kind, "hostile", attack.data, notes=[attack.note], place=attack.place, placed=attack.placed,
                check=attack.check, refusal=attack.refusal, secret=attack.secret, empty=attack.empty)


# ---------------------------------------------------------------------------------------------
# Running a case


class _Hang(Exception):
    """Raised by the alarm in a case that runs past ``HANG_SECONDS``."""


@contextlib.contextmanager
def hang_guard(seconds: float) -> Iterator[None]:
    def stop(signum: int, frame: Any) -> None:
        raise _Hang

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def unclear(exc: InputError, files: set[str], csv_file: bool) -> str | None:
    """Why an InputError is not a clear one (None when it is): each problem must name one of
    ``files``, say where in the form of its file type, carry a message, keep to one line and leak
    no Python internals."""
    if not exc.problems:
        return "an InputError with no problems"
    for problem in exc.problems:
        text = str(problem)
        if problem.file not in files:
            return f"names another file: {text[:200]!r}"
        if not problem.message.strip() or "\n" in text:
            return f"empty or multi-line: {text[:200]!r}"
        if csv_file and not _CSV_WHERE.fullmatch(problem.where):
            return f"where is not a CSV position: {text[:200]!r}"
        if _LEAKS.search(problem.message):
            return f"Python internals: {text[:300]!r}"
    return None


def judged(case: Case, outcome: str, detail: str, message: str) -> tuple[str, str]:
    """The outcome once a hostile case's demands are checked: no error shows its secret, and a case
    that must be refused is refused for its reason."""
    if case.secret and case.secret in message:
        return "BUG secret shown", f"the error shows {case.secret!r}: {message[:300]!r}"
    if outcome.startswith("BUG") or not case.refusal:
        return outcome, detail
    if outcome == "loaded":
        return "BUG invalid loaded", f"loaded; expected a refusal matching {case.refusal!r}"
    if not any(re.search(case.refusal, line) for line in message.splitlines()):
        return "BUG unclear error", f"expected a message matching {case.refusal!r}, got {message[:300]!r}"
    return outcome, detail


def _remove(path: Path) -> None:
    """Remove what ``Runner._make`` put at ``path``; a link goes, never what it points to."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        path.rmdir()


class Runner:
    """Runs cases against one SQLite store and one folder of files."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.store = Store(f"sqlite:///{folder / 'fuzz.db'}")
        self.store.migrate()
        self.config = Config()
        (folder / "cfg" / "rules").mkdir(parents=True)
        (folder / "cfg" / "rules" / "a.yaml").write_text("rules:\n  - {name: r1, type: cpl_ratio, warning: 2}\n", encoding="utf-8")
        (folder / "rules-case" / "rules").mkdir(parents=True)
        (folder / "rules-case" / "config.yaml").write_text(RULES_CONFIG, encoding="utf-8")

    def run(self, case: Case, timeout: float) -> Result:
        start = time.perf_counter()
        message = ""
        try:
            with hang_guard(HANG_SECONDS):
                outcome, detail, message = getattr(self, f"_{case.kind}")(case)
            outcome, detail = judged(case, outcome, detail, message)
        except _Hang:
            outcome, detail = "BUG timeout", f"still running after {HANG_SECONDS} s"
        except Exception as exc:  # noqa: BLE001 - a traceback is what this run looks for
            outcome, detail = "BUG exception", f"{type(exc).__name__}: {str(exc)[:300]}"
        seconds = time.perf_counter() - start
        if seconds > timeout and not outcome.startswith("BUG"):
            outcome, detail = "BUG timeout", f"{outcome} after {seconds:.1f} s"
        result = Result(case, outcome, seconds, detail, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, message[:2000])
        case.data = case.expected = b""  # ten thousand files, some of megabytes, need not stay in memory
        return result

    def _make(self, case: Case, path: Path, limit: int, *, link: bool = False) -> Path:
        """Put the case's file at ``path`` and return the path to read: its bytes, or what stands in
        their place. A device is ``/dev/zero`` itself, or with ``link`` (a rules file must be in its
        folder) a symbolic link to it at ``path``; an oversize file is sparse, one byte over ``limit``."""
        _remove(path)  # a named pipe left behind would make writing the next file wait for a reader
        if case.place == "device":
            if not link:
                return DEVICE
            path.symlink_to(DEVICE)
        elif case.place == "fifo":
            os.mkfifo(path)
        elif case.place == "directory":
            path.mkdir()
        elif case.place == "oversize":
            with open(path, "wb") as file:
                file.truncate(limit + 1)
        else:
            path.write_bytes(case.data)
        return path

    # -- CSV sources through the pull the service runs

    def _fingerprint(self) -> tuple:
        with self.store.engine.connect() as conn:
            return tuple(
                conn.execute(query).one()
                for query in (
                    sa.select(sa.func.count(), sa.func.sum(metrics.c.spend), sa.func.sum(metrics.c.clicks), sa.func.max(metrics.c.updated_at)),
                    sa.select(sa.func.count(), sa.func.max(changes.c.change_key)),
                    sa.select(sa.func.count(), sa.func.max(pulls.c.id)),
                )
            )

    def _pull(self, case: Case, as_changes: bool) -> tuple[str, str, str]:
        own = self.folder / f"case-{case.number}.csv"
        path = self._make(case, own, MAX_CSV_BYTES)
        name = f"c{case.number}"
        nothing = str(self.folder / "no-metrics-*.csv")
        source = CsvSourceConfig(type="csv", name=name, metrics=[nothing] if as_changes else [str(path)],
                                 changes=[str(path)] if as_changes else [], lookback_days=0, history_days=HISTORY_DAYS)
        before = self._fingerprint()
        try:
            report = pull_source(self.config, source, self.store, TODAY)
        except InputError as exc:
            message = str(exc)
            if self._fingerprint() != before:
                return "BUG store changed", message[:300], message
            if case.generator == "valid":
                return "BUG valid rejected", message[:300], message
            why = unclear(exc, {str(path)}, csv_file=True)
            return ("BUG unclear error", why, message) if why else ("rejected", "", message)
        finally:
            _remove(own)
        table = changes if as_changes else metrics
        with self.store.engine.connect() as conn:
            stored = conn.execute(sa.select(table).where(table.c.source == name)).all()
        problem = (_check_changes if as_changes else _check_metrics)(stored)
        if problem:
            return "BUG invalid loaded", problem, ""
        if case.empty and (stored or not report.no_rows or [f.empty for f in report.files] != [True]):
            return "BUG loaded wrong", f"an empty file not reported as empty: {len(stored)} rows stored, {report.files!r}"[:300], ""
        if case.generator == "valid":
            if as_changes:
                got = sorted((tuple([r.changed_at] + [getattr(r, c) for c in CHANGE_COLUMNS[1:]]) for r in stored), key=repr)
            else:
                got = sorted(((r.account_id, r.campaign_id, r.date, r.hour, r.account_name, r.campaign_name, r.currency,
                               r.spend, r.impressions, r.clicks, r.leads) for r in stored), key=repr)
            if got != case.expected:
                return "BUG loaded wrong", _difference(case.expected, got), ""
        return "loaded", "", ""

    def _metrics(self, case: Case) -> tuple[str, str, str]:
        return self._pull(case, as_changes=False)

    def _changes(self, case: Case) -> tuple[str, str, str]:
        return self._pull(case, as_changes=True)

    # -- ownership, as ownership_periods reads it

    def _ownership(self, case: Case) -> tuple[str, str, str]:
        own = self.folder / "ownership.csv"
        path = self._make(case, own, MAX_CSV_BYTES)
        try:
            frame = read_ownership_csv(path, list(PARTIES))
        except InputError as exc:
            message = str(exc)
            if case.generator == "valid":
                return "BUG valid rejected", message[:300], message
            why = unclear(exc, {str(path)}, csv_file=True)
            return ("BUG unclear error", why, message) if why else ("rejected", "", message)
        finally:
            _remove(own)
        problem = _check_ownership(frame)
        if problem:
            return "BUG invalid loaded", problem, ""
        if case.generator == "valid":
            got = list(frame.itertuples(index=False, name=None))
            if [_nat_safe(r) for r in got] != [_nat_safe(r) for r in case.expected]:
                return "BUG loaded wrong", _difference(case.expected, got), ""
        return "loaded", "", ""

    # -- config.yaml and rules through load_config

    def _config(self, case: Case) -> tuple[str, str, str]:
        """config.yaml through ``load_config``; a case with ``check`` as ``anomaly check`` loads it:
        a source required, and the ownership file it names read."""
        folder = self.folder / "cfg"
        own = folder / "config.yaml"
        placed = folder / case.placed if case.placed else None
        files = {str(own), str(folder / "rules"), str(folder / "rules" / "a.yaml"), str(DEVICE)}
        try:
            if placed is None:
                path = self._make(case, own, MAX_YAML_BYTES)
            else:
                path = own
                own.write_bytes(case.data)
                files.add(str(self._make(case, placed, MAX_CSV_BYTES)))
            try:
                config, _ = load_config(path, environ=ENVIRON, require_sources=case.check)
                if case.check:
                    ownership_periods(config)
            except InputError as exc:
                return self._yaml_rejected(case, exc, files | _named_rules_dirs(exc))
        finally:
            _remove(own)
            if placed is not None:
                _remove(placed)
        if case.generator == "valid":
            wrong = list(_mismatches(config, case.expected, "", folder.resolve()))
            if wrong:
                return "BUG loaded wrong", "; ".join(wrong[:3]), ""
        return "loaded", "", ""

    def _rules(self, case: Case) -> tuple[str, str, str]:
        folder = self.folder / "rules-case"
        own = folder / "rules" / "r.yaml"
        files = {str(folder / "config.yaml"), str(folder / "rules"), str(own)}
        try:
            self._make(case, own, MAX_YAML_BYTES, link=True)
            _, rules = load_config(folder / "config.yaml", environ=ENVIRON)
        except InputError as exc:
            return self._yaml_rejected(case, exc, files)
        finally:
            _remove(own)
        if case.generator == "valid":
            wrong = [m for rule, written in zip(rules, case.expected) for m in _mismatches(rule, written, f"rules[{written['name']}]", folder.resolve())]
            if len(rules) != len(case.expected):
                wrong.insert(0, f"wrote {len(case.expected)} rules, loaded {len(rules)}")
            if wrong:
                return "BUG loaded wrong", "; ".join(wrong[:3]), ""
        return "loaded", "", ""

    def _yaml_rejected(self, case: Case, exc: InputError, files: set[str]) -> tuple[str, str, str]:
        message = str(exc)
        if case.generator == "valid":
            return "BUG valid rejected", message[:300], message
        why = unclear(exc, files, csv_file=False)
        return ("BUG unclear error", why, message) if why else ("rejected", "", message)


def _named_rules_dirs(exc: InputError) -> set[str]:
    """A mutated config may point ``rules_dir`` anywhere: the folder it names is a fair file to blame."""
    return {p.file for p in exc.problems if p.message in ("rules folder not found", "no rule files (*.yaml) in the rules folder")
            or p.message.startswith("cannot read the rules folder")}


def _nat_safe(row: tuple) -> tuple:
    return tuple("NaT" if v is pd.NaT else v for v in row)


def _difference(expected: list, got: list) -> str:
    missing = [r for r in expected if r not in got][:2]
    extra = [r for r in got if r not in expected][:2]
    return f"{len(expected)} written, {len(got)} loaded; missing {missing!r}; unexpected {extra!r}"[:600]


def _check_metrics(rows: list) -> str | None:
    """Why a stored metric row is not a valid one (None when all are)."""
    for r in rows:
        if not (r.account_id.strip() and r.campaign_id.strip() and len(r.account_id) <= 64 and len(r.campaign_id) <= 64):
            return f"bad id in {tuple(r)!r}"[:300]
        if not (dt.date(1900, 1, 1) <= r.date <= dt.date(2199, 12, 31)) or not -1 <= r.hour <= 23:
            return f"bad date or hour in {tuple(r)!r}"[:300]
        if not all(np.isfinite(v) and v >= 0 for v in (r.spend, r.leads)) or r.clicks < 0 or r.impressions < 0:
            return f"bad number in {tuple(r)!r}"[:300]
        if any(getattr(r, column) > most for column, most in CEILINGS.items()):
            return f"number beyond the source's ceilings in {tuple(r)!r}"[:300]
        if CONTROL_CHARACTERS.search(r.account_id + r.campaign_id + r.account_name + r.campaign_name):
            return f"control character in an id or a name in {tuple(r)!r}"[:300]
        if not re.fullmatch(r"[A-Z]{3}", r.currency):
            return f"bad currency in {tuple(r)!r}"[:300]
    return None


def _check_changes(rows: list) -> str | None:
    for r in rows:
        if not r.account_id.strip() or not dt.datetime(1900, 1, 1) <= r.changed_at < dt.datetime(2200, 1, 1):
            return f"bad change {tuple(r)!r}"[:300]
        if CONTROL_CHARACTERS.search(r.account_id + r.campaign_id):
            return f"control character in an id in {tuple(r)!r}"[:300]
    return None


def _check_ownership(frame: pd.DataFrame) -> str | None:
    for r in frame.itertuples(index=False):
        if not r.account_id or r.party not in PARTIES or pd.isna(r.start) or (not pd.isna(r.end) and r.end <= r.start):
            return f"bad period {tuple(r)!r}"[:300]
    return None


_PATH_KEYS = {"metrics", "changes", "path", "file"}


def _mismatches(loaded: Any, written: Any, where: str, base: Path) -> Iterator[str]:
    """Each place where a loaded model differs from the settings written into the file."""
    if isinstance(written, dict):
        for key, value in written.items():
            inner = f"{where}.{key}" if where else str(key)
            if isinstance(loaded, BaseModel):
                yield from _mismatches(getattr(loaded, "continue_matching" if key == "continue" else key), value, inner, base)
            else:
                yield from _mismatches(loaded[key], value, inner, base)
        return
    if isinstance(written, list):
        if len(loaded) != len(written):
            yield f"{where}: wrote {len(written)} items, loaded {len(loaded)}"
            return
        for i, (got, value) in enumerate(zip(loaded, written)):
            yield from _mismatches(got, value, f"{where}[{i}]", base)
        return
    key = re.sub(r"\[\d+\]$", "", where).rsplit(".", 1)[-1]
    expected = written
    if isinstance(written, str):
        expected = written.replace("${PARTY_NAME}", ENVIRON["PARTY_NAME"])
        if key in _PATH_KEYS:
            expected = str((base / written).resolve())
        if key == "domains":
            expected = written.lower()
    got = loaded.get_secret_value() if isinstance(loaded, SecretStr) else loaded
    if got != expected:
        yield f"{where}: wrote {written!r}, loaded {got!r}"[:300]


# ---------------------------------------------------------------------------------------------
# Report


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def table(results: list[Result], label: Callable[[Result], str], labels: list[str], title: str = "kind") -> str:
    counts = Counter((label(r), r.outcome) for r in results)
    shown = [o for o in OUTCOMES if o in ("loaded", "rejected") or any(k[1] == o for k in counts)]
    rows = [[name] + [f"{counts[(name, o)]:,}" for o in shown] + [f"{sum(counts[(name, o)] for o in shown):,}"]
            for name in labels if any(k[0] == name for k in counts)]
    rows.append(["**total**"] + [f"{sum(counts[(n, o)] for n in labels):,}" for o in shown] + [f"{len(results):,}"])
    return markdown([title] + shown + ["cases"], rows)


def report(results: list[Result], seconds: float, seed: int) -> str:
    bugs = [r for r in results if r.outcome.startswith("BUG")]
    slowest = sorted(results, key=lambda r: r.seconds, reverse=True)[:5]
    peak = max(results, key=lambda r: r.peak_mb)
    raised = next(r for r in results if r.peak_mb == peak.peak_mb)  # the case that took memory to its peak
    parts = [
        f"## Bad input: {len(results):,} generated files (seed {seed})",
        table(results, lambda r: r.case.kind, list(KINDS)),
        "## By generator",
        table(results, lambda r: f"{r.case.kind} · {r.case.generator}", [f"{k} · {g}" for k in KINDS for g in GENERATORS]),
        "## Hostile cases by attack (all the kinds of file it applies to)",
        table([r for r in results if r.case.generator == "hostile"], lambda r: r.case.notes[0], ATTACKS, title="attack"),
        f"total {seconds:.0f} s ({seconds / max(len(results), 1) * 1000:.1f} ms a case); peak memory of the process "
        f"{peak.peak_mb:.0f} MB, reached in case {raised.case.number} ({raised.case.kind} · {raised.case.generator}: "
        f"{', '.join(raised.case.notes) or 'valid'}, {raised.case.size:,} bytes)",
        "slowest: " + "; ".join(f"case {r.case.number} ({r.case.kind} · {r.case.generator}: {', '.join(r.case.notes) or 'valid'}, "
                                f"{r.case.size:,} bytes) {r.seconds:.2f} s, {r.outcome}" for r in slowest),
    ]
    if bugs:
        first: dict[str, Result] = {}
        for r in bugs:
            first.setdefault(f"{r.outcome} · {r.case.kind}", r)
        parts.append("## Bugs (the first of each)\n" + "\n".join(
            f"- {key}: case {r.case.number} ({r.case.generator}: {', '.join(r.case.notes) or 'valid'}): {r.detail}" for key, r in first.items()
        ))
    else:
        parts.append("No bugs.")
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds a case may take before it counts as a bug")
    parser.add_argument("--case", type=int, help="run this case alone and show it")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # a rejected pull is logged by the pipeline; the table says it
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(Path(tmp))
        if args.case is not None:
            case = draw(args.seed, args.case)
            shown = case.data[:2000].decode("utf-8", errors="backslashreplace")
            result = runner.run(case, args.timeout)
            print(f"case {case.number}: {case.kind} · {case.generator} {case.notes}, {case.size:,} bytes\n{shown}\n"
                  f"-> {result.outcome} in {result.seconds:.3f} s {result.detail}")
            return int(result.outcome.startswith("BUG"))
        t0 = time.perf_counter()
        results = [runner.run(draw(args.seed, n), args.timeout) for n in range(args.cases)]
        seconds = time.perf_counter() - t0
    print(report(results, seconds, args.seed))
    return int(any(r.outcome.startswith("BUG") for r in results))


if __name__ == "__main__":
    raise SystemExit(main())
