"""A local stand-in for Meta's Graph API (the Marketing API's ad accounts), served over real HTTP.

``FakeGraph`` runs a ``ThreadingHTTPServer`` on an ephemeral port of 127.0.0.1 and answers, in the
JSON shapes the ``facebook-business`` SDK sends and parses, the calls the Meta source makes:

- ``GET /vXX.X/act_<id>`` (an ad account's fields);
- ``GET /vXX.X/act_<id>/insights`` (campaign rows per day, paged with ``after`` cursors, filtered
  by ``time_range``), and the asynchronous form: ``POST`` the same edge starts a report run whose
  status ``GET /vXX.X/<run id>`` gives (``async_status``, ``async_percent_completion``, stepping
  through ``run_statuses``), and whose rows ``GET /vXX.X/<run id>/insights`` pages;
- ``GET /vXX.X/act_<id>/activities`` (the activity log, filtered by ``since``/``until`` Unix
  times and paged);
- ``GET /vXX.X/<business id>/owned_ad_accounts`` and ``client_ad_accounts``;
- a multi-id read, ``GET /vXX.X/?ids=a,b&fields=campaign_id`` (an unknown id fails the whole read
  with error 100, as Meta does).

Every call must carry ``access_token=<token>``; a wrong or missing one is answered as Meta answers
an expired token (HTTP 400, ``OAuthException`` code 190). Each response carries an
``x-fb-trace-id`` header, and errors an ``fbtrace_id``. ``fail(match, ...)`` queues error answers
for calls whose path contains ``match`` (an error code and subcode, an HTTP status, headers);
``usage[match]`` sets the usage headers of the answers to such calls. ``requests`` records every
call as (method, path, params) with the token left out.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from facebook_business.api import FacebookAdsApi
from facebook_business.session import FacebookSession

TOKEN = "EAAGfaketoken1234567890secret"
API_VERSION = "v26.0"


@dataclass
class FakeAccount:
    account_id: str  # digits
    name: str
    currency: str = "USD"
    timezone_name: str = "America/Los_Angeles"
    account_status: int = 1
    insights: list[dict[str, Any]] = field(default_factory=list)  # rows as Meta writes them
    activities: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Failure:
    code: int | None  # the Graph API error code; None for a bare HTTP error without a JSON body
    message: str = "An error occurred"
    subcode: int | None = None
    status: int = 400
    is_transient: bool = False
    headers: dict[str, str] = field(default_factory=dict)


class FakeGraph:
    """The fake Graph API; use as a context manager, or ``start()`` and ``stop()``."""

    def __init__(self, *, token: str = TOKEN, page_size: int = 500):
        self.token = token
        self.page_size = page_size
        self.accounts: dict[str, FakeAccount] = {}
        self.businesses: dict[str, dict[str, list[str]]] = {}  # id -> {"owned": [...], "client": [...]}
        self.objects: dict[str, dict[str, str]] = {}  # ad set or ad id -> {"campaign_id": ...}
        self.run_statuses: list[tuple[str, int]] = [("Job Running", 40), ("Job Completed", 100)]
        self.usage: dict[str, dict[str, str]] = {}  # path fragment -> headers to answer with
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._failures: dict[str, deque[Failure]] = {}
        self._runs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._traces = 0
        self._server: ThreadingHTTPServer | None = None

    # -- set-up

    def add_account(self, account: FakeAccount) -> FakeAccount:
        self.accounts[account.account_id] = account
        return account

    def fail(self, match: str, *failures: Failure) -> None:
        """Answer the next calls whose path contains ``match`` with these failures, in turn."""
        with self._lock:
            self._failures.setdefault(match, deque()).extend(failures)

    def api(self, *, app_id: str | None = None, app_secret: str | None = None, token: str | None = None) -> FacebookAdsApi:
        """The SDK's client, pointed at this server."""
        return client(self.url, self.token if token is None else token, app_id=app_id, app_secret=app_secret)

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeGraph":
        graph = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go out as two writes: without this, each answer waits out a
                # delayed acknowledgement
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                graph._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                graph._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeGraph":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def calls(self, fragment: str, method: str | None = None) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.requests if fragment in r[1] and (method is None or r[0] == method)]

    # -- serving

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if method == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            params.update(parse_qsl(handler.rfile.read(length).decode(), keep_blank_values=True))
        token = params.pop("access_token", None)
        params.pop("appsecret_proof", None)
        path = parts.path
        with self._lock:
            self.requests.append((method, path, params))
            self._traces += 1
            trace = f"AfakeTrace{self._traces:06d}"
            failure = next((q.popleft() for m, q in self._failures.items() if m in path and q), None)
            usage = {k: v for m, headers in self.usage.items() if m in path for k, v in headers.items()}
        headers = {"x-fb-trace-id": trace, **usage}
        if token != self.token:
            self._send(handler, 400, {"error": {"message": "Error validating access token: Session has expired.",
                                                "type": "OAuthException", "code": 190, "error_subcode": 463,
                                                "fbtrace_id": trace}}, headers)
            return
        if failure is not None:
            headers.update(failure.headers)
            if failure.code is None:
                self._send_raw(handler, failure.status, b"Service Unavailable", headers)
                return
            error = {"message": failure.message, "type": "OAuthException", "code": failure.code, "fbtrace_id": trace,
                     "is_transient": failure.is_transient}
            if failure.subcode is not None:
                error["error_subcode"] = failure.subcode
            self._send(handler, failure.status, {"error": error}, headers)
            return
        try:
            status, body = self._route(method, path, params)
        except _NotFound as e:
            status, body = 400, {"error": {"message": f"Unsupported get request. Object with ID '{e}' does not exist",
                                           "type": "GraphMethodException", "code": 100, "error_subcode": 33}}
        if "error" in body:
            body["error"]["fbtrace_id"] = trace
        self._send(handler, status, body, headers)

    def _route(self, method: str, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        steps = [p for p in path.split("/") if p]
        if steps and steps[0].startswith("v"):
            steps = steps[1:]
        if not steps:
            return 200, self._by_ids(params)
        node, edge = steps[0], (steps[1] if len(steps) > 1 else "")
        if node.startswith("act_"):
            account = self.accounts.get(node.removeprefix("act_"))
            if account is None:
                raise _NotFound(node)
            if not edge:
                return 200, {"id": node, "account_id": account.account_id, "name": account.name, "currency": account.currency,
                             "timezone_name": account.timezone_name, "account_status": account.account_status}
            if edge == "insights" and method == "POST":
                return 200, self._start_run(account, params)
            if edge == "insights":
                return 200, self._page(_in_range(account.insights, params), params)
            if edge == "activities":
                return 200, self._page(_in_window(account.activities, params), params)
        if node in self._runs:
            run = self._runs[node]
            if edge == "insights":
                return 200, self._page(run["rows"], params)
            status, percent = self.run_statuses[min(run["polls"], len(self.run_statuses) - 1)]
            run["polls"] += 1
            return 200, {"id": node, "async_status": status, "async_percent_completion": percent}
        if node in self.businesses and edge in ("owned_ad_accounts", "client_ad_accounts"):
            ids = self.businesses[node].get(edge.split("_")[0], [])
            rows = [{"id": f"act_{a}", "account_id": a, "name": self.accounts[a].name, "currency": self.accounts[a].currency,
                     "timezone_name": self.accounts[a].timezone_name, "account_status": self.accounts[a].account_status}
                    for a in ids]
            return 200, self._page(rows, params)
        raise _NotFound(node)

    def _start_run(self, account: FakeAccount, params: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            run_id = f"{900000 + len(self._runs)}"
            self._runs[run_id] = {"rows": _in_range(account.insights, params), "polls": 0}
        return {"report_run_id": run_id}

    def _by_ids(self, params: dict[str, str]) -> dict[str, Any]:
        out = {}
        for object_id in params.get("ids", "").split(","):
            if object_id not in self.objects:
                raise _NotFound(object_id)
            out[object_id] = {"id": object_id, **self.objects[object_id]}
        return out

    def _page(self, rows: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
        size = min(int(params.get("limit") or self.page_size), self.page_size)
        offset = int(params.get("after") or 0)
        page = rows[offset : offset + size]
        paging: dict[str, Any] = {"cursors": {"before": str(offset), "after": str(offset + len(page))}}
        if offset + size < len(rows):
            paging["next"] = f"{self.url}/{API_VERSION}/next?after={offset + size}"
        return {"data": page, "paging": paging}

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        self._send_raw(handler, status, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})

    @staticmethod
    def _send_raw(handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


class _NotFound(Exception):
    pass


def client(url: str, token: str = TOKEN, *, app_id: str | None = None, app_secret: str | None = None) -> FacebookAdsApi:
    """The SDK's client, its session pointed at a fake served at ``url``."""
    session = FacebookSession(app_id, app_secret, token, timeout=30)
    session.GRAPH = url
    return FacebookAdsApi(session, api_version=API_VERSION)


def _in_range(rows: list[dict[str, Any]], params: dict[str, str]) -> list[dict[str, Any]]:
    span = json.loads(params.get("time_range") or "{}")
    since, until = span.get("since", "0000"), span.get("until", "9999")
    return [r for r in rows if since <= r["date_start"] <= until]


def _in_window(rows: list[dict[str, Any]], params: dict[str, str]) -> list[dict[str, Any]]:
    since = int(params.get("since") or 0)
    until = int(params.get("until") or 2**40)
    return [r for r in rows if since <= _unix(r["event_time"]) < until]


def _unix(text: str) -> int:
    return int(dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp())


def insight(campaign_id: str, day: str, *, spend: float, impressions: int, clicks: int, actions: Mapping[str, float] | None = None,
            account: FakeAccount | None = None, campaign_name: str | None = None) -> dict[str, Any]:
    """An insights row as Meta writes it: numbers as text, actions as a list."""
    row: dict[str, Any] = {
        "campaign_id": campaign_id, "campaign_name": campaign_name or f"Campaign {campaign_id}",
        "spend": f"{spend:.2f}", "impressions": str(impressions), "clicks": str(clicks),
        "date_start": day, "date_stop": day,
    }
    if account is not None:
        row.update(account_id=account.account_id, account_name=account.name, account_currency=account.currency)
    if actions:
        row["actions"] = [{"action_type": k, "value": f"{v:g}"} for k, v in actions.items()]
    return row


def activity(event_type: str, at: str, *, object_id: str, actor_id: str = "", actor_name: str = "", extra: Any = None,
             object_name: str = "", translated: str = "", application: str = "") -> dict[str, Any]:
    """An activity log entry as Meta writes it (``extra_data`` as JSON text)."""
    row: dict[str, Any] = {"event_type": event_type, "event_time": at, "object_id": object_id, "object_name": object_name}
    if actor_id or actor_name:
        row.update(actor_id=actor_id, actor_name=actor_name)
    if extra is not None:
        row["extra_data"] = extra if isinstance(extra, str) else json.dumps(extra)
    if translated:
        row["translated_event_type"] = translated
    if application:
        row.update(application_id="1234", application_name=application)
    return row
