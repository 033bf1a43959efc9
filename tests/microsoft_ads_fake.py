"""A fake Microsoft Advertising on 127.0.0.1: the SOAP services the connector calls, the report
downloads and the OAuth token endpoint, for the real ``bingads`` SDK to talk to.

The SDK's clients reach it through suds' ``location`` option (``fake.clients()``); everything
between the connector and the socket is the SDK's own: its request objects, SOAP envelopes and
headers, its polling and its report download (a zip holding the CSV, as the service gives it).
The fake reads each request's envelope (operation, report type, columns, scope, dates, headers)
and answers with SOAP responses and faults shaped like the service's, which suds turns into the
SDK's objects and ``WebFault`` errors.

Data is added per account (``add_metrics``, ``add_goal``, ``add_change``); failures are queued per
report kind and account (``fail``) or for the account listing (``fail_listing``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from bingads.authorization import AuthorizationData, OAuthDesktopMobileAuthCodeGrant, OAuthTokens

from connectors.microsoft_ads import MicrosoftAdsClients, make_clients

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
REPORTING = "https://bingads.microsoft.com/Reporting/v13"
CUSTOMER = "https://bingads.microsoft.com/Customer/v13"
ENTITIES = "https://bingads.microsoft.com/Customer/v13/Entities"
ADAPI = "https://adapi.microsoft.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ARRAYS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
DEVELOPER_TOKEN = "dev-T0KEN-4f2a9c"
ACCESS_TOKEN = "access-T0KEN-7e1b3d"
REFRESH_TOKEN = "refresh-T0KEN-91c5aa"
KINDS = {"CampaignPerformanceReportRequest": "metrics", "SearchCampaignChangeHistoryReportRequest": "changes"}


@dataclass
class Account:
    name: str
    currency: str = "USD"
    status: str = "Active"
    number: str = "F1234567"


@dataclass
class Fault:
    """A SOAP fault: ``AdApiFaultDetail`` (authentication, throttling) or ``ApiFaultDetail``
    (the operation's own errors), as the service sends them with HTTP 500."""

    code: int
    error_code: str
    message: str = "The operation failed."
    detail: str = "AdApi"
    tracking_id: str = "trk-fault"


@dataclass
class HttpError:
    """An HTTP error without a SOAP fault (a gateway's 503)."""

    status: int


@dataclass
class GenerationError:
    """The report is submitted, and its poll says Error."""


@dataclass
class Pending:
    """The report is submitted, and its poll says Pending this many times first."""

    polls: int


@dataclass
class DownloadError:
    """The report is ready, and its download answers this HTTP status."""

    status: int


@dataclass
class Report:
    id: str
    kind: str
    accounts: list[str]
    columns: list[str]
    body: bytes | None  # the zip; None when there is no data (no download URL)
    pending: int = 0
    error: Any = None


@dataclass
class Call:
    operation: str
    kind: str
    accounts: list[str]
    headers: dict[str, str]
    request: ET.Element | None = None


@dataclass
class FakeMicrosoftAds:
    accounts: dict[str, Account] = field(default_factory=dict)
    metrics: dict[str, list[tuple]] = field(default_factory=dict)
    goals: dict[str, list[tuple]] = field(default_factory=dict)
    changes: dict[str, list[dict]] = field(default_factory=dict)
    errors: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    listing_errors: list[Any] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    reports: dict[str, Report] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    refresh_tokens: set[str] = field(default_factory=lambda: {REFRESH_TOKEN})
    tracking: int = 0
    url: str = ""

    # -- data

    def account(self, account_id: str, name: str = "", **kw: Any) -> None:
        self.accounts[account_id] = Account(name or f"Account {account_id}", **kw)

    def add_metrics(self, account: str, day: str, campaign: str, spend: float, clicks: int, impressions: int = 100,
                    conversions: float = 0.0, qualified: bool = True) -> None:
        """A campaign's day; ``qualified=False`` leaves ConversionsQualified empty, as for an
        account without fractional conversions."""
        self.metrics.setdefault(account, []).append((day, campaign, spend, clicks, impressions, conversions, qualified))

    def add_goal(self, account: str, day: str, campaign: str, goal: str, conversions: float) -> None:
        self.goals.setdefault(account, []).append((day, campaign, goal, conversions))

    def add_change(self, account: str, when: str, user: str, *, item: str = "Campaign", attribute: str = "Status",
                   how: str = "Changed", old: str = "Active", new: str = "Paused", campaign: str = "111",
                   tool: str = "Web client (manual)") -> None:
        """A change history row; ``when`` as ``2026-07-08 10:00:00`` (written as the report does)."""
        moment = dt.datetime.fromisoformat(when)
        self.changes.setdefault(account, []).append({
            "DateTime": f"{moment.month}/{moment.day}/{moment.year} {moment:%I:%M:%S %p}", "AccountId": account,
            "CampaignId": campaign, "ChangedBy": user, "ItemChanged": item, "AttributeChanged": attribute,
            "HowChanged": how, "OldValue": old, "NewValue": new, "Tool": tool, "_when": moment,
        })

    def fail(self, kind: str, account: str, *errors: Any) -> None:
        """Fail the next submissions of a ``kind`` report (metrics, goals, changes) whose scope holds ``account``."""
        self.errors.setdefault((kind, account), []).extend(errors)

    def fail_listing(self, *errors: Any) -> None:
        self.listing_errors.extend(errors)

    def submitted(self, kind: str) -> list[list[str]]:
        """The accounts of each ``kind`` report submitted, in order."""
        return [c.accounts for c in self.calls if c.operation == "SubmitGenerateReport" and c.kind == kind]

    # -- clients

    def clients(self, customer_id: str | None = None, **options: Any) -> MicrosoftAdsClients:
        """The SDK's clients, signed in (an access token already held), reaching this fake."""
        authentication = OAuthDesktopMobileAuthCodeGrant("client-id", oauth_tokens=OAuthTokens(ACCESS_TOKEN, 3600, REFRESH_TOKEN))
        authorization = AuthorizationData(account_id=None, customer_id=customer_id, developer_token=DEVELOPER_TOKEN,
                                          authentication=authentication)
        return make_clients(authorization, location=f"{self.url}/soap", timeout=10, **options)

    # -- the services

    def soap(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        envelope = ET.fromstring(body)
        soap_headers = {_local(e.tag): (e.text or "") for e in envelope.find(f"{{{SOAP}}}Header") or []}
        request = next(iter(envelope.find(f"{{{SOAP}}}Body")))
        operation = _local(request.tag).removesuffix("Request")
        if operation == "SubmitGenerateReport":
            return self._submit(request, soap_headers)
        if operation == "PollGenerateReport":
            return self._poll(request, soap_headers)
        if operation == "GetAccountsInfo":
            return self._accounts_info(request, soap_headers)
        raise AssertionError(f"the fake does not serve {operation}")

    def _next_tracking(self) -> str:
        self.tracking += 1
        return f"trk-{self.tracking}"

    def _submit(self, request: ET.Element, headers: dict[str, str]) -> tuple[int, bytes]:
        report = request.find(f"{{{REPORTING}}}ReportRequest")
        kind = KINDS[_local(report.get(f"{{{XSI}}}type", ""))]
        columns = [c.text for c in report.find(f"{{{REPORTING}}}Columns")]
        if kind == "metrics" and "Goal" in columns:
            kind = "goals"
        accounts = [a.text for a in report.find(f"{{{REPORTING}}}Scope/{{{REPORTING}}}AccountIds")]
        self.calls.append(Call("SubmitGenerateReport", kind, accounts, headers, report))
        error = next((self.errors[(kind, a)].pop(0) for a in accounts if self.errors.get((kind, a))), None)
        if isinstance(error, Fault):
            return _fault(error, REPORTING)
        if isinstance(error, HttpError):
            return error.status, b"<html>Service Unavailable</html>"
        start = _date(report.find(f"{{{REPORTING}}}Time/{{{REPORTING}}}CustomDateRangeStart"))
        end = _date(report.find(f"{{{REPORTING}}}Time/{{{REPORTING}}}CustomDateRangeEnd"))
        flags = {_local(e.tag): e.text == "true" for e in report if _local(e.tag).startswith("Exclude")}
        rows = self._rows(kind, accounts, start, end, columns)
        body = _zip(_csv(columns, rows, flags)) if rows else None
        report_id = f"rep-{len(self.reports) + 1}"
        self.reports[report_id] = Report(report_id, kind, accounts, columns, body,
                                         pending=error.polls if isinstance(error, Pending) else 0, error=error)
        return 200, _envelope(REPORTING, self._next_tracking(),
                              f'<SubmitGenerateReportResponse xmlns="{REPORTING}"><ReportRequestId>{report_id}</ReportRequestId>'
                              "</SubmitGenerateReportResponse>")

    def _poll(self, request: ET.Element, headers: dict[str, str]) -> tuple[int, bytes]:
        report = self.reports[request.find(f"{{{REPORTING}}}ReportRequestId").text]
        self.calls.append(Call("PollGenerateReport", report.kind, report.accounts, headers))
        if report.pending:
            report.pending -= 1
            status, url = "Pending", None
        elif isinstance(report.error, GenerationError):
            status, url = "Error", None
        else:
            status = "Success"
            url = f"{self.url}/reports/{report.id}.zip?sv=2025-05-05&amp;sig=S3CRETSIGNATURE" if report.body else None
        link = f"<ReportDownloadUrl>{url}</ReportDownloadUrl>" if url else f'<ReportDownloadUrl xmlns:i="{XSI}" i:nil="true"/>'
        return 200, _envelope(REPORTING, self._next_tracking(),
                              f'<PollGenerateReportResponse xmlns="{REPORTING}"><ReportRequestStatus>{link}'
                              f"<Status>{status}</Status></ReportRequestStatus></PollGenerateReportResponse>")

    def _accounts_info(self, request: ET.Element, headers: dict[str, str]) -> tuple[int, bytes]:
        customer = request.find(f"{{{CUSTOMER}}}CustomerId").text
        self.calls.append(Call("GetAccountsInfo", "accounts", [customer], headers))
        if self.listing_errors:
            error = self.listing_errors.pop(0)
            if isinstance(error, Fault):
                return _fault(error, CUSTOMER)
            return error.status, b"<html>Service Unavailable</html>"
        infos = "".join(
            f"<a:AccountInfo><a:AccountLifeCycleStatus>{a.status}</a:AccountLifeCycleStatus><a:Id>{account_id}</a:Id>"
            f"<a:Name>{escape(a.name)}</a:Name><a:Number>{a.number}</a:Number>"
            f'<a:PauseReason i:nil="true"/></a:AccountInfo>'
            for account_id, a in self.accounts.items()
        )
        return 200, _envelope(CUSTOMER, self._next_tracking(),
                              f'<GetAccountsInfoResponse xmlns="{CUSTOMER}"><AccountsInfo xmlns:a="{ENTITIES}" '
                              f'xmlns:i="{XSI}">{infos}</AccountsInfo></GetAccountsInfoResponse>')

    def download(self, path: str) -> tuple[int, bytes]:
        report_id = path.rsplit("/", 1)[-1].removesuffix(".zip")
        self.downloads.append(report_id)
        report = self.reports[report_id]
        if isinstance(report.error, DownloadError):
            return report.error.status, b"failed"
        return 200, report.body or b""

    def token(self, form: dict[str, str]) -> tuple[int, bytes]:
        self.token_requests.append(form)
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token") in self.refresh_tokens:
            return 200, json.dumps({"token_type": "Bearer", "access_token": ACCESS_TOKEN, "expires_in": 3600,
                                    "refresh_token": form["refresh_token"]}).encode()
        return 400, json.dumps({
            "error": "invalid_grant",
            "error_description": "AADSTS700082: The refresh token has expired due to inactivity. The token was issued "
                                 "on 2026-03-01T10:00:00Z and was inactive for 90.00:00:00.",
        }).encode()

    # -- report contents

    def _rows(self, kind: str, accounts: list[str], start: dt.date, end: dt.date, columns: list[str]) -> list[dict]:
        rows: list[dict] = []
        for account in accounts:
            info = self.accounts.get(account) or Account(f"Account {account}")
            base = {"AccountId": account, "AccountName": info.name, "CurrencyCode": info.currency}
            if kind == "metrics":
                for day, campaign, spend, clicks, impressions, conversions, qualified in self.metrics.get(account, []):
                    if start <= dt.date.fromisoformat(day) <= end:
                        rows.append({**base, "TimePeriod": day, "CampaignId": campaign, "CampaignName": f"Campaign {campaign}",
                                     "Spend": f"{spend:.2f}", "Impressions": str(impressions), "Clicks": str(clicks),
                                     "Conversions": str(round(conversions)),
                                     "ConversionsQualified": f"{conversions:.2f}" if qualified else ""})
            elif kind == "goals":
                for day, campaign, spend, *_ in self.metrics.get(account, []):  # activity without a goal: Goal ""
                    if start <= dt.date.fromisoformat(day) <= end:
                        rows.append({**base, "TimePeriod": day, "CampaignId": campaign, "CampaignName": f"Campaign {campaign}",
                                     "Goal": "", "AllConversions": "0", "AllConversionsQualified": "0.00"})
                for day, campaign, goal, conversions in self.goals.get(account, []):
                    if start <= dt.date.fromisoformat(day) <= end:
                        rows.append({**base, "TimePeriod": day, "CampaignId": campaign, "CampaignName": f"Campaign {campaign}",
                                     "Goal": goal, "AllConversions": str(round(conversions)),
                                     "AllConversionsQualified": f"{conversions:.2f}"})
            else:
                for change in self.changes.get(account, []):
                    if start <= change["_when"].date() <= end:
                        rows.append({**base, **change})
        return rows

    # -- the server

    @contextmanager
    def serve(self) -> Iterator[FakeMicrosoftAds]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/token"):
                    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                    status, data = fake.token(form)
                    self._answer(status, data, "application/json")
                else:
                    status, data = fake.soap(body, dict(self.headers))
                    self._answer(status, data, "text/xml; charset=utf-8")

            def do_GET(self) -> None:  # noqa: N802
                status, data = fake.download(urlsplit(self.path).path)
                self._answer(status, data, "application/zip")

            def _answer(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_port}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _date(element: ET.Element) -> dt.date:
    parts = {_local(e.tag): int(e.text) for e in element}
    return dt.date(parts["Year"], parts["Month"], parts["Day"])


def _envelope(namespace: str, tracking_id: str, body: str) -> bytes:
    return (f'<s:Envelope xmlns:s="{SOAP}"><s:Header><h:TrackingId xmlns:h="{namespace}">{tracking_id}</h:TrackingId>'
            f"</s:Header><s:Body>{body}</s:Body></s:Envelope>").encode()


def _fault(fault: Fault, namespace: str) -> tuple[int, bytes]:
    if fault.detail == "AdApi":
        detail = (f'<AdApiFaultDetail xmlns="{ADAPI}" xmlns:i="{XSI}"><TrackingId>{fault.tracking_id}</TrackingId>'
                  f"<Errors><AdApiError><Code>{fault.code}</Code><Detail i:nil=\"true\"/><ErrorCode>{fault.error_code}"
                  f"</ErrorCode><Message>{escape(fault.message)}</Message></AdApiError></Errors></AdApiFaultDetail>")
    else:
        detail = (f'<ApiFaultDetail xmlns="{namespace}" xmlns:i="{XSI}"><TrackingId xmlns="{ADAPI}">{fault.tracking_id}'
                  f"</TrackingId><BatchErrors/><OperationErrors><OperationError><Code>{fault.code}</Code>"
                  f"<Details i:nil=\"true\"/><ErrorCode>{fault.error_code}</ErrorCode><Message>{escape(fault.message)}"
                  "</Message></OperationError></OperationErrors></ApiFaultDetail>")
    body = (f"<s:Fault><faultcode>s:Server</faultcode><faultstring xml:lang=\"en-US\">Invalid client data. Check the SOAP "
            f"fault details for more information. TrackingId: {fault.tracking_id}.</faultstring><detail>{detail}</detail>"
            "</s:Fault>")
    return 500, _envelope(namespace, fault.tracking_id, body)


def _csv(columns: list[str], rows: list[dict], flags: dict[str, bool]) -> bytes:
    """A report file as the service writes it: UTF-8 with a byte order mark, every field quoted,
    and unless excluded, the report's header lines, the column names and the copyright footer."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    if not flags.get("ExcludeReportHeader"):
        for line in ("Report Name: anomaly", "Report Time: 7/6/2026,7/12/2026", "Time Zone: (GMT-08:00) Pacific Time",
                     "Last Completed Available Day: 7/12/2026 10:40:00 AM (GMT)", "Report Aggregation: Daily",
                     "Report Filter: ", "Potential Incomplete Data: true", f"Rows: {len(rows)}"):
            writer.writerow([line])
        writer.writerow([])
    if not flags.get("ExcludeColumnHeaders"):
        writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    if not flags.get("ExcludeReportFooter"):
        writer.writerow([])
        writer.writerow(["\u00a92026 Microsoft Corporation. All rights reserved. "])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _zip(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("report.csv", data)
    return out.getvalue()
