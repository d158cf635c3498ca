"""`mixsync sync NAME`: one whole pass now, in this process, recorded in the Dagster instance.

The pass is claimed like the sensor claims it; a pass another live process owns is never
touched (the command refuses, or with --wait waits for it). Runs are the same job the daemon
launches, executed in process. SIGINT/SIGTERM stop at the next safe point: the claim is
released and the next pass (sensor or CLI) resumes from the committed position.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

import click

from mixsync_dagster.cli.app import EXIT_FAILED, Ctx, _fail, _handle_errors, main
from mixsync_dagster.dagster.runs import dagster_instance
from mixsync_dagster.errors import Interrupted, MixsyncError

EXIT_SIGNAL_BASE = 128
WAIT_POLL_SECONDS = 2.0


def _install_stop_handlers() -> dict[int, Any]:
    """First SIGINT/SIGTERM: stop at the next safe point. A second SIGINT: stop now."""
    from mixsync_dagster.core import stop

    stop.reset()
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.requested() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.request(signum)
        click.echo(
            f"\nstopping at the next safe point (signal {signum}); Ctrl-C again to stop now",
            err=True,
        )

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


@main.command()
@click.argument("name")
@click.option(
    "--wait",
    is_flag=True,
    help="If another process is in the middle of a pass of this sync, wait for it to end.",
)
@click.pass_obj
@_handle_errors
def sync(obj: Ctx, name: str, wait: bool) -> None:
    """Run one full pass now, in process, recorded in the Dagster instance."""
    from mixsync_dagster.core import passes, stop
    from mixsync_dagster.core.owners import cli_owner, process_id
    from mixsync_dagster.core.runtime import open_runtime
    from mixsync_dagster.dagster.definitions import build_definitions
    from mixsync_dagster.dagster.jobs import run_config_for
    from mixsync_dagster.dagster.runs import (
        PASS_TAG,
        SYNC_TAG,
        WORKER_TAG,
        in_flight_run,
        liveness,
        sweep_dead,
    )
    from mixsync_dagster.state import Claim

    cfg = obj.cfg
    rt = open_runtime(cfg, name)
    status = rt.store.get_sync(name)["status"]
    if status in ("PAUSED", "SUSPENDED"):
        _fail(f"{name} is {status}: run `mixsync resume {name}` first")
    me = cli_owner()
    t0 = time.monotonic()
    totals: dict[str, int] = {}
    samples: list[tuple[str, str]] = []
    runs = 0
    with dagster_instance(cfg.base_dir) as instance:
        for h in sweep_dead(instance, name):
            click.echo(f"{name}: released stale run {h.run.run_id} (worker {h.worker} gone)")
        alive = liveness(instance)
        while True:
            busy = in_flight_run(instance, name)
            got = (
                passes.Busy(f"run {busy} of this sync is in flight")
                if busy
                else passes.acquire(rt, me, alive=alive, start_new=True)
            )
            if not isinstance(got, passes.Busy):
                break
            if not wait:
                _fail(f"{name}: {got.message}; try again when it ends, or pass --wait")
            time.sleep(WAIT_POLL_SECONDS)
        assert not isinstance(got, passes.Busy)
        claim: Claim = got
        previous = _install_stop_handlers()
        job = build_definitions(obj.path).get_job_def(f"mixsync_{name}_job")
        new_status = None
        try:
            while True:
                if stop.requested():
                    raise Interrupted(stop.signal_number() or signal.SIGINT)
                try:
                    found = passes.scan(rt, claim, budget_seconds=None)
                except MixsyncError as e:
                    _counted, st = passes.fail_attempt(rt, claim.pass_uid, e)
                    _fail(f"{name}: listing failed: {e} (status {st})")
                totals["listed"] = totals.get("listed", 0) + found.listed
                for s in found.skipped:
                    click.echo(f"  skipped {s.key}: {s.reason}")
                if not (
                    found.found_work or (found.listing_done and passes.reconcile_pending(rt, claim))
                ):
                    if found.listing_done:
                        new_status = passes.finish(rt, claim)
                        break
                    continue
                plan = passes.request_run(rt, claim)
                result = _execute(
                    job,
                    run_config=run_config_for(name, plan.pass_uid, plan.token, me)
                    | {"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                    instance=instance,
                    # This process is the run's worker: say so from the start, so a kill at any
                    # moment leaves a run that unlock and the stale-run sweep can judge.
                    tags={SYNC_TAG: name, PASS_TAG: plan.pass_uid, WORKER_TAG: process_id()},
                )
                runs += 1
                if not result.success:
                    err = rt.store.get_sync(name)["last_error"] or "see the run in the Dagster UI"
                    _fail(f"{name}: run {result.run_id} failed: {err}")
                out = result.output_for_node("sync_files")
                for k in ("listed", "synced", "excluded", "failed", "vanished", "bytes"):
                    totals[k] = totals.get(k, 0) + int(out.get(k, 0))
                samples.extend(out.get("failed_samples", []))
                rec = result.output_for_node("reconcile_objects")
                totals["deleted"] = totals.get("deleted", 0) + int(rec.get("deleted", 0))
                if out.get("skip"):
                    _fail(f"{name}: {out['skip']}")
                p = rt.store.get_pass(rt.sync_id)
                if p is None or not p.is_open:
                    new_status = rt.store.get_sync(name)["status"]
                    break
                if out.get("stopped") == "signal" or stop.requested():
                    raise Interrupted(stop.signal_number() or signal.SIGINT)
                again = passes.acquire(rt, me, alive=alive, start_new=False)
                if isinstance(again, passes.Busy):
                    _fail(f"{name}: {again.message}")
                    return
                claim = again
        except Interrupted as e:
            rt.store.release(_current_claim(rt, me) or claim)
            click.echo(
                f"{name}: stopped by signal {e.signum}; pass {claim.pass_no} keeps its position "
                "and the next pass (sensor or `mixsync sync`) resumes from it",
                err=True,
            )
            sys.exit(EXIT_SIGNAL_BASE + e.signum)
        finally:
            current = _current_claim(rt, me)
            if current is not None:
                rt.store.release(current)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    took = time.monotonic() - t0
    click.echo(
        f"{name}: pass {claim.pass_no} done in {took:.1f}s: listed {totals.get('listed', 0)}, "
        f"runs {runs}, synced {totals.get('synced', 0)}, excluded {totals.get('excluded', 0)}, "
        f"failed {totals.get('failed', 0)}, vanished {totals.get('vanished', 0)}, "
        f"deleted {totals.get('deleted', 0)}; status {new_status}"
    )
    failed = totals.get("failed", 0)
    if failed:
        shown = "\n".join(f"  {path}: {why}" for path, why in samples[:20])
        more = f"\n  ... and {failed - 20} more (`mixsync dlq list {name}`)" if failed > 20 else ""
        _fail(f"{name}: {failed} file(s) of this pass failed:\n{shown}{more}", EXIT_FAILED)


def _execute(job: Any, **kwargs: Any) -> Any:
    """Execute the run in a worker thread. Dagster swallows SIGINT in the thread that executes
    a run (it only notes it); in a worker thread it leaves signals alone, so our handler in the
    main thread asks the pass to stop at its next safe point instead."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = job.execute_in_process(raise_on_error=False, **kwargs)
        except BaseException as e:  # handed to the main thread
            box["error"] = e

    thread = threading.Thread(target=work, name="mixsync-run", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=0.2)  # short waits: the main thread stays free for signals
    if "error" in box:
        raise box["error"]
    return box["result"]


def _current_claim(rt: Any, me: str) -> Any:
    """Our claim on the open pass, if we still hold it."""
    from mixsync_dagster.state import Claim

    p = rt.store.get_pass(rt.sync_id)
    if p is None or not p.is_open or p.owner != me:
        return None
    return Claim(p.sync_id, p.pass_no, p.pass_uid, p.token, me)
