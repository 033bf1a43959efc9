"""Meta (Facebook and Instagram) ads as a data source, through the official ``facebook-business`` SDK.

For each ad account (the listed ``ad_account_ids``, and every ad account the business
``business_id`` owns or has client access to, minus ``exclude_ad_account_ids``; closed accounts
are left out) a fetch reads:

- the account's name, currency and time zone (``AdAccount`` fields ``name``, ``currency``,
  ``timezone_name``);
- daily insights per campaign (``AdAccount.get_insights``, ``level=campaign``,
  ``time_increment=1``): spend in the account's currency, impressions, clicks, and leads summed
  from ``actions`` over the configured ``lead_action_types``. An aggregate action type (``lead``)
  is counted instead of its parts when a row reports it, never beside them. A range longer than
  ``async_after_days``, or one Meta finds too large to answer at once, is asked for as an
  asynchronous report run (``AdReportRun``), polled until it completes;
- with ``change_history``: the account's activity log (``AdAccount.get_activities``) for the
  days asked for, as canonical changes. The author (``user_email``) is the actor as
  ``anomaly.ownership.meta_actor`` writes it, attributed to parties by ``meta_users`` and
  ``meta_businesses``; Meta's own events (delivery, review, billing) have the client type
  ``META_SYSTEM``. A change to an ad set or an ad is filed under its campaign (looked up with
  one multi-id read per 50 objects); ``changed_at`` is naive UTC;
- with ``ownership_inference``: the account-wide ownership periods those changes imply
  (``anomaly.ownership.infer_ownership``), except for accounts whose ownership the config declares.

Days the API does not return are zero activity: insights leave out the days a campaign did not
deliver.

Every call goes through one guard that reads Meta's usage headers (``x-business-use-case-usage``,
``x-ad-account-usage``, ``x-app-usage``, ``x-fb-ads-insights-throttle``) and pauses before the
next call once a limit is ``usage_pause_percent`` used, for the time Meta says it takes to regain
access where it says so. Throttling (error codes 4, 17, 32, 613, 80000-80014) and transient errors
(1, 2, or ``is_transient``, server errors, dropped connections) are retried with backoff, up to
``max_attempts`` calls; others are not. A throttle that would need a pause longer than
``max_pause_seconds`` fails the account (for a limit of the ad account) or stops the fetch (for
a limit of the app, like an expired or invalid token, error 190: every account left is reported
not pulled). A failing account is reported in ``Batch.failures`` with Meta's ``fbtrace_id`` as
the request id, and the others are still pulled; only when every account fails does ``fetch``
raise.

The access token never appears in a log line or an error: messages are written from the error's
code and Meta's message (with the token masked), never from a request URL, and the token is
redacted from the logs from the moment it is loaded.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import requests
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.adreportrun import AdReportRun
from facebook_business.adobjects.adset import AdSet
from facebook_business.adobjects.business import Business
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from anomaly.config import META_AGGREGATE_ACTION_TYPES, MetaAdsSourceConfig
from anomaly.errors import SourceError
from anomaly.ownership import META_SYSTEM, meta_actor
from anomaly.redaction import redact, remember
from anomaly.schema import DAILY, empty_changes, empty_metrics, normalise_changes, normalise_metrics
from connectors.base import Batch, all_failed, backoff, inferred_ownership

log = logging.getLogger(__name__)

API_VERSION = "v26.0"
TOKEN_VARIABLE = "META_ACCESS_TOKEN"
INSIGHT_FIELDS = [
    "campaign_id", "campaign_name", "account_id", "account_name", "account_currency",
    "spend", "impressions", "clicks", "actions", "date_start",
]
ACCOUNT_FIELDS = ["account_id", "name", "currency", "timezone_name", "account_status"]
ACTIVITY_FIELDS = [
    "actor_id", "actor_name", "application_id", "application_name", "event_time", "event_type",
    "extra_data", "object_id", "object_name", "object_type", "translated_event_type",
]
PAGE_SIZE = 500  # rows a page of insights, accounts or activities
IDS_PER_READ = 50  # the Graph API's most ids in one multi-id read
CLOSED = 101  # AdAccount.account_status of a closed account
THROTTLE_BASE_SECONDS = 60.0  # a throttle without a usage header is waited out from a minute, doubling
USAGE_PAUSE_SECONDS = 60.0  # the pause at a limit fully used, when Meta does not say how long
POLL_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)  # waits between polls of a report run, the last repeated
_TRANSIENT_CODES = {1, 2}
_APP_THROTTLE_CODES = {4, 17}  # the app's or the user's limit: every account is affected
_ACCOUNT_THROTTLE_CODES = {32, 613, *range(80000, 80015)}  # a limit of one ad account (or page)
_TOKEN_CODES = {190, 102}
_PERMISSION_CODES = {10, *range(200, 300)}
_TOO_MUCH_DATA = "reduce the amount of data"
#: Currencies Meta counts in whole units (its "offset" 1): budgets and bids in the activity log are
#: in hundredths of the currency for every other one.
_WHOLE_UNIT_CURRENCIES = {"CLP", "COP", "CRC", "HUF", "ISK", "IDR", "JPY", "KRW", "PYG", "TWD", "VND"}
_VALUE_LIMIT = 60


class TokenError(SourceError):
    """The access token is expired, revoked or invalid: nothing can be pulled until it is renewed."""


class AppThrottled(SourceError):
    """Meta throttles the app (or the token's user) for longer than the connector waits."""


# ----------------------------------------------------------------------------------------------
# the API


def load_api(source: MetaAdsSourceConfig, environ: Mapping[str, str] | None = None) -> FacebookAdsApi:
    """An API client for Graph API ``API_VERSION`` with the source's access token (``access_token``,
    else the environment's META_ACCESS_TOKEN) and, when set, its app id and secret (every call then
    carries an appsecret_proof). The token is redacted from the logs from now on. No call is made."""
    env = os.environ if environ is None else environ
    token = source.access_token.get_secret_value() if source.access_token else env.get(TOKEN_VARIABLE, "")
    if not token.strip():
        raise SourceError(source.name, f"no access token: set {TOKEN_VARIABLE} (a system user's token with ads_read), "
                          "or access_token: ${VARIABLE} in the source")
    remember({token: "<the Meta access token>"})
    secret = source.app_secret.get_secret_value() if source.app_secret else None
    if secret:
        remember({secret: "<the Meta app secret>"})
    # built directly, not with FacebookAdsApi.init: that sets a process-wide default client and
    # turns on the SDK's crash reporter, which posts tracebacks to Meta
    session = FacebookSession(source.app_id, secret, token, timeout=source.timeout_seconds)
    return FacebookAdsApi(session, api_version=API_VERSION)


def _token_setting(source: MetaAdsSourceConfig) -> str:
    """Where the token comes from, as the message asking to renew it says: the environment variable
    (``load_config`` remembers an ``access_token: ${VAR}`` by its reference), or the setting."""
    if source.access_token is None:
        return f"the environment variable {TOKEN_VARIABLE}"
    token = source.access_token.get_secret_value()
    reference = re.fullmatch(r"\$\{(\w+)(?::-.*)?\}", redact(token))
    return f"the environment variable {reference[1]}" if reference else f"access_token of the source {source.name!r}"


# ----------------------------------------------------------------------------------------------
# the guard every call goes through


@dataclass(frozen=True)
class _Usage:
    percent: float  # the most used share of any limit the headers report
    regain_seconds: float  # how long Meta says it takes to regain access (0: not said)
    app_wide: bool  # whether that limit is the app's (or the user's) rather than one ad account's


class _CallFailed(Exception):
    """A Graph API call failed for good: after its retries, or at once when retrying cannot help."""

    def __init__(self, reason: str, trace_id: str | None, attempts: int, *, kind: str = "", app_wide: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.trace_id = trace_id
        self.attempts = attempts
        self.kind = kind  # "token", "throttled", "too_much_data", or "" for anything else
        self.app_wide = app_wide


class _GuardedApi:
    """The SDK's client behind a guard: every call (the SDK's objects, cursors and report runs call
    ``call``) waits out the pause the last usage headers asked for, and is retried on throttling and
    transient errors. Raises ``_CallFailed``."""

    def __init__(self, api: FacebookAdsApi, source: MetaAdsSourceConfig, sleep: Callable[[float], None], clock: Callable[[], float]):
        self._api = api
        self._source = source
        self._sleep = sleep
        self._clock = clock
        self._resume_at: dict[str, float] = {}  # "app", or an ad account id: when calls may go on
        self.account = ""  # the ad account the calls are for now ("" while listing accounts)
        self.calls = 0
        self.paused_seconds = 0.0
        session = getattr(api, "_session", None)
        self._token = getattr(session, "access_token", None) or ""
        if len(self._token) >= 6:  # an injected client's token is kept out of the logs too
            remember({self._token: "<the Meta access token>"})

    def __bool__(self) -> bool:  # the SDK's objects test their client for truth
        return True

    def call(self, method, path, params=None, headers=None, files=None, url_override=None, api_version=None):
        attempt = 1
        while True:
            self._wait()
            self.calls += 1
            try:
                response = self._api.call(method, path, params=params, headers=headers, files=files,
                                          url_override=url_override, api_version=api_version)
            except FacebookRequestError as e:
                usage = self._observe(e.http_headers())
                diagnosis = _diagnose(e, self._token)
            except requests.RequestException as e:
                usage, diagnosis = None, _Diagnosis(_transport_reason(e), None, retry=True)
            else:
                self._observe(response.headers())
                return response
            if diagnosis.kind == "token" or not diagnosis.retry or attempt >= self._source.max_attempts:
                raise _CallFailed(diagnosis.reason, diagnosis.trace_id, attempt, kind=diagnosis.kind,
                                  app_wide=diagnosis.app_wide)
            delay = self._retry_delay(diagnosis, usage, attempt)
            if delay > self._source.max_pause_seconds:
                raise _CallFailed(f"{diagnosis.reason}; Meta asks for a pause of {_duration(delay)}, longer than "
                                  f"max_pause_seconds ({_duration(self._source.max_pause_seconds)})",
                                  diagnosis.trace_id, attempt, kind="throttled", app_wide=diagnosis.app_wide)
            log.warning("%s: %s: a call failed (%s, fbtrace_id %s); retrying in %.1f s (attempt %d of %d)",
                        self._source.name, self.account or "listing the ad accounts", diagnosis.reason,
                        diagnosis.trace_id or "none", delay, attempt + 1, self._source.max_attempts)
            self._pause(delay)
            attempt += 1

    # -- pauses

    def _wait(self) -> None:
        resume = max(self._resume_at.get("app", 0.0), self._resume_at.get(self.account, 0.0))
        wait = resume - self._clock()
        if wait <= 0:
            return
        if wait > self._source.max_pause_seconds:
            app_wide = self._resume_at.get("app", 0.0) >= resume
            raise _CallFailed(f"Meta's usage headers ask for a pause of {_duration(wait)} before the next call, longer "
                              f"than max_pause_seconds ({_duration(self._source.max_pause_seconds)})",
                              None, 0, kind="throttled", app_wide=app_wide)
        log.info("%s: %s: pausing %.1f s: a rate limit is nearly used up", self._source.name,
                 self.account or "listing the ad accounts", wait)
        self._pause(wait)

    def _pause(self, seconds: float) -> None:
        self.paused_seconds += seconds
        self._sleep(seconds)

    def _observe(self, headers: Mapping[str, str] | None) -> _Usage | None:
        """Read the usage headers of a response and set when the next call may go."""
        usage = read_usage(headers or {})
        if usage is None:
            return None
        threshold = self._source.usage_pause_percent
        if usage.percent < threshold and not usage.regain_seconds:
            return usage
        if usage.regain_seconds:
            pause = usage.regain_seconds
        elif usage.percent >= 100:
            pause = USAGE_PAUSE_SECONDS
        else:
            pause = max(1.0, USAGE_PAUSE_SECONDS * (usage.percent - threshold) / max(100.0 - threshold, 1e-9))
        key = "app" if usage.app_wide else self.account
        self._resume_at[key] = max(self._resume_at.get(key, 0.0), self._clock() + pause)
        return usage

    def _retry_delay(self, diagnosis: "_Diagnosis", usage: _Usage | None, attempt: int) -> float:
        if diagnosis.kind == "throttled":
            told = usage.regain_seconds if usage else 0.0
            pending = max(self._resume_at.get("app", 0.0), self._resume_at.get(self.account, 0.0)) - self._clock()
            self._resume_at.pop(self.account, None)
            self._resume_at.pop("app", None)
            return max(told, pending, THROTTLE_BASE_SECONDS * 2 ** (attempt - 1))
        return backoff(attempt)


def read_usage(headers: Mapping[str, str]) -> _Usage | None:
    """The most used limit the usage headers of one response report (None: they report none).

    ``x-business-use-case-usage`` (per business use case, with ``estimated_time_to_regain_access``
    in minutes) and ``x-ad-account-usage`` (``acc_id_util_pct``, ``reset_time_duration`` in
    seconds) are an ad account's limits; ``x-app-usage`` the app's; ``x-fb-ads-insights-throttle``
    both (``app_id_util_pct``, ``acc_id_util_pct``). A header that is not JSON is ignored."""
    found: list[tuple[float, float, bool]] = []  # (percent, regain seconds, app-wide)
    buc = _json_header(headers, "x-business-use-case-usage")
    if isinstance(buc, dict):
        for entries in buc.values():
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict):
                    percent = max(_number(entry.get(k)) for k in ("call_count", "total_cputime", "total_time"))
                    found.append((percent, 60.0 * _number(entry.get("estimated_time_to_regain_access")), False))
    account = _json_header(headers, "x-ad-account-usage")
    if isinstance(account, dict):
        percent = _number(account.get("acc_id_util_pct"))
        found.append((percent, _number(account.get("reset_time_duration")) if percent >= 100 else 0.0, False))
    app = _json_header(headers, "x-app-usage")
    if isinstance(app, dict):
        found.append((max(_number(app.get(k)) for k in ("call_count", "total_cputime", "total_time")), 0.0, True))
    insights = _json_header(headers, "x-fb-ads-insights-throttle")
    if isinstance(insights, dict):
        found.append((_number(insights.get("app_id_util_pct")), 0.0, True))
        found.append((_number(insights.get("acc_id_util_pct")), 0.0, False))
    if not found:
        return None
    percent = max(f[0] for f in found)
    regain = max(f[1] for f in found)
    # the limit that sets the pause: the one Meta says takes longest to regain, else the most used
    deciding = max(found, key=lambda f: f[1]) if regain else max(found, key=lambda f: f[0])
    return _Usage(percent, regain, deciding[2])


def _json_header(headers: Mapping[str, str], name: str) -> Any:
    raw = headers.get(name)
    if raw is None:
        raw = next((v for k, v in headers.items() if k.lower() == name), None)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


# ----------------------------------------------------------------------------------------------
# errors


@dataclass(frozen=True)
class _Diagnosis:
    reason: str
    trace_id: str | None
    retry: bool
    kind: str = ""
    app_wide: bool = False


def _diagnose(error: FacebookRequestError, token: str) -> _Diagnosis:
    """What a failed call says, whether to retry it, and of what kind it is. ``token`` is masked in
    the message Meta wrote."""
    code = error.api_error_code()
    subcode = error.api_error_subcode()
    body = error.body()
    details = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
    trace_id = details.get("fbtrace_id") or _header(error.http_headers(), "x-fb-trace-id")
    message = _masked(str(error.api_error_message() or details.get("error_user_msg") or ""), token)
    status = error.http_status()
    what = f"error {code}" + (f" (subcode {subcode})" if subcode else "") if code is not None else f"HTTP status {status}"
    reason = f"{what}: {message}" if message else what
    if code in _TOKEN_CODES:
        return _Diagnosis(reason, trace_id, retry=False, kind="token", app_wide=True)
    if code in _APP_THROTTLE_CODES or code in _ACCOUNT_THROTTLE_CODES:
        return _Diagnosis(f"{reason} (Meta throttles the calls)", trace_id, retry=True, kind="throttled",
                          app_wide=code in _APP_THROTTLE_CODES)
    if _TOO_MUCH_DATA in message.lower():
        return _Diagnosis(reason, trace_id, retry=False, kind="too_much_data")
    if code in _PERMISSION_CODES:
        return _Diagnosis(f"{reason} (check that the system user has ads_read on this ad account: assign it the "
                          "account in Business Settings, and that the token has the ads_read permission)",
                          trace_id, retry=False)
    transient = code in _TRANSIENT_CODES or bool(error.api_transient_error()) or (code is None and (status or 0) >= 500)
    return _Diagnosis(reason, trace_id, retry=transient)


def _transport_reason(error: requests.RequestException) -> str:
    # requests writes the URL into its messages, and the URL carries the access token: name the
    # kind of failure only
    kind = "timed out" if isinstance(error, requests.Timeout) else "could not connect" if isinstance(
        error, requests.ConnectionError) else "failed"
    return f"the call to the Graph API {kind} ({type(error).__name__})"


def _masked(text: str, token: str) -> str:
    return text.replace(token, "<the access token>") if token and len(token) >= 6 else text


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    return value if value is not None else next((v for k, v in headers.items() if k.lower() == name), None)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


# ----------------------------------------------------------------------------------------------
# the connector


@dataclass(frozen=True)
class _Account:
    account_id: str  # act_<digits>
    name: str
    currency: str
    time_zone: str


class _Change(NamedTuple):
    changed_at: pd.Timestamp  # naive UTC
    local_day: pd.Timestamp  # the account's own day
    campaign_id: str
    user_email: str
    client_type: str
    resource_type: str
    operation: str
    changed_fields: str


@dataclass(frozen=True)
class _AccountPull:
    account: _Account
    metrics: pd.DataFrame
    changes: list[_Change]


class MetaAdsConnector:
    """Daily campaign insights, leads, activity log and inferred ownership from Meta ad accounts.

    ``domains`` is ``anomaly.ownership.domain_map`` (emails' domains, and Meta users and businesses,
    to party keys); ``declared_accounts`` are the accounts whose ownership the config declares,
    which inference leaves alone. ``api`` (a ``FacebookAdsApi``) is built from ``source`` on the
    first fetch when not given; ``sleep`` waits and ``clock`` (monotonic seconds) times the pauses
    and the report runs.
    """

    def __init__(
        self,
        source: MetaAdsSourceConfig,
        domains: dict[str, str],
        *,
        api: FacebookAdsApi | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        declared_accounts: Set[str] = frozenset(),
    ):
        self.name = source.name
        self.source = source
        self.domains = domains
        self.declared_accounts = declared_accounts
        self._api = api
        self._sleep = sleep
        self._clock = clock
        self.last_guard: _GuardedApi | None = None  # the last fetch's calls and pauses, for benchmarks

    def fetch(self, start: dt.date, end: dt.date) -> Batch:
        """Every account's metrics dated ``start``..``end`` (inclusive), the changes made on those days
        and the ownership they imply. Raises ``SourceError`` when the accounts cannot be listed or
        every account fails; otherwise the failed ones are in ``failures``."""
        if self._api is None:
            self._api = load_api(self.source)
        api = self.last_guard = _GuardedApi(self._api, self.source, self._sleep, self._clock)
        accounts = self._accounts(api)
        pulls: list[_AccountPull] = []
        failures: list[SourceError] = []
        stop: SourceError | None = None
        for account_id, known in accounts:
            if stop is not None:
                failures.append(self._not_pulled(account_id, stop))
                continue
            api.account = account_id
            try:
                pulls.append(self._pull(api, account_id, known, start, end))
            except (TokenError, AppThrottled) as e:
                log.warning("%s", e)
                stop = e
                failures.append(e)
            except SourceError as e:
                log.warning("%s", e)
                failures.append(e)
        api.account = ""
        if not pulls:
            raise stop if isinstance(stop, TokenError) else all_failed(self.name, failures, "ad accounts")
        changes = _changes_frame(pulls)
        metrics = _metrics_frame(pulls)
        log.info("%s: pulled %d of %d ad accounts, %s to %s: %d campaign-days, %d changes (%d calls, %.0f s paused)",
                 self.name, len(pulls), len(accounts), start, end, len(metrics), len(changes), api.calls, api.paused_seconds)
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

    def _accounts(self, api: _GuardedApi) -> list[tuple[str, _Account | None]]:
        """The ad accounts to pull, each with what listing them already told (None: read it first)."""
        excluded = set(self.source.exclude_ad_account_ids)
        found: dict[str, _Account | None] = dict.fromkeys(self.source.ad_account_ids)
        if self.source.business_id:
            for account in self._business_accounts(api):
                found.setdefault(account.account_id, account)
        accounts = [(a, info) for a, info in found.items() if a not in excluded]
        if accounts:
            return accounts
        if not self.source.business_id:
            raise SourceError(self.name, "no ad accounts to pull: every account of ad_account_ids is excluded")
        raise SourceError(self.name, f"no ad accounts to pull: business {self.source.business_id} owns or has client access to "
                          "no open ad account outside exclude_ad_account_ids (is the system user assigned to them?)")

    def _business_accounts(self, api: _GuardedApi) -> list[_Account]:
        business = Business(self.source.business_id, api=api)
        accounts: list[_Account] = []
        for edge, what in ((business.get_owned_ad_accounts, "owned"), (business.get_client_ad_accounts, "client")):
            try:
                rows = list(edge(fields=ACCOUNT_FIELDS, params={"limit": PAGE_SIZE}))
            except _CallFailed as e:
                raise self._error(e, f"listing the {what} ad accounts of business {self.source.business_id}") from None
            accounts += [_account_of(row) for row in rows if _whole(row.get("account_status")) != CLOSED]
        return accounts

    def _account_info(self, api: _GuardedApi, account_id: str) -> _Account:
        try:
            row = AdAccount(account_id, api=api).api_get(fields=ACCOUNT_FIELDS)
        except _CallFailed as e:
            raise self._error(e, "reading the ad account (name, currency, time zone)", account_id) from None
        return _account_of(row, account_id)

    # -- one account

    def _pull(self, api: _GuardedApi, account_id: str, known: _Account | None, start: dt.date, end: dt.date) -> _AccountPull:
        account = known or self._account_info(api, account_id)
        rows = self._insights(api, account, start, end)
        metrics = _daily_totals(account, rows, self.source.lead_action_types)
        changes: list[_Change] = []
        if self.source.change_history:
            changes = self._activities(api, account, start, end, set(metrics["campaign_id"]))
        log.debug("%s: %s: %d insight rows, %d changes", self.name, account_id, len(rows), len(changes))
        return _AccountPull(account, metrics, changes)

    def _insights(self, api: _GuardedApi, account: _Account, start: dt.date, end: dt.date) -> list[Any]:
        params = {
            "level": "campaign",
            "time_increment": 1,
            "time_range": {"since": start.isoformat(), "until": end.isoformat()},
            "limit": PAGE_SIZE,
        }
        ad_account = AdAccount(account.account_id, api=api)
        if (end - start).days + 1 <= self.source.async_after_days:
            try:
                return list(ad_account.get_insights(fields=INSIGHT_FIELDS, params=dict(params)))
            except _CallFailed as e:
                if e.kind != "too_much_data":
                    raise self._error(e, "the insights query", account.account_id) from None
                log.info("%s: %s: Meta finds the insights too large to answer at once; asking for a report run",
                         self.name, account.account_id)
        return self._report_run(ad_account, params)

    def _report_run(self, ad_account: AdAccount, params: dict[str, Any]) -> list[Any]:
        """The insights of an asynchronous report run: started, polled until it completes, read.
        A run that fails or is skipped on Meta's side is started again, up to ``max_attempts``."""
        account_id = ad_account.get_id()
        for attempt in range(1, self.source.max_attempts + 1):
            try:
                report = ad_account.get_insights(fields=INSIGHT_FIELDS, params=dict(params), is_async=True)
                status = self._await(report, account_id)
                if status == "Job Completed":
                    return list(report.get_result(params={"limit": PAGE_SIZE}))
            except _CallFailed as e:
                raise self._error(e, "the insights report run", account_id) from None
            log.warning("%s: %s: the insights report run %s ended %r; starting it again (attempt %d of %d)",
                        self.name, account_id, report.get_id(), status, attempt + 1, self.source.max_attempts)
        raise SourceError(self.name, f"the insights report run failed on Meta's side {self.source.max_attempts} times "
                          f"(last {status!r}, report run {report.get_id()})", account_id=account_id)

    def _await(self, report: AdReportRun, account_id: str) -> str:
        """The final status of a report run: ``Job Completed``, ``Job Failed`` or ``Job Skipped``."""
        began = self._clock()
        for poll in range(10**6):
            report.api_get(fields=["async_status", "async_percent_completion"])
            status = str(report.get("async_status") or "")
            if status in ("Job Failed", "Job Skipped"):
                return status
            if status == "Job Completed" and _whole(report.get("async_percent_completion")) >= 100:
                return status
            if self._clock() - began > self.source.async_wait_seconds:
                raise SourceError(self.name, f"the insights report run {report.get_id()} was still {status or 'pending'} "
                                  f"({_whole(report.get('async_percent_completion'))}% done) after "
                                  f"{_duration(self.source.async_wait_seconds)} (async_wait_seconds)", account_id=account_id)
            self._sleep(POLL_SECONDS[min(poll, len(POLL_SECONDS) - 1)])
        raise AssertionError("unreachable")  # pragma: no cover

    def _activities(self, api: _GuardedApi, account: _Account, start: dt.date, end: dt.date, campaigns: set[str]) -> list[_Change]:
        """The account's activity log for ``start``..``end`` (the account's days) as changes."""
        zone = _zone(account.time_zone)
        since = dt.datetime.combine(start, dt.time(), zone)
        until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone)
        params = {"since": int(since.timestamp()), "until": int(until.timestamp()), "limit": PAGE_SIZE}
        try:
            rows = list(AdAccount(account.account_id, api=api).get_activities(fields=ACTIVITY_FIELDS, params=params))
        except _CallFailed as e:
            raise self._error(e, "the activity log query", account.account_id) from None
        events = [_event(row) for row in rows]
        events = [e for e in events if e is not None and since <= e.at < until]
        parents = self._parents(api, account.account_id, {e.object_id for e in events if _level(e, campaigns) == "child"})
        changes = [_change_of(e, account, campaigns, parents) for e in events]
        return sorted(changes, key=lambda c: c.changed_at)

    def _parents(self, api: _GuardedApi, account_id: str, ids: set[str]) -> dict[str, str]:
        """The campaign of each ad set or ad id, read ``IDS_PER_READ`` at a time. One id Meta no
        longer knows (a deleted ad) fails the whole read: such a read is split in halves until the
        unknown ids stand alone, and their changes stay filed under the account."""
        parents: dict[str, str] = {}
        ordered = sorted(i for i in ids if i.isdigit())
        pending = [ordered[i : i + IDS_PER_READ] for i in range(0, len(ordered), IDS_PER_READ)]
        unknown: list[str] = []
        while pending:
            chunk = pending.pop()
            try:
                objects = AdSet.get_by_ids(chunk, fields=["campaign_id"], api=api)
            except _CallFailed as e:
                if e.kind == "throttled" or e.kind == "token":
                    raise self._error(e, "looking up the campaigns of ad sets and ads", account_id) from None
                if len(chunk) > 1:
                    pending += [chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]]
                else:
                    unknown.append(chunk[0])
                continue
            parents.update((str(o.get_id()), str(o.get("campaign_id"))) for o in objects if o.get("campaign_id"))
        if unknown:
            log.info("%s: %s: %d ad sets or ads are no longer known to Meta; their changes are filed under the account",
                     self.name, account_id, len(unknown))
        return parents

    # -- errors

    def _error(self, error: _CallFailed, what: str, account_id: str | None = None) -> SourceError:
        tries = f" after {error.attempts} attempts" if error.attempts > 1 else ""
        if error.kind == "token":
            setting = _token_setting(self.source)
            return TokenError(self.name, f"{what} failed: the access token was refused ({error.reason}); create a new token "
                              f"for the system user (Business Settings > Users > System users > Generate new token, "
                              f"with ads_read) and put it in {setting}", account_id=account_id, request_id=error.trace_id)
        if error.kind == "throttled" and error.app_wide:
            return AppThrottled(self.name, f"{what} failed{tries}: {error.reason}; Meta throttles the app, so the ad "
                                "accounts left are pulled next time", account_id=account_id, request_id=error.trace_id)
        return SourceError(self.name, f"{what} failed{tries}: {error.reason}", account_id=account_id, request_id=error.trace_id)

    def _not_pulled(self, account_id: str, stop: SourceError) -> SourceError:
        why = "the access token was refused" if isinstance(stop, TokenError) else "Meta throttles the app"
        return type(stop)(self.name, f"not pulled: {why} on {stop.account_id or 'an earlier call'} "
                          f"(fbtrace_id {stop.request_id or 'none'}); it is pulled again next time", account_id=account_id)

    # -- ownership

    def _ownership(self, changes: pd.DataFrame) -> pd.DataFrame:
        return inferred_ownership(
            self.name, changes, self.source.ownership_inference, self.domains, self.declared_accounts, log, account="", history="the activity log"
        )


# ----------------------------------------------------------------------------------------------
# reading rows


def _account_of(row: Mapping[str, Any], account_id: str | None = None) -> _Account:
    digits = str(row.get("account_id") or "").removeprefix("act_") or (account_id or "").removeprefix("act_")
    return _Account(f"act_{digits}", str(row.get("name") or ""), str(row.get("currency") or ""), str(row.get("timezone_name") or ""))


def _whole(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def _lead_counter(action_types: Sequence[str]) -> Callable[[Any], float]:
    """The leads of one insights row's ``actions``: the sum of the listed action types, where an
    aggregate that is listed and reported stands for its listed parts."""
    listed = set(action_types)
    covers = {a: set(parts) & listed for a, parts in META_AGGREGATE_ACTION_TYPES.items() if a in listed}

    def count(actions: Any) -> float:
        values: dict[str, float] = {}
        for action in actions or ():
            kind = action.get("action_type")
            if kind in listed:
                values[kind] = values.get(kind, 0.0) + _float(action.get("value"))
        for aggregate, parts in covers.items():
            if aggregate in values:
                for part in parts:
                    values.pop(part, None)
        return sum(values.values())

    return count


def _float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _daily_totals(account: _Account, rows: Sequence[Any], action_types: Sequence[str]) -> pd.DataFrame:
    """One account's insights rows summed per (campaign, day), in canonical metric columns."""
    leads_of = _lead_counter(action_types)
    totals: dict[tuple[str, str], list[float]] = {}
    names: dict[str, str] = {}
    currency, account_name = account.currency, account.name
    for row in rows:
        campaign = str(row.get("campaign_id") or "")
        names.setdefault(campaign, str(row.get("campaign_name") or campaign))
        currency = currency or str(row.get("account_currency") or "")
        account_name = account_name or str(row.get("account_name") or "")
        total = totals.setdefault((campaign, str(row.get("date_start"))), [0.0, 0.0, 0.0, 0.0])
        total[0] += _float(row.get("spend"))
        total[1] += _float(row.get("impressions"))
        total[2] += _float(row.get("clicks"))
        total[3] += leads_of(row.get("actions"))
    campaigns = [campaign for campaign, _ in totals]
    values = np.array(list(totals.values()), dtype=np.float64).reshape(-1, 4)
    return pd.DataFrame(
        {
            "date": [day for _, day in totals],
            "hour": DAILY,
            "account_id": account.account_id,
            "account_name": account_name or account.account_id,
            "campaign_id": campaigns,
            "campaign_name": [names[c] for c in campaigns],
            "currency": currency or "USD",
            "spend": values[:, 0],
            "impressions": values[:, 1],
            "clicks": values[:, 2],
            "leads": values[:, 3],
        }
    )


class _Event(NamedTuple):
    at: dt.datetime  # aware
    event_type: str
    object_id: str
    object_type: str
    actor_id: str
    actor_name: str
    application: str
    translated: str
    extra: Any


def _event(row: Mapping[str, Any]) -> _Event | None:
    """An activity as read from the log; None for one without a readable time."""
    at = _event_time(row.get("event_time"))
    if at is None:
        return None
    extra = row.get("extra_data")
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            pass  # free text: kept as it is
    return _Event(
        at, str(row.get("event_type") or "unknown"), str(row.get("object_id") or ""), str(row.get("object_type") or ""),
        str(row.get("actor_id") or ""), str(row.get("actor_name") or ""), str(row.get("application_name") or ""),
        str(row.get("translated_event_type") or ""), extra,
    )


def _event_time(value: Any) -> dt.datetime | None:
    """``event_time`` as Meta writes it (``2026-03-02T14:05:00+0000``, or a Unix time) as an aware time."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        try:
            parsed = dt.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name) if name else dt.timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return dt.timezone.utc


#: Events of Meta's own (no person made them): delivery, review, billing, the learning phase.
_SYSTEM_EVENTS = {
    "account_spending_limit_reached", "ad_review_approved", "ad_review_declined", "billing_event", "campaign_ended",
    "campaign_spending_limit_reached", "di_ad_set_learning_stage_exit", "first_delivery_event", "funding_event_initiated",
    "funding_event_successful", "lifetime_budget_spent", "update_ad_set_learning_stage_status",
}
_ACCOUNT_EVENT_PREFIXES = ("ad_account", "adaccount", "create_adaccount", "update_adaccount", "add_funding", "remove_funding",
                           "add_images", "edit_images", "delete_images", "account_spending")


def _level(event: _Event, campaigns: set[str]) -> str:
    """What an event changed: "campaign", "child" (an ad set or an ad) or "account". Meta's event
    names keep its old words: a "campaign group" is a campaign, a "legacy campaign" an ad set and
    an "adgroup" an ad."""
    kind = event.event_type
    if event.object_id in campaigns:
        return "campaign"
    if kind.startswith(_ACCOUNT_EVENT_PREFIXES) or "billing" in kind or "audience" in kind:
        return "account"
    if kind == "create_campaign_legacy" or "ad_set" in kind or "adgroup" in kind or kind.startswith(("create_ad", "update_ad_", "edit_and_update_ad", "ad_review")):
        return "child"
    if "campaign" in kind:
        return "campaign"
    return "child" if event.object_id else "account"


def _resource_type(event: _Event, level: str) -> str:
    kind = event.event_type
    if level == "campaign":
        return "META_CAMPAIGN"
    if level == "account":
        return "META_AUDIENCE" if "audience" in kind else "META_AD_ACCOUNT"
    if kind == "create_campaign_legacy" or "ad_set" in kind:
        return "META_AD_SET"
    return "META_AD"


def _change_of(event: _Event, account: _Account, campaigns: set[str], parents: Mapping[str, str]) -> _Change:
    level = _level(event, campaigns)
    campaign = event.object_id if level == "campaign" else parents.get(event.object_id, "") if level == "child" else ""
    utc = pd.Timestamp(event.at).tz_convert("UTC").tz_localize(None)
    local = pd.Timestamp(event.at).tz_convert(_zone(account.time_zone)).tz_localize(None).normalize()
    system = event.event_type in _SYSTEM_EVENTS
    return _Change(
        changed_at=utc,
        local_day=local,
        campaign_id=campaign,
        user_email="" if system else meta_actor(event.actor_id, event.actor_name),
        client_type=META_SYSTEM if system else event.application,
        resource_type=_resource_type(event, level),
        operation=event.event_type,
        changed_fields=_describe_extra(event, account.currency),
    )


def _field_of(event_type: str, extra: Mapping[str, Any]) -> tuple[str, bool]:
    """The field an event changes, as the change history names it, and whether its values are
    amounts of money (in the currency's hundredths, as Meta writes budgets and bids)."""
    kind = event_type
    if "budget" in kind and "optimization" not in kind and "scheduling" not in kind and "scaling" not in kind and "split" not in kind:
        said = str(extra.get("type") or extra.get("budget_type") or "").lower()
        return ("lifetime_budget" if "lifetime" in said or "lifetime" in kind else "daily_budget"), True
    if "spend_cap" in kind or "spend_limit" in kind:
        return "spend_cap", True
    if kind.endswith("bid_strategy"):
        return "bid_strategy", False
    if kind in ("update_ad_set_bidding", "update_ad_bid_info"):
        return "bid_amount", True
    if kind.endswith("run_status") or kind.endswith("_update_status"):
        return "status", False
    if kind.endswith("_name"):
        return "name", False
    if kind.endswith("optimization_goal"):
        return "optimization_goal", False
    return kind.removeprefix("update_").removeprefix("ad_set_").removeprefix("campaign_") or "value", False


def _describe_extra(event: _Event, currency: str) -> str:
    """What changed, from the event's ``extra_data``: ``daily_budget: 75.00 -> 250.00`` (money in
    the account's currency), ``status: Active -> Paused``; Meta's own words for the event
    (``translated_event_type``) when it gives no old and new value."""
    extra = event.extra
    if not isinstance(extra, dict) or ("old_value" not in extra and "new_value" not in extra):
        return event.translated or (_short(str(extra)) if extra not in (None, "", {}) else "")
    field, money = _field_of(event.event_type, extra)
    old, new = _scalar(extra.get("old_value")), _scalar(extra.get("new_value"))
    if money:
        divisor = 1 if (extra.get("currency") or currency) in _WHOLE_UNIT_CURRENCIES else 100
        old, new = _amount(old, divisor), _amount(new, divisor)
    return f"{field}: {_short(old) or 'none'} -> {_short(new) or 'none'}"


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        inner = [v for v in value.values() if isinstance(v, (str, int, float))]
        return str(inner[0]) if len(inner) == 1 else json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def _amount(text: str, divisor: int) -> str:
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return text
    return f"{value / divisor:.2f}" if math.isfinite(value) else text


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 3] + "..."


# ----------------------------------------------------------------------------------------------
# frames


def _metrics_frame(pulls: Sequence[_AccountPull]) -> pd.DataFrame:
    frames = [p.metrics for p in pulls if len(p.metrics)]
    if not frames:
        return empty_metrics()
    metrics = normalise_metrics(pd.concat(frames, ignore_index=True))
    return metrics.sort_values(["account_id", "campaign_id", "date"], kind="stable", ignore_index=True)


def _changes_frame(pulls: Sequence[_AccountPull]) -> pd.DataFrame:
    """Every change as canonical columns plus ``local_day`` (the account's own day), oldest first."""
    rows = [(p.account.account_id, *c) for p in pulls for c in p.changes]
    if not rows:
        return pd.DataFrame(columns=[*empty_changes().columns, "local_day"])
    frame = pd.DataFrame(rows, columns=["account_id", *_Change._fields])
    return frame.sort_values(["account_id", "changed_at"], kind="stable", ignore_index=True)
