"""Force unlock: release a sync whose Dagster run holds the lock but whose worker is gone.

The lock is Dagster's run queue (one run per `mixsync/sync` tag value). When the host running
Dagster dies mid-run, that run stays STARTED and blocks the queue forever. Releasing it means
marking it failed (or canceled) through Dagster; the queue then moves on and the next tick
resumes from the checkpoint.
"""

from dataclasses import dataclass

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from mixsync_dagster.dagster.jobs import SYNC_TAG, WORKER_TAG
from mixsync_dagster.dagster.workers import is_alive
from mixsync_dagster.state import StateStore

IN_FLIGHT_STATUSES = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
    DagsterRunStatus.SUSPENDED,
]
"""A run of the sync in any of these is in flight. Dagster's own IN_PROGRESS list leaves out
QUEUED and NOT_STARTED; a queued run must also stop the sensor from piling up another."""

HOLDING = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
"""Statuses of a run that holds (or is about to hold) the sync's slot; QUEUED ones wait."""


@dataclass(frozen=True)
class Holder:
    run: DagsterRun
    worker: str | None
    alive: bool | None
    """True / False when known; None when the worker ran on another host or never started."""


def holders(instance: DagsterInstance, sync: str) -> list[Holder]:
    """The runs of a sync that hold its slot, with what is known of their workers."""
    records = instance.get_run_records(filters=RunsFilter(tags={SYNC_TAG: sync}, statuses=HOLDING))
    out = []
    for rec in records:
        run = rec.dagster_run
        worker = run.tags.get(WORKER_TAG)
        out.append(Holder(run, worker, is_alive(worker) if worker else None))
    return out


def release(
    instance: DagsterInstance, holder: Holder, reason: str, store: StateStore | None = None
) -> None:
    """Mark the run failed through Dagster, so the queue admits the sync's next run."""
    instance.report_run_failed(holder.run, f"mixsync unlock: {reason}")
    sync = holder.run.tags.get(SYNC_TAG)
    if sync and store is not None:
        store.release_lease(sync, holder.run.run_id)


def in_flight_run(instance: DagsterInstance, sync: str) -> str | None:
    """Id of a queued or running run of this sync, if any (we never pile runs up)."""
    runs = instance.get_run_records(
        filters=RunsFilter(tags={SYNC_TAG: sync}, statuses=IN_FLIGHT_STATUSES), limit=1
    )
    return runs[0].dagster_run.run_id if runs else None


def sweep_dead(instance: DagsterInstance, sync: str, store: StateStore) -> list[Holder]:
    """Stale-run sweep: release every run of the sync whose worker on this host is gone.

    Such a run holds the lock for nothing; releasing it lets the queue move on and the sync
    resume from its checkpoint. Returns the runs released.
    """
    dead = [h for h in holders(instance, sync) if h.alive is False]
    for h in dead:
        release(instance, h, f"worker {h.worker} is gone (stale-run sweep)", store)
    return dead
