"""Reconcile: after a complete pass, delete objects whose files are gone or no longer match.

Runs inside a run, never a sensor tick. Candidates are counted before any is loaded; over the
cap (`max_deletes_per_pass`) nothing is deleted and the run fails loudly. Deletion goes page by
page, each page committed under the pass's claim.
"""

from __future__ import annotations

from mixsync_dagster.core.runtime import SyncRuntime
from mixsync_dagster.errors import MixsyncError
from mixsync_dagster.state import Claim

PAGE = 100


class ReconcileRefused(MixsyncError):
    """Reconcile would delete more than the cap allows: nothing was deleted."""


def reconcile(rt: SyncRuntime, claim: Claim) -> int:
    """Delete what the pass's complete listing shows is gone (files not seen by it) or no
    longer matches the filters, as the sync's reconcile policy asks. Returns objects deleted."""
    policy = rt.sync.reconcile_policy
    store = rt.store
    p = store.get_pass(rt.sync_id)
    gone = bool(policy.on_delete and p is not None and p.stamps_seen)
    drift = policy.on_filter_drift
    if not (gone or drift):
        return 0
    doomed, total = store.reconcile_counts(rt.sync_id, claim.pass_no, gone=gone, drift=drift)
    cap = rt.sync.delete_cap(total)
    if doomed > cap:
        raise ReconcileRefused(
            f"reconcile would delete {doomed} of {total} objects of sync '{rt.name}', over "
            f"max_deletes_per_pass ({rt.sync.max_deletes_per_pass} = {cap}); nothing was "
            "deleted. Check source_path and the connection's credentials; if the deletions "
            "are intended, raise max_deletes_per_pass for one pass."
        )
    deleted = 0
    after = ""
    while doomed:
        page = store.doomed_page(
            rt.sync_id, claim.pass_no, gone=gone, drift=drift, after=after, limit=PAGE
        )
        if not page:
            break
        errors = rt.target.delete_objects([d.object_id for d in page])
        done = [d for d in page if d.object_id not in errors]
        with store.tx() as c:
            store.fence(c, claim)
            store.forget(c, rt.sync_id, [d.key for d in done if d.reason == "gone"])
            store.clear_objects(c, rt.sync_id, [d.key for d in done if d.reason != "gone"])
            store.add_pass_counts(c, claim, deleted=len(done))
        deleted += len(done)
        if errors:
            first = next(iter(errors.items()))
            raise MixsyncError(
                f"reconcile could not delete {len(errors)} object(s) (e.g. {first[0]}: "
                f"{first[1]}); {deleted} deleted so far, the rest on a later pass"
            )
        after = page[-1].key
    if gone:
        with store.tx() as c:
            store.fence(c, claim)
            store.forget_unseen(c, rt.sync_id, claim.pass_no)
    return deleted
