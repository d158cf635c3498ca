"""One Dagster sensor per sync: a thin shell around `core.passes.tick`.

The sensor's own state in the instance is the sync's running/paused switch (see
`control.py`): a stopped sensor is a paused sync. A tick also keeps the two in step: it stops
its own sensor when the sync is suspended (or a pause was carried over from an older schema),
and treats a start after such a stop as `mixsync resume`, so the UI's toggle is pause/resume.
Its skip reason, log line and cursor say what a person needs (paused by whom, next pass in
N s, listed N and 0 new); the cursor shows on the sensor's page.
"""

from __future__ import annotations

import json
from typing import Any

from dagster import (
    AssetCheckEvaluation,
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
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,  # not exported by `dagster`; what define_asset_job returns
)

from mixsync_dagster.clock import as_utc
from mixsync_dagster.config import SyncConfig
from mixsync_dagster.core import passes
from mixsync_dagster.core.owners import sensor_owner
from mixsync_dagster.core.runtime import SyncRuntime
from mixsync_dagster.core.status import SensorState, paused_by
from mixsync_dagster.dagster import control
from mixsync_dagster.dagster.assets import (
    check_evaluations,
    pass_observation,
    report_checks,
    report_late_passes,
)
from mixsync_dagster.dagster.jobs import report_run_failure, run_config_for
from mixsync_dagster.dagster.resources import MixsyncResource
from mixsync_dagster.dagster.runs import (
    PASS_TAG,
    SYNC_TAG,
    deployment_id,
    in_flight_run,
    liveness,
    sweep_dead,
)


def build_sync_sensor(
    sync: SyncConfig, job: JobDefinition, health_job: UnresolvedAssetJobDefinition
) -> SensorDefinition:
    name = sync.name

    @sensor(
        name=control.sensor_name(name),
        # The health job observes the sync's asset: targeting it links the sensor to the asset
        # (its page lists the sensor as the automation). Runs are only ever of `job`.
        jobs=[job, health_job],
        minimum_interval_seconds=passes.tick_interval(sync.polling_interval_seconds),
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Polls {sync.connection_id}:{sync.source_path} for sync '{name}' every "
            f"{sync.polling_interval_seconds} s and launches the runs that sync what changed. "
            "Stopping this sensor pauses the sync; starting it resumes it (as `mixsync pause` / "
            "`mixsync resume`)."
        ),
    )
    def _sync_sensor(context: SensorEvaluationContext, mixsync: MixsyncResource) -> SensorResult:
        rt = mixsync.runtime(name)
        instance = context.instance
        last = _load_cursor(context.cursor)
        # Before this tick can start the next pass: passes `mixsync sync` finished unchanged.
        report_late_passes(instance, rt)
        halt = _keep_in_step(rt, instance, context, mixsync.config_path)
        sensor_now = control.view(instance, name)
        if halt is not None:
            context.log.info(halt)
            return _result(rt, sensor_now, last, halt, finished=None)
        # Stale-run sweep: a run whose worker process is gone (same host) holds the queue for
        # nothing; marking it failed lets the queue move on and the pass be taken over.
        for h in sweep_dead(instance, name):
            context.log.warning(f"released run {h.run.run_id}: worker {h.worker} is gone")
        me = sensor_owner(deployment_id(instance))
        try:
            out = passes.tick(
                rt, me, in_flight=in_flight_run(instance, name), alive=liveness(instance)
            )
        except Exception:
            # The tick fails (red in the UI). Record what the failure did to the sync's health
            # first: the listing check, and a suspension (which stops this sensor).
            control.stop_for_suspension(instance, rt, config_path=mixsync.config_path)
            report_checks(instance, rt, control.view(instance, name))
            raise
        context.log.info(out.message)
        request = None
        if out.run is not None:
            plan = out.run
            request = RunRequest(
                run_key=f"{name}-{plan.pass_uid}-{plan.seq}",
                job_name=job.name,
                run_config=run_config_for(name, plan.pass_uid, plan.token, me),
                tags={SYNC_TAG: name, PASS_TAG: plan.pass_uid},
            )
        return _result(rt, sensor_now, last, out.message, finished=out.finished, request=request)

    return _sync_sensor


def _keep_in_step(
    rt: SyncRuntime, instance: Any, context: SensorEvaluationContext, config_path: str
) -> str | None:
    """Align the sync's pause/suspension with its sensor; a message when the tick stops here."""
    name = rt.name
    sensor = control.view(instance, name)
    row = rt.store.get_sync(name)
    how = f"`mixsync resume {name}` or the sensor's toggle in the UI resumes it"
    if row["status"] == "SUSPENDED":
        at = as_utc(row["paused_at"]) if row["paused_at"] else None
        if not sensor.running:
            return passes.suspended_message(name, row) + f"; sensor {sensor.name} is STOPPED"
        if control.started_after(sensor, at):
            # Someone started the sensor after the suspension stopped it: that is a resume.
            rt.store.resume(name)
            context.log.info(
                f"resumed: the sensor was started at {sensor.started_at} after the suspension "
                "stopped it; the failure count starts afresh"
            )
            return None
        stopped = control.stop_for_suspension(instance, rt, config_path=config_path)
        suffix = "; this sensor stopped itself" if stopped else ""
        return passes.suspended_message(name, row) + suffix
    if not sensor.running:
        # Evaluated by hand while stopped (the UI's "Test sensor", a test driving ticks).
        return f"paused by {paused_by(row, sensor)}; {how}"
    if row["pause_pending"]:
        # A pause carried over from before the sensor held it: apply it now, where it shows.
        control.stop(instance, name, config_path=config_path)
        rt.store.note_paused(rt.sync_id, str(row["paused_by"] or "mixsync pause"))
        return f"paused by {row['paused_by']}: this sensor stopped itself; {how}"
    if row["paused_by"] is not None:
        # Running although we noted a pause: started in the UI (or by `dagster sensor start`).
        rt.store.clear_paused(rt.sync_id)
    return None


def _load_cursor(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _result(
    rt: SyncRuntime,
    sensor: SensorState,
    last: dict[str, Any],
    message: str,
    *,
    finished: str | None,
    request: RunRequest | None = None,
) -> SensorResult:
    """The tick's result: its message as the skip reason and in the cursor (shown on the
    sensor's page), the pass observation when it finished a pass, and the checks when a
    verdict changed (or a pass finished), so the asset's checks follow every change."""
    events: list[AssetObservation | AssetCheckEvaluation] = []
    if finished is not None:
        events.append(pass_observation(rt, finished, sensor))
    checks = check_evaluations(rt, sensor)
    verdicts = {c.check_name: c.passed for c in checks}
    if finished is not None or verdicts != last.get("checks"):
        events.extend(checks)
    p = rt.store.get_pass(rt.sync_id)
    cursor: dict[str, Any] = {"note": message, "checks": verdicts}
    if p is not None:
        cursor.update(pass_no=p.pass_no, state=p.state, listed=p.listed)
    text = json.dumps(cursor)
    if request is None:
        return SensorResult(skip_reason=message, cursor=text, asset_events=events)
    return SensorResult(run_requests=[request], cursor=text, asset_events=events)


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
        status = report_run_failure(
            rt,
            run.run_id,
            run.tags.get(PASS_TAG),
            context.failure_event.message or "run failed",
            transient=True,
        )
        if status is not None:
            control.stop_for_suspension(context.instance, rt, config_path=mixsync.config_path)
            report_checks(context.instance, rt, control.view(context.instance, sync))

    return _failures
