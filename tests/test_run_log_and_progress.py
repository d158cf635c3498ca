"""What a person watching sees: a run's log names excluded and failed files and reports progress
every few thousand files; `mixsync sync` shows progress live on a terminal and as plain lines
otherwise."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mixsync_dagster.dagster import jobs
from tests.harness import Driver, write_config

BIN = Path(sys.executable).parent / "mixsync"
REPO = Path(__file__).resolve().parents[1]
OK_NAME = {
    "mappings": {
        "n": {
            "source": {"type": "filename_regex", "pattern": r"^ok_(\d+)", "group": 1},
            "required": True,
        }
    }
}


def make(root: Path, prefix: str, n: int, suffix: str = ".txt") -> None:
    for i in range(n):
        (root / f"{prefix}_{i:05d}{suffix}").write_text(f"{prefix} {i}\n")


def test_run_log_names_the_first_50_excluded_and_failed_files_and_logs_progress(
    tmp_path, src, monkeypatch, instance
):
    # Progress lines every 1,000 files instead of 5,000, so 2,500 files show two of them.
    monkeypatch.setattr(jobs, "PROGRESS_EVERY", 1_000)
    make(src, "ok", 2_385)
    make(src, "skip", 60, ".tmp")  # excluded by the pattern
    make(src, "bad", 55)  # the required mapping has no value: the file fails
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        syncs=[
            {
                "name": "s1",
                "file_filters": {"exclude_patterns": ["*.tmp"]},
                "schema_mapping": OK_NAME,
            }
        ],
    )
    d = Driver(cfg, instance)
    assert d.run_pass("s1") == 1
    (result,) = d.runs
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    text = "\n".join(messages)
    excluded = next(m for m in messages if m.startswith("excluded (first 50 of 60):"))
    named = re.findall(r"^  (skip_\d+\.tmp): exclude_patterns: .*'\*\.tmp'$", excluded, re.M)
    assert len(named) == 50
    failed = next(m for m in messages if m.startswith("failed (first 50 of 55):"))
    named = re.findall(r"^  (bad_\d+\.txt): .*required.*$", failed, re.M)
    assert len(named) == 50
    line = r"pass 1: listed (\d+), synced \d+, excluded \d+, failed \d+$"
    progress = re.findall(line, text, re.M)
    assert [int(n) for n in progress] == [1_000, 2_000]


def setup_cli(tmp_path: Path, src: Path, n: int) -> tuple[Path, dict[str, str]]:
    make(src, "f", n)
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        syncs=[{"name": "s1"}],
    )
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return cfg, {**os.environ, "DAGSTER_HOME": str(home), "TERM": "xterm-256color"}


LINE = re.compile(
    r"^s1: pass 1: listed ([\d,]+), synced ([\d,]+), excluded 0, failed 0, [\d,]+ files/s, "
    r"\d+ s elapsed$",
    re.M,
)


def test_sync_prints_plain_progress_lines_without_a_terminal(tmp_path, src):
    cfg, env = setup_cli(tmp_path, src, 6_000)
    out = subprocess.run(
        [str(BIN), "-c", str(cfg), "sync", "s1"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stderr  # no escape codes in a log
    lines = LINE.findall(out.stderr)
    assert lines, out.stderr
    # The last line says where the pass ended; the summary goes to stdout.
    assert lines[-1] == ("6,000", "6,000")
    assert "synced 6000" in out.stdout


@pytest.mark.timeout(120)
def test_sync_shows_live_progress_on_a_terminal(tmp_path, src):
    cfg, env = setup_cli(tmp_path, src, 4_000)
    env = {**env, "COLUMNS": "160"}
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN), "-c", str(cfg), "sync", "s1"],
        env=env,
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
    )
    os.close(child_fd)
    chunks = []
    while True:
        ready, _, _ = select.select([main_fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(main_fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    os.close(main_fd)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, screen
    # rich redraws one line in place (cursor movements) with the counts, rate and elapsed time.
    assert "\x1b[" in screen
    assert re.search(r"s1: pass 1: listed [\d,]+, synced [\d,]+, .* files/s", screen), screen
    assert "synced 4000" in screen
