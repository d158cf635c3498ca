"""Build Dagster Definitions from a syncs.yaml. Per sync: a job (the lock's unit), a sensor, an
observable asset with five health checks, and the job that observes it."""

from __future__ import annotations

import os

from dagster import Definitions

from mixsync_dagster.config import config_path, load_config
from mixsync_dagster.dagster.assets import build_health_job, build_sync_asset
from mixsync_dagster.dagster.jobs import build_sync_job
from mixsync_dagster.dagster.resources import MixsyncResource
from mixsync_dagster.dagster.sensors import build_run_failure_sensor, build_sync_sensor


def build_definitions(path: str | os.PathLike[str] | None = None) -> Definitions:
    """Everything or nothing: a config error raises before any definition is built."""
    # realpath, not Path.resolve: a config path that is a symlink loop must reach load_config,
    # which reports it as a config problem, instead of raising RuntimeError here.
    resolved = os.path.realpath(config_path(path))
    cfg = load_config(resolved)
    jobs, health_jobs, sensors, assets = [], [], [], []
    for sync in cfg.syncs:
        job = build_sync_job(sync)
        health = build_health_job(sync)
        jobs.append(job)
        health_jobs.append(health)
        sensors.append(build_sync_sensor(sync, job, health))
        assets.append(build_sync_asset(sync))
    if jobs:
        sensors.append(build_run_failure_sensor(jobs))
    return Definitions(
        assets=assets,
        jobs=[*jobs, *health_jobs],
        sensors=sensors,
        resources={"mixsync": MixsyncResource(config_path=resolved)},
    )
