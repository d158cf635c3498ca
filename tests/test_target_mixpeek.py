"""The Mixpeek bucket target against the API double on real HTTP, on a real Dagster instance.

Nothing of ours is mocked: the double (`tests/fake_mixpeek.py`) is a real server on 127.0.0.1,
syncs run through the sensor and job (tests.harness.Driver) or the `mixsync` CLI. The one knob
turned is the target's default retry budget (shorter waits), so fault tests stay fast.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from pydantic import SecretStr

from mixsync_dagster.cli import main
from mixsync_dagster.config import MixpeekBucket
from mixsync_dagster.errors import AuthError, ProviderError, TransientError
from mixsync_dagster.state import StateStore, hash64
from mixsync_dagster.targets import ObjectSpec, mixpeek
from mixsync_dagster.targets.mixpeek import (
    MixpeekRejected,
    MixpeekTarget,
    RetryBudget,
    blob_type_for,
)
from tests.fake_mixpeek import FakeMixpeek
from tests.harness import Driver, batch_rows, tracked_rows, write_config

KEY = "sk_live_hunter2_5f3a9c0d1e2b77"
NS = "ns_hunter3_media_prod"
BIN = Path(sys.executable).parent / "mixsync"
REPO = Path(__file__).resolve().parents[1]
FAST = RetryBudget(attempts=5, initial_seconds=0.02, max_wait_seconds=2.0, deadline_seconds=30.0)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def fake() -> Any:
    with FakeMixpeek(api_key=KEY, namespace=NS) as f:
        yield f


@pytest.fixture(autouse=True)
def _env_and_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXPEEK_API_KEY", KEY)
    monkeypatch.setenv("MIXPEEK_NAMESPACE", NS)
    monkeypatch.setattr(mixpeek, "DEFAULT_BUDGET", FAST)


class LenientDriver(Driver):
    """The harness's daemon stand-in, letting runs fail (as the real daemon does)."""

    def execute(self, sync: str, request: Any, *, raise_on_error: bool = False) -> Any:
        return super().execute(sync, request, raise_on_error=raise_on_error)


def bucket_doc(fake: FakeMixpeek, **over: Any) -> dict[str, Any]:
    return {
        "media": {
            "target": "mixpeek",
            "bucket_id": "bkt_test",
            "namespace": {"env": "MIXPEEK_NAMESPACE"},
            "api_key": {"env": "MIXPEEK_API_KEY"},
            "base_url": fake.url,
            "timeout_seconds": 5,
            **over,
        }
    }


def setup_sync(
    tmp_path: Path, src: Path, fake: FakeMixpeek, sync: dict[str, Any] | None = None, **bucket: Any
) -> tuple[Path, str]:
    state = f"sqlite:///{tmp_path / 'state.db'}"
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=state,
        syncs=[{"name": "s1", **(sync or {})}],
        buckets=bucket_doc(fake, **bucket),
    )
    return cfg, state


def make_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def numbered(n: int, prefix: str = "file") -> dict[str, bytes]:
    return {f"{prefix}_{i:03d}.txt": f"content {i}\n".encode() for i in range(n)}


def tracked(state_url: str, sync: str = "s1") -> dict[str, dict[str, Any]]:
    return tracked_rows(state_url, sync)


def state_batches(state_url: str) -> list[dict[str, Any]]:
    return batch_rows(state_url)


def key_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["mixsync"]["source_key"])


def assert_each_once(fake: FakeMixpeek, state_url: str, keys: list[str]) -> None:
    """Every file exactly once in the bucket, and the state store holds those very ids."""
    objs = fake.list_objects()
    refs = [o["metadata"]["mixsync"]["source_ref"] for o in objs]
    assert len(refs) == len(set(refs)), f"duplicate objects: {sorted(refs)}"
    assert sorted(key_of(o) for o in objs) == sorted(keys)
    rows = tracked(state_url)
    assert {k: r["status"] for k, r in rows.items()} == dict.fromkeys(keys, "synced")
    assert {k: r["object_id"] for k, r in rows.items()} == {key_of(o): o["object_id"] for o in objs}


def target(fake: FakeMixpeek, *, retry: RetryBudget = FAST, **over: Any) -> MixpeekTarget:
    doc = {
        "target": "mixpeek",
        "bucket_id": "bkt_test",
        "namespace": SecretStr(NS),
        "api_key": SecretStr(KEY),
        "base_url": fake.url,
        "timeout_seconds": 5,
        **over,
    }
    return MixpeekTarget("media", MixpeekBucket(**doc), retry=retry)


def remote_spec(key: str, mime: str | None = "video/mp4", url: str | None = None, **kw: Any):
    return ObjectSpec(
        source_ref=f"s3:cams:{key}",
        source_key=key,
        uri=f"s3://cams/{key}",
        fetch_url=lambda: url or f"https://cdn.example/{key}",
        idempotency_key=f"k-{key}",
        mime_type=mime,
        size=10,
        fingerprint="etag-1",
        metadata={"mixsync": {"sync": "s1", "provider": "s3", "connection": "cams"}},
        **kw,
    )


# ---------------------------------------------------------------- end to end


def test_local_folder_to_mixpeek_end_to_end(tmp_path, src, fake, instance):
    files = {
        "a.txt": b"alpha",
        "b.json": b"{}",
        "img/c.png": b"\x89PNG\r\n\x1a\n....",
        "deep/er/d.md": b"# d",
        "e.mp4": b"\x00" * 64,
        "f.pdf": b"%PDF-1.4",
        "g.csv": b"a,b\n1,2\n",
    }
    make_files(src, files)
    cfg, state = setup_sync(
        tmp_path,
        src,
        fake,
        {
            "batch_size": 3,
            "metadata": {"origin": "tests", "team": "media"},
            "schema_mapping": {
                "field_mappings": {"file_name": {"source": "name"}},
                "mappings": {"team": {"source": {"type": "constant", "value": "video-team"}}},
            },
        },
    )
    d = Driver(cfg, instance)
    assert d.run_pass("s1") == 1
    objs = fake.list_objects()
    assert_each_once(fake, state, list(files))
    kinds = {"a.txt": "text", "b.json": "text", "img/c.png": "image", "deep/er/d.md": "text"}
    kinds |= {"e.mp4": "video", "f.pdf": "pdf", "g.csv": "text"}
    rows = tracked(state)
    for o in objs:
        key = key_of(o)
        meta = o["metadata"]
        assert meta["origin"] == "tests"
        assert meta["file_name"] == key.rsplit("/", 1)[-1]
        assert meta["team"] == "video-team"  # a mapped field wins over sync metadata
        assert hash64(meta["mixsync"]["fingerprint"]) == rows[key]["fp"]
        assert meta["mixsync"] == {
            "sync": "s1",
            "provider": "local",
            "connection": "src",
            "source_key": key,
            "fingerprint": meta["mixsync"]["fingerprint"],
            "source_ref": f"local:src:{key}",
        }
        (blob,) = o["blobs"]
        assert blob["property"] == "content" and blob["type"] == kinds[key]
        assert "data" not in blob  # local bytes travel by upload, never as a file:// URL
        assert fake.storage[blob["upload_id"]] == files[key]
        assert o["status"] == "COMPLETED" and o["skip_duplicates"] is False
    # The presigned PUTs never carried the API key; every API call did.
    assert {r.had_auth for r in fake.requests if r.route == "upload_put"} == {False}
    assert {r.had_auth for r in fake.requests if r.route != "upload_put"} == {True}
    # batch_size 3: batches of 3, 3 and 1, each created, submitted, and recorded with its task.
    assert fake.calls["objects_batch"] == 3
    recorded = state_batches(state)
    assert sorted(b["object_count"] for b in recorded) == [1, 3, 3]
    for b in recorded:
        remote = fake.batches[b["batch_id"]]
        assert remote["task_id"] == b["task_id"] and remote["_submitted"] is not None
    batched = [oid for b in recorded for oid in fake.batches[b["batch_id"]]["object_ids"]]
    assert sorted(batched) == sorted(o["object_id"] for o in objs)

    # A second pass over unchanged files makes no API call at all.
    calls = dict(fake.calls)
    assert d.run_pass("s1") == 0
    assert dict(fake.calls) == calls

    # A changed file updates its object in place and is submitted again.
    (src / "a.txt").write_bytes(b"alpha, second edition")
    os.utime(src / "a.txt", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    before = {key_of(o): o for o in objs}
    assert d.run_pass("s1") == 1
    after = {key_of(o): o for o in fake.list_objects()}
    assert len(after) == 7 and after.keys() == before.keys()
    a = after["a.txt"]
    assert a["object_id"] == before["a.txt"]["object_id"]
    assert fake.storage[a["blobs"][0]["upload_id"]] == b"alpha, second edition"
    assert hash64(a["metadata"]["mixsync"]["fingerprint"]) == tracked(state)["a.txt"]["fp"]
    assert (
        a["metadata"]["mixsync"]["fingerprint"]
        != before["a.txt"]["metadata"]["mixsync"]["fingerprint"]
    )
    assert after["b.json"] == before["b.json"]
    assert fake.calls["objects_batch"] == 3 and fake.calls["object_put"] == 1
    last = max(state_batches(state), key=lambda b: b["created_at"])
    assert fake.batches[last["batch_id"]]["object_ids"] == [a["object_id"]]
    assert_each_once(fake, state, list(files))


def test_skip_batch_submission_creates_objects_only(tmp_path, src, fake, instance):
    make_files(src, numbered(4))
    cfg, state = setup_sync(tmp_path, src, fake, {"skip_batch_submission": True})
    Driver(cfg, instance).run_pass("s1")
    assert_each_once(fake, state, list(numbered(4)))
    assert fake.calls["batches_create"] == fake.calls["batch_submit"] == 0
    assert state_batches(state) == []
    assert {o["status"] for o in fake.list_objects()} == {"DRAFT"}


def test_reconcile_deletes_the_object_of_a_removed_file(tmp_path, src, fake, instance):
    make_files(src, numbered(4))
    cfg, state = setup_sync(
        tmp_path, src, fake, {"reconcile_on_sync": True, "max_deletes_per_pass": "50%"}
    )
    d = Driver(cfg, instance)
    d.run_pass("s1")
    assert len(fake.list_objects()) == 4
    (src / "file_002.txt").unlink()
    fake.drop_next(1, route="object_delete", when="after")  # deleted, answer lost: retried
    d.run_pass("s1")
    assert sorted(key_of(o) for o in fake.list_objects()) == [
        "file_000.txt",
        "file_001.txt",
        "file_003.txt",
    ]
    assert fake.calls["object_delete"] == 2  # the retry found it gone (404): done
    assert fake.faults_left() == 0
    assert sorted(tracked(state)) == ["file_000.txt", "file_001.txt", "file_003.txt"]


# ---------------------------------------------------------------- the kill test


def test_sigkill_after_bulk_create_then_rerun_never_duplicates(tmp_path, src, fake):
    """`mixsync sync` is SIGKILLed right after the API created objects, before it recorded them."""
    files = numbered(12)
    make_files(src, files)
    cfg, state = setup_sync(tmp_path, src, fake, {"batch_size": 5})
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "MIXPEEK_API_KEY": KEY, "MIXPEEK_NAMESPACE": NS}
    cmd = [str(BIN), "-c", str(cfg), "sync", "s1"]

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fake.arm_crash(proc.pid)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    assert fake.crashes == [proc.pid]
    first = {key_of(o): o["object_id"] for o in fake.list_objects()}
    assert len(first) == 5  # the API created the first group of 5 ...
    rows = tracked(state)  # ... and we recorded only our intent to create them
    assert len(rows) == 5 and {r["status"] for r in rows.values()} == {"creating"}
    assert not any(r["object_id"] for r in rows.values())

    # The killed run is left STARTED in the instance. A CLI without a stale-run sweep refuses
    # to overlap it; the operator then marks it failed, as one would after a crash.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if again.returncode == 1 and "in flight" in again.stderr:
        with DagsterInstance.from_config(str(home)) as inst:
            (dead,) = inst.get_run_records(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]))
            inst.report_run_failed(dead.dagster_run, message="worker SIGKILLed; marked failed")
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "synced 12" in again.stdout and "failed 0" in again.stdout
    with DagsterInstance.from_config(str(home)) as inst:  # the dead run no longer holds the lock
        assert not inst.get_run_records(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]))

    assert_each_once(fake, state, list(files))
    now = {key_of(o): o["object_id"] for o in fake.list_objects()}
    assert {k: now[k] for k in first} == first  # the 5 were adopted, not re-created
    assert fake.calls["uploads_create"] == 12  # and nothing was uploaded twice
    recorded = state_batches(state)
    assert sum(b["object_count"] for b in recorded) == 12
    assert all(b["task_id"] for b in recorded)


# ---------------------------------------------------------------- injected faults

FAULTS = {
    "429_retry_after": lambda f: f.fail_next(3, 429, retry_after=0.2, route="objects_batch"),
    "500_before_any_call": lambda f: f.fail_next(4, 500),
    "500_after_bulk_create": lambda f: f.fail_next(2, 503, route="objects_batch", when="after"),
    "drop_before_any_call": lambda f: f.drop_next(4),
    "drop_after_bulk_create": lambda f: f.drop_next(2, route="objects_batch", when="after"),
    "drop_after_confirm": lambda f: f.drop_next(2, route="upload_confirm", when="after"),
    "drop_after_batch_create": lambda f: f.drop_next(1, route="batches_create", when="after"),
    "drop_after_submit": lambda f: f.drop_next(2, route="batch_submit", when="after"),
    "slow_responses": lambda f: f.slow_next(30, 0.05),
    "timeout_after_bulk_create": lambda f: f.slow_next(1, 1.6, route="objects_batch", when="after"),
    "chaos": lambda f: f.chaos(0.2, seed=11),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_fault_ends_with_each_file_synced_exactly_once(
    fault, tmp_path, src, fake, instance, caplog
):
    files = numbered(10)
    make_files(src, files)
    cfg, state = setup_sync(tmp_path, src, fake, {"batch_size": 4}, timeout_seconds=1)
    FAULTS[fault](fake)
    d = LenientDriver(cfg, instance)
    for _ in range(5):  # passes until done; a failed run leaves its files pending, never lost
        d.run_pass("s1")
        if {r["status"] for r in tracked(state).values()} == {"synced"}:
            break
    assert fake.faults_left() == 0  # every injected fault was served
    fake.clear_faults()
    assert_each_once(fake, state, list(files))
    if fault == "timeout_after_bulk_create":  # the API answered, after our 1 s timeout
        assert "ReadTimeout" in caplog.text and fake.calls["objects_list"] >= 4
    elif fault != "slow_responses":  # the fault reached the client
        assert any(r.status in (0, 429, 500, 503) for r in fake.requests)
    # No object was ever submitted for processing twice; none was left out.
    submitted = [
        oid for b in fake.batches.values() if b["_submitted"] is not None for oid in b["object_ids"]
    ]
    assert len(submitted) == len(set(submitted))
    if fault != "chaos":
        assert sorted(submitted) == sorted(o["object_id"] for o in fake.list_objects())


def test_outage_fails_the_run_not_the_files(tmp_path, src, fake, instance):
    files = numbered(6)
    make_files(src, files)
    cfg, state = setup_sync(tmp_path, src, fake)
    fake.fail_next(100_000, 503)
    d = LenientDriver(cfg, instance)
    d.run_pass("s1")
    assert not d.runs[-1].success
    rows = tracked(state)
    assert {r["status"] for r in rows.values()} == {"creating"}  # not failed: nothing to blame
    assert {r["attempts"] for r in rows.values()} == {0}
    sync = StateStore(state).get_sync("s1")
    assert sync["status"] == "FAILED" and sync["consecutive_failures"] == 1
    assert "unavailable" in sync["last_error"] and "HTTP 503" in sync["last_error"]
    assert sync["total_files_failed"] == 0
    fake.clear_faults()
    d.run_pass("s1")
    assert d.runs[-1].success
    assert_each_once(fake, state, list(files))


def test_partial_failure_fails_only_the_rejected_files(tmp_path, src, fake, instance):
    files = numbered(4) | {"poison_a.txt": b"bad", "sub/poison_b.txt": b"bad"}
    make_files(src, files)
    cfg, state = setup_sync(tmp_path, src, fake, {"batch_size": 10})
    fake.poison("poison_")
    d = Driver(cfg, instance)
    d.run_pass("s1")
    assert d.runs[-1].success
    assert fake.calls["objects_batch"] == 1  # one call, partial success
    rows = tracked(state)
    good = list(numbered(4))
    assert {k for k, r in rows.items() if r["status"] == "synced"} == set(good)
    for k in ("poison_a.txt", "sub/poison_b.txt"):
        assert rows[k]["status"] == "retry" and rows[k]["attempts"] == 1
        assert rows[k]["object_id"] is None
        err = rows[k]["last_error"]
        assert "(invalid_blob)" in err and "blobs[0].data: the file could not be decoded" in err
    assert sorted(key_of(o) for o in fake.list_objects()) == sorted(good)
    assert StateStore(state).get_sync("s1")["total_files_synced"] == 4


# ---------------------------------------------------------------- secrets


def test_api_key_and_namespace_never_leak(tmp_path, src, fake, instance, caplog):
    make_files(src, numbered(3))
    cfg, state = setup_sync(tmp_path, src, fake)
    fake.fail_next(2, 429, retry_after=0.05)  # retries log their reason
    d = LenientDriver(cfg, instance)
    d.run_pass("s1")
    assert d.runs[-1].success
    # The key is rotated on the API side: the next run fails on authentication.
    fake.set_api_key("sk_live_rotated_000000000000")
    make_files(src, {"late.txt": b"late"})
    d.run_pass("s1")
    assert not d.runs[-1].success
    sync = StateStore(state).get_sync("s1")
    assert "refused the credentials" in sync["last_error"] and "***" in sync["last_error"]
    blob = repr(sync) + repr(tracked(state)) + caplog.text
    for record in instance.get_run_records():
        run = record.dagster_run
        blob += repr(run.run_config) + repr(run.tags)
        for event in instance.all_logs(run.run_id):
            blob += repr(event)
    t = target(fake)
    blob += repr(t) + repr(d.defs.resources["mixsync"])
    with pytest.raises(AuthError) as e:
        t.create_objects([remote_spec("x.mp4")])
    blob += str(e.value) + repr(e.value)
    assert KEY not in blob and NS not in blob
    assert "hunter2" not in blob and "hunter3" not in blob


def test_check_bucket_from_the_cli(tmp_path, src, fake, monkeypatch):
    cfg, _ = setup_sync(tmp_path, src, fake)
    runner = CliRunner()
    ok = runner.invoke(main, ["-c", str(cfg), "check", "media"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("media: OK: bucket 'bkt_test'")
    monkeypatch.setenv("MIXPEEK_API_KEY", "sk_wrong_key_0123456789")
    bad = runner.invoke(main, ["-c", str(cfg), "check", "media"])
    assert bad.exit_code == 1
    assert "FAILED" in bad.output and "refused the API key" in bad.output
    assert "sk_wrong_key_0123456789" not in bad.output + repr(bad.exception)
    monkeypatch.setenv("MIXPEEK_API_KEY", KEY)
    monkeypatch.setenv("MIXPEEK_NAMESPACE", "ns_wrong_namespace")
    bad = runner.invoke(main, ["-c", str(cfg), "check", "media"])
    assert bad.exit_code == 1 and "check namespace" in bad.output
    assert "ns_wrong_namespace" not in bad.output
    monkeypatch.setenv("MIXPEEK_NAMESPACE", NS)
    (tmp_path / "b").mkdir()
    cfg2, _ = setup_sync(tmp_path / "b", src, fake, bucket_id="bkt_nope")
    bad = runner.invoke(main, ["-c", str(cfg2), "check", "media"])
    assert bad.exit_code == 1 and "'bkt_nope'" in bad.output and "not found" in bad.output
    nope = runner.invoke(main, ["-c", str(cfg), "check", "nope"])
    assert nope.exit_code == 2 and "no connection named 'nope'" in nope.output
    assert "no bucket by that name" in nope.output


# ---------------------------------------------------------------- the target on its own


def test_rejections_name_the_field(fake):
    t = target(fake)
    specs = [
        remote_spec("ok.mp4"),
        remote_spec("ftp.mp4", url="ftp://files.example/ftp.mp4"),
        remote_spec("huge.mp4", fields={"blurb": "x" * 40_000}),
        remote_spec("mystery.bin", mime="application/octet-stream"),
        remote_spec("clash.mp4", fields={"mixsync": "mine"}),
    ]
    ok, ftp, huge, mystery, clash = t.create_objects(specs)
    assert ok.created and ok.object_id
    assert ftp.error and "blobs[0].data: unsupported URL scheme 'ftp'" in ftp.error
    # A whole-call 422 naming one object fails that object; the others are sent again.
    assert (
        huge.error
        and "HTTP 422" in huge.error
        and "metadata: Metadata must be at most" in huge.error
    )
    assert fake.calls["objects_batch"] == 2
    assert mystery.error and "set blob_type" in mystery.error
    assert clash.error and "clashes with the source-tracking" in clash.error
    assert [key_of(o) for o in fake.list_objects()] == ["ok.mp4"]
    # A blob property the bucket schema lacks: every object says so; check() says it first.
    wrong = target(fake, blob_property="thumbnail")
    (res,) = wrong.create_objects([remote_spec("v.mp4")])
    assert res.error and "blobs[0].property: 'thumbnail' is not a property" in res.error
    with pytest.raises(ProviderError, match="no schema property 'thumbnail'"):
        wrong.check()
    # Over-large upload: that file fails with the field the API named.
    small = FakeMixpeek(api_key=KEY, namespace=NS, max_upload_bytes=4).start()
    try:
        p = Path(__file__)
        spec = ObjectSpec(
            source_ref="local:src:x.py",
            source_key="x.py",
            uri=p.as_uri(),
            fetch_url=p.as_uri,
            idempotency_key="k-x",
            mime_type="text/x-python",
            size=p.stat().st_size,
            fingerprint="f",
            open_blob=lambda: p.open("rb"),
        )
        (res,) = target(small).create_objects([spec])
        assert res.error and "file_size_bytes" in res.error and "upload limit" in res.error
    finally:
        small.stop()


def test_blob_types():
    assert blob_type_for("video/mp4") == "video"
    assert blob_type_for("image/svg+xml") == "image"
    assert blob_type_for("audio/mpeg") == "audio"
    assert blob_type_for("text/markdown; charset=utf-8") == "text"
    assert blob_type_for("application/json") == "text"
    assert blob_type_for("application/pdf") == "pdf"
    assert blob_type_for("application/vnd.ms-excel") == "excel"
    assert blob_type_for("application/octet-stream") is None
    assert blob_type_for(None) is None
    assert blob_type_for("application/octet-stream", "video") == "video"


def test_bulk_calls_hold_at_most_100_and_find_pages(fake):
    t = target(fake)
    specs = [remote_spec(f"v{i:03d}.mp4") for i in range(230)]
    results = t.create_objects(specs)
    assert all(r.created for r in results)
    assert fake.calls["objects_batch"] == 3  # 100 + 100 + 30 (the double refuses 101)
    assert fake.calls["objects_list"] == 3  # the lookup before creating, 100 refs a call
    assert t.find_objects([s.source_ref for s in specs]) == {
        s.source_ref: r.object_id for s, r in zip(specs, results, strict=True)
    }
    # Should another tool have made duplicates, lookups page through them; the oldest wins.
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}", "X-Namespace": NS}) as c:
        body = t._prepare(specs[:60])
        r = c.post(f"{fake.url}/v1/buckets/bkt_test/objects/batch", json={"objects": body})
        assert r.status_code == 200 and len(r.json()["succeeded"]) == 60
    n = fake.calls["objects_list"]
    found = t.find_objects([s.source_ref for s in specs[:80]])
    assert fake.calls["objects_list"] == n + 2  # 140 matches at 100 a page
    assert found == {
        s.source_ref: r.object_id for s, r in zip(specs[:80], results[:80], strict=True)
    }
    again = t.create_objects(specs[:5])
    assert [r.object_id for r in again] == [r.object_id for r in results[:5]]
    assert not any(r.created for r in again)


def test_retry_after_backoff_and_the_budget(fake):
    t = target(fake, retry=RetryBudget(attempts=4, initial_seconds=0.01, max_wait_seconds=5))
    fake.fail_next(2, 429, retry_after=0.4, route="bucket_get")
    t.check()
    times = [r.at for r in fake.requests if r.route == "bucket_get"]
    assert len(times) == 3
    assert all(b - a >= 0.4 for a, b in itertools.pairwise(times))
    n = fake.calls["bucket_get"]
    fake.fail_next(100, 502, route="bucket_get")
    with pytest.raises(TransientError, match="HTTP 502"):
        t.check()
    assert fake.calls["bucket_get"] - n == 4  # the budget, then the run fails
    fake.clear_faults()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = target(fake, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError, match="cannot connect"):
        dead.check()
    n = fake.calls["batches_create"]
    with pytest.raises(MixpeekRejected, match=r"object_ids\[0\]: object 'obj_nope' not found"):
        t.create_batch(["obj_nope"])
    assert fake.calls["batches_create"] == n + 1  # a 4xx is not retried


def test_batches_updates_and_deletes_are_idempotent(fake):
    t = target(fake)
    (a, b) = t.create_objects([remote_spec("a.mp4"), remote_spec("b.mp4")])
    assert a.object_id and b.object_id
    fake.drop_next(1, route="batches_create", when="after")
    bid = t.create_batch([a.object_id, b.object_id])
    fake.drop_next(1, route="batch_submit", when="after")
    task = t._submit_draft(bid)
    assert task and t._submit_draft(bid) == task  # 409 already submitted: same task
    assert len(fake.tasks) == 1
    assert t.get_batch(bid)["status"] == "COMPLETED"
    status = t.get_task(task)
    assert status is not None and status["status"] == "COMPLETED"
    assert t.get_task("task_forgotten") is None
    fake.process_seconds = 60
    bid2 = t.create_batch([a.object_id])
    task2 = t._submit_draft(bid2)
    assert task2 and (t.get_task(task2) or {})["status"] == "PROCESSING"
    # Update keeps the id; an object deleted behind our back is created again.
    moved = remote_spec("a.mp4", url="https://cdn.example/a-v2.mp4")
    assert t.update_object(a.object_id, moved).object_id == a.object_id
    assert fake.objects[a.object_id]["blobs"][0]["data"] == "https://cdn.example/a-v2.mp4"
    t.delete_object(b.object_id)
    t.delete_object(b.object_id)  # gone already: fine
    again = t.update_object(b.object_id, remote_spec("b.mp4"))
    assert again.created and again.object_id != b.object_id
    assert sorted(key_of(o) for o in fake.list_objects()) == ["a.mp4", "b.mp4"]
    assert t.find_objects(["s3:cams:b.mp4"]) == {"s3:cams:b.mp4": again.object_id}


def test_the_double_is_as_strict_as_the_api(fake):
    base = f"{fake.url}/v1/buckets/bkt_test"
    good = {"Authorization": f"Bearer {KEY}", "X-Namespace": NS}
    obj = {"blobs": [{"property": "content", "type": "video", "data": "https://x/y.mp4"}]}
    with httpx.Client() as c:
        assert c.get(base).status_code == 401
        assert c.get(base, headers={**good, "Authorization": "Bearer nope"}).status_code == 401
        assert c.get(base, headers={"Authorization": f"Bearer {KEY}"}).status_code == 400
        assert c.get(base, headers={**good, "X-Namespace": "other"}).status_code == 400
        assert c.get(f"{fake.url}/v1/buckets/bkt_other", headers=good).status_code == 404
        r = c.post(f"{base}/objects/batch", headers=good, json={"objects": [{**obj, "x": 1}]})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "objects", 0, "x"]
        r = c.post(f"{base}/objects/batch", headers=good, json={"objects": [obj] * 101})
        assert r.status_code == 422 and "at most 100" in r.text
        r = c.post(f"{base}/objects/batch", headers=good, json={"objects": [obj], "extra": True})
        assert r.status_code == 422
        up = c.post(
            f"{base}/uploads",
            headers=good,
            json={"filename": "a.txt", "content_type": "text/plain", "file_size_bytes": 2},
        ).json()
        assert c.put(up["presigned_url"], content=b"hi", headers=good).status_code == 400
        confirm = f"{base}/uploads/{up['upload_id']}/confirm"
        assert c.post(confirm, headers=good, json={}).status_code == 409  # nothing uploaded
        assert c.put(up["presigned_url"] + "x", content=b"hi").status_code == 403
        assert c.put(up["presigned_url"], content=b"hi").status_code == 200
        first = c.post(confirm, headers=good, json={"file_size_bytes": 2}).json()
        assert first["object_id"] and c.post(confirm, headers=good).json() == first
        r = c.post(f"{base}/batches/btch_x/submit", headers=good, json={"now": True})
        assert r.status_code == 422
        r = c.post(f"{base}/objects/list?limit=101", headers=good, json={})
        assert r.status_code == 422


def test_batch_status_refresh_shows_pending_then_failed_batches(tmp_path, src, fake, instance):
    make_files(src, numbered(5))
    fake.process_seconds = 3600.0  # the pipeline is busy: batches stay PROCESSING
    cfg, state = setup_sync(tmp_path, src, fake, {"batch_size": 2})
    Driver(cfg, instance).run_pass("s1")
    runner = CliRunner()
    out = runner.invoke(main, ["-c", str(cfg), "status", "s1", "--json", "--refresh"])
    assert out.exit_code == 0, out.output
    b = json.loads(out.output)["syncs"][0]["batches"]
    assert (b["pending"], b["failed"], b["completed"]) == (3, 0, 0)
    assert {p["status"] for p in b["pending_batches"]} == {"PROCESSING"}
    assert all(p["task_id"] for p in b["pending_batches"])
    # The pipeline finishes, one way or the other: a refresh records what the API says.
    fake.process_seconds = 0.0
    for batch in fake.batches.values():
        batch["_outcome"] = "FAILED"
    out = runner.invoke(main, ["-c", str(cfg), "status", "s1", "--refresh"])
    assert out.exit_code == 0, out.output
    assert "batches: 0 pending, 3 failed, 0 completed" in out.output
    assert "failed: " in out.output
    rows = state_batches(state)
    assert {r["remote_status"] for r in rows} == {"FAILED"} and all(r["checked_at"] for r in rows)


def test_local_bucket_batches_report_completed(tmp_path, src, instance):
    make_files(src, numbered(3))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    cfg = write_config(tmp_path / "syncs.yaml", root=src, state_url=state, syncs=[{"name": "s1"}])
    Driver(cfg, instance).run_pass("s1")
    out = CliRunner().invoke(main, ["-c", str(cfg), "status", "s1", "--json", "--refresh"])
    b = json.loads(out.output)["syncs"][0]["batches"]
    assert (b["pending"], b["failed"], b["completed"]) == (0, 0, 1)
