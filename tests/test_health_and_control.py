"""One control surface, in process: the sensor's state in the Dagster instance is the sync's
running/paused switch, and the sync's health is recorded as asset checks and one observation
per pass. (The same through a real webserver's GraphQL: tests/test_ui_control.py.)"""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from dagster import AssetCheckKey, AssetKey, DagsterInstance
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from mixsync_dagster.cli import main
from mixsync_dagster.config import load_config
from mixsync_dagster.core.health import CHECK_NAMES
from mixsync_dagster.core.passes import is_due, tick_interval
from mixsync_dagster.core.runtime import open_runtime
from mixsync_dagster.dagster import control
from mixsync_dagster.state import PassRow, StateStore
from mixsync_dagster.state.migrate import upgrade
from mixsync_dagster.state.schema import _make_engine
from tests.harness import Driver, write_config

REQUIRED_TITLE = {
    "mappings": {"title": {"source": {"type": "metadata", "key": "title"}, "required": True}}
}


def latest_checks(instance: DagsterInstance, sync: str) -> dict[str, bool]:
    """The latest recorded result of each of the sync's checks, as the asset page shows it."""
    keys = [AssetCheckKey(AssetKey(["mixsync", sync]), name) for name in CHECK_NAMES]
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    return {
        key.name: rec.status is AssetCheckExecutionRecordStatus.SUCCEEDED
        for key, rec in records.items()
    }


def status_json(cfg: Path, sync: str) -> dict:
    out = CliRunner().invoke(main, ["-c", str(cfg), "status", sync, "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)["syncs"][0]


def test_suspension_stops_the_sensor_fails_its_check_and_a_start_resumes(tmp_path, instance):
    src = tmp_path / "src"
    (src / "in").mkdir(parents=True)
    (src / "in" / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        syncs=[{"name": "s1", "source_path": "in", "max_consecutive_failures": 1}],
    )
    d = Driver(cfg, instance)
    d.run_pass("s1")
    assert latest_checks(instance, "s1") == dict.fromkeys(CHECK_NAMES, True)

    shutil.rmtree(src / "in")  # the share is gone: the listing fails, the pass is given up
    d.make_due("s1")
    with pytest.raises(Exception, match="does not exist"):
        d.tick("s1")
    # Suspended at the first given-up pass (threshold 1): the sensor is stopped too, so the
    # UI shows what `status` says, and the checks say why.
    assert control.view(instance, "s1").status == "STOPPED"
    checks = latest_checks(instance, "s1")
    assert not checks["not_suspended"] and not checks["last_listing_succeeded"]
    assert checks["dlq_empty"] and checks["no_failed_batches"]
    rec = status_json(cfg, "s1")
    assert (rec["status"], rec["sensor"]["status"]) == ("SUSPENDED", "STOPPED")
    assert "does not exist" in rec["last_listing_error"]
    reqs, skip = d.tick("s1")  # a hand-run evaluation of the stopped sensor
    assert reqs == [] and "SUSPENDED" in (skip or "") and "mixsync resume s1" in (skip or "")
    res = CliRunner().invoke(main, ["-c", str(cfg), "trigger", "s1"])
    assert res.exit_code == 1 and "SUSPENDED" in res.output

    # The UI's toggle: start the sensor the way its startSensor mutation does. The next tick
    # treats a start after the suspension stopped it as `mixsync resume`.
    (src / "in").mkdir()
    (src / "in" / "a.txt").write_text("a")
    with control.remote_sensor(instance, str(cfg), "s1") as remote:
        instance.start_sensor(remote)
    d.run_pass("s1")
    row = StateStore(f"sqlite:///{tmp_path / 'state.db'}").get_sync("s1")
    assert (row["status"], row["consecutive_failures"], row["paused_by"]) == ("ACTIVE", 0, None)
    assert latest_checks(instance, "s1") == dict.fromkeys(CHECK_NAMES, True)
    assert status_json(cfg, "s1")["checks"] == dict.fromkeys(CHECK_NAMES, True)


def test_dead_letter_queue_fails_its_check_and_every_pass_leaves_one_observation(
    tmp_path, src, state_url, instance
):
    (src / "a.txt").write_text("a")
    (src / "b.txt").write_text("b")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "schema_mapping": REQUIRED_TITLE}],
    )
    d = Driver(cfg, instance)
    assert d.run_pass("s1") == 1  # pass 1 ends in a run: both files fail (no title)
    checks = latest_checks(instance, "s1")
    assert not checks["dlq_empty"] and checks["not_suspended"]
    assert d.run_pass("s1") == 0  # pass 2: nothing due for a retry; the tick finishes it

    def passes_seen() -> list[int]:
        records = instance.fetch_observations(AssetKey(["mixsync", "s1"]), limit=100).records
        return sorted(
            int(r.asset_observation.metadata["pass_no"].value)  # type: ignore[union-attr]
            for r in records
        )

    for _ in range(2):  # passes 3 and 4, in the CLI, with nothing to run
        d.make_due("s1")
        out = CliRunner().invoke(main, ["-c", str(cfg), "sync", "s1"])
        assert out.exit_code == 0, out.output
    # Such a pass does not load Dagster; the sync's next tick records both, once.
    assert passes_seen() == [1, 2]
    d.tick("s1")
    assert passes_seen() == [1, 2, 3, 4]
    d.tick("s1")
    assert passes_seen() == [1, 2, 3, 4]  # one observation per pass, whoever finished it
    observations = instance.fetch_observations(AssetKey(["mixsync", "s1"]), limit=100).records
    last = max(observations, key=lambda r: r.storage_id).asset_observation
    assert last is not None and last.metadata["dlq_size"].value == 2
    assert not latest_checks(instance, "s1")["dlq_empty"]
    assert status_json(cfg, "s1")["checks"]["dlq_empty"] is False


def test_the_ui_stop_and_start_are_pause_and_resume(tmp_path, src, state_url, instance):
    (src / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "syncs.yaml", root=src, state_url=state_url, syncs=[{"name": "s1"}]
    )
    d = Driver(cfg, instance)
    d.run_pass("s1")
    # Stop it as the UI's stopSensor mutation does: `status` says PAUSED and who stopped it.
    with control.remote_sensor(instance, str(cfg), "s1") as remote:
        instance.stop_sensor(remote.get_remote_origin_id(), remote.selector_id, remote)
    rec = status_json(cfg, "s1")
    assert (rec["status"], rec["sensor"]["status"], rec["next_sync_at"]) == (
        "PAUSED",
        "STOPPED",
        None,
    )
    assert "stopped in the Dagster UI" in rec["paused_by"]
    # A pass asked for by hand still runs (as Dagster launches a job by hand whatever its
    # sensor's state), says the sync is paused, and leaves the sensor stopped.
    (src / "b.txt").write_text("b")
    res = CliRunner().invoke(main, ["-c", str(cfg), "sync", "s1"])
    assert res.exit_code == 0, res.output
    assert "s1 is paused" in res.output and "synced 1" in res.output
    assert status_json(cfg, "s1")["sensor"]["status"] == "STOPPED"
    res = CliRunner().invoke(main, ["-c", str(cfg), "resume", "s1"])
    assert res.exit_code == 0 and "RUNNING" in res.output
    assert status_json(cfg, "s1")["status"] == "ACTIVE"
    # Paused by the CLI, started in the UI: running again, and the tick forgets our note.
    assert CliRunner().invoke(main, ["-c", str(cfg), "pause", "s1"]).exit_code == 0
    assert "`mixsync pause`" in status_json(cfg, "s1")["paused_by"]
    with control.remote_sensor(instance, str(cfg), "s1") as remote:
        instance.start_sensor(remote)
    assert status_json(cfg, "s1")["status"] == "ACTIVE"
    d.tick("s1")
    assert StateStore(state_url).get_sync("s1")["paused_by"] is None
    res = CliRunner().invoke(main, ["-c", str(cfg), "resume", "s1"])
    assert "not paused" in res.output


def test_a_pause_from_before_is_carried_over_to_the_sensor(tmp_path, src, instance):
    """A database whose sync was PAUSED in the store (revision 0002) keeps the pause: the
    sensor stops itself at its next tick, and the store no longer says PAUSED."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    eng = _make_engine(url)
    upgrade(eng, "0002")
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with eng.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO mixsync_syncs (name, status, total_files_discovered, "
                "total_files_synced, total_files_failed, total_bytes_synced, "
                "consecutive_failures, passes_completed, pass_seq, updated_at) "
                "VALUES ('s1', 'PAUSED', 0, 0, 0, 0, 0, 2, 2, :t)"
            ),
            {"t": now},
        )
    eng.dispose()
    (src / "a.txt").write_text("a")
    cfg = write_config(tmp_path / "syncs.yaml", root=src, state_url=url, syncs=[{"name": "s1"}])
    d = Driver(cfg, instance)
    row = StateStore(url).get_sync("s1")  # migrated on first use
    assert (row["status"], row["pause_pending"]) == ("ACTIVE", True)
    assert status_json(cfg, "s1")["status"] == "PAUSED"  # pending: nothing may start it
    reqs, skip = d.tick("s1")
    assert reqs == [] and "this sensor stopped itself" in (skip or "")
    assert control.view(instance, "s1").status == "STOPPED"
    rec = status_json(cfg, "s1")
    assert (rec["status"], rec["sensor"]["status"]) == ("PAUSED", "STOPPED")
    assert "before the sensor held the pause" in rec["paused_by"]
    assert CliRunner().invoke(main, ["-c", str(cfg), "resume", "s1"]).exit_code == 0
    assert d.run_pass("s1") == 1


@pytest.mark.parametrize("polling", [30, 45, 300])
def test_a_pass_is_never_late_by_a_whole_tick(tmp_path, src, polling):
    """The daemon ticks every `tick_interval` s (a little late at times); a tick reads the
    clock a few seconds in, and its pass row is written a moment later, so the tick one
    interval on comes a moment *before* the pass is due. Such a tick must start the pass: no
    tick within half a tick of the due time skips it, so no pass waits a whole extra tick."""
    cfg_path = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        syncs=[{"name": "s1", "polling_interval_seconds": polling}],
    )
    rt = open_runtime(load_config(cfg_path), "s1")
    tick = tick_interval(polling)
    rng = random.Random(polling)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    clock = 0.0
    start: float | None = None
    passes = 0
    for _ in range(1000):
        clock += tick + rng.uniform(0.0, 1.5)  # the daemon's next tick, sometimes late
        read_at = clock + rng.uniform(0.0, 5.0)  # the tick sweeps runs, then reads the time
        p = None if start is None else _done_pass(t0 + timedelta(seconds=start))
        due, _ = is_due(rt, p, t0 + timedelta(seconds=read_at))
        due_at = None if start is None else start + polling
        if not due:
            assert due_at is not None and read_at < due_at - tick / 2, (read_at, due_at)
            continue
        if due_at is not None:
            assert read_at >= due_at - tick / 2  # never more than half a tick early
            assert read_at - due_at < tick  # and never a whole tick late
        start = read_at + rng.uniform(0.0, 0.5)  # the pass row is written
        passes += 1
    assert passes >= 1000 * tick / (polling + tick)


def _done_pass(started_at: datetime) -> PassRow:
    return PassRow(
        sync_id=1,
        pass_no=1,
        pass_uid="x",
        state="done",
        token=1,
        owner=None,
        claim_expires_at=None,
        started_at=started_at,
        finished_at=started_at,
        position=None,
        listing_done=True,
        stamps_seen=False,
        runs_requested=0,
        failures=0,
        retry_at=None,
        last_error=None,
        listed=0,
        synced=0,
        excluded=0,
        failed=0,
        deleted=0,
        bytes=0,
    )


def test_observe_records_the_metrics_and_checks_on_demand(tmp_path, src, state_url, instance):
    """ "Observe" on the asset page runs the sync's health job: metrics and the five checks,
    read from the state store, without touching a pass."""
    (src / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "schema_mapping": REQUIRED_TITLE}],
    )
    d = Driver(cfg, instance)
    d.run_pass("s1")
    before = d.pass_row("s1")
    job = d.defs.resolve_job_def("mixsync_s1_health")
    result = job.execute_in_process(instance=instance)
    assert result.success
    (obs,) = [
        e.event_specific_data.asset_observation  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert obs.metadata["dlq_size"].value == 1 and obs.metadata["pass_no"].value == 1
    evaluations = {
        e.event_specific_data.check_name: e.event_specific_data.passed  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert evaluations == dict.fromkeys(CHECK_NAMES, True) | {"dlq_empty": False}
    assert d.pass_row("s1") == before  # read only
