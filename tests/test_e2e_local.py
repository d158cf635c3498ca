"""End to end on a real Dagster instance: folder → sensor ticks → runs → objects in the bucket."""

from __future__ import annotations

import gc
import hashlib
import json
import os
from pathlib import Path

from mixsync_dagster.dagster import control
from mixsync_dagster.state import StateStore
from tests.harness import Driver, objects, write_config


def make_files(root: Path, n: int, sub: str = "") -> list[Path]:
    out = []
    for i in range(n):
        p = root / sub / f"file_{i:04d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"content {i}\n")
        out.append(p)
    return out


def test_first_pass_creates_objects_second_pass_nothing(tmp_path, src, state_url, instance):
    make_files(src, 7)
    make_files(src, 3, "nested/deeper")
    cfg = write_config(
        tmp_path / "syncs.yaml", root=src, state_url=state_url, syncs=[{"name": "s1"}]
    )
    d = Driver(cfg, instance)
    assert d.run_pass("s1") == 1
    objs = objects(state_url)
    assert sorted(o["source_key"] for o in objs) == sorted(
        [f"file_{i:04d}.txt" for i in range(7)]
        + [f"nested/deeper/file_{i:04d}.txt" for i in range(3)]
    )
    assert {o["status"] for o in objs} == {"PROCESSED"}
    row = StateStore(state_url).get_sync("s1")
    assert row["total_files_discovered"] == 10
    assert row["total_files_synced"] == 10
    assert row["status"] == "ACTIVE"
    assert row["last_sync_at"] is not None and row["next_sync_at"] is not None
    # An unchanged second pass launches no run and creates nothing.
    assert d.run_pass("s1") == 0
    assert len(objects(state_url)) == 10
    assert StateStore(state_url).get_sync("s1")["total_files_synced"] == 10
    # The scan and the run froze the heap for the garbage collector only while they worked.
    assert gc.get_freeze_count() == 0


def test_modified_file_updates_its_object(tmp_path, src, state_url, instance):
    files = make_files(src, 3)
    cfg = write_config(
        tmp_path / "syncs.yaml", root=src, state_url=state_url, syncs=[{"name": "s1"}]
    )
    d = Driver(cfg, instance)
    d.run_pass("s1")
    before = {o["source_key"]: o for o in objects(state_url)}
    files[1].write_text("changed and longer content\n")
    os.utime(files[1], ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert d.run_pass("s1") == 1
    after = {o["source_key"]: o for o in objects(state_url)}
    assert len(after) == 3
    changed = after["file_0001.txt"]
    assert changed["object_id"] == before["file_0001.txt"]["object_id"]
    assert changed["size_bytes"] == len("changed and longer content\n")
    assert changed["sha256"] != before["file_0001.txt"]["sha256"]
    assert after["file_0000.txt"]["updated_at"] == before["file_0000.txt"]["updated_at"]


def test_initial_only_completes_and_then_yields_nothing(tmp_path, src, state_url, instance):
    make_files(src, 4)
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "once", "sync_mode": "one_time"}],
    )
    d = Driver(cfg, instance)
    d.run_pass("once")
    requests, skip = d.tick("once")
    assert StateStore(state_url).get_sync("once")["status"] == "COMPLETED"
    make_files(src, 2, "later")
    requests, skip = d.tick("once")
    assert requests == [] and "COMPLETED" in (skip or "")
    assert len(objects(state_url)) == 4


def test_pass_chunked_and_interrupted_between_chunks_resumes_without_loss(
    tmp_path, src, state_url, instance
):
    make_files(src, 25)
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "max_objects_per_run": 10}],
    )
    d = Driver(cfg, instance)
    reqs, _ = d.tick("s1")
    assert len(reqs) == 1
    d.execute("s1", reqs[0])
    assert len(objects(state_url)) == 10  # the run stopped at max_objects_per_run
    # The next chunk's run request is lost (the daemon died before launching it).
    lost, _ = d.tick("s1")
    assert len(lost) == 1 and lost[0].run_key != reqs[0].run_key
    # A restarted deployment: a new Driver on the same instance carries the same pass on from
    # the committed position.
    d2 = Driver(cfg, instance)
    assert d2.run_pass("s1") == 2
    objs = objects(state_url)
    assert len(objs) == 25
    assert len({o["source_key"] for o in objs}) == 25
    assert StateStore(state_url).get_sync("s1")["total_files_discovered"] == 25
    assert d2.pass_row("s1").pass_no == 1  # all of it in one pass
    # The lost request, launched late, finds its pass over and does nothing.
    assert d.execute("s1", lost[0]).success
    assert len(objects(state_url)) == 25


def test_reevaluated_tick_never_does_work_twice(tmp_path, src, state_url, instance):
    make_files(src, 5)
    cfg = write_config(
        tmp_path / "syncs.yaml", root=src, state_url=state_url, syncs=[{"name": "s1"}]
    )
    d = Driver(cfg, instance)
    d.run_pass("s1")
    make_files(src, 2, "more")
    d.make_due("s1")
    first, _ = d.tick("s1")
    # The daemon evaluates the tick again (it crashed before launching the first request).
    second, _ = d.tick("s1")
    assert len(first) == len(second) == 1
    assert first[0].run_key != second[0].run_key
    assert d.execute("s1", first[0]).success
    assert d.execute("s1", second[0]).success  # its pass is over: nothing to do
    assert len(objects(state_url)) == 7
    assert StateStore(state_url).get_sync("s1")["total_files_synced"] == 7


def test_sensor_waits_while_a_run_of_the_sync_is_in_flight(tmp_path, src, state_url, instance):
    make_files(src, 3)
    cfg = write_config(
        tmp_path / "syncs.yaml", root=src, state_url=state_url, syncs=[{"name": "s1"}]
    )
    d = Driver(cfg, instance)
    job = d.defs.get_job_def("mixsync_s1_job")
    queued = instance.create_run_for_job(job_def=job, tags={"mixsync/sync": "s1"})
    reqs, skip = d.tick("s1")
    assert reqs == [] and queued.run_id in (skip or "")
    instance.report_run_canceled(queued)
    reqs, _ = d.tick("s1")
    assert len(reqs) == 1


def test_pause_resume_and_trigger(tmp_path, src, state_url, instance):
    from click.testing import CliRunner

    from mixsync_dagster.cli import main

    make_files(src, 2)
    cfg = write_config(
        tmp_path / "syncs.yaml", root=src, state_url=state_url, syncs=[{"name": "s1"}]
    )
    d = Driver(cfg, instance)
    runner = CliRunner()
    assert runner.invoke(main, ["-c", str(cfg), "pause", "s1"]).exit_code == 0
    # The switch is the sensor's state in the Dagster instance; the store keeps no PAUSED.
    assert control.view(instance, "s1").status == "STOPPED"
    assert StateStore(state_url).get_sync("s1")["status"] == "PENDING"
    reqs, skip = d.tick("s1")  # evaluated by hand, as the UI's "Test sensor" does
    assert reqs == [] and "paused by `mixsync pause`" in (skip or "")
    out = runner.invoke(main, ["-c", str(cfg), "status", "s1", "--json"])
    (rec,) = json.loads(out.output)["syncs"]
    assert (rec["status"], rec["sensor"]["status"]) == ("PAUSED", "STOPPED")
    assert rec["next_sync_at"] is None and "`mixsync pause`" in rec["paused_by"]
    res = runner.invoke(main, ["-c", str(cfg), "trigger", "s1"])
    assert res.exit_code == 1
    assert "sensor mixsync_s1 is STOPPED" in res.output and "mixsync resume s1" in res.output
    # `sync` is a pass asked for by hand: it runs, says the sync is paused, and the sensor
    # stays stopped.
    res = runner.invoke(main, ["-c", str(cfg), "sync", "s1"])
    assert res.exit_code == 0 and "s1 is paused" in res.output, res.output
    assert len(objects(state_url)) == 2
    assert control.view(instance, "s1").status == "STOPPED"
    assert runner.invoke(main, ["-c", str(cfg), "resume", "s1"]).exit_code == 0
    assert control.view(instance, "s1").status == "RUNNING"
    assert StateStore(state_url).get_sync("s1")["paused_by"] is None
    # Not due for 300 s: a tick does nothing, until a trigger asks for a pass.
    make_files(src, 1, "new")
    reqs, skip = d.tick("s1")
    assert reqs == [] and "next pass in" in (skip or "")
    assert runner.invoke(main, ["-c", str(cfg), "trigger", "s1"]).exit_code == 0
    reqs, _ = d.tick("s1")
    assert len(reqs) == 1
    d.execute("s1", reqs[0])
    assert len(objects(state_url)) == 3
    assert StateStore(state_url).get_sync("s1")["trigger_requested_at"] is None


def test_file_vanishing_between_listing_and_run(tmp_path, src, state_url, instance):
    files = make_files(src, 3)
    cfg = write_config(
        tmp_path / "syncs.yaml", root=src, state_url=state_url, syncs=[{"name": "s1"}]
    )
    d = Driver(cfg, instance)
    reqs, _ = d.tick("s1")
    files[0].unlink()
    result = d.execute("s1", reqs[0])
    assert result.success
    assert sorted(o["source_key"] for o in objects(state_url)) == ["file_0001.txt", "file_0002.txt"]
    row = StateStore(state_url).get_sync("s1")
    assert row["total_files_failed"] == 0 and row["consecutive_failures"] == 0


def test_skip_duplicates_false_resends_without_duplicating(tmp_path, src, state_url, instance):
    make_files(src, 3)
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "skip_duplicates": False}],
    )
    d = Driver(cfg, instance)
    assert d.run_pass("s1") == 1
    ids = {o["object_id"] for o in objects(state_url)}
    assert d.run_pass("s1") == 1  # every listed file is re-sent ...
    assert {o["object_id"] for o in objects(state_url)} == ids  # ... onto the same objects
    assert StateStore(state_url).get_sync("s1")["total_files_synced"] == 6


def test_required_mapping_fails_the_file_not_the_run(tmp_path, src, state_url, instance):
    make_files(src, 2)
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[
            {
                "name": "s1",
                "retry_backoff_seconds": 0,
                "schema_mapping": {
                    "mappings": {
                        "title": {"source": {"type": "metadata", "key": "title"}, "required": True}
                    }
                },
            }
        ],
    )
    d = Driver(cfg, instance)
    for _ in range(3):
        d.run_pass("s1")
    assert objects(state_url) == []
    store = StateStore(state_url)
    counts = store.tracked_counts(store.sync_id("s1"))
    assert counts == {"failed": 2}  # three attempts each, then failed for good
    assert store.get_sync("s1")["total_files_failed"] == 2
    assert d.run_pass("s1") == 0  # no longer retried automatically


def test_batches_and_skip_batch_submission(tmp_path, src, state_url, instance):
    make_files(src, 7)
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[
            {"name": "a", "batch_size": 3, "source_path": ""},
        ],
    )
    d = Driver(cfg, instance)
    d.run_pass("a")
    objs = objects(state_url)
    assert len(objs) == 7 and {o["status"] for o in objs} == {"PROCESSED"}
    from sqlalchemy import select

    from mixsync_dagster.targets.local import batches

    store = StateStore(state_url)
    with store.engine.connect() as c:
        sizes = sorted(len(r.object_ids) for r in c.execute(select(batches)))
    assert sizes == [1, 3, 3]
    cfg2 = write_config(
        tmp_path / "syncs2.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "b", "skip_batch_submission": True}],
        buckets={"media": {"target": "local"}},
    )
    d2 = Driver(cfg2, instance)
    d2.run_pass("b")
    with store.engine.connect() as c:
        assert len(list(c.execute(select(batches)))) == 3  # no new batch for sync b


def test_secrets_never_reach_run_config_tags_or_logs(tmp_path, src, instance, monkeypatch):
    """A state URL read from the environment stays out of everything Dagster stores or shows."""
    make_files(src, 2)
    secret_url = f"sqlite:///{tmp_path / 'hunter2-secret-state.db'}"
    monkeypatch.setenv("MIXSYNC_TEST_STATE_URL", secret_url)
    cfg = write_config(
        tmp_path / "syncs.yaml", root=src, state_url="placeholder", syncs=[{"name": "s1"}]
    )
    cfg.write_text(
        cfg.read_text().replace("url: placeholder", "url: {env: MIXSYNC_TEST_STATE_URL}")
    )
    d = Driver(cfg, instance)
    d.run_pass("s1")
    assert len(objects(secret_url)) == 2
    for record in instance.get_run_records():
        run = record.dagster_run
        blob = repr(run.run_config) + repr(run.tags)
        for event in instance.all_logs(run.run_id):
            blob += repr(event)
        assert "hunter2" not in blob
    assert "hunter2" not in repr(d.defs.resources["mixsync"])
    assert "hunter2" not in (d.cursors["s1"] or "")


def test_crash_between_target_create_and_state_commit_never_duplicates(
    tmp_path, src, state_url, instance
):
    """Reproduce the state a SIGKILL leaves between the bucket's answer and our commit."""
    from mixsync_dagster.core.judge import object_spec
    from mixsync_dagster.core.mapping import Mapped
    from mixsync_dagster.providers.local import LocalProvider

    make_files(src, 4)
    cfg = write_config(
        tmp_path / "syncs.yaml", root=src, state_url=state_url, syncs=[{"name": "s1"}]
    )
    d = Driver(cfg, instance)
    reqs, _ = d.tick("s1")
    rt = d.defs.resources["mixsync"].runtime("s1")
    # The run got as far as the bucket creating the objects ...
    items = next(LocalProvider(src).list_pages("", None, 100)).items
    specs = [object_spec(rt, i, Mapped({}), replaces=None, interrupted=False) for i in items]
    first = rt.target.put_objects(specs)
    assert all(r.created for r in first)
    # ... then died before recording them, and one file was edited before the retry.
    (src / "file_0002.txt").write_text("edited after the crash, before the retry\n")
    result = d.execute("s1", reqs[0])
    assert result.success
    objs = {o["source_key"]: o for o in objects(state_url)}
    assert len(objs) == 4
    assert {o["object_id"] for o in objs.values()} == {r.object_id for r in first}
    edited = objs["file_0002.txt"]
    assert edited["size_bytes"] == len("edited after the crash, before the retry\n")
    assert (
        edited["sha256"]
        == hashlib.sha256(b"edited after the crash, before the retry\n").hexdigest()
    )
    store = StateStore(state_url)
    assert store.tracked_counts(store.sync_id("s1")) == {"synced": 4}


def test_run_launched_by_hand_before_any_tick(tmp_path, src, state_url, instance):
    """A run started from the launchpad with no config runs a whole pass itself."""
    make_files(src, 3)
    cfg = write_config(
        tmp_path / "syncs.yaml", root=src, state_url=state_url, syncs=[{"name": "s1"}]
    )
    d = Driver(cfg, instance)
    job = d.defs.get_job_def("mixsync_s1_job")
    result = job.execute_in_process(instance=instance)
    assert result.success
    assert len(objects(state_url)) == 3
    store = StateStore(state_url)
    assert store.get_sync("s1")["status"] == "ACTIVE"
    assert d.pass_row("s1").state == "done"
    # The sensor's next tick sees the pass done and nothing due.
    reqs, skip = d.tick("s1")
    assert reqs == [] and "next pass in" in (skip or "")


def test_sync_concurrency_works_on_groups_at_once(tmp_path, src, state_url, instance):
    make_files(src, 230)
    make_files(src, 70, "sub")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "batch_size": 7, "sync_concurrency": 4}],
    )
    d = Driver(cfg, instance)
    assert d.run_pass("s1") == 1
    objs = objects(state_url)
    assert len(objs) == len({o["source_key"] for o in objs}) == 300
    assert {o["status"] for o in objs} == {"PROCESSED"}
    store = StateStore(state_url)
    assert store.tracked_counts(store.sync_id("s1")) == {"synced": 300}
    p = d.pass_row("s1")
    assert (p.listed, p.synced) == (300, 300)
    assert store.get_sync("s1")["total_files_synced"] == 300
