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
    """ISO-8601 with its zone: every time the CLI prints says it is UTC (`+00:00`)."""
    from mixsync_dagster.clock import as_utc

    return as_utc(v).isoformat() if isinstance(v, datetime) else v


def _who() -> str:
    """`mixsync pause (user@host)`: who paused a sync, for the messages that explain it."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"`mixsync pause` ({user}@{socket.gethostname()})"


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


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print stable JSON (see README).")
@click.option(
    "--refresh", is_flag=True, help="Ask the bucket for unfinished batches' status first."
)
@click.pass_obj
@_handle_errors
def status(obj: Ctx, name: str | None, as_json: bool, refresh: bool) -> None:
    """Status, sensor, health checks and metrics of one sync, or of all."""
    from mixsync_dagster.core.runtime import open_runtime
    from mixsync_dagster.core.status import status_record
    from mixsync_dagster.dagster import control
    from mixsync_dagster.dagster.runs import dagster_instance

    cfg = obj.cfg
    names = [name] if name else [s.name for s in cfg.syncs]
    for n in names:
        cfg.sync(n)  # an unknown name exits 2 before Dagster is opened
    with dagster_instance(cfg.base_dir) as instance:
        records = [
            status_record(open_runtime(cfg, n), refresh=refresh, sensor=control.view(instance, n))
            for n in names
        ]
    if as_json:
        click.echo(json.dumps({"syncs": records}, indent=2))
        return
    for r in records:
        sensor = r["sensor"]
        click.echo(f"{r['name']}: {r['status']} (sensor {sensor['name']}: {sensor['status']})")
        if r["paused_by"]:
            click.echo(f"  paused by {r['paused_by']}; `mixsync resume {r['name']}` resumes")
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
        checks = ", ".join(f"{k} {'ok' if ok else 'FAILED'}" for k, ok in r["checks"].items())
        click.echo(f"  checks: {checks}")


@main.command()
@click.argument("name")
@click.pass_obj
@_handle_errors
def pause(obj: Ctx, name: str) -> None:
    """Stop the sync's sensor: a run in flight finishes, nothing new launches, progress is kept."""
    from mixsync_dagster.core.runtime import open_runtime
    from mixsync_dagster.core.status import paused_by
    from mixsync_dagster.dagster import control
    from mixsync_dagster.dagster.runs import dagster_instance

    cfg = obj.cfg
    rt = open_runtime(cfg, name)
    with dagster_instance(cfg.base_dir) as instance:
        stopped = control.pause(instance, rt, config_path=str(obj.path.resolve()), by=_who())
        sensor = control.view(instance, name)
        home = instance.root_directory
    if not stopped:
        who = paused_by(rt.store.get_sync(name), sensor)
        click.echo(f"{name}: already PAUSED (sensor {sensor.name} STOPPED, paused by {who})")
        return
    click.echo(
        f"{name}: PAUSED: sensor {sensor.name} STOPPED in the Dagster instance ({home}), as "
        f"the UI shows; a run in flight finishes, nothing new launches. `mixsync resume {name}` "
        "or the sensor's toggle in the UI resumes it."
    )


@main.command()
@click.argument("name")
@click.pass_obj
@_handle_errors
def resume(obj: Ctx, name: str) -> None:
    """Start a paused sync's sensor (and clear a suspension); it continues from its position."""
    from mixsync_dagster.core.passes import tick_interval
    from mixsync_dagster.core.runtime import open_runtime
    from mixsync_dagster.dagster import control
    from mixsync_dagster.dagster.runs import dagster_instance

    cfg = obj.cfg
    rt = open_runtime(cfg, name)
    with dagster_instance(cfg.base_dir) as instance:
        started, was_suspended = control.resume(instance, rt, config_path=str(obj.path.resolve()))
    sensor = control.sensor_name(name)
    if not (started or was_suspended):
        click.echo(f"{name}: not paused (sensor {sensor} RUNNING); nothing to do")
        return
    cleared = "suspension cleared; " if was_suspended else ""
    click.echo(
        f"{name}: ACTIVE: {cleared}sensor {sensor} RUNNING; the next tick (within "
        f"{tick_interval(rt.sync.polling_interval_seconds)} s) continues from its position"
    )


def _not_running_message(name: str, row: dict[str, Any], sensor: Any) -> str | None:
    """Why the sensor would not start a triggered pass (paused or suspended), and what to do;
    None when it runs."""
    from mixsync_dagster.core.status import effective_status, paused_by

    status = effective_status(row, sensor)
    if status == "SUSPENDED":
        return (
            f"{name} is SUSPENDED after {row['consecutive_failures']} failed passes in a row "
            f"({row['last_error']}); its sensor {sensor.name} is {sensor.status}. Run "
            f"`mixsync resume {name}` first (or start the sensor in the UI)."
        )
    if status == "PAUSED":
        return (
            f"{name} is PAUSED: its sensor {sensor.name} is STOPPED (paused by "
            f"{paused_by(row, sensor)}). Start it with `mixsync resume {name}` or the toggle on "
            "the sensor's page in the UI."
        )
    return None


@main.command()
@click.argument("name")
@click.pass_obj
@_handle_errors
def trigger(obj: Ctx, name: str) -> None:
    """Ask the running deployment to start a pass at the sensor's next tick, whatever the
    interval."""
    from mixsync_dagster.core.passes import tick_interval
    from mixsync_dagster.core.runtime import open_runtime
    from mixsync_dagster.dagster import control
    from mixsync_dagster.dagster.runs import dagster_instance

    cfg = obj.cfg
    rt = open_runtime(cfg, name)
    with dagster_instance(cfg.base_dir) as instance:
        sensor = control.view(instance, name)
    refusal = _not_running_message(name, rt.store.get_sync(name), sensor)
    if refusal:
        _fail(f"{refusal} Nothing would start a triggered pass.")
    rt.store.request_trigger(name)
    click.echo(
        f"{name}: pass requested; sensor {sensor.name} (RUNNING) starts it at its next tick "
        f"(within {tick_interval(rt.sync.polling_interval_seconds)} s) while a Dagster daemon "
        f"runs (`make run`); `mixsync sync {name}` runs it now"
    )


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
        if row.rejected_by:
            detail = "+".join(name for name, _ in row.rejected_by)
            why = "  (" + "; ".join(reason for _, reason in row.rejected_by) + ")"
        else:
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
        "rejected_by": [{"filter": f, "reason": r} for f, r in row.rejected_by],
    }
