"""No value read from `{env: VAR}` is ever shown, and no URL userinfo: the leak family.

A secret is planted in every field that takes `{env: VAR}` (state URL, local root, every S3,
GCS and Mux credential and endpoint, every Mixpeek bucket setting), plus a Mixpeek `base_url`
with a password written in the file itself. Nine syncs then run real passes, good and failing:
through the real sensors and jobs on a real Dagster instance (tests/harness.py's Driver), and
through the `mixsync` CLI as a subprocess (validate, check, sync, status, objects, preview,
dlq). Afterwards every byte they left is searched for every planted value and its obvious
transforms (lower-cased, URL-quoted, JSON-escaped): the state database file, every file of the
Dagster home (event log, runs with their tags and config, compute logs), the event records and
runs read back through Dagster's API, the sensors' skip messages and tick errors, everything
written to stdout/stderr in this process and everything every CLI command printed. Presigned
and signed URLs must be nowhere either: they are made when a target needs them and never kept.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml
from dagster import DagsterInstance, RunsFilter

from mixsync_dagster.targets import mixpeek
from tests.fake_mixpeek import FakeMixpeek
from tests.fake_mux import FakeMux
from tests.gcs_server import FakeGCS, service_account_info
from tests.harness import Driver, objects
from tests.s3_servers import MotoServer
from tests.test_target_mixpeek import FAST

pytest_plugins = ["tests.s3_servers", "tests.gcs_server"]

BIN = Path(sys.executable).parent / "mixsync"
REPO = Path(__file__).resolve().parents[1]

KEY_ID = "AKIALEAKKEYID7Q3W9Z2"
PEM_MARKER_LEN = 48
MIXPEEK_KEY = "sk_Leak-Mixpeek-Api-Key-9f8e7d"
MIXPEEK_NS = "ns_Leak-Namespace-5c4b"
MIXPEEK_BUCKET = "bkt_Leak-Bucket-Id-B9"
LITERAL_PASSWORD = "Literal-Pass-L2"


def planted(
    tmp_path: Path, moto: MotoServer, gcs: FakeGCS, mux: FakeMux, mp: FakeMixpeek
) -> dict[str, str]:
    """Every environment variable the config reads, with its distinctive value."""
    moto_port = moto.endpoint.rsplit(":", 1)[1]
    gcs_port = gcs.url.rsplit(":", 1)[1]
    mux_port = mux.url.rsplit(":", 1)[1]
    key = service_account_info("http://127.0.0.1:9/token")  # port 9: nothing answers
    return {
        "LEAK_STATE_URL": f"sqlite:///{tmp_path / 'Leak-State-Dir-K3' / 'state.db'}",
        "LEAK_ROOT": "./Leak-Root-Dir-R7",
        "LEAK_S3_REGION": "leak-region-4",
        "LEAK_S3_ENDPOINT": f"http://localhost:{moto_port}",
        "LEAK_S3_KEY_ID": KEY_ID,
        "LEAK_S3_SECRET": "Leak-Secret-Access-Key-S1x",
        "LEAK_S3_TOKEN": "Leak-Session-Token-T1y",
        "LEAK_S3_BAD_ENDPOINT": f"http://127.0.0.1:{moto_port}/Leak-Endpoint-Path-E5",
        "LEAK_GCS_PROJECT": "leak-project-g3",
        "LEAK_GCS_ENDPOINT": f"http://localhost:{gcs_port}",
        "LEAK_GCS_CREDENTIALS": json.dumps(key),
        "LEAK_MUX_ID": "Leak-Mux-Token-Id-M1",
        "LEAK_MUX_SECRET": "Leak-Mux-Token-Secret-M2",
        "LEAK_MUX_WEBHOOK": "Leak-Mux-Webhook-M3",
        "LEAK_MUX_API": mux.url,
        "LEAK_MUX_STREAM": f"http://localhost:{mux_port}",
        "LEAK_MP_BUCKET": MIXPEEK_BUCKET,
        "LEAK_MP_NS": MIXPEEK_NS,
        "LEAK_MP_KEY": MIXPEEK_KEY,
        "LEAK_MP_URL": mp.url,
        "LEAK_MP_USERINFO_URL": mp.url.replace("://", "://leakuser:Leak-Pass-P4@"),
    }


def env(var: str) -> dict[str, str]:
    return {"env": var}


def config_doc(tmp_path: Path, mp: FakeMixpeek, s3_bucket: str, gcs_bucket: str) -> dict[str, Any]:
    literal_url = mp.url.replace("://", f"://literaluser:{LITERAL_PASSWORD}@")
    mixpeek_bucket = {
        "target": "mixpeek",
        "bucket_id": env("LEAK_MP_BUCKET"),
        "namespace": env("LEAK_MP_NS"),
        "api_key": env("LEAK_MP_KEY"),
        "base_url": env("LEAK_MP_URL"),
        "timeout_seconds": 5,
    }
    s3_common = {"provider": "s3", "use_ssl": False, "addressing_style": "path"}
    creds = {
        "access_key_id": env("LEAK_S3_KEY_ID"),
        "secret_access_key": env("LEAK_S3_SECRET"),
        "session_token": env("LEAK_S3_TOKEN"),
    }
    return {
        "state": {"url": env("LEAK_STATE_URL")},
        "connections": {
            "files": {"provider": "local", "root": env("LEAK_ROOT")},
            "s3_ok": {
                **s3_common,
                "region": env("LEAK_S3_REGION"),
                "endpoint_url": env("LEAK_S3_ENDPOINT"),
                "credentials": creds,
            },
            "s3_bad": {
                **s3_common,
                "region": "us-east-1",
                "endpoint_url": env("LEAK_S3_BAD_ENDPOINT"),
                "credentials": creds,
            },
            "gcs_ok": {
                "provider": "gcs",
                "project": env("LEAK_GCS_PROJECT"),
                "endpoint_url": env("LEAK_GCS_ENDPOINT"),
            },
            "gcs_bad": {
                "provider": "gcs",
                "project": env("LEAK_GCS_PROJECT"),
                "endpoint_url": env("LEAK_GCS_ENDPOINT"),
                "credentials_json": env("LEAK_GCS_CREDENTIALS"),
            },
            "mux": {
                "provider": "mux",
                "access_token_id": env("LEAK_MUX_ID"),
                "access_token_secret": env("LEAK_MUX_SECRET"),
                "webhook_secret": env("LEAK_MUX_WEBHOOK"),
                "api_base_url": env("LEAK_MUX_API"),
                "stream_base_url": env("LEAK_MUX_STREAM"),
            },
        },
        "buckets": {
            "media": {"target": "local"},
            "mp": mixpeek_bucket,
            "mp_userinfo": {**mixpeek_bucket, "base_url": env("LEAK_MP_USERINFO_URL")},
            "mp_literal": {**mixpeek_bucket, "base_url": literal_url},
        },
        "syncs": [
            {
                "name": "local_files",
                "bucket": "media",
                "connection_id": "files",
                "source_path": "in",
            },
            {"name": "to_mixpeek", "bucket": "mp", "connection_id": "files", "source_path": "in"},
            {
                "name": "userinfo",
                "bucket": "mp_userinfo",
                "connection_id": "files",
                "source_path": "in",
            },
            {
                "name": "literal",
                "bucket": "mp_literal",
                "connection_id": "files",
                "source_path": "in",
            },
            {
                "name": "s3_files",
                "bucket": "mp",
                "connection_id": "s3_ok",
                "source_path": s3_bucket,
            },
            {
                "name": "s3_bad",
                "bucket": "media",
                "connection_id": "s3_bad",
                "source_path": s3_bucket,
            },
            {
                "name": "gcs_files",
                "bucket": "media",
                "connection_id": "gcs_ok",
                "source_path": gcs_bucket,
            },
            {
                "name": "gcs_bad",
                "bucket": "media",
                "connection_id": "gcs_bad",
                "source_path": gcs_bucket,
            },
            {
                "name": "mux_files",
                "bucket": "media",
                "connection_id": "mux",
                "source_path": "mux://",
            },
        ],
    }


def forms(value: str) -> set[str]:
    """The value and its obvious transforms, lower-cased for a case-insensitive search."""
    out = {value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1]}
    return {f.lower() for f in out}


def needles(values: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """What must appear nowhere → where it was planted."""
    out: dict[str, str] = {}
    for var, value in values.items():
        for f in forms(value):
            out[f] = var
    root = str((tmp_path / values["LEAK_ROOT"]).resolve())
    for f in forms(root) | forms(Path(root).as_uri()):
        out[f] = "LEAK_ROOT (resolved)"
    for marker in ("Leak-Root-Dir-R7", "Leak-State-Dir-K3", "Leak-Endpoint-Path-E5"):
        out[marker.lower()] = f"{marker} (a part of a planted value)"
    key = json.loads(values["LEAK_GCS_CREDENTIALS"])["private_key"]
    body = "".join(key.splitlines()[1:-1])
    out[body[:PEM_MARKER_LEN].lower()] = "the private key in LEAK_GCS_CREDENTIALS"
    for marker in ("Leak-Pass-P4", "leakuser:", LITERAL_PASSWORD, "literaluser:"):
        out[marker.lower()] = f"{marker} (URL userinfo)"
    for marker in (
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Goog-Signature",
        "X-Amz-Security-Token",
    ):
        out[marker.lower()] = f"{marker} (a presigned URL)"
    return out


def find_leaks(haystacks: dict[str, str], wanted: dict[str, str]) -> list[str]:
    leaks = []
    for where, text in haystacks.items():
        low = text.lower()
        for needle, what in wanted.items():
            if needle in low:
                at = low.index(needle)
                leaks.append(f"{what} in {where}: …{text[max(0, at - 80) : at + 80]!r}…")
    return leaks


def files_under(folder: Path, skip: set[Path]) -> dict[str, str]:
    out = {}
    for p in folder.rglob("*"):
        if p.is_file() and not any(p == s or s in p.parents for s in skip):
            out[str(p)] = p.read_bytes().decode("utf-8", "replace")
    return out


def run_cli(args: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, env=environ, timeout=300
    )


@pytest.mark.timeout(900)
def test_planted_secrets_never_leak(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    moto_s3: MotoServer,
    fake_gcs: FakeGCS,
) -> None:
    monkeypatch.setattr(mixpeek, "DEFAULT_BUDGET", FAST)
    mux = FakeMux(token_id="Leak-Mux-Token-Id-M1", token_secret="Leak-Mux-Token-Secret-M2").start()
    mp = FakeMixpeek(api_key=MIXPEEK_KEY, namespace=MIXPEEK_NS, buckets=(MIXPEEK_BUCKET,)).start()
    try:
        values = planted(tmp_path, moto_s3, fake_gcs, mux, mp)
        for var, value in values.items():
            monkeypatch.setenv(var, value)
        (tmp_path / "Leak-State-Dir-K3").mkdir()
        src = tmp_path / "Leak-Root-Dir-R7" / "in"
        src.mkdir(parents=True)
        for i in range(3):
            (src / f"clip_{i}.txt").write_text(f"clip {i}\n")
        s3_bucket = "leak-" + uuid.uuid4().hex[:8]
        moto_s3.client().create_bucket(Bucket=s3_bucket)
        moto_s3.seed(s3_bucket, [(f"v/{i}.mp4", b"video") for i in range(2)])
        gcs_bucket = fake_gcs.client().create_bucket("leak-" + uuid.uuid4().hex[:8])
        gcs_bucket.blob("a.txt").upload_from_string(b"gcs file")
        asset = mux.add_asset(title="a video")

        doc = config_doc(tmp_path, mp, s3_bucket, gcs_bucket.name)
        cfg = tmp_path / "syncs.yaml"
        write_config_doc(cfg, doc)
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        monkeypatch.setenv("DAGSTER_HOME", str(home))

        texts: dict[str, str] = {}
        # ---- the Dagster path: real sensors and jobs, in this process
        with DagsterInstance.from_config(str(home)) as instance:
            d = Driver(cfg, instance)
            for s in doc["syncs"]:
                texts |= drive(d, s["name"])
            texts |= dagster_records(instance)
        # ---- the CLI path, as a user runs it
        environ = dict(os.environ)
        commands = [["validate"], ["status", "--json"], ["objects", "media", "--json"]]
        commands += [["check", c] for c in doc["connections"]]
        commands += [["check", b] for b in doc["buckets"]]
        for s in doc["syncs"]:
            commands += [["sync", s["name"]], ["preview", s["name"], "--json"]]
        commands += [["dlq", "list", s, "--json"] for s in ("userinfo", "literal", "s3_files")]
        commands += [["status"]]
        ran_ok = set()
        for args in commands:
            res = run_cli(["-c", str(cfg), *args], environ)
            texts[f"mixsync {' '.join(args)}"] = res.stdout + res.stderr
            assert "Traceback" not in res.stderr, (args, res.stderr)
            if res.returncode == 0:
                ran_ok.add(" ".join(args))
        captured = capfd.readouterr()
        texts["this process's stdout"] = captured.out
        texts["this process's stderr"] = captured.err
        texts |= files_under(tmp_path, skip={cfg, tmp_path / "Leak-Root-Dir-R7"})

        # The passes really ran: the good syncs synced, the failing ones failed on record.
        state_url = values["LEAK_STATE_URL"]
        synced = {o["source_key"] for o in objects(state_url)}
        assert "in/clip_0.txt" in synced
        assert f"{gcs_bucket.name}/a.txt" in synced
        assert asset["id"] in synced
        assert {"sync local_files", "sync to_mixpeek", "sync s3_files", "sync gcs_files"} <= ran_ok
        assert "sync s3_bad" not in ran_ok and "sync gcs_bad" not in ran_ok
        status = json.loads(texts["mixsync status --json"])
        errors = {r["name"]: r["last_error"] for r in status["syncs"]}
        assert errors["s3_bad"] and errors["gcs_bad"], errors
        assert "${LEAK_S3_BAD_ENDPOINT}" in texts["mixsync sync s3_bad"]
        # The S3 files reached Mixpeek by presigned URL (so the search below for signatures
        # looks for something that existed), and the masked root shows as its variable.
        assert any("X-Amz-Signature" in json.dumps(o) for o in mp.objects.values())
        assert "${LEAK_ROOT}" in texts["mixsync objects media --json"]

        leaks = find_leaks(texts, needles(values, tmp_path))
        assert leaks == [], "\n".join(leaks[:40])
    finally:
        mux.stop()
        mp.stop()


def write_config_doc(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def drive(d: Driver, sync: str, max_ticks: int = 3) -> dict[str, str]:
    """Tick and run like the daemon, for good and failing syncs; returns what they said."""
    said: dict[str, str] = {}
    for i in range(max_ticks):
        d.make_due(sync)
        try:
            requests, skip = d.tick(sync)
        except Exception as e:  # a failing listing fails the tick, as the daemon records it
            said[f"tick {i} of {sync} (error)"] = f"{type(e).__name__}: {e}\n{e.__cause__!r}"
            continue
        said[f"tick {i} of {sync}"] = skip or ""
        for r in requests:
            result = d.execute(sync, r, raise_on_error=False)
            said[f"run of {sync}: tags, config"] = json.dumps([r.tags, r.run_config])
            if not result.success:
                said[f"run of {sync} failed"] = repr(result.all_events)
        p = d.pass_row(sync)
        if p is not None and not p.is_open and i:
            break
    return said


def dagster_records(instance: DagsterInstance) -> dict[str, str]:
    """Runs (tags, config) and every event record, read back through Dagster's API."""
    out = {}
    for run in instance.get_runs(RunsFilter()):
        out[f"run {run.run_id} (tags, config)"] = json.dumps([run.tags, run.run_config])
        records = instance.all_logs(run.run_id)
        out[f"event log of {run.run_id}"] = "\n".join(
            f"{r.message} {r.dagster_event!r}" for r in records
        )
    return out
