"""The Mixpeek bucket target against the SDK-validated API double, on a real Dagster instance.

Nothing of ours is mocked: the double (`tests/fake_mixpeek.py`) is a real server on 127.0.0.1
that checks every request with the vendor SDK's models; syncs run through the sensor and job
(tests.harness.Driver) or the `mixsync` CLI. The one knob turned is the target's default retry
budget (shorter waits), so fault tests stay fast.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from mixpeek.models.batch_model import BatchModel
from mixpeek.models.create_objects_batch_response import CreateObjectsBatchResponse
from mixpeek.models.error_response import ErrorResponse
from mixpeek.models.list_objects_response import ListObjectsResponse
from pydantic import SecretStr

from mixsync_dagster.cli import main
from mixsync_dagster.config import MixpeekBucket
from mixsync_dagster.errors import AuthError, ProviderError, TransientError
from mixsync_dagster.state import StateStore, hash64
from mixsync_dagster.targets import ObjectSpec, mixpeek
from mixsync_dagster.targets.base import BlobSpec
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


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_each_once(fake: FakeMixpeek, state_url: str, keys: list[str]) -> None:
    """Every file exactly once in the bucket, and the state store holds those very ids."""
    objs = fake.list_objects()
    refs = [o["metadata"]["mixsync"]["source_ref"] for o in objs]
    assert len(refs) == len(set(refs)), f"duplicate objects: {sorted(refs)}"
    assert sorted(key_of(o) for o in objs) == sorted(keys)
    rows = tracked(state_url)
    assert {k: r["status"] for k, r in rows.items()} == dict.fromkeys(keys, "synced")
    assert {k: r["object_id"] for k, r in rows.items()} == {key_of(o): o["object_id"] for o in objs}


def assert_processed_with(fake: FakeMixpeek, files: dict[str, bytes]) -> None:
    """Each file's live object holds its bytes and was processed with exactly those bytes."""
    for o in fake.list_objects():
        data = files[key_of(o)]
        (blob,) = o["blobs"]
        assert fake.blob_bytes(blob) == data, key_of(o)
        assert blob["details"]["hash"] == sha(data)
        assert fake.documents[o["object_id"]]["blob_hashes"] == {"content": sha(data)}, key_of(o)


def submitted_ids(fake: FakeMixpeek) -> list[str]:
    return [
        oid
        for b in fake.batches.values()
        if b.get("_submitted") is not None
        for oid in b["object_ids"]
    ]


def pass_until_synced(d: Driver, state: str, passes: int = 6) -> None:
    """Passes until every tracked file is synced (a failed run leaves its files pending)."""
    for _ in range(passes):
        d.run_pass("s1")
        if {r["status"] for r in tracked(state).values()} == {"synced"}:
            return
    raise AssertionError(f"not synced after {passes} passes: {tracked(state)}")


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


def remote_spec(
    key: str, mime: str | None = "video/mp4", url: str | None = None, **kw: Any
) -> ObjectSpec:
    fp = kw.pop("fingerprint", "etag-1")
    return ObjectSpec(
        source_ref=f"s3:cams:{key}",
        source_key=key,
        uri=f"s3://cams/{key}",
        fetch_url=lambda: url or f"https://cdn.example/{key}",
        idempotency_key=kw.pop("idempotency_key", f"k-{key}-{fp}"),
        mime_type=mime,
        size=10,
        fingerprint=fp,
        metadata={"mixsync": {"sync": "s1", "provider": "s3", "connection": "cams"}},
        **kw,
    )


def api(fake: FakeMixpeek) -> httpx.Client:
    return httpx.Client(
        base_url=f"{fake.url}/v1/buckets/bkt_test",
        headers={"Authorization": f"Bearer {KEY}", "X-Namespace": NS},
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
    assert_processed_with(fake, files)
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
        assert "url" not in blob["properties"]  # local bytes travel by upload, never file://
        assert o["status"] == "COMPLETED"
    # The presigned PUTs never carried the API key, and carried the signed Content-Type.
    puts = [r for r in fake.requests if r.route == "upload_put"]
    assert {r.had_auth for r in puts} == {False} and {r.status for r in puts} == {200}
    assert {r.content_type for r in puts} >= {"text/plain", "image/png", "video/mp4"}
    assert {r.had_auth for r in fake.requests if r.route != "upload_put"} == {True}
    # batch_size 3: batches of 3, 3 and 1, each created, submitted at once, none left DRAFT.
    assert fake.calls["objects_batch"] == 3
    assert fake.calls["objects_list"] == 0  # nothing was interrupted: no lookups
    recorded = state_batches(state)
    assert sorted(b["object_count"] for b in recorded) == [1, 3, 3]
    for b in recorded:
        remote = fake.batches[b["batch_id"]]
        assert remote["task_id"] == b["task_id"] and remote["status"] == "COMPLETED"
        assert remote["dedup_strategy"] == "replace"
    assert fake.draft_batches() == []
    assert sorted(submitted_ids(fake)) == sorted(o["object_id"] for o in objs)

    # A second pass over unchanged files makes no API call at all.
    calls = dict(fake.calls)
    assert d.run_pass("s1") == 0
    assert dict(fake.calls) == calls

    # A changed file becomes a new object with the new bytes, processed with them; the old
    # object is deleted once the new one exists (PUT cannot replace blobs).
    files["a.txt"] = b"alpha, second edition"
    (src / "a.txt").write_bytes(files["a.txt"])
    os.utime(src / "a.txt", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    before = {key_of(o): o for o in objs}
    assert d.run_pass("s1") == 1
    after = {key_of(o): o for o in fake.list_objects()}
    assert after.keys() == before.keys()
    old, new = before["a.txt"]["object_id"], after["a.txt"]["object_id"]
    assert new != old and old in fake.deleted and old not in fake.objects
    assert (
        hash64(after["a.txt"]["metadata"]["mixsync"]["fingerprint"])
        == (tracked(state)["a.txt"]["fp"])
    )
    assert {k: o["object_id"] for k, o in after.items() if k != "a.txt"} == {
        k: o["object_id"] for k, o in before.items() if k != "a.txt"
    }
    assert_processed_with(fake, files)
    assert fake.calls["object_put"] == 0 and fake.calls["object_delete"] == 1
    last = max(state_batches(state), key=lambda b: b["created_at"])
    assert fake.batches[last["batch_id"]]["object_ids"] == [new]
    # The delete came after the create that replaced it.
    order = [r.route for r in fake.requests if r.route in ("objects_batch", "object_delete")]
    assert order[-2:] == ["objects_batch", "object_delete"]
    assert_each_once(fake, state, list(files))


@pytest.mark.parametrize("chaos", [False, True], ids=["calm", "chaos_10pct"])
def test_changed_files_are_replaced_and_reprocessed(chaos, tmp_path, src, fake, instance):
    """60 files; then 5% of them change. Each changed file's live object holds the new bytes
    and was processed with them, the old objects are gone, and no file ever has two objects,
    also with 10% of API calls answered 429/503 or dropped after the API acted."""
    files = numbered(60)
    make_files(src, files)
    cfg, state = setup_sync(tmp_path, src, fake, {"batch_size": 10}, timeout_seconds=2)

    def lose_create_answers() -> None:
        # Chaos draws its faults at random; these two are sure to hit a create the API made.
        fake.drop_next(1, route="objects_batch", when="after")
        fake.fail_next(1, 503, route="objects_batch", when="after")

    if chaos:
        fake.chaos(0.10, seed=5)
        lose_create_answers()
    d = LenientDriver(cfg, instance)
    pass_until_synced(d, state)
    assert fake.faults_left() == 0
    assert_each_once(fake, state, list(files))
    assert_processed_with(fake, files)
    first = {key_of(o): o["object_id"] for o in fake.list_objects()}

    changed = ["file_007.txt", "file_031.txt", "file_052.txt"]  # 5% of 60
    for k in changed:
        files[k] = f"changed content of {k}, longer than before\n".encode()
        (src / k).write_bytes(files[k])
    if chaos:
        lose_create_answers()
    pass_until_synced(d, state)
    assert fake.faults_left() == 0
    fake.clear_faults()
    assert_each_once(fake, state, list(files))
    assert_processed_with(fake, files)
    now = {key_of(o): o["object_id"] for o in fake.list_objects()}
    for k in changed:
        assert now[k] != first[k] and first[k] in fake.deleted
    assert {k: v for k, v in now.items() if k not in changed} == {
        k: v for k, v in first.items() if k not in changed
    }
    if chaos:
        assert any(r.status in (0, 429, 503) for r in fake.requests)
    else:
        assert fake.draft_batches() == []
    # Every object was submitted, and none twice in a way that could duplicate documents:
    # every batch reprocesses with dedup_strategy replace.
    assert set(submitted_ids(fake)) >= set(now.values())
    assert {b["dedup_strategy"] for b in fake.batches.values()} == {"replace"}


def test_skip_batch_submission_creates_objects_only(tmp_path, src, fake, instance):
    make_files(src, numbered(4))
    cfg, state = setup_sync(tmp_path, src, fake, {"skip_batch_submission": True})
    Driver(cfg, instance).run_pass("s1")
    assert_each_once(fake, state, list(numbered(4)))
    assert fake.calls["batches_create"] == fake.calls["batch_submit"] == 0
    assert state_batches(state) == []
    assert {o["status"] for o in fake.list_objects()} == {"PENDING"}  # new objects: PENDING


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


def test_blob_mappings_reach_the_api_as_extra_blobs(tmp_path, src, fake, instance):
    fake.stop()
    with FakeMixpeek(
        api_key=KEY, namespace=NS, schema_properties=("content", "poster", "notes")
    ) as f:
        make_files(src, {"clip.mp4": b"\x00\x01", "memo.txt": b"memo"})
        cfg, _ = setup_sync(
            tmp_path,
            src,
            f,
            {
                "schema_mapping": {
                    "mappings": {
                        "poster": {
                            "target_type": "blob",
                            "source": {"type": "constant", "value": "https://img.example/p.jpg"},
                            "blob_type": "image",
                        },
                        "notes": {
                            "target_type": "blob",
                            "source": {"type": "constant", "value": '{"k": 1}'},
                            "mime_type_override": "application/json",
                        },
                        "main": {
                            "target_type": "blob",
                            "source": {"type": "file"},
                            "blob_property": "content",
                            "mime_type_override": "video/quicktime",
                        },
                    }
                }
            },
        )
        Driver(cfg, instance).run_pass("s1")
        objs = {key_of(o): o for o in f.list_objects()}
        for key in ("clip.mp4", "memo.txt"):
            blobs = {b["property"]: b for b in objs[key]["blobs"]}
            assert set(blobs) == {"content", "poster", "notes"}
            # the file itself, typed and labelled by the mapping's mime_type_override
            assert blobs["content"]["type"] == "video"
            assert blobs["content"]["details"]["mime_type"] == "video/quicktime"
            assert blobs["poster"] == {
                **blobs["poster"],
                "type": "image",
                "properties": {"url": "https://img.example/p.jpg"},
            }
            assert blobs["notes"]["type"] == "text"
            assert blobs["notes"]["details"]["mime_type"] == "application/json"
            assert blobs["notes"]["details"]["hash"] == sha(b'{"k": 1}')
        puts = {r.content_type for r in f.requests if r.route == "upload_put"}
        assert puts == {"video/quicktime"}


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
    assert_processed_with(fake, files)


# ---------------------------------------------------------------- injected faults

FAULTS = {
    "429_retry_after": lambda f: f.fail_next(3, 429, retry_after=0.2, route="objects_batch"),
    "429_retry_after_in_body_only": lambda f: f.fail_next(
        2, 429, retry_after=0.2, retry_after_in=("body",), route="objects_batch"
    ),
    "500_before_any_call": lambda f: f.fail_next(4, 500),
    "503_after_bulk_create": lambda f: f.fail_next(2, 503, route="objects_batch", when="after"),
    "drop_before_any_call": lambda f: f.drop_next(4),
    "drop_after_bulk_create": lambda f: f.drop_next(2, route="objects_batch", when="after"),
    "drop_after_confirm": lambda f: f.drop_next(2, route="upload_confirm", when="after"),
    "drop_after_upload_put": lambda f: f.drop_next(2, route="upload_put", when="after"),
    "drop_after_batch_create": lambda f: f.drop_next(1, route="batches_create", when="after"),
    "drop_after_submit": lambda f: f.drop_next(2, route="batch_submit", when="after"),
    "503_after_submit": lambda f: f.fail_next(1, 503, route="batch_submit", when="after"),
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
    pass_until_synced(d, state, passes=5)
    assert fake.faults_left() == 0  # every injected fault was served
    fake.clear_faults()
    assert_each_once(fake, state, list(files))
    assert_processed_with(fake, files)
    if fault == "timeout_after_bulk_create":  # the API answered, after our 1 s timeout
        assert "ReadTimeout" in caplog.text
        assert fake.calls["objects_batch"] == 4  # 3 groups + 1 retry, replayed by key
    elif fault != "slow_responses":  # the fault reached the client
        assert any(r.status in (0, 429, 500, 503) for r in fake.requests)
    if fault == "429_retry_after_in_body_only":  # waited what the body asked
        times = [r.at for r in fake.requests if r.route == "objects_batch"][:3]
        assert all(b - a >= 0.2 for a, b in itertools.pairwise(times))
    # No object was submitted twice; none was left out; no batch waits in DRAFT but the one
    # whose create answer was lost (never submitted: the reaper cancels it).
    submitted = submitted_ids(fake)
    assert len(submitted) == len(set(submitted))
    if fault != "chaos":
        assert sorted(submitted) == sorted(o["object_id"] for o in fake.list_objects())
        drafts = 1 if fault == "drop_after_batch_create" else 0
        assert len(fake.draft_batches()) == drafts
    if fault in ("drop_after_submit", "503_after_submit"):  # settled by reading the batch
        assert fake.calls["batch_submit"] == 3 and fake.calls["batch_get"] >= 1
        assert {r.status for r in fake.requests if r.route == "batch_submit"} <= {0, 200, 503}


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
    assert "nothing was stored" in sync["last_error"]  # the API's own text, from error.message
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
    assert fake.calls["objects_batch"] == 1  # one call, partial success by object_index
    rows = tracked(state)
    good = list(numbered(4))
    assert {k for k, r in rows.items() if r["status"] == "synced"} == set(good)
    for k in ("poison_a.txt", "sub/poison_b.txt"):
        assert rows[k]["status"] == "retry" and rows[k]["attempts"] == 1
        assert rows[k]["object_id"] is None
        err = rows[k]["last_error"]
        assert "(InvalidBlobError)" in err and "blobs[0]: the file could not be decoded" in err
    assert sorted(key_of(o) for o in fake.list_objects()) == sorted(good)
    assert StateStore(state).get_sync("s1")["total_files_synced"] == 4


def test_when_every_object_fails_the_422_still_names_each(fake):
    """A bulk create where every object fails is a 422 with the {succeeded, failed} body."""
    fake.poison("bad")
    t = target(fake)
    a, b = t.put_objects([remote_spec("bad1.mp4"), remote_spec("bad2.mp4")])
    assert a.error and b.error and "(InvalidBlobError)" in a.error
    assert [r.status for r in fake.requests if r.route == "objects_batch"] == [422]


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
    blob += repr(t) + repr(t.http) + repr(d.defs.resources["mixsync"])
    with pytest.raises(AuthError) as e:
        t.put_objects([remote_spec("x.mp4")])
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


def test_a_unique_key_bucket_is_refused_up_front_and_nothing_is_half_done(
    tmp_path, src, fake, instance
):
    """Mixpeek refuses bulk creates in a bucket with a unique_key (422 for the whole request,
    says the SDK's create_objects_batch); mixsync reads the bucket (BucketResponse.unique_key)
    and says so before uploading anything: `check` fails, the run fails once with the reason,
    no file is charged a strike, and nothing is uploaded or created. The same bucket without
    the key then syncs every file."""
    make_files(src, numbered(3))
    cfg, state = setup_sync(tmp_path, src, fake)
    fake.set_unique_key("bkt_test", ["video_id"], "upsert")
    # The double refuses a bulk create itself, as the API does.
    direct = httpx.post(
        f"{fake.url}/v1/buckets/bkt_test/objects/batch",
        json={"objects": [{"blobs": []}]},
        headers={"Authorization": f"Bearer {KEY}", "X-Namespace": NS},
    )
    assert direct.status_code == 422
    out = CliRunner().invoke(main, ["-c", str(cfg), "check", "media"])
    assert out.exit_code == 1 and "has a unique_key (video_id)" in out.output, out.output
    d = LenientDriver(cfg, instance)
    d.make_due("s1")
    requests, _ = d.tick("s1")
    result = d.execute("s1", requests[0])
    assert not result.success
    row = StateStore(state).get_sync("s1")
    assert "has a unique_key (video_id)" in row["last_error"]
    assert "bulk object creates" in row["last_error"]
    assert fake.calls["uploads_create"] == 0 and fake.calls["objects_batch"] == 1  # ours above
    assert fake.list_objects() == []
    assert all(r["attempts"] == 0 for r in tracked(state).values())  # no strikes
    # A unique_key cannot be removed from a bucket: a user points the sync at another bucket,
    # an edit of syncs.yaml, which makes a new target (it reads its bucket once).
    fake.buckets["bkt_test"].pop("unique_key")
    time.sleep(0.01)
    cfg.write_text(cfg.read_text())
    d.reload()
    d.run_pass("s1")
    assert sorted(key_of(o) for o in fake.list_objects()) == sorted(numbered(3))


# ---------------------------------------------------------------- the target on its own


def test_rejections_name_the_field(fake):
    t = target(fake)
    specs = [
        remote_spec("ok.mp4"),
        remote_spec("ftp.mp4", url="ftp://files.example/ftp.mp4"),
        remote_spec("long_key.mp4", idempotency_key="k" * 300),
        remote_spec("mystery.bin", mime="application/octet-stream"),
        remote_spec("clash.mp4", fields={"mixsync": "mine"}),
        remote_spec("poison.mp4"),
    ]
    fake.poison("poison")
    ok, ftp, long_key, mystery, clash, poison = t.put_objects(specs)
    assert ok.created and ok.object_id
    # The target sends only URLs the API can fetch; anything else is the provider's problem.
    assert ftp.error and "no URL the bucket can fetch" in ftp.error
    # A body the API refuses whole (422 by location) fails the object it names; the others
    # are sent again.
    assert long_key.error and "HTTP 422" in long_key.error
    assert "idempotency_key: String should have at most 255 characters" in long_key.error
    assert fake.calls["objects_batch"] == 2
    assert mystery.error and "set blob_type" in mystery.error
    assert clash.error and "clashes with the source-tracking" in clash.error
    assert poison.error and "(InvalidBlobError)" in poison.error  # per object, by index
    assert [key_of(o) for o in fake.list_objects()] == ["ok.mp4"]
    # A blob property the bucket schema lacks: every object says so; check() says it first.
    wrong = target(fake, blob_property="thumbnail")
    (res,) = wrong.put_objects([remote_spec("v.mp4")])
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
        (res,) = target(small).put_objects([spec])
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


def test_bulk_calls_hold_at_most_100_and_creates_replay_by_key(fake):
    t = target(fake)
    specs = [remote_spec(f"v{i:03d}.mp4") for i in range(230)]
    results = t.put_objects(specs)
    assert all(r.created for r in results)
    assert fake.calls["objects_batch"] == 3  # 100 + 100 + 30 (the double refuses 101)
    assert fake.calls["objects_list"] == 0  # nothing interrupted: the key is the guard
    # The same versions again: the API returns the same objects (replayed), creates none.
    again = t.put_objects(specs[:5])
    assert [r.object_id for r in again] == [r.object_id for r in results[:5]]
    assert not any(r.created for r in again)
    assert len(fake.list_objects()) == 230


def test_interrupted_specs_adopt_and_retire_by_source_ref(fake, monkeypatch):
    """Objects an earlier attempt left (or made before idempotency keys): the one holding the
    fingerprint is reused, the others are deleted; lookups page by next_cursor."""
    monkeypatch.setattr(mixpeek, "LIST_PAGE_SIZE", 7)
    t = target(fake)
    with api(fake) as c:  # another tool (or an old client) made objects with no key at all
        for fp in ("etag-0", "etag-1", "etag-1", "etag-2"):
            body = t._prepare([remote_spec("a.mp4", fingerprint=fp)])[0]
            assert isinstance(body, dict)
            body.pop("idempotency_key")
            assert c.post("/objects", json=body).status_code == 200
        for i in range(20):
            body = t._prepare([remote_spec(f"other{i}.mp4")])[0]
            assert isinstance(body, dict)
            c.post("/objects", json={**body, "idempotency_key": f"o{i}"})
    made = [o["object_id"] for o in fake.list_objects() if key_of(o) == "a.mp4"]
    (res,) = t.put_objects([remote_spec("a.mp4", fingerprint="etag-1", interrupted=True)])
    assert res.object_id == made[1] and not res.created  # the oldest holding etag-1
    assert [o["object_id"] for o in fake.list_objects() if key_of(o) == "a.mp4"] == [made[1]]
    assert fake.calls["objects_list"] == 1 and fake.calls["objects_batch"] == 0
    found = t.find_objects([f"s3:cams:other{i}.mp4" for i in range(20)])
    assert len(found) == 20 and fake.calls["objects_list"] == 1 + 3  # 20 at 7 a page
    # Interrupted with nothing of this version left: created, and the stale one retired.
    (res,) = t.put_objects([remote_spec("a.mp4", fingerprint="etag-9", interrupted=True)])
    assert res.created and [
        o["object_id"] for o in fake.list_objects() if key_of(o) == "a.mp4"
    ] == [res.object_id]


def test_a_changed_file_replaces_its_object_only_once_the_new_one_exists(fake):
    t = target(fake)
    (v1,) = t.put_objects([remote_spec("a.mp4", url="https://cdn.example/a-v1.mp4")])
    assert v1.object_id
    # The create fails for good: the old object stays (the file keeps its last good version).
    fake.fail_next(100, 503, route="objects_batch")
    changed = remote_spec(
        "a.mp4", url="https://cdn.example/a-v2.mp4", fingerprint="etag-2", replaces=v1.object_id
    )
    with pytest.raises(TransientError):
        t.put_objects([changed])
    fake.clear_faults()
    assert [o["object_id"] for o in fake.list_objects()] == [v1.object_id]
    assert fake.calls["object_delete"] == 0
    (v2,) = t.put_objects([changed])
    assert v2.created and v2.object_id != v1.object_id
    (obj,) = fake.list_objects()
    assert obj["object_id"] == v2.object_id
    assert obj["blobs"][0]["properties"] == {"url": "https://cdn.example/a-v2.mp4"}
    # Replaying the same change (a retried step) is harmless: same object, nothing deleted.
    (again,) = t.put_objects([changed])
    assert again.object_id == v2.object_id and not again.created
    assert len(fake.list_objects()) == 1


def test_retry_after_retryable_false_and_the_budget(fake):
    t = target(fake, retry=RetryBudget(attempts=4, initial_seconds=0.01, max_wait_seconds=5))
    fake.fail_next(2, 429, retry_after=0.4, retry_after_in=("body",), route="bucket_get")
    t.check()
    times = [r.at for r in fake.requests if r.route == "bucket_get"]
    assert len(times) == 3
    assert all(b - a >= 0.4 for a, b in itertools.pairwise(times))  # error.details honoured
    n = fake.calls["bucket_get"]
    fake.fail_next(100, 502, route="bucket_get")
    with pytest.raises(TransientError, match="HTTP 502"):
        t.check()
    assert fake.calls["bucket_get"] - n == 4  # the budget, then the run fails
    fake.clear_faults()
    # retryable: false is never retried, neither a 429 nor a 503.
    for status in (429, 503):
        n = fake.calls["bucket_get"]
        fake.fail_next(1, status, retry_after=0.01, retryable=False, route="bucket_get")
        with pytest.raises(TransientError, match="not retryable"):
            t.check()
        assert fake.calls["bucket_get"] - n == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = target(fake, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError, match="cannot connect"):
        dead.check()
    n = fake.calls["batches_create"]
    with pytest.raises(MixpeekRejected, match=r"object_ids\[0\]: object 'obj_nope' not found"):
        t.submit_batch(["obj_nope"])
    assert fake.calls["batches_create"] == n + 1  # a 4xx is not retried


def test_submit_batch_never_leaves_a_draft_and_settles_lost_answers(fake):
    t = target(fake)
    a, b = t.put_objects([remote_spec("a.mp4"), remote_spec("b.mp4")])
    assert a.object_id and b.object_id
    ids = [a.object_id, b.object_id]
    # The submit's answer is lost: the batch is read, found submitted, not submitted again.
    fake.drop_next(1, route="batch_submit", when="after")
    sub = t.submit_batch(ids)
    assert sub.task_id and fake.batches[sub.batch_id]["task_id"] == sub.task_id
    assert fake.calls["batch_submit"] == 1 and fake.calls["batch_get"] == 1
    assert t.batch_status(sub.batch_id) == "COMPLETED"
    task = t.get_task(sub.task_id)
    assert task is not None and task["status"] == "COMPLETED"
    assert t.get_task("task_forgotten") is None
    assert fake.draft_batches() == []
    # A draft the reaper cancelled before its submit arrived is replaced by a new batch ...
    fake.draft_ttl_seconds = 0.0
    n = fake.calls["batches_create"]
    with pytest.raises(TransientError, match="cancelled 3 draft batches"):
        t.submit_batch(ids)  # ... a bounded number of times
    assert fake.calls["batches_create"] == n + 3
    assert {fake.batches[b]["status"] for b in list(fake.batches)[-3:]} == {"CANCELED"}
    fake.draft_ttl_seconds = 1800.0
    sub3 = t.submit_batch(ids)
    assert t.batch_status(sub3.batch_id) == "COMPLETED"


def test_the_reaper_cancels_drafts_and_every_terminal_status_ends_polling(
    tmp_path, src, fake, instance
):
    with api(fake) as c:
        obj = c.post(
            "/objects",
            json={"blobs": [{"property": "content", "type": "text", "data": "hello"}]},
        ).json()
        fake.draft_ttl_seconds = 0.2
        draft = c.post("/batches", json={"object_ids": [obj["object_id"]]}).json()
        assert draft["status"] == "DRAFT"
        time.sleep(0.3)
        assert c.get(f"/batches/{draft['batch_id']}").json()["status"] == "CANCELED"
        late = c.post(f"/batches/{draft['batch_id']}/submit")
        assert late.status_code == 400 and late.json()["error"]["code"] == "batch_not_draft"
    fake.draft_ttl_seconds = 1800.0
    # INTERRUPTED and SKIPPED are terminal: a refresh records them and stops asking.
    make_files(src, numbered(4))
    fake.batch_outcome = "INTERRUPTED"
    cfg, _ = setup_sync(tmp_path, src, fake, {"batch_size": 2})
    Driver(cfg, instance).run_pass("s1")
    runner = CliRunner()
    out = runner.invoke(main, ["-c", str(cfg), "status", "s1", "--json", "--refresh"])
    b = json.loads(out.output)["syncs"][0]["batches"]
    assert (b["pending"], b["failed"], b["completed"]) == (0, 2, 0)
    assert {x["status"] for x in b["failed_batches"]} == {"INTERRUPTED"}
    gets = fake.calls["batch_get"]
    runner.invoke(main, ["-c", str(cfg), "status", "s1", "--refresh"])
    assert fake.calls["batch_get"] == gets  # terminal: not polled again
    t = target(fake)
    fake.batch_outcome = "COMPLETED"
    ids = [o["object_id"] for o in fake.list_objects() if o["status"] == "PENDING"][:1]
    first = t.submit_batch(ids)
    again = t.submit_batch(ids)
    assert t.batch_status(first.batch_id) == "COMPLETED"
    # dedup replace: processed again rather than skipped (mixsync asks for what it sends).
    assert t.batch_status(again.batch_id) == "COMPLETED"
    with api(fake) as c:
        skip = c.post("/batches?auto_submit=true", json={"object_ids": ids}).json()
        assert skip["status"] == "SKIPPED"  # the default, skip, had nothing to process


def test_the_double_refuses_what_the_old_client_sent(fake):
    """Request by request, what mixsync sent before issue 9 and the API does not accept."""
    obj = {"blobs": [{"property": "content", "type": "video", "data": "https://x/y.mp4"}]}
    with api(fake) as c:
        created = c.post("/objects", json=obj).json()
        oid = created["object_id"]
        # PUT with blobs: "It cannot replace blobs".
        r = c.put(f"/objects/{oid}", json={"blobs": obj["blobs"], "metadata": {"a": 1}})
        assert r.status_code == 422
        ErrorResponse.from_dict(r.json())  # the API's error shape, as the SDK parses it
        err = r.json()["error"]
        assert err["details"]["errors"][0]["loc"] == ["body", "blobs"]
        assert "cannot replace blobs" in err["message"]
        # A second submit is a 400 (submit needs DRAFT), not the 409 the old client expected.
        bid = c.post("/batches", json={"object_ids": [oid]}).json()["batch_id"]
        assert c.post(f"/batches/{bid}/submit").status_code == 200
        second = c.post(f"/batches/{bid}/submit")
        assert second.status_code == 400 and second.json()["error"]["code"] == "batch_not_draft"
        # The listing has next_cursor and no has_more; offset paging stops at 10,000.
        page = c.post("/objects/list", params={"limit": 100}, json={}).json()
        ListObjectsResponse.from_dict(page)
        assert "has_more" not in page["pagination"] and "next_cursor" in page["pagination"]
        assert c.post("/objects/list", params={"offset": 10_001}, json={}).status_code == 422
        # The old list body's sort was fine, but select and filters keys are checked.
        r = c.post("/objects/list", json={"filters": {"AND": []}, "page": 2})
        assert r.status_code == 422 and r.json()["error"]["code"] == "extra_forbidden"
        # The presigned PUT without the signed Content-Type (the old client sent none).
        up = c.post("/uploads", json={"filename": "a.txt", "content_type": "text/plain"}).json()
        bare = httpx.put(up["presigned_url"], content=b"hi", headers={"Content-Type": ""})
        assert bare.status_code == 403 and "SignatureDoesNotMatch" in bare.text
        assert httpx.put(
            up["presigned_url"], content=b"hi", headers={"Content-Type": "text/plain"}
        ).is_success
        # Uploads create an object on confirm unless told not to: the old client's
        # create_object_on_confirm: false was right, this default is the trap.
        confirmed = c.post(f"/uploads/{up['upload_id']}/confirm", json={}).json()
        assert confirmed["object_id"] in fake.objects
        # A bulk create object with a blob key the model does not declare: extra_forbidden.
        bad = {"objects": [{"blobs": [{**obj["blobs"][0], "mime_type": "video/mp4"}]}]}
        r = c.post("/objects/batch", json=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "extra_forbidden"
        assert r.json()["error"]["details"]["errors"][0]["loc"] == [
            "body",
            "objects",
            0,
            "blobs",
            0,
            "mime_type",
        ]
        # A bulk create where every object fails: 422, with the {succeeded, failed} body.
        r = c.post(
            "/objects/batch",
            json={"objects": [{"blobs": [{**obj["blobs"][0], "property": "nope"}]}]},
        )
        assert r.status_code == 422
        body = CreateObjectsBatchResponse.from_dict(r.json())
        assert body is not None and body.succeeded == [] and body.failed[0].object_index == 0
        # Batches default to dedup skip and stay DRAFT unless submitted.
        batch = c.post("/batches", json={"object_ids": [oid]}).json()
        assert BatchModel.from_dict(batch) is not None
        assert batch["status"] == "DRAFT" and batch["dedup_strategy"] == "skip"


def test_the_double_is_as_strict_as_the_api(fake):
    base = f"{fake.url}/v1/buckets/bkt_test"
    good = {"Authorization": f"Bearer {KEY}", "X-Namespace": NS}
    obj = {"blobs": [{"property": "content", "type": "video", "data": "https://x/y.mp4"}]}
    with httpx.Client() as c:
        assert c.get(base).status_code == 401
        r = c.get(base, headers={**good, "Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["success"] is False
        assert c.get(base, headers={"Authorization": f"Bearer {KEY}"}).status_code == 400
        assert c.get(base, headers={**good, "X-Namespace": "other"}).status_code == 400
        assert c.get(f"{fake.url}/v1/buckets/bkt_other", headers=good).status_code == 404
        # Object roots keep undeclared keys (CreateObjectRequest.additional_properties) ...
        r = c.post(f"{base}/objects/batch", headers=good, json={"objects": [{**obj, "x": 1}]})
        assert r.status_code == 200 and r.json()["succeeded"][0]["x"] == 1
        # ... but not auto_process, and the batch envelope keeps none.
        r = c.post(f"{base}/objects", headers=good, json={**obj, "auto_process": True})
        assert r.status_code == 422
        r = c.post(f"{base}/objects/batch", headers=good, json={"objects": [obj] * 101})
        assert r.status_code == 422 and "at most 100" in r.text
        r = c.post(f"{base}/objects/batch", headers=good, json={"objects": [obj], "extra": True})
        assert r.status_code == 422
        up = c.post(
            f"{base}/uploads",
            headers=good,
            json={"filename": "a.txt", "content_type": "text/plain", "file_size_bytes": 2},
        ).json()
        put = c.put(
            up["presigned_url"], content=b"hi", headers={**good, "Content-Type": "text/plain"}
        )
        assert put.status_code == 400  # two auth mechanisms
        confirm = f"{base}/uploads/{up['upload_id']}/confirm"
        assert c.post(confirm, headers=good, json={}).status_code == 400  # nothing uploaded
        signed = {"Content-Type": "text/plain"}
        forged = up["presigned_url"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
        assert c.put(forged, content=b"hi", headers=signed).status_code == 403
        assert c.put(up["presigned_url"], content=b"hi", headers=signed).status_code == 200
        first = c.post(confirm, headers=good, json={"file_size_bytes": 2}).json()
        assert first["object_id"] and c.post(confirm, headers=good).json() == first
        # file_size_bytes must be ≥ 1 (an empty file declares no size).
        r = c.post(
            f"{base}/uploads",
            headers=good,
            json={"filename": "e.txt", "content_type": "text/plain", "file_size_bytes": 0},
        )
        assert r.status_code == 422
        r = c.post(f"{base}/batches/btch_x/submit", headers=good, json={"now": True})
        assert r.status_code == 422
        r = c.post(f"{base}/objects/list?limit=1001", headers=good, json={})
        assert r.status_code == 422
        r = c.post(f"{base}/batches", headers=good, json={"object_ids": ["x"], "dedup": "skip"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "extra_forbidden"
        assert "accepted keys: object_ids" in r.json()["error"]["details"]["errors"][0]["msg"]


def test_local_files_that_are_empty_or_duplicates_stay_distinct(tmp_path, src, fake, instance):
    """Two files with the same bytes are two objects (uploads skip_duplicates: false), and an
    empty file uploads without a size (file_size_bytes must be ≥ 1)."""
    files = {"a.txt": b"same", "b.txt": b"same", "empty.txt": b""}
    make_files(src, files)
    cfg, state = setup_sync(tmp_path, src, fake)
    Driver(cfg, instance).run_pass("s1")
    assert_each_once(fake, state, list(files))
    assert_processed_with(fake, files)


def test_batch_status_refresh_shows_pending_then_failed_batches(tmp_path, src, fake, instance):
    make_files(src, numbered(5))
    fake.process_seconds = 3600.0  # the pipeline is busy: batches stay IN_PROGRESS
    cfg, state = setup_sync(tmp_path, src, fake, {"batch_size": 2})
    Driver(cfg, instance).run_pass("s1")
    runner = CliRunner()
    out = runner.invoke(main, ["-c", str(cfg), "status", "s1", "--json", "--refresh"])
    assert out.exit_code == 0, out.output
    b = json.loads(out.output)["syncs"][0]["batches"]
    assert (b["pending"], b["failed"], b["completed"]) == (3, 0, 0)
    assert {p["status"] for p in b["pending_batches"]} == {"IN_PROGRESS"}
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


def test_blob_spec_for_the_file_itself_under_another_property(fake):
    fake.stop()
    with FakeMixpeek(api_key=KEY, namespace=NS, schema_properties=("content", "copy")) as f:
        spec = remote_spec("v.mp4", blobs=(BlobSpec("copy", "s3://cams/v.mp4", blob_type="video"),))
        (res,) = target(f).put_objects([spec])
        (obj,) = f.list_objects()
        assert res.object_id == obj["object_id"]
        urls = {b["property"]: b["properties"]["url"] for b in obj["blobs"]}
        assert urls == {"content": "https://cdn.example/v.mp4", "copy": "https://cdn.example/v.mp4"}
