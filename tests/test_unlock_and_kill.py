"""Crash safety with real processes: SIGKILL the run worker anywhere, then carry on.

The worker here is the `mixsync sync` process (it executes the run in process against a real
Dagster instance in a temp DAGSTER_HOME), so a SIGKILL leaves exactly what a dead host leaves:
a run stuck STARTED that holds the sync's lock.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from mixsync_dagster.dagster.runs import WORKER_TAG
from mixsync_dagster.state import StateStore
from tests.harness import objects, write_config

BIN = Path(sys.executable).parent / "mixsync"
REPO = Path(__file__).resolve().parents[1]


def tree(root: Path, n: int) -> None:
    for i in range(n):
        d = root / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_text(f"file {i}\n")


def home(tmp: Path) -> dict[str, str]:
    h = tmp / "dagster_home"
    h.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", h / "dagster.yaml")
    return {**os.environ, "DAGSTER_HOME": str(h)}


def start_sync(cfg: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN), "-c", str(cfg), "sync", "s1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def mixsync(cfg: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN), "-c", str(cfg), *args], env=env, capture_output=True, text=True, timeout=300
    )


def started_run(env: dict[str, str], timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as inst:
        while time.monotonic() < deadline:
            for rec in inst.get_run_records():
                run = rec.dagster_run
                if run.status == DagsterRunStatus.STARTED and WORKER_TAG in run.tags:
                    return run
            time.sleep(0.1)
    raise AssertionError("no run started")


def assert_exactly_once(url: str, n: int) -> None:
    objs = objects(url)
    keys = [o["source_key"] for o in objs]
    assert len(keys) == len(set(keys)), "duplicate objects"
    assert len(keys) == n, f"{n - len(keys)} file(s) lost"
    store = StateStore(url)
    assert store.tracked_counts(store.sync_id("s1")) == {"synced": n}
    row = store.get_sync("s1")
    assert row["total_files_discovered"] == n
    assert row["total_files_synced"] == n


def test_unlock_releases_a_dead_run_and_refuses_a_live_one(tmp_path):
    src = tmp_path / "src"
    tree(src, 20_000)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    # Enough files for the run to be caught working; it is then stopped (SIGSTOP), so it stays
    # alive, mid-run, for as long as `unlock` takes to look at it, however fast the run is.
    cfg = write_config(
        tmp_path / "syncs.yaml", root=src, state_url=url, syncs=[{"name": "s1", "batch_size": 1}]
    )
    env = home(tmp_path)
    proc = start_sync(cfg, env)
    try:
        run = started_run(env)
        os.kill(proc.pid, signal.SIGSTOP)
        alive = mixsync(cfg, env, "unlock", "s1")
        assert alive.returncode == 1 and "is alive" in alive.stderr, alive
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as inst:
        assert inst.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED  # stuck
    out = mixsync(cfg, env, "unlock", "s1")
    assert out.returncode == 0 and f"released run {run.run_id}" in out.stdout, out
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as inst:
        assert inst.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    assert "not locked" in mixsync(cfg, env, "unlock", "s1").stdout
    done = mixsync(cfg, env, "sync", "s1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert_exactly_once(url, 20_000)


def trial_config(work: Path, src: Path) -> tuple[Path, str]:
    work.mkdir()
    url = f"sqlite:///{work / 'state.db'}"
    cfg = write_config(
        work / "syncs.yaml",
        root=src,
        state_url=url,
        syncs=[{"name": "s1", "max_objects_per_run": 500, "batch_size": 50}],
    )
    return cfg, url


@pytest.mark.timeout(900)
def test_sigkill_at_random_points_never_duplicates_or_loses(tmp_path):
    rng = random.Random(20261128)
    src = tmp_path / "src"
    tree(src, 2000)
    # How long one uninterrupted pass takes on this machine, start to exit: kill times are drawn
    # inside that window, so the kills land during start-up, listing, creation and batching.
    cfg, url = trial_config(tmp_path / "reference", src)
    env = home(tmp_path / "reference")
    t0 = time.monotonic()
    assert mixsync(cfg, env, "sync", "s1").returncode == 0
    full = time.monotonic() - t0
    assert_exactly_once(url, 2000)
    killed_mid_run = partial = trials = 0
    # 20 trials, plus more (up to 40) until 15 kills have landed while the pass ran: on a
    # shared machine one pass can take half as long as the reference did.
    for trial in range(40):
        if trial >= 20 and killed_mid_run >= 15:
            break
        trials += 1
        cfg, url = trial_config(tmp_path / f"t{trial}", src)
        env = home(tmp_path / f"t{trial}")
        proc = start_sync(cfg, env)
        time.sleep(rng.uniform(0.1, 0.9) * full)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_mid_run += 1
        proc.wait(timeout=60)
        if 0 < len(objects(url)) < 2000:
            partial += 1  # killed with some files synced and others not
        # Carry on: each new `mixsync sync` sweeps the dead worker's run and resumes.
        for _ in range(3):
            out = mixsync(cfg, env, "sync", "s1")
            if out.returncode == 0:
                break
        assert out.returncode == 0, f"trial {trial}: {out.stdout}{out.stderr}"
        assert_exactly_once(url, 2000)
        StateStore(url).engine.dispose()
    print(f"KILLS mid-run={killed_mid_run}/{trials} partial={partial} full={full:.1f}s")
    assert killed_mid_run >= 15, killed_mid_run  # the kills really interrupted the pass
    assert partial >= 3, partial  # and several landed in the middle of object creation
