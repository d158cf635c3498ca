"""The `mixsync` command group and its everyday commands: validate, status, pause, resume,
trigger, objects, preview. `sync` lives in `cli/sync.py`; check, unlock, dlq in `cli/ops.py`."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

from mixsync_dagster.config import MixsyncConfig, config_path, load_config
from mixsync_dagster.errors import ConfigError, MixsyncError, SyncNotFound
from mixsync_dagster.redaction import guard_streams

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
    # Everything the command prints (Dagster's console log of a run included) is redacted.
    ctx.with_resource(guard_streams())
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
    from mixsync_dagster.core.runtime import open_runtime
    from mixsync_dagster.core.status import status_record as record

    return record(open_runtime(cfg, name), refresh=refresh)


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


def _store(cfg: MixsyncConfig, name: str) -> Any:
    from mixsync_dagster.state import StateStore

    cfg.sync(name)
    return StateStore(cfg.state_url())


@main.command()
@click.argument("name")
@click.pass_obj
@_handle_errors
def pause(obj: Ctx, name: str) -> None:
    """Stop launching runs for a sync; a running run finishes; progress is kept."""
    _store(obj.cfg, name).pause(name)
    click.echo(f"{name}: PAUSED (a run in flight finishes; nothing new is launched)")


@main.command()
@click.argument("name")
@click.pass_obj
@_handle_errors
def resume(obj: Ctx, name: str) -> None:
    """Resume a paused or suspended sync from where its pass stopped."""
    store = _store(obj.cfg, name)
    if not store.resume(name):
        click.echo(f"{name}: {store.get_sync(name)['status']}, not paused; nothing to do")
        return
    click.echo(f"{name}: ACTIVE (continues from its position at the next tick)")


@main.command()
@click.argument("name")
@click.pass_obj
@_handle_errors
def trigger(obj: Ctx, name: str) -> None:
    """Ask the running deployment to start a pass now (within 30 s), whatever the interval."""
    store = _store(obj.cfg, name)
    status = store.get_sync(name)["status"]
    if status in ("PAUSED", "SUSPENDED"):
        _fail(f"{name} is {status}: run `mixsync resume {name}` first")
    store.request_trigger(name)
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
    from mixsync_dagster.core.preview import VERDICTS, PreviewTotals
    from mixsync_dagster.core.preview import preview as run_preview
    from mixsync_dagster.core.runtime import open_runtime

    rt = open_runtime(obj.cfg, name)
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
