"""Silences: hold back the notifications of matching incidents for a while, never their detection.

A silence names any of an account, a campaign, a rule and a managing party (at least one), an
expiry and a reason. It matches a notification whose payload equals every one it names. Silences
come from ``alerts.silences`` in config.yaml and from the store (``anomaly silence add``); delivery
marks a matched notification "silenced" instead of sending it, and the incident carries on as
usual: its next notification after the silence ends is sent.

Times are naive UTC throughout, like the rest of the store.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from anomaly.store import Silence, Store

if TYPE_CHECKING:
    from anomaly.config import Config, SilenceConfig

__all__ = ["ABSOLUTE_FORMS", "MATCHED_FIELDS", "Silence", "active_silences", "describe_matchers", "from_config", "in_force", "matches", "parse_time", "parse_until"]

#: A silence's matcher → the notification payload field it must equal.
MATCHED_FIELDS = {"account": "account_id", "campaign": "campaign_id", "rule": "rule", "party": "managing_party"}

_RELATIVE = re.compile(r"^\+([1-9]\d*)([hd])$")
_UNITS = {"h": "hours", "d": "days"}
ABSOLUTE_FORMS = "a date (2026-07-20) or a datetime (2026-07-20T18:00, UTC unless an offset is given)"
UNTIL_FORMS = "a date (2026-07-20), a datetime (2026-07-20T18:00, UTC unless an offset is given) or a duration (+24h, +7d)"


def parse_time(value: str | dt.date) -> dt.datetime:
    """An absolute expiry as naive UTC: a date means the end of that day (UTC); a datetime without
    an offset is UTC, one with an offset is converted. Raise ValueError for anything else."""
    if isinstance(value, str):
        value = _iso(value.strip())
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    return dt.datetime.combine(value + dt.timedelta(days=1), dt.time())


def parse_until(text: str, now: dt.datetime) -> dt.datetime:
    """An expiry as naive UTC: ``+Nh`` / ``+Nd`` from ``now`` (naive UTC), else as ``parse_time``."""
    relative = _RELATIVE.match(text.strip())
    try:
        if relative is None:
            return parse_time(text)
        return now + dt.timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    except ValueError:
        raise ValueError(f"expected {UNTIL_FORMS}, got {text!r}") from None
    except OverflowError:  # a time past 9999-12-31
        raise ValueError(f"expected {UNTIL_FORMS} before 9999-12-31, got {text!r}") from None


def _iso(text: str) -> dt.date:
    for parse in (dt.date.fromisoformat, dt.datetime.fromisoformat):  # a date first: it means the whole day
        try:
            return parse(text)
        except ValueError:
            continue
    raise ValueError(f"expected {ABSOLUTE_FORMS}, got {text!r}")


def matches(silence: Silence, payload: dict[str, Any], now: dt.datetime) -> bool:
    """Whether ``silence`` holds back a notification with ``payload`` at ``now`` (naive UTC)."""
    return in_force(silence, now) and all(payload.get(field) == value for field, value in _matchers(silence).items())


def in_force(silence: Silence, now: dt.datetime) -> bool:
    """Whether ``silence`` has neither run out nor been expired at ``now`` (naive UTC)."""
    return now < silence.until and (silence.expired_at is None or now < silence.expired_at)


def _matchers(silence: Silence) -> dict[str, str]:
    """The payload field → value pairs the silence names."""
    return {field: getattr(silence, name) for name, field in MATCHED_FIELDS.items() if getattr(silence, name) is not None}


def describe_matchers(silence: Silence) -> str:
    """``account=4821937710 rule=cpl-spike-1d``: what the silence matches, for tables and messages."""
    return " ".join(f"{name}={getattr(silence, name)}" for name in MATCHED_FIELDS if getattr(silence, name) is not None)


def from_config(silence: SilenceConfig) -> Silence:
    """A silence of config.yaml as the store's kind (without an id)."""
    return Silence(
        until=silence.until,
        account=silence.account,
        campaign=silence.campaign,
        rule=silence.rule,
        party=silence.party,
        reason=silence.reason,
        created_by=silence.created_by,
        source="config",
    )


def active_silences(config: Config | None, store: Store, now: dt.datetime) -> list[Silence]:
    """The silences in force at ``now`` (naive UTC): config.yaml's first, then the store's."""
    configured = [from_config(s) for s in config.alerts.silences] if config is not None else []
    return [s for s in configured if in_force(s, now)] + store.silences(active_at=now)
