"""The `mixsync` command line: validate, sync, status, trigger, pause, resume, objects."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from mixsync_dagster.config import MixsyncConfig, config_path, load_config
from mixsync_dagster.errors import ConfigError, MixsyncError, SyncNotFound

EXIT_CONFIG = 2
EXIT_FAILED = 1


def _iso(v: Any) -> str | None:
    return v.isoformat() if isinstance(v, datetime) else v


class Ctx:
    def __init__(self, path: str | None):
        self.path = config_path(path)
        self._cfg: MixsyncConfig | None = None

    @property
    def cfg(self) -> MixsyncConfig:
        if self._cfg is None:
            self._cfg = load_config(self.path)
        return self._cfg


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    click.echo(message, err=True)
    sys.exit(code)


@click.group()
@click.option(
    "-c",
    "--config",
    "config",
    default=None,
    help="Path to syncs.yaml (default: $MIXSYNC_CONFIG, else ./syncs.yaml).",
)
@click.version_option(package_name="mixsync-dagster")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """mixsync: keep buckets in step with files in your storage, on Dagster."""
    import warnings

    # Dagster's beta/preview notices are for library authors, not for operators at a terminal.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    ctx.obj = Ctx(config)


def _handle_errors(fn: Any) -> Any:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            _fail(str(e), EXIT_CONFIG)
        except SyncNotFound as e:
            _fail(str(e), EXIT_CONFIG)
        except MixsyncError as e:
            _fail(f"error: {e}")

    return wrapper


@main.command()
@click.pass_obj
@_handle_errors
def validate(obj: Ctx) -> None:
    """Check syncs.yaml: every field, reference and {env: VAR}."""
    cfg = obj.cfg
    click.echo(
        f"{obj.path}: OK: {len(cfg.syncs)} sync(s), {len(cfg.connections)} connection(s), "
        f"{len(cfg.buckets)} bucket(s)"
    )
    for s in cfg.syncs:
        click.echo(
            f"  {s.name}: {s.connection_id}:{s.source_path} -> {s.bucket} "
            f"({s.sync_mode}, every {s.polling_interval_seconds}s, batches of {s.batch_size})"
        )


def status_record(cfg: MixsyncConfig, name: str, refresh: bool = False) -> dict[str, Any]:
    """One sync's status and metrics, in the stable shape `status --json` prints."""
    from mixsync_dagster.core import engine
    from mixsync_dagster.state import StateStore

    sync = cfg.sync(name)
    rt = engine.open_runtime(cfg, name)
    if refresh:
        engine.refresh_batches(rt, limit=1000)
    batches = engine.batch_summary(rt)
    row = StateStore(cfg.state_url()).get_sync(name)
    return {
        "name": name,
        "status": row["status"],
        "bucket": sync.bucket,
        "connection_id": sync.connection_id,
        "source_path": sync.source_path,
        "sync_mode": sync.sync_mode,
        "polling_interval_seconds": sync.polling_interval_seconds,
        "total_files_discovered": int(row["total_files_discovered"]),
        "total_files_synced": int(row["total_files_synced"]),
        "total_files_failed": int(row["total_files_failed"]),
        "total_bytes_synced": int(row["total_bytes_synced"]),
        "last_sync_at": _iso(row["last_sync_at"]),
        "next_sync_at": _iso(row["next_sync_at"]),
        "consecutive_failures": int(row["consecutive_failures"]),
        "last_error": row["last_error"],
        "trigger_pending": row["trigger_requested_at"] is not None,
        "dlq_size": StateStore(cfg.state_url()).dlq_size(name),
        "batches": batches,
    }


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print stable JSON (see README).")
@click.option(
    "--refresh", is_flag=True, help="Ask the bucket for unfinished batches' status first."
)
@click.pass_obj
@_handle_errors
def status(obj: Ctx, name: str | None, as_json: bool, refresh: bool) -> None:
    """Status and metrics of one sync, or of all."""
    cfg = obj.cfg
    names = [name] if name else [s.name for s in cfg.syncs]
    records = [status_record(cfg, n, refresh) for n in names]
    if as_json:
        click.echo(json.dumps({"syncs": records}, indent=2))
        return
    for r in records:
        click.echo(f"{r['name']}: {r['status']}")
        for k in (
            "total_files_discovered",
            "total_files_synced",
            "total_files_failed",
            "total_bytes_synced",
            "last_sync_at",
            "next_sync_at",
            "consecutive_failures",
            "last_error",
            "dlq_size",
        ):
            click.echo(f"  {k}: {r[k] if r[k] is not None else '-'}")
        b = r["batches"]
        click.echo(
            f"  batches: {b['pending']} pending, {b['failed']} failed, {b['completed']} completed"
        )
        for fb in b["failed_batches"]:
            click.echo(f"    failed: {fb['batch_id']} ({fb['status']}, task {fb['task_id']})")
        for pb in b["pending_batches"]:
            click.echo(f"    pending: {pb['batch_id']} ({pb['status']}, task {pb['task_id']})")


def _set_status(cfg: MixsyncConfig, name: str, **values: Any) -> None:
    from mixsync_dagster.state import StateStore

    cfg.sync(name)
    StateStore(cfg.state_url()).set_sync(None, name, **values)


@main.command()
@click.argument("name")
@click.pass_obj
@_handle_errors
def pause(obj: Ctx, name: str) -> None:
    """Stop launching runs for a sync; a running run finishes; progress is kept."""
    _set_status(obj.cfg, name, status="PAUSED")
    click.echo(f"{name}: PAUSED (a run in flight finishes; nothing new is launched)")


@main.command()
@click.argument("name")
@click.pass_obj
@_handle_errors
def resume(obj: Ctx, name: str) -> None:
    """Resume a paused or suspended sync from its cursor."""
    from mixsync_dagster.state import StateStore

    cfg = obj.cfg
    cfg.sync(name)
    row = StateStore(cfg.state_url()).get_sync(name)
    if row["status"] not in ("PAUSED", "SUSPENDED"):
        click.echo(f"{name}: {row['status']}, not paused; nothing to do")
        return
    _set_status(cfg, name, status="ACTIVE", consecutive_failures=0)
    click.echo(f"{name}: ACTIVE (continues from its cursor at the next tick)")


@main.command()
@click.argument("name")
@click.pass_obj
@_handle_errors
def trigger(obj: Ctx, name: str) -> None:
    """Ask the running deployment to start a pass now (within 30 s), whatever the interval."""
    from mixsync_dagster.core.records import utcnow
    from mixsync_dagster.state import StateStore

    cfg = obj.cfg
    cfg.sync(name)
    row = StateStore(cfg.state_url()).get_sync(name)
    if row["status"] in ("PAUSED", "SUSPENDED"):
        _fail(f"{name} is {row['status']}: run `mixsync resume {name}` first")
    values: dict[str, Any] = {"trigger_requested_at": utcnow()}
    if row["status"] == "COMPLETED":
        values["status"] = "ACTIVE"  # one more pass of an initial_only sync, then COMPLETED again
    _set_status(cfg, name, **values)
    click.echo(f"{name}: pass requested; the sensor starts it at its next tick (≤ 30 s)")


@main.command()
@click.argument("bucket")
@click.option("--json", "as_json", is_flag=True, help="Print stable JSON (see README).")
@click.pass_obj
@_handle_errors
def objects(obj: Ctx, bucket: str, as_json: bool) -> None:
    """List a local bucket's objects."""
    from mixsync_dagster.state import StateStore
    from mixsync_dagster.targets.local import LocalBucketTarget

    cfg = obj.cfg
    if bucket not in cfg.buckets:
        raise SyncNotFound(
            f"{cfg.source_file}: no bucket named '{bucket}' (declared: {sorted(cfg.buckets)})"
        )
    rows = LocalBucketTarget(StateStore(cfg.state_url()).engine, bucket).list_objects()
    out = [
        {
            "object_id": r["object_id"],
            "source_key": r["source_key"],
            "size_bytes": int(r["size_bytes"]),
            "mime_type": r["mime_type"],
            "status": r["status"],
            "fields": r["fields"],
            "metadata": r["metadata"],
            "uri": r["uri"],
            "sha256": r["sha256"],
            "created_at": _iso(r["created_at"]),
            "updated_at": _iso(r["updated_at"]),
        }
        for r in rows
    ]
    if as_json:
        click.echo(json.dumps({"bucket": bucket, "objects": out}, indent=2))
        return
    click.echo(f"bucket {bucket}: {len(out)} object(s)")
    for o in out:
        fields = json.dumps(o["fields"]) if o["fields"] else ""
        click.echo(
            f"  {o['object_id']}  {o['status']:<9} {o['size_bytes']:>10}  "
            f"{o['mime_type'] or '-':<24} {o['source_key']}  {fields}"
        )


@main.command()
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Examine at most N files.")
@click.option("--json", "as_json", is_flag=True, help="Print stable JSON (see README).")
@click.pass_obj
@_handle_errors
def preview(obj: Ctx, name: str, limit: int | None, as_json: bool) -> None:
    """Show what a pass would do with each file, and why; writes nothing."""
    from mixsync_dagster.core import engine
    from mixsync_dagster.core.preview import VERDICTS, PreviewTotals
    from mixsync_dagster.core.preview import preview as run_preview

    rt = engine.open_runtime(obj.cfg, name)
    totals = PreviewTotals()
    rows = run_preview(rt, totals, limit)
    if as_json:
        # Streamed, so a preview of a huge source never holds its whole listing in memory.
        click.echo(f'{{"sync": {json.dumps(name)}, "files": [', nl=False)
        for i, row in enumerate(rows):
            click.echo(("," if i else "") + "\n  " + json.dumps(_row_dict(row)), nl=False)
        click.echo(f'\n], "totals": {json.dumps(totals.as_dict())}}}')
        return
    for row in rows:
        detail = row.action or row.filter or ""
        why = f"  ({row.reason})" if row.reason else ""
        click.echo(f"{row.verdict:<11} {detail:<18} {row.rel_path}{why}")
    t = totals.as_dict()
    limited = " (stopped at --limit)" if t["limited"] else ""
    click.echo(f"\n{t['examined']} file(s) examined{limited}")
    for v in VERDICTS:
        extra = ""
        if v == "would_sync" and t["would_sync_by_action"]:
            extra = f"  {t['would_sync_by_action']}"
        if v == "excluded" and t["excluded_by_filter"]:
            extra = f"  {t['excluded_by_filter']}"
        click.echo(f"  {v}: {t[v]}{extra}")


def _row_dict(row: Any) -> dict[str, Any]:
    return {
        "key": row.key,
        "rel_path": row.rel_path,
        "size": row.size,
        "verdict": row.verdict,
        "action": row.action,
        "filter": row.filter,
        "reason": row.reason,
    }


@contextmanager
def dagster_instance(cfg: MixsyncConfig) -> Iterator[Any]:
    """The instance the UI reads: $DAGSTER_HOME, else .mixsync/dagster_home by the config."""
    from dagster import DagsterInstance

    if not os.environ.get("DAGSTER_HOME"):
        home = Path(cfg.base_dir) / ".mixsync" / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        template = Path(cfg.base_dir) / "dagster.yaml"
        if template.exists() and not (home / "dagster.yaml").exists():
            shutil.copyfile(template, home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        yield instance


@main.command()
@click.argument("name")
@click.pass_obj
@_handle_errors
def sync(obj: Ctx, name: str) -> None:
    """Run one full pass now, in process, recorded in the Dagster instance."""
    from mixsync_dagster.core import engine
    from mixsync_dagster.core.records import utcnow
    from mixsync_dagster.dagster.definitions import build_definitions
    from mixsync_dagster.dagster.jobs import PASS_TAG, SYNC_TAG, WORKER_TAG, run_config_for
    from mixsync_dagster.dagster.runs import in_flight_run, sweep_dead
    from mixsync_dagster.dagster.workers import worker_id

    cfg = obj.cfg
    rt = engine.open_runtime(cfg, name)
    row = rt.store.get_sync(name)
    if row["status"] in ("PAUSED", "SUSPENDED"):
        _fail(f"{name} is {row['status']}: run `mixsync resume {name}` first")
    defs = build_definitions(obj.path)
    job = defs.get_job_def(f"mixsync_{name}_job")
    with dagster_instance(cfg) as instance:
        for h in sweep_dead(instance, name, rt.store):
            click.echo(f"{name}: released stale run {h.run.run_id} (worker {h.worker} gone)")
        busy = in_flight_run(instance, name)
        if busy:
            _fail(f"{name}: run {busy} is in flight; try again when it ends")
        lease = rt.store.lease_holder(name)
        if lease:
            _fail(f"{name}: run {lease} holds the sync's lease (another process); try again later")
        pass_id = "cli" + secrets.token_hex(4)
        started_at = utcnow()
        t0 = time.monotonic()
        position: str | None = None
        seq = listed = runs = 0
        totals: dict[str, int] = {}

        def run(items: list[dict[str, Any]], final: bool) -> None:
            nonlocal seq, runs
            work_id = f"{name}-{pass_id}-{seq}"
            seq += 1
            rt.store.save_work(work_id, name, pass_id, seq, final, items)
            result = job.execute_in_process(
                run_config=run_config_for(name, work_id)
                | {"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                instance=instance,
                # This process is the run's worker: say so from the start, so a kill at any
                # moment leaves a run that unlock and the stale-run sweep can judge.
                tags={SYNC_TAG: name, PASS_TAG: pass_id, WORKER_TAG: worker_id()},
                raise_on_error=False,
            )
            runs += 1
            if not result.success:
                err = rt.store.get_sync(name)["last_error"] or "see the run in the Dagster UI"
                _fail(f"{name}: run {result.run_id} failed: {err}")
            for k, v in rt.store.item_counts(work_id).items():
                totals[k] = totals.get(k, 0) + v

        while True:
            plan = engine.plan_chunk(rt, pass_id, position)
            listed += plan.listed
            for s in plan.skipped:
                click.echo(f"  skipped {s.key}: {s.reason}")
            if plan.items:
                run(plan.items, plan.listing_done)
            position = plan.next_position
            if plan.listing_done:
                break
        if rt.sync.reconcile_policy.deletes:
            doomed = engine.plan_reconcile(rt, pass_id)
            if doomed:
                run(doomed, True)
        new_status = engine.finish_pass(rt, pass_id, started_at)
    took = time.monotonic() - t0
    click.echo(
        f"{name}: pass {pass_id} done in {took:.1f}s: listed {listed}, runs {runs}, "
        f"synced {totals.get('synced', 0)}, excluded {totals.get('excluded', 0)}, "
        f"failed {totals.get('failed', 0)}, vanished {totals.get('vanished', 0)}, "
        f"deleted {totals.get('deleted', 0)}; "
        f"status {new_status}"
    )
