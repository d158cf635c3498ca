"""One Dagster sensor per sync: a thin shell around `passes.tick`."""

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from mixsync_dagster.config import SyncConfig
from mixsync_dagster.jobs import PASS_TAG, SYNC_TAG, run_config_for
from mixsync_dagster.passes import PassCursor, tick
from mixsync_dagster.resources import MixsyncResource

MAX_TICK_INTERVAL_SECONDS = 30
"""Ticks at least this often so `mixsync trigger` and paused/resumed syncs react within 30 s;
passes themselves still start only every polling_interval_seconds."""


# Dagster's own IN_PROGRESS list leaves out QUEUED and NOT_STARTED; a queued run of the sync
# must also stop the sensor from piling up another.
IN_FLIGHT_STATUSES = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
    DagsterRunStatus.SUSPENDED,
]


def in_flight_run(context: SensorEvaluationContext, sync: str) -> str | None:
    """Id of a queued or running run of this sync, if any (we never pile runs up)."""
    runs = context.instance.get_run_records(
        filters=RunsFilter(tags={SYNC_TAG: sync}, statuses=IN_FLIGHT_STATUSES), limit=1
    )
    return runs[0].dagster_run.run_id if runs else None


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
        out = tick(rt, cur, in_flight=in_flight_run(context, name))
        context.log.info(out.message)
        if out.work_id is None:
            return SensorResult(skip_reason=out.message, cursor=out.cursor.dump())
        request = RunRequest(
            run_key=out.work_id,
            run_config=run_config_for(name, out.work_id),
            tags={
                SYNC_TAG: name,
                PASS_TAG: cur.pass_id if out.cursor.pass_no == cur.pass_no else out.cursor.pass_id,
            },
        )
        return SensorResult(run_requests=[request], cursor=out.cursor.dump())

    return _sync_sensor
