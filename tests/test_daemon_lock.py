"""The per-sync lock, proved with the real daemon and queued run coordinator.

A temporary DAGSTER_HOME gets the repo's own dagster.yaml (the `mixsync/sync` tag limit: one
run per sync value). A real `dagster-webserver` and `dagster-daemon` serve the code location.
Three runs of `alpha` and two of `beta` are queued through GraphQL `launchRun`; the daemon
dequeues them. Every run must succeed, the runs of one sync must never hold the lock at the
same time, and the two syncs must run side by side (the limit is per sync, not global).

The sensors are stopped through GraphQL before the daemon starts, so the only runs are ours.
All five runs are queued before the daemon starts, so its first dequeue sees the whole queue.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance
from dagster_graphql import DagsterGraphQLClient

from mixsync_dagster.dagster.runs import SYNC_TAG
from mixsync_dagster.state import StateStore
from tests.dagster_server import REPO, DagsterServers, prepare_home
from tests.harness import objects, write_config

LOCATION = "mixsync"
RUNS_PER_SYNC = {"alpha": 3, "beta": 2}
FILES_PER_RUN = 12_000
"""Each run handles this many files (max_objects_per_run): a few seconds on 2 cores, longer than
the ~1.5 s between two launches of one dequeue pass, so overlap shows without any sleep."""
ACTIVE = {"STARTING", "STARTED", "CANCELING"}
DONE = {"SUCCESS", "FAILURE", "CANCELED"}


def make_files(root: Path) -> None:
    """FILES_PER_RUN files per run, under <root>/<sync>/w<i>/."""
    for sync, n_runs in RUNS_PER_SYNC.items():
        for i in range(n_runs):
            folder = root / sync / f"w{i}"
            folder.mkdir(parents=True)
            for j in range(FILES_PER_RUN):
                (folder / f"file_{j:05d}.txt").write_text(f"{sync} run {i} file {j}\n")


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.mark.daemon
@pytest.mark.timeout(300)
def test_runs_of_one_sync_never_overlap_other_syncs_run_alongside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = time.monotonic()
    root = tmp_path / "src"
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    config = write_config(
        tmp_path / "syncs.yaml",
        root=root,
        state_url=state_url,
        syncs=[
            {
                "name": sync,
                "source_path": sync,
                "polling_interval_seconds": 900,
                "max_objects_per_run": FILES_PER_RUN,
            }
            for sync in RUNS_PER_SYNC
        ],
    )
    make_files(root)

    home = tmp_path / "dagster_home"
    env = {**os.environ, "MIXSYNC_CONFIG": str(config)}
    prepare_home(home, REPO / "dagster.yaml", env)
    servers = DagsterServers(
        home=home, workspace=REPO / "workspace.yaml", log_dir=tmp_path / "logs", env=env
    )
    try:
        servers.start_webserver()
        servers.wait_location_loaded(LOCATION)

        # The sensors start RUNNING by default and would plan passes over the same folders;
        # a stop stored in the instance wins over the code default.
        for name, state in servers.sensors(LOCATION).items():
            assert servers.stop_sensor(state["id"]) == "STOPPED", name
        assert {s["status"] for s in servers.sensors(LOCATION).values()} == {"STOPPED"}

        client = DagsterGraphQLClient("127.0.0.1", port_number=servers.port, timeout=60)
        sync_of: dict[str, str] = {}
        order = ["alpha", "beta", "alpha", "beta", "alpha"]
        for sync in order:
            # Launched by hand (no config): each run continues its sync's open pass, or
            # starts one, and stops after max_objects_per_run files.
            run_id = client.submit_job_execution(
                f"mixsync_{sync}_job",
                repository_location_name=LOCATION,
                repository_name="__repository__",
                run_config={},
            )
            sync_of[run_id] = sync
        queued = {r["runId"]: r["status"] for r in servers.runs()}
        assert queued == dict.fromkeys(sync_of, "QUEUED"), queued

        servers.start_daemon()
        daemons = servers.wait_daemons_healthy()
        assert "QUEUED_RUN_COORDINATOR" in daemons, daemons

        # Watch the queue until every run has finished; in no snapshot may one sync have two
        # runs past the queue.
        snapshots: list[dict[str, str]] = []
        deadline = time.monotonic() + 180
        while True:
            servers.check_alive()
            runs = {r["runId"]: r for r in servers.runs()}
            snap = {rid: r["status"] for rid, r in runs.items()}
            snapshots.append(snap)
            for sync in RUNS_PER_SYNC:
                active = [
                    rid for rid, st in snap.items() if sync_of.get(rid) == sync and st in ACTIVE
                ]
                assert len(active) <= 1, f"two {sync} runs active at once: {snap}"
            if all(st in DONE for st in snap.values()) and len(snap) >= len(sync_of):
                break
            assert time.monotonic() < deadline, (
                f"runs did not finish: {snap}\n{servers.logs_tail()}"
            )
            time.sleep(0.5)

        # Only our runs exist (the stopped sensors launched nothing), all succeeded, and each
        # carries its sync's lock tag from the job definition.
        assert set(runs) == set(sync_of), runs
        for rid, r in runs.items():
            assert r["status"] == "SUCCESS", (r, servers.logs_tail())
            tags = {t["key"]: t["value"] for t in r["tags"]}
            assert tags.get(SYNC_TAG) == sync_of[rid], tags

        # From the instance: when each run left the queue (RUN_STARTING, written by the
        # daemon at dequeue), started executing (RUN_START) and ended (RUN_SUCCESS).
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        with DagsterInstance.get() as instance:
            held: dict[str, tuple[float, float]] = {}
            executing: dict[str, tuple[float, float]] = {}
            for rid in sync_of:
                record = instance.get_run_record_by_id(rid)
                assert record is not None and record.start_time and record.end_time
                starting = instance.get_records_for_run(
                    rid, of_type=DagsterEventType.RUN_STARTING
                ).records
                assert len(starting) == 1, starting
                dequeued = starting[0].timestamp
                assert dequeued <= record.start_time < record.end_time
                held[rid] = (dequeued, record.end_time)
                executing[rid] = (record.start_time, record.end_time)
    finally:
        servers.stop()

    report = "\n".join(
        f"{sync_of[rid]:5} {rid[:8]} dequeued {held[rid][0] - t_ref:6.2f} "
        f"start {executing[rid][0] - t_ref:6.2f} end {executing[rid][1] - t_ref:6.2f}"
        for t_ref in [min(h[0] for h in held.values())]
        for rid in sorted(held, key=lambda r: held[r][0])
    )

    # The lock: a run of a sync leaves the queue only after the previous one has ended.
    for sync in RUNS_PER_SYNC:
        mine = sorted((held[rid] for rid in sync_of if sync_of[rid] == sync), key=lambda h: h[0])
        assert len(mine) == RUNS_PER_SYNC[sync]
        for prev, nxt in itertools.pairwise(mine):
            assert nxt[0] >= prev[1], f"{sync} runs overlap:\n{report}"

    # Per sync, not global: alpha and beta held their slots at the same time, and their
    # steps actually executed side by side.
    alpha = [rid for rid in sync_of if sync_of[rid] == "alpha"]
    beta = [rid for rid in sync_of if sync_of[rid] == "beta"]
    assert any(overlaps(held[a], held[b]) for a in alpha for b in beta), report
    assert any(
        any(sync_of.get(rid) == "alpha" and st in ACTIVE for rid, st in snap.items())
        and any(sync_of.get(rid) == "beta" and st in ACTIVE for rid, st in snap.items())
        for snap in snapshots
    ), f"no queue snapshot showed alpha and beta past the queue together:\n{report}"
    assert any(overlaps(executing[a], executing[b]) for a in alpha for b in beta), report

    # The runs did their work: one object per file, each sync's pass finished by its last run.
    assert len(objects(state_url)) == FILES_PER_RUN * sum(RUNS_PER_SYNC.values())
    store = StateStore(state_url)
    for sync in RUNS_PER_SYNC:
        p = store.get_pass(store.sync_id(sync))
        assert p is not None and p.state == "done" and p.pass_no == 1, p

    print(f"\n{report}\ntotal {time.monotonic() - t0:.1f} s, {len(snapshots)} queue snapshots")
