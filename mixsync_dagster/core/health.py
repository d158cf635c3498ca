"""A sync's health as five pass/fail checks, in plain Python.

The Dagster layer declares them as asset checks on the sync's asset (`mixsync/<sync>`) and
records their results from sensor ticks, runs and the CLI, so the asset catalog shows red or
green; `mixsync status` prints the same verdicts. Each check reads the state store only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mixsync_dagster.clock import as_utc, utcnow
from mixsync_dagster.core.runtime import SyncRuntime
from mixsync_dagster.core.status import SensorState, effective_status, iso

FRESHNESS_FACTOR = 2
"""The last complete pass may be at most this many polling intervals old."""
LISTED_BATCHES = 5
"""Failed batch ids named in a check's metadata."""


@dataclass(frozen=True)
class CheckDef:
    name: str
    description: str


CHECKS = (
    CheckDef(
        "not_suspended",
        "The sync is not SUSPENDED. It is suspended (and its sensor stopped) after "
        "max_consecutive_failures passes in a row were given up; `mixsync resume NAME`, or "
        "starting the sensor in the UI, clears it.",
    ),
    CheckDef(
        "dlq_empty",
        "No file waits in the dead-letter queue: files that failed are retried on later passes "
        "and given up after 3 attempts. `mixsync dlq list NAME` names them and their errors; "
        "`mixsync dlq retry NAME --all` puts them back in line.",
    ),
    CheckDef(
        "no_failed_batches",
        "No batch submitted to the bucket's processing pipeline ended FAILED, CANCELED or "
        "INTERRUPTED (as last refreshed; `mixsync status NAME --refresh` asks the bucket).",
    ),
    CheckDef(
        "recent_complete_pass",
        f"The last complete pass ended within {FRESHNESS_FACTOR}x polling_interval_seconds "
        "(a one-time sync that COMPLETED passes). A paused sync's passes fall due and this "
        "check then warns.",
    ),
    CheckDef(
        "last_listing_succeeded",
        "The latest listing of the source succeeded. A sensor tick (or `mixsync sync`) lists "
        "at the start of every pass and of every retried attempt; a failed listing names its "
        "error here.",
    ),
)
CHECK_NAMES = tuple(c.name for c in CHECKS)


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict: passed, a sentence for a person, numbers and texts to show."""

    name: str
    passed: bool
    summary: str
    metadata: dict[str, Any] = field(default_factory=dict)
    warn_only: bool = False
    """A failure that is expected (the sync is paused): shown as a warning, not an error."""


def evaluate(
    rt: SyncRuntime, sensor: SensorState | None, now: datetime | None = None
) -> list[CheckOutcome]:
    """The five checks, in CHECKS order, from the state store (and the sensor's state)."""
    now = now or utcnow()
    row = rt.store.get_sync(rt.name)
    status = effective_status(row, sensor)
    return [
        _not_suspended(rt, row),
        _dlq_empty(rt),
        _no_failed_batches(rt),
        _recent_complete_pass(rt, row, status, now),
        _last_listing(row),
    ]


def _not_suspended(rt: SyncRuntime, row: dict[str, Any]) -> CheckOutcome:
    meta = {
        "status": str(row["status"]),
        "consecutive_failures": int(row["consecutive_failures"]),
        "max_consecutive_failures": rt.sync.max_consecutive_failures,
        "last_error": row["last_error"] or "",
    }
    if row["status"] == "SUSPENDED":
        return CheckOutcome(
            "not_suspended",
            False,
            f"SUSPENDED after {row['consecutive_failures']} failed passes in a row: "
            f"{row['last_error']}. `mixsync resume {rt.name}` clears it.",
            meta,
        )
    return CheckOutcome(
        "not_suspended",
        True,
        f"{row['status']}; {row['consecutive_failures']} failed pass(es) in a row "
        f"(suspends at {rt.sync.max_consecutive_failures})",
        meta,
    )


def _dlq_empty(rt: SyncRuntime) -> CheckOutcome:
    size = rt.store.dlq_size(rt.sync_id)
    if size:
        return CheckOutcome(
            "dlq_empty",
            False,
            f"{size} file(s) in the dead-letter queue; `mixsync dlq list {rt.name}` names them",
            {"dlq_size": size},
        )
    return CheckOutcome("dlq_empty", True, "the dead-letter queue is empty", {"dlq_size": 0})


def _no_failed_batches(rt: SyncRuntime) -> CheckOutcome:
    b = rt.store.batch_summary(rt.sync_id, listed=LISTED_BATCHES)
    meta: dict[str, Any] = {
        "failed_batches": int(b["failed"]),
        "pending_batches": int(b["pending"]),
        "completed_batches": int(b["completed"]),
    }
    if b["failed"]:
        ids = ", ".join(f"{x['batch_id']} ({x['status']})" for x in b["failed_batches"])
        meta["failed_batch_ids"] = ids
        return CheckOutcome(
            "no_failed_batches", False, f"{b['failed']} batch(es) failed: {ids}", meta
        )
    return CheckOutcome(
        "no_failed_batches",
        True,
        f"no failed batch ({b['completed']} completed, {b['pending']} pending)",
        meta,
    )


def _recent_complete_pass(
    rt: SyncRuntime, row: dict[str, Any], status: str, now: datetime
) -> CheckOutcome:
    limit = FRESHNESS_FACTOR * rt.sync.polling_interval_seconds
    meta: dict[str, Any] = {"limit_seconds": limit, "last_sync_at": iso(row["last_sync_at"])}
    name = "recent_complete_pass"
    if status == "COMPLETED":
        return CheckOutcome(name, True, "one-time sync COMPLETED", meta)
    last = row["last_sync_at"]
    if last is None:
        p = rt.store.get_pass(rt.sync_id)
        if p is None:
            return CheckOutcome(name, False, "no pass has started yet", meta)
        since = now - p.started_at
        meta["first_pass_seconds"] = round(since.total_seconds(), 1)
        ok = since <= timedelta(seconds=limit)
        return CheckOutcome(
            name,
            ok,
            f"no complete pass yet; pass {p.pass_no} started {int(since.total_seconds())} s ago",
            meta,
            warn_only=status == "PAUSED",
        )
    age = now - as_utc(last)
    meta["age_seconds"] = round(age.total_seconds(), 1)
    ok = age <= timedelta(seconds=limit)
    why = "" if ok else f" (more than {limit} s: {status})"
    return CheckOutcome(
        name,
        ok,
        f"last complete pass ended {int(age.total_seconds())} s ago{why}",
        meta,
        warn_only=status == "PAUSED",
    )


def _last_listing(row: dict[str, Any]) -> CheckOutcome:
    at = row["last_listing_at"]
    error = row["last_listing_error"]
    meta = {"last_listing_at": iso(at), "error": error or ""}
    name = "last_listing_succeeded"
    if at is None:
        return CheckOutcome(name, True, "the source has not been listed yet", meta)
    if error:
        return CheckOutcome(name, False, f"listing failed at {iso(at)}: {error}", meta)
    return CheckOutcome(name, True, f"listed without error at {iso(at)}", meta)
