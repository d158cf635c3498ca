"""Build Dagster Definitions from a syncs.yaml: one job, one sensor and one asset per sync."""

from __future__ import annotations

import os

from dagster import AssetSpec, Definitions

from mixsync_dagster.config import config_path, load_config
from mixsync_dagster.dagster.jobs import asset_key_for, build_sync_job
from mixsync_dagster.dagster.resources import MixsyncResource
from mixsync_dagster.dagster.sensors import build_run_failure_sensor, build_sync_sensor


def build_definitions(path: str | os.PathLike[str] | None = None) -> Definitions:
    """Everything or nothing: a config error raises before any definition is built."""
    # realpath, not Path.resolve: a config path that is a symlink loop must reach load_config,
    # which reports it as a config problem, instead of raising RuntimeError here.
    resolved = os.path.realpath(config_path(path))
    cfg = load_config(resolved)
    jobs, sensors, assets = [], [], []
    for sync in cfg.syncs:
        job = build_sync_job(sync)
        jobs.append(job)
        sensors.append(build_sync_sensor(sync, job))
        assets.append(
            AssetSpec(
                key=asset_key_for(sync.name),
                description=(
                    f"Objects synced by '{sync.name}' from {sync.connection_id}:{sync.source_path} "
                    f"into bucket '{sync.bucket}', driven by the sensor mixsync_{sync.name}. "
                    "Metadata plots the sync's metrics over time (one observation per pass)."
                ),
                group_name="mixsync",
                kinds={"mixsync"},
                metadata={"bucket": sync.bucket, "sync_mode": sync.sync_mode},
            )
        )
    if jobs:
        sensors.append(build_run_failure_sensor(jobs))
    return Definitions(
        assets=assets,
        jobs=jobs,
        sensors=sensors,
        resources={"mixsync": MixsyncResource(config_path=resolved)},
    )
