"""Source tracking: one compact row per file a sync has judged, and what reconcile may delete.

Rows are written only when something about the file changed (it is new, its content or filter
verdict moved, its object changed, it failed); an unchanged pass reads and writes nothing, except
the `last_seen` stamps reconcile needs to tell a deleted file from one that was merely not listed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.engine import Connection, Engine

from mixsync_dagster.clock import as_utc
from mixsync_dagster.state.schema import Tracked, tracked

LOOKUP_CHUNK = 900
"""Keys per IN list: under SQLite's variable limit, large enough to amortise the round trip."""


@dataclass(frozen=True, slots=True)
class TrackedRow:
    fp: int
    status: int
    """A Tracked value (compare with ==; kept a plain int on the lookup hot path)."""
    filter_hash: int | None
    object_id: str | None
    attempts: int
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The new state of one tracked file, as a pass decided it."""

    key: str
    fp: int
    status: int
    object_id: str | None
    filter_hash: int | None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Doomed:
    """A tracked object reconcile deletes: its file is gone, or no longer passes the filters."""

    key: str
    object_id: str
    reason: str


def _chunks(seq: Sequence[Any], n: int) -> Any:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


@functools.lru_cache(maxsize=16)
def _lookup_sql(mark: str, n: int) -> str:
    return (
        "SELECT source_key, fp, status, filter_hash, object_id, attempts, next_attempt_at "
        f"FROM {tracked.name} WHERE sync_id = {mark} AND source_key IN ({', '.join([mark] * n)})"
    )


@functools.lru_cache(maxsize=16)
def _settled_sql(mark: str, n: int) -> str:
    return (
        f"SELECT source_key, fp, status FROM {tracked.name} WHERE sync_id = {mark} "
        f"AND status IN ({int(Tracked.SYNCED)}, {int(Tracked.EXCLUDED)}) "
        f"AND filter_hash = {mark} AND source_key IN ({', '.join([mark] * n)})"
    )


def _upsert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert


class TrackingQueries:
    """Mixed into StateStore: everything that touches `mixsync_tracked`."""

    engine: Engine

    def lookup(self, sync_id: int, keys: Sequence[str]) -> dict[str, TrackedRow]:
        """The tracked rows of `keys` (absent keys are new files)."""
        out: dict[str, TrackedRow] = {}
        for key, fp, status, fh, oid, attempts, nxt in self._rows_of_keys(
            _lookup_sql, (sync_id,), keys
        ):
            if nxt is not None and not isinstance(nxt, datetime):
                nxt = datetime.fromisoformat(nxt)  # SQLite keeps text
            out[key] = TrackedRow(fp, status, fh, oid, attempts, as_utc(nxt) if nxt else None)
        return out

    def settled(
        self, sync_id: int, keys: Sequence[str], filter_hash: int
    ) -> dict[str, tuple[int, bool]]:
        """Fingerprint hash and whether it was excluded, for those of `keys` whose files are
        settled (synced or excluded under `filter_hash`): the files an unchanged pass needs to
        see nothing more of."""
        excluded = int(Tracked.EXCLUDED)
        return {
            k: (fp, st == excluded)
            for k, fp, st in self._rows_of_keys(_settled_sql, (sync_id, filter_hash), keys)
        }

    def _rows_of_keys(
        self, sql_for: Callable[[str, int], str], head: tuple[Any, ...], keys: Sequence[str]
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of a `... AND source_key IN (...)` query, run chunk by chunk of `keys`.

        On the hot path of every pass (a thousand keys a page), so it goes to the driver with
        one prepared statement per chunk size instead of through SQLAlchemy's expression layer,
        which spent more time rendering the IN list than the database spent on it."""
        if not keys:
            return
        with self.engine.connect() as c:
            mark = "?" if c.dialect.paramstyle == "qmark" else "%s"
            cur = c.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                for chunk in _chunks(keys, LOOKUP_CHUNK):
                    cur.execute(sql_for(mark, len(chunk)), (*head, *chunk))
                    yield from cur.fetchall()
            finally:
                cur.close()

    def write_tracked(
        self, c: Connection, sync_id: int, rows: Sequence[Outcome], last_seen: int | None
    ) -> None:
        """Insert or replace tracking rows (one statement executed many times)."""
        if not rows:
            return
        insert = _upsert(c.dialect.name)
        stmt = insert(tracked)
        stmt = stmt.on_conflict_do_update(
            index_elements=[tracked.c.sync_id, tracked.c.source_key],
            set_={
                k: stmt.excluded[k]
                for k in (
                    "fp",
                    "status",
                    "object_id",
                    "filter_hash",
                    "last_seen",
                    "attempts",
                    "next_attempt_at",
                    "last_error",
                )
            },
        )
        c.execute(
            stmt,
            [
                {
                    "sync_id": sync_id,
                    "source_key": r.key,
                    "fp": r.fp,
                    "status": int(r.status),
                    "object_id": r.object_id,
                    "filter_hash": r.filter_hash,
                    "last_seen": last_seen,
                    "attempts": r.attempts,
                    "next_attempt_at": r.next_attempt_at,
                    "last_error": r.last_error,
                }
                for r in rows
            ],
        )

    def forget(self, c: Connection, sync_id: int, keys: Sequence[str]) -> None:
        for chunk in _chunks(keys, LOOKUP_CHUNK):
            c.execute(
                delete(tracked).where(
                    and_(tracked.c.sync_id == sync_id, tracked.c.source_key.in_(chunk))
                )
            )

    def stamp_seen(self, c: Connection, sync_id: int, keys: Sequence[str], pass_no: int) -> None:
        """Mark listed keys as seen by this pass (only when reconcile needs to know)."""
        t = tracked.c
        for chunk in _chunks(keys, LOOKUP_CHUNK):
            c.execute(
                update(tracked)
                .where(and_(t.sync_id == sync_id, t.source_key.in_(chunk)))
                .values(last_seen=pass_no)
            )

    def clear_objects(self, c: Connection, sync_id: int, keys: Sequence[str]) -> None:
        """Their objects were deleted because the files no longer pass the filters."""
        t = tracked.c
        for chunk in _chunks(keys, LOOKUP_CHUNK):
            c.execute(
                update(tracked)
                .where(and_(t.sync_id == sync_id, t.source_key.in_(chunk)))
                .values(object_id=None)
            )

    def tracked_counts(self, sync_id: int) -> dict[str, int]:
        with self.engine.connect() as c:
            rows = c.execute(
                select(tracked.c.status, func.count())
                .where(tracked.c.sync_id == sync_id)
                .group_by(tracked.c.status)
            )
            return {Tracked(r[0]).name.lower(): int(r[1]) for r in rows}

    # ------------------------------------------------------------ reconcile

    def _doomed_where(self, sync_id: int, pass_no: int, gone: bool, drift: bool) -> Any:
        t = tracked.c
        reasons = []
        if gone:
            reasons.append(or_(t.last_seen.is_(None), t.last_seen < pass_no))
        if drift:
            reasons.append(t.status == int(Tracked.EXCLUDED))
        return and_(t.sync_id == sync_id, t.object_id.is_not(None), or_(*reasons))

    def reconcile_counts(
        self, sync_id: int, pass_no: int, *, gone: bool, drift: bool
    ) -> tuple[int, int]:
        """(objects reconcile would delete, objects tracked): counted before any is loaded."""
        t = tracked.c
        with self.engine.connect() as c:
            total = c.execute(
                select(func.count()).where(and_(t.sync_id == sync_id, t.object_id.is_not(None)))
            ).scalar_one()
            if not (gone or drift):
                return 0, int(total)
            doomed = c.execute(
                select(func.count()).where(self._doomed_where(sync_id, pass_no, gone, drift))
            ).scalar_one()
        return int(doomed), int(total)

    def doomed_page(
        self, sync_id: int, pass_no: int, *, gone: bool, drift: bool, after: str, limit: int
    ) -> list[Doomed]:
        t = tracked.c
        q = (
            select(t.source_key, t.object_id, t.last_seen)
            .where(and_(self._doomed_where(sync_id, pass_no, gone, drift), t.source_key > after))
            .order_by(t.source_key)
            .limit(limit)
        )
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        out = []
        for key, oid, seen in rows:
            unseen = seen is None or seen < pass_no
            reason = "gone" if gone and unseen else "no longer matches the filters"
            out.append(Doomed(key, oid, reason))
        return out

    def forget_unseen(self, c: Connection, sync_id: int, pass_no: int) -> int:
        """Drop tracking of files this complete pass did not see and that have no object."""
        t = tracked.c
        res = c.execute(
            delete(tracked).where(
                and_(
                    t.sync_id == sync_id,
                    t.object_id.is_(None),
                    or_(t.last_seen.is_(None), t.last_seen < pass_no),
                )
            )
        )
        return int(res.rowcount or 0)

    # ------------------------------------------------------------ dead-letter queue

    def dlq_rows(self, sync_id: int) -> list[dict[str, Any]]:
        """Files that failed: waiting for a retry (`retry`) or given up on (`failed`)."""
        t = tracked.c
        with self.engine.connect() as c:
            rows = c.execute(
                select(t.source_key, t.status, t.attempts, t.last_error, t.next_attempt_at)
                .where(
                    and_(
                        t.sync_id == sync_id,
                        t.status.in_((int(Tracked.RETRY), int(Tracked.FAILED))),
                    )
                )
                .order_by(t.source_key)
            ).all()
        return [
            {
                "source_key": key,
                "status": Tracked(status).name.lower(),
                "attempts": int(attempts),
                "last_error": err,
                "next_attempt_at": as_utc(nxt) if nxt else None,
            }
            for key, status, attempts, err, nxt in rows
        ]

    def dlq_requeue(self, sync_id: int, keys: Sequence[str] | None) -> int:
        """Put failed files back in line (all of them when `keys` is None)."""
        t = tracked.c
        cond = and_(t.sync_id == sync_id, t.status.in_((int(Tracked.RETRY), int(Tracked.FAILED))))
        stmt = update(tracked).values(status=int(Tracked.RETRY), attempts=0, next_attempt_at=None)
        total = 0
        with self.engine.begin() as c:
            if keys is None:
                return int(c.execute(stmt.where(cond)).rowcount or 0)
            for chunk in _chunks(list(keys), LOOKUP_CHUNK):
                total += int(c.execute(stmt.where(and_(cond, t.source_key.in_(chunk)))).rowcount)
        return total

    def dlq_size(self, sync_id: int) -> int:
        t = tracked.c
        with self.engine.connect() as c:
            return int(
                c.execute(
                    select(func.count()).where(
                        and_(
                            t.sync_id == sync_id,
                            t.status.in_((int(Tracked.RETRY), int(Tracked.FAILED))),
                        )
                    )
                ).scalar_one()
            )
