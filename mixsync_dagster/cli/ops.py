"""Operations commands of `mixsync`: check, unlock and the dead-letter queue."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

import click

from mixsync_dagster.cli.app import (
    EXIT_CONFIG,
    EXIT_FAILED,
    Ctx,
    _fail,
    _handle_errors,
    _iso,
    main,
)
from mixsync_dagster.config import MixsyncConfig
from mixsync_dagster.errors import MixsyncError, SyncNotFound


@main.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Also release a run or pass owner that looks alive.")
@click.pass_obj
@_handle_errors
def unlock(obj: Ctx, name: str, force: bool) -> None:
    """Release a sync held by a run or process that is no longer alive."""
    from mixsync_dagster.core.owners import describe, process_alive
    from mixsync_dagster.core.runtime import open_runtime
    from mixsync_dagster.dagster.runs import dagster_instance, holders, liveness, release
    from mixsync_dagster.state import Claim

    cfg = obj.cfg
    rt = open_runtime(cfg, name)
    refused = False
    with dagster_instance(cfg.base_dir) as instance:
        found = holders(instance, name)
        for h in found:
            rid = h.run.run_id
            if h.alive is False:
                release(instance, h, f"worker {h.worker} is gone")
                click.echo(f"{name}: released run {rid} (worker {h.worker} is gone)")
            elif force:
                if h.alive and h.worker:
                    # Stop the live worker first so it cannot write after we release its slot.
                    pid = int(h.worker.rsplit(":", 2)[1])
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
                release(instance, h, "forced by an operator")
                click.echo(f"{name}: released run {rid} (--force; worker {h.worker or 'unknown'})")
            else:
                refused = True
                why = "is alive" if h.alive else "cannot be checked from this host"
                click.echo(
                    f"{name}: run {rid} holds the lock and its worker {h.worker or '?'} {why}; "
                    "not released (use --force if you are sure it is stuck)",
                    err=True,
                )
        p = rt.store.get_pass(rt.sync_id)
        if p is not None and p.is_open and p.owner is not None:
            verdict = liveness(instance)(p.owner)
            if p.owner.startswith("cli:") and process_alive(p.owner) is not False and not force:
                refused = True
                click.echo(
                    f"{name}: pass {p.pass_no} is owned by {describe(p.owner)}, which is alive; "
                    "not released (use --force if you are sure it is stuck)",
                    err=True,
                )
            elif verdict is False or force or not found:
                claim = Claim(p.sync_id, p.pass_no, p.pass_uid, p.token, p.owner)
                if rt.store.release(claim):
                    click.echo(
                        f"{name}: pass {p.pass_no} released from {describe(p.owner)}; the next "
                        "pass resumes from its position"
                    )
        elif not found:
            click.echo(f"{name}: not locked (no run or process holds it)")
        if refused:
            sys.exit(EXIT_FAILED)


@main.group()
def dlq() -> None:
    """The dead-letter queue: files that failed, their attempts and last error."""


@dlq.command("list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print stable JSON (see README).")
@click.pass_obj
@_handle_errors
def dlq_list(obj: Ctx, name: str, as_json: bool) -> None:
    """Each failed file: status (retry | failed), attempts, last error, next attempt."""
    from mixsync_dagster.state import StateStore

    cfg = obj.cfg
    cfg.sync(name)
    store = StateStore(cfg.state_url())
    rows = [
        {
            "source_key": r["source_key"],
            "status": r["status"],
            "attempts": int(r["attempts"]),
            "last_error": r["last_error"],
            "next_attempt_at": _iso(r["next_attempt_at"]),
        }
        for r in store.dlq_rows(store.sync_id(name))
    ]
    if as_json:
        click.echo(json.dumps({"sync": name, "files": rows}, indent=2))
        return
    click.echo(f"{name}: {len(rows)} file(s) in the dead-letter queue")
    for r in rows:
        nxt = f", next attempt {r['next_attempt_at']}" if r["next_attempt_at"] else ""
        click.echo(f"  {r['status']:<6} x{r['attempts']} {r['source_key']}{nxt}")
        click.echo(f"         {r['last_error']}")


@dlq.command("retry")
@click.argument("name")
@click.argument("keys", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Requeue every failed file.")
@click.pass_obj
@_handle_errors
def dlq_retry(obj: Ctx, name: str, keys: tuple[str, ...], retry_all: bool) -> None:
    """Put failed files back in line for the next pass (attempts reset to 0)."""
    from mixsync_dagster.state import StateStore

    cfg = obj.cfg
    cfg.sync(name)
    if retry_all == bool(keys):
        _fail("give either --all or one or more source keys", EXIT_CONFIG)
    store = StateStore(cfg.state_url())
    n = store.dlq_requeue(store.sync_id(name), None if retry_all else list(keys))
    click.echo(f"{name}: {n} file(s) requeued; the next pass retries them")
    if keys and n < len(keys):
        _fail(f"{len(keys) - n} key(s) were not in the dead-letter queue")


@main.command()
@click.argument("name")
@click.pass_obj
@_handle_errors
def check(obj: Ctx, name: str) -> None:
    """Verify a connection's (or a bucket's) credentials and reachability."""
    from mixsync_dagster.providers import get_provider

    cfg = obj.cfg
    if name not in cfg.connections and name in cfg.buckets:
        _check_bucket(cfg, name)
        return
    if name not in cfg.connections:
        raise SyncNotFound(
            f"{cfg.source_file}: no connection named '{name}' (declared: {sorted(cfg.connections)})"
            f" and no bucket by that name (declared: {sorted(cfg.buckets)})"
        )
    provider = get_provider(cfg, name)
    used: list[str | None] = [
        *sorted({s.source_path for s in cfg.syncs if s.connection_id == name})
    ]
    failed = False
    for path in used or [None]:
        label = path or "(root)"
        try:
            click.echo(f"{name} {label}: OK: {provider.check(path)}")
        except MixsyncError as e:
            failed = True
            click.echo(f"{name} {label}: FAILED: {e}", err=True)
    if failed:
        sys.exit(EXIT_FAILED)


def _check_bucket(cfg: MixsyncConfig, name: str) -> None:
    """`check BUCKET`: a target that can verify itself (key, namespace, bucket) does so."""
    from mixsync_dagster.state import StateStore
    from mixsync_dagster.targets import get_target

    target = get_target(cfg, name, StateStore(cfg.state_url()).engine)
    try:
        click.echo(f"{name}: OK: {target.check()}")
    except MixsyncError as e:
        click.echo(f"{name}: FAILED: {e}", err=True)
        sys.exit(EXIT_FAILED)
