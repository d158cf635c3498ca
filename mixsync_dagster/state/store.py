"""The state store: sync status and metrics, and the pass each sync is in, with its owner.

SQLAlchemy Core over SQLite (default) or PostgreSQL. This package is the only code that reads or
writes mixsync's tables; the core asks it for small frozen records.

Ownership. A pass is claimed by whoever starts or continues it (a sensor, a run, `mixsync sync`);
each change of owner moves the pass's fencing token. Every write that belongs to a pass runs in
a transaction whose first statement is `fence()`: an UPDATE of the pass row that matches only
the caller's token and owner. It also takes the row's write lock, so a takeover either happens
before that transaction (which then fails with PassLost) or waits until it has committed.
Status changes are single statements that compute the new status from the current one, so a
resume is never overwritten by a concurrent write. Running vs paused is not a status here: it
is the sync's sensor state in the Dagster instance (`MirrorQueries` keeps who paused it).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from mixsync_dagster.clock import as_utc, utcnow
from mixsync_dagster.errors import PassLost
from mixsync_dagster.state.history import HistoryQueries
from mixsync_dagster.state.mirror import MirrorQueries
from mixsync_dagster.state.schema import get_engine, passes, syncs
from mixsync_dagster.state.tracking import TrackingQueries

CLAIM_TTL_SECONDS = 600
"""A claim lapses this long after its owner last committed or ticked; then anyone may take it."""


@dataclass(frozen=True, slots=True)
class PassRow:
    """A sync's current (or last) pass, as stored."""

    sync_id: int
    pass_no: int
    pass_uid: str
    state: str
    """open | done | given_up"""
    token: int
    owner: str | None
    claim_expires_at: datetime | None
    started_at: datetime
    finished_at: datetime | None
    position: str | None
    listing_done: bool
    stamps_seen: bool
    runs_requested: int
    failures: int
    retry_at: datetime | None
    last_error: str | None
    listed: int
    synced: int
    excluded: int
    failed: int
    deleted: int
    bytes: int

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    def claim_lapsed(self, now: datetime) -> bool:
        return self.owner is None or self.claim_expires_at is None or self.claim_expires_at < now


@dataclass(frozen=True, slots=True)
class Claim:
    """Proof of ownership of an open pass: every write of the pass presents it."""

    sync_id: int
    pass_no: int
    pass_uid: str
    token: int
    owner: str


_PASS_FIELDS = [f.name for f in fields(PassRow)]


def _row_to_pass(r: Any) -> PassRow:
    values = {k: r[k] for k in _PASS_FIELDS}
    for k in ("claim_expires_at", "started_at", "finished_at", "retry_at"):
        if values[k] is not None:
            values[k] = as_utc(values[k])
    return PassRow(**values)


class StateStore(TrackingQueries, HistoryQueries, MirrorQueries):
    """Typed access to the state tables. Cheap to create; engines are shared per URL."""

    def __init__(self, url: str):
        self.url = url
        self.engine = get_engine(url)
        self._ids: dict[str, int] = {}

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"StateStore({self.safe_url})"

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.engine.begin() as c:
            yield c

    # ------------------------------------------------------------ syncs

    def sync_id(self, name: str) -> int:
        """The sync's integer id, creating its row on first use (race-safe)."""
        sid = self._ids.get(name)
        if sid is not None:
            return sid
        with self.tx() as c:
            sid = c.execute(select(syncs.c.id).where(syncs.c.name == name)).scalar()
            if sid is None:
                try:
                    with c.begin_nested():
                        c.execute(
                            insert(syncs).values(
                                name=name,
                                status="PENDING",
                                total_files_discovered=0,
                                total_files_synced=0,
                                total_files_failed=0,
                                total_bytes_synced=0,
                                consecutive_failures=0,
                                passes_completed=0,
                                pass_seq=0,
                                updated_at=utcnow(),
                            )
                        )
                except IntegrityError:
                    pass  # another process created it first
                sid = c.execute(select(syncs.c.id).where(syncs.c.name == name)).scalar_one()
        self._ids[name] = int(sid)
        return int(sid)

    def get_sync(self, name: str) -> dict[str, Any]:
        sid = self.sync_id(name)
        with self.engine.connect() as c:
            row = c.execute(select(syncs).where(syncs.c.id == sid)).mappings().one()
        return {k: as_utc(v) if isinstance(v, datetime) else v for k, v in row.items()}

    def _set(self, c: Connection, name: str, **values: Any) -> int:
        values["updated_at"] = utcnow()
        sid = self.sync_id(name)
        return int(c.execute(update(syncs).where(syncs.c.id == sid).values(**values)).rowcount)

    def resume(self, name: str) -> bool:
        """SUSPENDED → ACTIVE with its failure count afresh, and the pause mirror cleared (the
        caller starts the sensor). False when the sync was not suspended."""
        s = syncs.c
        with self.tx() as c:
            sid = self.sync_id(name)
            res = c.execute(
                update(syncs)
                .where(and_(s.id == sid, s.status == "SUSPENDED"))
                .values(consecutive_failures=0, status="ACTIVE", updated_at=utcnow())
            )
        self.clear_paused(sid)
        return bool(res.rowcount)

    def request_trigger(self, name: str) -> None:
        """`mixsync trigger`: the next tick starts a pass; a COMPLETED one-time sync runs again."""
        s = syncs.c
        with self.tx() as c:
            self._set(
                c,
                name,
                trigger_requested_at=utcnow(),
                status=case((s.status == "COMPLETED", "ACTIVE"), else_=s.status),
            )

    def take_trigger(self, name: str) -> bool:
        """True once per `mixsync trigger`: clears the request atomically."""
        sid = self.sync_id(name)
        with self.tx() as c:
            res = c.execute(
                update(syncs)
                .where(and_(syncs.c.id == sid, syncs.c.trigger_requested_at.is_not(None)))
                .values(trigger_requested_at=None)
            )
            return bool(res.rowcount)

    def add_totals(self, c: Connection, sync_id: int, **deltas: int) -> None:
        values = {k: getattr(syncs.c, k) + v for k, v in deltas.items() if v}
        if values:
            c.execute(update(syncs).where(syncs.c.id == sync_id).values(**values))

    # ------------------------------------------------------------ passes

    def get_pass(self, sync_id: int) -> PassRow | None:
        with self.engine.connect() as c:
            r = c.execute(select(passes).where(passes.c.sync_id == sync_id)).mappings().first()
        return _row_to_pass(r) if r is not None else None

    def start_pass(
        self,
        sync_id: int,
        owner: str,
        *,
        observed: PassRow | None,
        stamps_seen: bool,
        interval_seconds: int,
        ttl: int = CLAIM_TTL_SECONDS,
    ) -> Claim | None:
        """Begin the next pass, owned by `owner`; None if someone else moved first.

        `observed` is the pass row the caller decided on (it must not be open)."""
        now = utcnow()
        uid = secrets.token_hex(4)
        values: dict[str, Any] = {
            "pass_uid": uid,
            "state": "open",
            "owner": owner,
            "claim_expires_at": now + timedelta(seconds=ttl),
            "started_at": now,
            "finished_at": None,
            "position": None,
            "listing_done": False,
            "stamps_seen": stamps_seen,
            "runs_requested": 0,
            "failures": 0,
            "retry_at": None,
            "last_error": None,
            **dict.fromkeys(("listed", "synced", "excluded", "failed", "deleted", "bytes"), 0),
        }
        with self.tx() as c:
            if observed is not None and observed.is_open:
                return None
            if observed is None:
                token = 1
                try:
                    with c.begin_nested():
                        c.execute(
                            insert(passes).values(sync_id=sync_id, pass_no=0, token=token, **values)
                        )
                except IntegrityError:
                    return None
            else:
                token = observed.token + 1
                res = c.execute(
                    update(passes)
                    .where(
                        and_(
                            passes.c.sync_id == sync_id,
                            passes.c.token == observed.token,
                            passes.c.state != "open",
                        )
                    )
                    .values(token=token, **values)
                )
                if res.rowcount != 1:
                    return None
            c.execute(
                update(syncs)
                .where(syncs.c.id == sync_id)
                .values(
                    pass_seq=syncs.c.pass_seq + 1,
                    next_sync_at=now + timedelta(seconds=interval_seconds),
                )
            )
            pass_no = int(
                c.execute(select(syncs.c.pass_seq).where(syncs.c.id == sync_id)).scalar_one()
            )
            c.execute(update(passes).where(passes.c.sync_id == sync_id).values(pass_no=pass_no))
        return Claim(sync_id, pass_no, uid, token, owner)

    def take_over(
        self, observed: PassRow, owner: str, *, ttl: int = CLAIM_TTL_SECONDS
    ) -> Claim | None:
        """Claim an open pass from its released, lapsed or dead owner (the caller judged it);
        the token moves, so the old owner can commit nothing more. None if someone moved first."""
        now = utcnow()
        token = observed.token + 1
        with self.tx() as c:
            res = c.execute(
                update(passes)
                .where(
                    and_(
                        passes.c.sync_id == observed.sync_id,
                        passes.c.token == observed.token,
                        passes.c.state == "open",
                    )
                )
                .values(token=token, owner=owner, claim_expires_at=now + timedelta(seconds=ttl))
            )
            if res.rowcount != 1:
                return None
        return Claim(observed.sync_id, observed.pass_no, observed.pass_uid, token, owner)

    def resume_claim(self, observed: PassRow, owner: str, token: int) -> Claim | None:
        """A run taking over from the sensor (or CLI) that requested it with `token`: the token
        moves, so a run re-executed later from the UI, or a second copy, finds it stale. The
        same run id asking again (a retried step) gets its claim back unchanged."""
        if observed.owner == owner and observed.is_open:
            return Claim(
                observed.sync_id, observed.pass_no, observed.pass_uid, observed.token, owner
            )
        if observed.token != token or not observed.is_open:
            return None
        return self.take_over(observed, owner)

    def fence(self, c: Connection, claim: Claim, **values: Any) -> None:
        """First statement of every write of a pass: renew the claim (and set `values`) only
        if `claim` still owns the open pass; otherwise raise PassLost and write nothing."""
        values["claim_expires_at"] = utcnow() + timedelta(seconds=CLAIM_TTL_SECONDS)
        res = c.execute(
            update(passes)
            .where(
                and_(
                    passes.c.sync_id == claim.sync_id,
                    passes.c.token == claim.token,
                    passes.c.owner == claim.owner,
                    passes.c.state == "open",
                )
            )
            .values(**values)
        )
        if res.rowcount != 1:
            raise PassLost(
                f"pass {claim.pass_no} was taken over by another owner (claim of {claim.owner} "
                f"with token {claim.token} is stale); this process stops here"
            )

    def renew(self, claim: Claim, **values: Any) -> None:
        with self.tx() as c:
            self.fence(c, claim, **values)

    def hand_back(self, claim: Claim, owner: str | None) -> Claim | None:
        """Give the open pass to `owner` (the sensor or CLI that launched this run), keeping
        the token; None (and nothing changed) when the claim was already lost."""
        with self.tx() as c:
            try:
                self.fence(c, claim, owner=owner)
            except PassLost:
                return None
        return Claim(claim.sync_id, claim.pass_no, claim.pass_uid, claim.token, owner or "")

    def release(self, claim: Claim) -> bool:
        """Leave the open pass unowned (Ctrl-C, a finished run): anyone may continue it."""
        with self.tx() as c:
            res = c.execute(
                update(passes)
                .where(
                    and_(
                        passes.c.sync_id == claim.sync_id,
                        passes.c.token == claim.token,
                        passes.c.owner == claim.owner,
                    )
                )
                .values(owner=None, claim_expires_at=None)
            )
            return bool(res.rowcount)

    def advance(
        self, claim: Claim, position: str | None, *, seen: Sequence[str], **counts: int
    ) -> None:
        """Move the pass past a listed page: its position (None: the listing is done), its
        counts, and the `last_seen` stamps of the page's files when reconcile needs them."""
        values: dict[str, Any] = {k: getattr(passes.c, k) + v for k, v in counts.items() if v}
        with self.tx() as c:
            self.fence(c, claim, position=position, listing_done=position is None, **values)
            if seen:
                self.stamp_seen(c, claim.sync_id, seen, claim.pass_no)

    def next_run_key(self, claim: Claim) -> int:
        """Count a run requested for the pass; its number keeps run keys unique."""
        with self.tx() as c:
            self.fence(c, claim, runs_requested=passes.c.runs_requested + 1)
            return int(
                c.execute(
                    select(passes.c.runs_requested).where(passes.c.sync_id == claim.sync_id)
                ).scalar_one()
            )

    def add_pass_counts(self, c: Connection, claim: Claim, **deltas: int) -> None:
        values = {k: getattr(passes.c, k) + v for k, v in deltas.items() if v}
        self.fence(c, claim, **values)

    def finish_pass(
        self,
        claim: Claim,
        *,
        complete: bool,
        initial_only: bool,
        interval_seconds: int,
        reported: bool = True,
    ) -> str:
        """Close the pass and update the sync: times, counts, status. Returns the new status.

        The status is computed from the current one in the same statement: PENDING or FAILED
        becomes ACTIVE (COMPLETED for a one-time sync), SUSPENDED stays. `reported`: the
        caller records the pass's observation in the Dagster instance itself."""
        now = utcnow()
        s = syncs.c
        with self.tx() as c:
            self.fence(
                c,
                claim,
                state="done",
                finished_at=now,
                owner=None,
                claim_expires_at=None,
            )
            started = as_utc(
                c.execute(
                    select(passes.c.started_at).where(passes.c.sync_id == claim.sync_id)
                ).scalar_one()
            )
            if initial_only:
                status = case(
                    (
                        s.status.in_(("PENDING", "ACTIVE", "FAILED")),
                        "COMPLETED" if complete else "ACTIVE",
                    ),
                    else_=s.status,
                )
                nxt: datetime | None = None if complete else now
            else:
                status = case((s.status.in_(("PENDING", "FAILED")), "ACTIVE"), else_=s.status)
                nxt = started + timedelta(seconds=interval_seconds)
            values: dict[str, Any] = {
                "last_sync_at": now,
                "next_sync_at": nxt,
                "passes_completed": s.passes_completed + 1,
                "status": status,
                "updated_at": now,
            }
            if complete:
                values.update(consecutive_failures=0, last_error=None)
            c.execute(update(syncs).where(s.id == claim.sync_id).values(**values))
            self.prune_history(c, claim.sync_id)
            final = str(c.execute(select(s.status).where(s.id == claim.sync_id)).scalar_one())
            if not reported:
                self.keep_unreported(c, claim.sync_id, final)
            return final

    def record_pass_failure(
        self,
        sync_id: int,
        pass_uid: str,
        error: str,
        *,
        give_up: bool,
        retry_at: datetime | None,
        threshold: int,
    ) -> tuple[bool, str]:
        """Note a failed attempt of a pass; give the pass up when asked (or when it is no longer
        open, nothing more). A given-up pass counts once toward auto-suspend.

        Returns (counted, the sync's status)."""
        now = utcnow()
        error = error[:1000]
        p = passes.c
        s = syncs.c
        with self.tx() as c:
            where = and_(p.sync_id == sync_id, p.pass_uid == pass_uid, p.state == "open")
            values: dict[str, Any] = {
                "failures": p.failures + 1,
                "last_error": error,
                "retry_at": retry_at,
            }
            if give_up:
                values.update(state="given_up", finished_at=now, owner=None, claim_expires_at=None)
            counted = (
                bool(c.execute(update(passes).where(where).values(**values)).rowcount) and give_up
            )
            sync_values: dict[str, Any] = {"last_error": error, "updated_at": now}
            if counted:
                n = s.consecutive_failures + 1
                sync_values.update(
                    consecutive_failures=n,
                    status=case(
                        (s.status.in_(("SUSPENDED", "COMPLETED")), s.status),
                        (n >= threshold, "SUSPENDED"),
                        else_="FAILED",
                    ),
                )
            c.execute(update(syncs).where(s.id == sync_id).values(**sync_values))
            status = str(c.execute(select(s.status).where(s.id == sync_id)).scalar_one())
        return counted, status

    def count_outside_pass(self, sync_id: int, error: str, threshold: int) -> str:
        """A failure with no open pass to charge (a missing source at the start of a pass
        that never began): counts once toward auto-suspend. Returns the sync's status."""
        s = syncs.c
        n = s.consecutive_failures + 1
        with self.tx() as c:
            c.execute(
                update(syncs)
                .where(s.id == sync_id)
                .values(
                    consecutive_failures=n,
                    last_error=error[:1000],
                    status=case(
                        (s.status.in_(("SUSPENDED", "COMPLETED")), s.status),
                        (n >= threshold, "SUSPENDED"),
                        else_="FAILED",
                    ),
                    updated_at=utcnow(),
                )
            )
            return str(c.execute(select(s.status).where(s.id == sync_id)).scalar_one())

    def pass_totals(self) -> dict[str, int]:
        """Rows per table (for size checks in tests and benchmarks)."""
        from mixsync_dagster.state.schema import metadata

        with self.engine.connect() as c:
            return {
                t.name: int(c.execute(select(func.count()).select_from(t)).scalar_one())
                for t in metadata.sorted_tables
            }


def chunks(seq: Sequence[Any], n: int) -> Iterator[Any]:
    """Consecutive slices of at most `n`: bounded IN lists and batched writes."""
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
