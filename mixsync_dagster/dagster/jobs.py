"""The sync job: carry a pass on (sync_files) → reconcile → finish.

The graph is defined once; each sync gets its own job (`mixsync_<sync>_job`) carrying the
per-sync tag that Dagster's run queue uses as the lock. Run config names the pass and the
claim token the run was requested with; the run lists from the pass's committed position
itself, so nothing is planned ahead and nothing but counts travels between ops.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetMaterialization,
    AssetObservation,
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
from mixsync_dagster.core import passes, stop
from mixsync_dagster.core.owners import process_id, run_owner
from mixsync_dagster.core.reconcile import reconcile
from mixsync_dagster.core.segment import Tally, run_segment
from mixsync_dagster.core.status import refresh_batches
from mixsync_dagster.dagster.assets import (
    asset_key_for,
    check_evaluations,
    metrics_metadata,
    pass_observation,
)
from mixsync_dagster.dagster.control import stop_for_suspension, view
from mixsync_dagster.dagster.resources import MixsyncResource
from mixsync_dagster.dagster.runs import PASS_TAG, SYNC_TAG, WORKER_TAG, liveness
from mixsync_dagster.errors import AuthError, MixsyncError, PassLost, SyncBusy
from mixsync_dagster.redaction import redact
from mixsync_dagster.state import Claim

MAX_RUNTIME_SECONDS = 6 * 3600
PROGRESS_EVERY = 5_000
"""Files listed between two progress lines in a run's log."""
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


class PassRunConfig(Config):
    """Which pass this run carries on, and the claim it was requested with.

    All empty (a run launched by hand from the launchpad): the run continues the open pass if
    no live owner holds it, or starts the next one.
    """

    sync: str = ""
    """Defaults to the job's sync."""
    pass_uid: str = ""
    token: int = 0
    parent: str = ""
    """Owner the pass goes back to when this run ends mid-pass (the sensor or `mixsync sync`);
    empty: nobody, the next tick or `mixsync sync` continues it."""


def _claim_dict(claim: Claim) -> dict[str, Any]:
    return {
        "sync_id": claim.sync_id,
        "pass_no": claim.pass_no,
        "pass_uid": claim.pass_uid,
        "token": claim.token,
        "owner": claim.owner,
    }


def _log_samples(context: OpExecutionContext, tally: Tally) -> None:
    for what, samples, total in (
        ("excluded", tally.excluded_samples, tally.excluded),
        ("failed", tally.failed_samples, tally.failed),
        ("skipped by the provider", tally.skipped_samples, tally.skipped),
    ):
        if not samples:
            continue
        more = f" (first {len(samples)} of {total})" if total > len(samples) else ""
        lines = "\n".join(f"  {path}: {why}" for path, why in samples)
        context.log.info(f"{what}{more}:\n{lines}")


@op(
    out=Out(dict),
    retry_policy=STEP_RETRY,
    description="List from the pass's position; put "
    "objects for new and changed files; submit batches",
)
def sync_files(
    context: OpExecutionContext, config: PassRunConfig, mixsync: MixsyncResource
) -> dict[str, Any]:
    context.instance.add_run_tags(context.run_id, {WORKER_TAG: process_id()})
    sync = config.sync or context.run.tags.get(SYNC_TAG, "")
    rt = mixsync.runtime(sync)
    out: dict[str, Any] = {"sync": sync, "skip": None, "listing_done": False}
    me = run_owner(context.run_id)
    claim: Claim | None = None
    if not config.pass_uid:
        got = passes.acquire(rt, me, alive=liveness(context.instance), start_new=True)
        if isinstance(got, passes.Busy):
            out["skip"] = f"{got.message}; this run has nothing to do"
            context.log.info(out["skip"])
            return out
        claim = got
    p = rt.store.get_pass(rt.sync_id)
    if claim is None and p is not None and p.pass_uid == config.pass_uid:
        claim = rt.store.resume_claim(p, me, config.token)
    if claim is None or p is None:
        out["skip"] = (
            f"pass {config.pass_uid} is no longer this run's to carry on (finished, or taken "
            "over by a newer run or another process); nothing to do"
        )
        context.log.info(out["skip"])
        return out
    last_logged = [0]

    def progress(t: Tally) -> None:
        if t.listed - last_logged[0] >= PROGRESS_EVERY:
            last_logged[0] = t.listed
            context.log.info(
                f"pass {claim.pass_no}: listed {t.listed}, synced {t.synced}, excluded "
                f"{t.excluded}, failed {t.failed}"
            )

    try:
        with auth_fails_fast():
            res = run_segment(
                rt,
                claim,
                p,
                max_files=rt.sync.max_objects_per_run,
                should_stop=stop.requested,
                progress=progress,
            )
    except PassLost as e:
        out["skip"] = str(e)
        context.log.warning(str(e))
        return out
    t = res.tally
    _log_samples(context, t)
    context.log.info(
        f"pass {claim.pass_no}: listed {t.listed}, synced {t.synced}, excluded {t.excluded}, "
        f"failed {t.failed}, vanished {t.vanished}, {t.batches} batch(es) submitted in "
        f"{res.seconds:.1f} s"
        + (f"; {t.kept} changed file(s) kept their objects (on_update: false)" if t.kept else "")
        + ("" if res.listing_done else f"; stopped ({res.stopped})")
    )
    if not res.listing_done:
        rt.store.hand_back(claim, config.parent or None)
    out.update(
        claim=_claim_dict(claim),
        listing_done=res.listing_done,
        stopped=res.stopped,
        listed=t.listed,
        synced=t.synced,
        excluded=t.excluded,
        failed=t.failed,
        vanished=t.vanished,
        bytes=t.bytes,
        kept=t.kept,
        failed_samples=[list(x) for x in t.failed_samples],
    )
    return out


@op(
    ins={"work": In(dict)},
    out=Out(dict),
    retry_policy=STEP_RETRY,
    description="After a complete listing: delete objects whose files are gone or no longer "
    "match (reconcile)",
)
def reconcile_objects(
    context: OpExecutionContext, work: dict[str, Any], mixsync: MixsyncResource
) -> dict[str, Any]:
    if work["skip"] or not work["listing_done"]:
        return {**work, "deleted": 0}
    rt = mixsync.runtime(work["sync"])
    claim = Claim(**work["claim"])
    try:
        deleted = reconcile(rt, claim)
    except PassLost as e:
        context.log.warning(str(e))
        return {**work, "skip": str(e), "deleted": 0}
    if deleted:
        context.log.info(f"reconcile deleted {deleted} object(s)")
    return {**work, "deleted": deleted}


@op(
    ins={"work": In(dict)},
    retry_policy=STEP_RETRY,
    description="Finish the pass: times, status, metrics (an observation per pass)",
)
def finish_pass(
    context: OpExecutionContext, work: dict[str, Any], mixsync: MixsyncResource
) -> Iterator[AssetMaterialization | AssetObservation | Output[None]]:
    if work["skip"]:
        yield Output(None)
        return
    rt = mixsync.runtime(work["sync"])
    status = None
    if work["listing_done"]:
        claim = Claim(**work["claim"])
        try:
            status = passes.finish(rt, claim)
        except PassLost as e:
            context.log.warning(str(e))
            yield Output(None)
            return
        context.log.info(f"pass {claim.pass_no} done; status {status}")
    # Catch up on earlier batches' processing status (bounded; an outage here is only logged).
    try:
        refresh_batches(rt)
    except MixsyncError as e:
        context.log.warning(f"batch status refresh skipped: {e}")
    sensor = view(context.instance, rt.name)
    run_meta = {
        "run_files_listed": MetadataValue.int(int(work.get("listed", 0))),
        "run_files_synced": MetadataValue.int(int(work.get("synced", 0))),
        "run_files_excluded": MetadataValue.int(int(work.get("excluded", 0))),
        "run_files_failed": MetadataValue.int(int(work.get("failed", 0))),
        "run_bytes_synced": MetadataValue.int(int(work.get("bytes", 0))),
        "run_objects_deleted": MetadataValue.int(int(work.get("deleted", 0))),
    }
    if work.get("synced") or work.get("deleted"):
        yield AssetMaterialization(
            asset_key=asset_key_for(rt.name),
            description=f"sync {rt.name} → bucket {rt.sync.bucket}",
            metadata=metrics_metadata(rt, sensor) | run_meta,
        )
    if status is not None:
        yield pass_observation(rt, status, sensor)
    # The asset's checks after every run that did something (DLQ, batches, freshness...).
    for evaluation in check_evaluations(rt, sensor):
        # log_event records AssetCheckEvaluation too, though its annotation leaves it out.
        context.log_event(evaluation)  # type: ignore[arg-type]
    yield Output(None)


def report_run_failure(
    rt: Any, run_id: str, pass_uid: str | None, message: str, *, transient: bool
) -> str | None:
    """A run of the sync failed: one failed attempt of its pass, however many report it.
    Returns the sync's status when this report counted (None: reported before)."""
    message = redact(message)  # stored as failure history and last_error
    if not rt.store.record_failure_once(f"run:{run_id}", rt.sync_id, message):
        return None
    if pass_uid:
        return passes.fail_attempt(rt, pass_uid, message, transient=transient)[1]
    return str(rt.store.get_sync(rt.name)["status"])


@failure_hook(required_resource_keys={"mixsync"})
def count_failure(context: HookContext) -> None:
    """Fires once per failed step after its retries: the pass has one more failed attempt."""
    run = context.instance.get_run_by_id(context.run_id)
    sync = run.tags.get(SYNC_TAG) if run else None
    if not sync or run is None:
        return
    err = context.op_exception
    if isinstance(err, SyncBusy):
        return  # another owner carries the pass on; this run did nothing, which is no failure
    message = f"{context.op.name}: {type(err).__name__}: {err}" if err else context.op.name
    if isinstance(err, Failure):
        transient = not (err.description or "").startswith("AuthError")
    else:
        transient = err is None or passes.is_transient(err)
    resource = context.resources.mixsync
    rt = resource.runtime(sync)
    status = report_run_failure(
        rt, context.run_id, run.tags.get(PASS_TAG), message, transient=transient
    )
    if status == "SUSPENDED":
        # Suspended: its sensor stops too, so the UI shows what `mixsync status` says.
        stop_for_suspension(context.instance, rt, config_path=resource.config_path)
    if status is not None:
        for evaluation in check_evaluations(rt, view(context.instance, sync)):
            context.instance.report_runless_asset_event(evaluation)


@graph
def sync_graph() -> None:
    finish_pass(reconcile_objects(sync_files()))


def build_sync_job(sync: SyncConfig) -> JobDefinition:
    """The job for one sync: in-process (a run costs ~3 s, not ~14 s) and tagged with the lock."""
    return sync_graph.to_job(
        name=f"mixsync_{sync.name}_job",
        description=f"Sync '{sync.name}': {sync.connection_id}:{sync.source_path} → {sync.bucket}",
        tags={SYNC_TAG: sync.name, "dagster/max_runtime": str(MAX_RUNTIME_SECONDS)},
        executor_def=in_process_executor,
        hooks={count_failure},
    )


def run_config_for(sync: str, pass_uid: str, token: int, parent: str) -> dict[str, Any]:
    return {
        "ops": {
            "sync_files": {
                "config": {"sync": sync, "pass_uid": pass_uid, "token": token, "parent": parent}
            }
        }
    }
