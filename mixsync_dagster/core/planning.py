"""Planning a pass: list a chunk, classify files against source tracking, filter cheap first."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mixsync_dagster.config import SyncConfig
from mixsync_dagster.core.filters import (
    Verdict,
    compile_filters,
    filters_hash,
    literal_prefix,
)
from mixsync_dagster.core.mapping import mapping_needs_metadata
from mixsync_dagster.core.records import FileItem, Skipped, utcnow
from mixsync_dagster.core.runtime import SyncRuntime
from mixsync_dagster.state import TrackedRow, chunks

MAX_ATTEMPTS = 3
"""A file that fails this many times is `failed` and no longer retried automatically."""
TICK_LISTING_BUDGET_SECONDS = 20.0
"""How long one sensor tick may list: well inside Dagster's 60 s evaluation limit."""
PAGE_SIZE = 1_000


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
    for group in chunks(survivors, ENRICH_CHUNK):
        enriched = rt.provider.enrich([out[i][0] for i in group])
        for i, item in zip(group, enriched, strict=True):
            out[i] = (item, compiled.metadata(item))
    return out
