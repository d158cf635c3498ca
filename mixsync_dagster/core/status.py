"""A sync's status as a person (or a script) reads it, and catching up on batch processing.

Running vs paused is the sync's sensor state in the Dagster instance; the Dagster layer reads
it (`dagster/control.py`) and hands it here as a plain `SensorState`, so this module, like the
rest of the core, never imports Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mixsync_dagster.clock import as_utc
from mixsync_dagster.core.runtime import SyncRuntime

REFRESH_LIMIT = 20
"""Unfinished batches a run asks the bucket about (the oldest first)."""


@dataclass(frozen=True)
class SensorState:
    """What the Dagster instance says of a sync's sensor."""

    name: str
    running: bool
    started_at: datetime | None = None
    """When it was last started (the UI's toggle, `mixsync resume`, the daemon's first tick)."""

    @property
    def status(self) -> str:
        """RUNNING or STOPPED, the words of the Dagster UI."""
        return "RUNNING" if self.running else "STOPPED"


def refresh_batches(rt: SyncRuntime, limit: int = REFRESH_LIMIT) -> int:
    """Ask the bucket about the oldest submitted batches that have not finished yet."""
    ids = rt.store.open_batches(rt.sync_id, limit)
    for bid in ids:
        rt.store.set_batch_status(bid, rt.target.batch_status(bid).upper())
    return len(ids)


def iso(v: Any) -> Any:
    """ISO-8601 with its zone (a naive time from SQLite was stored as UTC); other values as is."""
    return as_utc(v).isoformat() if isinstance(v, datetime) else v


def paused_by(row: dict[str, Any], sensor: SensorState | None) -> str | None:
    """Who paused the sync and when, as a person reads it; None when it is not paused."""
    if row.get("pause_pending"):
        return f"{row['paused_by']} at {iso(row['paused_at'])}; its sensor stops at its next tick"
    if sensor is None or sensor.running:
        return None
    at = row.get("paused_at")
    # Our note explains the stop only if nobody started the sensor after it.
    if (
        row.get("paused_by")
        and at is not None
        and (sensor.started_at is None or sensor.started_at <= as_utc(at))
    ):
        return f"{row['paused_by']} at {iso(at)}"
    return "its sensor was stopped in the Dagster UI (or by `dagster sensor stop`)"


def effective_status(row: dict[str, Any], sensor: SensorState | None) -> str:
    """The status the CLI and the asset show: SUSPENDED wins; a stopped sensor is PAUSED."""
    status = str(row["status"])
    if status == "SUSPENDED":
        return status
    if paused_by(row, sensor) is not None:
        return "PAUSED"
    return status


def status_record(
    rt: SyncRuntime, *, refresh: bool = False, sensor: SensorState | None = None
) -> dict[str, Any]:
    """One sync's status and metrics, in the stable shape `mixsync status --json` prints."""
    from mixsync_dagster.core.health import evaluate

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
            "started_at": iso(p.started_at),
            "finished_at": iso(p.finished_at),
            "listed": p.listed,
            "synced": p.synced,
            "excluded": p.excluded,
            "failed": p.failed,
            "deleted": p.deleted,
            "failures": p.failures,
            "retry_at": iso(p.retry_at),
        }
    s = rt.sync
    status = effective_status(row, sensor)
    return {
        "name": rt.name,
        "status": status,
        "bucket": s.bucket,
        "connection_id": s.connection_id,
        "source_path": s.source_path,
        "sync_mode": s.sync_mode,
        "polling_interval_seconds": s.polling_interval_seconds,
        "total_files_discovered": int(row["total_files_discovered"]),
        "total_files_synced": int(row["total_files_synced"]),
        "total_files_failed": int(row["total_files_failed"]),
        "total_bytes_synced": int(row["total_bytes_synced"]),
        "last_sync_at": iso(row["last_sync_at"]),
        # Nothing is scheduled while the sensor is stopped or the sync suspended.
        "next_sync_at": None if status in ("PAUSED", "SUSPENDED") else iso(row["next_sync_at"]),
        "consecutive_failures": int(row["consecutive_failures"]),
        "last_error": row["last_error"],
        "trigger_pending": row["trigger_requested_at"] is not None,
        "dlq_size": rt.store.dlq_size(rt.sync_id),
        "batches": rt.store.batch_summary(rt.sync_id),
        "pass": current,
        "sensor": {"name": sensor.name, "status": sensor.status} if sensor else None,
        "paused_by": paused_by(row, sensor),
        "last_listing_at": iso(row["last_listing_at"]),
        "last_listing_error": row["last_listing_error"],
        "checks": {c.name: c.passed for c in evaluate(rt, sensor)},
    }
