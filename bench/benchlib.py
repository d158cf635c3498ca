"""What the benchmark scripts share: data trees, machine facts, timers around the engine's own
functions, bucket checks, whole-process timing, and the RESULTS.md section writer."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FILES_PER_FOLDER = 100
EXTENSIONS = (".txt", ".json", ".csv", ".md", ".jpg")
X = "\u00d7"  # the multiplication sign, spelled so linters do not mistake it for an x


def rss_now_mb() -> float:
    """Current resident set size (Linux /proc), for the baseline before a phase."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def peak_rss_mb() -> float:
    """High-water RSS of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def file_path(i: int) -> str:
    """100 files per folder, folders three levels deep: 000/00/00/f0000042.txt."""
    j = i // FILES_PER_FOLDER
    return f"{j // 100:03d}/{(j // 10) % 10:02d}/{j % 10:02d}/f{i:07d}{EXTENSIONS[i % 5]}"


def make_tree(src: Path, n: int, seed: int = 2) -> int:
    """Write n files of 20-200 bytes; returns the total number of bytes written."""
    rng = random.Random(seed)
    total = 0
    made: set[Path] = set()
    for i in range(n):
        p = src / file_path(i)
        if p.parent not in made:
            p.parent.mkdir(parents=True, exist_ok=True)
            made.add(p.parent)
        data = rng.randbytes(rng.randint(20, 200))
        p.write_bytes(data)
        total += len(data)
    return total


def whole_process(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> dict[str, Any]:
    """Run a command to its end: wall seconds from start to exit (interpreter, imports and
    work, as a user sees it), its peak RSS, exit code and output."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": secs,
        "peak_rss": usage.ru_maxrss / 1024,
        "code": proc.returncode,
        "output": output,
    }


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def machine_info() -> dict[str, str]:
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(x.split(":", 1)[1].strip() for x in f if x.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB"
    except OSError:
        mem = "?"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "dagster": version("dagster"),
        "sqlalchemy": version("sqlalchemy"),
    }


def machine_line(m: dict[str, str]) -> str:
    return "Machine: " + ", ".join(f"{k} {v}" for k, v in m.items()) + "."


def add_timer(acc: dict[str, list[float]], owner: Any, attr: str, label: str) -> None:
    """Replace `owner.attr` with a wrapper that adds its wall-clock time and calls to
    acc[label] (a module or class attribute, so callers that look it up get the wrapper)."""
    fn = getattr(owner, attr)
    slot = acc.setdefault(label, [0.0, 0])

    def timed(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            slot[0] += time.perf_counter() - t
            slot[1] += 1

    setattr(owner, attr, timed)


def install_timers() -> dict[str, list[float]]:
    """Wrap the engine steps of a pass (class and module attributes, so the wrappers are what
    gets called) with wall-clock accumulators: where a pass spends its time, unprofiled.

    Labels are indented by the step they are part of. Steps run in the run's worker thread and
    the listing in its prefetch thread, so children can overlap their parent's siblings."""
    from mixsync_dagster.core import passes, segment
    from mixsync_dagster.providers.local import LocalProvider
    from mixsync_dagster.state import StateStore
    from mixsync_dagster.targets.local import LocalBucketTarget

    acc: dict[str, list[float]] = {}

    def wrap(owner: Any, attr: str, label: str) -> None:
        add_timer(acc, owner, attr, label)

    wrap(passes, "scan", "scan (list and compare until work is found)")
    wrap(StateStore, "lookup", "  StateStore.lookup (scan and runs)")
    wrap(segment, "run_segment", "run: run_segment (list, judge, put, submit, commit)")
    wrap(segment._Chunker, "process", "  groups of files, one commit each (_Chunker.process)")
    wrap(LocalProvider, "will_read", "    LocalProvider.will_read (read-ahead hint)")
    wrap(LocalBucketTarget, "put_objects", "    LocalBucketTarget.put_objects")
    wrap(LocalBucketTarget, "submit_batches", "    LocalBucketTarget.submit_batches")
    wrap(StateStore, "write_tracked", "    StateStore.write_tracked")
    wrap(segment._Chunker, "commit_page", "  page commits (position, stamps)")
    wrap(passes, "finish", "finish the pass")
    return acc


def install_s3_timers(acc: dict[str, list[float]]) -> None:
    """The S3 provider's own costs: presigning (made only for targets that fetch URLs) and
    client creation."""
    from mixsync_dagster.providers import s3

    add_timer(acc, s3.S3Provider, "blob_url", "S3Provider.blob_url (presign)")
    add_timer(acc, s3, "make_client", "S3 client creation")


def cli_pass(work: Path, label: str, sync: str, *, s3: bool = False) -> dict[str, Any]:
    """`mixsync -c WORK/syncs.yaml sync SYNC` as a whole process (with step timers), its
    DAGSTER_HOME in WORK; raises on a non-zero exit."""
    env = {**os.environ, "DAGSTER_HOME": str(work / "dagster_home")}
    cmd = [sys.executable, str(Path(__file__).resolve()), str(work), label, sync]
    if s3:
        cmd.append("--s3")
    out = whole_process(cmd, env=env, cwd=work)
    if out["code"] != 0:
        raise SystemExit(f"{label} failed:\n{out['output'][-3000:]}")
    out["timers"] = json.loads((work / f"timers-{label}.json").read_text())
    out["cli"] = out["output"].strip().splitlines()[-1]
    return out


def _cli_in_this_process(work: Path, label: str, sync: str, s3: bool) -> None:
    timers = install_timers()
    if s3:
        install_s3_timers(timers)
    from mixsync_dagster.cli import main

    code = 0
    try:
        main(["-c", str(work / "syncs.yaml"), "sync", sync], standalone_mode=False)
    except SystemExit as e:
        code = int(e.code or 0)
    (work / f"timers-{label}.json").write_text(json.dumps(timers_json(timers)))
    sys.exit(code)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time, with every run's seconds under `all`."""
    mid = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {**mid, "all": [round(r["seconds"], 2) for r in runs]}


def timers_json(acc: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {k: {"seconds": v[0], "calls": int(v[1])} for k, v in acc.items()}


def verify_bucket(
    state_url: str, sync: str, expect_files: int, expect_bytes: int, bucket: str = "media"
) -> dict[str, Any]:
    """Count what the pass left in the bucket and the tracking table; raise if it is wrong."""
    from sqlalchemy import func, select

    from mixsync_dagster.state import StateStore, Tracked
    from mixsync_dagster.state.schema import tracked
    from mixsync_dagster.targets.local import objects

    store = StateStore(state_url)
    sid = store.sync_id(sync)
    with store.engine.connect() as c:
        n, keys, size = c.execute(
            select(
                func.count(),
                func.count(objects.c.source_key.distinct()),
                func.coalesce(func.sum(objects.c.size_bytes), 0),
            ).where(objects.c.bucket == bucket)
        ).one()
        processed = c.execute(
            select(func.count()).where(objects.c.bucket == bucket, objects.c.status == "PROCESSED")
        ).scalar_one()
        unsynced = c.execute(
            select(func.count()).where(
                tracked.c.sync_id == sid, tracked.c.status != int(Tracked.SYNCED)
            )
        ).scalar_one()
    got = {
        "objects": int(n),
        "distinct_keys": int(keys),
        "bytes": int(size),
        "processed": int(processed),
        "tracked_not_synced": int(unsynced),
    }
    want = {
        "objects": expect_files,
        "distinct_keys": expect_files,
        "bytes": expect_bytes,
        "processed": expect_files,
        "tracked_not_synced": 0,
    }
    if got != want:
        raise SystemExit(f"VERIFY FAILED: bucket holds {got}, expected {want}")
    store.engine.dispose()
    return got


def sqlite_table_bytes(db: Path) -> dict[str, int]:
    """Bytes per table (and its indexes) of a SQLite file, from the dbstat virtual table."""
    import sqlite3

    c = sqlite3.connect(db)
    try:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = c.execute(
            "SELECT coalesce(m.tbl_name, s.name), SUM(s.pgsize) FROM dbstat s "
            "LEFT JOIN sqlite_master m ON m.name = s.name GROUP BY 1"
        ).fetchall()
    finally:
        c.close()
    return {str(name): int(size) for name, size in rows}


def write_results(out: Path, text: str, section: str) -> None:
    """Replace one benchmark's own `## ...` section of RESULTS.md (or append it); keep the rest."""
    if out.exists():
        old = out.read_text()
        start = old.find(section)
        if start >= 0:
            nxt = re.search(r"^## ", old[start + len(section) :], re.M)
            end = start + len(section) + nxt.start() if nxt else len(old)
            new = old[:start] + text + ("\n" + old[end:] if nxt else "")
        else:
            new = old.rstrip("\n") + "\n\n" + text
    else:
        new = "# mixsync benchmarks\n\n" + text
    out.write_text(new.rstrip("\n") + "\n")


def rclone() -> str | None:
    """Debian's rclone, installed when missing (apt, as root); None when it cannot be had."""
    import shutil

    found = shutil.which("rclone")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "rclone"],
            capture_output=True,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return shutil.which("rclone")


if __name__ == "__main__":
    # benchlib.py WORK LABEL SYNC [--s3]: the process cli_pass times.
    sys.path.insert(0, str(REPO))
    _cli_in_this_process(Path(sys.argv[1]), sys.argv[2], sys.argv[3], "--s3" in sys.argv[4:])
