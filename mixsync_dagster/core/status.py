"""A sync's status as a person (or a script) reads it, and catching up on batch processing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mixsync_dagster.core.runtime import SyncRuntime

REFRESH_LIMIT = 20
"""Unfinished batches a run asks the bucket about (the oldest first)."""


def refresh_batches(rt: SyncRuntime, limit: int = REFRESH_LIMIT) -> int:
    """Ask the bucket about the oldest submitted batches that have not finished yet."""
    ids = rt.store.open_batches(rt.sync_id, limit)
    for bid in ids:
        rt.store.set_batch_status(bid, rt.target.batch_status(bid).upper())
    return len(ids)


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def status_record(rt: SyncRuntime, *, refresh: bool = False) -> dict[str, Any]:
    """One sync's status and metrics, in the stable shape `mixsync status --json` prints."""
    if refresh:
        refresh_batches(rt, limit=1000)
    row = rt.store.get_sync(rt.name)
    p = rt.store.get_pass(rt.sync_id)
    current = None
    if p is not None:
        current = {
            "pass_no": p.pass_no,
            "state": p.state,
            "owner": p.owner,
            "started_at": _iso(p.started_at),
            "finished_at": _iso(p.finished_at),
            "listed": p.listed,
            "synced": p.synced,
            "excluded": p.excluded,
            "failed": p.failed,
            "deleted": p.deleted,
            "failures": p.failures,
            "retry_at": _iso(p.retry_at),
        }
    s = rt.sync
    return {
        "name": rt.name,
        "status": row["status"],
        "bucket": s.bucket,
        "connection_id": s.connection_id,
        "source_path": s.source_path,
        "sync_mode": s.sync_mode,
        "polling_interval_seconds": s.polling_interval_seconds,
        "total_files_discovered": int(row["total_files_discovered"]),
        "total_files_synced": int(row["total_files_synced"]),
        "total_files_failed": int(row["total_files_failed"]),
        "total_bytes_synced": int(row["total_bytes_synced"]),
        "last_sync_at": _iso(row["last_sync_at"]),
        "next_sync_at": _iso(row["next_sync_at"]),
        "consecutive_failures": int(row["consecutive_failures"]),
        "last_error": row["last_error"],
        "trigger_pending": row["trigger_requested_at"] is not None,
        "dlq_size": rt.store.dlq_size(rt.sync_id),
        "batches": rt.store.batch_summary(rt.sync_id),
        "pass": current,
    }
