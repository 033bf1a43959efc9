"""A local stand-in for the Slack Web API, served over real HTTP on 127.0.0.1.

``FakeSlack`` runs a ``ThreadingHTTPServer`` on an ephemeral port in a daemon thread and answers the
methods the alert sender uses, in the shapes ``slack_sdk.WebClient`` sends and expects:

- ``chat.postMessage`` and ``chat.update`` (JSON bodies): text, Block Kit blocks, threads and
  message metadata (``{"event_type", "event_payload"}``);
- ``conversations.history`` (top-level messages, newest first) and ``conversations.replies`` (a
  parent and its replies, oldest first); metadata is returned only with ``include_all_metadata``;
- the three steps of ``files_upload_v2``: ``files.getUploadURLExternal``, a raw ``POST`` of the
  bytes to ``/upload/<file_id>`` and ``files.completeUploadExternal``, which shares the file as a
  message in the channel or thread;
- ``auth.test``;
- ``apps.connections.open`` (Socket Mode; the WebSocket itself is not served);
- ``chat.postEphemeral`` (recorded; an ephemeral message is in no channel's history), and the
  response URLs of interactive messages (``response_url(name)``: a ``POST`` of JSON to it is
  recorded under ``"response_url"`` and answered ``ok``, as Slack does).

API methods check ``Authorization: Bearer <token>`` (or a ``token`` form field) and answer HTTP
200 with ``{"ok": false, "error": ...}`` on a missing or wrong token, as Slack does.

Every request is recorded, including those answered with an injected failure. ``fail_next`` queues
failures per method (raw uploads are queued under ``"upload"``): an HTTP status (429 carries
``Retry-After``), an ``ok: false`` error, a delay before answering, or a dropped connection. With
``after_store=True`` the request is first handled normally, so Slack has the message but the client
never hears so: the send-then-crash case. ``fail_randomly`` makes each request fail with a given
probability instead, with one of ``RANDOM_KINDS`` (seeded, so a run can be repeated); ``injected``
lists every failure given, queued or random.

Where this fake is stricter than Slack, on purpose: a ``thread_ts`` that names no top-level message
of the channel is refused with ``thread_not_found`` (Slack may accept it and lose the reply), and
only ``chat.postMessage`` resolves channel names; every other method wants the channel ID, as Slack
does. Message timestamps come from ``clock`` (the wall clock unless given) and rise by at least
100 µs per message, so ``oldest=str(time.time() - 3600)`` finds recent posts as it would in Slack.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace, TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

DEFAULT_TOKEN = "xoxb-fake-token"
DEFAULT_CHANNELS: Mapping[str, str] = {"C0ALERTS": "#media-alerts"}
BOT_USER_ID = "U0ALERTBOT"
BOT_ID = "B0ALERTBOT"
TEAM_ID = "T0FAKE"
UPLOAD = "upload"
RESPONSE_URL = "response_url"
MAX_BLOCKS = 50
DEFAULT_LIMIT = 100
MAX_LIMIT = 999
JSON_FIELDS = ("blocks", "attachments", "metadata", "files")
#: what ``fail_randomly`` injects: HTTP 429 (with ``Retry-After``), HTTP 500, HTTP 503, no answer
#: within the client's timeout, and a connection closed without an answer
RANDOM_KINDS = ("429", "500", "503", "timeout", "drop")

Params = dict[str, Any]
Message = dict[str, Any]


@dataclass(frozen=True)
class Recorded:
    """One HTTP request as the fake received it.

    ``method`` is the API method (``"chat.postMessage"``) or ``"upload"`` for a raw upload;
    ``headers`` have lower-case names; ``body`` is the parsed JSON or form body with any query
    string merged in (for an upload, ``{"file_id": ..., "length": ...}``); ``raw`` is the body as
    sent; ``time`` is ``time.time()`` on arrival.
    """

    method: str
    headers: dict[str, str]
    body: Params
    raw: bytes
    time: float


@dataclass(frozen=True)
class Failure:
    """How to answer one request instead of, or after, handling it normally."""

    status: int | None = None
    retry_after: int = 1
    ok_false: str | None = None
    delay: float = 0.0
    drop: bool = False
    after_store: bool = False

    @property
    def replaces_answer(self) -> bool:
        """Whether the normal answer is replaced (otherwise the failure is only a delay)."""
        return self.status is not None or self.ok_false is not None or self.drop

    @property
    def kind(self) -> str:
        """``"429"``, ``"500"``…, ``"ok_false"``, ``"timeout"`` (a delay, then no answer), ``"drop"`` or ``"delay"``."""
        if self.status is not None:
            return str(self.status)
        if self.ok_false is not None:
            return "ok_false"
        if self.drop:
            return "timeout" if self.delay > 0 else "drop"
        return "delay"


@dataclass(frozen=True)
class Injected:
    """A failure given to one request: its method, the failure's ``kind`` and whether it came
    after the request took effect (``after_store``)."""

    method: str
    kind: str
    after_store: bool

    @property
    def label(self) -> str:
        """``"500"`` before the request took effect, ``"500 after store"`` after it."""
        return f"{self.kind} after store" if self.after_store else self.kind


@dataclass(frozen=True)
class _RandomFailures:
    rate: float
    rng: random.Random
    kinds: tuple[str, ...]
    methods: frozenset[str] | None
    after_store: float
    delay: float
    retry_after: int


@dataclass(frozen=True)
class Share:
    """A file shared into a channel, as the message ``ts`` that carries it (in ``thread_ts``, if any)."""

    channel: str
    ts: str
    thread_ts: str | None


@dataclass
class UploadedFile:
    """A file announced by ``files.getUploadURLExternal``; ``data`` is ``None`` until uploaded."""

    id: str
    filename: str
    length: int
    alt_txt: str | None = None
    title: str | None = None
    data: bytes | None = None
    shares: list[Share] = field(default_factory=list)


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    headers: dict[str, str]
    params: Params
    raw: bytes


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class SlackMethodError(Exception):
    """An API method refused the request; answered as ``{"ok": false, "error": code}``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class FakeSlack:
    """A Slack Web API imitation on ``127.0.0.1``; serving starts on construction.

    Use as a context manager (or through the ``fake_slack`` fixture) so ``stop()`` always runs.
    ``channels`` maps channel IDs to names (``{"C0ALERTS": "#media-alerts"}``).
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        channels: Mapping[str, str] | None = None,
        bot_user_id: str = BOT_USER_ID,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.channels = dict(DEFAULT_CHANNELS if channels is None else channels)
        self.bot_user_id = bot_user_id
        self._clock = clock
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[Recorded] = []
        self._failures: defaultdict[str, deque[Failure]] = defaultdict(deque)
        self._random: _RandomFailures | None = None
        self._injected: list[Injected] = []
        self._messages: dict[str, list[Message]] = {channel: [] for channel in self.channels}
        self._files: dict[str, UploadedFile] = {}
        self._last_micros = 0
        self._stopped = False
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._serve, name="fake-slack", daemon=True)
        self._thread.start()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def server_url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        """The ``base_url`` for ``WebClient``; the trailing slash matters to the SDK's ``urljoin``."""
        return f"{self.server_url}/api/"

    def response_url(self, name: str = "1") -> str:
        """A response URL of an interactive message, as Slack puts it in a button's request."""
        return f"{self.server_url}/response/{name}"

    def _serve(self) -> None:
        # a short poll makes stop() quick: shutdown() waits for the loop to look again
        self._server.serve_forever(poll_interval=0.01)

    def stop(self) -> None:
        """Stop serving and release the port; delayed answers are cut short. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeSlack:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    # -- failure injection ----------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int | None = None,
        retry_after: int = 1,
        ok_false: str | None = None,
        delay: float = 0.0,
        drop: bool = False,
        after_store: bool = False,
        times: int = 1,
    ) -> None:
        """Queue a failure for the next ``times`` requests to ``method`` (``"upload"`` for raw uploads).

        ``status``: answer with that HTTP status (429 adds ``Retry-After: retry_after`` seconds);
        ``ok_false``: answer ``{"ok": false, "error": ok_false}`` (HTTP 200 unless ``status``);
        ``delay``: wait that many seconds before answering (alone, the request then succeeds);
        ``drop``: close the connection without any answer; ``after_store``: handle the request
        normally first (store the message, the file...), then delay or fail.
        """
        failure = Failure(
            status=status, retry_after=retry_after, ok_false=ok_false, delay=delay, drop=drop, after_store=after_store
        )
        if not failure.replaces_answer and delay <= 0:
            raise ValueError(f"fail_next({method!r}) needs status, ok_false, delay > 0 or drop=True")
        if times < 1:
            raise ValueError(f"fail_next({method!r}): times must be >= 1, got {times}")
        with self._lock:
            self._failures[method].extend([failure] * times)

    def fail_randomly(
        self,
        rate: float,
        *,
        seed: int | None = None,
        kinds: Iterable[str] = RANDOM_KINDS,
        methods: Iterable[str] | None = None,
        after_store: float = 0.5,
        delay: float = 1.0,
        retry_after: int = 1,
    ) -> None:
        """Make each later request fail, independently, with probability ``rate`` (0 stops it).

        A failing request gets one of ``kinds`` (see ``RANDOM_KINDS``), chosen evenly: ``"429"``
        (with ``Retry-After: retry_after``), ``"500"``, ``"503"``, ``"timeout"`` (no answer for
        ``delay`` seconds, which must exceed the client's timeout, then the connection is closed)
        or ``"drop"`` (closed at once). With probability ``after_store`` the failure comes after the
        request took effect (the message stored, the update made), otherwise before, so the request
        did nothing. ``methods`` limits the failures to those methods (every request, uploads
        included, when None). ``seed`` makes the choices repeatable for the same requests in the
        same order. A failure queued by ``fail_next`` comes first.
        """
        kinds = tuple(kinds)
        unknown = sorted(set(kinds) - set(RANDOM_KINDS))
        if not 0 <= rate <= 1 or not 0 <= after_store <= 1:
            raise ValueError(f"fail_randomly: rate and after_store are probabilities, got {rate} and {after_store}")
        if not kinds or unknown:
            raise ValueError(f"fail_randomly: kinds must be among {RANDOM_KINDS}, got {kinds}")
        chosen = _RandomFailures(
            rate=rate,
            rng=random.Random(seed),
            kinds=kinds,
            methods=None if methods is None else frozenset(methods),
            after_store=after_store,
            delay=delay,
            retry_after=retry_after,
        )
        with self._lock:
            self._random = chosen if rate > 0 else None

    def _random_failure(self, method: str) -> Failure | None:
        """The failure drawn for one request under ``fail_randomly``, if any (lock held)."""
        chosen = self._random
        if chosen is None or (chosen.methods is not None and method not in chosen.methods):
            return None
        if chosen.rng.random() >= chosen.rate:
            return None
        kind = chosen.rng.choice(chosen.kinds)
        after_store = chosen.rng.random() < chosen.after_store
        if kind == "timeout":
            return Failure(delay=chosen.delay, drop=True, after_store=after_store)
        if kind == "drop":
            return Failure(drop=True, after_store=after_store)
        return Failure(status=int(kind), retry_after=chosen.retry_after, after_store=after_store)

    # -- inspection -----------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        """Every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def calls(self, method: str) -> list[Recorded]:
        """The requests to one API method (``"upload"`` for raw uploads), in arrival order."""
        return [request for request in self.requests if request.method == method]

    @property
    def injected(self) -> list[Injected]:
        """Every failure given so far (queued by ``fail_next`` or drawn by ``fail_randomly``), in order."""
        with self._lock:
            return list(self._injected)

    def injected_counts(self) -> Counter[str]:
        """How many failures of each ``Injected.label`` were given (``"429"``, ``"500 after store"``…)."""
        return Counter(injected.label for injected in self.injected)

    def messages(self, channel: str) -> list[Message]:
        """Top-level messages of a channel (ID or name), oldest first, with their metadata."""
        with self._lock:
            channel_id = self._channel_id(channel, names=True)
            return [copy.deepcopy(m) for m in self._messages[channel_id] if _is_top_level(m)]

    def all_messages(self, channel: str) -> list[Message]:
        """Every message of a channel, top-level ones and thread replies, oldest first, with their
        metadata; a reply broadcast to the channel is in the list once."""
        with self._lock:
            channel_id = self._channel_id(channel, names=True)
            return copy.deepcopy(self._messages[channel_id])

    def thread(self, channel: str, ts: str) -> list[Message]:
        """A thread's parent and its replies, oldest first; empty if ``ts`` names no message."""
        with self._lock:
            channel_id = self._channel_id(channel, names=True)
            return [copy.deepcopy(m) for m in self._thread_of(channel_id, ts)]

    @property
    def files(self) -> list[UploadedFile]:
        """Every file announced so far, with its bytes (once uploaded) and where it was shared."""
        with self._lock:
            return [copy.deepcopy(file) for file in self._files.values()]

    # -- HTTP entry point (called by the request handler) ---------------------------------------

    def _respond(self, path: str, headers: dict[str, str], raw: bytes) -> _Answer | None:
        """The answer to one HTTP request, or ``None`` to close the connection without one."""
        request = _parse_request(path, headers, raw)
        failure = self._record(request)
        if failure is None:
            return self._answer(request)
        if failure.after_store:
            answer = self._answer(request)
            self._stopping.wait(failure.delay)
            return _failure_answer(failure) if failure.replaces_answer else answer
        self._stopping.wait(failure.delay)
        return _failure_answer(failure) if failure.replaces_answer else self._answer(request)

    def _record(self, request: _Request) -> Failure | None:
        """Record the request and take the next failure queued for its method, if any."""
        body = request.params if request.method != UPLOAD else {"file_id": request.target, "length": len(request.raw)}
        recorded = Recorded(request.method, request.headers, body, request.raw, time.time())
        with self._lock:
            self._requests.append(recorded)
            queue = self._failures.get(request.method)
            failure = queue.popleft() if queue else self._random_failure(request.method)
            if failure is not None:
                self._injected.append(Injected(request.method, failure.kind, failure.after_store))
            return failure

    def _answer(self, request: _Request) -> _Answer:
        if request.method == UPLOAD:
            return self._upload(request.target, request.raw)
        if request.method == RESPONSE_URL:
            return _Answer(200, b"ok", {"Content-Type": "text/plain"})
        handler = self._handlers().get(request.method)
        if handler is None:
            return _json_answer({"ok": False, "error": "unknown_method"}, status=404)
        try:
            self._check_auth(request)
            with self._lock:
                result = handler(request.params)
        except SlackMethodError as error:
            return _json_answer({"ok": False, "error": error.code})
        return _json_answer({"ok": True, **result})

    def _handlers(self) -> dict[str, Callable[[Params], Params]]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.postEphemeral": self._post_ephemeral,
            "apps.connections.open": self._connections_open,
            "chat.update": self._update,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }

    def _check_auth(self, request: _Request) -> None:
        authorization = request.headers.get("authorization", "")
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None
        token = token or request.params.get("token")
        if not token:
            raise SlackMethodError("not_authed")
        if token != self.token:
            raise SlackMethodError("invalid_auth")

    # -- API methods (called with the lock held) ------------------------------------------------

    def _auth_test(self, params: Params) -> Params:
        return {
            "url": "https://fake-workspace.slack.com/",
            "team": "Fake Workspace",
            "user": "media-alerts",
            "team_id": TEAM_ID,
            "user_id": self.bot_user_id,
            "bot_id": BOT_ID,
        }

    def _post_message(self, params: Params) -> Params:
        channel = self._channel_id(params.get("channel"), names=True)
        text, blocks = params.get("text"), params.get("blocks")
        if not text and not blocks and not params.get("attachments"):
            raise SlackMethodError("no_text")
        _check_blocks(blocks)
        message: Message = {"type": "message", "user": self.bot_user_id, "bot_id": BOT_ID, "text": text or ""}
        if blocks is not None:
            message["blocks"] = blocks
        if params.get("metadata") is not None:
            message["metadata"] = _checked_metadata(params["metadata"])
        thread_ts = _optional_str(params.get("thread_ts"))
        if thread_ts and _flag(params.get("reply_broadcast")):
            message["subtype"] = "thread_broadcast"
        self._store(channel, message, thread_ts)
        return {"channel": channel, "ts": message["ts"], "message": copy.deepcopy(message)}

    def _connections_open(self, params: Params) -> Params:
        """Socket Mode's WebSocket URL; this fake speaks no WebSocket, so a connection to it fails."""
        return {"url": f"ws://127.0.0.1:{self._server.server_address[1]}/link/"}

    def _post_ephemeral(self, params: Params) -> Params:
        self._channel_id(params.get("channel"), names=False)
        if not params.get("user"):
            raise SlackMethodError("user_not_in_channel")
        if not params.get("text") and not params.get("blocks"):
            raise SlackMethodError("no_text")
        return {"message_ts": self._next_ts()}

    def _update(self, params: Params) -> Params:
        channel = self._channel_id(params.get("channel"), names=False)
        message = self._find(channel, _optional_str(params.get("ts")))
        if message is None:
            raise SlackMethodError("message_not_found")
        if not any(key in params for key in ("text", "blocks", "attachments")):
            raise SlackMethodError("no_text")
        _check_blocks(params.get("blocks"))
        if "text" in params:
            message["text"] = params["text"]
        if params.get("blocks") is not None:
            _replace_blocks(message, params["blocks"])
        if params.get("metadata") is not None:
            message["metadata"] = _checked_metadata(params["metadata"])
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel, "ts": message["ts"], "text": message["text"], "message": copy.deepcopy(message)}

    def _history(self, params: Params) -> Params:
        channel = self._channel_id(params.get("channel"), names=False)
        oldest = _ts_bound(params.get("oldest"), Decimal(0), "invalid_ts_oldest")
        latest = _ts_bound(params.get("latest"), Decimal("Infinity"), "invalid_ts_latest")
        inclusive = _flag(params.get("inclusive"))
        chosen = [
            message
            for message in reversed(self._messages[channel])
            if _is_top_level(message) and _within(message["ts"], oldest, latest, inclusive)
        ]
        return self._page(chosen, params)

    def _replies(self, params: Params) -> Params:
        channel = self._channel_id(params.get("channel"), names=False)
        thread = self._thread_of(channel, _optional_str(params.get("ts")))
        if not thread:
            raise SlackMethodError("thread_not_found")
        return self._page(thread, params)

    def _get_upload_url(self, params: Params) -> Params:
        filename = params.get("filename")
        length = _positive_int(params.get("length"))
        if not filename or length is None:
            raise SlackMethodError("invalid_arguments")
        file_id = f"F{len(self._files) + 1:08d}"
        self._files[file_id] = UploadedFile(file_id, filename, length, alt_txt=params.get("alt_txt"))
        return {"upload_url": f"{self.server_url}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, params: Params) -> Params:
        channels = [params["channel_id"]] if params.get("channel_id") else _split(params.get("channels"))
        channel_ids = [self._channel_id(channel, names=False) for channel in channels]
        files = self._completed_files(params.get("files"))
        thread_ts = _optional_str(params.get("thread_ts"))
        for channel in channel_ids:
            self._share(channel, files, thread_ts, params.get("initial_comment"))
        return {"files": [_file_summary(file) for file in files]}

    # -- state helpers (called with the lock held) ----------------------------------------------

    def _channel_id(self, channel: Any, *, names: bool) -> str:
        """The ID of a configured channel; with ``names``, ``#name`` and ``name`` resolve too."""
        if isinstance(channel, str) and channel in self.channels:
            return channel
        if names and isinstance(channel, str):
            for channel_id, name in self.channels.items():
                if channel.lstrip("#") == name.lstrip("#"):
                    return channel_id
        raise SlackMethodError("channel_not_found")

    def _next_ts(self) -> str:
        """A message timestamp from the clock, at least 100 µs after the previous one."""
        micros = max(round(self._clock() * 1_000_000), self._last_micros + 100)
        self._last_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _find(self, channel: str, ts: str | None) -> Message | None:
        return next((message for message in self._messages[channel] if message["ts"] == ts), None)

    def _thread_of(self, channel: str, ts: str | None) -> list[Message]:
        """The thread containing message ``ts`` (parent first), or ``[]``."""
        message = self._find(channel, ts)
        if message is None:
            return []
        parent_ts = message.get("thread_ts", message["ts"])
        return [m for m in self._messages[channel] if m["ts"] == parent_ts or m.get("thread_ts") == parent_ts]

    def _store(self, channel: str, message: Message, thread_ts: str | None) -> None:
        """Give ``message`` a ts and keep it, as a reply to ``thread_ts`` when given."""
        parent = None
        if thread_ts:
            parent = self._find(channel, thread_ts)
            if parent is None or not _is_top_level(parent):
                raise SlackMethodError("thread_not_found")
        message["ts"] = self._next_ts()
        if parent is not None:
            message["thread_ts"] = parent["ts"]
            parent["thread_ts"] = parent["ts"]
            parent["reply_count"] = parent.get("reply_count", 0) + 1
            parent["latest_reply"] = message["ts"]
        self._messages[channel].append(message)

    def _page(self, messages: list[Message], params: Params) -> Params:
        """One page of ``messages`` by ``limit`` and ``cursor``; metadata only when asked for."""
        limit = min(_positive_int(params.get("limit")) or DEFAULT_LIMIT, MAX_LIMIT)
        offset = _cursor_offset(params.get("cursor"))
        with_metadata = _flag(params.get("include_all_metadata"))
        page = [_view(message, with_metadata) for message in messages[offset : offset + limit]]
        has_more = len(messages) > offset + limit
        next_cursor = f"next:{offset + limit}" if has_more else ""
        return {"messages": page, "has_more": has_more, "response_metadata": {"next_cursor": next_cursor}}

    def _completed_files(self, items: Any) -> list[UploadedFile]:
        """The uploaded files named by ``files`` (``[{"id", "title"}]``), titled."""
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) and "id" in i for i in items):
            raise SlackMethodError("invalid_arguments")
        files = []
        for item in items:
            file = self._files.get(item["id"])
            if file is None or file.data is None:
                raise SlackMethodError("file_not_found")
            file.title = item.get("title") or file.title or file.filename
            files.append(file)
        return files

    def _share(self, channel: str, files: list[UploadedFile], thread_ts: str | None, comment: str | None) -> None:
        """Post the message that carries ``files`` into ``channel`` (or the thread) and note the share."""
        message: Message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": BOT_ID,
            "text": comment or "",
            "upload": True,
            "files": [_file_summary(file) for file in files],
        }
        self._store(channel, message, thread_ts)
        for file in files:
            file.shares.append(Share(channel, message["ts"], message.get("thread_ts")))

    def _upload(self, file_id: str, data: bytes) -> _Answer:
        with self._lock:
            file = self._files.get(file_id)
            if file is not None:
                file.data = data
        if file is None:
            return _Answer(404, b"unknown upload URL", {"Content-Type": "text/plain"})
        return _Answer(200, f"OK - {len(data)}".encode(), {"Content-Type": "text/plain"})


# -- the HTTP server ------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that timed out has hung up before a delayed answer: expected, not an error
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = self.server.fake._respond(self.path, headers, raw)
        if answer is None:
            self.close_connection = True
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read ``FakeSlack.requests`` instead."""


# -- parsing and answering ------------------------------------------------------------------------


def _parse_request(path: str, headers: dict[str, str], raw: bytes) -> _Request:
    """Method name, target and parameters of a request to ``/api/<method>`` or ``/upload/<id>``."""
    parts = urlsplit(path)
    kind, _, target = parts.path.lstrip("/").partition("/")
    method = {"api": target, "upload": UPLOAD, "response": RESPONSE_URL}.get(kind, parts.path)
    if method == UPLOAD:
        return _Request(UPLOAD, target, headers, {}, raw)
    params: Params = dict(parse_qsl(parts.query, keep_blank_values=True))
    params.update(_parse_body(headers.get("content-type", ""), raw))
    return _Request(method, target, headers, _decode_json_fields(params), raw)


def _parse_body(content_type: str, raw: bytes) -> Params:
    if not raw:
        return {}
    if content_type.startswith("application/json"):
        body = json.loads(raw)
        return body if isinstance(body, dict) else {}
    return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))


def _decode_json_fields(params: Params) -> Params:
    """Form bodies carry blocks, metadata and files as JSON strings; decode them when valid."""
    for name in JSON_FIELDS:
        if isinstance(params.get(name), str):
            try:
                params[name] = json.loads(params[name])
            except json.JSONDecodeError:
                pass
    return params


def _json_answer(body: Params, status: int = 200) -> _Answer:
    return _Answer(status, json.dumps(body).encode(), {"Content-Type": "application/json; charset=utf-8"})


def _failure_answer(failure: Failure) -> _Answer | None:
    if failure.drop:
        return None
    status = failure.status or 200
    default_error = {429: "ratelimited"}.get(status, "fatal_error" if status >= 500 else "request_failed")
    answer = _json_answer({"ok": False, "error": failure.ok_false or default_error}, status)
    if status == 429:
        answer.headers["Retry-After"] = str(failure.retry_after)
    return answer


# -- small value helpers --------------------------------------------------------------------------


def _is_top_level(message: Message) -> bool:
    return message.get("thread_ts", message["ts"]) == message["ts"] or message.get("subtype") == "thread_broadcast"


def _view(message: Message, with_metadata: bool) -> Message:
    view = copy.deepcopy(message)
    if not with_metadata:
        view.pop("metadata", None)
    return view


def _replace_blocks(message: Message, blocks: list[Any]) -> None:
    """``blocks=[]`` clears the blocks, as in Slack; any other list replaces them."""
    if blocks:
        message["blocks"] = blocks
    else:
        message.pop("blocks", None)


def _check_blocks(blocks: Any) -> None:
    if blocks is None:
        return
    valid = isinstance(blocks, list) and all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)
    if not valid or len(blocks) > MAX_BLOCKS:
        raise SlackMethodError("invalid_blocks")


def _checked_metadata(metadata: Any) -> Params:
    valid = (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and isinstance(metadata.get("event_payload"), dict)
    )
    if not valid:
        raise SlackMethodError("invalid_metadata_format")
    return copy.deepcopy(metadata)


def _file_summary(file: UploadedFile) -> Params:
    return {"id": file.id, "name": file.filename, "title": file.title or file.filename, "size": file.length}


def _within(ts: str, oldest: Decimal, latest: Decimal, inclusive: bool) -> bool:
    value = Decimal(ts)
    return oldest <= value <= latest if inclusive else oldest < value < latest


def _ts_bound(value: Any, default: Decimal, error: str) -> Decimal:
    if value in (None, ""):
        return default
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise SlackMethodError(error) from None


def _flag(value: Any) -> bool:
    return value in (True, 1, "1", "true")


def _optional_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _positive_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _cursor_offset(cursor: Any) -> int:
    if not cursor:
        return 0
    prefix, _, offset = str(cursor).partition(":")
    if prefix != "next" or not offset.isdigit():
        raise SlackMethodError("invalid_cursor")
    return int(offset)


def _split(channels: Any) -> list[str]:
    return [channel for channel in str(channels or "").split(",") if channel]


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A running ``FakeSlack`` with the default token and channels; stopped after the test."""
    with FakeSlack() as fake:
        yield fake


#: the modules whose ``time.sleep`` makes the SDK's retry pauses
_RETRY_CLOCKS = ("slack_sdk.http_retry.builtin_handlers", "slack_sdk.http_retry.handler")


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The SDK's retry pauses, recorded instead of slept: ask for it, or mark a module with
    ``pytest.mark.usefixtures("sleeps")``, and no test waits on a retry."""
    recorded: list[float] = []
    clock = SimpleNamespace(sleep=recorded.append)
    for module in _RETRY_CLOCKS:
        monkeypatch.setattr(f"{module}.time", clock)
    return recorded


@contextlib.contextmanager
def recorded_sleeps() -> Iterator[list[float]]:
    """The ``sleeps`` fixture outside pytest: within the block, the SDK's retry pauses are
    appended to the list it gives instead of slept."""
    import importlib

    recorded: list[float] = []
    modules = [importlib.import_module(name) for name in _RETRY_CLOCKS]
    saved = [module.time for module in modules]  # type: ignore[attr-defined]
    for module in modules:
        module.time = SimpleNamespace(sleep=recorded.append)  # type: ignore[attr-defined]
    try:
        yield recorded
    finally:
        for module, clock in zip(modules, saved):
            module.time = clock  # type: ignore[attr-defined]
