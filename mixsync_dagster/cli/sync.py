"""`mixsync sync NAME`: one whole pass now, in this process, recorded in the Dagster instance.

The pass is claimed like the sensor claims it; a pass another live process owns is never
touched (the command refuses, or with --wait waits for it). Runs are the same job the daemon
launches, executed in process. SIGINT/SIGTERM stop at the next safe point: the claim is
released and the next pass (sensor or CLI) resumes from the committed position.

A paused sync (its sensor stopped) still runs the pass asked for here, as Dagster launches a
job by hand whatever its sensor's state; the sensor stays stopped. A SUSPENDED sync does not:
it failed too often, and `mixsync resume` is the deliberate step back.
"""

from __future__ import annotations

import contextlib
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


class _Dagster:
    """The Dagster side of `mixsync sync`, opened only when needed: a pass with nothing to do
    (the common case) costs no Dagster import and no instance."""

    def __init__(self, cfg: Any, path: Any, name: str, *, noted_pause: bool):
        self.cfg, self.path, self.name = cfg, path, name
        self.noted_pause = noted_pause
        self._stack: contextlib.ExitStack | None = None
        self._instance: Any = None
        self._job: Any = None

    @property
    def loaded(self) -> bool:
        return self._instance is not None

    def instance(self) -> Any:
        if self._instance is None:
            from mixsync_dagster.dagster import control
            from mixsync_dagster.dagster.runs import dagster_instance, sweep_dead

            self._stack = contextlib.ExitStack()
            self._instance = self._stack.enter_context(dagster_instance(self.cfg.base_dir))
            for h in sweep_dead(self._instance, self.name):
                click.echo(
                    f"{self.name}: released stale run {h.run.run_id} (worker {h.worker} gone)"
                )
            if not self.noted_pause and not control.view(self._instance, self.name).running:
                _note_paused(self.name)
                self.noted_pause = True
        return self._instance

    def sensor(self) -> Any:
        from mixsync_dagster.dagster import control

        return control.view(self.instance(), self.name)

    def report_failure(self, rt: Any) -> None:
        """A failed listing: stop the sensor if the sync is now suspended, record the checks."""
        from mixsync_dagster.dagster import control
        from mixsync_dagster.dagster.assets import report_checks

        control.stop_for_suspension(self.instance(), rt, config_path=str(Path(self.path).resolve()))
        report_checks(self.instance(), rt, self.sensor())

    def report_pass_end(self, rt: Any, status: str) -> None:
        from mixsync_dagster.dagster.assets import report_pass_end

        report_pass_end(self.instance(), rt, status, self.sensor())

    def job(self) -> Any:
        if self._job is None:
            from mixsync_dagster.dagster.definitions import build_definitions

            self._job = build_definitions(self.path).get_job_def(f"mixsync_{self.name}_job")
        return self._job

    def alive(self, owner: str) -> bool | None:
        """Liveness of a pass owner; Dagster is asked only about runs."""
        from mixsync_dagster.core.owners import process_alive

        if owner.startswith("run:"):
            from mixsync_dagster.dagster.runs import liveness

            return liveness(self.instance())(owner)
        if owner.startswith("cli:"):
            return process_alive(owner)
        return None

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()


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
    from mixsync_dagster.core import passes
    from mixsync_dagster.core.owners import cli_owner
    from mixsync_dagster.core.runtime import open_runtime

    cfg = obj.cfg
    rt = open_runtime(cfg, name)
    row = rt.store.get_sync(name)
    if row["status"] == "SUSPENDED":
        _fail(
            f"{name} is SUSPENDED after {row['consecutive_failures']} failed passes in a row "
            f"({row['last_error']}). Run `mixsync resume {name}` first (or start the sensor "
            "in the UI)."
        )
    # What mixsync knows of a pause without loading Dagster; a stop in the UI shows once
    # Dagster is loaded (a pass with work to run).
    noted = row["paused_by"] is not None or bool(row["pause_pending"])
    if noted:
        _note_paused(name)
    me = cli_owner()
    t0 = time.monotonic()
    dag = _Dagster(cfg, obj.path, name, noted_pause=noted)
    try:
        while True:
            got = passes.acquire(rt, me, alive=dag.alive, start_new=True)
            if not isinstance(got, passes.Busy):
                break
            if not wait:
                _fail(f"{name}: {got.message}; try again when it ends, or pass --wait")
            time.sleep(WAIT_POLL_SECONDS)
        previous = _install_stop_handlers()
        progress = PassProgress(name, lambda: rt.store.get_pass(rt.sync_id))
        try:
            with progress:
                claim, totals, samples, runs, new_status = _run_pass(rt, me, got, dag, progress)
        finally:
            current = _current_claim(rt, me)
            if current is not None:
                rt.store.release(current)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    except Interrupted as e:
        click.echo(
            f"{name}: stopped by signal {e.signum}; the pass keeps its position and the next "
            "pass (sensor or `mixsync sync`) resumes from it",
            err=True,
        )
        sys.exit(EXIT_SIGNAL_BASE + e.signum)
    finally:
        from mixsync_dagster.core import prefetch

        prefetch.discard()
        dag.close()
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
    if totals.get("kept"):
        click.echo(
            f"{name}: {totals['kept']} changed file(s) kept their objects as they were "
            "(reconcile.on_update is false)"
        )
    failed = totals.get("failed", 0)
    if failed:
        shown = "\n".join(f"  {path}: {why}" for path, why in samples[:20])
        more = f"\n  ... and {failed - 20} more (`mixsync dlq list {name}`)" if failed > 20 else ""
        _fail(f"{name}: {failed} file(s) of this pass failed:\n{shown}{more}", EXIT_FAILED)


def _note_paused(name: str) -> None:
    click.echo(
        f"note: {name} is paused (its sensor is stopped). This pass runs because you asked; "
        f"the sensor stays stopped until `mixsync resume {name}` or the UI's toggle.",
        err=True,
    )


def _run_pass(rt: Any, me: str, claim: Any, dag: _Dagster, progress: Any) -> tuple[Any, ...]:
    """Scan, run what needs running, finish. Returns (claim, totals, samples, runs, status)."""
    from mixsync_dagster.core import passes, prefetch, stop
    from mixsync_dagster.core.owners import process_id

    name = rt.name
    totals: dict[str, int] = {}
    samples: list[tuple[str, str]] = []
    runs = 0
    while True:
        if stop.requested():
            raise Interrupted(stop.signal_number() or signal.SIGINT)
        try:
            # A run in this process comes next if there is work: the scan leaves it the
            # listing, which goes on while Dagster loads.
            found = _in_thread(
                partial(passes.scan, rt, claim, budget_seconds=None, hand_over=True),
                progress.poll,
            )
        except MixsyncError as e:
            _counted, st = passes.fail_attempt(rt, claim.pass_uid, e)
            dag.report_failure(rt)
            _fail(f"{name}: listing failed: {e} (status {st})")
        totals["listed"] = totals.get("listed", 0) + found.listed
        totals["excluded"] = totals.get("excluded", 0) + found.excluded
        for s in found.skipped:
            click.echo(f"  skipped {s.key}: {s.reason}")
        if not (found.found_work or (found.listing_done and passes.reconcile_pending(rt, claim))):
            if found.listing_done:
                # No run finished this pass, so its observation is recorded here if Dagster is
                # loaded anyway; otherwise the sync's next sensor tick records it, and an
                # unchanged pass stays as cheap as its listing.
                status = passes.finish(rt, claim, reported=dag.loaded)
                if dag.loaded:
                    dag.report_pass_end(rt, status)
                return claim, totals, samples, runs, status
            continue
        from mixsync_dagster.dagster.jobs import run_config_for
        from mixsync_dagster.dagster.runs import PASS_TAG, SYNC_TAG, WORKER_TAG

        instance, job = dag.instance(), dag.job()
        plan = passes.request_run(rt, claim)
        result = _in_thread(
            partial(
                job.execute_in_process,
                raise_on_error=False,
                run_config=run_config_for(name, plan.pass_uid, plan.token, me)
                | {"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                instance=instance,
                # This process is the run's worker: say so from the start, so a kill at any
                # moment leaves a run that unlock and the stale-run sweep can judge.
                tags={SYNC_TAG: name, PASS_TAG: plan.pass_uid, WORKER_TAG: process_id()},
            ),
            progress.poll,
        )
        runs += 1
        prefetch.discard()  # a listing the run did not take (it should have) stops here
        if not result.success:
            err = rt.store.get_sync(name)["last_error"] or "see the run in the Dagster UI"
            _fail(f"{name}: run {result.run_id} failed: {err}")
        out = result.output_for_node("sync_files")
        for k in ("listed", "synced", "excluded", "failed", "vanished", "bytes", "kept"):
            totals[k] = totals.get(k, 0) + int(out.get(k, 0))
        samples.extend(out.get("failed_samples", []))
        rec = result.output_for_node("reconcile_objects")
        totals["deleted"] = totals.get("deleted", 0) + int(rec.get("deleted", 0))
        if out.get("skip"):
            _fail(f"{name}: {out['skip']}")
        p = rt.store.get_pass(rt.sync_id)
        if p is None or not p.is_open:
            return claim, totals, samples, runs, rt.store.get_sync(name)["status"]
        if out.get("stopped") == "signal" or stop.requested():
            raise Interrupted(stop.signal_number() or signal.SIGINT)
        again = passes.acquire(rt, me, alive=dag.alive, start_new=False)
        if isinstance(again, passes.Busy):
            _fail(f"{name}: {again.message}")
        claim = again


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
