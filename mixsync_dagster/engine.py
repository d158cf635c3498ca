"""The sync core, in plain Python: plan a chunk of a pass, then filter, create, submit, checkpoint.

The Dagster layer calls these functions from a sensor (planning) and from ops (the rest); the
CLI calls the same ones. Every step is idempotent over the state stored for a work list, so a
retried or re-executed step carries on where the last attempt stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update

from mixsync_dagster import state as st
from mixsync_dagster.config import MixsyncConfig, SyncConfig
from mixsync_dagster.errors import MixsyncError, PermanentFileError, SyncBusy
from mixsync_dagster.filters import (
    Verdict,
    compile_filters,
    filters_hash,
    literal_prefix,
    mime_type_of,
)
from mixsync_dagster.mapping import compile_mapping, mapping_needs_metadata
from mixsync_dagster.providers import Provider, get_provider
from mixsync_dagster.records import FileItem, Skipped, utcnow
from mixsync_dagster.state import StateStore, TrackedRow
from mixsync_dagster.targets import BucketTarget, ObjectResult, ObjectSpec

MAX_ATTEMPTS = 3
"""A file that fails this many times is `failed` and no longer retried automatically."""
TICK_LISTING_BUDGET_SECONDS = 20.0
"""How long one sensor tick may list: well inside Dagster's 60 s evaluation limit."""
PAGE_SIZE = 1_000


@dataclass(frozen=True)
class SyncRuntime:
    """Everything a step needs for one sync: its config and the live store, provider, target."""

    cfg: MixsyncConfig
    sync: SyncConfig
    store: StateStore
    provider: Provider
    target: BucketTarget

    @property
    def name(self) -> str:
        return self.sync.name

    def source_ref(self, key: str) -> str:
        return f"{self.provider.name}:{self.sync.connection_id}:{key}"


def open_runtime(cfg: MixsyncConfig, sync_name: str) -> SyncRuntime:
    """Wire up the store, provider and target of one declared sync."""
    from mixsync_dagster.targets import get_target

    sync = cfg.sync(sync_name)
    store = StateStore(cfg.state_url())
    provider = get_provider(cfg, sync.connection_id)
    target = get_target(cfg, sync.bucket, store.engine)
    return SyncRuntime(cfg, sync, store, provider, target)


# ---------------------------------------------------------------- planning (sensor side)


@dataclass
class ChunkPlan:
    items: list[dict[str, Any]] = field(default_factory=list)
    next_position: str | None = None
    listing_done: bool = False
    listed: int = 0
    new: int = 0
    changed: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def retry_delay(attempts: int, base_seconds: int) -> timedelta:
    """Dead-letter backoff before the next automatic attempt: base after the first failure,
    4 x base after the second (the third failure is final)."""
    return timedelta(seconds=base_seconds * 4 ** max(attempts - 1, 0))


def classify(
    row: TrackedRow | None,
    item: FileItem,
    fhash: str,
    skip_duplicates: bool,
    now: datetime | None = None,
) -> str | None:
    """What a listed file needs: new, changed, resend, retry, recheck, or nothing (None)."""
    if row is None:
        return "new"
    if not skip_duplicates:
        return "resend"
    if row.fingerprint != item.fingerprint:
        return "changed"
    if row.status == "pending":
        return "retry"
    if row.status == "retry" and row.attempts < MAX_ATTEMPTS:
        due = row.next_attempt_at is None or now is None or now >= row.next_attempt_at
        return "retry" if due else None
    if row.status in ("synced", "excluded") and row.filter_hash != fhash:
        return "recheck"
    return None


def plan_chunk(
    rt: SyncRuntime,
    pass_id: str,
    position: str | None,
    *,
    max_items: int | None = None,
    budget_seconds: float = TICK_LISTING_BUDGET_SECONDS,
) -> ChunkPlan:
    """List from `position` until the listing ends, `max_items` need work, or time runs out.

    Records newly discovered keys and marks every listed key as seen in this pass; returns the
    work items (not yet stored) and the position to resume from.
    """
    fhash = filters_hash(rt.sync.file_filters)
    max_items = max_items or rt.sync.max_objects_per_run
    plan = ChunkPlan(next_position=position)
    started = time.monotonic()
    now = utcnow()
    for page in rt.provider.list_pages(
        rt.sync.source_path, position, min(PAGE_SIZE, max_items), listing_prefix(rt.sync)
    ):
        keys = [i.key for i in page.items]
        plan.listed += len(page.items)
        plan.skipped.extend(page.skipped)
        with rt.store.tx() as c:
            known = rt.store.lookup(c, rt.name, keys)
            discovered = []
            for item in page.items:
                action = classify(known.get(item.key), item, fhash, rt.sync.skip_duplicates, now)
                if action is None:
                    continue
                if action == "new":
                    plan.new += 1
                    discovered.append(
                        {
                            "sync": rt.name,
                            "source_key": item.key,
                            "fingerprint": item.fingerprint,
                            "status": "pending",
                            "attempts": 0,
                            "size_bytes": item.size,
                            "updated_at": now,
                        }
                    )
                elif action == "changed":
                    plan.changed += 1
                plan.items.append(
                    {
                        "source_key": item.key,
                        "item": item.to_json(),
                        "action": action,
                        "status": "pending",
                    }
                )
            rt.store.discover(c, rt.name, discovered)
            rt.store.mark_seen(c, rt.name, keys, pass_id)
        plan.next_position = page.next_position
        if page.next_position is None:
            plan.listing_done = True
            break
        if len(plan.items) >= max_items or time.monotonic() - started > budget_seconds:
            break
    return plan


# ---------------------------------------------------------------- run steps


def _update_tracked(c: Any, sync: str, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk-update tracking rows; each dict has b_key plus the columns to set."""
    if not rows:
        return
    cols = [k for k in rows[0] if k != "b_key"]
    stmt = (
        update(st.tracked)
        .where(and_(st.tracked.c.sync == sync, st.tracked.c.source_key == bindparam("b_key")))
        .values({k: bindparam("v_" + k) for k in cols})
    )
    c.execute(stmt, [{"b_key": r["b_key"], **{"v_" + k: r[k] for k in cols}} for r in rows])


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


def listing_prefix(sync: SyncConfig) -> str:
    """The include patterns' common folder, pushed down so the provider lists only that."""
    f = sync.file_filters
    return literal_prefix(f.include_patterns, f.case_sensitive)


ENRICH_CHUNK = 100


def evaluate(rt: SyncRuntime, items: list[FileItem]) -> list[tuple[FileItem, Verdict]]:
    """Filter files: cheap checks first; provider metadata is fetched only for the survivors.

    Returns each file (enriched where metadata was fetched) with its verdict, in input order.
    """
    compiled = compile_filters(rt.sync.file_filters)
    need_meta = compiled.needs_metadata or mapping_needs_metadata(rt.sync.schema_mapping)
    out: list[tuple[FileItem, Verdict]] = [(item, compiled.cheap(item)) for item in items]
    if not need_meta:
        return out
    survivors = [i for i, (_, v) in enumerate(out) if v.ok]
    for group in _chunks(survivors, ENRICH_CHUNK):
        enriched = rt.provider.enrich([out[i][0] for i in group])
        for i, item in zip(group, enriched, strict=True):
            out[i] = (item, compiled.metadata(item))
    return out


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
    rows = rt.store.work_items(work_id, status="pending")
    item_rows: list[dict[str, Any]] = []
    # A work list can be stale: another run (a second process, an earlier attempt) may have
    # synced some of its files since it was planned. Those are done; do not send them again.
    if rt.sync.skip_duplicates and rows:
        with rt.store.tx() as c:
            known = rt.store.lookup(c, rt.name, [r.source_key for r in rows])
        fresh = []
        for r in rows:
            prior = known.get(r.source_key)
            item = FileItem.from_json(r.item)
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
                fresh.append(r)
        rows = fresh
    originals = [FileItem.from_json(r.item) for r in rows]
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
        _update_tracked(c, rt.name, excluded_rows)
    accepted = sum(1 for r in item_rows if r["status"] == "accepted")
    return {"accepted": accepted, "excluded": len(excluded_rows)}


def _chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


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
    for group in _chunks(rows, rt.sync.batch_size):
        if heartbeat is not None:
            heartbeat()
        items = {r.idx: FileItem.from_json(r.item) for r in group}
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
        interrupted = {r.idx for r in group if r.status == "creating"}
        if interrupted:
            refs = [s.source_ref for idx, s in specs if idx in interrupted]
            found = rt.target.find_objects(refs) if refs else {}
            for idx, spec in specs:
                if spec.source_ref in found:
                    outcomes[idx] = ObjectResult(object_id=found[spec.source_ref], created=False)
        to_create = []
        for idx, spec in specs:
            if idx in outcomes:
                continue
            prior = known.get(items[idx].key)
            if prior is not None and prior.object_id:
                outcomes[idx] = rt.target.update_object(prior.object_id, spec)
            else:
                to_create.append((idx, spec))
        if to_create:
            with rt.store.tx() as c:
                rt.store.set_items(c, work_id, [idx for idx, _ in to_create], status="creating")
            results = rt.target.create_objects([s for _, s in to_create])
            outcomes.update({idx: res for (idx, _), res in zip(to_create, results, strict=True)})
        _record_outcomes(rt, work_id, items, known, outcomes, fhash, counts)
    return counts


def _spec(rt: SyncRuntime, item: FileItem, fields: dict[str, Any]) -> ObjectSpec:
    provider = rt.provider
    return ObjectSpec(
        source_ref=rt.source_ref(item.key),
        source_key=item.key,
        blob_url=provider.blob_url(item),
        mime_type=mime_type_of(item),
        size=item.size,
        fingerprint=item.fingerprint,
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
        open_blob=(lambda: provider.open(item)) if provider.cheap_open else None,
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
        _update_tracked(c, rt.name, synced_rows)
        _update_tracked(c, rt.name, failed_rows)
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
    created = 0
    for group in _chunks(pending, rt.sync.batch_size):
        ids = [r.object_id for r in group if r.object_id]
        bid = rt.target.create_batch(ids)
        with rt.store.tx() as c:
            c.execute(
                st.batches.insert().values(
                    batch_id=bid,
                    sync=rt.name,
                    work_id=work_id,
                    status="created",
                    object_count=len(ids),
                    created_at=utcnow(),
                )
            )
            rt.store.set_items(c, work_id, [r.idx for r in group], batch_id=bid)
        created += 1
    submitted = 0
    with rt.store.tx() as c:
        todo = [
            r.batch_id
            for r in c.execute(
                st.batches.select().where(
                    and_(st.batches.c.work_id == work_id, st.batches.c.status == "created")
                )
            )
        ]
    for bid in todo:
        task = rt.target.submit_batch(bid)
        with rt.store.tx() as c:
            c.execute(
                update(st.batches)
                .where(st.batches.c.batch_id == bid)
                .values(status="submitted", task_id=task, submitted_at=utcnow())
            )
        submitted += 1
    return {"batches": created, "submitted": submitted}


def plan_reconcile(rt: SyncRuntime, pass_id: str) -> list[dict[str, Any]]:
    """Objects whose file is gone (not seen in this complete pass) or no longer matches."""
    t = st.tracked
    q = select(t.c.source_key, t.c.object_id, t.c.status, t.c.last_seen_pass).where(
        and_(
            t.c.sync == rt.name,
            t.c.object_id.is_not(None),
            or_(
                t.c.status == "excluded",
                t.c.last_seen_pass.is_(None),
                t.c.last_seen_pass != pass_id,
            ),
        )
    )
    with rt.store.engine.connect() as c:
        rows = c.execute(q.order_by(t.c.source_key)).all()
    return [
        {
            "source_key": r.source_key,
            "item": json.dumps(
                {
                    "object_id": r.object_id,
                    "reason": "gone" if r.last_seen_pass != pass_id else "no longer matches",
                }
            ),
            "action": "delete",
            "status": "to_delete",
        }
        for r in rows
    ]


def reconcile(rt: SyncRuntime, work_id: str) -> dict[str, int]:
    """Delete the objects a reconcile work list names, unless that would exceed the cap.

    The cap (`max_deletes_per_pass`) stops a wrong source_path or a wiped credential from
    emptying a bucket: over it, nothing is deleted and the run fails loudly.
    """
    rows = rt.store.work_items(work_id, status="to_delete")
    if not rows:
        return {"deleted": 0}
    t = st.tracked
    with rt.store.engine.connect() as c:
        total = c.execute(
            select(func.count())
            .select_from(t)
            .where(and_(t.c.sync == rt.name, t.c.object_id.is_not(None)))
        ).scalar_one()
    cap = rt.sync.delete_cap(int(total))
    if len(rows) > cap:
        raise MixsyncError(
            f"reconcile would delete {len(rows)} of {total} objects of sync '{rt.name}', over "
            f"max_deletes_per_pass ({rt.sync.max_deletes_per_pass} = {cap}); nothing was "
            "deleted. Check source_path and the connection's credentials; if the deletions "
            "are intended, raise max_deletes_per_pass for one pass."
        )
    deleted = 0
    for group in _chunks(rows, 100):
        for r in group:
            info = json.loads(r.item)
            rt.target.delete_object(info["object_id"])
            with rt.store.tx() as c:
                rt.store.set_items(c, work_id, [r.idx], status="deleted", reason=info["reason"])
                where = and_(t.c.sync == rt.name, t.c.source_key == r.source_key)
                if info["reason"] == "gone":
                    c.execute(delete(t).where(where))
                else:
                    c.execute(update(t).where(where).values(object_id=None, updated_at=utcnow()))
            deleted += 1
    return {"deleted": deleted}


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
