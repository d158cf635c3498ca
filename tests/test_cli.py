"""The `mixsync` console script, run as a user runs it: a subprocess, real files, real stores."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import write_config

BIN = Path(sys.executable).parent / "mixsync"
REPO = Path(__file__).resolve().parents[1]


def mixsync(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [str(BIN), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def setup(tmp_path: Path, src: Path):
    for i in range(3):
        (src / f"clip_{i}.mp4").write_bytes(b"x" * (10 + i))
    (src / "notes").mkdir()
    (src / "notes" / "a b.txt").write_text("hello")
    state = f"sqlite:///{tmp_path / 'state.db'}"
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state,
        syncs=[
            {
                "name": "clips",
                "schema_mapping": {"field_mappings": {"file_name": {"source": "name"}}},
            }
        ],
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return cfg, {"DAGSTER_HOME": str(home)}


def test_validate_sync_status_objects_json(setup):
    cfg, env = setup
    out = mixsync("-c", str(cfg), "validate", env=env)
    assert out.returncode == 0, out.stderr
    assert "OK: 1 sync(s)" in out.stdout

    out = mixsync("-c", str(cfg), "sync", "clips", env=env)
    assert out.returncode == 0, out.stderr
    assert "synced 4" in out.stdout

    status = json.loads(mixsync("-c", str(cfg), "status", "--json", env=env).stdout)
    (rec,) = status["syncs"]
    assert rec["name"] == "clips" and rec["status"] == "ACTIVE"
    assert rec["total_files_discovered"] == 4 and rec["total_files_synced"] == 4
    assert rec["total_bytes_synced"] == 10 + 11 + 12 + 5
    assert rec["consecutive_failures"] == 0 and rec["last_error"] is None
    assert rec["last_sync_at"].endswith("+00:00")
    assert set(rec) >= {
        "total_files_failed",
        "next_sync_at",
        "sync_mode",
        "bucket",
        "connection_id",
        "source_path",
    }

    objs = json.loads(mixsync("-c", str(cfg), "objects", "media", "--json", env=env).stdout)
    assert objs["bucket"] == "media"
    by_key = {o["source_key"]: o for o in objs["objects"]}
    assert set(by_key) == {"clip_0.mp4", "clip_1.mp4", "clip_2.mp4", "notes/a b.txt"}
    assert by_key["clip_0.mp4"]["mime_type"] == "video/mp4"
    assert by_key["clip_0.mp4"]["status"] == "PROCESSED"
    assert by_key["notes/a b.txt"]["fields"] == {"file_name": "a b.txt"}
    assert by_key["notes/a b.txt"]["size_bytes"] == 5
    # Every time the CLI prints carries its zone (SQLite hands back naive UTC times).
    for o in objs["objects"]:
        assert o["created_at"].endswith("+00:00") and o["updated_at"].endswith("+00:00")
    assert rec["next_sync_at"].endswith("+00:00") and rec["pass"]["started_at"].endswith("+00:00")
    assert rec["last_listing_at"].endswith("+00:00")

    # The run is recorded in the Dagster instance the UI reads.
    from dagster import DagsterInstance

    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as inst:
        runs = inst.get_run_records()
        assert [r.dagster_run.job_name for r in runs] == ["mixsync_clips_job"]
        assert runs[0].dagster_run.tags["mixsync/sync"] == "clips"

    # A second pass is a no-op.
    out = mixsync("-c", str(cfg), "sync", "clips", env=env)
    assert "runs 0" in out.stdout and "synced 0" in out.stdout


def test_pause_blocks_the_sensor_not_a_pass_asked_for_by_hand(setup):
    cfg, env = setup

    def status() -> str:
        out = mixsync("-c", str(cfg), "status", "clips", "--json", env=env)
        return json.loads(out.stdout)["syncs"][0]["status"]

    assert mixsync("-c", str(cfg), "pause", "clips", env=env).returncode == 0
    out = mixsync("-c", str(cfg), "trigger", "clips", env=env)
    assert out.returncode == 1 and "mixsync resume clips" in out.stderr
    # `sync` runs the one pass asked for, says the sync is paused, and keeps it paused.
    out = mixsync("-c", str(cfg), "sync", "clips", env=env)
    assert out.returncode == 0 and "clips is paused" in out.stderr, out.stderr
    assert "synced 4" in out.stdout
    assert status() == "PAUSED"
    assert mixsync("-c", str(cfg), "resume", "clips", env=env).returncode == 0
    assert status() == "ACTIVE"


def test_config_path_from_env_and_errors_exit_2(setup, tmp_path):
    cfg, env = setup
    out = mixsync("status", env={**env, "MIXSYNC_CONFIG": str(cfg)}, cwd=tmp_path.parent)
    assert out.returncode == 0 and "clips: PENDING" in out.stdout
    out = mixsync("-c", str(cfg), "status", "nope", env=env)
    assert out.returncode == 2 and "no sync named 'nope'" in out.stderr
    out = mixsync("-c", str(cfg), "objects", "nobucket", env=env)
    assert out.returncode == 2 and "no bucket named 'nobucket'" in out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.read_text().replace("name: clips", "name: clips\n  batch_size: 0"))
    out = mixsync("-c", str(bad), "validate", env=env)
    assert out.returncode == 2
    assert "sync 'clips', field 'batch_size'" in out.stderr and "1..100" in out.stderr
    out = mixsync("-c", str(tmp_path / "missing.yaml"), "validate", env=env)
    assert out.returncode == 2 and "file not found" in out.stderr


def test_preview_json_is_streamed_and_parseable(setup):
    cfg, env = setup
    out = mixsync("-c", str(cfg), "preview", "clips", "--json", env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["sync"] == "clips"
    assert {f["rel_path"]: f["verdict"] for f in doc["files"]} == {
        "clip_0.mp4": "would_sync",
        "clip_1.mp4": "would_sync",
        "clip_2.mp4": "would_sync",
        "notes/a b.txt": "would_sync",
    }
    assert doc["totals"]["would_sync"] == 4 and doc["totals"]["examined"] == 4
    text = mixsync("-c", str(cfg), "preview", "clips", "--limit", "2", env=env).stdout
    assert "2 file(s) examined (stopped at --limit)" in text
    # preview wrote nothing: the sync is still PENDING with no discovered files
    status = json.loads(mixsync("-c", str(cfg), "status", "clips", "--json", env=env).stdout)
    assert status["syncs"][0]["total_files_discovered"] == 0


def test_check_connection(setup, tmp_path):
    cfg, env = setup
    out = mixsync("-c", str(cfg), "check", "src", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("src (root): OK: ") and "is readable" in out.stdout
    # The source folder disappears: the check fails and says which folder.
    root = Path(yaml_root(cfg))
    shutil.rmtree(root)
    out = mixsync("-c", str(cfg), "check", "src", env=env)
    assert out.returncode == 1 and "does not exist" in out.stderr
    out = mixsync("-c", str(cfg), "check", "nope", env=env)
    assert out.returncode == 2 and "no connection named 'nope'" in out.stderr


def yaml_root(cfg: Path) -> str:
    import yaml

    return yaml.safe_load(cfg.read_text())["connections"]["src"]["root"]
