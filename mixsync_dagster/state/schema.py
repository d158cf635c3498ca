"""The state store's tables (schema v4, Alembic revision 0003) and its engines.

Tracking is kept small on purpose: a tracked file costs one row keyed by (sync id, source key)
holding 64-bit hashes of its fingerprint and of the filters that judged it, a status code and
the object id; nothing is written for a file that did not change. Migrations from older schemas
live in `migrations/` (Alembic); `migrate.py` applies them on first use.
"""

from __future__ import annotations

import enum
import hashlib
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    create_engine,
    event,
)

STATUSES = ("PENDING", "ACTIVE", "SUSPENDED", "COMPLETED", "FAILED")
"""Running vs paused is not among them: that is the sync's sensor state in the Dagster instance
(see `dagster/control.py`). The `paused_*` columns only mirror who paused it, for messages."""

metadata = MetaData()

syncs = Table(
    "mixsync_syncs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
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
    Column("pass_seq", Integer, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True)),
    # Mirror of the sensor's stop (schema 0003): who stopped it and when, as mixsync knows it.
    # The sensor's state in the Dagster instance decides; these only explain it.
    Column("paused_by", Text),
    Column("paused_at", DateTime(timezone=True)),
    # A pause carried over from schema 0002's PAUSED status, applied by the sensor's next tick.
    Column("pause_pending", Boolean, nullable=False, default=False),
    # The latest listing by a sensor tick or `mixsync sync` (the `last_listing_succeeded` check).
    Column("last_listing_at", DateTime(timezone=True)),
    Column("last_listing_error", Text),
)

passes = Table(
    "mixsync_passes",
    metadata,
    # One row per sync: its current (or last) pass, and who owns it.
    Column("sync_id", Integer, primary_key=True, autoincrement=False),
    Column("pass_no", Integer, nullable=False),
    Column("pass_uid", String(16), nullable=False),
    Column("state", String(12), nullable=False),  # open | done | given_up
    # Fencing token: moves on every change of owner; every commit checks it.
    Column("token", BigInteger, nullable=False),
    Column("owner", String(200)),
    Column("claim_expires_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("position", Text),
    Column("listing_done", Boolean, nullable=False, default=False),
    Column("stamps_seen", Boolean, nullable=False, default=False),
    Column("runs_requested", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),
    Column("retry_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("listed", BigInteger, nullable=False, default=0),
    Column("synced", BigInteger, nullable=False, default=0),
    Column("excluded", BigInteger, nullable=False, default=0),
    Column("failed", BigInteger, nullable=False, default=0),
    Column("deleted", BigInteger, nullable=False, default=0),
    Column("bytes", BigInteger, nullable=False, default=0),
)

unreported = Table(
    "mixsync_unreported_passes",
    metadata,
    # Passes `mixsync sync` finished without loading Dagster, their numbers kept until the
    # sync's next sensor tick records their observations (migration 0004).
    Column("sync_id", Integer, primary_key=True, autoincrement=False),
    Column("pass_no", Integer, primary_key=True, autoincrement=False),
    Column("status", String(12), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    *(
        Column(name, BigInteger, nullable=False)
        for name in ("listed", "synced", "excluded", "failed", "deleted", "bytes")
    ),
)
UNREPORTED_KEPT = 1_000
"""Passes awaiting their observation kept per sync (newest), should no sensor ever tick."""

tracked = Table(
    "mixsync_tracked",
    metadata,
    Column("sync_id", Integer, primary_key=True, autoincrement=False),
    Column("source_key", Text, primary_key=True),
    Column("fp", BigInteger, nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("object_id", Text),
    Column("filter_hash", BigInteger),
    Column("last_seen", Integer),
    Column("attempts", SmallInteger, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_error", Text),
    sqlite_with_rowid=False,
)

batches = Table(
    "mixsync_batches",
    metadata,
    Column("batch_id", String(80), primary_key=True),
    Column("sync_id", Integer, nullable=False),
    Column("pass_no", Integer, nullable=False),
    Column("object_count", Integer, nullable=False),
    Column("task_id", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("remote_status", String(32)),
    Column("checked_at", DateTime(timezone=True)),
    Index("ix_mixsync_batches_sync_created", "sync_id", "created_at"),
)

failures = Table(
    "mixsync_failures",
    metadata,
    # History of counted failures: one row per failed pass or run (the key makes a second
    # report of the same failure a no-op). Pruned to FAILURE_HISTORY rows per sync.
    Column("key", String(200), primary_key=True),
    Column("sync_id", Integer, nullable=False),
    Column("error", Text),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_mixsync_failures_sync_at", "sync_id", "at"),
)

BATCH_HISTORY = 1_000
"""Batches remembered per sync (newest kept): enough for `status` and refreshes."""
FAILURE_HISTORY = 100
"""Counted failures remembered per sync."""


class Tracked(enum.IntEnum):
    """A tracked file's status, stored as a small integer."""

    CREATING = 0
    """Handed to the target; the answer was not recorded yet (or never came)."""
    SYNCED = 1
    EXCLUDED = 2
    RETRY = 3
    FAILED = 4


def hash64(text: str) -> int:
    """A signed 64-bit hash (fits BIGINT on every database): equality is all we ask of it."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), signed=True)


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: str) -> Engine:
    """One engine per URL per process, migrated to the current schema on first use."""
    with _engines_lock:
        eng = _engines.get(url)
        if eng is None:
            from mixsync_dagster.state.migrate import upgrade

            eng = _make_engine(url)
            upgrade(eng)
            _engines[url] = eng
        return eng


def dispose_engines() -> None:
    """Close every pooled connection (tests dropping a schema; a forked worker)."""
    with _engines_lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        eng = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            # WAL lets the sensor read while a run writes; busy timeout rides out short locks.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            # 32 MB of page cache (the default is 2 MB): a pass over a million files keeps the
            # upper levels of the tracking and bucket indexes in memory.
            cur.execute("PRAGMA cache_size=-32000")
            cur.close()

        return eng
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
