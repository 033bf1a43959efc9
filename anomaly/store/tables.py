"""The store's tables (SQLAlchemy Core): what each row holds and its key."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("campaign_id", sa.String(64), primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("hour", sa.SmallInteger, primary_key=True),  # -1 = the whole day
    sa.Column("account_name", sa.Text, nullable=False),
    sa.Column("campaign_name", sa.Text, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("spend", sa.Float, nullable=False),
    sa.Column("impressions", sa.BigInteger, nullable=False),
    sa.Column("clicks", sa.BigInteger, nullable=False),
    sa.Column("leads", sa.Float, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("change_key", sa.String(40), primary_key=True),  # sha1 of the row: the same change stored once
    sa.Column("changed_at", sa.DateTime, nullable=False, index=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("campaign_id", sa.String(64), nullable=False),
    sa.Column("user_email", sa.Text, nullable=False),
    sa.Column("client_type", sa.String(40), nullable=False, server_default=""),
    sa.Column("resource_type", sa.Text, nullable=False),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("changed_fields", sa.Text, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
)

pulls = sa.Table(
    "pulls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(64), nullable=False, index=True),
    sa.Column("start", sa.Date, nullable=False),
    sa.Column("end", sa.Date, nullable=False),
    sa.Column("metric_rows", sa.Integer, nullable=False),
    sa.Column("change_rows", sa.Integer, nullable=False),
    sa.Column("pulled_at", sa.DateTime, nullable=False),
    # False when some accounts could not be pulled: such a pull does not move the source's cursor
    sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.true()),
    # True when the source's files held no rows (none found, or each empty): not complete either
    sa.Column("no_rows", sa.Boolean, nullable=False, server_default=sa.false()),
)

# each file a file source (CSV) has read: its content hash tells a new or changed file, read in
# full, from an unchanged one, read for the look-back only; and what the last pull that found it saw
source_files = sa.Table(
    "source_files",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("path", sa.Text, primary_key=True),  # as the source's config names it (globs expanded)
    sa.Column("kind", sa.String(16), nullable=False),  # metrics | changes
    sa.Column("digest", sa.String(64), nullable=False),  # sha256 of the text last read
    sa.Column("status", sa.String(16), nullable=False),  # in that pull: new | changed | unchanged
    sa.Column("rows", sa.Integer, nullable=False),  # data rows in the file
    sa.Column("stored", sa.Integer, nullable=False),  # rows that pull stored from it
    sa.Column("first_day", sa.Date),  # of its rows (NULL: it has none)
    sa.Column("last_day", sa.Date),
    sa.Column("size", sa.BigInteger, nullable=False),  # bytes
    sa.Column("modified_at", sa.DateTime),  # UTC, the file's modification time
    sa.Column("pull_id", sa.Integer, nullable=False),  # the last pull that found it
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("family", sa.String(64), nullable=False),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("campaign_id", sa.String(64), nullable=False),
    sa.Column("detected_on", sa.Date, nullable=False),
    sa.Column("onset", sa.Date, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | resolved
    sa.Column("last_active", sa.Date, nullable=False),
    sa.Column("resolved_on", sa.Date),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("metric", sa.String(32), nullable=False),
    sa.Column("observed", sa.Float),
    sa.Column("baseline", sa.Float),
    sa.Column("managing_party", sa.String(64)),
    sa.Column("party_since", sa.Date),
    sa.Column("excess_cost", sa.Float, nullable=False),
    sa.Column("notified", sa.Boolean, nullable=False),  # False: found in history, never announced
    sa.Column("acknowledged_at", sa.DateTime),  # UTC: someone took it on (Slack's Acknowledge button)
    sa.Column("acknowledged_by", sa.Text),  # ... who: e.g. "slack:U0123ABCD (Dana)"
    sa.Column("details", sa.Text, nullable=False),  # JSON: names, currency, spend, leads, changes, excess by party
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("family", "account_id", "campaign_id", "detected_on", name="uq_incident"),
)

# a change of managing party, recorded once when a cycle first sees it (see anomaly.handover), with
# the campaigns' figures of the weeks before it, frozen: the reference a probation compares with
handovers = sa.Table(
    "handovers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("campaign_id", sa.String(64), nullable=False),  # "" for the whole account
    sa.Column("start", sa.Date, nullable=False),  # the first day the new party manages it
    sa.Column("from_party", sa.String(64), nullable=False),
    sa.Column("to_party", sa.String(64), nullable=False),
    sa.Column("detected_on", sa.Date, nullable=False),  # the data day of the cycle that first saw it
    sa.Column("notified", sa.Boolean, nullable=False),  # False: found in history, never announced
    sa.Column("details", sa.Text, nullable=False),  # JSON: the message's payload, the reference figures included
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("account_id", "campaign_id", "start", name="uq_handover"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id")),  # NULL for a handover's message ...
    sa.Column("handover_id", sa.Integer, sa.ForeignKey("handovers.id")),  # ... which names its handover here
    sa.Column("event", sa.String(16), nullable=False),  # opened | updated | resolved | reminder | handover
    sa.Column("sink", sa.Text, nullable=False),  # e.g. jsonl:/an/absolute/path, as long as the path
    sa.Column("payload", sa.Text, nullable=False),  # JSON: the alert as the sinks render it
    sa.Column("status", sa.String(16), nullable=False),  # pending | sent | silenced | obsolete
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("sent_at", sa.DateTime),
    sa.Column("channel", sa.Text),  # where the sink put it, when it says (a Slack channel ID) ...
    sa.Column("ts", sa.String(32)),  # ... and the message's id there (Slack ts)
    sa.Column("group_key", sa.Text),  # sent as part of one grouped message: that message's key
)
sa.Index("ix_outbox_pending", outbox.c.status, outbox.c.id)

# who a source found managing an account, from its change history: one row per takeover day
inferred_ownership = sa.Table(
    "inferred_ownership",
    metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("campaign_id", sa.String(64), primary_key=True),  # "" for the whole account
    sa.Column("start", sa.Date, primary_key=True),
    sa.Column("party", sa.String(64), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
)

# notifications to hold back (see anomaly.silences); a NULL matcher matches anything
silences = sa.Table(
    "silences",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account", sa.String(64)),
    sa.Column("campaign", sa.String(64)),
    sa.Column("rule", sa.String(64)),
    sa.Column("party", sa.String(64)),
    sa.Column("until", sa.DateTime, nullable=False),  # UTC, exclusive
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expired_at", sa.DateTime),  # set by `anomaly silence expire`
)

# how many leads each pull first saw for an account-day, so many days after the day: how late a
# platform reports its conversions (see Store.lead_completeness)
leads_seen = sa.Table(
    "leads_seen",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("days_after", sa.SmallInteger, primary_key=True),  # the pull's end − date: 0 .. SETTLED_DAYS
    sa.Column("leads", sa.Float, nullable=False),  # the sum of the account's daily rows that day, as pulled
    sa.Column("pulled_at", sa.DateTime, nullable=False),  # UTC: the first pull that saw it
)

# one row while `anomaly serve` runs: which instance may run jobs on this store
service_lock = sa.Table(
    "service_lock",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),  # always SERVICE_LOCK
    sa.Column("holder", sa.String(200), nullable=False),  # host:pid:random, see anomaly.service
    sa.Column("acquired_at", sa.DateTime, nullable=False),
    sa.Column("heartbeat_at", sa.DateTime, nullable=False),
)
SERVICE_LOCK = "serve"
