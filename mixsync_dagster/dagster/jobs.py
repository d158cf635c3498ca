"""The sync job: filter files → create objects → submit batches → checkpoint.

The graph is defined once; each sync gets its own job (`mixsync_<sync>_job`) carrying the
per-sync tag that Dagster's run queue uses as the lock. A run's work list lives in the state
store; run config carries only its id.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetMaterialization,
    Backoff,
    Config,
    Failure,
    HookContext,
    In,
    Jitter,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    failure_hook,
    graph,
    in_process_executor,
    op,
)

from mixsync_dagster.config import SyncConfig
from mixsync_dagster.core import engine
from mixsync_dagster.dagster.resources import MixsyncResource
from mixsync_dagster.dagster.workers import worker_id
from mixsync_dagster.errors import AuthError, MixsyncError, SyncBusy

SYNC_TAG = "mixsync/sync"
PASS_TAG = "mixsync/pass"
WORKER_TAG = "mixsync/worker"
"""host:pid:start of the process executing the run; how unlock tells a dead run from a live one."""
MAX_RUNTIME_SECONDS = 6 * 3600
STEP_RETRY = RetryPolicy(
    max_retries=2, delay=1.0, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)


@contextmanager
def auth_fails_fast() -> Iterator[None]:
    """Refused credentials will be refused again: fail the step now, skipping STEP_RETRY."""
    try:
        yield
    except AuthError as e:
        raise Failure(description=f"AuthError: {e}", allow_retries=False) from None


def asset_key_for(sync: str) -> list[str]:
    return ["mixsync", sync]


class WorkConfig(Config):
    """Which sync and which stored work list this run processes."""

    sync: str
    work_id: str


@op(out=Out(dict), retry_policy=STEP_RETRY, description="Apply the sync's file filters")
def filter_files(
    context: OpExecutionContext, config: WorkConfig, mixsync: MixsyncResource
) -> dict[str, Any]:
    context.instance.add_run_tags(context.run_id, {WORKER_TAG: worker_id()})
    rt = mixsync.runtime(config.sync)
    engine.hold_lease(rt, context.run_id)
    with auth_fails_fast():  # enrich() reads provider metadata here
        counts = engine.filter_work(rt, config.work_id)
    context.log.info(
        f"{config.work_id}: {counts['accepted']} accepted, {counts['excluded']} excluded"
    )
    return {"sync": config.sync, "work_id": config.work_id, **counts}


@op(ins={"work": In(dict)}, out=Out(dict), retry_policy=STEP_RETRY, description="Create objects")
def create_objects(
    context: OpExecutionContext, work: dict[str, Any], mixsync: MixsyncResource
) -> dict[str, Any]:
    rt = mixsync.runtime(work["sync"])
    with auth_fails_fast():  # blob_url() presigns; the target may refuse its key
        counts = engine.create_objects(
            rt, work["work_id"], heartbeat=lambda: engine.hold_lease(rt, context.run_id)
        )
    context.log.info(
        f"{work['work_id']}: {counts['synced']} synced, {counts['failed']} failed, "
        f"{counts['vanished']} vanished before they were read"
    )
    return {**work, **counts}


@op(ins={"work": In(dict)}, out=Out(dict), retry_policy=STEP_RETRY, description="Submit batches")
def submit_batches(
    context: OpExecutionContext, work: dict[str, Any], mixsync: MixsyncResource
) -> dict[str, Any]:
    rt = mixsync.runtime(work["sync"])
    engine.hold_lease(rt, context.run_id)
    counts = engine.submit_batches(rt, work["work_id"])
    context.log.info(f"{work['work_id']}: {counts['submitted']} batch(es) submitted")
    return {**work, **counts}


@op(
    ins={"work": In(dict)},
    out=Out(dict),
    retry_policy=STEP_RETRY,
    description="Delete objects whose files are gone or no longer match (reconcile_on_sync)",
)
def reconcile(
    context: OpExecutionContext, work: dict[str, Any], mixsync: MixsyncResource
) -> dict[str, Any]:
    rt = mixsync.runtime(work["sync"])
    engine.hold_lease(rt, context.run_id)
    counts = engine.reconcile(rt, work["work_id"])
    if counts["deleted"]:
        context.log.info(f"{work['work_id']}: reconcile deleted {counts['deleted']} object(s)")
    return {**work, **counts}


@op(ins={"work": In(dict)}, retry_policy=STEP_RETRY, description="Checkpoint and report metrics")
def checkpoint(
    context: OpExecutionContext, work: dict[str, Any], mixsync: MixsyncResource
) -> Iterator[AssetMaterialization | Output[None]]:
    rt = mixsync.runtime(work["sync"])
    engine.hold_lease(rt, context.run_id)
    item_counts = engine.checkpoint(rt, work["work_id"])
    # Catch up on earlier batches' processing status (bounded; an outage here is only logged).
    try:
        engine.refresh_batches(rt)
    except MixsyncError as e:
        context.log.warning(f"batch status refresh skipped: {e}")
    rt.store.release_lease(rt.name, context.run_id)
    row = rt.store.get_sync(rt.name)
    yield AssetMaterialization(
        asset_key=asset_key_for(rt.name),
        description=f"sync {rt.name} → bucket {rt.sync.bucket}",
        metadata=metrics_metadata(row)
        | {
            "run_files": MetadataValue.int(sum(item_counts.values())),
            "run_files_synced": MetadataValue.int(item_counts.get("synced", 0)),
            "run_files_excluded": MetadataValue.int(item_counts.get("excluded", 0)),
            "run_files_failed": MetadataValue.int(item_counts.get("failed", 0)),
            "run_bytes_synced": MetadataValue.int(int(work.get("bytes", 0))),
            "run_objects_deleted": MetadataValue.int(int(work.get("deleted", 0))),
        },
    )
    yield Output(None)


def metrics_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """The feature page's metrics as Dagster metadata (numbers are plotted over time)."""
    return {
        "status": MetadataValue.text(str(row["status"])),
        "total_files_discovered": MetadataValue.int(int(row["total_files_discovered"])),
        "total_files_synced": MetadataValue.int(int(row["total_files_synced"])),
        "total_files_failed": MetadataValue.int(int(row["total_files_failed"])),
        "total_bytes_synced": MetadataValue.int(int(row["total_bytes_synced"])),
        "consecutive_failures": MetadataValue.int(int(row["consecutive_failures"])),
    }


@failure_hook(required_resource_keys={"mixsync"})
def count_failure(context: HookContext) -> None:
    """Fires once per failed step after its retries: the sync's failure count goes up."""
    run = context.instance.get_run_by_id(context.run_id)
    sync = run.tags.get(SYNC_TAG) if run else None
    if not sync:
        return
    err = context.op_exception
    message = f"{context.op.name}: {type(err).__name__}: {err}" if err else context.op.name
    rt = context.resources.mixsync.runtime(sync)
    if isinstance(err, SyncBusy):
        return  # another run is syncing; this one did nothing, which is not a failure
    engine.record_run_failure(rt, context.run_id, message)


@graph
def sync_graph() -> None:
    checkpoint(reconcile(submit_batches(create_objects(filter_files()))))


def build_sync_job(sync: SyncConfig) -> JobDefinition:
    """The job for one sync: in-process (a run costs ~3 s, not ~14 s) and tagged with the lock."""
    return sync_graph.to_job(
        name=f"mixsync_{sync.name}_job",
        description=f"Sync '{sync.name}': {sync.connection_id}:{sync.source_path} → {sync.bucket}",
        tags={SYNC_TAG: sync.name, "dagster/max_runtime": str(MAX_RUNTIME_SECONDS)},
        executor_def=in_process_executor,
        hooks={count_failure},
    )


def run_config_for(sync: str, work_id: str) -> dict[str, Any]:
    return {"ops": {"filter_files": {"config": {"sync": sync, "work_id": work_id}}}}
