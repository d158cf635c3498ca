"""Benchmark: N blobs in Azure Blob Storage (a local Azurite) synced into a local bucket (issue 14).

    .venv/bin/python bench/bench_azure.py [--blobs N] [--out bench/RESULTS.md]

Starts Azurite (tests/azure_server.py: npm azurite 3.35.0 from .venv/node) on a free loopback
port with in-memory storage, seeds N blobs of 20-200 bytes with concurrent PUTs, then runs each
phase in a fresh subprocess and times it twice: the whole process as the parent sees it (start
to exit: interpreter, imports, work) and the work alone inside it:

  bare         a bare azure-storage-blob listing: ContainerClient.list_blobs over the prefix,
               5,000 a page (the baseline), measured again right before the unchanged pass
  list_pages   AzureBlobProvider.list_pages over the prefix, nothing else
  first pass   `mixsync -c syncs.yaml sync bench` in process (CliRunner): creates N objects
  unchanged    the same command again: must create 0 objects and launch 0 runs

After each pass the bucket must hold exactly the blobs written (distinct keys, bytes, all
PROCESSED, every tracked file `synced`). Any mismatch stops the script with an error.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

from benchlib import (  # noqa: E402
    install_timers,
    machine_info,
    peak_rss_mb,
    rss_now_mb,
    verify_bucket,
    write_results,
)

SECTION = "## Azure Blob (Azurite) → local bucket (issue 14)"
SYNC_NAME = "bench"
CONTAINER = "mixsync-bench"
PREFIX = "media/"
X = "\u00d7"
EXTENSIONS = (".mp4", ".jpg", ".json", ".txt", ".mov")
# Azurite's well-known development account (as tests/azure_server.py), repeated here so the
# bare phase imports azure-storage-blob and nothing else (that module imports pytest).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
API_VERSION = "2025-11-05"


def blob_name(i: int) -> str:
    """100 blobs per folder, three folder levels: media/000/00/00/f0000042.mp4."""
    j = i // 100
    return f"{PREFIX}{j // 100:03d}/{(j // 10) % 10:02d}/{j % 10:02d}/f{i:07d}{EXTENSIONS[i % 5]}"


def body(i: int) -> bytes:
    rng = random.Random(i)
    return rng.randbytes(rng.randint(20, 200))


def _put_range(url: str, ids: list[int], threads: int) -> int:
    """Worker process: upload the given blobs with a thread pool; returns bytes written."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(
        url, credential={"account_name": ACCOUNT, "account_key": KEY}, api_version=API_VERSION
    )
    c = service.get_container_client(CONTAINER)

    def put(i: int) -> int:
        data = body(i)
        c.upload_blob(blob_name(i), data, overwrite=True)
        return len(data)

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(put, ids))


def seed(url: str, n: int, procs: int, threads: int) -> int:
    chunks = [list(range(k, n, procs)) for k in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        return sum(pool.map(_put_range, [url] * procs, chunks, [threads] * procs))


def write_config(work: Path, url: str) -> Path:
    import yaml

    doc = {
        "state": {"url": f"sqlite:///{work / 'state.db'}"},
        "connections": {
            "src": {
                "provider": "azure_blob",
                "account_url": url,
                "account_key": KEY,
                "api_version": API_VERSION,
            }
        },
        "buckets": {"media": {"target": "local"}},
        # max_objects_per_run, batch_size, filters, mapping: all defaults.
        "syncs": [
            {
                "name": SYNC_NAME,
                "bucket": "media",
                "connection_id": "src",
                "source_path": f"{CONTAINER}/{PREFIX}",
            }
        ],
    }
    cfg = work / "syncs.yaml"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    home = work / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    return cfg


# ---------------------------------------------------------------- phases (run in a subprocess)


def phase_bare(args: argparse.Namespace) -> dict[str, Any]:
    """The baseline: what anyone would write with azure-storage-blob, and nothing else."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(
        args.url, credential={"account_name": ACCOUNT, "account_key": KEY}, api_version=API_VERSION
    )
    rss0 = rss_now_mb()
    t0 = time.perf_counter()
    files = size = pages = 0
    container = service.get_container_client(CONTAINER)
    for page in container.list_blobs(name_starts_with=PREFIX, results_per_page=5000).by_page():
        pages += 1
        for b in page:
            files += 1
            size += b.size
    secs = time.perf_counter() - t0
    return {"files": files, "seconds": secs, "rss_before": rss0, "bytes": size, "pages": pages}


def phase_list_pages(args: argparse.Namespace) -> dict[str, Any]:
    from mixsync_dagster.config import load_config
    from mixsync_dagster.core.segment import PAGE_SIZE
    from mixsync_dagster.providers import get_provider

    cfg = load_config(str(Path(args.workdir) / "syncs.yaml"))
    prov = get_provider(cfg, "src")
    rss0 = rss_now_mb()
    t0 = time.perf_counter()
    files = pages = size = 0
    for page in prov.list_pages(f"{CONTAINER}/{PREFIX}", None, PAGE_SIZE):
        pages += 1
        files += len(page.items)
        size += sum(i.size for i in page.items)
    secs = time.perf_counter() - t0
    return {"files": files, "seconds": secs, "rss_before": rss0, "bytes": size, "pages": pages}


def count_objects(work: Path) -> int:
    from sqlalchemy import func, select

    from mixsync_dagster.state import StateStore
    from mixsync_dagster.targets.local import objects

    store = StateStore(f"sqlite:///{work / 'state.db'}")
    with store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(objects)).scalar_one())


def phase_pass(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir)
    os.environ["DAGSTER_HOME"] = str(work / "dagster_home")
    cfg = str(work / "syncs.yaml")
    os.environ["MIXSYNC_CONFIG"] = cfg
    t_imp = time.perf_counter()
    from click.testing import CliRunner

    import mixsync_dagster.cli
    import mixsync_dagster.dagster.definitions  # import cost outside the timed region
    import mixsync_dagster.providers.azure_blob  # its import cost too

    import_secs = time.perf_counter() - t_imp
    before = count_objects(work)
    timers = install_timers()
    rss0 = rss_now_mb()
    t0 = time.perf_counter()
    res = CliRunner().invoke(mixsync_dagster.cli.main, ["-c", cfg, "sync", SYNC_NAME])
    secs = time.perf_counter() - t0
    out: dict[str, Any] = {"seconds": secs, "rss_before": rss0, "import_seconds": import_secs}
    out["breakdown"] = {k: {"seconds": v[0], "calls": v[1]} for k, v in timers.items()}
    out["peak_rss"] = peak_rss_mb()
    out["cli_output"] = res.output.strip().splitlines()[-1] if res.output.strip() else ""
    if res.exit_code != 0:
        raise SystemExit(f"sync failed (exit {res.exit_code}): {res.output}\n{res.exception!r}")
    m = re.search(r"listed (\d+), runs (\d+), synced (\d+)", res.output)
    if not m:
        raise SystemExit(f"unexpected CLI output: {res.output}")
    listed, runs, synced = map(int, m.groups())
    out.update(listed=listed, runs=runs, synced=synced, files=listed)
    out["created"] = count_objects(work) - before
    out["verify"] = verify_bucket(
        f"sqlite:///{work / 'state.db'}", SYNC_NAME, args.expect_files, args.expect_bytes
    )
    return out


def run_phase(args: argparse.Namespace) -> None:
    phases = {"bare": phase_bare, "list_pages": phase_list_pages, "pass": phase_pass}
    out = phases[args.phase](args)
    out.setdefault("peak_rss", peak_rss_mb())
    print("BENCH-RESULT " + json.dumps(out), flush=True)


# ---------------------------------------------------------------- orchestration


def spawn(phase: str, work: Path, url: str, files: int, nbytes: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--workdir", str(work)]
    cmd += ["--url", url, "--expect-files", str(files), "--expect-bytes", str(nbytes)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        raise SystemExit(f"phase {phase} failed (exit {proc.returncode})")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("BENCH-RESULT "))
    out: dict[str, Any] = json.loads(line[len("BENCH-RESULT ") :])
    out["wall"] = wall
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"| phase | blobs | whole process s | {X} bare (process) | work s | {X} bare (work) "
        "| blobs/s (work) | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = r.get("base")
        wall = f"{r['wall'] / base['wall']:.2f}{X}" if base else "1\u00d7"
        work = f"{r['seconds'] / base['seconds']:.2f}{X}" if base else "1\u00d7"
        lines.append(
            f"| {r['name']} | {r['files']:,} | {r['wall']:.2f} | {wall} | {r['seconds']:.2f} | "
            f"{work} | {r['files'] / r['seconds']:,.0f} | {r['peak_rss']:.0f} |"
        )
    return "\n".join(lines)


def breakdown_table(passes: list[dict[str, Any]]) -> str:
    lines = ["| step | first pass: calls | seconds | unchanged: calls | seconds |"]
    lines.append("|---|---:|---:|---:|---:|")
    for k in passes[0]["breakdown"]:
        depth = (len(k) - len(k.lstrip())) // 2
        label = "\u2003" * max(depth - 1, 0) + ("\u21b3 " if depth else "") + k.strip()
        cells = []
        for p in passes:
            v = p["breakdown"].get(k, {"calls": 0, "seconds": 0.0})
            cells.append(f"{v['calls']:,} | {v['seconds']:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        "| imports (mixsync CLI, Dagster definitions) | 1 | "
        + " | 1 | ".join(f"{p['import_seconds']:.2f}" for p in passes)
        + " |"
    )
    lines.append(
        "| whole `mixsync sync` command | "
        + " | ".join(f"1 | {p['seconds']:.2f}" for p in passes)
        + " |"
    )
    return "\n".join(lines)


def section_text(n: int, info: dict[str, Any], rows: list[dict[str, Any]], note: str) -> str:
    by = {r["key"]: r for r in rows}
    b1, lp, p1, b2, p2 = (by[k] for k in ("bare1", "list_pages", "first", "bare2", "second"))
    plan = p2["breakdown"]["scan (list and compare until work is found)"]["seconds"]
    other = p2["wall"] - p2["seconds"] - p2["import_seconds"]
    mi = ", ".join(f"{k} {v}" for k, v in info["machine"].items())
    mi += f", load average (1 min) at start / end {info['load']}"
    verdict = "meets" if p2["wall"] <= 1.15 * b2["wall"] else "misses"
    reading = (
        f"The bare azure-storage-blob listing reads the {n:,} blobs in {b1['seconds']:.1f} s of "
        f"work ({b1['pages']} pages of 5,000; {b1['wall']:.1f} s as a whole process). "
        f"AzureBlobProvider.list_pages needs {lp['seconds']:.1f} s ({lp['pages']} pages of 1,000, "
        f"the engine's page size): the same List Blobs requests through the SDK's pipeline, but "
        f"parsed with ElementTree instead of the SDK's reflective deserializer, which is where "
        f"the bare listing spends most of its CPU; Azurite's own time to answer is the rest. "
        f"The unchanged pass creates {p2['created']} objects in {p2['runs']} runs: "
        f"{p2['wall']:.1f} s as a whole process against the bare listing's {b2['wall']:.1f} s "
        f"measured just before it ({p2['wall'] / b2['wall']:.2f}{X}, so it {verdict} the "
        f"1.15{X} target). Of those {p2['wall']:.1f} s, imports (mixsync, Dagster, SQLAlchemy, "
        f"the definitions) take {p2['import_seconds']:.1f} s, the `mixsync sync` command "
        f"{p2['seconds']:.1f} s ({plan:.1f} s of it listing and comparing with source tracking "
        f"in engine.plan_chunk, the rest opening the Dagster instance and definitions), and "
        f"interpreter start-up and exit {other:.1f} s. The first pass created "
        f"{p1['created']:,} objects in {p1['runs']} Dagster runs in {p1['seconds']:.1f} s (the "
        "local bucket needs no URL: no SAS is signed). "
        f"Seeding took {info['seed_seconds']:.0f} s ({n / info['seed_seconds']:,.0f} PUT/s into "
        f"Azurite, {info['seed_procs']} processes {X} {info['seed_threads']} threads)."
    )
    return "\n".join(
        [
            SECTION,
            "",
            f"`{info['command']}` — {n:,} blobs of 20-200 bytes in one Azurite container "
            f"(azurite {info['azurite']}, in-memory, loopback), 100 per folder, three folder "
            "levels; syncs.yaml defaults (max_objects_per_run 5000, batch_size 50, no filters, no "
            "mapping), SQLite state, local bucket target. Each phase is a fresh subprocess; "
            "'whole process' is its wall time from start to exit as the parent sees it "
            "(interpreter, imports and work), 'work' the timed region inside it (the listing; "
            "the `mixsync sync` command via CliRunner). The bare listing is "
            "`ContainerClient.list_blobs` with the account key, re-measured right before the "
            "unchanged pass.",
            "",
            f"Machine: {mi}.",
            "",
            table(rows),
            "",
            f"Checked: after the first pass the bucket holds {p1['verify']['objects']:,} objects "
            f"({p1['verify']['distinct_keys']:,} distinct source keys, {p1['verify']['bytes']:,} "
            "bytes = the bytes written, all PROCESSED, every tracked file `synced`); the unchanged "
            f"pass created {p2['created']} in {p2['runs']} runs. CLI: `{p2['cli_output']}`.",
            "",
            "Where the pass time goes (wall-clock timers around the package functions; "
            "\u21b3 = part of the row above):",
            "",
            breakdown_table([p1, p2]),
            "",
            reading,
            *(["", note] if note else []),
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--blobs", type=int, default=50_000)
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"), help="'-' to not write a file")
    ap.add_argument("--procs", type=int, default=3, help="seeding processes")
    ap.add_argument("--threads", type=int, default=8, help="seeding threads per process")
    ap.add_argument("--note", default="", help="extra sentence for RESULTS.md")
    ap.add_argument("--render", metavar="JSON", help="rewrite --out from a saved run")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--expect-files", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--expect-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        run_phase(args)
        return
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        text = section_text(saved["blobs"], saved["info"], saved["rows"], args.note)
        write_results(Path(args.out), text, SECTION)
        print(text)
        return

    from tests.azure_server import Azurite, free_port

    n = args.blobs
    (HERE / ".data").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"azure-{n}-", dir=HERE / ".data"))
    print(f"work dir {work}", flush=True)
    load_start = os.getloadavg()[0]
    (work / "azurite").mkdir()
    server = Azurite(free_port(), work / "azurite").start()
    try:
        server.service().create_container(CONTAINER)
        t0 = time.perf_counter()
        nbytes = seed(server.url, n, args.procs, args.threads)
        seed_secs = time.perf_counter() - t0
        print(f"seeded {n:,} blobs ({nbytes:,} B) in {seed_secs:.1f}s", flush=True)
        write_config(work, server.url)
        rows: list[dict[str, Any]] = []

        def phase(key: str, ph: str, name: str, base: str | None) -> dict[str, Any]:
            r = spawn(ph, work, server.url, n, nbytes)
            r.update(key=key, name=name)
            if base:
                r["base"] = {
                    k: next(x for x in rows if x["key"] == base)[k] for k in ("wall", "seconds")
                }
            if r["files"] != n:
                raise SystemExit(f"{name}: saw {r['files']} blobs, expected {n}")
            rows.append(r)
            print(f"  {name}: process {r['wall']:.2f}s, work {r['seconds']:.2f}s", flush=True)
            return r

        phase("bare1", "bare", "bare `list_blobs`, before the first pass", None)
        phase("list_pages", "list_pages", "AzureBlobProvider.list_pages", "bare1")
        first = phase("first", "pass", "first pass (`mixsync sync`)", "bare1")
        if first["created"] != n:
            raise SystemExit(f"first pass created {first['created']} objects, not {n}")
        phase("bare2", "bare", "bare `list_blobs`, before the unchanged pass", None)
        second = phase("second", "pass", "unchanged pass (`mixsync sync`)", "bare2")
        if second["created"] or second["runs"]:
            raise SystemExit(f"unchanged pass created {second['created']} in {second['runs']} runs")
        version = subprocess.run(
            [str(REPO / ".venv/node/node_modules/.bin/azurite-blob"), "--version"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        info = {
            "machine": machine_info(),
            "azurite": version,
            "seed_seconds": seed_secs,
            "seed_procs": args.procs,
            "seed_threads": args.threads,
            "load": f"{load_start:.1f} / {os.getloadavg()[0]:.1f}",
            "command": " ".join([".venv/bin/python", "bench/bench_azure.py", *sys.argv[1:]]),
        }
        saved = HERE / ".data" / f"last-azure-{n}.json"
        saved.write_text(json.dumps({"blobs": n, "info": info, "rows": rows}, indent=1))
        text = section_text(n, info, rows, args.note)
        print(text)
        if args.out != "-":
            write_results(Path(args.out), text, SECTION)
            print(f"\nwrote {args.out} (numbers saved in {saved})")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
