"""Configured secrets kept out of text that leaves the process: error messages stored or reported,
tracebacks, log records.

``load_config`` remembers the secrets of every config it loads (``remember``): the Slack tokens,
signing secret and webhook URL, and each environment value inside a secret setting (a database
password in the store's URL). ``redact`` writes each one, as it is or URL-quoted, as the reference
that brought it in (``${SLACK_WEBHOOK_URL}``) or, for one written in the file, as its setting's
path (``<alerts.sinks[2].token>``). The sinks keep secrets out of their own errors; this is what
catches the rest, such as a library's exception that quotes the URL it was given.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Mapping
from urllib.parse import quote, quote_plus

_lock = threading.Lock()
#: every form of a remembered secret -> what stands for it, the longest first
_forms: dict[str, str] = {}


def remember(secrets: Mapping[str, str]) -> None:
    """Redact each secret (key) as its label (value) from now on, in this process."""
    global _forms
    with _lock:
        forms = dict(_forms)
        for secret, label in secrets.items():
            for form in (secret, quote(secret, safe=""), quote(secret), quote_plus(secret)):
                forms.setdefault(form, label)
        # replaced whole, never changed in place: a thread redacting meanwhile sees the old or the new
        _forms = dict(sorted(forms.items(), key=lambda item: len(item[0]), reverse=True))


def redact(text: str) -> str:
    """``text`` with every remembered secret replaced by its label."""
    for form, label in _forms.items():
        if form in text:
            text = text.replace(form, label)
    return text


def redacted_traceback(error: BaseException) -> str:
    """``error``'s traceback as Python prints it, causes included, redacted."""
    return redact("".join(traceback.format_exception(error)))


class RedactingFilter(logging.Filter):
    """Redacts a record's message and its traceback. On a handler, it covers every record the
    handler writes, libraries' included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redacted_traceback(record.exc_info[1]).rstrip("\n")
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def redact_logs(logger: logging.Logger | None = None) -> None:
    """Put the redacting filter on every handler of ``logger`` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
