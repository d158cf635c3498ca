"""Auto-suspend: each failure counts once, the threshold suspends, a success resets."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner
from dagster import DagsterEventType, build_run_status_sensor_context

from mixsync_dagster.cli import main
from mixsync_dagster.errors import ProviderError
from mixsync_dagster.state import StateStore
from tests.harness import Driver, objects, write_config


def test_listing_failures_suspend_at_threshold_and_resume_clears(tmp_path, state_url, instance):
    src = tmp_path / "src"
    (src / "in").mkdir(parents=True)
    (src / "in" / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "source_path": "in", "max_consecutive_failures": 3}],
    )
    d = Driver(cfg, instance)
    store = StateStore(state_url)
    shutil.rmtree(src / "in")  # a wrong path, an unmounted share, a revoked credential
    for expected in (1, 2):
        with pytest.raises(Exception, match="does not exist"):
            d.tick("s1")
        row = store.get_sync("s1")
        assert (row["consecutive_failures"], row["status"]) == (expected, "FAILED")
        assert "listing failed" in row["last_error"]
    with pytest.raises(Exception, match="does not exist"):
        d.tick("s1")
    row = store.get_sync("s1")
    assert (row["consecutive_failures"], row["status"]) == (3, "SUSPENDED")
    reqs, skip = d.tick("s1")  # suspended: no listing, no failure, no run
    assert reqs == [] and "suspended" in (skip or "")
    assert store.get_sync("s1")["consecutive_failures"] == 3
    (src / "in").mkdir()
    (src / "in" / "a.txt").write_text("a")
    out = CliRunner().invoke(main, ["-c", str(cfg), "resume", "s1"])
    assert out.exit_code == 0 and "ACTIVE" in out.output
    assert store.get_sync("s1")["consecutive_failures"] == 0
    d.run_pass("s1")
    assert [o["source_key"] for o in objects(state_url)] == ["in/a.txt"]
    assert store.get_sync("s1")["status"] == "ACTIVE"


def test_failed_runs_count_once_and_success_resets(tmp_path, src, state_url, instance):
    (src / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "max_consecutive_failures": 5}],
    )
    d = Driver(cfg, instance)
    store = StateStore(state_url)
    job = d.defs.get_job_def("mixsync_s1_job")
    bad = {"ops": {"filter_files": {"config": {"sync": "s1", "work_id": "gone"}}}}
    failed = job.execute_in_process(run_config=bad, instance=instance, raise_on_error=False)
    assert not failed.success
    row = store.get_sync("s1")
    assert row["consecutive_failures"] == 1 and "work list gone" in row["last_error"]
    assert row["status"] == "FAILED"
    # The run-failure sensor sees the same run: it must not count it a second time.
    failure_event = next(
        e
        for e in instance.all_logs(failed.run_id)
        if e.dagster_event and e.dagster_event.event_type == DagsterEventType.RUN_FAILURE
    )
    sensor = d.defs.get_sensor_def("mixsync_run_failures")
    ctx = build_run_status_sensor_context(
        sensor_name="mixsync_run_failures",
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(failed.run_id),
        dagster_event=failure_event.dagster_event,
        resources=dict(d.defs.resources or {}),
    ).for_run_failure()
    sensor(ctx)
    assert store.get_sync("s1")["consecutive_failures"] == 1
    # A successful pass resets the count.
    d.run_pass("s1")
    row = store.get_sync("s1")
    assert (row["consecutive_failures"], row["status"], row["last_error"]) == (0, "ACTIVE", None)


def test_run_failure_sensor_counts_runs_the_hook_never_saw(tmp_path, src, state_url, instance):
    """A worker killed mid-run fires no hook; the run-failure sensor counts it."""
    (src / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "max_consecutive_failures": 1}],
    )
    d = Driver(cfg, instance)
    job = d.defs.get_job_def("mixsync_s1_job")
    run = instance.create_run_for_job(
        job_def=job,
        run_config={"ops": {"filter_files": {"config": {"sync": "s1", "work_id": "w"}}}},
        tags={"mixsync/sync": "s1"},
    )
    instance.report_run_failed(run, "run worker exited unexpectedly (SIGKILL)")
    failure_event = next(
        e
        for e in instance.all_logs(run.run_id)
        if e.dagster_event and e.dagster_event.event_type == DagsterEventType.RUN_FAILURE
    )
    ctx = build_run_status_sensor_context(
        sensor_name="mixsync_run_failures",
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run.run_id),
        dagster_event=failure_event.dagster_event,
        resources=dict(d.defs.resources or {}),
    ).for_run_failure()
    d.defs.get_sensor_def("mixsync_run_failures")(ctx)
    row = StateStore(state_url).get_sync("s1")
    assert row["status"] == "SUSPENDED" and "SIGKILL" in row["last_error"]
    reqs, skip = d.tick("s1")
    assert reqs == [] and "suspended" in (skip or "")


def test_provider_error_is_what_a_listing_failure_raises(tmp_path):
    from mixsync_dagster.providers.local import LocalProvider

    with pytest.raises(ProviderError):
        next(LocalProvider(tmp_path).list_pages("missing", None, 10))
