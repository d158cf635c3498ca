"""The GCS provider against a real fake-gcs-server process, and end to end on a real Dagster
instance. Error cases fake-gcs-server never produces (401/403, refused page tokens, 503) come
from a scripted HTTP server spoken to by the real client library."""

from __future__ import annotations

import json
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from google.cloud import storage

from mixsync_dagster.config import GCSConnection
from mixsync_dagster.core.records import FileItem, Page
from mixsync_dagster.errors import AuthError, FileVanished, ProviderError, TransientError
from mixsync_dagster.providers import gcs as gcs_module
from mixsync_dagster.providers.gcs import GCSProvider
from mixsync_dagster.state import StateStore
from tests.gcs_server import (
    OTHER_FILES,
    PAGING_FILES,
    FakeGCS,
    ScriptedGCS,
    free_port,
    gcs_error,
    service_account_info,
)
from tests.harness import Driver, objects, write_config

pytest_plugins = ["tests.gcs_server"]


@pytest.fixture(autouse=True)
def _no_emulator_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The provider must reach the server without STORAGE_EMULATOR_HOST."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    yield


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    """SQLite only: the state store's PostgreSQL path is covered by the local-provider tests."""
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def bucket(fake_gcs: FakeGCS) -> storage.Bucket:
    """A fresh, empty bucket on the session's server."""
    return fake_gcs.client().create_bucket("t-" + uuid.uuid4().hex[:12])


def provider(url: str, **conn: Any) -> GCSProvider:
    return GCSProvider("g1", GCSConnection(provider="gcs", endpoint_url=url, **conn))


def listing(
    p: GCSProvider, source: str, pos: str | None, size: int, prefix: str = ""
) -> list[Page]:
    return list(p.list_pages(source, pos, size, prefix))


def keys(pages: list[Page]) -> list[str]:
    return [i.key for pg in pages for i in pg.items]


def upload(b: storage.Bucket, name: str, data: bytes = b"x", **attrs: Any) -> storage.Blob:
    blob = b.blob(name)
    blob.metadata = attrs.pop("metadata", None)
    blob.upload_from_string(data, content_type=attrs.pop("content_type", None))
    return blob


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


# ---------------------------------------------------------------- paging and positions


def test_pages_over_3000_blobs_resume_from_every_boundary(fake_gcs: FakeGCS) -> None:
    p = provider(fake_gcs.url)
    expected = sorted(f"paging/set/d{i % 7}/f_{i:05d}.txt" for i in range(PAGING_FILES))
    full = listing(p, "paging/set/", None, 250)
    assert keys(full) == expected  # lexicographic, nothing from other/, no duplicates
    assert [pg.next_position is None for pg in full] == [False] * (len(full) - 1) + [True]
    assert len(full) == -(-PAGING_FILES // 250) and all(len(pg.items) <= 250 for pg in full)
    done = 0
    for pg in full[:-1]:
        done += len(pg.items)
        # The same page size replays the server's token; another size resumes after the last
        # name listed. Both continue exactly after the boundary.
        for size in (250, 1000, 97):
            assert keys(listing(p, "paging/set/", pg.next_position, size)) == expected[done:]
    first = full[0].items[0]
    assert first.rel_path == "d0/f_00000.txt" and first.size == len(
        b"content of set/d0/f_00000.txt\n"
    )


def test_default_page_size_pages_and_resumes(fake_gcs: FakeGCS) -> None:
    p = provider(fake_gcs.url)
    pages = listing(p, "paging", None, 1000)  # the whole bucket: set/ and other/
    assert [len(pg.items) for pg in pages] == [1000, 1000, 1000, PAGING_FILES + OTHER_FILES - 3000]
    everything = keys(pages)
    assert len(set(everything)) == PAGING_FILES + OTHER_FILES
    for n, pg in enumerate(pages[:-1], start=1):
        assert keys(listing(p, "paging", pg.next_position, 1000)) == everything[n * 1000 :]


def test_prefix_push_down_lists_only_that_folder(fake_gcs: FakeGCS) -> None:
    p = provider(fake_gcs.url)
    pages = listing(p, "paging/set", None, 1000, prefix="d3/")
    items = [i for pg in pages for i in pg.items]
    assert len(items) == len([i for i in range(PAGING_FILES) if i % 7 == 3])
    assert {i.rel_path.split("/")[0] for i in items} == {"d3"}
    assert items[0].key == "paging/set/d3/f_00003.txt" and items[0].rel_path == "d3/f_00003.txt"
    # A position from a listing of another folder is refused, never misread.
    other = listing(p, "paging/set", None, 10, prefix="d1/")[0].next_position
    with pytest.raises(ProviderError, match="not inside"):
        listing(p, "paging/set", other, 10, prefix="d3/")


def test_refused_page_token_resumes_after_the_last_listed_name() -> None:
    """A token the server no longer accepts (400) falls back to startOffset = last name."""
    names = [f"a/{i}" for i in range(1, 6)]
    epoch = {"n": 1}  # tokens carry the epoch they were issued in; older ones are refused

    def respond(method: str, path: str, q: dict[str, list[str]], body: bytes) -> Any:
        start = q.get("startOffset", [""])[0]
        if "pageToken" in q:
            tok_epoch, _, tok_start = q["pageToken"][0].partition(":")
            if int(tok_epoch) != epoch["n"]:
                return gcs_error(400, "Invalid argument: pageToken")
            start = tok_start
        size = int(q["maxResults"][0])
        rest = [n for n in names if n >= start]
        doc: dict[str, Any] = {
            "kind": "storage#objects",
            "items": [_resource(n) for n in rest[:size]],
        }
        if len(rest) > size:
            doc["nextPageToken"] = f"{epoch['n']}:{rest[size]}"
        return 200, doc

    with ScriptedGCS(respond) as srv:
        p = provider(srv.url)
        first = next(p.list_pages("b/a/", None, 2))
        assert [i.key for i in first.items] == ["b/a/1", "b/a/2"]
        assert keys(listing(p, "b/a/", first.next_position, 2)) == ["b/a/3", "b/a/4", "b/a/5"]
        epoch["n"] = 2
        srv.requests.clear()
        assert keys(listing(p, "b/a/", first.next_position, 2)) == ["b/a/3", "b/a/4", "b/a/5"]
        queries = [q for _, _, q in srv.requests]
        assert queries[0]["pageToken"] == ["1:a/3"]  # refused
        assert queries[1]["startOffset"] == ["a/2"] and "pageToken" not in queries[1]
        assert queries[2]["pageToken"] == ["2:a/4"]  # then the new server's own token


def _resource(name: str) -> dict[str, Any]:
    return {
        "kind": "storage#object",
        "name": name,
        "bucket": "b",
        "size": "3",
        "generation": "7",
        "metageneration": "1",
        "md5Hash": "rL0Y20zC+Fzt72VPzMSk2A==",
        "crc32c": "AAAAAA==",
        "etag": "CAc=",
        "contentType": "text/plain",
        "updated": "2025-01-01T00:00:00.000Z",
        "timeCreated": "2025-01-01T00:00:00.000Z",
    }


# ---------------------------------------------------------------- what a listed file says


def test_names_metadata_content_types_and_placeholders(fake_gcs: FakeGCS, bucket: Any) -> None:
    odd = {
        "media/ünïcødé 名前.mp4": "video/mp4",
        "media/with space.mov": "video/quicktime",
        "media/a+b.txt": "text/plain",
        "media/100%.txt": "text/plain",
        "media/%2F not a slash.txt": "text/plain",
        "media/deep/er/est/x.bin": "application/octet-stream",
    }
    for n, ctype in odd.items():
        upload(bucket, n, n.encode(), content_type=ctype, metadata={"status": "ok", "title": n})
    upload(bucket, "media/empty/", b"")  # a console "folder": not a file
    upload(bucket, "media/odd/", b"data")  # content under a folder-like name: no file name
    upload(bucket, "media_old/z.txt")  # a sibling folder sharing the prefix, outside the source
    p = provider(fake_gcs.url)
    pages = listing(p, f"{bucket.name}/media", None, 1000)
    items = {i.rel_path: i for pg in pages for i in pg.items}
    assert set(items) == {n.removeprefix("media/") for n in odd}
    skipped = {s.key: s.reason for pg in pages for s in pg.skipped}  # never silently
    assert skipped == {
        f"{bucket.name}/media/empty/": "folder placeholder (a zero-byte object ending in '/'), "
        "not a file",
        f"{bucket.name}/media/odd/": "name ends in '/' so it has no file name (4 bytes)",
    }
    for n, ctype in odd.items():
        item = items[n.removeprefix("media/")]
        assert item.key == f"{bucket.name}/{n}"
        assert item.size == len(n.encode())
        assert item.content_type == ctype
        assert item.metadata["status"] == "ok" and item.metadata["title"] == n
        gcs = item.metadata["gcs"]
        assert gcs["bucket"] == bucket.name and gcs["generation"] > 0
        assert gcs["storage_class"] == "STANDARD" and gcs["md5_hash"] and gcs["crc32c"]
        assert item.fingerprint.startswith(f"{gcs['generation']}-{gcs['md5_hash']}-")
        assert item.modified_at.utcoffset() is not None and item.etag
        assert FileItem.from_json(item.to_json()) == item  # survives the work list
        with p.open(item) as f:
            assert f.read() == n.encode()
        url = p.blob_url(item)
        assert url.startswith(f"{fake_gcs.url}/download/storage/v1/b/{bucket.name}/o/")
        assert f"generation={gcs['generation']}" in url
        assert fetch(url) == n.encode()
    assert p.enrich(list(items.values())) == list(items.values())


def test_metadata_only_edit_moves_the_fingerprint(fake_gcs: FakeGCS, bucket: Any) -> None:
    """status: draft -> approved must reach metadata filters even though the bytes are the same."""
    upload(bucket, "m/clip.mp4", b"same", content_type="video/mp4", metadata={"status": "draft"})
    p = provider(fake_gcs.url)
    (old,) = keys_items(p, bucket.name)
    blob = bucket.get_blob("m/clip.mp4")
    blob.metadata = {"status": "approved"}
    blob.patch()
    (new,) = keys_items(p, bucket.name)
    assert new.metadata["status"] == "approved"
    assert new.metadata["gcs"]["generation"] == old.metadata["gcs"]["generation"]
    assert new.fingerprint != old.fingerprint


def test_overwrite_moves_the_fingerprint_and_pins_generations(
    fake_gcs: FakeGCS, bucket: Any
) -> None:
    upload(bucket, "v/clip.mp4", b"one", content_type="video/mp4", metadata={"k": "1"})
    p = provider(fake_gcs.url)
    (old,) = keys_items(p, bucket.name)
    upload(bucket, "v/clip.mp4", b"second take", content_type="video/mp4", metadata={"k": "2"})
    (new,) = keys_items(p, bucket.name)
    assert new.key == old.key and new.fingerprint != old.fingerprint
    assert new.metadata["gcs"]["generation"] > old.metadata["gcs"]["generation"]
    assert (new.size, new.metadata["k"]) == (len(b"second take"), "2")
    # The listed generation is what open() and the URL give; a replaced one is gone.
    with pytest.raises(FileVanished, match="generation"):
        p.open(old)
    with pytest.raises(urllib.error.HTTPError):
        fetch(p.blob_url(old))
    assert fetch(p.blob_url(new)) == b"second take"
    bucket.blob("v/clip.mp4").delete()
    with pytest.raises(FileVanished):
        p.open(new)


def keys_items(p: GCSProvider, bucket: str) -> list[FileItem]:
    return [i for pg in p.list_pages(bucket, None, 1000) for i in pg.items]


def test_service_account_signs_a_v4_url_for_the_generation(fake_gcs: FakeGCS, bucket: Any) -> None:
    def token(method: str, path: str, q: Any, body: bytes) -> Any:
        assert (method, path) == ("POST", "/token")
        return 200, {"access_token": "ya29.test", "expires_in": 3600, "token_type": "Bearer"}

    upload(bucket, "in/a b+ü.mp4", b"video bytes", content_type="video/mp4")
    with ScriptedGCS(token) as auth:
        info = service_account_info(f"{auth.url}/token")
        p = provider(fake_gcs.url, credentials_json=json.dumps(info), signed_url_expiry_seconds=900)
        (item,) = keys_items(p, bucket.name)
        assert auth.requests and auth.requests[0][:2] == ("POST", "/token")
    url = p.blob_url(item)
    parts = urlsplit(url)
    q = parse_qs(parts.query)
    assert url.startswith(f"{fake_gcs.url}/{bucket.name}/in/")
    assert q["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert q["X-Goog-Expires"] == ["900"]
    assert q["X-Goog-Credential"][0].startswith(info["client_email"] + "/")
    assert len(q["X-Goog-Signature"][0]) == 512  # hex RSA-2048
    assert q["generation"] == [str(item.metadata["gcs"]["generation"])]
    assert fetch(url) == b"video bytes"


# ---------------------------------------------------------------- errors


def test_missing_bucket_is_a_provider_error_naming_it(fake_gcs: FakeGCS) -> None:
    p = provider(fake_gcs.url)
    with pytest.raises(ProviderError, match="bucket 'no-such-bucket' does not exist") as e:
        listing(p, "no-such-bucket/x/", None, 10)
    assert not isinstance(e.value, TransientError | AuthError)
    with pytest.raises(ProviderError, match="no-such-bucket"):
        p.check("no-such-bucket/x/")


@pytest.mark.parametrize("code", [401, 403])
def test_refused_credentials_fail_fast_naming_the_connection(code: int) -> None:
    def respond(method: str, path: str, q: Any, body: bytes) -> Any:
        if path == "/token":
            return 200, {"access_token": "ya29.test", "expires_in": 3600, "token_type": "Bearer"}
        return gcs_error(code, "mixsync@x does not have storage.objects.list access")

    with ScriptedGCS(respond) as srv:
        info = service_account_info(f"{srv.url}/token")
        p = provider(srv.url, project="proj-1", credentials_json=json.dumps(info))
        with pytest.raises(AuthError) as e:
            listing(p, "vault/in/", None, 10)
        listed = [r for r in srv.requests if r[1].endswith("/o")]
        # 403 is final; on 401 google-auth refreshes the token and tries again (twice).
        assert len(listed) == (1 if code == 403 else 3)
    msg = str(e.value)
    assert "connection 'g1'" in msg and "bucket 'vault'" in msg
    assert "credentials_json" in msg and "proj-1" in msg and "roles/storage.objectViewer" in msg
    assert f"{code} " in msg and "storage.objects.list access" in msg
    assert "PRIVATE KEY" not in "".join(traceback.format_exception(e.value))


def test_anonymous_401_is_an_auth_error() -> None:
    with (
        ScriptedGCS(lambda *a: gcs_error(401, "Anonymous caller")) as srv,
        pytest.raises(AuthError, match="connection 'g1': GCS refused the credentials"),
    ):
        listing(provider(srv.url), "vault/in/", None, 10)


def test_refused_service_account_never_leaks_the_key(fake_gcs: FakeGCS) -> None:
    def respond(method: str, path: str, q: Any, body: bytes) -> Any:
        return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}

    with ScriptedGCS(respond) as auth:
        info = service_account_info(f"{auth.url}/token")
        secret = json.dumps(info)
        p = provider(fake_gcs.url, credentials_json=secret)
        with pytest.raises(AuthError) as e:
            listing(p, "paging/set/", None, 10)
    shown = "".join(traceback.format_exception(e.value))
    assert "connection 'g1'" in shown and "invalid_grant" in shown
    key_body = info["private_key"].splitlines()[5]
    assert key_body not in shown and "ya29" not in shown
    # Unparseable JSON: the value is never echoed.
    bad = provider(fake_gcs.url, credentials_json='{"private_key": "hunter2-secret"')
    with pytest.raises(AuthError, match="not valid JSON") as e2:
        listing(bad, "paging/set/", None, 10)
    assert "hunter2" not in "".join(traceback.format_exception(e2.value))


def test_transient_errors_use_the_library_retry_then_give_up() -> None:
    state = {"n": 0}

    def flaky(method: str, path: str, q: Any, body: bytes) -> Any:
        state["n"] += 1
        if state["n"] <= 2:
            return gcs_error(503, "backend unavailable")
        return 200, {"kind": "storage#objects", "items": [_resource("x/1")]}

    with ScriptedGCS(flaky) as srv:
        assert keys(listing(provider(srv.url), "b/x/", None, 10)) == ["b/x/1"]
        assert len(srv.requests) == 3
    with ScriptedGCS(lambda *a: gcs_error(503, "backend unavailable")) as srv:
        p = GCSProvider(
            "g1", GCSConnection(provider="gcs", endpoint_url=srv.url), list_retry_seconds=1.5
        )
        with pytest.raises(TransientError, match=r"connection 'g1'.*503") as e:
            listing(p, "b/x/", None, 10)
        assert len(srv.requests) >= 2
    assert "still failing after the client's retries" in str(e.value)


def test_stopped_server_is_transient(tmp_path: Path) -> None:
    with FakeGCS(free_port(), backend="filesystem", root=tmp_path / "fs") as server:
        server.client().create_bucket("bkt")
        p = GCSProvider(
            "g1", GCSConnection(provider="gcs", endpoint_url=server.url), list_retry_seconds=1.0
        )
        assert listing(p, "bkt", None, 10)[0].items == []
        server.stop()
        with pytest.raises(TransientError, match="connection 'g1'"):
            listing(p, "bkt", None, 10)


def test_check_names_what_it_saw(fake_gcs: FakeGCS) -> None:
    p = provider(fake_gcs.url)
    assert p.check("paging/set/") == "gs://paging/set/ is listable (1 object(s) on the first page)"
    assert p.check(None).startswith("credentials accepted by GCS")


# ---------------------------------------------------------------- end to end through Dagster


def gcs_config(tmp_path: Path, state_url: str, url: str, syncs: list[dict[str, Any]]) -> Path:
    return write_config(
        tmp_path / "syncs.yaml",
        state_url=state_url,
        syncs=syncs,
        connection={"provider": "gcs", "endpoint_url": url, "project": "test"},
    )


def by_key(state_url: str) -> dict[str, dict[str, Any]]:
    return {o["source_key"]: o for o in objects(state_url)}


def test_cli_check_reports_each_source(tmp_path, state_url, fake_gcs) -> None:
    from click.testing import CliRunner

    from mixsync_dagster.cli import main

    syncs = [
        {"name": "ok", "source_path": "paging/other/"},
        {"name": "gone", "source_path": "missing-bucket/x/"},
    ]
    cfg = gcs_config(tmp_path, state_url, fake_gcs.url, syncs)
    res = CliRunner().invoke(main, ["-c", str(cfg), "check", "src"])
    assert res.exit_code == 1
    assert "src paging/other/: OK: gs://paging/other/ is listable" in res.output
    assert "src missing-bucket/x/: FAILED: connection 'src': bucket 'missing-bucket'" in res.output


def test_e2e_sync_change_and_delete(tmp_path, state_url, instance, fake_gcs, bucket) -> None:
    for i in range(5):
        upload(bucket, f"in/clip_{i}.mp4", f"clip {i}".encode(), content_type="video/mp4")
    upload(bucket, "elsewhere/not_mine.mp4")
    cfg = gcs_config(
        tmp_path, state_url, fake_gcs.url, [{"name": "g", "source_path": f"{bucket.name}/in/"}]
    )
    d = Driver(cfg, instance)
    assert d.run_pass("g") == 1
    before = by_key(state_url)
    assert sorted(before) == [f"{bucket.name}/in/clip_{i}.mp4" for i in range(5)]
    first = before[f"{bucket.name}/in/clip_1.mp4"]
    assert first["mime_type"] == "video/mp4" and first["status"] == "PROCESSED"
    assert first["metadata"]["mixsync"]["provider"] == "gcs"
    assert first["uri"] == f"gs://{bucket.name}/in/clip_1.mp4"
    # Overwrite in place: the same object is updated to the new generation.
    upload(bucket, "in/clip_1.mp4", b"clip 1, recut", content_type="video/mp4")
    assert d.run_pass("g") == 1
    after = by_key(state_url)
    changed = after[f"{bucket.name}/in/clip_1.mp4"]
    assert changed["object_id"] == first["object_id"]
    assert changed["fingerprint"] != first["fingerprint"]
    assert changed["size_bytes"] == len(b"clip 1, recut")
    untouched = f"{bucket.name}/in/clip_0.mp4"
    assert after[untouched]["updated_at"] == before[untouched]["updated_at"]
    # Delete: the pass completes and launches nothing; the object stays (reconcile is off).
    bucket.blob("in/clip_2.mp4").delete()
    passes = StateStore(state_url).get_sync("g")["passes_completed"]
    assert d.run_pass("g") == 0
    row = StateStore(state_url).get_sync("g")
    assert row["passes_completed"] == passes + 1 and row["status"] == "ACTIVE"
    assert set(by_key(state_url)) == set(before)
    assert row["total_files_synced"] == 6 and row["total_files_discovered"] == 5


def test_e2e_interrupted_listing_resumes_without_loss(
    tmp_path, state_url, instance, fake_gcs, bucket
) -> None:
    for i in range(25):
        upload(bucket, f"f/{i:02d}.txt", f"{i}".encode())
    cfg = gcs_config(
        tmp_path,
        state_url,
        fake_gcs.url,
        [{"name": "g", "source_path": f"{bucket.name}/f", "max_objects_per_run": 10}],
    )
    d = Driver(cfg, instance)
    reqs, _ = d.tick("g")
    assert len(reqs) == 1
    d.execute("g", reqs[0])
    pos = json.loads(d.pass_row("g").position or "")
    assert (pos["after"], pos["size"]) == ("f/09.txt", 10)  # a GCS position mid-listing
    reqs, _ = d.tick("g")  # this chunk's run request is lost: the daemon died
    assert len(reqs) == 1
    d2 = Driver(cfg, instance)  # a restarted deployment carries the same pass on
    assert d2.run_pass("g") == 2
    objs = objects(state_url)
    assert sorted(o["source_key"] for o in objs) == [
        f"{bucket.name}/f/{i:02d}.txt" for i in range(25)
    ]
    assert StateStore(state_url).get_sync("g")["total_files_discovered"] == 25


def test_e2e_metadata_filter_and_mapping(tmp_path, state_url, instance, fake_gcs, bucket) -> None:
    upload(bucket, "m/a.mp4", metadata={"status": "approved", "title": "Alpha"})
    upload(bucket, "m/b.mp4", metadata={"status": "draft", "title": "Beta"})
    upload(bucket, "m/c.mp4")  # no custom metadata at all
    upload(bucket, "m/d.mp4", metadata={"status": "approved"})  # no title
    sync = {
        "name": "g",
        "source_path": f"{bucket.name}/m/",
        "file_filters": {
            "metadata_filters": [{"field": "status", "operator": "equals", "value": "approved"}]
        },
        "schema_mapping": {
            "field_mappings": {"product_name": {"source": "metadata.title"}},
            "mappings": {
                "generation": {"source": {"type": "metadata", "key": "gcs.generation"}},
            },
        },
    }
    d = Driver(gcs_config(tmp_path, state_url, fake_gcs.url, [sync]), instance)
    d.run_pass("g")
    objs = by_key(state_url)
    assert sorted(objs) == [f"{bucket.name}/m/a.mp4", f"{bucket.name}/m/d.mp4"]
    a = objs[f"{bucket.name}/m/a.mp4"]
    gen = bucket.get_blob("m/a.mp4").generation
    assert a["fields"] == {"product_name": "Alpha", "generation": gen}
    assert objs[f"{bucket.name}/m/d.mp4"]["fields"] == {
        "generation": bucket.get_blob("m/d.mp4").generation
    }
    store = StateStore(state_url)
    assert store.tracked_counts(store.sync_id("g")) == {"synced": 2, "excluded": 2}


def test_e2e_missing_bucket_fails_the_tick_and_deletes_nothing(
    tmp_path, state_url, instance, fake_gcs, bucket
) -> None:
    for i in range(3):
        upload(bucket, f"x/{i}.txt")
    cfg = gcs_config(
        tmp_path, state_url, fake_gcs.url, [{"name": "g", "source_path": f"{bucket.name}/x/"}]
    )
    d = Driver(cfg, instance)
    d.run_pass("g")
    for blob in bucket.list_blobs():
        blob.delete()
    bucket.delete()
    store = StateStore(state_url)
    before = store.get_sync("g")
    d.make_due("g")
    # The sensor evaluation raises: the daemon records a failed tick showing this message.
    with pytest.raises(ProviderError, match=f"bucket '{bucket.name}' does not exist") as e:
        d.tick("g")
    assert not isinstance(e.value, TransientError | AuthError)
    p = d.pass_row("g")
    assert p.state == "given_up" and p.position is None  # nothing listed, nothing moved
    after = store.get_sync("g")
    assert after["passes_completed"] == before["passes_completed"]
    assert after["last_sync_at"] == before["last_sync_at"]
    assert after["consecutive_failures"] == 1  # a missing bucket is not worth retrying
    sid = store.sync_id("g")
    assert len(objects(state_url)) == 3 and store.tracked_counts(sid) == {"synced": 3}


def test_e2e_server_down_mid_listing_then_back(tmp_path, state_url, instance, monkeypatch) -> None:
    with FakeGCS(free_port(), backend="filesystem", root=tmp_path / "fs") as server:
        b = server.client().create_bucket("bkt")
        for i in range(25):
            upload(b, f"f/{i:02d}.txt", f"{i}".encode())
        cfg = gcs_config(
            tmp_path,
            state_url,
            server.url,
            [{"name": "g", "source_path": "bkt/f/", "max_objects_per_run": 10}],
        )
        d = Driver(cfg, instance)
        reqs, _ = d.tick("g")
        d.execute("g", reqs[0])
        server.stop()
        monkeypatch.setattr(gcs_module, "LIST_RETRY_SECONDS", 1.0)  # the sensor's retry budget
        saved = d.pass_row("g").position
        with pytest.raises(TransientError, match="connection 'src': listing gs://bkt/f/ still"):
            d.tick("g")
        p = d.pass_row("g")
        assert p.position == saved and p.is_open and p.failures == 1
        assert len(objects(state_url)) == 10
        assert StateStore(state_url).get_sync("g")["passes_completed"] == 0
        server.start()  # same port, same files on disk
        assert d.run_pass("g") == 2  # 15 files left, at most 10 a run
        objs = objects(state_url)
        assert sorted(o["source_key"] for o in objs) == [f"bkt/f/{i:02d}.txt" for i in range(25)]
        row = StateStore(state_url).get_sync("g")
        assert row["passes_completed"] == 1
        assert row["total_files_synced"] == 25  # generations survived the restart: no resends
