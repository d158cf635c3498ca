"""What mixsync mirrors of the sync's sensor, and the latest listing's outcome.

Running vs paused lives in the Dagster instance (the sensor's state). These columns only
explain it: who stopped the sensor and when (as far as mixsync knows), a pause carried over
from before the sensor held it, and whether the latest listing succeeded (an asset check).
"""

from __future__ import annotations

from sqlalchemy import and_, or_, update
from sqlalchemy.engine import Engine

from mixsync_dagster.clock import utcnow
from mixsync_dagster.state.schema import syncs


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
