"""Two processes, one PostgreSQL state store, the same sync: one owns the pass, nothing twice."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from mixsync_dagster.state import StateStore
from tests.harness import objects, write_config
from tests.test_unlock_and_kill import BIN, assert_exactly_once, home, tree


@pytest.mark.parametrize("state_url", ["postgres"], indirect=True)
def test_two_processes_sharing_postgres_never_sync_twice(tmp_path: Path, state_url: str):
    src = tmp_path / "src"
    tree(src, 2000)
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "max_objects_per_run": 500}],
    )
    env = home(tmp_path)
    # One process initialises the Dagster instance before two open it.
    subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "instance", "migrate"],
        env=env,
        check=True,
        capture_output=True,
    )
    procs = [
        subprocess.Popen(
            [str(BIN), "-c", str(cfg), "sync", "s1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    codes = [p.returncode for p in procs]
    # At least one finished; a loser refused because the other owns the pass (exit 1, saying
    # so) or found the work already done. Nobody crashed for another reason.
    assert 0 in codes, outputs
    for code, out in zip(codes, outputs, strict=True):
        if code != 0:
            assert any(
                why in out
                for why in (
                    "is in progress, owned by `mixsync sync`",
                    "in flight",
                    "another process started a pass first",
                    "another process claimed the pass first",
                )
            ), out
    # Finish whatever a stopped process left, then: every file exactly once, exact metrics.
    done = subprocess.run(
        [str(BIN), "-c", str(cfg), "sync", "s1"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert_exactly_once(state_url, 2000)
    store = StateStore(state_url)
    p = store.get_pass(store.sync_id("s1"))
    assert p is not None and p.state == "done" and p.owner is None
    # Runs work between sync_files starting and finish_pass ending; those windows never
    # overlap (one owner carries the pass on, one run at a time).
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as inst:
        windows = []
        for rec in inst.get_run_records():
            if rec.dagster_run.status != DagsterRunStatus.SUCCESS:
                continue
            events = [
                e
                for e in inst.all_logs(rec.dagster_run.run_id)
                if e.dagster_event
                and e.dagster_event.event_type
                in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS)
            ]
            start = min(e.timestamp for e in events if e.dagster_event.step_key == "sync_files")
            end = max(e.timestamp for e in events if e.dagster_event.step_key == "finish_pass")
            windows.append((start, end))
    windows.sort()
    assert len(windows) >= 4  # 2,000 files in runs of at most 500
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert start >= end, windows
    assert len(objects(state_url)) == 2000
