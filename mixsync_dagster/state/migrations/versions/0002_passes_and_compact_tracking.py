"""Schema v4: a pass row per sync (owner, fencing token, position) and compact tracking.

- `mixsync_passes` replaces the lease and the sensor cursor's position.
- `mixsync_tracked` replaces `mixsync_tracked_files`: keyed by an integer sync id, with 64-bit
  hashes of the fingerprint and filter hash and a small status code. Every row is kept; the
  hashes are taken of the same strings 0.1 stored, so no file is re-synced or re-checked.
- Work lists and work items are gone (runs list and stream; nothing is planned ahead), as is the
  lease (the pass row's claim replaces it) and the `mixsync_schema` version row (Alembic).
- Batches and failures keep every row, re-keyed by sync id.
- Local bucket objects keep every row; `blob_url` (which could hold presigned URLs with a
  credential in them) becomes `uri`, the same URL without its query string.

Revision ID: 0002
Revises: 0001
"""

import hashlib
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHUNK = 5_000
STATUS = {"pending": 0, "creating": 0, "synced": 1, "excluded": 2, "retry": 3, "failed": 4}


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), signed=True)


def _v4(md: sa.MetaData) -> dict[str, sa.Table]:
    dt = sa.DateTime(timezone=True)
    tables = [
        sa.Table(
            "mixsync_syncs",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(64), nullable=False, unique=True),
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
            sa.Column("pass_seq", sa.Integer, nullable=False),
            sa.Column("updated_at", dt),
        ),
        sa.Table(
            "mixsync_passes",
            md,
            sa.Column("sync_id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("pass_no", sa.Integer, nullable=False),
            sa.Column("pass_uid", sa.String(16), nullable=False),
            sa.Column("state", sa.String(12), nullable=False),
            sa.Column("token", sa.BigInteger, nullable=False),
            sa.Column("owner", sa.String(200)),
            sa.Column("claim_expires_at", dt),
            sa.Column("started_at", dt, nullable=False),
            sa.Column("finished_at", dt),
            sa.Column("position", sa.Text),
            sa.Column("listing_done", sa.Boolean, nullable=False),
            sa.Column("stamps_seen", sa.Boolean, nullable=False),
            sa.Column("runs_requested", sa.Integer, nullable=False),
            sa.Column("failures", sa.Integer, nullable=False),
            sa.Column("retry_at", dt),
            sa.Column("last_error", sa.Text),
            sa.Column("listed", sa.BigInteger, nullable=False),
            sa.Column("synced", sa.BigInteger, nullable=False),
            sa.Column("excluded", sa.BigInteger, nullable=False),
            sa.Column("failed", sa.BigInteger, nullable=False),
            sa.Column("deleted", sa.BigInteger, nullable=False),
            sa.Column("bytes", sa.BigInteger, nullable=False),
        ),
        sa.Table(
            "mixsync_tracked",
            md,
            sa.Column("sync_id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("source_key", sa.Text, primary_key=True),
            sa.Column("fp", sa.BigInteger, nullable=False),
            sa.Column("status", sa.SmallInteger, nullable=False),
            sa.Column("object_id", sa.Text),
            sa.Column("filter_hash", sa.BigInteger),
            sa.Column("last_seen", sa.Integer),
            sa.Column("attempts", sa.SmallInteger, nullable=False),
            sa.Column("next_attempt_at", dt),
            sa.Column("last_error", sa.Text),
            sqlite_with_rowid=False,
        ),
        sa.Table(
            "mixsync_batches",
            md,
            sa.Column("batch_id", sa.String(80), primary_key=True),
            sa.Column("sync_id", sa.Integer, nullable=False),
            sa.Column("pass_no", sa.Integer, nullable=False),
            sa.Column("object_count", sa.Integer, nullable=False),
            sa.Column("task_id", sa.Text),
            sa.Column("created_at", dt, nullable=False),
            sa.Column("remote_status", sa.String(32)),
            sa.Column("checked_at", dt),
            sa.Index("ix_mixsync_batches_sync_created", "sync_id", "created_at"),
        ),
        sa.Table(
            "mixsync_failures",
            md,
            sa.Column("key", sa.String(200), primary_key=True),
            sa.Column("sync_id", sa.Integer, nullable=False),
            sa.Column("error", sa.Text),
            sa.Column("at", dt, nullable=False),
            sa.Index("ix_mixsync_failures_sync_at", "sync_id", "at"),
        ),
    ]
    return {t.name: t for t in tables}


def _rename_out_of_the_way(bind: sa.Connection, name: str) -> str:
    old = f"{name}_v3"
    op.rename_table(name, old)
    if bind.dialect.name == "postgresql":
        # PostgreSQL keeps constraint and index names across a table rename; free them.
        for idx in sa.inspect(bind).get_indexes(old):
            op.execute(f'ALTER INDEX "{idx["name"]}" RENAME TO "{idx["name"]}_v3"')
        pk = sa.inspect(bind).get_pk_constraint(old).get("name")
        if pk:
            op.execute(f'ALTER INDEX "{pk}" RENAME TO "{pk}_v3"')
    return old


def _strip_query(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def upgrade() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    old = {
        n: _rename_out_of_the_way(bind, n)
        for n in ("mixsync_syncs", "mixsync_batches", "mixsync_failures")
    }
    new = _v4(sa.MetaData())
    for table in new.values():
        table.create(bind)
    v3 = sa.MetaData()
    o_syncs = sa.Table(old["mixsync_syncs"], v3, autoload_with=bind)
    o_tracked = sa.Table("mixsync_tracked_files", v3, autoload_with=bind)
    o_batches = sa.Table(old["mixsync_batches"], v3, autoload_with=bind)
    o_failures = sa.Table(old["mixsync_failures"], v3, autoload_with=bind)

    # Syncs: every sync named anywhere gets an id (0.1 created the row on first use).
    names = {r.name for r in bind.execute(sa.select(o_syncs.c.name))}
    for table, col in ((o_tracked, "sync"), (o_batches, "sync"), (o_failures, "sync")):
        names |= {r[0] for r in bind.execute(sa.select(table.c[col]).distinct())}
    rows = {row.name: row._mapping for row in bind.execute(sa.select(o_syncs))}
    syncs = new["mixsync_syncs"]
    for name in sorted(names):
        r = rows.get(name)
        bind.execute(
            syncs.insert().values(
                name=name,
                status=r["status"] if r else "PENDING",
                total_files_discovered=r["total_files_discovered"] if r else 0,
                total_files_synced=r["total_files_synced"] if r else 0,
                total_files_failed=r["total_files_failed"] if r else 0,
                total_bytes_synced=r["total_bytes_synced"] if r else 0,
                last_sync_at=r["last_sync_at"] if r else None,
                next_sync_at=r["next_sync_at"] if r else None,
                consecutive_failures=r["consecutive_failures"] if r else 0,
                last_error=r["last_error"] if r else None,
                trigger_requested_at=r["trigger_requested_at"] if r else None,
                passes_completed=r["passes_completed"] if r else 0,
                pass_seq=0,
                updated_at=now,
            )
        )
    ids = {r.name: r.id for r in bind.execute(sa.select(syncs.c.name, syncs.c.id))}

    # Tracking, streamed in chunks: a million rows never sit in memory at once.
    tracked = new["mixsync_tracked"]
    q = sa.select(o_tracked).order_by(o_tracked.c.sync, o_tracked.c.source_key)
    batch: list[dict[str, object]] = []
    for t in bind.execute(q.execution_options(yield_per=CHUNK)):
        batch.append(
            {
                "sync_id": ids[t.sync],
                "source_key": t.source_key,
                "fp": hash64(t.fingerprint),
                "status": STATUS.get(t.status, 0),
                "object_id": t.object_id,
                "filter_hash": hash64(t.filter_hash) if t.filter_hash else None,
                "last_seen": None,
                "attempts": t.attempts,
                "next_attempt_at": t.next_attempt_at,
                "last_error": t.last_error,
            }
        )
        if len(batch) >= CHUNK:
            bind.execute(tracked.insert(), batch)
            batch = []
    if batch:
        bind.execute(tracked.insert(), batch)

    for b in bind.execute(sa.select(o_batches)):
        bind.execute(
            new["mixsync_batches"]
            .insert()
            .values(
                batch_id=b.batch_id,
                sync_id=ids[b.sync],
                pass_no=0,
                object_count=b.object_count,
                task_id=b.task_id,
                created_at=b.created_at or b.submitted_at or now,
                remote_status=b.remote_status or ("DRAFT" if b.status == "created" else None),
                checked_at=b.checked_at,
            )
        )
    for f in bind.execute(sa.select(o_failures)):
        bind.execute(
            new["mixsync_failures"]
            .insert()
            .values(key=f.key, sync_id=ids[f.sync], error=f.error, at=f.at or now)
        )

    # Local bucket: a stable locator instead of a URL that may carry a signature.
    op.add_column("local_bucket_objects", sa.Column("uri", sa.Text))
    objects = sa.Table("local_bucket_objects", sa.MetaData(), autoload_with=bind)
    set_uri = (
        objects.update()
        .where(objects.c.object_id == sa.bindparam("oid"))
        .values(uri=sa.bindparam("new_uri"))
    )
    last = ""
    while True:  # keyset pages: the table being updated is never iterated while it changes
        page = bind.execute(
            sa.select(objects.c.object_id, objects.c.blob_url)
            .where(objects.c.object_id > last)
            .order_by(objects.c.object_id)
            .limit(CHUNK)
        ).all()
        if not page:
            break
        bind.execute(
            set_uri, [{"oid": r.object_id, "new_uri": _strip_query(r.blob_url)} for r in page]
        )
        last = page[-1].object_id
    op.execute("ALTER TABLE local_bucket_objects DROP COLUMN blob_url")

    for name in (
        *old.values(),
        "mixsync_tracked_files",
        "mixsync_work_items",
        "mixsync_work_lists",
        "mixsync_leases",
        "mixsync_schema",
    ):
        op.drop_table(name)
