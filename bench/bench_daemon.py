"""Benchmark: the path users run, a real `dagster-daemon` with the queued run coordinator, beside
`mixsync sync` in process on the same tree (issue 12).

    .venv/bin/python bench/bench_daemon.py [--files N] [--out bench/RESULTS.md|-]

1. In process: `mixsync -c syncs.yaml sync bench` on a fresh state store, timed as a whole
   process (start to exit).
2. Through the daemon: a fresh state store and DAGSTER_HOME (the repo's dagster.yaml), a
   `dagster-daemon run` serving the code location; its sensor starts the pass on its first tick.
   Timed from the first tick (the tick's own timestamp in the instance) to the last object
   (the end of the last run); also from the daemon's start. Runs launched and the gaps between
   them (one run's end to the next one's start) come from the instance's run records.
3. An unchanged pass through the daemon: `mixsync trigger`, then the duration of the tick that
   lists the tree and finishes the pass without a run (the code server has its imports warm),
   beside an unchanged `mixsync sync` as a whole process and the bare walk.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

from bench_local import WALK, write_config  # noqa: E402
from benchlib import (  # noqa: E402
    X,
    load_average,
    machine_info,
    machine_line,
    make_tree,
    median_of,
    verify_bucket,
    whole_process,
    write_results,
)

SECTION = "## Through the Dagster daemon (issue 12)"
SYNC_NAME = "bench"
BIN = Path(sys.executable).parent


def objects_in(state_url: str) -> int:
    from sqlalchemy import func, select

    from mixsync_dagster.state import StateStore
    from mixsync_dagster.targets.local import objects

    store = StateStore(state_url)
    with store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(objects)).scalar_one())


def pass_state(state_url: str) -> tuple[int, str] | None:
    from mixsync_dagster.state import StateStore

    store = StateStore(state_url)
    p = store.get_pass(store.sync_id(SYNC_NAME))
    return (p.pass_no, p.state) if p is not None else None


def sensor_ticks(home: Path) -> list[dict[str, Any]]:
    """The sync sensor's ticks (oldest first): start, end, runs requested, skip reason."""
    from dagster import DagsterInstance
    from dagster._core.definitions.run_request import InstigatorType

    with DagsterInstance.from_config(str(home)) as inst:
        states = [
            s
            for s in inst.all_instigator_state(instigator_type=InstigatorType.SENSOR)
            if s.instigator_name == f"mixsync_{SYNC_NAME}"
        ]
        out = []
        for s in states:
            for t in inst.get_ticks(s.instigator_origin_id, s.selector_id, limit=1000):
                out.append(
                    {
                        "start": t.timestamp,
                        "end": t.end_timestamp,
                        "runs": len(t.run_ids),
                        "skip": t.skip_reason,
                        "status": t.status.value,
                    }
                )
    return sorted(out, key=lambda t: t["start"])


def run_records(home: Path) -> list[dict[str, Any]]:
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as inst:
        recs = inst.get_run_records()
        out = [
            {
                "id": r.dagster_run.run_id,
                "status": r.dagster_run.status.value,
                "created": r.create_timestamp.timestamp(),
                "start": r.start_time,
                "end": r.end_time,
            }
            for r in recs
        ]
    return sorted(out, key=lambda r: r["created"])


def wait_for(check: Any, timeout: float, what: str, servers: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        servers.check_alive()
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}\n{servers.logs_tail()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    from tests.dagster_server import DagsterServers, prepare_home

    n = args.files
    data = HERE / ".data" / f"local-{n}"
    src, marker = data / "src", data / "bytes"
    if not marker.exists():
        shutil.rmtree(data, ignore_errors=True)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(make_tree(src, n)))
    nbytes = int(marker.read_text())
    load0 = load_average()
    walk = median_of(
        [whole_process([sys.executable, "-c", WALK, str(src)]) for _ in range(args.repeat)]
    )

    # 1. In process.
    inproc = data / "inprocess"
    shutil.rmtree(inproc, ignore_errors=True)
    inproc.mkdir()
    cfg_a = write_config(inproc, src)
    env_a = {**os.environ, "DAGSTER_HOME": str(inproc / "dagster_home")}
    mixsync = [str(BIN / "mixsync"), "-c", str(cfg_a), "sync", SYNC_NAME]
    first_cli = whole_process(mixsync, env=env_a, cwd=inproc)
    if first_cli["code"] != 0:
        raise SystemExit(first_cli["output"])
    verify_bucket(f"sqlite:///{inproc / 'state.db'}", SYNC_NAME, n, nbytes)
    unchanged_cli = median_of(
        [whole_process(mixsync, env=env_a, cwd=inproc) for _ in range(args.repeat)]
    )
    print(f"in process: first {first_cli['seconds']:.1f} s", flush=True)

    # 2. Through the daemon.
    daemon = data / "daemon"
    shutil.rmtree(daemon, ignore_errors=True)
    daemon.mkdir()
    cfg_b = write_config(daemon, src)
    state_b = f"sqlite:///{daemon / 'state.db'}"
    home = daemon / "dagster_home"
    env_b = {**os.environ, "MIXSYNC_CONFIG": str(cfg_b)}
    prepare_home(home, REPO / "dagster.yaml", env_b)
    servers = DagsterServers(
        home=home, workspace=REPO / "workspace.yaml", log_dir=daemon / "logs", env=env_b
    )
    t_daemon = time.time()
    servers.start_daemon()
    try:
        wait_for(
            lambda: pass_state(state_b) == (1, "done") and objects_in(state_b) == n,
            3600,
            "the first pass through the daemon",
            servers,
        )
        t_done = time.time()
        verify_bucket(state_b, SYNC_NAME, n, nbytes)
        first_ticks = sensor_ticks(home)
        runs = run_records(home)
        # 3. An unchanged pass: a trigger, then the tick that lists and finishes it.
        before = len(first_ticks)
        subprocess.run(
            [str(BIN / "mixsync"), "-c", str(cfg_b), "trigger", SYNC_NAME],
            env={**env_b, "DAGSTER_HOME": str(home)},
            check=True,
            capture_output=True,
        )
        wait_for(
            lambda: pass_state(state_b) == (2, "done"),
            600,
            "the unchanged pass through the daemon",
            servers,
        )
        ticks = sensor_ticks(home)
    finally:
        servers.stop()
    load1 = load_average()
    tick2 = next(t for t in ticks[before:] if t["skip"] and t["skip"].startswith("pass 2 done"))
    first_tick = first_ticks[0]["start"]
    last_end = max(r["end"] for r in runs if r["end"])
    gaps = [
        round(b["start"] - a["end"], 2)
        for a, b in itertools.pairwise(runs)
        if a["end"] and b["start"]
    ]
    result = {
        "files": n,
        "walk": walk["seconds"],
        "first_cli": first_cli["seconds"],
        "unchanged_cli": unchanged_cli["seconds"],
        "unchanged_cli_all": unchanged_cli["all"],
        "daemon_from_start": t_done - t_daemon,
        "daemon_from_first_tick": last_end - first_tick,
        "first_tick_after_start": first_tick - t_daemon,
        "runs": [
            {k: r[k] for k in ("status",)}
            | {"seconds": round((r["end"] or 0) - (r["start"] or 0), 2)}
            | {"queued": round((r["start"] or 0) - r["created"], 2)}
            for r in runs
        ],
        "gaps": gaps,
        "tick_unchanged": (tick2["end"] or 0) - tick2["start"],
        "tick_unchanged_skip": tick2["skip"],
        "machine": machine_info(),
        "load": [load0, load1],
        "note": args.note,
    }
    (HERE / ".data" / f"last-daemon-{n}.json").write_text(json.dumps(result, indent=1))
    text = render(result)
    print(text)
    if args.out != "-":
        write_results(Path(args.out), text, SECTION)


def render(r: dict[str, Any]) -> str:
    n = r["files"]
    cli, dmn = r["first_cli"], r["daemon_from_first_tick"]
    runs = r["runs"]
    run_times = ", ".join(f"{x['seconds']:.1f} s (queued {x['queued']:.1f} s)" for x in runs)
    table = "\n".join(
        [
            "| what | files | seconds | files/s | ratio |",
            "|---|---:|---:|---:|---:|",
            f"| first pass, `mixsync sync` in process (whole process) | {n:,} | {cli:.1f} | "
            f"{n / cli:,.0f} | 1{X} |",
            f"| first pass through the daemon, first tick → last object | {n:,} | {dmn:.1f} | "
            f"{n / dmn:,.0f} | {dmn / cli:.2f}{X} |",
            f"| ↳ the same from the daemon's start (its own start-up included) | {n:,} | "
            f"{r['daemon_from_start']:.1f} | {n / r['daemon_from_start']:,.0f} | "
            f"{r['daemon_from_start'] / cli:.2f}{X} |",
            f"| bare os.scandir walk + stat (whole process) | {n:,} | {r['walk']:.2f} | "
            f"{n / r['walk']:,.0f} | - |",
            f"| unchanged pass, `mixsync sync` (whole process) | {n:,} | "
            f"{r['unchanged_cli']:.2f} | {n / r['unchanged_cli']:,.0f} | "
            f"{r['unchanged_cli'] / r['walk']:.1f}{X} walk |",
            f"| unchanged pass, one sensor tick in the daemon's code server | {n:,} | "
            f"{r['tick_unchanged']:.2f} | {n / r['tick_unchanged']:,.0f} | "
            f"{r['tick_unchanged'] / r['walk']:.1f}{X} walk |",
        ]
    )
    reading = (
        f"Through the daemon the first pass of {n:,} files takes {dmn:.1f} s from the sensor's "
        f"first tick to the end of the last run, {dmn / cli:.2f}{X} the {cli:.1f} s of "
        f"`mixsync sync` in process; the daemon's first tick came "
        f"{r['first_tick_after_start']:.1f} s after it started. {len(runs)} run(s): "
        f"{run_times}; gaps between runs: {r['gaps'] or 'none'}. The tick found work on its "
        "first page and requested one run, which listed and synced the whole tree (a run "
        "carries the pass on up to max_objects_per_run files). The unchanged pass needed no "
        f"run: the tick listed the tree and finished the pass in {r['tick_unchanged']:.2f} s "
        f"(its message: `{r['tick_unchanged_skip']}`)."
    )
    return "\n\n".join(
        [
            SECTION,
            f"`.venv/bin/python bench/bench_daemon.py --files {n}` — the tree of "
            "bench_local.py; a real `dagster-daemon run` on a fresh DAGSTER_HOME with the "
            "repo's dagster.yaml (queued run coordinator, dequeue every second, one run per "
            "sync), SQLite state, local bucket, the sync's defaults (polling 300 s, "
            "max_objects_per_run 100,000). Times from the instance's own tick and run records.",
            machine_line(r["machine"])
            + f" Load average (1 min) at start / end: {r['load'][0]:.1f} / {r['load'][1]:.1f}.",
            table,
            reading + (f" {r['note']}" if r.get("note") else ""),
        ]
    )


if __name__ == "__main__":
    main()
