"""Benchmark: N objects in S3 (a local SeaweedFS) synced into a local bucket (issue 4).

    .venv/bin/python bench/bench_s3.py [--objects N] [--new M] [--out bench/RESULTS.md]

Starts SeaweedFS on free loopback ports (tests/s3_servers.py), seeds N objects of 20-200 bytes
with concurrent PUTs, then runs each phase in a fresh subprocess so each one's peak RSS
(ru_maxrss) is its own:

  paginator    a bare boto3 `list_objects_v2` paginator over the same prefix (the baseline),
               measured again right before every pass
  list_pages   S3Provider.list_pages over the whole prefix, nothing else
  first pass   `mixsync -c syncs.yaml sync bench` in process (CliRunner)
  unchanged    the same command again (must create 0 objects and launch 0 runs)
  new          M new objects PUT among the N (scattered over the key space), then the command
               again (must create exactly M)

After each pass the bucket must hold exactly the objects written (distinct keys, bytes, all
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

from bench_local import (  # noqa: E402
    install_timers,
    machine_info,
    peak_rss_mb,
    rss_now_mb,
    verify_bucket,
    write_results,
)

SECTION = "## S3 (SeaweedFS) → local bucket (issue 4)"
SYNC_NAME = "bench"
BUCKET = "mixsync-bench"
PREFIX = "media/"
X = "\u00d7"
EXTENSIONS = (".mp4", ".jpg", ".json", ".txt", ".mov")
PRESIGN = "    of which S3Provider.blob_url (presign)"
CLIENTS = "S3 client creation (make_client, once per step)"


# ---------------------------------------------------------------- data


def object_key(i: int, new: bool = False) -> str:
    """100 objects per folder, three folder levels: media/000/00/00/f0000042.mp4.

    The new objects get a name that sorts beside an existing one (f0000042n.mp4), so they are
    scattered over the whole key space, not appended at its end.
    """
    j = i // 100
    name = f"f{i:07d}{'n' if new else ''}{EXTENSIONS[i % 5]}"
    return f"{PREFIX}{j // 100:03d}/{(j // 10) % 10:02d}/{j % 10:02d}/{name}"


def body(i: int, new: bool = False) -> bytes:
    rng = random.Random(i * 2 + int(new))
    return rng.randbytes(rng.randint(20, 200))


def _put_range(endpoint: str, keys: list[tuple[int, bool]], threads: int) -> int:
    """Worker process: PUT the given objects with a thread pool; returns bytes written."""
    from tests.s3_servers import ADMIN, S3Server

    client = S3Server(endpoint, ADMIN[0], ADMIN[1], lambda: None).client()

    def put(spec: tuple[int, bool]) -> int:
        i, new = spec
        data = body(i, new)
        client.put_object(Bucket=BUCKET, Key=object_key(i, new), Body=data)
        return len(data)

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(put, keys))


def seed(endpoint: str, specs: list[tuple[int, bool]], procs: int, threads: int) -> int:
    chunks = [specs[k::procs] for k in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        return sum(pool.map(_put_range, [endpoint] * procs, chunks, [threads] * procs))


def write_config(work: Path, endpoint: str) -> Path:
    import yaml

    from tests.s3_servers import ADMIN, S3Server

    server = S3Server(endpoint, ADMIN[0], ADMIN[1], lambda: None)
    cfg = work / "syncs.yaml"
    doc = {
        "state": {"url": f"sqlite:///{work / 'state.db'}"},
        "connections": {"src": server.connection()},
        "buckets": {"media": {"target": "local"}},
        # max_objects_per_run, batch_size, filters, mapping: all defaults.
        "syncs": [
            {
                "name": SYNC_NAME,
                "bucket": "media",
                "connection_id": "src",
                "source_path": f"{BUCKET}/{PREFIX}",
            }
        ],
    }
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    home = work / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    return cfg


# ---------------------------------------------------------------- phases (run in a subprocess)


def phase_paginator(args: argparse.Namespace) -> dict[str, Any]:
    """The baseline: a bare boto3 paginator, as dagster-aws's S3Resource client would list."""
    from dagster_aws.s3 import S3Resource

    from tests.s3_servers import ADMIN, REGION

    client = S3Resource(
        region_name=REGION,
        endpoint_url=args.endpoint,
        use_ssl=False,
        aws_access_key_id=ADMIN[0],
        aws_secret_access_key=ADMIN[1],
    ).get_client()
    rss0 = rss_now_mb()
    t0 = time.perf_counter()
    files = size = pages = 0
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=PREFIX, PaginationConfig={"PageSize": 1000}
    ):
        pages += 1
        for o in page.get("Contents", []):
            files += 1
            size += o["Size"]
    secs = time.perf_counter() - t0
    return {"files": files, "seconds": secs, "rss_before": rss0, "bytes": size, "pages": pages}


def phase_list_pages(args: argparse.Namespace) -> dict[str, Any]:
    from mixsync_dagster.core.engine import PAGE_SIZE

    from mixsync_dagster.config import load_config
    from mixsync_dagster.providers import get_provider

    cfg = load_config(str(Path(args.workdir) / "syncs.yaml"))
    prov = get_provider(cfg, "src")
    rss0 = rss_now_mb()
    t0 = time.perf_counter()
    files = pages = size = 0
    for page in prov.list_pages(f"{BUCKET}/{PREFIX}", None, PAGE_SIZE):
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
    import mixsync_dagster.providers.s3

    import_secs = time.perf_counter() - t_imp
    before = count_objects(work)
    timers = install_timers()
    install_s3_timers(timers)
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
    m = re.search(
        r"listed (\d+), runs (\d+), synced (\d+), excluded (\d+), failed (\d+)", res.output
    )
    if not m:
        raise SystemExit(f"unexpected CLI output: {res.output}")
    listed, runs, synced, excluded, failed = map(int, m.groups())
    out.update(listed=listed, runs=runs, synced=synced, excluded=excluded, failed=failed)
    out["created"] = count_objects(work) - before
    out["files"] = listed
    out["verify"] = verify_bucket(work, args.expect_files, args.expect_bytes)
    return out


def install_s3_timers(acc: dict[str, list[float]]) -> None:
    """Add the S3 provider's own costs to bench_local's timers (same wall-clock wrappers)."""
    from mixsync_dagster.providers import s3

    def wrap(owner: Any, attr: str, label: str) -> None:
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

    wrap(s3.S3Provider, "blob_url", PRESIGN)
    wrap(s3, "make_client", CLIENTS)
    # Show the presign row under create_objects, where it is spent.
    rows = list(acc.items())
    acc.clear()
    for k, v in rows:
        if k != PRESIGN:
            acc[k] = v
        if k == "    of which LocalBucketTarget.put_objects":
            acc[PRESIGN] = dict(rows)[PRESIGN]


def run_phase(args: argparse.Namespace) -> None:
    if args.phase == "paginator":
        out = phase_paginator(args)
    elif args.phase == "list_pages":
        out = phase_list_pages(args)
    else:
        out = phase_pass(args)
    out.setdefault("peak_rss", peak_rss_mb())
    print("BENCH-RESULT " + json.dumps(out), flush=True)


# ---------------------------------------------------------------- orchestration


def spawn(
    phase: str, work: Path, endpoint: str, expect_files: int, expect_bytes: int
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--phase",
        phase,
        "--workdir",
        str(work),
        "--endpoint",
        endpoint,
        "--expect-files",
        str(expect_files),
        "--expect-bytes",
        str(expect_bytes),
    ]
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


def weed_peak_rss_mb(pid: int) -> float:
    """SeaweedFS's own high-water RSS (VmHWM), for the record."""
    try:
        with open(f"/proc/{pid}/status") as f:
            line = next(x for x in f if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return float("nan")


def table(rows: list[dict[str, Any]]) -> str:
    head = f"| phase | objects | seconds | objects/s | {X} paginator time | peak RSS MB |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        fps = r["files"] / r["seconds"] if r["seconds"] > 0 else float("inf")
        ratio = f"{r['seconds'] / r['base']:.1f}{X}" if r.get("base") else "1\u00d7"
        lines.append(
            f"| {r['name']} | {r['files']:,} | {r['seconds']:.2f} | {fps:,.0f} | {ratio} | "
            f"{r['peak_rss']:.0f} |"
        )
    return "\n".join(lines)


def breakdown_table(passes: list[dict[str, Any]]) -> str:
    labels = ["first pass", "unchanged", "+new"]
    head = "| step | " + " | ".join(f"{lab}: calls | seconds" for lab in labels) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(passes)]
    keys = list(passes[0]["breakdown"])
    for k in keys:
        depth = (len(k) - len(k.lstrip())) // 2
        label = "\u2003" * max(depth - 1, 0) + ("\u21b3 " if depth else "") + k.strip()
        cells = []
        for p in passes:
            v = p["breakdown"].get(k, {"calls": 0, "seconds": 0.0})
            cells.append(f"{v['calls']:,} | {v['seconds']:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        "| whole `mixsync sync` command | "
        + " | ".join(f"1 | {p['seconds']:.2f}" for p in passes)
        + " |"
    )
    return "\n".join(lines)


def reading(n: int, m: int, by: dict[str, dict[str, Any]], info: dict[str, Any]) -> str:
    pg1, lp, p1 = by["paginator1"], by["list_pages"], by["first"]
    pg2, p2, pg3, p3 = by["paginator2"], by["second"], by["paginator3"], by["third"]

    def b(p: dict[str, Any], k: str) -> float:
        return float({kk.strip(): v["seconds"] for kk, v in p["breakdown"].items()}.get(k, 0.0))

    def calls(p: dict[str, Any], k: str) -> int:
        return int({kk.strip(): v["calls"] for kk, v in p["breakdown"].items()}.get(k, 0))

    plan = "engine.plan_chunk (list + track)"
    run = "execute_in_process (whole Dagster run)"
    return (
        f"Listing: a bare boto3 paginator reads the {n:,} keys in {pg1['seconds']:.1f} s "
        f"({n / pg1['seconds']:,.0f} keys/s, {pg1['pages']} pages of 1,000); "
        f"S3Provider.list_pages needs {lp['seconds']:.1f} s ({lp['seconds'] / pg1['seconds']:.2f}"
        f"{X}: the same requests and XML parsing, plus a FileItem per key). "
        f"The first pass takes {p1['seconds']:.1f} s ({n / p1['seconds']:,.0f} objects/s, "
        f"{p1['seconds'] / pg1['seconds']:.1f}{X} the paginator) in {p1['runs']} Dagster runs: "
        f"planning (listing + tracking) {b(p1, plan):.1f} s, the runs {b(p1, run):.1f} s, of "
        f"which presigning {n:,} blob URLs is {b(p1, PRESIGN.strip()):.1f} s "
        f"({b(p1, PRESIGN.strip()) / n * 1e6:.0f} µs each) and building the "
        f"{calls(p1, CLIENTS)} S3 clients (one per sensor tick or op) "
        f"{b(p1, CLIENTS):.1f} s. "
        f"The unchanged pass creates {p2['created']} objects and launches {p2['runs']} runs in "
        f"{p2['seconds']:.1f} s ({p2['seconds'] / pg2['seconds']:.2f}{X} the paginator's "
        f"{pg2['seconds']:.1f} s measured just before it), {b(p2, plan):.1f} s of it planning. "
        f"With {m:,} new objects scattered among them, the pass lists {p3['listed']:,} keys and "
        f"creates {p3['created']:,} objects in {p3['runs']} run(s) in {p3['seconds']:.1f} s "
        f"({p3['seconds'] / pg3['seconds']:.2f}{X} the paginator's {pg3['seconds']:.1f} s). "
        f"Peak RSS: first pass {p1['peak_rss']:.0f} MB, i.e. "
        f"{p1['peak_rss'] - p1['rss_before']:.0f} MB over the {p1['rss_before']:.0f} MB "
        f"resident before it (interpreter, Dagster, boto3); unchanged pass "
        f"{p2['peak_rss']:.0f} MB (+{p2['peak_rss'] - p2['rss_before']:.0f} MB); +new pass "
        f"{p3['peak_rss']:.0f} MB (+{p3['peak_rss'] - p3['rss_before']:.0f} MB); the paginator "
        f"process {pg1['peak_rss']:.0f} MB (+{pg1['peak_rss'] - pg1['rss_before']:.0f} MB "
        f"over its imports of dagster-aws). SeaweedFS itself peaked at "
        f"{info['weed_peak_rss']:.0f} MB. "
        f"Seeding {n:,} objects took {info['seed_seconds']:.0f} s "
        f"({n / info['seed_seconds']:,.0f} PUT/s, {info['seed_procs']} processes {X} "
        f"{info['seed_threads']} threads)."
    )


def section_text(
    n: int, m: int, info: dict[str, Any], rows: list[dict[str, Any]], note: str, command: str
) -> str:
    by = {r["key"]: r for r in rows}
    p1, p2, p3 = by["first"], by["second"], by["third"]
    mi = ", ".join(f"{k} {v}" for k, v in info["machine"].items())
    if info.get("load"):
        mi += f", load average (1 min) at start / end {info['load']}"
    return "\n".join(
        [
            SECTION,
            "",
            f"`{command}` — {n:,} objects of 20-200 bytes in one SeaweedFS bucket "
            f"(`weed server -s3` {info['weed_version']}, on this machine, loopback), 100 per "
            "folder, three folder levels; syncs.yaml with defaults (max_objects_per_run 5000, "
            "batch_size 50, no filters, no mapping), SQLite state, local bucket target. Each "
            "phase runs in a fresh subprocess (peak RSS = that process's ru_maxrss, Python + "
            "imports included); pass times are the `mixsync sync` command alone (CliRunner, "
            "imports excluded). The paginator baseline is dagster-aws's S3Resource client "
            f"listing the same prefix, re-measured right before each pass; {X} is against it.",
            "",
            f"Machine: {mi}.",
            "",
            table(rows),
            "",
            f"Checked: after the first pass the bucket holds {p1['verify']['objects']:,} objects "
            f"({p1['verify']['distinct_keys']:,} distinct source keys, "
            f"{p1['verify']['bytes']:,} bytes = the bytes written, all PROCESSED, every tracked "
            f"file `synced`); the first pass created {p1['created']:,}, the unchanged pass "
            f"{p2['created']} in {p2['runs']} runs, the pass after adding {m:,} created "
            f"{p3['created']:,} (bucket: {p3['verify']['objects']:,} objects, "
            f"{p3['verify']['bytes']:,} bytes). CLI: `{p3['cli_output']}`.",
            "",
            "Where the pass time goes (wall-clock timers around the package functions in the "
            "pass subprocess; \u21b3 = part of the row above):",
            "",
            breakdown_table([p1, p2, p3]),
            "",
            reading(n, m, by, info),
            *(["", note] if note else []),
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--new", type=int, default=1_000, help="objects added before the third pass")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"), help="'-' to not write a file")
    ap.add_argument("--procs", type=int, default=3, help="seeding processes")
    ap.add_argument("--threads", type=int, default=8, help="seeding threads per process")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (weed data + state)")
    ap.add_argument("--note", default="", help="extra sentence for RESULTS.md")
    ap.add_argument("--render", metavar="JSON", help="rewrite --out from a saved last-s3-N.json")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--expect-files", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--expect-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        run_phase(args)
        return
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        text = section_text(
            saved["objects"],
            saved["new"],
            saved["info"],
            saved["rows"],
            args.note,
            saved["command"],
        )
        write_results(Path(args.out), text, SECTION)
        print(text)
        return

    from tests.s3_servers import start_seaweedfs

    n, m = args.objects, args.new
    (HERE / ".data").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"s3-{n}-", dir=HERE / ".data"))
    print(f"work dir {work}", flush=True)
    load_start = os.getloadavg()[0]
    server = start_seaweedfs(work / "weed")
    try:
        weed_pid = server.pid
        version = subprocess.run(
            [str(Path(sys.executable).with_name("weed")), "version"], capture_output=True, text=True
        ).stdout.split("\n")[0]
        server.client().create_bucket(Bucket=BUCKET)
        t0 = time.perf_counter()
        nbytes = seed(server.endpoint, [(i, False) for i in range(n)], args.procs, args.threads)
        seed_secs = time.perf_counter() - t0
        print(f"seeded {n:,} objects ({nbytes:,} B) in {seed_secs:.1f}s", flush=True)
        write_config(work, server.endpoint)
        rows: list[dict[str, Any]] = []

        def phase(key: str, ph: str, name: str, files: int, nb: int, base: str | None) -> None:
            r = spawn(ph, work, server.endpoint, files, nb)
            r.update(key=key, name=name)
            if base:
                r["base"] = next(x for x in rows if x["key"] == base)["seconds"]
            if r["files"] != files:
                raise SystemExit(f"{name}: saw {r['files']} objects, expected {files}")
            rows.append(r)
            extra = f"  [{r['cli_output']}]" if "cli_output" in r else ""
            print(
                f"  {name}: {r['seconds']:.2f}s, peak RSS {r['peak_rss']:.0f} MB{extra}", flush=True
            )

        phase("paginator1", "paginator", "boto3 paginator, before the first pass", n, nbytes, None)
        phase(
            "list_pages", "list_pages", "S3Provider.list_pages (all pages)", n, nbytes, "paginator1"
        )
        phase("first", "pass", "first pass (`mixsync sync`)", n, nbytes, "paginator1")
        if rows[-1]["created"] != n:
            raise SystemExit(f"first pass created {rows[-1]['created']} objects, not {n}")
        phase(
            "paginator2", "paginator", "boto3 paginator, before the unchanged pass", n, nbytes, None
        )
        phase("second", "pass", "unchanged pass", n, nbytes, "paginator2")
        if rows[-1]["created"] or rows[-1]["runs"]:
            raise SystemExit(
                f"unchanged pass created {rows[-1]['created']} in {rows[-1]['runs']} runs"
            )
        rng = random.Random(4)
        added = sorted(rng.sample(range(n), m))
        t1 = time.perf_counter()
        nbytes += seed(server.endpoint, [(i, True) for i in added], args.procs, args.threads)
        print(f"added {m:,} objects in {time.perf_counter() - t1:.1f}s", flush=True)
        phase(
            "paginator3", "paginator", f"boto3 paginator, after adding {m:,}", n + m, nbytes, None
        )
        phase("third", "pass", f"pass with {m:,} new among {n + m:,}", n + m, nbytes, "paginator3")
        if rows[-1]["created"] != m:
            raise SystemExit(f"the pass after adding {m} created {rows[-1]['created']}")
        print()
        print(table(rows))
        info = {
            "machine": machine_info(),
            "weed_version": version.replace("version ", ""),
            "weed_peak_rss": weed_peak_rss_mb(weed_pid) if weed_pid else float("nan"),
            "seed_seconds": seed_secs,
            "seed_procs": args.procs,
            "seed_threads": args.threads,
            "load": f"{load_start:.1f} / {os.getloadavg()[0]:.1f}",
        }
        command = " ".join([".venv/bin/python", "bench/bench_s3.py", *sys.argv[1:]])
        saved = HERE / ".data" / f"last-s3-{n}.json"
        saved.write_text(
            json.dumps(
                {"objects": n, "new": m, "info": info, "command": command, "rows": rows}, indent=1
            )
        )
        text = section_text(n, m, info, rows, args.note, command)
        print(text)
        if args.out != "-":
            write_results(Path(args.out), text, SECTION)
            print(f"\nwrote {args.out} (numbers saved in {saved})")
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
