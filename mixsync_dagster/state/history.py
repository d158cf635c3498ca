"""Batch and failure history, kept to a bounded, documented size per sync."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from mixsync_dagster.clock import utcnow
from mixsync_dagster.state.schema import BATCH_HISTORY, FAILURE_HISTORY, batches, failures

TERMINAL = (
    "COMPLETED",
    "COMPLETED_WITH_ERRORS",
    "FAILED",
    "CANCELED",
    "CANCELLED",
    "INTERRUPTED",
    "SKIPPED",
)
FAILED = ("FAILED", "CANCELED", "CANCELLED", "COMPLETED_WITH_ERRORS", "INTERRUPTED")


class HistoryQueries:
    """Mixed into StateStore: submitted batches and counted failures."""

    engine: Engine

    def record_batches(
        self,
        c: Connection,
        sync_id: int,
        pass_no: int,
        submitted: Sequence[tuple[str, str | None, int]],
    ) -> None:
        """Record submitted batches, each (batch id, task id, object count), in one statement."""
        if not submitted:
            return
        now = utcnow()
        c.execute(
            insert(batches),
            [
                {
                    "batch_id": batch_id,
                    "sync_id": sync_id,
                    "pass_no": pass_no,
                    "object_count": count,
                    "task_id": task_id,
                    "created_at": now,
                    "remote_status": None,
                }
                for batch_id, task_id, count in submitted
            ],
        )

    def open_batches(self, sync_id: int, limit: int) -> list[str]:
        """The oldest submitted batches whose processing has not finished (as far as we know)."""
        b = batches.c
        with self.engine.connect() as c:
            return [
                r[0]
                for r in c.execute(
                    select(b.batch_id)
                    .where(
                        and_(
                            b.sync_id == sync_id,
                            (b.remote_status.is_(None)) | (b.remote_status.not_in(TERMINAL)),
                        )
                    )
                    .order_by(b.created_at)
                    .limit(limit)
                )
            ]

    def set_batch_status(self, batch_id: str, status: str) -> None:
        with self.engine.begin() as c:
            c.execute(
                update(batches)
                .where(batches.c.batch_id == batch_id)
                .values(remote_status=status, checked_at=utcnow())
            )

    def batch_summary(self, sync_id: int, listed: int = 20) -> dict[str, Any]:
        """Batches by state: pending (not finished), failed, completed; ids of the pending and
        failed ones (at most `listed` each)."""
        b = batches.c
        with self.engine.connect() as c:
            rows = c.execute(
                select(b.batch_id, b.remote_status, b.task_id)
                .where(b.sync_id == sync_id)
                .order_by(b.created_at)
            ).all()
        pending, failed, completed = [], [], 0
        for batch_id, remote, task in rows:
            status = (remote or "SUBMITTED").upper()
            if status in FAILED:
                failed.append({"batch_id": batch_id, "status": status, "task_id": task})
            elif status in TERMINAL:
                completed += 1
            else:
                pending.append({"batch_id": batch_id, "status": status, "task_id": task})
        return {
            "pending": len(pending),
            "failed": len(failed),
            "completed": completed,
            "pending_batches": pending[:listed],
            "failed_batches": failed[:listed],
        }

    def record_failure_once(self, key: str, sync_id: int, error: str) -> bool:
        """Remember a failure under `key` (a run id, a tick); False if it was known already."""
        try:
            with self.engine.begin() as c:
                c.execute(
                    insert(failures).values(
                        key=key, sync_id=sync_id, error=error[:1000], at=utcnow()
                    )
                )
        except IntegrityError:
            return False
        return True

    def prune_history(self, c: Connection, sync_id: int) -> None:
        """Keep the newest BATCH_HISTORY batches and FAILURE_HISTORY failures of the sync."""
        for table, keep, key in (
            (batches, BATCH_HISTORY, batches.c.created_at),
            (failures, FAILURE_HISTORY, failures.c.at),
        ):
            cutoff = c.execute(
                select(key)
                .where(table.c.sync_id == sync_id)
                .order_by(key.desc())
                .offset(keep - 1)
                .limit(1)
            ).scalar()
            if cutoff is not None:
                c.execute(delete(table).where(and_(table.c.sync_id == sync_id, key < cutoff)))
