"""The schema of mixsync 0.1 (v3), as it was created on first use before Alembic.

On an empty database this creates the v3 tables; on a database made by 0.1 it adds the columns
that v1 and v2 databases lack, so every database leaves this revision at exactly v3.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _v3(md: sa.MetaData) -> list[sa.Table]:
    dt = sa.DateTime(timezone=True)
    return [
        sa.Table(
            "mixsync_schema",
            md,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("version", sa.Integer, nullable=False),
        ),
        sa.Table(
            "mixsync_syncs",
            md,
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("total_files_discovered", sa.BigInteger, nullable=False),
            sa.Column("total_files_synced", sa.BigInteger, nullable=False),
            sa.Column("total_files_failed", sa.BigInteger, nullable=False),
            sa.Column("total_bytes_synced", sa.BigInteger, nullable=False),
            sa.Column("last_sync_at", dt),
            sa.Column("next_sync_at", dt),
            sa.Column("consecutive_failures", sa.Integer, nullable=False),
            sa.Column("last_error", sa.Text),
            sa.Column("trigger_requested_at", dt),
            sa.Column("passes_completed", sa.Integer, nullable=False),
            sa.Column("updated_at", dt),
        ),
        sa.Table(
            "mixsync_tracked_files",
            md,
            sa.Column("sync", sa.String(64), primary_key=True),
            sa.Column("source_key", sa.Text, primary_key=True),
            sa.Column("fingerprint", sa.Text, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("object_id", sa.Text),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("last_error", sa.Text),
            sa.Column("size_bytes", sa.BigInteger, nullable=False),
            sa.Column("filter_hash", sa.String(32)),
            sa.Column("last_seen_pass", sa.String(64)),
            sa.Column("next_attempt_at", dt),
            sa.Column("updated_at", dt),
        ),
        sa.Table(
            "mixsync_work_lists",
            md,
            sa.Column("id", sa.String(160), primary_key=True),
            sa.Column("sync", sa.String(64), nullable=False, index=True),
            sa.Column("pass_id", sa.String(64), nullable=False),
            sa.Column("seq", sa.Integer, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("item_count", sa.Integer, nullable=False),
            sa.Column("final", sa.Boolean, nullable=False),
            sa.Column("created_at", dt),
            sa.Column("finished_at", dt),
        ),
        sa.Table(
            "mixsync_work_items",
            md,
            sa.Column("work_id", sa.String(160), primary_key=True),
            sa.Column("idx", sa.Integer, primary_key=True),
            sa.Column("source_key", sa.Text, nullable=False),
            sa.Column("item", sa.Text, nullable=False),
            sa.Column("action", sa.String(16), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("object_id", sa.Text),
            sa.Column("batch_id", sa.Text),
            sa.Column("reason", sa.Text),
            sa.Column("fields", sa.JSON),
        ),
        sa.Table(
            "mixsync_leases",
            md,
            sa.Column("sync", sa.String(64), primary_key=True),
            sa.Column("holder", sa.String(200), nullable=False),
            sa.Column("acquired_at", dt),
            sa.Column("expires_at", dt, nullable=False),
        ),
        sa.Table(
            "mixsync_failures",
            md,
            sa.Column("key", sa.String(200), primary_key=True),
            sa.Column("sync", sa.String(64), nullable=False, index=True),
            sa.Column("error", sa.Text),
            sa.Column("at", dt),
        ),
        sa.Table(
            "mixsync_batches",
            md,
            sa.Column("batch_id", sa.String(80), primary_key=True),
            sa.Column("sync", sa.String(64), nullable=False, index=True),
            sa.Column("work_id", sa.String(160), nullable=False, index=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("object_count", sa.Integer, nullable=False),
            sa.Column("task_id", sa.Text),
            sa.Column("created_at", dt),
            sa.Column("submitted_at", dt),
            sa.Column("remote_status", sa.String(32)),
            sa.Column("checked_at", dt),
        ),
        sa.Table(
            "local_bucket_objects",
            md,
            sa.Column("object_id", sa.String(40), primary_key=True),
            sa.Column("bucket", sa.String(64), nullable=False),
            sa.Column("source_ref", sa.Text, nullable=False),
            sa.Column("source_key", sa.Text, nullable=False),
            sa.Column("blob_url", sa.Text),
            sa.Column("mime_type", sa.String(255)),
            sa.Column("size_bytes", sa.BigInteger, nullable=False),
            sa.Column("sha256", sa.String(64)),
            sa.Column("fingerprint", sa.Text, nullable=False),
            sa.Column("metadata", sa.JSON, nullable=False),
            sa.Column("fields", sa.JSON, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("created_at", dt),
            sa.Column("updated_at", dt),
            sa.UniqueConstraint("bucket", "source_ref", name="uq_local_object_source"),
        ),
        sa.Table(
            "local_bucket_batches",
            md,
            sa.Column("batch_id", sa.String(40), primary_key=True),
            sa.Column("bucket", sa.String(64), nullable=False),
            sa.Column("object_ids", sa.JSON, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("task_id", sa.String(40)),
            sa.Column("created_at", dt),
            sa.Column("submitted_at", dt),
            sa.Column("completed_at", dt),
        ),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    tables = _v3(sa.MetaData())
    insp = sa.inspect(bind)
    for table in tables:
        if not insp.has_table(table.name):
            table.create(bind)
            continue
        # A v1 or v2 database: add the nullable columns later versions brought.
        present = {c["name"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name not in present:
                op.add_column(table.name, col.copy())
    version = bind.execute(sa.text("SELECT version FROM mixsync_schema WHERE id = 1")).first()
    if version is None:
        bind.execute(sa.text("INSERT INTO mixsync_schema (id, version) VALUES (1, 3)"))
    elif version[0] > 3:
        raise RuntimeError(f"state store schema v{version[0]} is newer than this mixsync knows")
    else:
        bind.execute(sa.text("UPDATE mixsync_schema SET version = 3 WHERE id = 1"))
