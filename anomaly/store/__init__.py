"""The store: metrics, change history, pulls, incidents, the alert outbox and silences (SQLAlchemy Core).

A SQLite file by default, PostgreSQL by URL; the same statements serve both. Metrics are upserted
on their natural key, so restated data overwrites. Each write is one transaction: a batch that
fails leaves the store as it was.

The package, by concern: ``tables`` (the schema), ``migrations`` (each version step),
``engine`` (engine settings, URLs without passwords, failures as ``StoreError``), ``base`` (the
engine, the schema check and the upsert every part shares), ``data`` (metrics, changes, inferred
ownership and pulls), ``incidents_outbox`` (incidents, the outbox, reminders), ``handovers``
(each change of managing party, its frozen reference figures and its message), ``silencing``
(silences), ``lock`` (the service lock), ``completeness`` (how late each account's leads
arrive: the leads each pull first saw of a day), ``source_files`` (the content hash of each file
a source has read) and ``known_ids`` (the account and campaign ids the metrics hold). ``Store`` is
all of them; every name is importable from ``anomaly.store`` as before.
"""

from anomaly.store.base import StoreBase, utcnow
from anomaly.store.completeness import COMPLETENESS_COLUMNS, SETTLED_DAYS, CompletenessStore
from anomaly.store.data import IDENTITY_COLUMNS, DataStore, IngestResult, PullRecord
from anomaly.store.engine import SQLITE_TIMEOUT_SECONDS, StoreError, _explain_failure, describe_url, make_engine
from anomaly.store.handovers import HANDOVER_EVENT, HandoverStore, HandoverWrite
from anomaly.store.incidents_outbox import REMINDED_AFTER, IncidentStore, IncidentWrite, OutboxItem, SentMessage
from anomaly.store.known_ids import KnownIds, KnownIdStore, peek_known_ids
from anomaly.store.lock import LockStore, ServiceLock
from anomaly.store.migrations import SCHEMA_VERSION
from anomaly.store.silencing import Silence, SilenceStore
from anomaly.store.source_files import FILE_STATUSES, SourceFile, SourceFileStore
from anomaly.store.tables import (
    SERVICE_LOCK,
    changes,
    handovers,
    incidents,
    inferred_ownership,
    leads_seen,
    metadata,
    metrics,
    outbox,
    pulls,
    schema_version,
    service_lock,
    silences,
    source_files,
)


class Store(DataStore, CompletenessStore, HandoverStore, IncidentStore, SilenceStore, LockStore, SourceFileStore, KnownIdStore):
    """All persistence. Construct with a SQLAlchemy URL; call ``migrate()`` once before use."""


__all__ = [
    "COMPLETENESS_COLUMNS",
    "HANDOVER_EVENT",
    "FILE_STATUSES",
    "IDENTITY_COLUMNS",
    "REMINDED_AFTER",
    "SCHEMA_VERSION",
    "SERVICE_LOCK",
    "SETTLED_DAYS",
    "SQLITE_TIMEOUT_SECONDS",
    "CompletenessStore",
    "DataStore",
    "HandoverStore",
    "HandoverWrite",
    "IncidentStore",
    "IncidentWrite",
    "IngestResult",
    "KnownIdStore",
    "KnownIds",
    "LockStore",
    "OutboxItem",
    "PullRecord",
    "SentMessage",
    "ServiceLock",
    "Silence",
    "SilenceStore",
    "SourceFile",
    "SourceFileStore",
    "Store",
    "StoreBase",
    "StoreError",
    "changes",
    "describe_url",
    "handovers",
    "incidents",
    "inferred_ownership",
    "leads_seen",
    "make_engine",
    "metadata",
    "metrics",
    "outbox",
    "peek_known_ids",
    "pulls",
    "schema_version",
    "service_lock",
    "silences",
    "source_files",
    "utcnow",
]
