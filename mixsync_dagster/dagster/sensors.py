"""One Dagster sensor per sync: a thin shell around `passes.tick`."""

import secrets

from dagster import (
    DefaultSensorStatus,
    JobDefinition,
    RunFailureSensorContext,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    run_failure_sensor,
    sensor,
)

from mixsync_dagster.config import SyncConfig
from mixsync_dagster.core import engine
from mixsync_dagster.core.passes import PassCursor, tick
from mixsync_dagster.dagster.jobs import PASS_TAG, SYNC_TAG, run_config_for
from mixsync_dagster.dagster.resources import MixsyncResource
from mixsync_dagster.dagster.runs import in_flight_run, sweep_dead
from mixsync_dagster.errors import ProviderError

MAX_TICK_INTERVAL_SECONDS = 30
"""Ticks at least this often so `mixsync trigger` and paused/resumed syncs react within 30 s;
passes themselves still start only every polling_interval_seconds."""


def build_sync_sensor(sync: SyncConfig, job: JobDefinition) -> SensorDefinition:
    name = sync.name

    @sensor(
        name=f"mixsync_{name}",
        job=job,
        minimum_interval_seconds=min(sync.polling_interval_seconds, MAX_TICK_INTERVAL_SECONDS),
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Polls {sync.connection_id}:{sync.source_path} for sync '{name}'",
    )
    def _sync_sensor(context: SensorEvaluationContext, mixsync: MixsyncResource) -> SensorResult:
        rt = mixsync.runtime(name)
        cur = PassCursor.load(context.cursor)
        # Stale-run sweep: a run whose worker process is gone (same host) holds the lock for
        # nothing; release it so the queue moves on and this pass resumes from the checkpoint.
        for h in sweep_dead(context.instance, name, rt.store):
            context.log.warning(f"released run {h.run.run_id}: worker {h.worker} is gone")
        try:
            out = tick(rt, cur, in_flight=in_flight_run(context.instance, name))
        except ProviderError as e:
            # A listing that fails is a failed sync attempt: it counts toward auto-suspend and
            # the tick fails visibly, with the cursor left where it was (nothing is "deleted").
            engine.record_failure(
                rt.store,
                name,
                f"listing failed: {e}",
                key=f"tick:{secrets.token_hex(8)}",
                threshold=rt.sync.max_consecutive_failures,
            )
            raise
        context.log.info(out.message)
        if out.work_id is None:
            return SensorResult(skip_reason=out.message, cursor=out.cursor.dump())
        request = RunRequest(
            run_key=out.work_id,
            run_config=run_config_for(name, out.work_id),
            tags={SYNC_TAG: name, PASS_TAG: out.cursor.pass_id},
        )
        return SensorResult(run_requests=[request], cursor=out.cursor.dump())

    return _sync_sensor


def build_run_failure_sensor(jobs: list[JobDefinition]) -> SensorDefinition:
    """Counts runs that fail without an op failure hook firing (a killed worker, a run
    monitoring timeout): every failed sync run counts once toward auto-suspend."""

    @run_failure_sensor(
        name="mixsync_run_failures",
        monitored_jobs=jobs,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=MAX_TICK_INTERVAL_SECONDS,
    )
    def _failures(context: RunFailureSensorContext, mixsync: MixsyncResource) -> None:
        run = context.dagster_run
        sync = run.tags.get(SYNC_TAG)
        if not sync:
            return
        rt = mixsync.runtime(sync)
        engine.record_run_failure(rt, run.run_id, context.failure_event.message or "run failed")

    return _failures
