"""Sync status over time: the run lease, failures toward auto-suspend, and finishing a pass."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update

from mixsync_dagster import state as st
from mixsync_dagster.core.records import utcnow
from mixsync_dagster.core.runtime import SyncRuntime
from mixsync_dagster.errors import SyncBusy
from mixsync_dagster.state import StateStore
from mixsync_dagster.targets.base import FAILED_BATCH_STATUSES, TERMINAL_BATCH_STATUSES

LEASE_TTL_SECONDS = 600
"""A run renews its sync's lease at every step and commit; a dead run's lease lapses after this."""


def hold_lease(rt: SyncRuntime, holder: str) -> None:
    """Take or renew the sync's lease for `holder` (a run id), or raise SyncBusy.

    Dagster's run queue already keeps one run per sync inside one deployment. This lease covers
    what it cannot: `mixsync sync` executing in process, and two deployments that share one
    state store. Like Mixpeek's sync lock it expires, so a crashed holder cannot keep it.
    """
    got = rt.store.acquire_lease(rt.name, holder, LEASE_TTL_SECONDS)
    if got != holder:
        raise SyncBusy(f"sync '{rt.name}' is being synced by run {got}; this run stops here")


def record_failure(
    store: StateStore, sync: str, error: str, *, key: str, threshold: int | None = None
) -> bool:
    """A run (or a listing tick) of the sync failed: count it once per `key`, keep the error.

    The failure hook and the run-failure sensor may both report one run; the key makes the
    second report a no-op. At `threshold` consecutive failures the sync is SUSPENDED.
    Returns True when this call counted the failure.
    """
    store.ensure_sync(sync)
    with store.tx() as c:
        if c.execute(select(st.failures.c.key).where(st.failures.c.key == key)).first():
            return False
        c.execute(st.failures.insert().values(key=key, sync=sync, error=error[:1000], at=utcnow()))
        row = c.execute(st.syncs.select().where(st.syncs.c.name == sync)).mappings().one()
        count = row["consecutive_failures"] + 1
        values: dict[str, Any] = {"consecutive_failures": count, "last_error": error[:1000]}
        if row["status"] not in ("PAUSED", "SUSPENDED"):
            suspend = threshold is not None and count >= threshold
            values["status"] = "SUSPENDED" if suspend else "FAILED"
        store.set_sync(c, sync, **values)
    return True


def record_run_failure(rt: SyncRuntime, run_id: str, message: str) -> bool:
    """A run of the sync failed: free its lease and count it (once, whoever reports it)."""
    rt.store.release_lease(rt.name, run_id)
    return record_failure(
        rt.store,
        rt.name,
        message,
        key=f"run:{run_id}",
        threshold=rt.sync.max_consecutive_failures,
    )


def finish_pass(rt: SyncRuntime, pass_id: str, started_at: datetime) -> str:
    """A pass has listed everything and its runs have ended: update times and status.

    Returns the sync's new status. An initial_only sync is COMPLETED only when every work list
    of the pass finished; otherwise it stays due, so the next tick starts another pass.
    """
    complete = rt.store.pending_work(rt.name, pass_id) == 0
    now = utcnow()
    rt.store.ensure_sync(rt.name)
    with rt.store.tx() as c:
        row = c.execute(st.syncs.select().where(st.syncs.c.name == rt.name)).mappings().one()
        status = row["status"]
        values: dict[str, Any] = {
            "last_sync_at": now,
            "passes_completed": row["passes_completed"] + 1,
        }
        if complete:
            # Every run of the pass succeeded (a failed run leaves its work list pending).
            values["consecutive_failures"] = 0
        if rt.sync.sync_mode == "initial_only":
            values["next_sync_at"] = None if complete else now
            if complete and status not in ("PAUSED", "SUSPENDED"):
                status = "COMPLETED"
        else:
            values["next_sync_at"] = started_at + timedelta(
                seconds=rt.sync.polling_interval_seconds
            )
            if status == "PENDING" and complete:
                status = "ACTIVE"
        values["status"] = status
        rt.store.set_sync(c, rt.name, **values)
    return str(status)


def refresh_batches(rt: SyncRuntime, limit: int = 20) -> int:
    """Ask the bucket about the oldest submitted batches that have not finished yet."""
    b = st.batches
    with rt.store.engine.connect() as c:
        open_ids = [
            r.batch_id
            for r in c.execute(
                select(b.c.batch_id)
                .where(
                    and_(
                        b.c.sync == rt.name,
                        b.c.status == "submitted",
                        or_(
                            b.c.remote_status.is_(None),
                            b.c.remote_status.not_in(TERMINAL_BATCH_STATUSES),
                        ),
                    )
                )
                .order_by(b.c.submitted_at)
                .limit(limit)
            )
        ]
    for bid in open_ids:
        status = rt.target.batch_status(bid)
        with rt.store.tx() as c:
            c.execute(
                update(b)
                .where(b.c.batch_id == bid)
                .values(remote_status=status, checked_at=utcnow())
            )
    return len(open_ids)


def batch_summary(rt: SyncRuntime, listed: int = 20) -> dict[str, Any]:
    """Batches by state: pending (submitted, not finished), failed, completed; ids of the
    pending and failed ones (at most `listed` each)."""
    b = st.batches
    with rt.store.engine.connect() as c:
        rows = c.execute(
            select(b.c.batch_id, b.c.status, b.c.remote_status, b.c.task_id)
            .where(b.c.sync == rt.name)
            .order_by(b.c.created_at)
        ).all()
    pending, failed, completed = [], [], 0
    for r in rows:
        remote = (r.remote_status or "").upper()
        if remote in FAILED_BATCH_STATUSES:
            failed.append({"batch_id": r.batch_id, "status": remote, "task_id": r.task_id})
        elif remote in TERMINAL_BATCH_STATUSES:
            completed += 1
        else:
            pending.append(
                {"batch_id": r.batch_id, "status": remote or r.status.upper(), "task_id": r.task_id}
            )
    return {
        "pending": len(pending),
        "failed": len(failed),
        "completed": completed,
        "pending_batches": pending[:listed],
        "failed_batches": failed[:listed],
    }
