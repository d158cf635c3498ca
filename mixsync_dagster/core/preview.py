"""Preview: what a pass would do with every file, and why, without writing anything."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mixsync_dagster.core.classify import Action, classify, listing_prefix
from mixsync_dagster.core.filters import CompiledFilters, compile_filters
from mixsync_dagster.core.judge import make_evaluator
from mixsync_dagster.core.mapping import Mapped, compile_mapping
from mixsync_dagster.core.records import FileItem, utcnow
from mixsync_dagster.core.runtime import SyncRuntime
from mixsync_dagster.core.segment import PAGE_SIZE
from mixsync_dagster.errors import PermanentFileError
from mixsync_dagster.state import Tracked, TrackedRow, hash64

VERDICTS = (
    "would_sync",
    "kept",
    "unchanged",
    "excluded",
    "would_fail",
    "retry_later",
    "failed",
    "skipped",
)


@dataclass(frozen=True, slots=True)
class PreviewRow:
    key: str
    rel_path: str
    size: int | None
    verdict: str
    """would_sync | kept | unchanged | excluded | would_fail | failed | skipped"""
    action: str | None = None
    """for would_sync: new | changed | resend | retry | recheck"""
    filter: str | None = None
    """for excluded: the first filter that rejected the file (what a pass records)"""
    reason: str | None = None
    rejected_by: tuple[tuple[str, str], ...] = ()
    """for excluded: every filter that rejects the file, with its reason, in evaluation order"""


@dataclass
class PreviewTotals:
    examined: int = 0
    limited: bool = False
    verdicts: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    excluded_by: Counter[str] = field(default_factory=Counter)
    rejections_by: Counter[str] = field(default_factory=Counter)

    def add(self, row: PreviewRow) -> None:
        self.verdicts[row.verdict] += 1
        if row.action:
            self.actions[row.action] += 1
        if row.filter:
            self.excluded_by[row.filter] += 1
        for name, _ in row.rejected_by:
            self.rejections_by[name] += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "examined": self.examined,
            "limited": self.limited,
            **{v: self.verdicts.get(v, 0) for v in VERDICTS},
            "would_sync_by_action": dict(sorted(self.actions.items())),
            "excluded_by_filter": dict(sorted(self.excluded_by.items())),
            "rejections_by_filter": dict(sorted(self.rejections_by.items())),
        }


def preview(
    rt: SyncRuntime, totals: PreviewTotals, limit: int | None = None
) -> Iterator[PreviewRow]:
    """Stream one row per listed file (and per entry the provider skipped), filling `totals`.

    Lists exactly as a pass would (same prefix push-down, same filters, same change detection,
    same mapping), reading the state store but never writing to it.
    """
    mapper = compile_mapping(rt.sync.schema_mapping)
    evaluate = make_evaluator(rt)
    compiled = compile_filters(rt.sync.file_filters)
    pages = rt.provider.list_pages(rt.sync.source_path, None, PAGE_SIZE, listing_prefix(rt.sync))
    for page in pages:
        for s in page.skipped:
            row = PreviewRow(s.key, s.key, None, "skipped", reason=s.reason)
            totals.add(row)
            yield row
        items = page.items
        if limit is not None and totals.examined + len(items) > limit:
            items = items[: limit - totals.examined]
            totals.limited = True
        totals.examined += len(items)
        known = rt.store.lookup(rt.sync_id, [i.key for i in items])
        for item, verdict in evaluate(items):
            prior = known.get(item.key)
            if not verdict.ok:
                row = PreviewRow(
                    item.key,
                    item.rel_path,
                    item.size,
                    "excluded",
                    None,
                    verdict.filter,
                    verdict.reason,
                    every_rejection(compiled, item),
                )
            else:
                row = _accepted_row(item, prior, rt, mapper)
            totals.add(row)
            yield row
        if totals.limited:
            return


def every_rejection(compiled: CompiledFilters, item: FileItem) -> tuple[tuple[str, str], ...]:
    """Every filter that rejects an excluded file. Metadata filters are judged when the file's
    metadata was fetched, which a pass (and so preview) does only for files the cheap filters
    accept; otherwise they are named as not judged."""
    cheap = compiled.rejections(item, with_metadata=False)
    if cheap:
        found = [(v.filter or "?", v.reason or "") for v in cheap]
        if compiled.needs_metadata:
            found.append(
                (
                    "metadata_filters",
                    "not judged: metadata is fetched only for files the other filters accept",
                )
            )
        return tuple(found)
    return tuple((v.filter or "?", v.reason or "") for v in compiled.rejections(item))


def _accepted_row(
    item: FileItem,
    prior: TrackedRow | None,
    rt: SyncRuntime,
    mapper: Callable[[FileItem], Mapped],
) -> PreviewRow:
    action = classify(
        prior,
        hash64(item.fingerprint),
        rt.filter_hash,
        rt.sync.skip_duplicates,
        utcnow(),
        on_update=rt.sync.reconcile_policy.on_update,
    )
    if action is Action.KEEP:
        reason = "content changed; reconcile.on_update is false, so its object stays as it is"
        return PreviewRow(item.key, item.rel_path, item.size, "kept", reason=reason)
    if action is not None:
        try:
            mapper(item)
        except PermanentFileError as e:
            return PreviewRow(item.key, item.rel_path, item.size, "would_fail", reason=str(e))
        return PreviewRow(item.key, item.rel_path, item.size, "would_sync", action=action.value)
    if prior is not None and prior.status == Tracked.RETRY:
        when = prior.next_attempt_at.isoformat(timespec="seconds") if prior.next_attempt_at else "-"
        reason = f"attempt {prior.attempts} failed; next attempt at {when}"
        return PreviewRow(item.key, item.rel_path, item.size, "retry_later", reason=reason)
    if prior is not None and prior.status == Tracked.FAILED:
        reason = f"failed {prior.attempts} times; `mixsync dlq retry` or a change retries it"
        return PreviewRow(item.key, item.rel_path, item.size, "failed", reason=reason)
    return PreviewRow(item.key, item.rel_path, item.size, "unchanged")
