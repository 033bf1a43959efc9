"""config.yaml ``store`` and ``service``, and the schedules that ``anomaly serve`` runs jobs on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from anomaly.config.base import Int, StrictModel


class StoreConfig(StrictModel):
    """Where data, incidents and the alert outbox live. A SQLite file by default; PostgreSQL by URL
    (``postgresql+psycopg://user:${DB_PASSWORD}@host/db``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, revalidate_instances="always")

    # validated even when defaulted, so that a relative SQLite file lands beside config.yaml
    url: SecretStr = Field(SecretStr("sqlite:///anomaly.db"), validate_default=True)

    @field_validator("url", mode="after")
    @classmethod
    def _resolve_sqlite(cls, url: SecretStr, info: ValidationInfo) -> SecretStr:
        raw = url.get_secret_value()
        if "\0" in raw:  # the URL itself stays unshown: it may hold a password
            raise ValueError("expected a database URL, got one that contains a NUL character")
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", raw):
            # show only the scheme: the rest of the URL may hold a password
            given = f"one starting {raw.split('://', 1)[0] + '://'!r}" if "://" in raw else "a value without '://'"
            raise ValueError(f"expected a database URL starting sqlite:/// or postgresql://, got {given}")
        base = (info.context or {}).get("base_dir")
        m = re.match(r"^(sqlite(\+\w+)?:///)(.+)$", raw)
        if base and m and m.group(3) != ":memory:" and not Path(m.group(3)).is_absolute():
            raw = m.group(1) + str((Path(base) / m.group(3)).resolve())
        return SecretStr(raw)


Crontab = Annotated[str, Field(min_length=9, max_length=120)]


def _time_zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long to be a file name
        raise ValueError(f"expected an IANA time zone like 'Europe/Berlin' or 'UTC', got {value!r}") from None
    return value


class ScheduleConfig(StrictModel):
    """When ``anomaly serve`` pulls a source: a crontab line (minute hour day month weekday) in
    ``timezone`` (an IANA name; default: the service's)."""

    cron: Crontab = "15 7 * * *"
    timezone: str | None = None

    @field_validator("cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"expected a crontab line (minute hour day month weekday), got {value!r}: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _time_zone(value)


class ServiceConfig(StrictModel):
    """``anomaly serve``: the scheduler's time zone, how often it delivers pending alerts, when it
    refits the model, how late a missed run may still start, and which alert sink (by ``name``)
    hears about failing jobs."""

    timezone: str = "UTC"
    deliver_every_minutes: Int = Field(5, ge=1, le=1440)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _time_zone(value)
    refit: ScheduleConfig = ScheduleConfig(cron="30 4 * * *")
    misfire_grace_seconds: Int = Field(3600, ge=1, le=86_400)
    operations_sink: str | None = None
