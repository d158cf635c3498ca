"""S3 server → Mixpeek API double, through the real sensor and runs: the whole production path."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from mixsync_dagster.state import StateStore
from mixsync_dagster.targets import mixpeek
from tests.fake_mixpeek import FakeMixpeek
from tests.harness import Driver, write_config
from tests.test_target_mixpeek import FAST, KEY, NS, LenientDriver, assert_each_once, tracked

pytest_plugins = ["tests.s3_servers"]


@pytest.fixture
def fake() -> Any:
    with FakeMixpeek(api_key=KEY, namespace=NS) as f:
        yield f


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXPEEK_API_KEY", KEY)
    monkeypatch.setenv("MIXPEEK_NAMESPACE", NS)
    monkeypatch.setattr(mixpeek, "DEFAULT_BUDGET", FAST)


def setup(tmp_path, seaweed, fake, n: int):
    client = seaweed.client()
    bucket = "m-" + uuid.uuid4().hex[:10]
    client.create_bucket(Bucket=bucket)
    for i in range(n):
        client.put_object(Bucket=bucket, Key=f"videos/clip_{i:03d}.mp4", Body=f"v{i}".encode())
    client.put_object(Bucket=bucket, Key="other/skip.mp4", Body=b"x")
    state = f"sqlite:///{tmp_path / 'state.db'}"
    cfg = write_config(
        tmp_path / "syncs.yaml",
        connection=seaweed.connection(),
        state_url=state,
        syncs=[{"name": "s1", "source_path": f"{bucket}/videos/", "batch_size": 10}],
        buckets={
            "media": {
                "target": "mixpeek",
                "bucket_id": "bkt_test",
                "namespace": {"env": "MIXPEEK_NAMESPACE"},
                "api_key": {"env": "MIXPEEK_API_KEY"},
                "base_url": fake.url,
                "timeout_seconds": 5,
            }
        },
    )
    keys = [f"{bucket}/videos/clip_{i:03d}.mp4" for i in range(n)]
    return client, bucket, cfg, state, keys


def test_s3_to_mixpeek_end_to_end(tmp_path, seaweed, fake, instance):
    client, bucket, cfg, state, keys = setup(tmp_path, seaweed, fake, 25)
    d = Driver(cfg, instance)
    d.run_pass("s1")
    assert_each_once(fake, state, keys)
    objs = {o["metadata"]["mixsync"]["source_key"]: o for o in fake.list_objects()}
    first = objs[keys[0]]
    assert first["metadata"]["mixsync"]["provider"] == "s3"
    blob = first["blobs"][0]
    url = blob["properties"]["url"]
    assert blob["type"] == "video" and url.startswith(seaweed.endpoint)
    assert "X-Amz-Signature" in url  # a presigned URL the API can fetch
    submitted = [b for b in fake.batches.values() if b.get("_submitted") is not None]
    assert len(submitted) == 3 and fake.draft_batches() == []  # 25 objects in batches of 10
    # Unchanged: no API call creates anything.
    creates = fake.calls["objects_batch"]
    assert creates >= 1
    assert d.run_pass("s1") == 0 and fake.calls["objects_batch"] == creates
    # Changed object: a new Mixpeek object with a fresh URL, processed; the old one deleted.
    client.put_object(Bucket=bucket, Key="videos/clip_001.mp4", Body=b"a new take")
    # SeaweedFS's filer can serve the old bytes for a moment after an overwrite (seen under
    # load): wait until the store itself answers with the new ones.
    for _ in range(100):
        got = client.get_object(Bucket=bucket, Key="videos/clip_001.mp4")["Body"].read()
        if got == b"a new take":
            break
        time.sleep(0.05)
    assert d.run_pass("s1") == 1
    after = {o["metadata"]["mixsync"]["source_key"]: o for o in fake.list_objects()}
    old, new = objs[keys[1]], after[keys[1]]
    assert new["object_id"] != old["object_id"] and old["object_id"] in fake.deleted
    assert new["metadata"]["mixsync"]["fingerprint"] != old["metadata"]["mixsync"]["fingerprint"]
    # The API fetches a URL blob's bytes itself: what the new object's URL serves is the new
    # take. (Two presigned URLs signed in the same second are the same text, so comparing the
    # double's URL hashes would test the clock, not the sync.)
    new_url = new["blobs"][0]["properties"]["url"]
    assert httpx.get(new_url, timeout=10).content == b"a new take"
    new_hash = new["blobs"][0]["details"]["hash"]
    assert fake.documents[new["object_id"]]["blob_hashes"] == {"content": new_hash}
    assert fake.documents[new["object_id"]]["batch_id"] != fake.documents.get(
        old["object_id"], {}
    ).get("batch_id")
    assert_each_once(fake, state, keys)


def test_s3_to_mixpeek_survives_api_faults(tmp_path, seaweed, fake, instance):
    _, _, cfg, state, keys = setup(tmp_path, seaweed, fake, 12)
    fake.fail_next(4, 500)
    d = LenientDriver(cfg, instance)
    for _ in range(4):
        d.run_pass("s1")
        if {r["status"] for r in tracked(state).values()} == {"synced"}:
            break
    assert fake.faults_left() == 0
    assert_each_once(fake, state, keys)
    assert StateStore(state).get_sync("s1")["total_files_synced"] == 12
