"""The state store's tables, its engines, and creating or migrating the schema on first use."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 3
STATUSES = ("PENDING", "ACTIVE", "PAUSED", "SUSPENDED", "COMPLETED", "FAILED")

metadata = MetaData()

schema_info = Table(
    "mixsync_schema",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

syncs = Table(
    "mixsync_syncs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("status", String(16), nullable=False, default="PENDING"),
    Column("total_files_discovered", BigInteger, nullable=False, default=0),
    Column("total_files_synced", BigInteger, nullable=False, default=0),
    Column("total_files_failed", BigInteger, nullable=False, default=0),
    Column("total_bytes_synced", BigInteger, nullable=False, default=0),
    Column("last_sync_at", DateTime(timezone=True)),
    Column("next_sync_at", DateTime(timezone=True)),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("trigger_requested_at", DateTime(timezone=True)),
    Column("passes_completed", Integer, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True)),
)

tracked = Table(
    "mixsync_tracked_files",
    metadata,
    Column("sync", String(64), primary_key=True),
    Column("source_key", Text, primary_key=True),
    Column("fingerprint", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | synced | excluded | failed
    Column("object_id", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("size_bytes", BigInteger, nullable=False, default=0),
    Column("filter_hash", String(32)),
    Column("last_seen_pass", String(64)),
    Column("next_attempt_at", DateTime(timezone=True)),  # v2: dead-letter backoff
    Column("updated_at", DateTime(timezone=True)),
)

work_lists = Table(
    "mixsync_work_lists",
    metadata,
    Column("id", String(160), primary_key=True),
    Column("sync", String(64), nullable=False, index=True),
    Column("pass_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # pending | done
    Column("item_count", Integer, nullable=False),
    Column("final", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)

work_items = Table(
    "mixsync_work_items",
    metadata,
    Column("work_id", String(160), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("source_key", Text, nullable=False),
    Column("item", Text, nullable=False),  # FileItem.to_json()
    Column("action", String(16), nullable=False),  # new | changed | resend | retry | recheck
    Column("status", String(16), nullable=False),
    # pending | accepted | excluded | synced | failed | vanished
    Column("object_id", Text),
    Column("batch_id", Text),
    Column("reason", Text),
    Column("fields", JSON),
)

leases = Table(
    "mixsync_leases",
    metadata,
    Column("sync", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),  # run id @ worker
    Column("acquired_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

failures = Table(
    "mixsync_failures",
    metadata,
    Column("key", String(200), primary_key=True),  # a run id, or a tick id
    Column("sync", String(64), nullable=False, index=True),
    Column("error", Text),
    Column("at", DateTime(timezone=True)),
)

batches = Table(
    "mixsync_batches",
    metadata,
    Column("batch_id", String(80), primary_key=True),
    Column("sync", String(64), nullable=False, index=True),
    Column("work_id", String(160), nullable=False, index=True),
    Column("status", String(16), nullable=False),  # created | submitted
    Column("object_count", Integer, nullable=False),
    Column("task_id", Text),
    Column("created_at", DateTime(timezone=True)),
    Column("submitted_at", DateTime(timezone=True)),
    Column("remote_status", String(32)),  # v3: the bucket's word on the batch, when refreshed
    Column("checked_at", DateTime(timezone=True)),
)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes for timezone-aware columns; they were stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: str) -> Engine:
    """One engine per URL per process, schema ensured on first use."""
    with _engines_lock:
        eng = _engines.get(url)
        if eng is None:
            eng = _make_engine(url)
            ensure_schema(eng)
            _engines[url] = eng
        return eng


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        eng = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            # WAL lets the sensor read while a run writes; busy timeout rides out short locks.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        return eng
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


SCHEMA_LOCK_ID = 0x6D697873  # "mixs": serializes first-use DDL across processes on PostgreSQL


def ensure_schema(eng: Engine) -> None:
    """Create missing tables, add missing columns, record the version. Safe to race.

    On PostgreSQL the DDL runs under a transaction-scoped advisory lock, so two processes
    starting together do not both create the same table; on SQLite the loser of a race
    retries once (its transaction then sees the winner's tables).
    """
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(2):
        try:
            _ensure_schema_once(eng)
            return
        except (IntegrityError, OperationalError, ProgrammingError):
            if attempt:
                raise


def _ensure_schema_once(eng: Engine) -> None:
    from sqlalchemy import inspect

    from mixsync_dagster.targets.local import local_metadata

    with eng.begin() as c:
        if c.dialect.name == "postgresql":
            c.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_ID})")
        metadata.create_all(c, checkfirst=True)
        local_metadata.create_all(c, checkfirst=True)
        insp = inspect(c)
        for table in [*metadata.sorted_tables, *local_metadata.sorted_tables]:
            _add_missing_columns(c, insp, table)
        row = c.execute(select(schema_info.c.version).where(schema_info.c.id == 1)).first()
        if row is None:
            c.execute(insert(schema_info).values(id=1, version=SCHEMA_VERSION))
        elif row.version > SCHEMA_VERSION:
            raise RuntimeError(
                f"state store schema v{row.version} is newer than this mixsync (v{SCHEMA_VERSION})"
            )
        elif row.version < SCHEMA_VERSION:
            c.execute(
                update(schema_info).where(schema_info.c.id == 1).values(version=SCHEMA_VERSION)
            )


def _add_missing_columns(c: Connection, insp: Any, table: Table) -> None:
    """Additive migrations: a column added in a later version is added to an older database.

    Only nullable columns are ever added this way; anything else gets an explicit migration.
    """
    from sqlalchemy.schema import CreateColumn

    present = {col["name"] for col in insp.get_columns(table.name)}
    for col in table.columns:
        if col.name not in present:
            ddl = CreateColumn(col).compile(dialect=c.dialect)
            c.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
