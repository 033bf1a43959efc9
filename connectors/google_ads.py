"""Google Ads as a data source, through the official client library (GAQL over ``search_stream``).

For each account (the listed ``customer_ids``, or every enabled client account directly under the
manager ``login_customer_id``, minus ``exclude_customer_ids``) a fetch runs:

- query A: daily spend, impressions and clicks per campaign (cost in micros becomes account
  currency units);
- query B: daily conversions per campaign by conversion-action category (and action name when the
  account's lead definition names actions); ``leads`` is the sum of the conversions that count as a
  lead (``leads``, or ``account_leads`` for that account);
- with ``change_history``: who changed what (``change_event``), for the part of the range inside the
  API's 30-day window, paged by timestamp past the API's 10,000-row limit. ``changed_at`` is
  converted from the account's time zone to naive UTC;
- with ``ownership_inference``: the account-wide ownership periods that change history implies
  (see ``anomaly.ownership.infer_ownership``), except for accounts whose ownership the config declares.

Days the API does not return are zero activity: it omits rows whose metrics are all zero.

Transient failures (server errors, temporary quota) are retried with exponential backoff and full
jitter; authentication, authorisation and query errors are not. Every query of an account must
succeed for the account to count: a failing account is reported in ``Batch.failures`` (its data is
missing, not zero) and the others are still pulled. An exhausted daily quota stops the fetch: the
accounts not yet pulled are reported as failures. Only when every account fails does ``fetch``
raise. Errors name the source, the account and the API request id.

Rows are read from the raw protobuf messages behind the proto-plus wrappers, which is several
times faster on large accounts. User emails are data (they attribute changes to parties) but never
appear in logs, only their domains.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
import pandas as pd
import proto
import yaml
from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.errors import GoogleAdsException
from google.api_core import exceptions as api_exceptions
from google.auth.exceptions import GoogleAuthError
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtobufMessage

from anomaly.config import MAX_YAML_BYTES, GoogleAdsSourceConfig, LeadDefinition
from anomaly.errors import SourceError
from anomaly.files import FileReadError, read_limited
from anomaly.schema import (
    DAILY,
    empty_changes,
    empty_metrics,
    normalise_changes,
    normalise_metrics,
)
from connectors.base import Batch, all_failed, backoff, inferred_ownership

log = logging.getLogger(__name__)

API_VERSION = "v26"
CHANGE_PAGE = 10_000  # rows per change_event query: the API's largest LIMIT
CHANGE_HISTORY_DAYS = 30  # change_event only reaches this many days back
_RETRIED_API_ERRORS = (
    api_exceptions.ServiceUnavailable,
    api_exceptions.InternalServerError,
    api_exceptions.DeadlineExceeded,
    api_exceptions.ResourceExhausted,
)
_RETRIED_CODES = {
    ("internal_error", "INTERNAL_ERROR"),
    ("internal_error", "TRANSIENT_ERROR"),
    ("internal_error", "DEADLINE_EXCEEDED"),
    ("quota_error", "RESOURCE_TEMPORARILY_EXHAUSTED"),
    ("quota_error", "EXCESSIVE_SHORT_TERM_QUERY_RESOURCE_CONSUMPTION"),
}
_DAILY_QUOTA_CODES = {
    ("quota_error", "RESOURCE_EXHAUSTED"),
    ("quota_error", "EXCESSIVE_LONG_TERM_QUERY_RESOURCE_CONSUMPTION"),
}
_HINTS = {
    "authentication_error": "check the developer token and the OAuth credentials (client_id, client_secret, "
    "refresh_token or the service account key)",
    "authorization_error": "check that the OAuth user, or the manager account login_customer_id, "
    "has access to this account",
}
# The library attaches a GoogleAdsFailure to INTERNAL and RESOURCE_EXHAUSTED errors too, but raises
# those as plain gRPC errors; it is read from the trailing metadata to tell daily quota apart.
_FAILURE_KEY = f"google.ads.googleads.{API_VERSION}.errors.googleadsfailure-bin"
_GoogleAdsFailure = importlib.import_module(f"google.ads.googleads.{API_VERSION}.errors.types.errors").GoogleAdsFailure
_VALUE_LIMIT = 60
_EMAIL_USER = re.compile(r"[\w.%+-]+@(?=[\w-]+\.)")

T = TypeVar("T")


class DailyQuotaExhausted(SourceError):
    """The developer token's daily operation quota is used up; nothing more can be pulled until it resets."""


# ----------------------------------------------------------------------------------------------
# client


def load_client(source: GoogleAdsSourceConfig) -> GoogleAdsClient:
    """A client for API ``API_VERSION`` from ``source.credentials`` (a google-ads.yaml) or, when it is
    not set, the ``GOOGLE_ADS_*`` environment variables; ``source.login_customer_id`` overrides theirs.

    Loading refreshes the OAuth token (a network call). Raises ``SourceError`` saying what to set;
    messages never contain credential values.
    """
    path = source.credentials
    where = f"the credentials file {path}" if path else "the GOOGLE_ADS_* environment variables"
    try:
        if path:
            document = read_limited(path, expected="a google-ads.yaml file", limit=MAX_YAML_BYTES)
            client = GoogleAdsClient.load_from_string(document, version=API_VERSION)
        else:
            client = GoogleAdsClient.load_from_env(version=API_VERSION)
    except FileReadError as e:
        raise SourceError(source.name, f"cannot read the credentials file {path}: {e.reason}") from None
    except OSError as e:
        reason = e.strerror or e
        raise SourceError(source.name, f"cannot read the credentials file {e.filename or path}: {reason}") from None
    except yaml.YAMLError as e:
        raise SourceError(source.name, f"{where} is not valid YAML{_yaml_position(e)}") from None
    except ValueError as e:
        raise SourceError(source.name, f"{where}: {e} {_credentials_help(path)}") from None
    except GoogleAuthError as e:
        raise SourceError(
            source.name,
            f"could not get an OAuth access token with {where} ({type(e).__name__}: {e}); "
            f"{_credentials_help(path)}, and check that accounts.google.com is reachable",
        ) from None
    if source.login_customer_id:
        client.login_customer_id = source.login_customer_id
    if not client.developer_token:
        setting = f"developer_token in {path}" if path else "GOOGLE_ADS_DEVELOPER_TOKEN"
        raise SourceError(source.name, f"no developer token: set {setting}")
    return client


def _credentials_help(path: str | None) -> str:
    if path:
        return (f"set use_proto_plus: True, developer_token, and client_id, client_secret and refresh_token "
                f"(or json_key_file_path) in {path}")
    return ("set GOOGLE_ADS_USE_PROTO_PLUS=True, GOOGLE_ADS_DEVELOPER_TOKEN, and GOOGLE_ADS_CLIENT_ID, "
            "GOOGLE_ADS_CLIENT_SECRET and GOOGLE_ADS_REFRESH_TOKEN (or GOOGLE_ADS_JSON_KEY_FILE_PATH), "
            "or set credentials: in the source")


def _yaml_position(error: yaml.YAMLError) -> str:
    # The parser's own message quotes the offending line, which may hold a secret.
    mark = getattr(error, "problem_mark", None)
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""


# ----------------------------------------------------------------------------------------------
# connector


class _MetricRow(NamedTuple):
    date: str
    account_name: str
    currency: str
    campaign_id: str
    campaign_name: str
    cost_micros: int
    impressions: int
    clicks: int
    leads: float


class _Change(NamedTuple):
    resource_name: str
    local_time: str  # the account's own time, as the API writes it
    time_zone: str
    campaign_id: str
    user_email: str
    client_type: str
    resource_type: str
    operation: str
    changed_fields: str


@dataclass(frozen=True)
class _AccountPull:
    account_id: str
    metrics: pd.DataFrame  # daily totals per campaign (see _daily_totals)
    changes: list[_Change]


class GoogleAdsConnector:
    """Daily campaign metrics, leads, change history and inferred ownership from Google Ads.

    ``domains`` maps email domains to party keys (``anomaly.ownership.domain_map``);
    ``declared_accounts`` are the accounts whose ownership the config declares, which inference
    leaves alone. ``client`` is built from ``source`` on the first fetch when not given; ``sleep``
    waits between retries; ``today`` bounds the change-history window.
    """

    def __init__(
        self,
        source: GoogleAdsSourceConfig,
        domains: dict[str, str],
        *,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        today: Callable[[], dt.date] | None = None,
        declared_accounts: Set[str] = frozenset(),
    ):
        self.name = source.name
        self.source = source
        self.domains = domains
        self.declared_accounts = declared_accounts
        self._client = client
        self._sleep = sleep
        self._today = today or dt.date.today

    def fetch(self, start: dt.date, end: dt.date) -> Batch:
        """Every account's metrics dated ``start``..``end`` (inclusive), the changes made on those days
        (within the last 30) and the ownership they imply. Raises ``SourceError`` when the accounts
        cannot be listed or every account fails; otherwise the failed ones are in ``failures``."""
        client = self._client or self._connect()
        service = client.get_service("GoogleAdsService", version=API_VERSION)
        accounts = self._accounts(service)
        pulls: list[_AccountPull] = []
        failures: list[SourceError] = []
        quota: DailyQuotaExhausted | None = None
        for account in accounts:
            if quota is not None:
                failures.append(self._not_pulled(account, quota))
                continue
            try:
                pulls.append(self._pull(service, account, start, end))
            except DailyQuotaExhausted as e:
                log.warning("%s", e)
                quota = e
                failures.append(e)
            except SourceError as e:
                log.warning("%s", e)
                failures.append(e)
        if not pulls:
            raise all_failed(self.name, failures)
        changes = _changes_frame(pulls)
        metrics = _metrics_frame(pulls)
        log.info("%s: pulled %d of %d accounts, %s to %s: %d campaign-days, %d changes",
                 self.name, len(pulls), len(accounts), start, end, len(metrics), len(changes))
        return Batch(
            source=self.name,
            start=start,
            end=end,
            metrics=metrics,
            changes=normalise_changes(changes) if len(changes) else empty_changes(),
            ownership=self._ownership(changes),
            failures=tuple(failures),
        )

    # -- accounts

    def _connect(self) -> Any:
        self._client = load_client(self.source)
        return self._client

    def _accounts(self, service: Any) -> list[str]:
        excluded = set(self.source.exclude_customer_ids)
        listed = self.source.customer_ids or self._client_accounts(service)
        accounts = [a for a in dict.fromkeys(listed) if a not in excluded]
        if accounts:
            return accounts
        if self.source.customer_ids:
            raise SourceError(self.name, "no accounts to pull: every account of customer_ids is excluded")
        raise SourceError(self.name, "no accounts to pull: the manager account has no enabled client accounts "
                          "outside exclude_customer_ids", account_id=self.source.login_customer_id)

    def _client_accounts(self, service: Any) -> list[str]:
        """The enabled, non-manager accounts directly under the manager ``login_customer_id``."""
        query = (
            "SELECT customer_client.id FROM customer_client "
            "WHERE customer_client.level <= 1 AND customer_client.manager = FALSE "
            "AND customer_client.status = 'ENABLED'"
        )
        manager = self.source.login_customer_id
        assert manager is not None  # the config requires it when customer_ids is empty
        return self._search(service, manager, query, "listing the client accounts",
                            lambda row: f"{row.customer_client.id:010d}")

    # -- one account

    def _pull(self, service: Any, account: str, start: dt.date, end: dt.date) -> _AccountPull:
        definition = self.source.account_leads.get(account, self.source.leads)
        metrics = self._search(service, account, _metrics_query(start, end), "the daily metrics query", _read_metrics)
        conversions = self._search(service, account, _leads_query(definition, start, end),
                                   "the lead conversions query", _read_conversions)
        counts = _lead_counter(definition)
        leads = [row for row, category, action in conversions if counts(category, action)]
        changes = self._change_history(service, account, start, end) if self.source.change_history else []
        authors = ", ".join(_domains(c.user_email for c in changes)) or "(none)"
        log.debug("%s: account %s: %d metric rows, %d lead rows, %d changes by users of %s",
                  self.name, account, len(metrics), len(leads), len(changes), authors)
        return _AccountPull(account, _daily_totals(account, metrics + leads), changes)

    def _change_history(self, service: Any, account: str, start: dt.date, end: dt.date) -> list[_Change]:
        """The account's changes made on ``start``..``end``, within the API's window, oldest first.

        The API returns at most ``CHANGE_PAGE`` rows a query: the next page starts at the last
        timestamp seen (inclusive, as several changes can share it) and repeated rows are dropped."""
        since = max(start, self._today() - dt.timedelta(days=CHANGE_HISTORY_DAYS - 1))
        if since > end:
            return []
        until = (end + dt.timedelta(days=1)).isoformat()
        changes: list[_Change] = []
        seen: set[str] = set()
        after = since.isoformat()
        while True:
            page = self._search(service, account, _changes_query(after, until, CHANGE_PAGE),
                                "the change history query", _read_change)
            fresh = [c for c in page if c.resource_name not in seen]
            seen.update(c.resource_name for c in fresh)
            changes += fresh
            if len(page) < CHANGE_PAGE or not fresh:
                return changes
            after = page[-1].local_time

    # -- queries and errors

    def _search(self, service: Any, account: str, query: str, what: str, read: Callable[[Any], T]) -> list[T]:
        """``read(row)`` for every row of one GAQL query on ``account`` (rows are raw protobuf messages).

        A stream cannot be resumed, so a retry runs the whole query again."""
        attempt = 1
        while True:
            try:
                stream = service.search_stream(customer_id=account, query=query, timeout=self.source.timeout_seconds)
                return [read(row) for batch in stream for row in _raw(batch).results]
            except (GoogleAdsException, api_exceptions.GoogleAPICallError) as e:
                diagnosis = _diagnose(e)
            if diagnosis.daily_quota:
                raise DailyQuotaExhausted(
                    self.name,
                    f"{what} failed: the daily API quota is exhausted ({diagnosis.reason}); nothing more is "
                    "pulled until it resets",
                    account_id=account,
                    request_id=diagnosis.request_id,
                )
            if not diagnosis.retry or attempt >= self.source.max_attempts:
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise SourceError(self.name, f"{what} failed{tries}: {diagnosis.reason}",
                                  account_id=account, request_id=diagnosis.request_id)
            delay = diagnosis.delay if diagnosis.delay is not None else backoff(attempt)
            log.warning("%s: account %s: %s failed (%s, request id %s); retrying in %.1f s (attempt %d of %d)",
                        self.name, account, what, diagnosis.reason, diagnosis.request_id or "none", delay,
                        attempt + 1, self.source.max_attempts)
            self._sleep(delay)
            attempt += 1

    def _not_pulled(self, account: str, quota: DailyQuotaExhausted) -> DailyQuotaExhausted:
        return DailyQuotaExhausted(
            self.name,
            f"not pulled: the daily API quota was exhausted on account {quota.account_id} "
            f"(request id {quota.request_id or 'none'}); it is pulled again once the quota resets",
            account_id=account,
        )

    # -- ownership

    def _ownership(self, changes: pd.DataFrame) -> pd.DataFrame:
        return inferred_ownership(
            self.name, changes, self.source.ownership_inference, self.domains, self.declared_accounts, log
        )


# ----------------------------------------------------------------------------------------------
# GAQL


def _metrics_query(start: dt.date, end: dt.date) -> str:
    return (
        "SELECT segments.date, customer.descriptive_name, customer.currency_code, "
        "campaign.id, campaign.name, metrics.cost_micros, metrics.impressions, metrics.clicks "
        f"FROM campaign WHERE segments.date BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'"
    )


def _leads_query(definition: LeadDefinition, start: dt.date, end: dt.date) -> str:
    """Conversions by category, and by action name when the definition names actions (then every
    category is asked for: a named action counts whatever its category)."""
    fields = [
        "segments.date", "customer.descriptive_name", "customer.currency_code",
        "campaign.id", "campaign.name", "segments.conversion_action_category",
    ]
    where = [f"segments.date BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'"]
    if definition.conversion_actions:
        fields.append("segments.conversion_action_name")
    else:
        categories = ", ".join(f"'{c}'" for c in definition.categories)
        where.append(f"segments.conversion_action_category IN ({categories})")
    return f"SELECT {', '.join(fields)}, metrics.conversions FROM campaign WHERE {' AND '.join(where)}"


def _changes_query(after: str, until: str, limit: int) -> str:
    return (
        "SELECT change_event.resource_name, change_event.change_date_time, change_event.change_resource_type, "
        "change_event.client_type, change_event.user_email, change_event.resource_change_operation, "
        "change_event.changed_fields, change_event.old_resource, change_event.new_resource, "
        "change_event.campaign, customer.time_zone "
        f"FROM change_event WHERE change_event.change_date_time >= '{after}' "
        f"AND change_event.change_date_time < '{until}' "
        f"ORDER BY change_event.change_date_time LIMIT {limit}"
    )


def _lead_counter(definition: LeadDefinition) -> Callable[[str, str], bool]:
    """Whether a conversion of (category, action name) counts as a lead under ``definition``."""
    if definition.conversion_actions:
        actions = set(definition.conversion_actions)
        return lambda category, action: action in actions
    categories = set(definition.categories)
    return lambda category, action: category in categories


# ----------------------------------------------------------------------------------------------
# reading rows


def _raw(message: Any) -> Any:
    """The protobuf message behind a proto-plus wrapper (the message itself when it is not wrapped)."""
    return type(message).pb(message) if isinstance(message, proto.Message) else message


@functools.lru_cache(maxsize=None)
def _enum_names(message_type: type, field: str) -> dict[int, str]:
    return {v.number: v.name for v in message_type.DESCRIPTOR.fields_by_name[field].enum_type.values}


def _enum_name(message: Any, field: str) -> str:
    """The name of an enum field's value in a raw protobuf message."""
    return _enum_names(type(message), field).get(getattr(message, field), "UNKNOWN")


def _read_metrics(row: Any) -> _MetricRow:
    return _MetricRow(
        row.segments.date, row.customer.descriptive_name, row.customer.currency_code, str(row.campaign.id),
        row.campaign.name, row.metrics.cost_micros, row.metrics.impressions, row.metrics.clicks, 0.0,
    )


def _read_conversions(row: Any) -> tuple[_MetricRow, str, str]:
    metric = _MetricRow(
        row.segments.date, row.customer.descriptive_name, row.customer.currency_code, str(row.campaign.id),
        row.campaign.name, 0, 0, 0, row.metrics.conversions,
    )
    return metric, _enum_name(row.segments, "conversion_action_category"), row.segments.conversion_action_name


def _read_change(row: Any) -> _Change:
    event = row.change_event
    _, marker, campaign_id = event.campaign.rpartition("/campaigns/")
    return _Change(
        resource_name=event.resource_name,
        local_time=event.change_date_time,
        time_zone=row.customer.time_zone,
        campaign_id=campaign_id if marker else "",
        user_email=event.user_email,
        client_type=_enum_name(event, "client_type"),
        resource_type=_enum_name(event, "change_resource_type"),
        operation=_enum_name(event, "resource_change_operation"),
        changed_fields=_describe_fields(event),
    )


def _describe_fields(event: Any) -> str:
    """The changed fields, with old -> new values for the scalar fields of an update
    (``amount: 50.00 -> 80.00`` for a budget's ``amount_micros``)."""
    paths = list(event.changed_fields.paths)
    resource = _enum_name(event, "change_resource_type").lower()
    if _enum_name(event, "resource_change_operation") != "UPDATE" or \
            resource not in event.old_resource.DESCRIPTOR.fields_by_name:
        return ", ".join(paths)
    old, new = getattr(event.old_resource, resource), getattr(event.new_resource, resource)
    return ", ".join(_describe_field(path, _value_at(old, path), _value_at(new, path)) for path in paths)


def _describe_field(path: str, before: object, after: object) -> str:
    if before is None or after is None:
        return path
    if path.endswith("_micros") and isinstance(before, int) and isinstance(after, int):
        return f"{path.removesuffix('_micros')}: {before / 1e6:.2f} -> {after / 1e6:.2f}"
    return f"{path}: {_short(before)} -> {_short(after)}"


def _value_at(message: Any, path: str) -> object:
    """The scalar (or enum name) at a field path of a protobuf message; None for anything else."""
    parent, name = message, ""
    for name in path.split("."):
        if not isinstance(message, ProtobufMessage) or name not in message.DESCRIPTOR.fields_by_name:
            return None
        parent, message = message, getattr(message, name)
    if not isinstance(message, (bool, int, float, str)):
        return None  # a message or a repeated field
    return _enum_name(parent, name) if parent.DESCRIPTOR.fields_by_name[name].enum_type else message


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 3] + "..."


def _domains(emails: Iterable[str]) -> list[str]:
    return sorted({email.rpartition("@")[2].lower() for email in emails if "@" in email})


# ----------------------------------------------------------------------------------------------
# frames


def _daily_totals(account_id: str, rows: Sequence[_MetricRow]) -> pd.DataFrame:
    """One account's rows (query A's, then the lead rows of query B) summed per (campaign, day), in
    canonical metric columns; spend in currency units."""
    totals: dict[tuple[str, str], list[float]] = {}
    names: dict[str, str] = {}
    for row in rows:
        names.setdefault(row.campaign_id, row.campaign_name)
        total = totals.setdefault((row.campaign_id, row.date), [0, 0, 0, 0.0])
        total[0] += row.cost_micros
        total[1] += row.impressions
        total[2] += row.clicks
        total[3] += row.leads
    campaigns = [campaign for campaign, _ in totals]
    values = np.array(list(totals.values()), dtype=np.float64).reshape(-1, 4)
    return pd.DataFrame(
        {
            "date": [day for _, day in totals],
            "hour": DAILY,
            "account_id": account_id,
            "account_name": rows[0].account_name if rows else "",
            "campaign_id": campaigns,
            "campaign_name": [names[c] for c in campaigns],
            "currency": rows[0].currency if rows else "",
            "spend": values[:, 0] / 1e6,
            "impressions": values[:, 1],
            "clicks": values[:, 2],
            "leads": values[:, 3],
        }
    )


def _metrics_frame(pulls: Sequence[_AccountPull]) -> pd.DataFrame:
    frames = [p.metrics for p in pulls if len(p.metrics)]
    if not frames:
        return empty_metrics()
    metrics = normalise_metrics(pd.concat(frames, ignore_index=True))
    return metrics.sort_values(["account_id", "campaign_id", "date"], kind="stable", ignore_index=True)


def _changes_frame(pulls: Sequence[_AccountPull]) -> pd.DataFrame:
    """Every change as canonical columns plus ``local_day`` (the account's own day), oldest first."""
    frames = [_account_changes(p.account_id, p.changes) for p in pulls if p.changes]
    if not frames:
        return pd.DataFrame(columns=[*empty_changes().columns, "local_day"])
    return pd.concat(frames, ignore_index=True).sort_values(["account_id", "changed_at"], kind="stable")


def _account_changes(account_id: str, changes: list[_Change]) -> pd.DataFrame:
    frame = pd.DataFrame(changes, columns=list(_Change._fields))
    local = pd.to_datetime(frame["local_time"], format="ISO8601")
    frame["changed_at"] = _to_utc(local, changes[0].time_zone)
    frame["local_day"] = local.dt.normalize()
    frame["account_id"] = account_id
    return frame.drop(columns=["resource_name", "local_time", "time_zone"])


def _to_utc(local: pd.Series, time_zone: str) -> pd.Series:
    """Naive local times of ``time_zone`` as naive UTC; an ambiguous time (the hour repeated when
    clocks go back) is read as the first of the two."""
    if not time_zone:
        return local
    aware = local.dt.tz_localize(time_zone, ambiguous=np.ones(len(local), dtype=bool), nonexistent="shift_forward")
    return aware.dt.tz_convert("UTC").dt.tz_localize(None)


# ----------------------------------------------------------------------------------------------
# errors


@dataclass(frozen=True)
class _Diagnosis:
    reason: str
    request_id: str | None
    retry: bool
    daily_quota: bool
    delay: float | None  # seconds the API asked to wait before retrying


def _diagnose(error: GoogleAdsException | api_exceptions.GoogleAPICallError) -> _Diagnosis:
    """What went wrong, whether to retry, and whether the daily quota is gone."""
    failure, request_id = _failure_and_request_id(error)
    codes = _error_codes(failure)
    if not codes:
        return _Diagnosis(_status_reason(error), request_id, isinstance(error, _RETRIED_API_ERRORS), False, None)
    keys = {(kind, name) for kind, name, _, _ in codes}
    reasons = [f"{kind} {name}: {_without_emails(message)}".rstrip(": ") for kind, name, message, _ in codes]
    hints = [_HINTS[kind] for kind in dict.fromkeys(kind for kind, _, _, _ in codes) if kind in _HINTS]
    delays = [delay for *_, delay in codes if delay is not None]
    return _Diagnosis(
        reason="; ".join(reasons) + "".join(f" ({hint})" for hint in hints),
        request_id=request_id,
        retry=keys <= _RETRIED_CODES,
        daily_quota=bool(keys & _DAILY_QUOTA_CODES),
        delay=max(delays) if delays else None,
    )


def _failure_and_request_id(error: Exception) -> tuple[Any, str | None]:
    """The GoogleAdsFailure (raw protobuf, or None) and the request id of a failed call."""
    if isinstance(error, GoogleAdsException):
        return (_raw(error.failure) if error.failure is not None else None), error.request_id or None
    metadata = _trailing_metadata(getattr(error, "response", None))
    failure = next((_parse_failure(v) for k, v in metadata if k == _FAILURE_KEY), None)
    request_id = next((str(v) for k, v in metadata if k == "request-id"), None)
    return failure, request_id


def _parse_failure(data: bytes) -> Any:
    try:
        return _raw(_GoogleAdsFailure.deserialize(data))
    except DecodeError:
        return None  # described by the gRPC status instead


def _trailing_metadata(call: Any) -> Sequence[tuple[str, Any]]:
    reader = getattr(call, "trailing_metadata", None)
    return (reader() or ()) if callable(reader) else ()


def _error_codes(failure: Any) -> list[tuple[str, str, str, float | None]]:
    """(kind, code, message, retry delay in seconds or None) of each error in a GoogleAdsFailure."""
    if failure is None:
        return []
    codes = []
    for error in failure.errors:
        kind = error.error_code.WhichOneof("error_code") or "unknown_error"
        name = _enum_name(error.error_code, kind) if kind != "unknown_error" else "UNKNOWN"
        details = error.details.quota_error_details
        delay = details.retry_delay.ToTimedelta().total_seconds() if details.HasField("retry_delay") else None
        codes.append((kind, name, error.message, delay))
    return codes


def _status_reason(error: Exception) -> str:
    if isinstance(error, api_exceptions.GoogleAPICallError):
        return f"{type(error).__name__}: {_without_emails(error.message)}"
    status = getattr(getattr(error, "error", None), "code", None)
    return f"{type(error).__name__} (status {status().name})" if callable(status) else type(error).__name__


def _without_emails(text: str) -> str:
    """``text`` with the user part of any email address masked (API messages can quote a user)."""
    return _EMAIL_USER.sub("...@", text)
