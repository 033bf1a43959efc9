"""The account and campaign ids the stored metrics hold: what a rule's scope or a silence can name
and ever match."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from anomaly.store.base import StoreBase
from anomaly.store.engine import StoreError
from anomaly.store.tables import metrics


@dataclass(frozen=True)
class KnownIds:
    """Every account and campaign id in the store's metrics, with its latest name."""

    accounts: dict[str, str] = field(default_factory=dict)  # account id → name
    campaigns: dict[str, tuple[str, str]] = field(default_factory=dict)  # campaign id → (account id, name)

    def __bool__(self) -> bool:
        return bool(self.accounts)


class KnownIdStore(StoreBase):
    """The ids the metrics hold."""

    def known_ids(self) -> KnownIds:
        """Every account and campaign id the metrics hold, each with the name of its latest row."""
        latest = sa.select(
            metrics.c.account_id, metrics.c.campaign_id, metrics.c.account_name, metrics.c.campaign_name, metrics.c.date,
            sa.func.row_number().over(partition_by=[metrics.c.account_id, metrics.c.campaign_id], order_by=metrics.c.date.desc()).label("n"),
        ).subquery()
        query = (
            sa.select(latest.c.account_id, latest.c.campaign_id, latest.c.account_name, latest.c.campaign_name)
            .where(latest.c.n == 1)
            .order_by(latest.c.date)
        )
        accounts: dict[str, str] = {}
        campaigns: dict[str, tuple[str, str]] = {}
        with self.engine.connect() as conn:
            for account_id, campaign_id, account_name, campaign_name in conn.execute(query):  # the latest last
                accounts[account_id] = account_name
                campaigns[campaign_id] = (account_id, campaign_name)
        return KnownIds(dict(sorted(accounts.items())), dict(sorted(campaigns.items())))

    def account_sources(self) -> dict[str, str]:
        """Each account id the metrics hold and the source that stored its latest row (the
        platform it is on follows from the source: see ``anomaly.platforms``)."""
        query = sa.select(metrics.c.account_id, metrics.c.source, sa.func.max(metrics.c.date)).group_by(metrics.c.account_id, metrics.c.source)
        with self.engine.connect() as conn:
            rows = sorted(conn.execute(query).all(), key=lambda row: (row[0], row[2]))  # the latest last
        return {account: source for account, source, _ in rows}


#: How long ``peek_known_ids`` waits for a database server to answer.
PEEK_CONNECT_SECONDS = 5


def peek_known_ids(url: str) -> KnownIds:
    """The ids the store at ``url`` holds, without creating or migrating it: none when nothing is
    there yet (no SQLite file, no tables), when it holds no metrics, or when it cannot be read
    (``anomaly check`` validates a config without the service's database at hand)."""
    from anomaly.store import Store

    try:
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if not parsed.database or parsed.database == ":memory:" or not Path(parsed.database).is_file():
                return KnownIds()
        elif "connect_timeout" not in parsed.query:  # a server out of reach must not hold the check up for minutes
            url = parsed.update_query_dict({"connect_timeout": str(PEEK_CONNECT_SECONDS)}).render_as_string(hide_password=False)
        store = Store(url)
    except (sa.exc.ArgumentError, ValueError, StoreError):
        return KnownIds()
    try:
        with store.engine.connect() as conn:
            if not sa.inspect(conn).has_table(metrics.name):
                return KnownIds()
        return store.known_ids()
    except (sa.exc.SQLAlchemyError, StoreError, OSError):
        return KnownIds()
    finally:
        store.engine.dispose()
