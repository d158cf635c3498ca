"""Each sync's asset `mixsync/<sync>` in Dagster's own vocabulary.

- The asset is observable: its description links the sync's sensor, its five health checks
  (`core/health.py`) are declared on it, and "Observe" in the UI records the sync's metrics and
  checks on demand (the `mixsync_<sync>_health` job, which the sensor also targets so the asset
  page lists the sensor among its automations).
- Every pass ends with one observation of the sync's metrics (plotted per pass) and the five
  check results: from the sensor tick that finished it, the run's `finish_pass`, or
  `mixsync sync` (reported to the instance outside any run; a `mixsync sync` pass with nothing
  to run leaves that to the sync's next tick, see `report_late_passes`).
"""

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    DagsterInstance,
    MetadataValue,
    ObserveResult,
    define_asset_job,
    multi_observable_source_asset,
)
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,  # not exported by `dagster`; what define_asset_job returns
)

from mixsync_dagster.config import SyncConfig
from mixsync_dagster.core.health import CHECKS, CheckOutcome, evaluate
from mixsync_dagster.core.runtime import SyncRuntime
from mixsync_dagster.core.status import SensorState, effective_status
from mixsync_dagster.dagster.control import LOCATION_NAME, sensor_name, view
from mixsync_dagster.state import PassReport, PassRow


def asset_key_for(sync: str) -> AssetKey:
    return AssetKey(["mixsync", sync])


def sensor_path(sync: str) -> str:
    """The sensor's page in the Dagster UI (relative to the UI's root)."""
    return f"/locations/{LOCATION_NAME}/sensors/{sensor_name(sync)}"


def health_job_name(sync: str) -> str:
    return f"mixsync_{sync}_health"


def asset_spec(sync: SyncConfig) -> AssetSpec:
    name = sync.name
    return AssetSpec(
        key=asset_key_for(name),
        description=(
            f"Objects synced by {name} from {sync.connection_id}:{sync.source_path} into "
            f"bucket {sync.bucket}.\n\n"
            f"Driven by the sensor [{sensor_name(name)}]({sensor_path(name)}), which polls "
            f"every {sync.polling_interval_seconds} s: stopping it pauses the sync, starting it "
            f"resumes it (`mixsync pause` / `mixsync resume` do the same).\n\n"
            "Checks: not suspended, dead-letter queue empty, no failed batches, a complete pass "
            "within 2x the polling interval, last listing succeeded. Plots: the sync's metrics, "
            "one observation per pass."
        ),
        group_name="mixsync",
        kinds={"mixsync"},
        metadata={
            "bucket": sync.bucket,
            "source": f"{sync.connection_id}:{sync.source_path}",
            "sync_mode": sync.sync_mode,
            "polling_interval_seconds": sync.polling_interval_seconds,
            "sensor": MetadataValue.url(sensor_path(name)),
        },
    )


def check_specs(sync: str) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(c.name, asset=asset_key_for(sync), description=c.description) for c in CHECKS
    ]


def build_sync_asset(sync: SyncConfig) -> AssetsDefinition:
    """The sync's observable asset with its checks; observing it reads the state store only."""
    name = sync.name

    @multi_observable_source_asset(
        name=f"observe_mixsync_{name}",
        specs=[asset_spec(sync)],
        check_specs=check_specs(name),
        required_resource_keys={"mixsync"},
        description=f"Record sync '{name}''s metrics and health checks now (reads state only)",
    )
    def _observe(context: AssetExecutionContext) -> Iterator[ObserveResult]:
        from mixsync_dagster.dagster.control import view

        rt = context.resources.mixsync.runtime(name)
        sensor = view(context.instance, name)
        yield ObserveResult(
            asset_key=asset_key_for(name),
            metadata=metrics_metadata(rt, sensor) | pass_metadata(rt),
            check_results=[
                AssetCheckResult(
                    asset_key=asset_key_for(name),
                    check_name=o.name,
                    passed=o.passed,
                    severity=_severity(o),
                    description=o.summary,
                    metadata=_meta(o.metadata),
                )
                for o in evaluate(rt, sensor)
            ],
        )

    return _observe


def build_health_job(sync: SyncConfig) -> UnresolvedAssetJobDefinition:
    """Observes the asset (metrics and checks) on demand; never touches a pass."""
    return define_asset_job(
        health_job_name(sync.name),
        selection=AssetSelection.assets(asset_key_for(sync.name)),
        description=f"Record sync '{sync.name}''s metrics and health checks (reads state only)",
    )


def _severity(o: CheckOutcome) -> AssetCheckSeverity:
    return AssetCheckSeverity.WARN if o.warn_only else AssetCheckSeverity.ERROR


def _meta(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if v is None:
            out[k] = MetadataValue.null()
        elif isinstance(v, bool):
            out[k] = MetadataValue.bool(v)
        elif isinstance(v, int):
            out[k] = MetadataValue.int(v)
        elif isinstance(v, float):
            out[k] = MetadataValue.float(v)
        else:
            out[k] = MetadataValue.text(str(v))
    return out


def check_evaluations(rt: SyncRuntime, sensor: SensorState | None) -> list[AssetCheckEvaluation]:
    """The five checks' current results, as events a sensor, an op or the CLI can record."""
    return [
        AssetCheckEvaluation(
            asset_key=asset_key_for(rt.name),
            check_name=o.name,
            passed=o.passed,
            severity=_severity(o),
            description=o.summary,
            metadata=_meta(o.metadata),
        )
        for o in evaluate(rt, sensor)
    ]


def metrics_metadata(rt: SyncRuntime, sensor: SensorState | None) -> dict[str, Any]:
    """The feature page's metrics as Dagster metadata (numbers are plotted over time)."""
    row = rt.store.get_sync(rt.name)
    return {
        "status": MetadataValue.text(effective_status(row, sensor)),
        "total_files_discovered": MetadataValue.int(int(row["total_files_discovered"])),
        "total_files_synced": MetadataValue.int(int(row["total_files_synced"])),
        "total_files_failed": MetadataValue.int(int(row["total_files_failed"])),
        "total_bytes_synced": MetadataValue.int(int(row["total_bytes_synced"])),
        "consecutive_failures": MetadataValue.int(int(row["consecutive_failures"])),
        "dlq_size": MetadataValue.int(rt.store.dlq_size(rt.sync_id)),
    }


def pass_metadata(rt: SyncRuntime) -> dict[str, Any]:
    """The last pass's own numbers."""
    p = rt.store.get_pass(rt.sync_id)
    return numbers_metadata(p) if p is not None else {}


def numbers_metadata(p: PassRow | PassReport) -> dict[str, Any]:
    """A pass's own numbers, from its row or from the report of a pass finished earlier."""
    seconds = (p.finished_at - p.started_at).total_seconds() if p.finished_at else 0.0
    return {
        "pass_no": MetadataValue.int(p.pass_no),
        "pass_files_listed": MetadataValue.int(p.listed),
        "pass_files_synced": MetadataValue.int(p.synced),
        "pass_files_excluded": MetadataValue.int(p.excluded),
        "pass_files_failed": MetadataValue.int(p.failed),
        "pass_objects_deleted": MetadataValue.int(p.deleted),
        "pass_bytes_synced": MetadataValue.int(p.bytes),
        "pass_seconds": MetadataValue.float(round(seconds, 3)),
    }


def pass_observation(rt: SyncRuntime, status: str, sensor: SensorState | None) -> AssetObservation:
    """The one observation recorded at the end of every pass."""
    p = rt.store.get_pass(rt.sync_id)
    which = f"pass {p.pass_no}" if p is not None else "pass"
    return AssetObservation(
        asset_key=asset_key_for(rt.name),
        description=f"{which} finished; status {status}",
        metadata=metrics_metadata(rt, sensor) | pass_metadata(rt),
    )


def report_late_passes(instance: DagsterInstance, rt: SyncRuntime) -> int:
    """Record the observations of passes `mixsync sync` finished without loading Dagster
    (unchanged ones), oldest first, then the checks; returns how many were recorded."""
    late = rt.store.take_unreported(rt.sync_id)
    if not late:
        return 0
    sensor = view(instance, rt.name)
    for r in late:
        instance.report_runless_asset_event(
            AssetObservation(
                asset_key=asset_key_for(rt.name),
                description=(
                    f"pass {r.pass_no} finished at {r.finished_at.isoformat(timespec='seconds')} "
                    f"(`mixsync sync`); status {r.status}"
                ),
                metadata=metrics_metadata(rt, sensor) | numbers_metadata(r),
            )
        )
    report_checks(instance, rt, sensor)
    return len(late)


def report_pass_end(
    instance: DagsterInstance, rt: SyncRuntime, status: str, sensor: SensorState | None
) -> None:
    """A pass finished outside a run and a tick (`mixsync sync`): record its observation and
    the checks in the instance, as the sensor or a run would have."""
    instance.report_runless_asset_event(pass_observation(rt, status, sensor))
    report_checks(instance, rt, sensor)


def report_checks(instance: DagsterInstance, rt: SyncRuntime, sensor: SensorState | None) -> None:
    """Record the five checks' current results outside any run (a failing tick, the CLI)."""
    for ev in check_evaluations(rt, sensor):
        instance.report_runless_asset_event(ev)
