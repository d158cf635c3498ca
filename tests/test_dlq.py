"""The dead-letter queue: three attempts with backoff, then `failed`; `mixsync dlq` manages it."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mixsync_dagster.cli import main
from mixsync_dagster.core.preview import PreviewTotals, preview
from mixsync_dagster.state import StateStore
from tests.harness import Driver, objects, write_config

REQUIRED_TITLE = {
    "mappings": {"title": {"source": {"type": "metadata", "key": "title"}, "required": True}}
}


def sync(**extra):
    return {"name": "s1", "schema_mapping": REQUIRED_TITLE, **extra}


def dlq_json(cfg) -> dict:
    out = CliRunner().invoke(main, ["-c", str(cfg), "dlq", "list", "s1", "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def test_always_failing_file_is_failed_after_exactly_three_attempts(
    tmp_path, src, state_url, instance
):
    (src / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[sync(retry_backoff_seconds=0)],
    )
    d = Driver(cfg, instance)
    attempts = []
    for _ in range(5):
        d.run_pass("s1")
        (row,) = dlq_json(cfg)["files"]
        attempts.append((row["attempts"], row["status"]))
    assert attempts == [(1, "retry"), (2, "retry"), (3, "failed"), (3, "failed"), (3, "failed")]
    assert "title" in row["last_error"] and "required" in row["last_error"]
    store = StateStore(state_url)
    assert store.get_sync("s1")["total_files_failed"] == 1
    assert store.get_sync("s1")["consecutive_failures"] == 0  # a file failure is not a run failure
    status = CliRunner().invoke(main, ["-c", str(cfg), "status", "s1", "--json"])
    assert json.loads(status.output)["syncs"][0]["dlq_size"] == 1


def test_backoff_delays_the_retry(tmp_path, src, state_url, instance):
    (src / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[sync(retry_backoff_seconds=3600)],
    )
    d = Driver(cfg, instance)
    assert d.run_pass("s1") == 1
    assert d.run_pass("s1") == 0  # not due for an hour: no run
    (row,) = dlq_json(cfg)["files"]
    assert row["attempts"] == 1 and row["next_attempt_at"].endswith("+00:00")
    text = CliRunner().invoke(main, ["-c", str(cfg), "dlq", "list", "s1"]).output
    assert f"next attempt {row['next_attempt_at']}" in text  # the text names the zone too
    rt = d.defs.resources["mixsync"].runtime("s1")
    (p,) = list(preview(rt, PreviewTotals()))
    assert p.verdict == "retry_later" and "next attempt at" in (p.reason or "")


def test_fails_twice_then_succeeds_after_the_mapping_is_fixed(tmp_path, src, state_url, instance):
    (src / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[sync(retry_backoff_seconds=0)],
    )
    d = Driver(cfg, instance)
    d.run_pass("s1")
    d.run_pass("s1")
    assert dlq_json(cfg)["files"][0]["attempts"] == 2
    write_config(
        cfg, root=src, state_url=state_url, syncs=[{"name": "s1", "retry_backoff_seconds": 0}]
    )
    d.reload()
    assert d.run_pass("s1") == 1
    assert [o["source_key"] for o in objects(state_url)] == ["a.txt"]
    assert dlq_json(cfg)["files"] == []
    assert StateStore(state_url).get_sync("s1")["total_files_failed"] == 0


def test_dlq_retry_requeues_failed_files(tmp_path, src, state_url, instance):
    for name in ("a.txt", "b.txt"):
        (src / name).write_text(name)
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state_url,
        syncs=[sync(retry_backoff_seconds=0)],
    )
    d = Driver(cfg, instance)
    for _ in range(3):
        d.run_pass("s1")
    assert {f["status"] for f in dlq_json(cfg)["files"]} == {"failed"}
    assert d.run_pass("s1") == 0
    runner = CliRunner()
    bad = runner.invoke(main, ["-c", str(cfg), "dlq", "retry", "s1"])
    assert bad.exit_code == 2 and "--all" in bad.output
    out = runner.invoke(main, ["-c", str(cfg), "dlq", "retry", "s1", "a.txt"])
    assert out.exit_code == 0 and "1 file(s) requeued" in out.output
    assert {f["source_key"]: (f["status"], f["attempts"]) for f in dlq_json(cfg)["files"]} == {
        "a.txt": ("retry", 0),
        "b.txt": ("failed", 3),
    }
    # Fix the mapping; the requeued file syncs, the other stays failed until requeued too.
    write_config(cfg, root=src, state_url=state_url, syncs=[{"name": "s1"}])
    d.reload()
    d.run_pass("s1")
    assert [o["source_key"] for o in objects(state_url)] == ["a.txt"]
    out = runner.invoke(main, ["-c", str(cfg), "dlq", "retry", "s1", "--all"])
    assert "1 file(s) requeued" in out.output
    d.run_pass("s1")
    assert sorted(o["source_key"] for o in objects(state_url)) == ["a.txt", "b.txt"]
    missing = runner.invoke(main, ["-c", str(cfg), "dlq", "retry", "s1", "nope.txt"])
    assert missing.exit_code == 1 and "not in the dead-letter queue" in missing.output
