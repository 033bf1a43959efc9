"""Shared fixtures: a store on every supported backend.

``store_url`` runs a test once on a SQLite file and once on PostgreSQL. Each PostgreSQL test gets
a schema of its own (``t_<hex>``), selected for every connection through libpq's ``options``, and
dropped afterwards. An unreachable server skips those tests, except on CI (``CI=true``), where it
fails them: a CI run that silently tested SQLite only would be a lie.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from anomaly.store import Store

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database that belongs to this test alone."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    admin: sa.Engine = request.getfixturevalue("postgres_admin")
    schema = f"t_{uuid.uuid4().hex}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    options = " ".join(filter(None, [admin.url.query.get("options"), f"-csearch_path={schema}"]))
    try:
        yield admin.url.update_query_dict({"options": options}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            # a connection a test left open would make DROP wait for ever: fail instead
            conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated ``Store`` on ``store_url``; its engine is disposed after the test."""
    store = Store(store_url)
    try:
        store.migrate()
        yield store
    finally:
        store.engine.dispose()


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    """An engine on the test server that creates and drops the per-test schemas.

    Reached once per session, so an unreachable server costs one connect timeout, not one per test.
    """
    url = sa.make_url(os.environ.get("ANOMALY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    try:
        admin = sa.create_engine(url, connect_args={"connect_timeout": 3}, pool_size=1)
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (sa.exc.OperationalError, sa.exc.InterfaceError, ImportError) as exc:
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        message = f"PostgreSQL not reachable at {url.render_as_string(hide_password=True)}: {reason}; set ANOMALY_TEST_POSTGRES_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    yield admin
    admin.dispose()


@pytest.fixture(scope="session")
def demo_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the embedded default after `anomaly demo`: its config.yaml, for tests that only
    read the demo's store (each test that changes a store makes its own)."""
    import contextlib
    import io

    from anomaly.cli import main
    from tests.helpers import copy_default_project

    config = copy_default_project(tmp_path_factory.mktemp("demo"))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--config", str(config), "demo"]) == 0
    return config
