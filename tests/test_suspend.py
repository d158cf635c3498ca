"""Auto-suspend: failures count once per pass; transient errors are retried within the pass;
a permanent one (a missing source) counts at once; losing a claim is no failure."""

from __future__ import annotations

import shutil
import socket

import pytest
from click.testing import CliRunner
from dagster import DagsterEventType, build_run_status_sensor_context

from mixsync_dagster.cli import main
from mixsync_dagster.errors import ProviderError
from mixsync_dagster.providers import s3 as s3mod
from mixsync_dagster.state import StateStore
from tests.harness import Driver, objects, write_config


def test_missing_source_counts_once_per_pass_and_suspends_at_threshold(
    tmp_path, state_url, instance
):
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
    shutil.rmtree(src / "in")  # a wrong path, an unmounted share
    for expected in (1, 2):
        with pytest.raises(Exception, match="does not exist"):
            d.tick("s1")
        row = store.get_sync("s1")
        assert (row["consecutive_failures"], row["status"]) == (expected, "FAILED")
        assert "does not exist" in row["last_error"]
        assert d.pass_row("s1").state == "given_up"  # a missing source is not retried
        d.make_due("s1")
    with pytest.raises(Exception, match="does not exist"):
        d.tick("s1")
    row = store.get_sync("s1")
    assert (row["consecutive_failures"], row["status"]) == (3, "SUSPENDED")
    d.make_due("s1")
    reqs, skip = d.tick("s1")  # suspended: no listing, no failure, no run
    assert reqs == [] and "SUSPENDED" in (skip or "")
    assert store.get_sync("s1")["consecutive_failures"] == 3
    (src / "in").mkdir()
    (src / "in" / "a.txt").write_text("a")
    out = CliRunner().invoke(main, ["-c", str(cfg), "resume", "s1"])
    assert out.exit_code == 0 and "ACTIVE" in out.output
    assert store.get_sync("s1")["consecutive_failures"] == 0
    d.run_pass("s1")
    assert [o["source_key"] for o in objects(state_url)] == ["in/a.txt"]
    assert store.get_sync("s1")["status"] == "ACTIVE"


def test_cli_sync_on_a_missing_source_counts_too(tmp_path, state_url, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    src = tmp_path / "src"
    src.mkdir()
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "source_path": "missing"}],
    )
    out = CliRunner().invoke(main, ["-c", str(cfg), "sync", "s1"])
    assert out.exit_code == 1 and "does not exist" in out.output
    row = StateStore(state_url).get_sync("s1")
    assert row["consecutive_failures"] == 1 and "does not exist" in row["last_error"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_transient_outage_within_one_pass_never_suspends(
    tmp_path, state_url, instance, monkeypatch
):
    """Five failing ticks of one outage are one pass retried, not five failed passes."""
    monkeypatch.setattr(s3mod, "MAX_ATTEMPTS", 1)  # fail each tick fast
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "test")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        state_url=state_url,
        connection={
            "provider": "s3",
            "region": "us-east-1",
            "endpoint_url": f"http://127.0.0.1:{_closed_port()}",
        },
        syncs=[{"name": "s1", "source_path": "media/in/", "max_consecutive_failures": 5}],
    )
    d = Driver(cfg, instance)
    store = StateStore(state_url)
    for attempt in range(1, 5):
        with pytest.raises(Exception, match="cannot reach"):
            d.tick("s1")
        p = d.pass_row("s1")
        assert p.is_open and p.failures == attempt and p.retry_at is not None
        reqs, skip = d.tick("s1")  # inside the backoff: waits, lists nothing
        assert reqs == [] and "next attempt in" in (skip or "")
        row = store.get_sync("s1")
        assert row["consecutive_failures"] == 0 and row["status"] == "PENDING"
        assert "cannot reach" in row["last_error"]
        d.make_due("s1")  # let the backoff pass
    with pytest.raises(Exception, match="cannot reach"):
        d.tick("s1")
    # The fifth failure gives the pass up: one failed pass, far from the threshold of 5.
    row = store.get_sync("s1")
    assert (row["consecutive_failures"], row["status"]) == (1, "FAILED")
    assert d.pass_row("s1").state == "given_up"


def test_failed_run_counts_once_and_success_resets(tmp_path, src, state_url, instance):
    (src / "in").mkdir()
    (src / "in" / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "source_path": "in", "max_consecutive_failures": 5}],
    )
    d = Driver(cfg, instance)
    store = StateStore(state_url)
    reqs, _ = d.tick("s1")
    (src / "in").rename(src / "elsewhere")  # gone between the tick and the run
    failed = d.execute("s1", reqs[0], raise_on_error=False)
    assert not failed.success
    row = store.get_sync("s1")
    assert row["consecutive_failures"] == 1 and "does not exist" in row["last_error"]
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
    (src / "elsewhere").rename(src / "in")
    d.run_pass("s1")
    row = store.get_sync("s1")
    assert (row["consecutive_failures"], row["status"], row["last_error"]) == (0, "ACTIVE", None)


def test_killed_runs_are_retried_within_the_pass_then_count_once(
    tmp_path, src, state_url, instance
):
    """A worker killed mid-run fires no hook; the run-failure sensor counts it as one failed
    attempt of its pass (transient): the pass is retried, and counts only when given up."""
    (src / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[{"name": "s1", "max_consecutive_failures": 1}],
    )
    d = Driver(cfg, instance)
    job = d.defs.get_job_def("mixsync_s1_job")
    sensor = d.defs.get_sensor_def("mixsync_run_failures")
    store = StateStore(state_url)
    for attempt in range(1, 6):
        d.make_due("s1")
        (req,) = d.tick("s1")[0]
        run = instance.create_run_for_job(job_def=job, run_config=req.run_config, tags=req.tags)
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
        sensor(ctx)
        sensor(ctx)  # reported twice (hook and sensor, or a re-evaluated tick): counted once
        assert d.pass_row("s1").failures == attempt
        row = store.get_sync("s1")
        if attempt < 5:
            assert row["status"] == "PENDING" and row["consecutive_failures"] == 0
    row = store.get_sync("s1")
    assert row["status"] == "SUSPENDED" and "SIGKILL" in row["last_error"]
    reqs, skip = d.tick("s1")
    assert reqs == [] and "SUSPENDED" in (skip or "")


def test_a_run_that_lost_its_claim_is_no_failure(tmp_path, src, state_url, instance):
    (src / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "syncs.yaml", root=src, state_url=state_url, syncs=[{"name": "s1"}]
    )
    d = Driver(cfg, instance)
    stale, _ = d.tick("s1")
    fresh, _ = d.tick("s1")  # requested again before the first ran: the first is now stale
    assert d.execute("s1", fresh[0]).success
    late = d.execute("s1", stale[0])  # superseded: does nothing, fails nothing
    assert late.success
    assert "no longer this run's" in (late.output_for_node("sync_files")["skip"] or "")
    row = StateStore(state_url).get_sync("s1")
    assert row["consecutive_failures"] == 0 and row["status"] == "ACTIVE"
    assert len(objects(state_url)) == 1


def test_provider_error_is_what_a_listing_failure_raises(tmp_path):
    from mixsync_dagster.providers.local import LocalProvider

    with pytest.raises(ProviderError):
        next(LocalProvider(tmp_path).list_pages("missing", None, 10))
