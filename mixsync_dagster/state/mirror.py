"""What mixsync mirrors of the sync's sensor, and the latest listing's outcome.

Running vs paused lives in the Dagster instance (the sensor's state). These columns only
explain it: who stopped the sensor and when (as far as mixsync knows), a pause carried over
from before the sensor held it, whether the latest listing succeeded (an asset check), and
whether the last pass's observation is in the instance yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from mixsync_dagster.clock import as_utc, utcnow
from mixsync_dagster.state.schema import UNREPORTED_KEPT, passes, syncs, unreported

_NUMBERS = ("listed", "synced", "excluded", "failed", "deleted", "bytes")


@dataclass(frozen=True, slots=True)
class PassReport:
    """A finished pass's numbers, as its observation shows them."""

    pass_no: int
    status: str
    started_at: datetime
    finished_at: datetime
    listed: int
    synced: int
    excluded: int
    failed: int
    deleted: int
    bytes: int


class MirrorQueries:
    """Mixed into StateStore: the pause mirror and the listing outcome, by sync id."""

    engine: Engine

    def note_paused(self, sync_id: int, by: str) -> None:
        """The sensor was just stopped by `by` (a person through `mixsync pause`, a suspension):
        remembered for messages; a pending carried-over pause is thereby applied."""
        now = utcnow()
        with self.engine.begin() as c:
            c.execute(
                update(syncs)
                .where(syncs.c.id == sync_id)
                .values(paused_by=by[:500], paused_at=now, pause_pending=False, updated_at=now)
            )

    def clear_paused(self, sync_id: int) -> bool:
        """The sensor runs again (resumed by mixsync or started in the UI): forget the pause.
        False when there was nothing to forget (no write)."""
        s = syncs.c
        with self.engine.begin() as c:
            res = c.execute(
                update(syncs)
                .where(
                    and_(s.id == sync_id, or_(s.paused_by.is_not(None), s.pause_pending.is_(True)))
                )
                .values(paused_by=None, paused_at=None, pause_pending=False, updated_at=utcnow())
            )
            return bool(res.rowcount)

    def note_listing(self, sync_id: int, error: str | None) -> None:
        """The latest listing of the source ended: with `error`, or fine (None)."""
        with self.engine.begin() as c:
            c.execute(
                update(syncs)
                .where(syncs.c.id == sync_id)
                .values(
                    last_listing_at=utcnow(),
                    last_listing_error=error[:1000] if error is not None else None,
                )
            )

    def keep_unreported(self, c: Connection, sync_id: int, status: str) -> None:
        """Keep the numbers of the pass just finished (in `c`'s transaction) until a sensor
        tick records its observation; only the newest UNREPORTED_KEPT are kept."""
        p = passes.c
        row = c.execute(
            select(p.pass_no, p.started_at, p.finished_at, *(p[k] for k in _NUMBERS)).where(
                p.sync_id == sync_id
            )
        ).one()
        c.execute(insert(unreported).values(sync_id=sync_id, status=status, **row._asdict()))
        u = unreported.c
        c.execute(
            delete(unreported).where(
                and_(u.sync_id == sync_id, u.pass_no <= row.pass_no - UNREPORTED_KEPT)
            )
        )

    def take_unreported(self, sync_id: int) -> list[PassReport]:
        """The sync's passes awaiting their observation, oldest first, now removed: the
        caller records them (a rare loss if it then fails beats a plot point twice)."""
        u = unreported.c
        with self.engine.begin() as c:
            rows = c.execute(
                select(unreported).where(u.sync_id == sync_id).order_by(u.pass_no)
            ).mappings()
            out = [
                PassReport(
                    **{k: r[k] for k in ("pass_no", "status", *_NUMBERS)},
                    started_at=as_utc(r["started_at"]),
                    finished_at=as_utc(r["finished_at"]),
                )
                for r in rows
            ]
            if out:
                c.execute(
                    delete(unreported).where(
                        and_(u.sync_id == sync_id, u.pass_no <= out[-1].pass_no)
                    )
                )
        return out
