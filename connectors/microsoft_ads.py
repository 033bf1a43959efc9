"""Microsoft Advertising as a data source, through the official SDK (``bingads``, API v13).

The accounts are the listed ``account_ids``, or every active or paused account of the manager
``customer_id`` (``CustomerManagementService.GetAccountsInfo``), minus ``exclude_account_ids``. A
fetch asks the reporting service (``ReportingServiceManager``: the SDK submits, polls and
downloads) for CSV reports that each cover up to ``REPORT_ACCOUNTS`` accounts:

- a campaign performance report by day: spend (in the account's currency), impressions, clicks and
  conversions per campaign. ``leads`` is the Conversions column (its fractional
  ``ConversionsQualified`` where the account reports it) unless the account's lead definition
  names conversion goals;
- for accounts whose lead definition (``leads``, or ``account_leads`` for the account) names goals,
  the same report by goal: ``leads`` is the sum of the named goals' conversions
  (``AllConversions``: a named goal counts even when it is left out of the Conversions column);
- with ``change_history``: the change history report (``SearchCampaignChangeHistoryReportRequest``:
  who changed which item's attribute, from what to what, with which tool) for the part of the range
  within the six months the service keeps. Each row becomes a canonical change (see
  ``change_rows``); Microsoft Advertising writes each change in its campaign's time zone without
  naming it, and ``changed_at`` keeps that time, so a change falls on the same day as the metrics
  it is compared with;
- with ``ownership_inference``: the account-wide ownership periods that change history implies
  (``anomaly.ownership.infer_ownership``), except for accounts whose ownership the config declares.

Days a report leaves out are zero activity: the service omits rows without activity.

Transient failures (internal errors, the call rate limit, server and network errors, a report that
failed to generate or timed out) are retried with exponential backoff and full jitter (60 seconds
after the call rate limit, as the service asks). A report that fails otherwise for several
accounts is asked for again account by account, so that the failure is pinned on the account at
fault and the others are still pulled; a failing account is reported in ``Batch.failures`` (its
data is missing, not zero). Authentication failures (a refused refresh token, an invalid developer
token) stop the fetch with a message that names what to renew. Only when every account fails does
``fetch`` raise. Errors name the source, the account and Microsoft's tracking id.

Secrets (developer token, client secret, refresh and access tokens) never reach a log or an error:
the SDK's SOAP library logs whole envelopes, token headers included, at DEBUG, and those records
are dropped (``_NoSoapEnvelopes``). User names (emails) are data, not log text: logs carry domains.
"""

from __future__ import annotations

import csv
import datetime as dt
import http.client
import logging
import math
import os
import re
import socket
import tempfile
import time
import urllib.error
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import requests
from bingads.authorization import (
    AuthorizationData,
    OAuthDesktopMobileAuthCodeGrant,
    OAuthTokenRequestException,
    OAuthWebAuthCodeGrant,
)
from bingads.exceptions import FileDownloadException, SdkException
from bingads.service_client import ServiceClient
from bingads.util import DictCache
from bingads.v13.reporting import ReportingServiceManager
from suds import WebFault

from anomaly.config import GoalLeads, MicrosoftAdsSourceConfig
from anomaly.errors import SourceError
from anomaly.schema import DAILY, empty_changes, empty_metrics, normalise_changes, normalise_metrics
from connectors.base import Batch, all_failed, backoff, inferred_ownership

log = logging.getLogger(__name__)

API_VERSION = 13
ENV_PREFIX = "MICROSOFT_ADS_"
REPORT_ACCOUNTS = 1000  # the most accounts one report's scope may name
CHANGE_HISTORY_DAYS = 180  # the change history report keeps six months
POLL_SECONDS = 5.0  # between two polls of a report's status (the SDK's own default)
CALL_RATE_WAIT_SECONDS = 60.0  # code 117: "resubmit the request under the limit after waiting 60 seconds"
REPORT_FORMAT = "Csv"

#: Operation error codes: retried (internal error, call rate exceeded), and those that no other
#: account would pass either (stop the fetch) with what to check.
_RETRIED_CODES = {0, 117}
_CALL_RATE_CODE = 117
_AUTH_HINTS = {
    105: "check the developer token ({developer_token}) and that the refresh token is for the same environment "
    "({environment})",
    109: "the access token expired and could not be renewed: renew the refresh token ({refresh_token})",
}
_ACCESS_HINTS = {
    106: "check that the user who signed in for the refresh token, or the manager customer_id, has access to this "
    "account",
}
#: The accounts a manager's listing pulls (AccountLifeCycleStatus): an account paused by its owner
#: may spend again within the range; drafts, pending, inactive and suspended accounts cannot.
PULLED_ACCOUNT_STATUSES = frozenset({"Active", "Pause"})

METRIC_COLUMNS = (
    "TimePeriod", "AccountId", "AccountName", "CampaignId", "CampaignName", "CurrencyCode",
    "Spend", "Impressions", "Clicks", "Conversions", "ConversionsQualified",
)
GOAL_COLUMNS = (
    "TimePeriod", "AccountId", "AccountName", "CampaignId", "CampaignName", "CurrencyCode",
    "Goal", "AllConversions", "AllConversionsQualified",
)
CHANGE_COLUMNS = (
    "DateTime", "AccountId", "CampaignId", "ChangedBy", "ItemChanged", "AttributeChanged", "HowChanged",
    "OldValue", "NewValue", "Tool",
)
#: What each report is called in messages.
REPORTS = {
    "metrics": "the campaign performance report",
    "goals": "the goal conversions report",
    "changes": "the change history report",
}

#: The change history's HowChanged as a canonical operation.
_OPERATIONS = {"added": "CREATE", "changed": "UPDATE", "deleted": "REMOVE", "removed": "REMOVE"}
#: The user the change history names for a change Microsoft Advertising itself made.
SYSTEM_USER = "Administrator"
CLIENT_TYPE_PREFIX = "MICROSOFT_ADS_"
#: Attributes whose values are amounts of money, written as plain numbers (``1300.00``).
MONEY_ATTRIBUTES = frozenset({
    "Daily budget", "Spend limit", "Broad match bid", "Exact match bid", "Phrase match bid", "Content match bid",
    "Default broad match bid", "Default exact match bid", "Default phrase match bid", "Default content match bid",
})
_VALUE_LIMIT = 60
_CLIENT_TYPE_LENGTH = 40  # the store's column
_EMAIL_USER = re.compile(r"[\w.%+-]+@(?=[\w-]+\.)")
_URL_QUERY = re.compile(r"(https?://[^\s?#'\"]+)\?[^\s'\"]*")
_URL_QUERY_PATH = re.compile(r"(/[^\s?#'\"]*)\?[^\s'\"]*")
_MONEY = re.compile(r"^[^\d-]*(-?[\d,]*\.?\d+)\D*$")

_WSDL_CACHE = DictCache()  # the SDK's WSDLs, parsed once a process for every client


class _NoSoapEnvelopes(logging.Filter):
    """Drops the SOAP library's DEBUG records: they hold whole envelopes, the objects marshalled
    into them and HTTP headers, and with them the developer token and the OAuth access token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def _quiet_soap_library() -> None:
    """suds logs at DEBUG what it sends: its loggers stop at INFO (the "suds" logger's level holds
    for every module of it, loaded now or later), and each one loaded drops DEBUG records too."""
    suds_log = logging.getLogger("suds")
    if suds_log.level < logging.INFO:
        suds_log.setLevel(logging.INFO)
    for name in list(logging.root.manager.loggerDict):
        if name == "suds" or name.startswith("suds."):
            logging.getLogger(name).addFilter(_NoSoapEnvelopes())


class _NoSignedLinks(logging.Filter):
    """Removes the query of a report's download link from urllib3's request lines: it holds the
    link's signature, which lets anyone download the report until it expires."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and any("sig=" in str(arg) for arg in (record.args if isinstance(record.args, tuple) else ())):
            record.msg, record.args = _URL_QUERY_PATH.sub(r"\1?...", record.getMessage()), ()
        return True


_quiet_soap_library()
logging.getLogger("urllib3.connectionpool").addFilter(_NoSignedLinks())


# ----------------------------------------------------------------------------------------------
# clients


@dataclass(frozen=True)
class Credentials:
    """The OAuth app, the user's refresh token and the developer token; ``where`` names the setting
    (or environment variable) each came from, for messages."""

    developer_token: str
    client_id: str
    client_secret: str | None
    refresh_token: str
    where: Mapping[str, str]

    def __repr__(self) -> str:  # never the values
        return f"Credentials(client_id={self.client_id!r})"


def load_credentials(source: MicrosoftAdsSourceConfig, environ: Mapping[str, str] | None = None) -> Credentials:
    """The source's credentials: each setting given in config.yaml (``${VAR}``), else its
    ``MICROSOFT_ADS_*`` environment variable. Raises ``SourceError`` naming what is missing."""
    env = os.environ if environ is None else environ
    values: dict[str, str | None] = {}
    where: dict[str, str] = {}
    for setting in ("developer_token", "client_id", "client_secret", "refresh_token"):
        configured = getattr(source, setting)
        variable = ENV_PREFIX + setting.upper()
        if configured is not None:
            value = configured.get_secret_value() if hasattr(configured, "get_secret_value") else configured
            values[setting], where[setting] = value.strip(), f"{setting} of source {source.name!r}"
        else:
            values[setting], where[setting] = (env.get(variable) or "").strip(), variable
    missing = [where[s] for s in ("developer_token", "client_id", "refresh_token") if not values[s]]
    if missing:
        raise SourceError(source.name, f"no {', '.join(missing)}: set the MICROSOFT_ADS_* environment variables "
                          "(or developer_token, client_id and refresh_token: ${VAR} in the source); "
                          "docs/microsoft-ads.md says where each comes from")
    return Credentials(values["developer_token"] or "", values["client_id"] or "", values["client_secret"] or None,
                       values["refresh_token"] or "", where)


@dataclass
class MicrosoftAdsClients:
    """The SDK's clients for one source, sharing one ``AuthorizationData``: the reporting service
    manager (reports: submit, poll, download) and the customer management service (accounts)."""

    authorization: AuthorizationData
    reporting: ReportingServiceManager
    customers: ServiceClient
    environment: str = "production"


def make_clients(authorization: AuthorizationData, environment: str = "production", **suds_options: Any) -> MicrosoftAdsClients:
    """The SDK's clients for ``authorization``; ``suds_options`` go to every SOAP client (``timeout``,
    or ``location`` to reach another address than Microsoft's)."""
    options = {"cache": _WSDL_CACHE, **suds_options}
    reporting = ReportingServiceManager(authorization, poll_interval_in_milliseconds=int(POLL_SECONDS * 1000),
                                        environment=environment, **options)
    customers = ServiceClient("CustomerManagementService", API_VERSION, authorization, environment, **options)
    return MicrosoftAdsClients(authorization, reporting, customers, environment)


def connect(source: MicrosoftAdsSourceConfig, environ: Mapping[str, str] | None = None, **suds_options: Any) -> MicrosoftAdsClients:
    """Clients signed in with the source's refresh token: the SDK's OAuth code grant for a web app
    (with a client secret) or a desktop app (without), renewed by the SDK when the access token
    expires. Signing in is a network call. Raises ``SourceError`` saying what to renew or set;
    messages never contain credential values."""
    credentials = load_credentials(source, environ)
    if credentials.client_secret:
        authentication = OAuthWebAuthCodeGrant(credentials.client_id, credentials.client_secret, "", env=source.environment)
    else:
        authentication = OAuthDesktopMobileAuthCodeGrant(credentials.client_id, env=source.environment)
    try:
        authentication.request_oauth_tokens_by_refresh_token(credentials.refresh_token)
    except OAuthTokenRequestException as e:
        raise SourceError(source.name, _token_refused(e, credentials, source.environment)) from None
    except (requests.RequestException, ValueError) as e:
        raise SourceError(source.name, f"could not sign in to Microsoft ({type(e).__name__}: {_clean(str(e))}); "
                          "check that login.microsoftonline.com is reachable") from None
    authorization = AuthorizationData(account_id=None, customer_id=source.customer_id,
                                      developer_token=credentials.developer_token, authentication=authentication)
    return make_clients(authorization, source.environment, timeout=source.timeout_seconds, **suds_options)


def _token_refused(error: OAuthTokenRequestException, credentials: Credentials, environment: str) -> str:
    code = (error.error_code or "").strip()
    said = f"{code}: {_clean(error.error_description or '')}".rstrip(": ")
    if code == "invalid_grant":
        return (f"Microsoft's sign-in refused the refresh token ({said}): it has expired, been revoked or was issued to "
                f"another app or environment ({environment}). Renew {credentials.where['refresh_token']}: sign in again "
                "as a user with access to the accounts and copy the new refresh token (docs/microsoft-ads.md)")
    if code in ("invalid_client", "unauthorized_client"):
        return (f"Microsoft's sign-in refused the app ({said}): check {credentials.where['client_id']} and "
                f"{credentials.where['client_secret']}")
    return f"Microsoft's sign-in refused the refresh token ({said}): check {credentials.where['refresh_token']}"


# ----------------------------------------------------------------------------------------------
# connector


@dataclass(frozen=True)
class _Job:
    """One report: its kind (``REPORTS``) and the accounts it covers."""

    kind: str
    accounts: tuple[str, ...]


@dataclass(frozen=True)
class _Failure:
    reason: str
    tracking_id: str | None = None
    retry: bool = False
    fatal: bool = False  # no account would pass: stop the fetch
    delay: float | None = None  # seconds the service asked to wait


@dataclass
class _Round:
    """What became of each job of one round of reports."""

    frames: dict[_Job, pd.DataFrame] = field(default_factory=dict)
    failures: dict[_Job, _Failure] = field(default_factory=dict)


class MicrosoftAdsConnector:
    """Daily campaign metrics, leads, change history and inferred ownership from Microsoft Advertising.

    ``domains`` maps email domains to party keys (``anomaly.ownership.domain_map``);
    ``declared_accounts`` are the accounts whose ownership the config declares, which inference
    leaves alone. ``clients`` (``MicrosoftAdsClients``) are signed in from ``source`` on the first
    fetch when not given; ``sleep`` waits between polls and retries; ``today`` bounds the change
    history's window; ``workdir`` is where reports are downloaded (a temporary folder by default).
    """

    def __init__(
        self,
        source: MicrosoftAdsSourceConfig,
        domains: dict[str, str],
        *,
        declared_accounts: Set[str] = frozenset(),
        clients: MicrosoftAdsClients | None = None,
        sleep: Callable[[float], None] = time.sleep,
        today: Callable[[], dt.date] | None = None,
        environ: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ):
        self.name = source.name
        self.source = source
        self.domains = domains
        self.declared_accounts = declared_accounts
        self._clients = clients
        self._sleep = sleep
        self._today = today or dt.date.today
        self._environ = environ
        self._workdir = workdir

    def fetch(self, start: dt.date, end: dt.date) -> Batch:
        """Every account's metrics dated ``start``..``end`` (inclusive), the changes made on those
        days (within the last six months) and the ownership they imply. Raises ``SourceError`` when
        signing in or listing the accounts fails, on an authentication failure, or when every
        account fails; otherwise the failed accounts are in ``failures``."""
        clients = self._clients or self._connect()
        accounts = self._accounts(clients)
        since = max(start, self._today() - dt.timedelta(days=CHANGE_HISTORY_DAYS - 1))
        jobs = self._jobs(accounts, with_changes=self.source.change_history and since <= end)
        with tempfile.TemporaryDirectory(prefix="microsoft-ads-", dir=self._workdir) as folder:
            frames, failed = self._run(clients, jobs, start, end, since, folder)
        pulled = [a for a in accounts if a not in failed]
        failures = [failed[a] for a in accounts if a in failed]
        if not pulled:
            raise all_failed(self.name, failures)
        metrics = self._metrics(frames, set(pulled))
        changes = self._changes(frames, set(pulled), since, end)
        log.info("%s: pulled %d of %d accounts, %s to %s: %d campaign-days, %d changes by users of %s",
                 self.name, len(pulled), len(accounts), start, end, len(metrics), len(changes),
                 ", ".join(_domains(changes["user_email"])) or "(none)")
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

    def _connect(self) -> MicrosoftAdsClients:
        self._clients = connect(self.source, self._environ)
        return self._clients

    def _accounts(self, clients: MicrosoftAdsClients) -> list[str]:
        excluded = set(self.source.exclude_account_ids)
        listed = self.source.account_ids or self._customer_accounts(clients)
        accounts = [a for a in dict.fromkeys(listed) if a not in excluded]
        if accounts:
            return accounts
        if self.source.account_ids:
            raise SourceError(self.name, "no accounts to pull: every account of account_ids is excluded")
        raise SourceError(self.name, "no accounts to pull: the manager customer has no active or paused accounts "
                          "outside exclude_account_ids", account_id=self.source.customer_id)

    def _customer_accounts(self, clients: MicrosoftAdsClients) -> list[str]:
        """The active and paused accounts that the manager ``customer_id`` reaches."""
        customer = self.source.customer_id
        assert customer is not None  # the config requires it when account_ids is empty
        attempt = 1
        while True:
            try:
                answer = clients.customers.GetAccountsInfo(CustomerId=int(customer), OnlyParentAccounts=False)
                break
            except Exception as e:  # noqa: BLE001 - sorted by _diagnose; anything else is re-raised
                failure = self._diagnose(e)
                if failure.fatal or not failure.retry or attempt >= self.source.max_attempts:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise SourceError(self.name, f"listing the manager's accounts failed{tries}: {failure.reason}",
                                      account_id=None if failure.fatal else customer,
                                      request_id=failure.tracking_id) from None
                self._sleep(failure.delay if failure.delay is not None else backoff(attempt))
                attempt += 1
        infos = _items(answer, "AccountInfo")
        return [str(info.Id) for info in infos if str(getattr(info, "AccountLifeCycleStatus", "")) in PULLED_ACCOUNT_STATUSES]

    def _definition(self, account: str) -> GoalLeads:
        return self.source.account_leads.get(account, self.source.leads)

    def _jobs(self, accounts: Sequence[str], *, with_changes: bool) -> list[_Job]:
        jobs = []
        for i in range(0, len(accounts), REPORT_ACCOUNTS):
            chunk = tuple(accounts[i : i + REPORT_ACCOUNTS])
            jobs.append(_Job("metrics", chunk))
            by_goal = tuple(a for a in chunk if self._definition(a).goals)
            if by_goal:
                jobs.append(_Job("goals", by_goal))
            if with_changes:
                jobs.append(_Job("changes", chunk))
        return jobs

    # -- reports

    def _run(self, clients: MicrosoftAdsClients, jobs: list[_Job], start: dt.date, end: dt.date, since: dt.date,
             folder: str) -> tuple[dict[_Job, pd.DataFrame], dict[str, SourceError]]:
        """Every job's report as a frame, round after round: a job that failed for a transient
        reason is tried again (up to ``max_attempts``), one that failed otherwise for several
        accounts is split into one job per account. Returns the frames and the failure of each
        account that could not be pulled; raises ``SourceError`` on a failure no account passes."""
        frames: dict[_Job, pd.DataFrame] = {}
        failed: dict[str, SourceError] = {}
        attempts: dict[_Job, int] = {}
        queue = list(jobs)
        while queue:
            outcome = self._round(clients, queue, start, end, since, folder)
            frames.update(outcome.frames)
            queue, waits = [], []
            for job, failure in outcome.failures.items():
                attempts[job] = attempt = attempts.get(job, 0) + 1
                what = REPORTS[job.kind]
                if failure.fatal:
                    raise SourceError(self.name, f"{what} failed: {failure.reason}", request_id=failure.tracking_id)
                if failure.retry and attempt < self.source.max_attempts:
                    delay = failure.delay if failure.delay is not None else backoff(attempt)
                    log.warning("%s: %s of %s failed (%s, tracking id %s); retrying in %.1f s (attempt %d of %d)",
                                self.name, what, _accounts_text(job.accounts), failure.reason,
                                failure.tracking_id or "none", delay, attempt + 1, self.source.max_attempts)
                    queue.append(job)
                    waits.append(delay)
                    continue
                if len(job.accounts) > 1 and not failure.retry:
                    log.warning("%s: %s of %s failed (%s, tracking id %s); asking for it account by account",
                                self.name, what, _accounts_text(job.accounts), failure.reason, failure.tracking_id or "none")
                    queue.extend(_Job(job.kind, (account,)) for account in job.accounts)
                    continue
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                for account in job.accounts:
                    error = SourceError(self.name, f"{what} failed{tries}: {failure.reason}", account_id=account,
                                        request_id=failure.tracking_id)
                    log.warning("%s", error)
                    failed.setdefault(account, error)
            if queue and waits:
                self._sleep(max(waits))
        return frames, failed

    def _round(self, clients: MicrosoftAdsClients, jobs: list[_Job], start: dt.date, end: dt.date, since: dt.date,
               folder: str) -> _Round:
        """Submit every job's report, poll them all until each is done, and read each one's file."""
        outcome = _Round()
        operations: dict[_Job, Any] = {}
        for job in jobs:
            first = since if job.kind == "changes" else start
            try:
                clients.authorization.account_id = job.accounts[0]
                request = _report_request(clients.reporting.service_client.factory, job, first, end)
                operations[job] = clients.reporting.submit_download(request)
            except Exception as e:  # noqa: BLE001 - sorted by _diagnose; anything else is re-raised
                outcome.failures[job] = self._diagnose(e)
        polls = 0
        most_polls = max(1, math.ceil(self.source.timeout_seconds / POLL_SECONDS))
        pending = dict(operations)
        while pending:
            for job, operation in list(pending.items()):
                try:
                    status = operation.get_status()
                except Exception as e:  # noqa: BLE001
                    outcome.failures[job] = self._diagnose(e, operation)
                    del pending[job]
                    continue
                if status.status == "Pending":
                    continue
                del pending[job]
                if status.status != "Success":
                    outcome.failures[job] = _Failure(
                        f"the service could not generate the report (status {status.status}, report request "
                        f"{_short(str(operation.request_id))})", operation.tracking_id, retry=True)
                    continue
                try:
                    outcome.frames[job] = self._download(operation, job, len(outcome.frames), folder)
                except Exception as e:  # noqa: BLE001
                    outcome.failures[job] = self._diagnose(e, operation)
            if not pending:
                break
            polls += 1
            if polls >= most_polls:
                for job, operation in pending.items():
                    outcome.failures[job] = _Failure(
                        f"the report was not ready after {self.source.timeout_seconds:g} s (timeout_seconds; report "
                        f"request {_short(str(operation.request_id))})", operation.tracking_id, retry=True)
                break
            self._sleep(POLL_SECONDS)
        return outcome

    def _download(self, operation: Any, job: _Job, number: int, folder: str) -> pd.DataFrame:
        """The report's rows, read (``_READERS``); none when the service has no data for it."""
        columns, reader = _READERS[job.kind]
        path = operation.download_result_file(
            result_file_directory=folder,
            result_file_name=f"{job.kind}-{number}.csv",  # the service's report id is no safe file name
            decompress=True,
            overwrite=True,
            timeout_in_milliseconds=int(self.source.timeout_seconds * 1000),
        )
        if path is None:  # Success without a download URL: no data for the accounts and days asked for
            return reader(_empty(columns))
        try:
            return reader(read_report(path, columns))
        finally:
            os.remove(path)

    # -- frames

    def _metrics(self, frames: Mapping[_Job, pd.DataFrame], pulled: set[str]) -> pd.DataFrame:
        """Canonical daily metrics of the pulled accounts: the performance report's rows, whose
        leads are the conversions of the named goals in an account whose lead definition names any."""
        performance = _concat([f for job, f in frames.items() if job.kind == "metrics"], _empty_metric_rows())
        by_goal = _concat([f for job, f in frames.items() if job.kind == "goals"], _empty_metric_rows(goal=True))
        goal_accounts = {a for a in pulled if self._definition(a).goals}
        performance = performance[performance["account_id"].isin(pulled)].copy()
        performance.loc[performance["account_id"].isin(goal_accounts), "leads"] = 0.0
        goals = {account: self._goals(account) for account in goal_accounts}
        counted = [goal.strip().casefold() in goals.get(account, ()) for account, goal in zip(by_goal["account_id"], by_goal["goal"])]
        leads = by_goal[np.array(counted, dtype=bool)].drop(columns="goal")
        return _daily_totals(pd.concat([performance, leads], ignore_index=True))

    def _goals(self, account: str) -> set[str]:
        return {goal.strip().casefold() for goal in self._definition(account).goals}

    def _changes(self, frames: Mapping[_Job, pd.DataFrame], pulled: set[str], since: dt.date, end: dt.date) -> pd.DataFrame:
        changes = _concat([f for job, f in frames.items() if job.kind == "changes"], change_rows(_empty(CHANGE_COLUMNS)))
        in_range = (changes["account_id"].isin(pulled) & (changes["changed_at"] >= pd.Timestamp(since))
                    & (changes["changed_at"] < pd.Timestamp(end + dt.timedelta(days=1))))
        return changes[in_range].sort_values(["account_id", "changed_at"], kind="stable", ignore_index=True)

    def _ownership(self, changes: pd.DataFrame) -> pd.DataFrame:
        return inferred_ownership(
            self.name, changes, self.source.ownership_inference, self.domains, self.declared_accounts, log
        )

    # -- errors

    def _diagnose(self, error: Exception, operation: Any = None) -> _Failure:
        """What went wrong, whether to retry, and whether no other account would pass either."""
        tracking = getattr(operation, "tracking_id", None)
        if isinstance(error, WebFault):
            return self._fault(error, tracking)
        if isinstance(error, OAuthTokenRequestException):
            credentials = _where(self.source)
            return _Failure(_token_refused(error, credentials, self.source.environment), tracking, fatal=True)
        if isinstance(error, requests.HTTPError):
            status = error.response.status_code if error.response is not None else None
            return _Failure(f"downloading the report failed: HTTP {status}", tracking, retry=_transient_status(status))
        if isinstance(error, (requests.RequestException, FileDownloadException, urllib.error.URLError, socket.timeout,
                              ConnectionError, TimeoutError, http.client.HTTPException, zipfile.BadZipFile)):
            return _Failure(f"{type(error).__name__}: {_clean(str(error))}", tracking, retry=True)
        if isinstance(error, _ReportError):
            return _Failure(str(error), tracking)
        status = _soap_status(error)
        if status is not None:  # the SOAP library's answer to an HTTP error without a SOAP fault
            return _Failure(f"HTTP {status[0]} {_clean(str(status[1]))}", tracking, retry=_transient_status(status[0]))
        if isinstance(error, SdkException):
            return _Failure(f"{type(error).__name__}: {_clean(str(error))}", tracking)
        raise error

    def _fault(self, error: WebFault, tracking: str | None) -> _Failure:
        detail = getattr(error.fault, "detail", None)
        errors: list[tuple[int, str, str]] = []
        for kind, array, item in (("AdApiFaultDetail", "Errors", "AdApiError"),
                                  ("ApiFaultDetail", "OperationErrors", "OperationError"),
                                  ("ApiFaultDetail", "BatchErrors", "BatchError"),
                                  ("ApiFault", "OperationErrors", "OperationError")):
            fault = getattr(detail, kind, None)
            if fault is None:
                continue
            tracking = str(getattr(fault, "TrackingId", "") or "") or tracking
            for entry in _items(getattr(fault, array, None), item):
                errors.append((_int(getattr(entry, "Code", None)), str(getattr(entry, "ErrorCode", "") or ""),
                               _clean(str(getattr(entry, "Message", "") or ""))))
        if not errors:
            return _Failure(f"SOAP fault: {_clean(str(getattr(error.fault, 'faultstring', error)))}", tracking)
        codes = {code for code, _, _ in errors}
        reasons = "; ".join(f"{code} {name}: {message}".rstrip(": ") for code, name, message in errors)
        credentials = _where(self.source)
        hints = [_AUTH_HINTS[c].format(**credentials.where, environment=self.source.environment) for c in sorted(codes & set(_AUTH_HINTS))]
        hints += [_ACCESS_HINTS[c] for c in sorted(codes & set(_ACCESS_HINTS))]
        reason = reasons + "".join(f" ({hint})" for hint in hints)
        if codes & set(_AUTH_HINTS):
            return _Failure(reason, tracking, fatal=True)
        delay = CALL_RATE_WAIT_SECONDS if _CALL_RATE_CODE in codes else None
        return _Failure(reason, tracking, retry=codes <= _RETRIED_CODES, delay=delay)


# ----------------------------------------------------------------------------------------------
# report requests and files


class _ReportError(Exception):
    """A report file this connector cannot read."""


def _report_request(factory: Any, job: _Job, start: dt.date, end: dt.date) -> Any:
    """The report request of ``job`` for ``start``..``end``, built from the SDK's own types."""
    if job.kind == "changes":
        request = factory.create("SearchCampaignChangeHistoryReportRequest")
        request.Columns.SearchCampaignChangeHistoryReportColumn = list(CHANGE_COLUMNS)
        request.Scope.AdGroups = None
    else:
        request = factory.create("CampaignPerformanceReportRequest")
        request.Aggregation = "Daily"
        columns = METRIC_COLUMNS if job.kind == "metrics" else GOAL_COLUMNS
        request.Columns.CampaignPerformanceReportColumn = list(columns)
    request.Scope.AccountIds = {"long": [int(account) for account in job.accounts]}
    request.Scope.Campaigns = None
    request.Filter = None
    request.Format = REPORT_FORMAT
    request.ReportName = f"anomaly {job.kind}"
    request.ExcludeReportHeader = True
    request.ExcludeReportFooter = True
    request.ExcludeColumnHeaders = False
    request.ReturnOnlyCompleteData = False  # today's data is incomplete, and asked for
    for bound, day in (("CustomDateRangeStart", start), ("CustomDateRangeEnd", end)):
        date = getattr(request.Time, bound)
        date.Day, date.Month, date.Year = day.day, day.month, day.year
    request.Time.PredefinedTime = None
    request.Time.ReportTimeZone = None
    return request


def read_report(path: str, columns: Sequence[str]) -> pd.DataFrame:
    """A downloaded CSV report's rows as text, in ``columns``. The report's header lines (when the
    file has them: the connector asks for none), the copyright footer and a "Total" row are
    skipped. Raises ``_ReportError`` when a column is missing."""
    header = _header_line(path, columns)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skiprows=header,
                            skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        return _empty(columns)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise _ReportError(f"the report file could not be read: {type(e).__name__}: {_clean(str(e))}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise _ReportError(f"the report has no column {', '.join(missing)} (it has {', '.join(map(str, frame.columns[:12]))})")
    frame = frame[list(columns)]
    first = frame[columns[0]].str.strip()
    footer = first.str.startswith("\u00a9") | first.str.startswith("Total") | (first == "")
    return frame[~footer].reset_index(drop=True)


def _header_line(path: str, columns: Sequence[str], most: int = 50) -> int:
    """How many lines come before the column names (0 when they are not among the first ``most``)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            for number, row in enumerate(csv.reader(file)):
                if number >= most:
                    break
                if columns[0] in row and columns[-1] in row:
                    return number
    except (UnicodeDecodeError, csv.Error):
        pass
    return 0


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _concat(frames: Sequence[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty


def metric_rows(report: pd.DataFrame) -> pd.DataFrame:
    """Campaign performance report rows (``METRIC_COLUMNS``, as text) in canonical metric columns;
    ``leads`` the Conversions column (its fractional ``ConversionsQualified`` where reported)."""
    return pd.DataFrame({
        **_campaign_day(report),
        "spend": _numbers(report["Spend"]),
        "impressions": _numbers(report["Impressions"]),
        "clicks": _numbers(report["Clicks"]),
        "leads": _conversions(report["ConversionsQualified"], report["Conversions"]),
    })


def goal_rows(report: pd.DataFrame) -> pd.DataFrame:
    """Campaign performance report rows by goal (``GOAL_COLUMNS``) as canonical metric columns
    holding the goal's conversions (``AllConversions``) as ``leads``, and the ``goal``."""
    rows = pd.DataFrame({
        **_campaign_day(report),
        "spend": 0.0,
        "impressions": 0.0,
        "clicks": 0.0,
        "leads": _conversions(report["AllConversionsQualified"], report["AllConversions"]),
        "goal": report["Goal"],
    })
    return rows[rows["goal"].str.strip() != ""]


def _campaign_day(report: pd.DataFrame) -> dict[str, pd.Series]:
    """The canonical columns that say which campaign's day a report row is."""
    return {
        "date": _dates(report["TimePeriod"]),
        "account_id": report["AccountId"].str.strip(),
        "account_name": report["AccountName"],
        "campaign_id": report["CampaignId"].str.strip(),
        "campaign_name": report["CampaignName"],
        "currency": report["CurrencyCode"].str.strip(),
    }


def _empty_metric_rows(goal: bool = False) -> pd.DataFrame:
    return goal_rows(_empty(GOAL_COLUMNS)) if goal else metric_rows(_empty(METRIC_COLUMNS))


def _dates(text: pd.Series) -> pd.Series:
    """Report days (``2026-07-06``, or ``7/6/2026`` as some reports write them)."""
    days = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    if days.isna().any():
        days = days.fillna(pd.to_datetime(text[days.isna()], format="%m/%d/%Y", errors="coerce"))
    if days.isna().any():
        raise _ReportError(f"the report has a day that is not a date: {_short(text[days.isna()].iloc[0])}")
    return days


def _numbers(text: pd.Series) -> pd.Series:
    """Report numbers as floats: ``--`` (not applicable) and empty cells are 0, ``1,234.50`` and
    ``12.5%`` are read as numbers."""
    numbers = pd.to_numeric(text, errors="coerce")
    odd = numbers.isna()
    if odd.any():
        cleaned = text[odd].str.replace(",", "", regex=False).str.rstrip("%").str.strip()
        numbers[odd] = pd.to_numeric(cleaned, errors="coerce")
    return numbers.fillna(0.0).astype("float64")


def _conversions(qualified: pd.Series, whole: pd.Series) -> pd.Series:
    """The fractional ``...Qualified`` column where the account reports it, else the whole-number one."""
    present = qualified.str.strip().ne("") & qualified.str.strip().ne("--")
    return _numbers(qualified).where(present, _numbers(whole))


def _daily_totals(rows: pd.DataFrame) -> pd.DataFrame:
    """Canonical daily metrics: one row per (account, campaign, day), summed."""
    if rows.empty:
        return empty_metrics()
    key = ["account_id", "campaign_id", "date"]
    totals = rows.groupby(key, sort=True, as_index=False).agg(
        account_name=("account_name", "first"), campaign_name=("campaign_name", "first"), currency=("currency", "first"),
        spend=("spend", "sum"), impressions=("impressions", "sum"), clicks=("clicks", "sum"), leads=("leads", "sum"),
    )
    totals["hour"] = DAILY
    totals["impressions"] = totals["impressions"].round().astype("int64")
    totals["clicks"] = totals["clicks"].round().astype("int64")
    return normalise_metrics(totals)


# ----------------------------------------------------------------------------------------------
# change history


def change_rows(history: pd.DataFrame) -> pd.DataFrame:
    """Change history report rows (``CHANGE_COLUMNS``, as text) as canonical changes, with
    ``local_day`` (the campaign's own day), oldest first.

    ``resource_type`` is the item changed (``Campaign`` → ``CAMPAIGN``, ``Ad group`` → ``AD_GROUP``),
    ``operation`` CREATE, UPDATE or REMOVE, and ``changed_fields`` the attribute with its old and new
    values as the report names them (``Daily budget: 1300.00 -> 2500.00``, ``Status: Active ->
    Paused``; amounts of money as plain numbers, an empty value as ``(empty)``), or for an item
    added or deleted as a whole, the item and its value (``Keyword: running shoes``). Rows alike in
    everything but the item they changed (one edit to 38 keywords) become one change noted
    ``(38 keywords)``. ``user_email`` is the user the report names; ``client_type`` the tool
    (``MICROSOFT_ADS_WEB_CLIENT_MANUAL``, ``MICROSOFT_ADS_AUTOMATED_RULES`` ...), or
    ``MICROSOFT_ADS_SYSTEM`` for a change Microsoft Advertising made itself."""
    columns = [*empty_changes().columns, "local_day"]
    if history.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    rows = []
    times = _change_times(history["DateTime"])
    for when, row in zip(times, history.itertuples(index=False)):
        item = row.ItemChanged.strip()
        operation = _OPERATIONS.get(row.HowChanged.strip().lower(), row.HowChanged.strip().upper())
        user = row.ChangedBy.strip()
        rows.append((
            when, row.AccountId.strip(), row.CampaignId.strip(), user,
            _client_type(row.Tool, user), _resource_type(item), operation,
            _changed_fields(item, row.AttributeChanged.strip(), operation, row.OldValue, row.NewValue), item,
        ))
    frame = pd.DataFrame(rows, columns=[*empty_changes().columns, "item"])
    key = list(empty_changes().columns)
    grouped = frame.groupby(key, sort=False, as_index=False).agg(count=("item", "size"), item=("item", "first"))
    many = grouped["count"] > 1
    grouped.loc[many, "changed_fields"] = [f"{fields} ({n} {_plural(item)})" for fields, n, item in
                                           zip(grouped.loc[many, "changed_fields"], grouped.loc[many, "count"], grouped.loc[many, "item"])]
    grouped = grouped.sort_values(["account_id", "changed_at"], kind="stable", ignore_index=True)
    grouped["local_day"] = grouped["changed_at"].dt.normalize()
    return grouped[columns]


_CHANGE_TIME_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y")


def _change_times(text: pd.Series) -> list[pd.Timestamp]:
    """The change history's times: the report's own form (``7/8/2026 3:41:07 PM``) read at once,
    any other row one by one (``_change_time``)."""
    times = pd.to_datetime(text.str.strip(), format=_CHANGE_TIME_FORMATS[0], errors="coerce")
    return [when if not pd.isna(when) else _change_time(raw) for when, raw in zip(times, text)]


def _change_time(text: str) -> pd.Timestamp:
    value = text.strip()
    try:
        return pd.Timestamp(dt.datetime.fromisoformat(value.replace("Z", ""))).tz_localize(None)
    except ValueError:
        pass
    for form in _CHANGE_TIME_FORMATS:
        try:
            return pd.Timestamp(dt.datetime.strptime(value, form))
        except ValueError:
            continue
    raise _ReportError(f"the change history has a time that is not a date and time: {_short(value)}")


def _resource_type(item: str) -> str:
    """``Ad group`` → ``AD_GROUP``: the item changed, as the canonical frame writes resource types."""
    return re.sub(r"[^A-Z0-9]+", "_", item.upper()).strip("_")


def _client_type(tool: str, user: str) -> str:
    if user == SYSTEM_USER:
        return CLIENT_TYPE_PREFIX + "SYSTEM"
    name = re.sub(r"[^A-Z0-9]+", "_", tool.strip().upper()).strip("_")
    return (CLIENT_TYPE_PREFIX + name)[:_CLIENT_TYPE_LENGTH] if name else ""


def _changed_fields(item: str, attribute: str, operation: str, old: str, new: str) -> str:
    if not attribute:  # an item added or deleted as a whole: the report gives it as the value
        value = new if operation == "CREATE" else old
        return f"{item or 'Item'}: {_value(attribute, value)}"
    if operation in ("CREATE", "REMOVE") and not (old.strip() and new.strip()):
        return f"{attribute}: {_value(attribute, new if operation == 'CREATE' else old)}"
    return f"{attribute}: {_value(attribute, old)} -> {_value(attribute, new)}"


def _value(attribute: str, text: str) -> str:
    value = " ".join(str(text).split())
    if not value:
        return "(empty)"
    if attribute in MONEY_ATTRIBUTES:
        match = _MONEY.match(value)
        if match:
            return f"{float(match.group(1).replace(',', '')):.2f}"
    return _short(value)


def _plural(item: str) -> str:
    word = (item or "item").lower()
    return word if word.endswith("s") else word + "s"


#: Each report's columns and what reads its rows.
_READERS: dict[str, tuple[Sequence[str], Callable[[pd.DataFrame], pd.DataFrame]]] = {
    "metrics": (METRIC_COLUMNS, metric_rows),
    "goals": (GOAL_COLUMNS, goal_rows),
    "changes": (CHANGE_COLUMNS, change_rows),
}


# ----------------------------------------------------------------------------------------------
# helpers


def _items(array: Any, name: str) -> list[Any]:
    """The items of a SOAP array (``ArrayOfAccountInfo.AccountInfo``): none, one or a list."""
    items = getattr(array, name, None) if array is not None else None
    if items is None:
        return []
    return list(items) if isinstance(items, (list, tuple)) else [items]


def _where(source: MicrosoftAdsSourceConfig) -> Credentials:
    """Where each credential of ``source`` comes from, without reading any value."""
    where = {}
    for setting in ("developer_token", "client_id", "client_secret", "refresh_token"):
        given = getattr(source, setting) is not None
        where[setting] = f"{setting} of source {source.name!r}" if given else ENV_PREFIX + setting.upper()
    return Credentials("", "", None, "", where)


def _soap_status(error: Exception) -> tuple[int, Any] | None:
    """(HTTP status, description) of the SOAP library's ``Exception((status, description))``."""
    if type(error) is Exception and len(error.args) == 1 and isinstance(error.args[0], tuple) and len(error.args[0]) == 2:
        status, description = error.args[0]
        if isinstance(status, int):
            return status, description
    return None


def _transient_status(status: int | None) -> bool:
    return status is not None and (status == 429 or status >= 500)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _clean(text: str) -> str:
    """``text`` without URL query strings (a report's download link carries its signature) and with
    the user part of any email masked (messages can quote a user)."""
    return _EMAIL_USER.sub("...@", _URL_QUERY.sub(r"\1?...", text))


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 3] + "..."


def _domains(users: Iterable[str]) -> list[str]:
    return sorted({user.rpartition("@")[2].lower() for user in users if "@" in user})


def _accounts_text(accounts: Sequence[str]) -> str:
    return f"account {accounts[0]}" if len(accounts) == 1 else f"{len(accounts)} accounts"
