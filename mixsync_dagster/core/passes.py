"""A pass over a source, from claim to finish: the plain-Python logic of a sensor tick and of
`mixsync sync`, with the state kept in the pass row (position, owner, failures).

A tick (or the CLI) claims the pass, then *scans*: lists from the committed position and
moves it past pages where nothing needs doing (an unchanged pass ends right there, no run at
all). At the first page that needs work it stops and asks for a run, which lists from that
position itself and carries the pass on (see `segment`). Failures count once per pass: a
transient error is retried on later ticks with a backoff and counts only when the pass is given
up; a permanent one (refused credentials, a missing source) gives the pass up at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mixsync_dagster.core import prefetch
from mixsync_dagster.core.classify import listing_prefix
from mixsync_dagster.core.gcfreeze import long_lived_frozen
from mixsync_dagster.core.owners import Liveness, describe
from mixsync_dagster.core.prefetch import read_ahead
from mixsync_dagster.core.records import Skipped, utcnow
from mixsync_dagster.core.runtime import SyncRuntime
from mixsync_dagster.core.segment import PAGE_SIZE, SAMPLES, needs_work
from mixsync_dagster.errors import AuthError, MixsyncError, ProviderError, TransientError
from mixsync_dagster.redaction import redact
from mixsync_dagster.state import Claim, PassRow

TICK_LISTING_BUDGET_SECONDS = 20.0
"""How long one sensor tick may list: well inside Dagster's 60 s evaluation limit."""
MAX_TICK_INTERVAL_SECONDS = 30
"""Sensors tick at least this often, so `trigger` and a resumed sync act within 30 s."""
PASS_ATTEMPTS = 5
"""Failed attempts (ticks or runs) after which a pass with transient errors is given up."""
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 600


def tick_interval(sync_polling_seconds: int) -> int:
    return min(sync_polling_seconds, MAX_TICK_INTERVAL_SECONDS)


def attempt_backoff(failures: int) -> timedelta:
    """Wait after the n-th failed attempt of a pass: 30 s, 60 s, 120 s, ... at most 10 min."""
    return timedelta(seconds=min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(failures - 1, 0)))


@dataclass(frozen=True)
class Busy:
    """The pass cannot be acted on now, and why (for the tick's skip reason or the CLI)."""

    message: str


@dataclass(frozen=True)
class ScanResult:
    listed: int
    found_work: bool
    listing_done: bool
    skipped: list[Skipped]
    excluded: int = 0
    """Files listed (and passed over) that the filters had excluded before and still do."""


@dataclass(frozen=True)
class RunPlan:
    """A run to request: it carries the pass on from its position (or reconciles and ends it)."""

    pass_uid: str
    pass_no: int
    token: int
    seq: int


def is_due(rt: SyncRuntime, p: PassRow | None, now: datetime) -> tuple[bool, datetime | None]:
    """Whether a new pass should start, and when the next one is due.

    A pass is due up to half a tick early: a tick a moment before the due time would otherwise
    leave the pass a whole tick late."""
    if p is None:
        return True, None
    if rt.sync.sync_mode == "initial_only":
        return p.state == "given_up", None
    due_at = p.started_at + timedelta(seconds=rt.sync.polling_interval_seconds)
    # A pass starts a moment after its tick does (the tick sweeps runs and reads state first),
    # so the tick one interval later comes a moment *before* the due time. Without slack that
    # tick skips and the pass waits a whole tick (a 30 s sync polling every 60 s).
    slack = timedelta(seconds=tick_interval(rt.sync.polling_interval_seconds) / 2)
    return now + slack >= due_at, due_at


def acquire(
    rt: SyncRuntime,
    me: str,
    *,
    alive: Liveness,
    start_new: bool,
) -> Claim | Busy:
    """Continue the open pass (ours, released, or its owner dead) or, when `start_new`, begin
    the next one. Never acts on a pass a live owner holds."""
    now = utcnow()
    store = rt.store
    p = store.get_pass(rt.sync_id)
    if p is not None and p.is_open:
        if p.owner == me and not p.claim_lapsed(now):
            return Claim(p.sync_id, p.pass_no, p.pass_uid, p.token, me)
        if p.owner is not None and not p.claim_lapsed(now) and alive(p.owner) is not False:
            return Busy(
                f"pass {p.pass_no} is in progress, owned by {describe(p.owner)} "
                f"(started {p.started_at.isoformat(timespec='seconds')})"
            )
        claim = store.take_over(p, me)
        return claim if claim is not None else Busy("another process claimed the pass first")
    if not start_new:
        return Busy("no pass is open")
    claim = store.start_pass(
        rt.sync_id,
        me,
        observed=p,
        stamps_seen=rt.sync.reconcile_policy.on_delete,
        interval_seconds=rt.sync.polling_interval_seconds,
    )
    return claim if claim is not None else Busy("another process started a pass first")


SCAN_COMMIT_SECONDS = 1.0
"""A scan moves the pass's position at most this often (and when it stops): a crash costs at
most a second of re-listing, and a long unchanged listing is not a commit per page."""
SCAN_COMMIT_PAGES = 20


HANDOFF_DEPTH = 16
"""Pages a scan that hands its listing over may read ahead while the run is being set up."""


def scan(
    rt: SyncRuntime, claim: Claim, *, budget_seconds: float | None, hand_over: bool = False
) -> ScanResult:
    """List from the pass's position, moving it past pages where nothing needs doing, until a
    page needs work (the position stays before it, for the run), the listing ends, or the
    budget is spent. The next page is fetched while this one is compared.

    With `hand_over` (a run in this same process comes next), a listing that found work keeps
    going in the background, up to HANDOFF_DEPTH pages, for the run to take over."""
    store = rt.store
    p = store.get_pass(rt.sync_id)
    assert p is not None
    if p.listing_done:
        return ScanResult(0, False, True, [])
    try:
        with long_lived_frozen():
            result = _scan_pages(rt, claim, p, budget_seconds, hand_over)
    except ProviderError as e:
        store.note_listing(rt.sync_id, redact(f"{type(e).__name__}: {e}"))
        raise
    store.note_listing(rt.sync_id, None)
    return result


def _scan_pages(
    rt: SyncRuntime, claim: Claim, p: PassRow, budget_seconds: float | None, hand_over: bool
) -> ScanResult:
    store = rt.store
    started = time.monotonic()
    listed = excluded = 0
    skipped: list[Skipped] = []
    pending: dict[str, Any] = {
        "position": p.position,
        "listed": 0,
        "excluded": 0,
        "seen": [],
        "pages": 0,
    }
    last_commit = started

    def commit() -> None:
        nonlocal last_commit
        if pending["pages"]:
            store.advance(
                claim,
                pending["position"],
                seen=pending["seen"],
                listed=pending["listed"],
                excluded=pending["excluded"],
            )
        pending.update(listed=0, excluded=0, seen=[], pages=0)
        last_commit = time.monotonic()

    pages = rt.provider.list_pages(
        rt.sync.source_path, p.position, PAGE_SIZE, listing_prefix(rt.sync)
    )
    source = read_ahead(pages, HANDOFF_DEPTH if hand_over else 1, rt.provider.list_in_background)
    kept = False
    try:
        ahead = iter(source)
        for page in ahead:
            assessed = needs_work(rt, page, utcnow())
            if assessed.work:
                commit()
                if hand_over:
                    prefetch.hand_over(
                        prefetch.Handoff(
                            rt.sync_id,
                            p.pass_uid,
                            pending["position"],
                            PAGE_SIZE,
                            page,
                            ahead,
                            source,
                        )
                    )
                    kept = True
                return ScanResult(listed, True, False, skipped, excluded)
            listed += len(page.items)
            skipped.extend(page.skipped[: max(0, SAMPLES - len(skipped))])
            pending["position"] = page.next_position
            pending["listed"] += len(page.items)
            pending["pages"] += 1
            pending["excluded"] += assessed.excluded_before
            excluded += assessed.excluded_before
            if p.stamps_seen:
                pending["seen"].extend(i.key for i in page.items)
            done = page.next_position is None
            spent = budget_seconds is not None and time.monotonic() - started > budget_seconds
            if (
                done
                or spent
                or pending["pages"] >= SCAN_COMMIT_PAGES
                or time.monotonic() - last_commit >= SCAN_COMMIT_SECONDS
            ):
                commit()
            if done:
                return ScanResult(listed, False, True, skipped, excluded)
            if spent:
                return ScanResult(listed, False, False, skipped, excluded)
        commit()
        return ScanResult(listed, False, True, skipped, excluded)
    finally:
        if not kept:
            source.close()


def reconcile_pending(rt: SyncRuntime, claim: Claim) -> int:
    """Objects the pass's reconcile would delete (counted, not loaded)."""
    policy = rt.sync.reconcile_policy
    p = rt.store.get_pass(rt.sync_id)
    gone = policy.on_delete and p is not None and p.stamps_seen
    doomed, _ = rt.store.reconcile_counts(
        rt.sync_id, claim.pass_no, gone=gone, drift=policy.on_filter_drift
    )
    return doomed


def request_run(rt: SyncRuntime, claim: Claim) -> RunPlan:
    seq = rt.store.next_run_key(claim)
    return RunPlan(claim.pass_uid, claim.pass_no, claim.token, seq)


def finish(rt: SyncRuntime, claim: Claim, *, reported: bool = True) -> str:
    """Close a pass whose listing is complete; returns the sync's status. `reported`: the
    caller records the pass's observation in Dagster (else the next sensor tick does)."""
    return rt.store.finish_pass(
        claim,
        complete=True,
        initial_only=rt.sync.sync_mode == "initial_only",
        interval_seconds=rt.sync.polling_interval_seconds,
        reported=reported,
    )


def is_transient(error: BaseException) -> bool:
    """Worth retrying later in the same pass: throttling, 5xx, a dropped connection, and
    anything unexpected. Refused credentials, a missing source, a refused reconcile are not."""
    if isinstance(error, AuthError):
        return False
    if isinstance(error, TransientError):
        return True
    return not isinstance(error, MixsyncError)


def fail_attempt(
    rt: SyncRuntime, pass_uid: str, error: BaseException | str, *, transient: bool | None = None
) -> tuple[bool, str]:
    """A tick or run of the pass failed. Transient errors are retried after a backoff until the
    pass has failed PASS_ATTEMPTS times; others give the pass up at once. A given-up pass counts
    once toward auto-suspend. Returns (counted, the sync's status).

    The text becomes `last_error` (state database, status, sensor skip reasons): redacted,
    whatever raised it."""
    text = redact(error if isinstance(error, str) else f"{type(error).__name__}: {error}")
    if transient is None:
        transient = isinstance(error, BaseException) and is_transient(error)
    p = rt.store.get_pass(rt.sync_id)
    failures = (p.failures if p is not None and p.pass_uid == pass_uid else 0) + 1
    give_up = not transient or failures >= PASS_ATTEMPTS
    return rt.store.record_pass_failure(
        rt.sync_id,
        pass_uid,
        text,
        give_up=give_up,
        retry_at=None if give_up else utcnow() + attempt_backoff(failures),
        threshold=rt.sync.max_consecutive_failures,
    )


def fail_before_pass(rt: SyncRuntime, error: MixsyncError | str) -> str:
    """A failure with no pass to charge it to: counts once. Returns the sync's status."""
    text = redact(error if isinstance(error, str) else f"{type(error).__name__}: {error}")
    return rt.store.count_outside_pass(rt.sync_id, text, rt.sync.max_consecutive_failures)


@dataclass(frozen=True)
class TickOutcome:
    """What a sensor tick decided: a run to request (or none) and what a person should read."""

    message: str
    run: RunPlan | None = None
    finished: str | None = None
    """The sync's status when this tick finished a pass (the metrics are worth recording)."""


def tick(
    rt: SyncRuntime,
    me: str,
    *,
    in_flight: str | None,
    alive: Liveness,
    budget_seconds: float = TICK_LISTING_BUDGET_SECONDS,
) -> TickOutcome:
    """One sensor evaluation for one sync: the plain-Python part of the sensor."""
    now = utcnow()
    row = rt.store.get_sync(rt.name)
    status = row["status"]
    p = rt.store.get_pass(rt.sync_id)
    if status == "SUSPENDED":
        return TickOutcome(suspended_message(rt.name, row))
    if in_flight:
        progress = f"; pass {p.pass_no}: listed {p.listed}, synced {p.synced} so far" if p else ""
        return TickOutcome(f"run {in_flight} is in flight{progress}")
    if p is not None and p.is_open and p.retry_at is not None and now < p.retry_at:
        wait = int((p.retry_at - now).total_seconds()) + 1
        return TickOutcome(
            f"pass {p.pass_no} failed ({p.failures}x, last: {p.last_error}); next attempt in "
            f"{wait} s"
        )
    start_new = False
    if p is None or not p.is_open:
        triggered = rt.store.take_trigger(rt.name)
        due, due_at = is_due(rt, p, now)
        if status == "COMPLETED" and not triggered:
            return TickOutcome("one-time sync COMPLETED; `mixsync trigger` runs it again")
        if not (due or triggered):
            wait = max(0, int((due_at - now).total_seconds())) if due_at else 0
            when = due_at.isoformat(timespec="seconds") if due_at else "-"
            last = (
                f"; last pass {p.pass_no}: listed {p.listed}, {p.synced} synced, "
                f"{p.excluded} excluded, {p.failed} failed"
                if p
                else ""
            )
            return TickOutcome(f"next pass in {wait} s (at {when}){last}")
        start_new = True
    got = acquire(rt, me, alive=alive, start_new=start_new)
    if isinstance(got, Busy):
        return TickOutcome(got.message)
    claim = got
    try:
        found = scan(rt, claim, budget_seconds=budget_seconds)
    except MixsyncError as e:
        fail_attempt(rt, claim.pass_uid, e)
        raise
    skipped = f", {len(found.skipped)} skipped by the provider" if found.skipped else ""
    if found.found_work:
        plan = request_run(rt, claim)
        return TickOutcome(
            f"pass {claim.pass_no}: listed {found.listed} unchanged{skipped}, then new or "
            f"changed files; run #{plan.seq} syncs them",
            run=plan,
        )
    if not found.listing_done:
        return TickOutcome(
            f"pass {claim.pass_no}: listed {found.listed}{skipped} this tick, 0 new; the next "
            "tick continues the listing"
        )
    if reconcile_pending(rt, claim):
        plan = request_run(rt, claim)
        return TickOutcome(
            f"pass {claim.pass_no}: listing complete, nothing new; run #{plan.seq} reconciles",
            run=plan,
        )
    p2 = rt.store.get_pass(rt.sync_id)
    total = p2.listed if p2 else found.listed
    excluded = f" ({p2.excluded} excluded)" if p2 and p2.excluded else ""
    new_status = finish(rt, claim)
    nxt = (
        f"; next pass in {rt.sync.polling_interval_seconds} s"
        if rt.sync.sync_mode == "continuous"
        else ""
    )
    return TickOutcome(
        f"pass {claim.pass_no} done: listed {total}, 0 new{excluded}{skipped}; status "
        f"{new_status}{nxt}",
        finished=new_status,
    )


def suspended_message(name: str, row: dict[str, object]) -> str:
    """Why a suspended sync does nothing, and how to bring it back."""
    return (
        f"SUSPENDED after {row['consecutive_failures']} failed passes in a row: "
        f"{row['last_error']}; `mixsync resume {name}` (or starting the sensor) clears it"
    )
