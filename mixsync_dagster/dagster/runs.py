"""What Dagster knows about a sync's runs: which are in flight, which are dead, who we are.

Dagster is the source of truth for runs: a run owns a pass while Dagster says it is in flight.
A run whose worker process is gone (on this host) is marked failed through Dagster, so the queue
moves on and the pass is taken over (the stale-run sweep, and `mixsync unlock`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from mixsync_dagster.core.owners import Liveness, process_alive

SYNC_TAG = "mixsync/sync"
PASS_TAG = "mixsync/pass"
WORKER_TAG = "mixsync/worker"
"""host:pid:start of the process executing the run; how a dead run is told from a live one."""

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


@contextmanager
def dagster_instance(base_dir: str) -> Iterator[DagsterInstance]:
    """The instance the UI reads: $DAGSTER_HOME, else .mixsync/dagster_home next to the config
    (the one `make run` uses), given the repo's dagster.yaml on first use."""
    if not os.environ.get("DAGSTER_HOME"):
        home = Path(base_dir) / ".mixsync" / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        template = Path(base_dir) / "dagster.yaml"
        if template.exists() and not (home / "dagster.yaml").exists():
            shutil.copyfile(template, home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        yield instance


def deployment_id(instance: DagsterInstance) -> str:
    """A stable id of the Dagster deployment (its run storage), shared by its daemon, webserver
    and CLI, and different for a second deployment that shares our state store."""
    # SqlRunStorage (SQLite and PostgreSQL) keeps a uuid in its instance_info table.
    storage_id = getattr(instance.run_storage, "get_run_storage_id", None)
    return str(storage_id())[:12] if storage_id is not None else str(instance.root_directory)


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
        out.append(Holder(run, worker, process_alive(worker) if worker else None))
    return out


def release(instance: DagsterInstance, holder: Holder, reason: str) -> None:
    """Mark the run failed through Dagster, so the queue admits the sync's next run."""
    instance.report_run_failed(holder.run, f"mixsync unlock: {reason}")


def in_flight_run(instance: DagsterInstance, sync: str) -> str | None:
    """Id of a queued or running run of this sync, if any (we never pile runs up)."""
    runs = instance.get_run_records(
        filters=RunsFilter(tags={SYNC_TAG: sync}, statuses=IN_FLIGHT_STATUSES), limit=1
    )
    return runs[0].dagster_run.run_id if runs else None


def sweep_dead(instance: DagsterInstance, sync: str) -> list[Holder]:
    """Stale-run sweep: release every run of the sync whose worker on this host is gone."""
    dead = [h for h in holders(instance, sync) if h.alive is False]
    for h in dead:
        release(instance, h, f"worker {h.worker} is gone (stale-run sweep)")
    return dead


def liveness(instance: DagsterInstance) -> Liveness:
    """Owner liveness as Dagster and this host know it (see core.owners)."""

    def alive(owner: str) -> bool | None:
        kind, _, rest = owner.partition(":")
        if kind == "run":
            run = instance.get_run_by_id(rest)
            if run is None or run.status not in IN_FLIGHT_STATUSES:
                return False
            worker = run.tags.get(WORKER_TAG)
            return process_alive(worker) if worker else None
        if kind == "cli":
            return process_alive(owner)
        return None

    return alive
