"""Reconcile: delete objects whose files are gone or no longer match, under a cap."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from mixsync_dagster import state as st
from mixsync_dagster.core.records import utcnow
from mixsync_dagster.core.runtime import SyncRuntime
from mixsync_dagster.errors import MixsyncError
from mixsync_dagster.state import chunks


def plan_reconcile(rt: SyncRuntime, pass_id: str) -> list[dict[str, Any]]:
    """Objects whose file is gone (not seen in this complete pass) or no longer matches, as
    far as the sync's reconcile policy deletes each kind."""
    t = st.tracked
    q = select(t.c.source_key, t.c.object_id, t.c.status, t.c.last_seen_pass).where(
        and_(
            t.c.sync == rt.name,
            t.c.object_id.is_not(None),
            or_(
                t.c.status == "excluded",
                t.c.last_seen_pass.is_(None),
                t.c.last_seen_pass != pass_id,
            ),
        )
    )
    with rt.store.engine.connect() as c:
        rows = c.execute(q.order_by(t.c.source_key)).all()
    policy = rt.sync.reconcile_policy
    out = []
    for r in rows:
        gone = r.last_seen_pass != pass_id
        if not (policy.on_delete if gone else policy.on_filter_drift):
            continue
        info = {"object_id": r.object_id, "reason": "gone" if gone else "no longer matches"}
        out.append(
            {
                "source_key": r.source_key,
                "item": json.dumps(info),
                "action": "delete",
                "status": "to_delete",
            }
        )
    return out


def reconcile(rt: SyncRuntime, work_id: str) -> dict[str, int]:
    """Delete the objects a reconcile work list names, unless that would exceed the cap.

    The cap (`max_deletes_per_pass`) stops a wrong source_path or a wiped credential from
    emptying a bucket: over it, nothing is deleted and the run fails loudly.
    """
    rows = rt.store.work_items(work_id, status="to_delete")
    if not rows:
        return {"deleted": 0}
    t = st.tracked
    with rt.store.engine.connect() as c:
        total = c.execute(
            select(func.count())
            .select_from(t)
            .where(and_(t.c.sync == rt.name, t.c.object_id.is_not(None)))
        ).scalar_one()
    cap = rt.sync.delete_cap(int(total))
    if len(rows) > cap:
        raise MixsyncError(
            f"reconcile would delete {len(rows)} of {total} objects of sync '{rt.name}', over "
            f"max_deletes_per_pass ({rt.sync.max_deletes_per_pass} = {cap}); nothing was "
            "deleted. Check source_path and the connection's credentials; if the deletions "
            "are intended, raise max_deletes_per_pass for one pass."
        )
    deleted = 0
    for group in chunks(rows, 100):
        for r in group:
            info = json.loads(r.item)
            errors = rt.target.delete_objects([info["object_id"]])
            if errors:
                raise MixsyncError(f"reconcile could not delete {r.source_key}: {errors}")
            with rt.store.tx() as c:
                rt.store.set_items(c, work_id, [r.idx], status="deleted", reason=info["reason"])
                where = and_(t.c.sync == rt.name, t.c.source_key == r.source_key)
                if info["reason"] == "gone":
                    c.execute(delete(t).where(where))
                else:
                    c.execute(update(t).where(where).values(object_id=None, updated_at=utcnow()))
            deleted += 1
    return {"deleted": deleted}
