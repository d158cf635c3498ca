"""Passes over a source, chunked across sensor ticks, with the position kept in a cursor.

Plain Python: the sensor feeds it the cursor and whether a run of the sync is still in flight,
and gets back the new cursor, at most one work list to launch, and a message for the UI.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

from mixsync_dagster.core import engine
from mixsync_dagster.core.engine import SyncRuntime
from mixsync_dagster.core.records import utcnow


@dataclass(frozen=True)
class PassCursor:
    """What the sensor remembers between ticks.

    `epoch` is drawn once per cursor so run keys stay unique even if the state store is reset;
    `pos` is the provider position inside the current pass.
    """

    epoch: str
    pass_no: int = 0
    started: str | None = None
    pos: str | None = None
    listing_done: bool = True
    finished: bool = True
    chunk: int = 0
    scope: str = ""
    """What the position indexes (source_path + pushed-down prefix); a change restarts the pass."""
    reconciled: bool = False

    @property
    def pass_id(self) -> str:
        return f"{self.epoch}-{self.pass_no}"

    def dump(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def load(cls, text: str | None) -> PassCursor:
        if not text:
            return cls(epoch=secrets.token_hex(4))
        data = json.loads(text)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class TickOutcome:
    cursor: PassCursor
    work_id: str | None
    message: str


def work_id_for(sync: str, cur: PassCursor) -> str:
    return f"{sync}-{cur.pass_id}-{cur.chunk}"


def tick(rt: SyncRuntime, cur: PassCursor, *, in_flight: str | None) -> TickOutcome:
    """One sensor evaluation for one sync."""
    row = rt.store.get_sync(rt.name)
    status = row["status"]
    if status == "PAUSED":
        return TickOutcome(cur, None, "paused (`mixsync resume` continues from the cursor)")
    if status == "SUSPENDED":
        return TickOutcome(cur, None, f"suspended after failures: {row['last_error'] or ''}")
    if status == "COMPLETED":
        return TickOutcome(cur, None, "initial_only sync completed; nothing more to do")
    if in_flight:
        return TickOutcome(cur, None, f"run {in_flight} of this sync is in flight; waiting")
    now = utcnow()
    scope = f"{rt.sync.source_path}|{engine.listing_prefix(rt.sync)}"
    if not cur.finished and cur.scope != scope:
        # source_path or include patterns changed mid-pass: the position means nothing now.
        cur = replace(cur, finished=True, listing_done=True, started=None)
    closing = ""
    if cur.listing_done and not cur.finished and cur.started:
        closed = close_pass(rt, cur)
        if closed.work_id is not None or closed.message.endswith("COMPLETED"):
            return closed
        cur, closing = closed.cursor, closed.message + "; "
    if cur.finished:
        triggered = rt.store.take_trigger(rt.name)
        due = cur.started is None or now >= datetime.fromisoformat(cur.started) + timedelta(
            seconds=rt.sync.polling_interval_seconds
        )
        if rt.sync.sync_mode == "initial_only" and row["next_sync_at"] is not None:
            due = True  # the last pass left work unfinished: go again now
        if not (due or triggered):
            nxt = datetime.fromisoformat(cur.started or now.isoformat()) + timedelta(
                seconds=rt.sync.polling_interval_seconds
            )
            return TickOutcome(
                cur, None, f"{closing}next pass at {nxt.isoformat(timespec='seconds')}"
            )
        cur = replace(
            cur,
            pass_no=cur.pass_no + 1,
            started=now.isoformat(),
            pos=None,
            listing_done=False,
            finished=False,
            chunk=0,
            scope=scope,
            reconciled=False,
        )
        rt.store.set_sync(
            None,
            rt.name,
            next_sync_at=now + timedelta(seconds=rt.sync.polling_interval_seconds),
        )
    plan = engine.plan_chunk(rt, cur.pass_id, cur.pos)
    skipped = f", {len(plan.skipped)} skipped by the provider" if plan.skipped else ""
    listed = f"listed {plan.listed} file(s){skipped}"
    if plan.items:
        work_id = work_id_for(rt.name, cur)
        rt.store.save_work(work_id, rt.name, cur.pass_id, cur.chunk, plan.listing_done, plan.items)
        after = replace(
            cur, pos=plan.next_position, listing_done=plan.listing_done, chunk=cur.chunk + 1
        )
        msg = f"pass {cur.pass_id}: {listed}; {len(plan.items)} to sync in {work_id}"
        return TickOutcome(after, work_id, msg)
    cur = replace(cur, pos=plan.next_position, listing_done=plan.listing_done)
    if plan.listing_done:
        closed = close_pass(rt, cur)
        return replace(closed, message=f"{listed}; {closed.message}")
    return TickOutcome(cur, None, f"pass {cur.pass_id}: {listed}, nothing to sync yet; continuing")


def close_pass(rt: SyncRuntime, cur: PassCursor) -> TickOutcome:
    """Every chunk of the pass has run: reconcile if asked (one more run), then finish it."""
    note = ""
    if rt.sync.reconcile_policy.deletes and not cur.reconciled:
        cur = replace(cur, reconciled=True)
        if rt.store.pending_work(rt.name, cur.pass_id):
            note = "reconcile skipped: a run of this pass failed, so nothing is deleted; "
        else:
            items = engine.plan_reconcile(rt, cur.pass_id)
            if items:
                work_id = work_id_for(rt.name, cur)
                rt.store.save_work(work_id, rt.name, cur.pass_id, cur.chunk, True, items)
                cur = replace(cur, chunk=cur.chunk + 1)
                msg = f"pass {cur.pass_id}: reconcile {len(items)} object(s) in {work_id}"
                return TickOutcome(cur, work_id, msg)
            note = "reconcile: nothing to delete; "
    started = datetime.fromisoformat(cur.started) if cur.started else utcnow()
    status = engine.finish_pass(rt, cur.pass_id, started)
    cur = replace(cur, finished=True)
    if status == "COMPLETED":
        return TickOutcome(cur, None, f"{note}initial pass complete: sync COMPLETED")
    return TickOutcome(cur, None, f"{note}pass {cur.pass_id} done; status {status}")
