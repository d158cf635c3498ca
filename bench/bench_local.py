"""Benchmark: a local folder of N small files synced into the local bucket (issues 2 and 12).

    .venv/bin/python bench/bench_local.py [--files N] [--repeat R] [--out bench/RESULTS.md|-]

Every phase is a whole process, timed from start to exit as a user would time it (interpreter,
imports and work), with its own peak RSS:

  bare walk        a recursive os.scandir walk with a stat of every file (the listing floor)
  rclone lsf       `rclone lsf -R src` (Debian's rclone)
  rclone dry-run   `rclone copy --dry-run src empty/`: what a sync tool's unchanged pass costs
  first pass       `mixsync -c syncs.yaml sync bench` on a fresh state store
  unchanged pass   the same command again (must create nothing and launch no run)

The passes run the `mixsync` CLI through a thin wrapper that adds wall-clock timers around the
engine's steps (`benchlib.install_timers`), which cost nothing measurable. The bucket is checked
after the first pass; the state database's size is read per table (SQLite dbstat).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

from benchlib import (  # noqa: E402
    X,
    cli_pass,
    load_average,
    machine_info,
    machine_line,
    make_tree,
    median_of,
    rclone,
    sqlite_table_bytes,
    verify_bucket,
    whole_process,
    write_results,
)

SECTION = "## Local folder → local bucket (issues 2 and 12)"
SYNC_NAME = "bench"


def section_for(files: int) -> str:
    """100,000 files is the standing section; another size (issue 12's 1,000,000) gets its own."""
    if files == 100_000:
        return SECTION
    return f"## Local folder → local bucket, {files:,} files (issue 12)"


WALK = """
import os, sys
n = 0; stack = [sys.argv[1]]
while stack:
    with os.scandir(stack.pop()) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            else:
                e.stat(); n += 1
print(n)
"""


def write_config(work: Path, src: Path) -> Path:
    import yaml

    cfg = work / "syncs.yaml"
    doc = {
        "state": {"url": f"sqlite:///{work / 'state.db'}"},
        "connections": {"src": {"provider": "local", "root": str(src)}},
        "buckets": {"media": {"target": "local"}},
        # batch_size, max_objects_per_run, filters, mapping: all defaults.
        "syncs": [
            {"name": SYNC_NAME, "bucket": "media", "connection_id": "src", "source_path": ""}
        ],
    }
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    home = work / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each quick phase (median)")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--keep", action="store_true", help="keep the state and Dagster home")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    n = args.files
    data = HERE / ".data" / f"local-{n}"
    src = data / "src"
    marker = data / "bytes"
    if not marker.exists():
        shutil.rmtree(data, ignore_errors=True)
        t = time.perf_counter()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(make_tree(src, n)))
        print(f"wrote {n:,} files in {time.perf_counter() - t:.0f} s", flush=True)
    nbytes = int(marker.read_text())
    work = data / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    write_config(work, src)
    load0 = load_average()
    rows: dict[str, dict[str, Any]] = {}

    rows["walk"] = median_of(
        [whole_process([sys.executable, "-c", WALK, str(src)]) for _ in range(args.repeat)]
    )
    rc = rclone()
    if rc:
        rows["lsf"] = median_of(
            [whole_process([rc, "lsf", "-R", str(src)]) for _ in range(args.repeat)]
        )
        empty = data / "empty"
        empty.mkdir(exist_ok=True)
        rows["dry"] = median_of(
            [
                whole_process([rc, "copy", "--dry-run", "-q", str(src), str(empty)])
                for _ in range(args.repeat)
            ]
        )
    print("baselines done", {k: v["all"] for k, v in rows.items()}, flush=True)
    rows["first"] = cli_pass(work, "first", SYNC_NAME)
    rows["first"]["verify"] = verify_bucket(f"sqlite:///{work / 'state.db'}", SYNC_NAME, n, nbytes)
    print("first pass", round(rows["first"]["seconds"], 2), flush=True)
    rows["second"] = median_of(
        [cli_pass(work, f"second{i}", SYNC_NAME) for i in range(args.repeat)]
    )
    if "runs 0, synced 0" not in rows["second"]["cli"]:
        raise SystemExit(f"the unchanged pass did work: {rows['second']['cli']}")
    sizes = sqlite_table_bytes(work / "state.db")
    load1 = load_average()
    if not args.keep:
        shutil.rmtree(work / "dagster_home", ignore_errors=True)
    result = {
        "files": n,
        "bytes": nbytes,
        "rows": rows,
        "sizes": sizes,
        "machine": machine_info(),
        "load": [load0, load1],
        "note": args.note,
    }
    (HERE / ".data" / f"last-local-{n}.json").write_text(json.dumps(result, default=str))
    text = render(result)
    print(text)
    if args.out != "-":
        write_results(Path(args.out), text, section_for(args.files))


def render(r: dict[str, Any]) -> str:
    n, rows = r["files"], r["rows"]
    walk = rows["walk"]["seconds"]
    dry = rows["dry"]["seconds"] if "dry" in rows else None
    names = {
        "walk": "bare os.scandir walk + stat",
        "lsf": "`rclone lsf -R`",
        "dry": "`rclone copy --dry-run` (empty destination)",
        "first": "first pass (`mixsync sync`)",
        "second": "unchanged pass (`mixsync sync`)",
    }
    lines = [
        f"| phase (whole process) | files | seconds | files/s | {X} bare walk | "
        f"{X} rclone dry-run | peak RSS MB | runs (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, label in names.items():
        if key not in rows:
            continue
        row = rows[key]
        s = row["seconds"]
        vs_dry = f"{s / dry:.2f}{X}" if dry else "-"
        every = ", ".join(str(x) for x in row.get("all", [round(s, 2)]))
        lines.append(
            f"| {label} | {n:,} | {s:.2f} | {n / s:,.0f} | {s / walk:.1f}{X} | {vs_dry} | "
            f"{row['peak_rss']:.0f} | {every} |"
        )
    t1, t2 = rows["first"]["timers"], rows["second"]["timers"]
    steps = [
        "| step (timers inside the pass) | first pass: calls | seconds | unchanged: calls | "
        "seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, v in t1.items():
        w = t2.get(k, {"calls": 0, "seconds": 0.0})
        depth = (len(k) - len(k.lstrip())) // 2
        label = "\u2003" * max(depth - 1, 0) + ("\u21b3 " if depth else "") + k.strip()
        steps.append(
            f"| {label} | {v['calls']:,} | {v['seconds']:.2f} | {w['calls']:,} | "
            f"{w['seconds']:.2f} |"
        )
    sizes = r["sizes"]
    tracking = sum(v for k, v in sizes.items() if k.startswith("mixsync_"))
    bucket = sum(v for k, v in sizes.items() if k.startswith("local_bucket_"))
    total = sum(sizes.values())
    size_lines = [
        "| state database after the passes | bytes | bytes per file |",
        "|---|---:|---:|",
        f"| tracking (mixsync_* tables with their indexes) | {tracking:,} | {tracking / n:.0f} |",
        f"| the local bucket's objects and batches (local_bucket_*) | {bucket:,} | "
        f"{bucket / n:.0f} |",
        f"| whole file | {total:,} | {total / n:.0f} |",
    ]
    first, second = rows["first"], rows["second"]
    reading = (
        f"The first pass syncs {n:,} files in {first['seconds']:.1f} s from process start to "
        f"exit ({n / first['seconds']:,.0f} files/s), peak RSS {first['peak_rss']:.0f} MB; the "
        f"unchanged pass takes {second['seconds']:.2f} s"
        + (f" ({second['seconds'] / dry:.2f}{X} `rclone copy --dry-run`" if dry else " (")
        + f", {second['seconds'] / walk:.1f}{X} the bare walk) and launches no run. "
        f"Tracking costs {tracking / n:.0f} bytes per file. CLI: `{second['cli']}`."
    )
    m = r["machine"]
    return "\n\n".join(
        [
            section_for(n),
            f"`.venv/bin/python bench/bench_local.py --files {n}` — {n:,} files of 20-200 bytes "
            f"({r['bytes']:,} bytes), 100 per folder, three folder levels; syncs.yaml defaults "
            "(batch_size 50, max_objects_per_run 100,000, no filters, no mapping), SQLite state, "
            "local bucket. Every phase is a whole process timed from start to exit, the "
            "quick ones the median of several runs (all listed); page cache warm.",
            machine_line(m) + f" Load average (1 min) at start / end: {r['load'][0]:.1f} / "
            f"{r['load'][1]:.1f}.",
            "\n".join(lines),
            "\n".join(steps),
            "\n".join(size_lines),
            reading + (f" {r['note']}" if r.get("note") else ""),
        ]
    )


if __name__ == "__main__":
    main()
