"""The sync core, in plain Python: plan a chunk of a pass, then filter, create, submit, checkpoint.

The Dagster layer calls these functions from a sensor (planning) and from ops (the rest); the
CLI calls the same ones. Every step is idempotent over the state stored for a work list, so a
retried or re-executed step carries on where the last attempt stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import and_, delete, update

from mixsync_dagster import state as st
from mixsync_dagster.core.filters import (
    filters_hash,
    mime_type_of,
)
from mixsync_dagster.core.mapping import compile_mapping
from mixsync_dagster.core.planning import MAX_ATTEMPTS, evaluate, retry_delay
from mixsync_dagster.core.records import FileItem, utcnow
from mixsync_dagster.core.runtime import SyncRuntime, update_tracked
from mixsync_dagster.errors import MixsyncError, PermanentFileError
from mixsync_dagster.state import TrackedRow, chunks
from mixsync_dagster.targets.base import ObjectResult, ObjectSpec, idempotency_key


def filter_work(rt: SyncRuntime, work_id: str) -> dict[str, int]:
    """Apply the sync's file filters to a work list; excluded files are tracked as such."""
    fhash = filters_hash(rt.sync.file_filters)
    try:
        rt.store.work_list(work_id)
    except KeyError:
        raise MixsyncError(
            f"work list {work_id} is not in the state store {rt.store.safe_url}; "
            "was the state store reset or pointed elsewhere?"
        ) from None
    pending = [(r, FileItem.from_json(r.item)) for r in rt.store.work_items(work_id, "pending")]
    item_rows: list[dict[str, Any]] = []
    # A work list can be stale: another run (a second process, an earlier attempt) may have
    # synced some of its files since it was planned. Those are done; do not send them again.
    if rt.sync.skip_duplicates and pending:
        with rt.store.tx() as c:
            known = rt.store.lookup(c, rt.name, [r.source_key for r, _ in pending])
        fresh = []
        for r, item in pending:
            prior = known.get(r.source_key)
            if (
                prior is not None
                and prior.status == "synced"
                and prior.fingerprint == item.fingerprint
                and prior.filter_hash == fhash
            ):
                item_rows.append(
                    {"idx": r.idx, "status": "done", "reason": "already synced", "item": r.item}
                )
            else:
                fresh.append((r, item))
        pending = fresh
    rows = [r for r, _ in pending]
    originals = [item for _, item in pending]
    verdicts = evaluate(rt, originals)
    now = utcnow()
    excluded_rows = []
    with rt.store.tx() as c:
        for row, before, (item, verdict) in zip(rows, originals, verdicts, strict=True):
            # Keep fetched metadata with the work item so mapping sees it.
            text = row.item if item is before else item.to_json()
            if verdict.ok:
                item_rows.append(
                    {"idx": row.idx, "status": "accepted", "reason": None, "item": text}
                )
                continue
            reason = f"{verdict.filter}: {verdict.reason}"
            item_rows.append({"idx": row.idx, "status": "excluded", "reason": reason, "item": text})
            excluded_rows.append(
                {
                    "b_key": item.key,
                    "status": "excluded",
                    "fingerprint": item.fingerprint,
                    "filter_hash": fhash,
                    "last_error": None,
                    "updated_at": now,
                }
            )
        rt.store.set_items_each(c, work_id, item_rows)
        update_tracked(c, rt.name, excluded_rows)
    accepted = sum(1 for r in item_rows if r["status"] == "accepted")
    return {"accepted": accepted, "excluded": len(excluded_rows)}


def create_objects(
    rt: SyncRuntime, work_id: str, heartbeat: Callable[[], None] | None = None
) -> dict[str, int]:
    """Register accepted files as objects, `batch_size` at a time, committing after each group.

    A file with an object already (changed, resent, re-checked) updates that object. A new file
    is first marked `creating` (committed) and only then sent to the target; if the run dies
    between the target's answer and our commit, the retry finds those `creating` files' objects
    by source reference instead of creating them again.
    """
    mapper = compile_mapping(rt.sync.schema_mapping)
    fhash = filters_hash(rt.sync.file_filters)
    rows = rt.store.work_items(work_id, status=("accepted", "creating"))
    counts = {"synced": 0, "failed": 0, "vanished": 0, "bytes": 0}
    for group in chunks(rows, rt.sync.batch_size):
        if heartbeat is not None:
            heartbeat()
        items = {r.idx: FileItem.from_json(r.item) for r in group}
        rows_by_idx = {r.idx: r for r in group}
        with rt.store.tx() as c:
            known = rt.store.lookup(c, rt.name, [i.key for i in items.values()])
        outcomes: dict[int, ObjectResult] = {}
        specs: list[tuple[int, ObjectSpec]] = []
        for r in group:
            item = items[r.idx]
            try:
                mapped = mapper(item)
            except PermanentFileError as e:
                outcomes[r.idx] = ObjectResult(error=str(e))
                continue
            specs.append((r.idx, _spec(rt, item, mapped.fields)))
        # Possibly created already: marked `creating` by an attempt that died, or a retry of a
        # file whose earlier pass died before recording its object (a new work list then).
        to_put = []
        for idx, spec in specs:
            prior = known.get(items[idx].key)
            interrupted = rows_by_idx[idx].status == "creating" or (
                rows_by_idx[idx].action == "retry" and not getattr(prior, "object_id", None)
            )
            to_put.append(
                (
                    idx,
                    replace(
                        spec,
                        replaces=prior.object_id if prior is not None else None,
                        interrupted=interrupted,
                    ),
                )
            )
        if to_put:
            with rt.store.tx() as c:
                rt.store.set_items(c, work_id, [idx for idx, _ in to_put], status="creating")
            results = rt.target.put_objects([s for _, s in to_put])
            outcomes.update({idx: res for (idx, _), res in zip(to_put, results, strict=True)})
        _record_outcomes(rt, work_id, items, known, outcomes, fhash, counts)
    return counts


def _spec(rt: SyncRuntime, item: FileItem, fields: dict[str, Any]) -> ObjectSpec:
    provider = rt.provider
    return ObjectSpec(
        source_ref=rt.source_ref(item.key),
        source_key=item.key,
        fingerprint=item.fingerprint,
        idempotency_key=idempotency_key(rt.name, item.key, item.fingerprint),
        uri=item.url or item.key,
        mime_type=mime_type_of(item),
        size=item.size,
        name=item.name,
        metadata={
            **rt.sync.metadata,
            "mixsync": {
                "sync": rt.name,
                "provider": provider.name,
                "connection": rt.sync.connection_id,
                "source_key": item.key,
                "fingerprint": item.fingerprint,
            },
        },
        fields=fields,
        # A provider whose URLs a bucket cannot fetch (Drive) hands over bytes instead.
        fetch_url=(lambda: provider.blob_url(item)) if provider.url_fetchable else None,
        open_blob=(
            (lambda: provider.open(item))
            if provider.cheap_open or not provider.url_fetchable
            else None
        ),
    )


def _record_outcomes(
    rt: SyncRuntime,
    work_id: str,
    items: dict[int, FileItem],
    known: dict[str, TrackedRow],
    outcomes: dict[int, ObjectResult],
    fhash: str,
    counts: dict[str, int],
) -> None:
    now = utcnow()
    item_rows: list[dict[str, Any]] = []
    synced_rows: list[dict[str, Any]] = []
    failed_rows: list[dict[str, Any]] = []
    newly_failed = 0
    synced_bytes = 0
    with rt.store.tx() as c:
        for idx, res in outcomes.items():
            item = items[idx]
            prior = known.get(item.key)
            if res.object_id:
                item_rows.append(
                    {"idx": idx, "status": "synced", "object_id": res.object_id, "reason": None}
                )
                synced_rows.append(
                    {
                        "b_key": item.key,
                        "status": "synced",
                        "fingerprint": item.fingerprint,
                        "object_id": res.object_id,
                        "attempts": 0,
                        "last_error": None,
                        "next_attempt_at": None,
                        "size_bytes": item.size,
                        "filter_hash": fhash,
                        "updated_at": now,
                    }
                )
                counts["synced"] += 1
                counts["bytes"] += item.size
                synced_bytes += item.size
            elif res.vanished:
                item_rows.append(
                    {"idx": idx, "status": "vanished", "object_id": None, "reason": res.error}
                )
                counts["vanished"] += 1
                if prior is None or not prior.object_id:
                    c.execute(
                        delete(st.tracked).where(
                            and_(st.tracked.c.sync == rt.name, st.tracked.c.source_key == item.key)
                        )
                    )
            else:
                attempts = (prior.attempts if prior else 0) + 1
                final = attempts >= MAX_ATTEMPTS
                newly_failed += int(final)
                item_rows.append(
                    {"idx": idx, "status": "failed", "object_id": None, "reason": res.error}
                )
                failed_rows.append(
                    {
                        "b_key": item.key,
                        "status": "failed" if final else "retry",
                        "fingerprint": item.fingerprint,
                        "attempts": attempts,
                        "last_error": (res.error or "unknown error")[:1000],
                        "next_attempt_at": None
                        if final
                        else now + retry_delay(attempts, rt.sync.retry_backoff_seconds),
                        "updated_at": now,
                    }
                )
                counts["failed"] += 1
        rt.store.set_items_each(c, work_id, item_rows)
        update_tracked(c, rt.name, synced_rows)
        update_tracked(c, rt.name, failed_rows)
        rt.store.add_metrics(
            c,
            rt.name,
            total_files_synced=len(synced_rows),
            total_bytes_synced=synced_bytes,
            total_files_failed=newly_failed,
        )


def submit_batches(rt: SyncRuntime, work_id: str) -> dict[str, int]:
    """Group the work list's synced objects into batches and submit them.

    The batch id is recorded before submission, so a retry submits a created batch instead of
    creating another one for the same objects.
    """
    if rt.sync.skip_batch_submission:
        return {"batches": 0, "submitted": 0}
    pending = [r for r in rt.store.work_items(work_id, status="synced") if r.batch_id is None]
    submitted = 0
    for group in chunks(pending, rt.sync.batch_size):
        ids = [r.object_id for r in group if r.object_id]
        batch = rt.target.submit_batch(ids)
        with rt.store.tx() as c:
            c.execute(
                st.batches.insert().values(
                    batch_id=batch.batch_id,
                    sync=rt.name,
                    work_id=work_id,
                    status="submitted",
                    object_count=len(ids),
                    task_id=batch.task_id,
                    created_at=utcnow(),
                    submitted_at=utcnow(),
                )
            )
            rt.store.set_items(c, work_id, [r.idx for r in group], batch_id=batch.batch_id)
        submitted += 1
    return {"batches": submitted, "submitted": submitted}


def checkpoint(rt: SyncRuntime, work_id: str) -> dict[str, Any]:
    """Close a work list: record success, reset the failure count, return the run's numbers."""
    counts = rt.store.item_counts(work_id)
    rt.store.ensure_sync(rt.name)  # a run launched by hand may precede the sensor's first tick
    with rt.store.tx() as c:
        c.execute(
            update(st.work_lists)
            .where(st.work_lists.c.id == work_id)
            .values(status="done", finished_at=utcnow())
        )
        row = c.execute(st.syncs.select().where(st.syncs.c.name == rt.name)).mappings().one()
        values: dict[str, Any] = {"consecutive_failures": 0, "last_error": None}
        if row["status"] in ("PENDING", "FAILED"):
            values["status"] = "ACTIVE"
        rt.store.set_sync(c, rt.name, **values)
    return counts


# The sync core's public names, in one place for the Dagster layer, the CLI and tests.
from mixsync_dagster.core.lifecycle import (  # noqa: E402
    LEASE_TTL_SECONDS,
    batch_summary,
    finish_pass,
    hold_lease,
    record_failure,
    record_run_failure,
    refresh_batches,
)
from mixsync_dagster.core.planning import (  # noqa: E402
    PAGE_SIZE,
    TICK_LISTING_BUDGET_SECONDS,
    ChunkPlan,
    classify,
    listing_prefix,
    plan_chunk,
)
from mixsync_dagster.core.reconcile import plan_reconcile, reconcile  # noqa: E402
from mixsync_dagster.core.runtime import open_runtime  # noqa: E402

__all__ = [
    "LEASE_TTL_SECONDS",
    "MAX_ATTEMPTS",
    "PAGE_SIZE",
    "TICK_LISTING_BUDGET_SECONDS",
    "ChunkPlan",
    "SyncRuntime",
    "batch_summary",
    "checkpoint",
    "classify",
    "create_objects",
    "evaluate",
    "filter_work",
    "finish_pass",
    "hold_lease",
    "listing_prefix",
    "open_runtime",
    "plan_chunk",
    "plan_reconcile",
    "reconcile",
    "record_failure",
    "record_run_failure",
    "refresh_batches",
    "retry_delay",
    "submit_batches",
]
