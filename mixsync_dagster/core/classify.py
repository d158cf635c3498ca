"""What a listed file needs, judged against its tracking row: the heart of change detection."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from mixsync_dagster.config import SyncConfig
from mixsync_dagster.core.filters import literal_prefix
from mixsync_dagster.state import Tracked, TrackedRow

MAX_ATTEMPTS = 3
"""A file that fails this many times is `failed` and no longer retried automatically."""


class Action(StrEnum):
    NEW = "new"
    CHANGED = "changed"
    RESEND = "resend"
    """skip_duplicates is off: every listed file is sent again."""
    RETRY = "retry"
    """It failed before and its backoff is over, or an earlier attempt was interrupted."""
    RECHECK = "recheck"
    """The filters changed since the file was judged."""
    KEEP = "keep"
    """Its content changed, but `reconcile.on_update` is false: the object it has stays as it
    is; the filters judge the new version (filter drift still applies) and the new fingerprint
    is recorded, so the change is seen once."""


def retry_delay(attempts: int, base_seconds: int) -> timedelta:
    """Dead-letter backoff before the next automatic attempt: base after the first failure,
    4 x base after the second (the third failure is final)."""
    return timedelta(seconds=base_seconds * 4 ** max(attempts - 1, 0))


def classify(
    row: TrackedRow | None,
    fp: int,
    filter_hash: int,
    skip_duplicates: bool,
    now: datetime | None = None,
    *,
    on_update: bool = True,
) -> Action | None:
    """What a listed file needs, or None when nothing changed."""
    if row is None:
        return Action.NEW
    if not skip_duplicates:
        return Action.RESEND
    if row.fp != fp:
        return Action.CHANGED if on_update or row.object_id is None else Action.KEEP
    if row.status == Tracked.CREATING:
        return Action.RETRY
    if row.status == Tracked.RETRY and row.attempts < MAX_ATTEMPTS:
        due = row.next_attempt_at is None or now is None or now >= row.next_attempt_at
        return Action.RETRY if due else None
    if row.status in (Tracked.SYNCED, Tracked.EXCLUDED) and row.filter_hash != filter_hash:
        return Action.RECHECK
    return None


def listing_prefix(sync: SyncConfig) -> str:
    """The include patterns' common folder, pushed down so the provider lists only that."""
    f = sync.file_filters
    return literal_prefix(f.include_patterns, f.case_sensitive)
