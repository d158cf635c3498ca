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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click

from mixsync_dagster.cli.app import EXIT_FAILED, Ctx, _fail, _handle_errors, main
from mixsync_dagster.dagster.runs import dagster_instance
from mixsync_dagster.errors import Interrupted, MixsyncError

T = TypeVar("T")
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
    from mixsync_dagster.cli.progress import PassProgress
    from mixsync_dagster.core import passes, stop
    from mixsync_dagster.core.owners import cli_owner, process_id
    from mixsync_dagster.core.runtime import open_runtime
    from mixsync_dagster.dagster import control
    from mixsync_dagster.dagster.assets import report_checks, report_pass_end
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
    config_file = str(Path(obj.path).resolve())
    me = cli_owner()
    t0 = time.monotonic()
    totals: dict[str, int] = {}
    samples: list[tuple[str, str]] = []
    runs = 0
    with dagster_instance(cfg.base_dir) as instance:
        refusal = not_running_message(name, rt.store.get_sync(name), control.view(instance, name))
        if refusal:
            _fail(refusal)
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
        progress = PassProgress(name, lambda: rt.store.get_pass(rt.sync_id))
        try:
            with progress:
                while True:
                    if stop.requested():
                        raise Interrupted(stop.signal_number() or signal.SIGINT)
                    try:
                        found = _in_thread(
                            partial(passes.scan, rt, claim, budget_seconds=None), progress.poll
                        )
                    except MixsyncError as e:
                        _counted, st = passes.fail_attempt(rt, claim.pass_uid, e)
                        control.stop_for_suspension(instance, rt, config_path=config_file)
                        report_checks(instance, rt, control.view(instance, name))
                        _fail(f"{name}: listing failed: {e} (status {st})")
                    totals["listed"] = totals.get("listed", 0) + found.listed
                    totals["excluded"] = totals.get("excluded", 0) + found.excluded
                    for s in found.skipped:
                        click.echo(f"  skipped {s.key}: {s.reason}")
                    if not (
                        found.found_work
                        or (found.listing_done and passes.reconcile_pending(rt, claim))
                    ):
                        if found.listing_done:
                            new_status = passes.finish(rt, claim)
                            # No run finished this pass, so its observation and checks are
                            # recorded here, as the sensor or a run would have.
                            report_pass_end(instance, rt, new_status, control.view(instance, name))
                            break
                        continue
                    plan = passes.request_run(rt, claim)
                    result = _in_thread(
                        partial(
                            job.execute_in_process,
                            raise_on_error=False,
                            run_config=run_config_for(name, plan.pass_uid, plan.token, me)
                            | {"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                            instance=instance,
                            # This process is the run's worker: say so from the start, so a
                            # kill at any moment leaves a run that unlock and the stale-run
                            # sweep can judge.
                            tags={
                                SYNC_TAG: name,
                                PASS_TAG: plan.pass_uid,
                                WORKER_TAG: process_id(),
                            },
                        ),
                        progress.poll,
                    )
                    runs += 1
                    if not result.success:
                        err = rt.store.get_sync(name)["last_error"] or "see the run in the UI"
                        _fail(f"{name}: run {result.run_id} failed: {err}")
                    out = result.output_for_node("sync_files")
                    for k in ("listed", "synced", "excluded", "failed", "vanished"):
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
    p = rt.store.get_pass(rt.sync_id)
    listed = totals.get("listed", 0)
    # Excluded counts every listed file the filters exclude, judged now or on an earlier pass,
    # so it matches what `mixsync preview` lists for the same state.
    whole = f" ({p.listed} in the whole pass)" if p is not None and p.listed != listed else ""
    click.echo(
        f"{name}: pass {claim.pass_no} done in {took:.1f}s: listed {listed}{whole}, runs "
        f"{runs}, synced {totals.get('synced', 0)}, excluded {totals.get('excluded', 0)}, "
        f"failed {totals.get('failed', 0)}, vanished {totals.get('vanished', 0)}, deleted "
        f"{totals.get('deleted', 0)}; status {new_status}"
    )
    failed = totals.get("failed", 0)
    if failed:
        shown = "\n".join(f"  {path}: {why}" for path, why in samples[:20])
        more = f"\n  ... and {failed - 20} more (`mixsync dlq list {name}`)" if failed > 20 else ""
        _fail(f"{name}: {failed} file(s) of this pass failed:\n{shown}{more}", EXIT_FAILED)


def not_running_message(name: str, row: dict[str, Any], sensor: Any) -> str | None:
    """Why nothing should start a pass of this sync now (paused or suspended), and what to do;
    None when it runs. `trigger` and `sync` refuse with the same words."""
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


def _in_thread(fn: Callable[[], T], on_wait: Callable[[], None]) -> T:
    """Run `fn` in a worker thread, calling `on_wait` while it works. Dagster swallows SIGINT
    in the thread that executes a run (it only notes it); in a worker thread it leaves signals
    alone, so our handler in the main thread asks the pass to stop at its next safe point."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:  # handed to the main thread
            box["error"] = e

    thread = threading.Thread(target=work, name="mixsync-run", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=0.2)  # short waits: the main thread stays free for signals
        on_wait()
    on_wait()
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
