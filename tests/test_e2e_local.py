"""End to end on a real Dagster instance: folder → sensor ticks → runs → objects in the bucket."""

from __future__ import annotations

import os
from pathlib import Path

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
    assert requests == [] and "completed" in (skip or "")
    assert len(objects(state_url)) == 4
