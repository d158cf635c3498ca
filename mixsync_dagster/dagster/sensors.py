"""One Dagster sensor per sync: a thin shell around `core.passes.tick`."""

import json

from dagster import (
    AssetObservation,
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
from mixsync_dagster.core import passes
from mixsync_dagster.core.owners import sensor_owner
from mixsync_dagster.dagster.jobs import (
    asset_key_for,
    metrics_metadata,
    pass_metadata,
    report_run_failure,
    run_config_for,
)
from mixsync_dagster.dagster.resources import MixsyncResource
from mixsync_dagster.dagster.runs import (
    PASS_TAG,
    SYNC_TAG,
    deployment_id,
    in_flight_run,
    liveness,
    sweep_dead,
)


def build_sync_sensor(sync: SyncConfig, job: JobDefinition) -> SensorDefinition:
    name = sync.name

    @sensor(
        name=f"mixsync_{name}",
        job=job,
        minimum_interval_seconds=passes.tick_interval(sync.polling_interval_seconds),
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Polls {sync.connection_id}:{sync.source_path} for sync '{name}' every "
            f"{sync.polling_interval_seconds} s and launches the runs that sync what changed. "
            "Stopping this sensor pauses the sync."
        ),
    )
    def _sync_sensor(context: SensorEvaluationContext, mixsync: MixsyncResource) -> SensorResult:
        rt = mixsync.runtime(name)
        instance = context.instance
        # Stale-run sweep: a run whose worker process is gone (same host) holds the queue for
        # nothing; marking it failed lets the queue move on and the pass be taken over.
        for h in sweep_dead(instance, name):
            context.log.warning(f"released run {h.run.run_id}: worker {h.worker} is gone")
        me = sensor_owner(deployment_id(instance))
        out = passes.tick(rt, me, in_flight=in_flight_run(instance, name), alive=liveness(instance))
        context.log.info(out.message)
        cursor = None
        p = rt.store.get_pass(rt.sync_id)
        if p is not None:
            cursor = json.dumps({"pass": p.pass_no, "state": p.state, "listed": p.listed})
        events = []
        if out.finished is not None:
            row = rt.store.get_sync(name)
            events.append(
                AssetObservation(
                    asset_key=asset_key_for(name),
                    description=f"pass finished; status {out.finished}",
                    metadata=metrics_metadata(row) | pass_metadata(rt),
                )
            )
        if out.run is None:
            return SensorResult(skip_reason=out.message, cursor=cursor, asset_events=events)
        plan = out.run
        request = RunRequest(
            run_key=f"{name}-{plan.pass_uid}-{plan.seq}",
            run_config=run_config_for(name, plan.pass_uid, plan.token, me),
            tags={SYNC_TAG: name, PASS_TAG: plan.pass_uid},
        )
        return SensorResult(run_requests=[request], cursor=cursor, asset_events=events)

    return _sync_sensor


def build_run_failure_sensor(jobs: list[JobDefinition]) -> SensorDefinition:
    """Counts runs that fail without an op failure hook firing (a killed worker, a run
    monitoring timeout): each failed run is one failed attempt of its pass."""

    @run_failure_sensor(
        name="mixsync_run_failures",
        monitored_jobs=jobs,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=passes.MAX_TICK_INTERVAL_SECONDS,
    )
    def _failures(context: RunFailureSensorContext, mixsync: MixsyncResource) -> None:
        run = context.dagster_run
        sync = run.tags.get(SYNC_TAG)
        if not sync:
            return
        rt = mixsync.runtime(sync)
        report_run_failure(
            rt,
            run.run_id,
            run.tags.get(PASS_TAG),
            context.failure_event.message or "run failed",
            transient=True,
        )

    return _failures
