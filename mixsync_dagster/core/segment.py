"""A run's share of a pass: list from the committed position, judge each file, put objects,
submit batches, commit. Streams page by page, so memory stays bounded by a page.

Every commit is fenced by the run's claim on the pass (see `state.store`): if another owner
took the pass over, the next commit raises PassLost and nothing more is written.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from mixsync_dagster.core import prefetch
from mixsync_dagster.core.classify import (
    MAX_ATTEMPTS,
    Action,
    classify,
    listing_prefix,
    retry_delay,
)
from mixsync_dagster.core.gcfreeze import long_lived_frozen
from mixsync_dagster.core.judge import make_evaluator, object_spec
from mixsync_dagster.core.mapping import compile_mapping
from mixsync_dagster.core.prefetch import prefetched
from mixsync_dagster.core.records import FileItem, Page, utcnow
from mixsync_dagster.core.runtime import SyncRuntime
from mixsync_dagster.errors import PermanentFileError
from mixsync_dagster.state import Claim, Outcome, PassRow, Tracked, TrackedRow, hash64
from mixsync_dagster.targets.base import ObjectSpec

PAGE_SIZE = 1_000
SAMPLES = 50
"""Excluded and failed files named (with their reasons) in a run's log and result."""


@dataclass(frozen=True, slots=True)
class Work:
    item: FileItem
    action: Action
    prior: TrackedRow | None
    fp: int


@dataclass
class Tally:
    """What a run (or part of one) did; `add` merges two."""

    listed: int = 0
    synced: int = 0
    excluded: int = 0
    failed: int = 0
    vanished: int = 0
    bytes: int = 0
    discovered: int = 0
    batches: int = 0
    skipped: int = 0
    kept: int = 0
    """Changed files whose objects stayed as they were (`reconcile.on_update: false`)."""
    excluded_samples: list[tuple[str, str]] = field(default_factory=list)
    failed_samples: list[tuple[str, str]] = field(default_factory=list)
    skipped_samples: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in ("listed", "synced", "excluded", "failed", "vanished", "bytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("discovered", "batches", "skipped", "kept"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("excluded_samples", "failed_samples", "skipped_samples"):
            mine = getattr(self, name)
            mine.extend(getattr(other, name)[: max(0, SAMPLES - len(mine))])


@dataclass
class SegmentResult:
    tally: Tally
    listing_done: bool
    stopped: str | None = None
    """Why the run stopped before the end of the listing: `cap` or `signal`."""
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class PageWork:
    """What a listed page needs: its files with something to do, and how many of the others
    the filters excluded before (and still do), which a pass counts as excluded too."""

    work: list[Work]
    excluded_before: int = 0


def needs_work(rt: SyncRuntime, page: Page, now: datetime) -> PageWork:
    """The page's files that need something done, with what and why.

    Most files of most passes are unchanged: one narrow query returns the fingerprint hashes of
    the page's settled files (synced or excluded under the current filters), and only the
    others are looked up in full and classified."""
    items = page.items
    if not items:
        return PageWork([])
    fh, dup = rt.filter_hash, rt.sync.skip_duplicates
    on_update = rt.sync.reconcile_policy.on_update
    fps = [hash64(i.fingerprint) for i in items]
    before = 0
    if dup:
        settled = rt.store.settled(rt.sync_id, [i.key for i in items], fh)
        open_items = []
        for i, fp in zip(items, fps, strict=True):
            got = settled.get(i.key)
            if got is not None and got[0] == fp:
                before += got[1]
            else:
                open_items.append((i, fp))
    else:
        open_items = list(zip(items, fps, strict=True))
    if not open_items:
        return PageWork([], before)
    known = rt.store.lookup(rt.sync_id, [i.key for i, _ in open_items])
    out = []
    for item, fp in open_items:
        prior = known.get(item.key)
        action = classify(prior, fp, fh, dup, now, on_update=on_update)
        if action is not None:
            out.append(Work(item, action, prior, fp))
        elif prior is not None and prior.status is Tracked.EXCLUDED:
            before += 1
    return PageWork(out, before)


def list_from(rt: SyncRuntime, position: str | None, page_size: int = PAGE_SIZE) -> Iterator[Page]:
    return rt.provider.list_pages(rt.sync.source_path, position, page_size, listing_prefix(rt.sync))


def run_segment(
    rt: SyncRuntime,
    claim: Claim,
    p: PassRow,
    *,
    max_files: int,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Callable[[Tally], None] | None = None,
) -> SegmentResult:
    """Carry the pass on from its committed position until the listing ends, `max_files`
    files were handled, or `should_stop()` (checked at every safe point) says so."""
    t0 = time.monotonic()
    total = Tally()
    if p.listing_done:
        return SegmentResult(total, True)
    chunker = _Chunker(rt, claim, p)
    workers = max(1, int(getattr(rt.sync, "sync_concurrency", 1)))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="mixsync-chunk") if workers > 1 else None
    handled = 0
    stopped: str | None = None
    done = False
    # Pages no larger than the run's cap: a run ends at a page boundary (positions are the
    # provider's), so it overshoots max_files by less than a page.
    page_size = min(PAGE_SIZE, max_files)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(long_lived_frozen())
            pages = prefetch.take_over(rt.sync_id, p.pass_uid, p.position, page_size)
            if pages is None:
                pages = stack.enter_context(
                    prefetched(
                        list_from(rt, p.position, page_size),
                        background=rt.provider.list_in_background,
                    )
                )
            else:
                stack.callback(pages.close)
            for page in pages:
                now = utcnow()
                assessed = needs_work(rt, page, now)
                work = assessed.work
                if work and handled >= max_files:
                    # The cap counts files handled; pages with nothing to do past it cost
                    # nothing, so a run only stops where the next run has work to pick up.
                    stopped = "cap"
                    break
                busy = {w.item.key for w in work}
                size = chunker.group_size(len(work), workers)
                groups = [work[i : i + size] for i in range(0, len(work), size)]
                if pool is None:
                    parts = [chunker.process(g) for g in groups]
                else:
                    futures: list[Future[Tally]] = [pool.submit(chunker.process, g) for g in groups]
                    parts = [f.result() for f in futures]
                # Files excluded earlier and unchanged count too: a pass's `excluded` is every
                # file its filters exclude, as `mixsync preview` lists them.
                before = assessed.excluded_before
                page_tally = Tally(
                    listed=len(page.items), skipped=len(page.skipped), excluded=before
                )
                page_tally.skipped_samples = [(s.key, s.reason) for s in page.skipped[:SAMPLES]]
                for part in parts:
                    page_tally.add(part)
                seen = [i.key for i in page.items if i.key not in busy] if p.stamps_seen else []
                chunker.commit_page(page.next_position, page_tally, seen, excluded=before)
                total.add(page_tally)
                handled += len(work)
                if progress is not None:
                    progress(total)
                if page.next_position is None:
                    done = True
                    break
                if should_stop():
                    stopped = "signal"
                    break
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return SegmentResult(total, done, stopped, time.monotonic() - t0)


class _Chunker:
    """Processes groups of files: judge, map, put, submit in batches of batch_size, commit."""

    def __init__(self, rt: SyncRuntime, claim: Claim, p: PassRow):
        self.rt = rt
        self.claim = claim
        self.pass_no = p.pass_no
        self.last_seen = p.pass_no if p.stamps_seen else None
        self.evaluate = make_evaluator(rt)
        self.mapper = compile_mapping(rt.sync.schema_mapping)
        self.intents = not getattr(rt.target, "one_object_per_ref", False)
        # Optional provider hook (the local folder's read-ahead): see Provider's docstring.
        self.will_read: Callable[[list[FileItem]], None] | None = getattr(
            rt.provider, "will_read", None
        )

    def group_size(self, files: int, workers: int) -> int:
        """Files per group (one put, one commit). A target that records intents (Mixpeek)
        commits after every batch, so a crash redoes at most one batch of uploads. A bucket
        that keeps one object per ref repeats a put harmlessly, so its groups take the whole
        page, split only to keep `sync_concurrency` workers busy: per-statement and
        per-commit costs were a third of a local first pass at 50 files a group."""
        b = self.rt.sync.batch_size
        if self.intents or files <= b:
            return b
        per_worker = -(-files // workers)
        return -(-per_worker // b) * b  # whole batches

    def process(self, work: list[Work]) -> Tally:
        rt = self.rt
        tally = Tally()
        if not work:
            return tally
        now = utcnow()
        outcomes: list[Outcome] = []
        forget: list[str] = []
        specs: list[tuple[Work, ObjectSpec]] = []
        verdicts = self.evaluate([w.item for w in work])
        for w, (item, verdict) in zip(work, verdicts, strict=True):
            if not verdict.ok:
                outcomes.append(
                    Outcome(
                        item.key,
                        w.fp,
                        Tracked.EXCLUDED,
                        w.prior.object_id if w.prior else None,
                        rt.filter_hash,
                    )
                )
                tally.excluded += 1
                tally.discovered += w.action is Action.NEW
                if len(tally.excluded_samples) < SAMPLES:
                    tally.excluded_samples.append(
                        (item.rel_path, f"{verdict.filter}: {verdict.reason}")
                    )
                continue
            if w.action is Action.KEEP and w.prior is not None:
                outcomes.append(
                    Outcome(item.key, w.fp, Tracked.SYNCED, w.prior.object_id, rt.filter_hash)
                )
                tally.kept += 1
                continue
            try:
                mapped = self.mapper(item)
            except PermanentFileError as e:
                outcomes.append(self._failure(w, str(e), now, tally))
                continue
            prior = w.prior
            specs.append(
                (
                    Work(item, w.action, prior, w.fp),
                    object_spec(
                        rt,
                        item,
                        mapped,
                        replaces=prior.object_id if prior else None,
                        interrupted=prior is not None and prior.status == Tracked.CREATING,
                    ),
                )
            )
        if specs and self.will_read is not None:
            reads = [w.item for w, spec in specs if spec.open_blob is not None]
            if reads:
                self.will_read(reads)
        if specs and self.intents:
            # Say what is about to be created before the target creates it: a run that dies
            # between the target's answer and our commit leaves rows a retry can resolve.
            with rt.store.tx() as c:
                rt.store.fence(c, self.claim)
                rt.store.write_tracked(
                    c,
                    rt.sync_id,
                    [
                        Outcome(
                            w.item.key,
                            w.fp,
                            Tracked.CREATING,
                            w.prior.object_id if w.prior else None,
                            rt.filter_hash,
                            w.prior.attempts if w.prior else 0,
                        )
                        for w, _ in specs
                    ],
                    self.last_seen,
                )
        results = rt.target.put_objects([s for _, s in specs]) if specs else []
        synced_ids: list[str] = []
        for (w, _), res in zip(specs, results, strict=True):
            if res.object_id:
                outcomes.append(
                    Outcome(w.item.key, w.fp, Tracked.SYNCED, res.object_id, rt.filter_hash)
                )
                synced_ids.append(res.object_id)
                tally.synced += 1
                tally.bytes += w.item.size
                tally.discovered += w.action is Action.NEW
            elif res.vanished:
                tally.vanished += 1
                if w.prior is None:
                    forget.append(w.item.key)
                elif self.intents:
                    # Undo the intent: the file is gone, its old row stands as it was.
                    outcomes.append(
                        Outcome(
                            w.item.key,
                            w.prior.fp,
                            w.prior.status,
                            w.prior.object_id,
                            w.prior.filter_hash,
                            w.prior.attempts,
                            w.prior.next_attempt_at,
                        )
                    )
            else:
                outcomes.append(self._failure(w, res.error or "unknown error", now, tally))
        submitted: list[tuple[str, str | None, int]] = []
        if synced_ids and not rt.sync.skip_batch_submission:
            size = rt.sync.batch_size
            groups = [synced_ids[i : i + size] for i in range(0, len(synced_ids), size)]
            done = rt.target.submit_batches(groups)
            submitted = [(b.batch_id, b.task_id, len(g)) for b, g in zip(done, groups, strict=True)]
            tally.batches += len(submitted)
        with rt.store.tx() as c:
            # The pass's own counts move with the files they count (in the fencing statement
            # itself), so a run that dies mid-page leaves them exact.
            rt.store.add_pass_counts(
                c,
                self.claim,
                synced=tally.synced,
                excluded=tally.excluded,
                failed=tally.failed,
                bytes=tally.bytes,
            )
            rt.store.write_tracked(c, rt.sync_id, outcomes, self.last_seen)
            if forget:
                rt.store.forget(c, rt.sync_id, forget)
            rt.store.record_batches(c, rt.sync_id, self.pass_no, submitted)
            rt.store.add_totals(
                c,
                rt.sync_id,
                total_files_discovered=tally.discovered,
                total_files_synced=tally.synced,
                total_bytes_synced=tally.bytes,
                total_files_failed=sum(1 for o in outcomes if o.status == Tracked.FAILED),
            )
        return tally

    def _failure(self, w: Work, error: str, now: datetime, tally: Tally) -> Outcome:
        prior = w.prior
        earlier = prior.attempts if prior is not None and prior.fp == w.fp else 0
        attempts = earlier + 1
        final = attempts >= MAX_ATTEMPTS
        tally.failed += 1
        tally.discovered += w.action is Action.NEW
        if len(tally.failed_samples) < SAMPLES:
            tally.failed_samples.append((w.item.rel_path, error[:300]))
        return Outcome(
            w.item.key,
            w.fp,
            Tracked.FAILED if final else Tracked.RETRY,
            prior.object_id if prior else None,
            self.rt.filter_hash,
            attempts,
            None if final else now + retry_delay(attempts, self.rt.sync.retry_backoff_seconds),
            error[:1000],
        )

    def commit_page(
        self, position: str | None, tally: Tally, seen: list[str], excluded: int = 0
    ) -> None:
        """The page is done: move the pass's position past it (and stamp what was seen);
        `excluded`: its files excluded earlier and unchanged (the groups counted the rest)."""
        self.rt.store.advance(
            self.claim,
            position,
            seen=seen if self.last_seen is not None else [],
            listed=tally.listed,
            excluded=excluded,
        )
