"""The Azure Blob provider against Azurite on loopback (installed by `make` from npm), a fault
proxy in front of it for throttling and refused markers, and the whole sync path through the
real sensor and job on a Dagster instance (SQLite and PostgreSQL state)."""

from __future__ import annotations

import json
import time
import traceback
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from mixsync_dagster.config import AzureBlobConnection
from mixsync_dagster.core.records import FileItem, Page
from mixsync_dagster.errors import AuthError, FileVanished, ProviderError, TransientError
from mixsync_dagster.providers.azure_blob import AzureBlobProvider
from mixsync_dagster.state import StateStore
from tests.azure_server import (
    ACCOUNT,
    KEY,
    SERVER_BUSY,
    TIMED_OUT,
    Azurite,
    azure_error,
)
from tests.harness import Driver, listing_position, objects, pass_finished, write_config

pytest_plugins = ["tests.azure_server"]  # the azurite and fault_proxy fixtures


def provider(url: str, **conn: Any) -> AzureBlobProvider:
    opts = {k: conn.pop(k) for k in ("max_retries", "backoff_base") if k in conn}
    cfg = {"account_url": url, "account_key": KEY, "api_version": "2025-11-05", **conn}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    return AzureBlobProvider("az", AzureBlobConnection(provider="azure_blob", **cfg), **opts)


def new_container(server: Azurite) -> Any:
    return server.service().create_container("c-" + uuid.uuid4().hex[:12])


def put_many(container: Any, bodies: dict[str, bytes], **kw: Any) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda kv: container.upload_blob(kv[0], kv[1], overwrite=True, **kw), bodies.items()
            )
        )


def keys(pages: list[Page]) -> list[str]:
    return [i.key for p in pages for i in p.items]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return bytes(r.read())


# ---------------------------------------------------------------- > 5,000 blobs, tricky names

TRICKY = {
    "vol/ünïcödé/ファイル.mp4": b"unicode",
    "vol/with space/a b.txt": b"spaces",
    "vol/plus+sign/a+b=c.txt": b"plus",
    "vol/per%cent/100%25 done%.txt": b"percent",
    "vol/emoji 🎬/clip.mov": b"emoji",
    "vol/quote's & amp;.txt": b"quote",
    "vol/tilde~/bracket[1]{2}.txt": b"brackets",
}
N_REGULAR = 5_300


@pytest.fixture(scope="module")
def tree(azurite: Azurite) -> dict[str, Any]:
    """> 5,000 blobs under vol/, tricky names, folder markers and a neighbouring prefix."""
    c = new_container(azurite)
    bodies = {f"vol/d{i // 500:02d}/f{i:05d}.bin": f"body {i}".encode() for i in range(N_REGULAR)}
    bodies.update(TRICKY)
    bodies["vol/empty-folder/"] = b""
    bodies["vol2/not-in-vol.txt"] = b"sibling prefix"
    put_many(c, bodies)
    # The server's own order, from a bare SDK listing: what every page must follow.
    order = [b.name for b in c.list_blobs(name_starts_with="vol/")]
    return {"container": c.container_name, "bodies": bodies, "order": order}


def test_pages_of_5000_list_every_blob_once_in_the_servers_order(azurite, tree):
    name = tree["container"]
    p = provider(azurite.url)
    pages = list(p.list_pages(f"{name}/vol", None, 5_000))
    assert [len(pg.items) + len(pg.skipped) for pg in pages] == [5_000, len(tree["order"]) - 5_000]
    assert pages[0].next_position is not None and pages[-1].next_position is None
    listed = sorted(
        [i.key for pg in pages for i in pg.items] + [s.key for pg in pages for s in pg.skipped],
        key=lambda k: tree["order"].index(k.split("/", 1)[1]),
    )
    assert listed == [f"{name}/{n}" for n in tree["order"]]  # nothing twice, nothing missing
    items = {i.key: i for pg in pages for i in pg.items}
    files = {k: v for k, v in tree["bodies"].items() if k.startswith("vol/") and k[-1] != "/"}
    assert set(items) == {f"{name}/{k}" for k in files}
    assert [s.key for pg in pages for s in pg.skipped] == [f"{name}/vol/empty-folder/"]
    for k, body in files.items():
        item = items[f"{name}/{k}"]
        assert item.rel_path == k.removeprefix("vol/") and item.size == len(body)
        assert item.url == f"azure://{name}/{k}" and item.fingerprint == item.etag
        assert item.modified_at.tzinfo is not None
    # The pushed-down prefix lists one folder; the source prefix is a folder (not vol2/).
    d03 = keys(list(p.list_pages(f"{name}/vol", None, 1000, prefix="d03/")))
    assert len(d03) == 500 and all(k.startswith(f"{name}/vol/d03/") for k in d03)


@pytest.mark.parametrize("size", [5_000, 1_000, 777])
def test_resuming_from_every_page_loses_and_repeats_nothing(azurite, tree, size):
    name = tree["container"]
    p = provider(azurite.url)
    pages = list(p.list_pages(f"{name}/vol", None, size))
    everything = keys(pages)
    done = 0
    for pg in pages[:-1]:
        done += len(pg.items)
        # A fresh provider (a later tick, another process) resumes from the position alone.
        rest = keys(list(provider(azurite.url).list_pages(f"{name}/vol", pg.next_position, size)))
        assert rest == everything[done:], pg.next_position


def test_tricky_names_open_and_their_sas_urls_fetch(azurite, tree):
    name = tree["container"]
    p = provider(azurite.url, sas_expiry_seconds=300)
    items = {i.rel_path: i for pg in p.list_pages(f"{name}/vol", None, 5000) for i in pg.items}
    for k, body in TRICKY.items():
        item = items[k.removeprefix("vol/")]
        with p.open(item) as f:
            assert f.read() == body
        url = p.blob_url(item)
        assert "sig=" in url and "sp=r" in url and "se=" in url
        assert fetch(url) == body, k
        assert FileItem.from_json(item.to_json()) == item


def test_a_refused_marker_resumes_after_the_last_name(azurite, tree, fault_proxy):
    name = tree["container"]
    p = provider(fault_proxy.url)
    first = next(iter(p.list_pages(f"{name}/vol", None, 1000)))
    want = keys(list(p.list_pages(f"{name}/vol", None, 1000)))[1000:]
    refused = azure_error(400, "OutOfRangeInput", "One of the request inputs is out of range.")
    seen: list[bool] = []

    def refuse_first_marker(method: str, path: str, q: dict[str, list[str]]) -> Any:
        if "marker" in q and not seen:
            seen.append(True)
            return refused
        return None

    fault_proxy.rule = refuse_first_marker
    fault_proxy.requests.clear()
    assert keys(list(p.list_pages(f"{name}/vol", first.next_position, 1000))) == want
    lists = [r for r in fault_proxy.requests if r[2].get("comp") == ["list"]]
    assert lists[0][3] and "marker" in lists[0][2]  # the saved marker, refused
    assert "marker" not in lists[1][2] and not lists[1][3]  # then from the prefix again


# ---------------------------------------------------------------- what a listed blob says


def test_metadata_tags_tier_and_content_type_come_with_the_listing(azurite):
    c = new_container(azurite)
    c.upload_blob(
        "m/clip.mp4",
        b"video",
        metadata={"title": "Alpha", "status": "draft"},
        tags={"team": "video", "rights": "cleared"},
        content_settings=_ctype("video/mp4"),
    )
    c.upload_blob("m/plain.bin", b"plain")
    c.get_blob_client("m/plain.bin").set_standard_blob_tier("Cool")
    p = provider(azurite.url)
    (clip, plain) = keys_items(p, c.container_name)
    assert clip.content_type == "video/mp4"
    assert clip.metadata == {
        "title": "Alpha",
        "status": "draft",
        "tags": {"team": "video", "rights": "cleared"},
        "access_tier": "Hot",
        "content_type": "video/mp4",
        "blob_type": "BlockBlob",
    }
    assert plain.metadata["access_tier"] == "Cool" and plain.metadata["tags"] == {}
    assert plain.fingerprint == plain.etag  # no tags: the ETag alone
    assert p.enrich([clip, plain]) == [clip, plain]  # nothing left to fetch
    # A metadata edit moves the ETag; a tag edit does not, but must reach filters too.
    blob = c.get_blob_client("m/clip.mp4")
    blob.set_blob_metadata({"title": "Alpha", "status": "approved"})
    (after_meta, _) = keys_items(p, c.container_name)
    assert after_meta.fingerprint != clip.fingerprint
    blob.set_blob_tags({"team": "audio"})
    (after_tags, _) = keys_items(p, c.container_name)
    assert after_tags.etag == after_meta.etag and after_tags.fingerprint != after_meta.fingerprint
    # An overwrite after listing: open() refuses the stale item rather than mix versions.
    c.upload_blob("m/clip.mp4", b"a new take", overwrite=True)
    with pytest.raises(FileVanished, match="replaced"):
        p.open(after_tags)
    c.delete_blob("m/plain.bin")
    with pytest.raises(FileVanished):
        p.open(plain)


def _ctype(value: str) -> Any:
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type=value)


def keys_items(p: AzureBlobProvider, container: str) -> list[FileItem]:
    return [i for pg in p.list_pages(container, None, 1000) for i in pg.items]


# ---------------------------------------------------------------- credentials


def test_a_bad_key_fails_fast_naming_the_connection(azurite, fault_proxy):
    c = new_container(azurite)
    wrong = KEY[:10] + "A" * (len(KEY) - 12) + "=="
    p = provider(fault_proxy.url, account_key=wrong)
    with pytest.raises(AuthError) as e:
        list(p.list_pages(c.container_name, None, 10))
    assert len(fault_proxy.requests) == 1  # a 403 is final: no retries
    shown = "".join(traceback.format_exception(e.value))
    assert "connection 'az'" in shown and "account_key" in shown and "403" in shown
    assert wrong not in shown and wrong[:20] not in shown and wrong not in repr(p)
    with pytest.raises(AuthError):
        p.check(None)


def test_sas_token_and_connection_string(azurite, tree):
    name = tree["container"]
    sas = generate_container_sas(
        ACCOUNT,
        name,
        account_key=KEY,
        permission=ContainerSasPermissions(read=True, list=True, tag=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    p = provider(azurite.url, account_key=None, sas_token=sas)
    items = keys_items(p, f"{name}/vol/plus+sign")
    assert [i.rel_path for i in items] == ["a+b=c.txt"]
    assert not p.url_fetchable  # the connection's own token is never handed to the bucket
    with pytest.raises(ProviderError, match="upload the bytes"):
        p.blob_url(items[0])
    with p.open(items[0]) as f:
        assert f.read() == b"plus"
    cs = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint={azurite.url};"
    )
    q = provider(None, account_key=None, connection_string=cs)
    (item,) = keys_items(q, f"{name}/vol/plus+sign")
    assert q.url_fetchable and fetch(q.blob_url(item)) == b"plus"
    # A SAS pasted into account_url works, and never shows in messages or repr.
    r = provider(f"{azurite.url}?{sas}", account_key=None)
    assert [i.rel_path for i in keys_items(r, f"{name}/vol/plus+sign")] == ["a+b=c.txt"]
    assert "sig=" not in repr(r) and "sig=" not in r.check(f"{name}/vol/plus+sign")
    with pytest.raises(AuthError, match="connection_string is not usable") as e:
        provider(None, account_key=None, connection_string="AccountKey=hunter2;nonsense")
    # Neither the message nor a chained SDK exception quotes the string.
    assert "hunter2" not in str(e.value) and e.value.__cause__ is None
    assert e.value.__suppress_context__


# ---------------------------------------------------------------- throttling and outages


@pytest.mark.parametrize(
    "answer", [SERVER_BUSY, TIMED_OUT], ids=["ServerBusy", "OperationTimedOut"]
)
def test_throttling_is_retried_by_the_sdk_within_the_budget(azurite, tree, fault_proxy, answer):
    name = tree["container"]
    direct = keys(list(provider(azurite.url).list_pages(f"{name}/vol/d01", None, 1000)))
    p = provider(fault_proxy.url, backoff_base=0.2)
    fault_proxy.fail_next(3, answer)  # three of the four attempts fail
    assert keys(list(p.list_pages(f"{name}/vol/d01", None, 1000))) == direct
    assert fault_proxy.failed() == 3


def test_persistent_throttling_is_a_transient_error_after_the_budget(azurite, tree, fault_proxy):
    p = provider(fault_proxy.url, backoff_base=0.2, max_retries=3)
    fault_proxy.fail_next(100)
    started = time.monotonic()
    with pytest.raises(TransientError, match="ServerBusy") as e:
        list(p.list_pages(f"{tree['container']}/vol", None, 1000))
    assert "connection 'az'" in str(e.value) and "4 attempt(s)" in str(e.value)
    assert fault_proxy.failed() == 4  # the budget, spent once
    assert time.monotonic() - started < 10


def test_missing_container_and_check(azurite, tree):
    p = provider(azurite.url)
    with pytest.raises(ProviderError, match="container 'no-such-container' does not exist") as e:
        list(p.list_pages("no-such-container/x", None, 10))
    assert not isinstance(e.value, AuthError | TransientError)
    line = p.check(f"{tree['container']}/vol/with space")
    assert line.startswith(f"container '{tree['container']}' reachable at {azurite.url}")
    assert "first blob" in line and "signs SAS URLs" in line
    assert "container(s)" in p.check(None)


# ---------------------------------------------------------------- end to end through Dagster


def az_config(tmp_path: Path, server: Azurite, state_url: str, syncs: list[dict[str, Any]]) -> Path:
    return write_config(
        tmp_path / "syncs.yaml", state_url=state_url, syncs=syncs, connection=server.connection()
    )


def by_key(state_url: str) -> dict[str, dict[str, Any]]:
    return {o["source_key"]: o for o in objects(state_url)}


def test_e2e_first_pass_change_and_delete_with_reconcile(tmp_path, azurite, state_url, instance):
    c = new_container(azurite)
    name = c.container_name
    bodies = {f"in/clip_{i:02d}.mp4": f"video {i}".encode() for i in range(8)}
    bodies["in/sub dir/ünï+%.txt"] = b"tricky"
    bodies["out/ignored.mp4"] = b"outside the source"
    put_many(c, bodies)
    sync = {"name": "az", "source_path": f"{name}/in", "reconcile_on_sync": True}
    d = Driver(
        az_config(tmp_path, azurite, state_url, [{**sync, "max_deletes_per_pass": 5}]), instance
    )
    assert d.run_pass("az") == 1
    objs = by_key(state_url)
    want = {f"{name}/{k}" for k in bodies if k.startswith("in/")}
    assert set(objs) == want
    for key, o in objs.items():
        assert o["uri"] == f"azure://{key}"  # a stable locator: SAS URLs are never stored
        assert o["metadata"]["mixsync"]["provider"] == "azure_blob"
    clip3 = objs[f"{name}/in/clip_03.mp4"]
    # Changed: the same object updated in place.
    c.upload_blob("in/clip_03.mp4", b"re-encoded, longer", overwrite=True)
    assert d.run_pass("az") == 1
    after = by_key(state_url)
    assert after[f"{name}/in/clip_03.mp4"]["object_id"] == clip3["object_id"]
    assert after[f"{name}/in/clip_03.mp4"]["size_bytes"] == len(b"re-encoded, longer")
    assert (
        after[f"{name}/in/clip_00.mp4"]["updated_at"]
        == objs[f"{name}/in/clip_00.mp4"]["updated_at"]
    )
    # Deleted, reconcile on: one reconcile run removes its object.
    c.delete_blob("in/clip_05.mp4")
    assert d.run_pass("az") == 1
    assert set(by_key(state_url)) == want - {f"{name}/in/clip_05.mp4"}
    row = StateStore(state_url).get_sync("az")
    assert row["status"] == "ACTIVE" and row["total_files_failed"] == 0


def test_e2e_interrupted_listing_resumes_every_blob_exactly_once(
    tmp_path, azurite, state_url, instance
):
    c = new_container(azurite)
    name = c.container_name
    put_many(c, {f"f/{i:02d}.txt": f"{i}".encode() for i in range(25)})
    sync = {"name": "az", "source_path": f"{name}/f", "max_objects_per_run": 10}
    cfg = az_config(tmp_path, azurite, state_url, [sync])
    d = Driver(cfg, instance)
    reqs, _ = d.tick("az")
    assert len(reqs) == 1
    d.execute("az", reqs[0])
    pos = json.loads(listing_position(d, "az") or "")
    assert pos["after"] == "f/09.txt" and pos["marker"]  # an Azure position mid-listing
    reqs, _ = d.tick("az")  # this chunk's run request is lost: the daemon died
    assert len(reqs) == 1
    # A restarted deployment carries the same pass on from the committed position.
    d2 = Driver(cfg, instance)
    d2.run_pass("az")
    assert pass_finished(d2, "az")
    assert sorted(o["source_key"] for o in objects(state_url)) == [
        f"{name}/f/{i:02d}.txt" for i in range(25)
    ]
    assert StateStore(state_url).get_sync("az")["total_files_discovered"] == 25


def test_e2e_tags_and_metadata_through_filters_mappings_preview_and_dlq(
    tmp_path, azurite, instance
):
    from click.testing import CliRunner

    from mixsync_dagster.cli import main

    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    c = new_container(azurite)
    name = c.container_name
    files = {
        "lib/a.mp4": ({"title": "Alpha"}, {"team": "video"}),
        "lib/b.mp4": ({"title": "Bravo"}, {"team": "audio"}),
        "lib/c.mp4": ({}, {"team": "video"}),  # no title: the required mapping fails it
        "lib/notes.txt": ({"title": "Notes"}, {"team": "video"}),
    }
    for key, (meta, tags) in files.items():
        c.upload_blob(key, key.encode(), metadata=meta, tags=tags)
    c.get_blob_client("lib/a.mp4").set_standard_blob_tier("Cool")
    sync = {
        "name": "lib",
        "source_path": f"{name}/lib",
        "retry_backoff_seconds": 0,
        "file_filters": {
            "extensions": [".mp4"],
            "metadata_filters": [{"field": "tags.team", "operator": "equals", "value": "video"}],
        },
        "schema_mapping": {
            "field_mappings": {"tier": {"source": "metadata.access_tier"}},
            "mappings": {
                "title": {"source": {"type": "metadata", "key": "title"}, "required": True},
                "team": {"source": {"type": "tag", "key": "team"}, "transform": "uppercase"},
            },
        },
    }
    cfg = az_config(tmp_path, azurite, state_url, [sync])
    res = CliRunner().invoke(main, ["-c", str(cfg), "preview", "lib", "--json"])
    assert res.exit_code == 0, res.output
    verdicts = {f["key"]: (f["verdict"], f["filter"]) for f in json.loads(res.output)["files"]}
    assert verdicts == {
        f"{name}/lib/a.mp4": ("would_sync", None),
        f"{name}/lib/b.mp4": ("excluded", "metadata_filters[tags.team equals]"),
        f"{name}/lib/c.mp4": ("would_fail", None),
        f"{name}/lib/notes.txt": ("excluded", "extensions"),
    }
    d = Driver(cfg, instance)
    d.run_pass("lib")
    objs = by_key(state_url)
    assert set(objs) == {f"{name}/lib/a.mp4"}
    assert objs[f"{name}/lib/a.mp4"]["fields"] == {
        "tier": "Cool",
        "title": "Alpha",
        "team": "VIDEO",
    }
    res = CliRunner().invoke(main, ["-c", str(cfg), "dlq", "list", "lib", "--json"])
    (dead,) = json.loads(res.output)["files"]
    assert dead["source_key"] == f"{name}/lib/c.mp4" and "title" in dead["last_error"]
    # Its title arrives as metadata: the ETag moves, the file syncs on the next pass.
    c.get_blob_client("lib/c.mp4").set_blob_metadata({"title": "Charlie"})
    d.run_pass("lib")
    assert by_key(state_url)[f"{name}/lib/c.mp4"]["fields"]["title"] == "Charlie"
    res = CliRunner().invoke(main, ["-c", str(cfg), "check", "src"])
    assert res.exit_code == 0 and f"src {name}/lib: OK: container '{name}' reachable" in res.output


# ---------------------------------------------------------------- our List Blobs parse = the SDK's


def test_the_listing_parse_agrees_with_the_sdk_on_azurites_answers(azurite, tree):
    """The provider parses List Blobs itself (speed); on the same container, every field it
    reads must equal what the SDK's list_blobs makes of Azurite's answers."""
    c = azurite.service().get_container_client(tree["container"])
    c.upload_blob("vol/meta.txt", b"m", metadata={"a": "1"}, tags={"t": "x"}, overwrite=True)
    sdk = {b.name: b for b in c.list_blobs(name_starts_with="vol/", include=["metadata", "tags"])}
    ours = {
        i.key.split("/", 1)[1]: i
        for pg in provider(azurite.url).list_pages(f"{tree['container']}/vol", None, 5000)
        for i in pg.items
    }
    assert set(ours) == {n for n in sdk if not n.endswith("/")}
    for name, item in ours.items():
        b = sdk[name]
        assert (item.size, item.etag, item.modified_at) == (
            b.size,
            b.etag.strip('"'),
            b.last_modified,
        )
        assert item.content_type == b.content_settings.content_type
        assert item.metadata["access_tier"] == b.blob_tier
        assert item.metadata["tags"] == (b.tags or {})
        assert {k: v for k, v in item.metadata.items() if k not in SYSTEM} == b.metadata


SYSTEM = {"tags", "access_tier", "content_type", "blob_type", "version_id"}


def test_the_listing_parse_agrees_with_the_sdk_on_versions_and_encoded_names():
    """What Azurite never sends (versioning, URL-encoded names), checked on the same bytes
    against the SDK's own deserializer and its BlobProperties conversion."""
    import xml.etree.ElementTree as ET

    from azure.storage.blob._generated import models
    from azure.storage.blob._generated._utils.serialization import Deserializer
    from azure.storage.blob._list_blobs_helper import get_blob_properties_from_generated_code

    from mixsync_dagster.providers.azure_listing import parse_page

    xml = (
        b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://x/a"'
        b' ContainerName="c"><Blobs><Blob><Name Encoded="true">in/a%EF%BF%BEb.txt</Name>'
        b"<VersionId>2026-01-01T00:00:00.0000000Z</VersionId><IsCurrentVersion>true"
        b"</IsCurrentVersion><Properties><Last-Modified>Thu, 01 Jan 2026 00:00:00 GMT"
        b"</Last-Modified><Etag>0x8DABC</Etag><Content-Length>3</Content-Length><Content-Type>"
        b"text/plain</Content-Type><BlobType>BlockBlob</BlobType><AccessTier>Cool</AccessTier>"
        b"</Properties><Metadata><k>v</k></Metadata><Tags><TagSet><Tag><Key>team</Key><Value>"
        b"video</Value></Tag></TagSet></Tags></Blob></Blobs><NextMarker>m1</NextMarker>"
        b"</EnumerationResults>"
    )
    d = Deserializer({k: v for k, v in models.__dict__.items() if isinstance(v, type)})
    generated = d("ListBlobsFlatSegmentResponse", ET.fromstring(xml))
    sdk = get_blob_properties_from_generated_code(generated.segment.blob_items[0])
    (ours,), marker = parse_page(xml)
    assert marker == generated.next_marker == "m1"
    assert (ours.name, ours.version_id, ours.etag) == (sdk.name, sdk.version_id, sdk.etag)
    assert (ours.size, ours.last_modified, ours.access_tier) == (
        sdk.size,
        sdk.last_modified,
        sdk.blob_tier,
    )
    assert (ours.metadata, ours.tags) == (sdk.metadata, sdk.tags)
    assert ours.content_type == sdk.content_settings.content_type
    # A versioned blob's fingerprint and URL address its version.
    p = AzureBlobProvider(
        "az",
        AzureBlobConnection(
            provider="azure_blob", account_url="http://127.0.0.1:9/a", account_key=KEY
        ),
    )
    item = p._entry("c", "in/", ours)
    assert item.fingerprint.startswith(f"0x8DABC:{ours.version_id}#")
    assert item.metadata["version_id"] == ours.version_id
    url = p.blob_url(item)
    assert (
        "versionid=2026-01-01T00%3A00%3A00.0000000Z" in url or f"versionid={ours.version_id}" in url
    )
    assert "sr=bv" in url  # a SAS signed for that blob version
