"""Reaching the database: the engine's settings, store URLs shown without their password, and the
database failures that need someone to act turned into a ``StoreError``."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anomaly.errors import AnomalyError


class StoreError(AnomalyError):
    """The store cannot be used (unreachable database, a schema from a newer version)."""


#: a password given in the query of a PostgreSQL URL, as libpq (and so psycopg) reads it
_PASSWORD_PARAMETER = re.compile(r"([?&](?:password|sslpassword)=)[^&#]*", re.IGNORECASE)
_MISREAD_PASSWORD = (
    "the URL does not read as meant: its user name or password seems to hold an '@' that must be percent-encoded "
    "(%40; also ':' as %3A and '/' as %2F)"
)


def describe_url(url: str) -> str:
    """A database URL with its password hidden, for messages: the password of the user info, also
    one holding an '@' that was not percent-encoded, and a password in the query (``?password=``)."""
    scheme, _, rest = url.partition("://")
    if rest.count("@") > 1:
        # read up to the last '@' as the user info: read up to the first, as URL parsers do, the
        # rest of such a password would show as the host or the database
        userinfo, _, location = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        return f"{scheme}://{user}{':***' if colon else ''}@" + _PASSWORD_PARAMETER.sub(r"\1***", location)
    try:
        rendered = sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return f"{scheme}://… (a URL that does not parse)"
    return _PASSWORD_PARAMETER.sub(r"\1***", rendered)


def _password_misread(url: str) -> bool:
    """Whether the URL parser reads a password other than the one up to the last '@': a password
    holding an '@' that was not percent-encoded, the rest of it taken for the host or the database."""
    rest = url.partition("://")[2]
    if rest.count("@") < 2:
        return False
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return True
    return parsed.password is not None and parsed.password != rest.rpartition("@")[0].partition(":")[2]


#: How long a SQLite write waits for another connection's write lock before it fails, unless the
#: URL says (``sqlite:///anomaly.db?timeout=60``).
SQLITE_TIMEOUT_SECONDS = 30


def make_engine(url: str) -> Engine:
    """An engine with settings that let an analyst read while the service writes (SQLite WAL), and
    that turns the database's failures that need someone to act (a lock held too long, a full disk)
    into a StoreError. A failed statement's error never quotes the values it was given (an alert's
    payload, a campaign's name): only the statement and the database's message."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        waits = {} if "timeout" in parsed.query else {"timeout": SQLITE_TIMEOUT_SECONDS}
        engine = sa.create_engine(url, connect_args=waits, hide_parameters=True)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001 - DB-API connection
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    else:
        engine = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)
    sa.event.listen(engine, "handle_error", _explain_failure)
    return engine


#: What the database says, in lower case → what it means for whoever runs the service.
_FAILURES = (
    ("database is locked", "another connection held a write lock on it for too long (an open write transaction, a backup?); "
     "the SQLite URL's ?timeout= sets how long a write waits"),
    ("database table is locked", "another connection held a lock on it for too long"),
    ("database or disk is full", "the disk (or the database's size limit) is full"),
    ("no space left on device", "the disk is full"),
    ("could not extend file", "the disk is full"),
    ("disk i/o error", "the disk failed to read or write"),
    ("attempt to write a readonly database", "the database file or its folder is read-only for this user"),
    ("lock timeout", "another connection held a lock on it for too long"),
)


def _explain_failure(context) -> None:  # noqa: ANN001 - sqlalchemy.engine.ExceptionContext
    """Raise a StoreError in place of a database failure that needs someone to act (a lock held
    too long, a full disk): what happened, to which store, and that the statement's transaction was
    rolled back, so nothing of it was written. Other errors pass through unchanged."""
    original = context.original_exception
    text = str(original).lower()
    for symptom, meaning in _FAILURES:
        if symptom in text:
            # hide_password alone would show a password given in the URL's query
            where = describe_url(context.engine.url.render_as_string(hide_password=False)) if context.engine is not None else "the store"
            first_line = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
            raise StoreError(f"the store at {where} could not be written: {meaning} ({first_line}); nothing of this write was kept") from None
