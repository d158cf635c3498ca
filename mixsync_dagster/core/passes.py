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

from mixsync_dagster.core.classify import listing_prefix
from mixsync_dagster.core.owners import Liveness, describe
from mixsync_dagster.core.records import Skipped, utcnow
from mixsync_dagster.core.runtime import SyncRuntime
from mixsync_dagster.core.segment import PAGE_SIZE, SAMPLES, needs_work
from mixsync_dagster.errors import AuthError, MixsyncError, TransientError
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
    slack = timedelta(seconds=min(5.0, tick_interval(rt.sync.polling_interval_seconds) / 2))
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


def scan(rt: SyncRuntime, claim: Claim, *, budget_seconds: float | None) -> ScanResult:
    """List from the pass's position, moving it past pages where nothing needs doing, until a
    page needs work (the position stays before it, for the run), the listing ends, or the
    budget is spent."""
    store = rt.store
    p = store.get_pass(rt.sync_id)
    assert p is not None
    if p.listing_done:
        return ScanResult(0, False, True, [])
    started = time.monotonic()
    listed = 0
    skipped: list[Skipped] = []
    pages = rt.provider.list_pages(
        rt.sync.source_path, p.position, PAGE_SIZE, listing_prefix(rt.sync)
    )
    try:
        for page in pages:
            known = store.lookup(rt.sync_id, [i.key for i in page.items])
            if needs_work(rt, page, known, utcnow()):
                return ScanResult(listed, True, False, skipped)
            listed += len(page.items)
            skipped.extend(page.skipped[: max(0, SAMPLES - len(skipped))])
            seen = [i.key for i in page.items] if p.stamps_seen else []
            store.advance(claim, page.next_position, seen=seen, listed=len(page.items))
            if page.next_position is None:
                return ScanResult(listed, False, True, skipped)
            if budget_seconds is not None and time.monotonic() - started > budget_seconds:
                return ScanResult(listed, False, False, skipped)
    finally:
        close = getattr(pages, "close", None)
        if close is not None:
            close()
    return ScanResult(listed, False, True, skipped)


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


def finish(rt: SyncRuntime, claim: Claim) -> str:
    """Close a pass whose listing is complete; returns the sync's status."""
    return rt.store.finish_pass(
        claim,
        complete=True,
        initial_only=rt.sync.sync_mode == "initial_only",
        interval_seconds=rt.sync.polling_interval_seconds,
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
        return TickOutcome(
            f"SUSPENDED after {row['consecutive_failures']} failed passes: {row['last_error']}; "
            f"`mixsync resume {rt.name}` clears it"
        )
    if status == "PAUSED":
        return TickOutcome(f"paused; `mixsync resume {rt.name}` continues from the position")
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
            wait = int((due_at - now).total_seconds()) + 1 if due_at else 0
            when = due_at.isoformat(timespec="seconds") if due_at else "-"
            last = f"; last pass {p.pass_no}: listed {p.listed}, synced {p.synced}" if p else ""
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
            f"pass {claim.pass_no}: listed {found.listed}{skipped}, then found files to sync; "
            f"run #{plan.seq} carries the pass on",
            run=plan,
        )
    if not found.listing_done:
        return TickOutcome(
            f"pass {claim.pass_no}: listed {found.listed}{skipped} this tick, nothing to sync "
            "yet; the next tick continues"
        )
    if reconcile_pending(rt, claim):
        plan = request_run(rt, claim)
        return TickOutcome(
            f"pass {claim.pass_no}: listing complete, nothing new; run #{plan.seq} reconciles",
            run=plan,
        )
    p2 = rt.store.get_pass(rt.sync_id)
    total = p2.listed if p2 else found.listed
    new_status = finish(rt, claim)
    return TickOutcome(
        f"pass {claim.pass_no} done: listed {total}{skipped}, 0 to sync; status {new_status}",
        finished=new_status,
    )
