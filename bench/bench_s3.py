"""Benchmark: N objects in S3 (a local SeaweedFS) synced into a local bucket (issues 4, 12).

    .venv/bin/python bench/bench_s3.py [--objects N] [--new M] [--out bench/RESULTS.md|-]

Starts SeaweedFS on free loopback ports (tests/s3_servers.py), seeds N objects of 20-200 bytes
with concurrent PUTs, then times each phase as a whole process (start to exit, as a user times
it), with its own peak RSS:

  paginator    a bare boto3 `list_objects_v2` paginator over the prefix (python, boto3, the
               listing), measured again right before every pass
  rclone       `rclone lsf -R --fast-list` of the prefix (Debian's rclone)
  first pass   `mixsync -c syncs.yaml sync bench`
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
import shutil
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
    cli_pass,
    load_average,
    machine_info,
    machine_line,
    median_of,
    rclone,
    verify_bucket,
    whole_process,
    write_results,
)

SECTION = "## S3 (SeaweedFS) → local bucket (issues 4 and 12)"
SYNC_NAME = "bench"
BUCKET = "mixsync-bench"
PREFIX = "media/"
X = "\u00d7"
EXTENSIONS = (".mp4", ".jpg", ".json", ".txt", ".mov")
PAGINATOR = """
import sys, boto3
endpoint, key, secret, bucket, prefix = sys.argv[1:6]
client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=key, aws_secret_access_key=secret)
n = 0
for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000}):
    n += len(page.get("Contents", []))
print(n)
"""


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


def count_objects(work: Path) -> int:
    from sqlalchemy import func, select

    from mixsync_dagster.state import StateStore
    from mixsync_dagster.targets.local import objects

    store = StateStore(f"sqlite:///{work / 'state.db'}")
    with store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(objects)).scalar_one())


# ---------------------------------------------------------------- phases


def paginator(endpoint: str, expect: int) -> dict[str, Any]:
    from tests.s3_servers import ADMIN

    out = whole_process(
        [sys.executable, "-c", PAGINATOR, endpoint, ADMIN[0], ADMIN[1], BUCKET, PREFIX]
    )
    if out["code"] != 0 or int(out["output"].split()[-1]) != expect:
        raise SystemExit(f"paginator: {out['output'][-2000:]}")
    return out


def rclone_lsf(endpoint: str, expect: int) -> dict[str, Any] | None:
    from tests.s3_servers import ADMIN

    rc = rclone()
    if rc is None:
        return None
    # A CA bundle from the environment breaks rclone's plain-HTTP transport; loopback needs none.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env |= {
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": ADMIN[0],
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": ADMIN[1],
        "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
    }
    out = whole_process(
        [rc, "lsf", "-R", "--fast-list", "--files-only", "-q", f"bench:{BUCKET}/{PREFIX}"],
        env=env,
    )
    listed = [x for x in out["output"].splitlines() if x and " NOTICE: " not in x]
    if out["code"] != 0 or len(listed) != expect:
        raise SystemExit(f"rclone: {out['output'][-2000:]}")
    return out


def a_pass(work: Path, label: str, created: int, url: str, files: int, nbytes: int) -> Any:
    before = count_objects(work)
    out = cli_pass(work, label, SYNC_NAME, s3=True)
    out["created"] = count_objects(work) - before
    if out["created"] != created:
        raise SystemExit(f"{label} created {out['created']} objects, expected {created}")
    verify_bucket(url, SYNC_NAME, files, nbytes)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--new", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--procs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    from tests.s3_servers import start_seaweedfs

    n, m = args.objects, args.new
    (HERE / ".data").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"s3-{n}-", dir=HERE / ".data"))
    load0 = load_average()
    server = start_seaweedfs(work / "weed")
    try:
        server.client().create_bucket(Bucket=BUCKET)
        t0 = time.perf_counter()
        nbytes = seed(server.endpoint, [(i, False) for i in range(n)], args.procs, args.threads)
        seed_secs = time.perf_counter() - t0
        print(f"seeded {n:,} objects in {seed_secs:.0f} s", flush=True)
        write_config(work, server.endpoint)
        url = f"sqlite:///{work / 'state.db'}"
        r: dict[str, Any] = {}
        r["pag1"] = median_of([paginator(server.endpoint, n) for _ in range(args.repeat)])
        r["rclone"] = rclone_lsf(server.endpoint, n)
        r["first"] = a_pass(work, "first", n, url, n, nbytes)
        print(f"first pass {r['first']['seconds']:.1f} s", flush=True)
        r["pag2"] = median_of([paginator(server.endpoint, n) for _ in range(args.repeat)])
        r["second"] = median_of(
            [a_pass(work, f"second{i}", 0, url, n, nbytes) for i in range(args.repeat)]
        )
        rng = random.Random(4)
        added = sorted(rng.sample(range(n), m))
        nbytes += seed(server.endpoint, [(i, True) for i in added], args.procs, args.threads)
        r["pag3"] = median_of([paginator(server.endpoint, n + m) for _ in range(args.repeat)])
        r["third"] = a_pass(work, "third", m, url, n + m, nbytes)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "objects": n,
        "new": m,
        "rows": r,
        "seed_seconds": seed_secs,
        "machine": machine_info(),
        "load": [load0, load_average()],
        "note": args.note,
    }
    (HERE / ".data" / f"last-s3-{n}.json").write_text(json.dumps(result, default=str, indent=1))
    text = render(result)
    print(text)
    if args.out != "-":
        write_results(Path(args.out), text, SECTION)


def render(res: dict[str, Any]) -> str:
    n, m, r = res["objects"], res["new"], res["rows"]

    def row(label: str, x: dict[str, Any] | None, count: int, base: str | None) -> str:
        if x is None:
            return f"| {label} | {count:,} | - | - | - | - | - |"
        s = x["seconds"]
        ratio = f"{s / r[base]['seconds']:.2f}{X}" if base else "1\u00d7"
        every = ", ".join(str(v) for v in x.get("all", [round(s, 2)]))
        return (
            f"| {label} | {count:,} | {s:.2f} | {count / s:,.0f} | {ratio} | "
            f"{x['peak_rss']:.0f} | {every} |"
        )

    table = "\n".join(
        [
            f"| phase (whole process) | objects | seconds | objects/s | {X} paginator | "
            "peak RSS MB | runs (s) |",
            "|---|---:|---:|---:|---:|---:|---|",
            row("boto3 paginator, before the first pass", r["pag1"], n, None),
            row("`rclone lsf -R --fast-list`", r["rclone"], n, "pag1"),
            row("first pass (`mixsync sync`)", r["first"], n, "pag1"),
            row("boto3 paginator, before the unchanged pass", r["pag2"], n, None),
            row("unchanged pass", r["second"], n, "pag2"),
            row(f"boto3 paginator, after adding {m:,}", r["pag3"], n + m, None),
            row(f"pass with {m:,} new among {n + m:,}", r["third"], n + m, "pag3"),
        ]
    )
    steps = ["| step (timers inside the pass) | first | unchanged | +new |", "|---|---:|---:|---:|"]
    for k, v in r["first"]["timers"].items():
        cells = [
            f"{p['timers'].get(k, {'seconds': 0.0})['seconds']:.2f}"
            for p in (r["first"], r["second"], r["third"])
        ]
        steps.append(
            f"| {k.strip()} ({v['calls']:,} calls in the first) | " + " | ".join(cells) + " |"
        )
    f1, s2, t3 = r["first"], r["second"], r["third"]
    reading = (
        f"Whole processes, side by side in one run: the first pass syncs {n:,} objects in "
        f"{f1['seconds']:.1f} s ({f1['seconds'] / r['pag1']['seconds']:.2f}{X} the bare boto3 "
        f"paginator's {r['pag1']['seconds']:.1f} s); the unchanged pass takes "
        f"{s2['seconds']:.1f} s ({s2['seconds'] / r['pag2']['seconds']:.2f}{X}) and launches no "
        f"run; {m:,} new objects scattered among {n + m:,} take {t3['seconds']:.1f} s "
        f"({t3['seconds'] / r['pag3']['seconds']:.2f}{X}). Presigning is now done only for "
        "targets that fetch URLs: the local bucket asks for none. CLI: "
        f"`{t3['cli']}`. Seeding took {res['seed_seconds']:.0f} s."
    )
    return "\n\n".join(
        [
            SECTION,
            f"`.venv/bin/python bench/bench_s3.py --objects {n} --new {m}` — {n:,} objects of "
            "20-200 bytes in one SeaweedFS bucket (loopback), 100 per folder, three folder "
            "levels; syncs.yaml defaults, SQLite state, local bucket. Every phase is a whole "
            "process timed from start to exit; quick phases are the median of several runs.",
            machine_line(res["machine"])
            + f" Load average (1 min) at start / end: {res['load'][0]:.1f} / {res['load'][1]:.1f}.",
            table,
            "\n".join(steps),
            reading + (f" {res['note']}" if res.get("note") else ""),
        ]
    )


if __name__ == "__main__":
    main()
