"""The S3 provider against real S3 servers on loopback: SeaweedFS for volume, paging and
credentials, moto for versioning, tags and user metadata, a failing proxy for retries; and the
whole sync path through the real sensor and job on a Dagster instance."""

from __future__ import annotations

import hashlib
import time
import traceback
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mixsync_dagster.config import S3Connection
from mixsync_dagster.core.records import FileItem, Page
from mixsync_dagster.errors import AuthError, FileVanished, ProviderError, TransientError
from mixsync_dagster.providers import s3 as s3mod
from mixsync_dagster.providers.s3 import S3Provider
from mixsync_dagster.state import StateStore
from tests.harness import Driver, objects, write_config
from tests.s3_servers import LISTER, STRANGER, S3Server

pytest_plugins = ["tests.s3_servers"]  # the seaweed, moto_s3 and flaky fixtures

# ---------------------------------------------------------------- helpers


def provider(server: S3Server, **overrides: Any) -> S3Provider:
    max_attempts = overrides.pop("max_attempts", None)
    conn = S3Connection.model_validate(server.connection(**overrides))
    return S3Provider("src", conn, max_attempts=max_attempts)


def new_bucket(client: Any, *, versioned: bool = False) -> str:
    name = "b-" + uuid.uuid4().hex[:12]
    client.create_bucket(Bucket=name)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def put_many(client: Any, bucket: str, bodies: dict[str, bytes], workers: int = 12) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(
            pool.map(
                lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), bodies.items()
            )
        )


def server_order(server: S3Server, bucket: str) -> dict[str, int]:
    """Each key's place in a bare boto3 paginator listing of the whole bucket."""
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [f"{bucket}/{o['Key']}" for pg in pages for o in pg.get("Contents", [])]
    return {k: i for i, k in enumerate(keys)}


def entries(page: Page, order: dict[str, int]) -> list[str]:
    """Every key a page accounts for (files and skipped entries) in the server's order.

    A page keeps files and skipped entries apart; each list must be in that order itself.
    """
    for part in ([i.key for i in page.items], [s.key for s in page.skipped]):
        assert part == sorted(part, key=order.__getitem__)
    return sorted(
        [i.key for i in page.items] + [s.key for s in page.skipped], key=order.__getitem__
    )


def flatten(pages: Iterator[Page] | list[Page], order: dict[str, int]) -> list[str]:
    return [k for p in pages for k in entries(p, order)]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return bytes(r.read())


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------- a big tricky tree on SeaweedFS

TRICKY = {
    "vol/ünïcödé/ファイル.mp4": b"unicode",
    "vol/with space/a b.txt": b"spaces",
    "vol/plus+sign/a+b=c.txt": b"plus",
    "vol/per%cent/100%25 done%.txt": b"percent",
    "vol/emoji 🎬/clip.mov": b"emoji",
    "vol/deep/1/2/3/4/5/6/7/8/9/10/11/12/leaf.txt": b"deep",
    "vol/x-y.txt": b"dash",
    "vol/x.y": b"dot",
    "vol/x/y.txt": b"slash",
    "vol/quote's & amp;.txt": b"quote",
    "vol/tilde~/bracket[1]{2}.txt": b"brackets",
}
MARKERS = ["vol/empty-folder/", "vol/d07/", "vol/deep/"]
NOT_A_FILE = "vol/has-bytes/"  # a key ending in '/' that carries content
OUTSIDE = {"vol2/not-in-vol.txt": b"sibling prefix", "other/x.txt": b"elsewhere"}
N_REGULAR = 3_300


def regular_key(i: int) -> str:
    return f"vol/d{i // 300:02d}/f{i:05d}.bin"


@pytest.fixture(scope="module")
def tree(seaweed: S3Server) -> dict[str, Any]:
    """> 3,000 keys under vol/: regular files, tricky names, folder markers, and neighbours."""
    client = seaweed.client()
    bucket = new_bucket(client)
    bodies = {regular_key(i): f"body {i}".encode() for i in range(N_REGULAR)}
    bodies.update(TRICKY)
    bodies.update(OUTSIDE)
    bodies.update({m: b"" for m in MARKERS})
    bodies[NOT_A_FILE] = b"content under a folder-like key"
    put_many(client, bucket, bodies, workers=16)
    files = {k: v for k, v in bodies.items() if k.startswith("vol/") and not k.endswith("/")}
    order = server_order(seaweed, bucket)
    return {"bucket": bucket, "bodies": bodies, "files": files, "order": order}


def test_pages_of_1000_list_every_key_once_in_the_servers_order(seaweed, tree):
    bucket = tree["bucket"]
    order = tree["order"]
    prov = provider(seaweed)
    pages = list(prov.list_pages(f"{bucket}/vol", None, 1000))
    assert [len(entries(p, order)) for p in pages[:-1]] == [1000] * (len(pages) - 1)
    assert len(pages) == 4 and pages[-1].next_position is None
    assert all(p.next_position == entries(p, order)[-1] for p in pages[:-1])
    listed = flatten(pages, order)
    assert len(listed) == len(set(listed))
    items = {i.key: i for p in pages for i in p.items}
    assert set(items) == {f"{bucket}/{k}" for k in tree["files"]}
    assert len(items) > 3_000
    # The same order as a bare boto3 paginator over the same prefix (the server's order).
    paginator = seaweed.client().get_paginator("list_objects_v2")
    bare = [
        f"{bucket}/{o['Key']}"
        for pg in paginator.paginate(Bucket=bucket, Prefix="vol/")
        for o in pg.get("Contents", [])
    ]
    assert listed == bare
    # A listing carries no metadata and no content type; rel_path is relative to the source.
    for key, body in tree["files"].items():
        item = items[f"{bucket}/{key}"]
        assert item.rel_path == key.removeprefix("vol/")
        assert item.size == len(body)
        assert item.fingerprint == item.etag == md5(body)
        assert item.content_type is None and item.metadata == {}
        assert (
            item.modified_at.utcoffset() is not None and item.modified_at.utcoffset().seconds == 0
        )
        assert item.url == f"s3://{bucket}/{key}"
    # Stable: a second listing is identical.
    assert flatten(prov.list_pages(f"{bucket}/vol/", None, 1000), order) == listed


def listed_by_botocore(server: S3Server, bucket: str, prefix: str) -> list[tuple[Any, ...]]:
    """(key, size, modified, etag) of every key, from a plain boto3 client's own parse."""
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [
        (f"{bucket}/{o['Key']}", o["Size"], o["LastModified"], o["ETag"].strip('"'))
        for pg in pages
        for o in pg.get("Contents", [])
        if not o["Key"].endswith("/")
    ]


@pytest.mark.parametrize("server", ["seaweed", "moto_s3"])
def test_the_raw_listing_parse_reads_what_botocore_reads(request, server):
    """The provider parses ListObjectsV2 answers itself (s3_listing); every field it takes
    must be what botocore's own parser makes of the same answers, tricky keys included."""
    srv = request.getfixturevalue(server)
    client = srv.client()
    bucket = new_bucket(client)
    bodies = {f"p/f{i:04d}.bin": f"b{i}".encode() for i in range(2_100)}
    bodies.update({f"p/{k.removeprefix('vol/')}": v for k, v in TRICKY.items()})
    if server == "moto_s3":  # characters XML 1.0 cannot carry: sent URL-encoded
        bodies.update({"p/ctl\x01\x1f.txt": b"control", "p/del\x7f.txt": b"del"})
    put_many(client, bucket, bodies)
    prov = provider(srv)
    mine = [
        (i.key, i.size, i.modified_at, i.etag)
        for pg in prov.list_pages(f"{bucket}/p", None, 1000)
        for i in pg.items
    ]
    assert mine == listed_by_botocore(srv, bucket, "p/")
    assert len(mine) == len(bodies)
    # The answers really were parsed by s3_listing: botocore was given an empty one.
    resp = prov.client.list_objects_v2(Bucket=bucket, Prefix="p/", MaxKeys=5)
    assert s3mod.s3_listing.RAW_BODY in resp and "Contents" not in resp
    assert len(s3mod.s3_listing.page_of(resp).contents) == 5
    # A client without the hook (botocore's own parse) reads as the same page.
    plain = client.list_objects_v2(Bucket=bucket, Prefix="p/", MaxKeys=5)
    assert s3mod.s3_listing.page_of(plain) == s3mod.s3_listing.page_of(resp)


def test_the_raw_version_listing_parse_reads_what_botocore_reads(moto_s3):
    """The same for a versioned bucket: overwritten keys, delete markers, tricky keys, and
    pages that end inside one key's versions."""
    client = moto_s3.client()
    bucket = new_bucket(client, versioned=True)
    bodies = {f"p/f{i:04d}.bin": f"b{i}".encode() for i in range(1_200)}
    bodies.update({f"p/{k.removeprefix('vol/')}": v for k, v in TRICKY.items()})
    # (No control characters here: moto answers ListObjectVersions of such keys with a 500.)
    put_many(client, bucket, bodies)
    put_many(client, bucket, {k: v + b" v2" for k, v in list(bodies.items())[::3]})
    for k in list(bodies)[1::7]:
        client.delete_object(Bucket=bucket, Key=k)  # a delete marker is the latest entry
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="p/")
    want = [
        (f"{bucket}/{v['Key']}", v["Size"], v["LastModified"], v["ETag"].strip('"'), v["VersionId"])
        for pg in pages
        for v in pg.get("Versions", [])
        if v["IsLatest"]
    ]
    for page_size in (1000, 333):
        got = [
            (i.key, i.size, i.modified_at, i.etag, i.metadata["version_id"])
            for pg in provider(moto_s3).list_pages(f"{bucket}/p", None, page_size)
            for i in pg.items
        ]
        assert got == want, page_size
    assert len(want) == len(bodies) - len(list(bodies)[1::7])
    resp = provider(moto_s3).client.list_object_versions(Bucket=bucket, Prefix="p/", MaxKeys=5)
    assert s3mod.s3_listing.RAW_BODY in resp and "Versions" not in resp
    plain = client.list_object_versions(Bucket=bucket, Prefix="p/", MaxKeys=5)
    assert s3mod.s3_listing.versions_of(plain) == s3mod.s3_listing.versions_of(resp)


def test_parse_list_versions_decodes_keys_and_markers_but_not_version_ids():
    from mixsync_dagster.providers.s3_listing import ListingParseError, parse_list_versions

    ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    body = (
        f"<ListVersionsResult {ns}><IsTruncated>true</IsTruncated><EncodingType>url</EncodingType>"
        "<NextKeyMarker>a%2Bb+c</NextKeyMarker><NextVersionIdMarker>v+1</NextVersionIdMarker>"
        "<Version><Key>a%2Bb+c</Key><VersionId>v+1</VersionId><IsLatest>true</IsLatest>"
        "<LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>&quot;e&quot;</ETag>"
        "<Size>3</Size></Version>"
        "<DeleteMarker><Key>gone</Key><VersionId>d1</VersionId><IsLatest>true</IsLatest>"
        "<LastModified>2026-01-02T03:04:05.000Z</LastModified></DeleteMarker>"
        "</ListVersionsResult>"
    ).encode()
    page = parse_list_versions(body)
    (v,) = page.versions
    assert (v.key, v.version_id, v.is_latest, v.size, v.etag) == ("a+b c", "v+1", True, 3, '"e"')
    assert page.is_truncated and page.next_key_marker == "a+b c"
    assert page.next_version_id_marker == "v+1"
    with pytest.raises(ListingParseError):
        parse_list_versions(body.replace(b"ListVersionsResult", b"ListBucketResult"))


def test_parse_list_v2_decodes_keys_and_refuses_what_is_not_a_listing():
    from mixsync_dagster.providers.s3_listing import ListingParseError, parse_list_v2

    ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    body = (
        f"<ListBucketResult {ns}><IsTruncated>true</IsTruncated>"
        "<NextContinuationToken>tok+/=</NextContinuationToken><EncodingType>url</EncodingType>"
        "<Contents><Key>a%2Bb+c%01.txt</Key><LastModified>2026-01-02T03:04:05.678Z</LastModified>"
        "<ETag>&quot;e1&quot;</ETag><Size>12</Size></Contents></ListBucketResult>"
    ).encode()
    page = parse_list_v2(body)
    (o,) = page.contents
    assert (o.key, o.size, o.etag) == ("a+b c\x01.txt", 12, '"e1"')
    assert o.last_modified.isoformat() == "2026-01-02T03:04:05.678000+00:00"
    assert page.is_truncated and page.next_token == "tok+/="  # tokens are never decoded
    plain = body.replace(b"<EncodingType>url</EncodingType>", b"")
    assert parse_list_v2(plain).contents[0].key == "a%2Bb+c%01.txt"
    for bad in (b"<html>busy</html>", b"not xml at all", b"<Error><Code>X</Code></Error>"):
        with pytest.raises(ListingParseError):
            parse_list_v2(bad)


@pytest.mark.parametrize("page_size", [1000, 700])
def test_resuming_from_every_page_position_loses_and_repeats_nothing(seaweed, tree, page_size):
    bucket = tree["bucket"]
    order = tree["order"]
    prov = provider(seaweed)
    full = flatten(prov.list_pages(f"{bucket}/vol", None, page_size), order)
    positions = [p.next_position for p in prov.list_pages(f"{bucket}/vol", None, page_size)]
    assert len(positions) >= 4 and positions[-1] is None
    for pos in positions[:-1]:
        assert pos is not None
        # A fresh provider (a later sensor tick) resumes with StartAfter=position.
        tail = flatten(provider(seaweed).list_pages(f"{bucket}/vol", pos, page_size), order)
        cut = full.index(pos) + 1
        assert tail == full[cut:], f"resume after {pos!r}"


def test_resuming_after_a_tricky_key(seaweed, tree):
    bucket = tree["bucket"]
    order = tree["order"]
    prov = provider(seaweed)
    full = flatten(prov.list_pages(f"{bucket}/vol", None, 1000), order)
    for key in TRICKY:
        pos = f"{bucket}/{key}"
        tail = flatten(prov.list_pages(f"{bucket}/vol", pos, 1000), order)
        assert tail == full[full.index(pos) + 1 :], key


def test_a_key_that_is_also_a_folder_is_followed_by_its_contents(seaweed):
    """Inside one call the provider follows continuation tokens: on SeaweedFS, restarting with
    StartAfter at a key that is also a folder ('a/b' beside 'a/b/c') would skip the folder."""
    client = seaweed.client()
    bucket = new_bucket(client)
    keys = ["a/b", "a/b/c", "a/b/d", "a-z", "a/c"]
    put_many(client, bucket, {k: k.encode() for k in keys})
    order = server_order(seaweed, bucket)
    for size in (1, 2, 3):
        listed = flatten(provider(seaweed).list_pages(bucket, None, size), order)
        assert sorted(listed) == sorted(f"{bucket}/{k}" for k in keys), size


def test_prefix_push_down_and_source_prefix_is_a_folder(seaweed, tree):
    bucket = tree["bucket"]
    prov = provider(seaweed)
    pages = list(prov.list_pages(f"{bucket}/vol", None, 1000, prefix="deep/"))
    assert len(pages) == 1
    assert [i.rel_path for i in pages[0].items] == ["deep/1/2/3/4/5/6/7/8/9/10/11/12/leaf.txt"]
    assert [s.key for s in pages[0].skipped] == [f"{bucket}/vol/deep/"]
    # `vol` means the folder vol/: vol2/ is not inside it.
    keys = {i.key for p in prov.list_pages(f"{bucket}/vol", None, 1000) for i in p.items}
    assert f"{bucket}/vol2/not-in-vol.txt" not in keys
    # The whole bucket (no prefix) includes the neighbours.
    everything = {i.key for p in prov.list_pages(bucket, None, 1000) for i in p.items}
    assert {f"{bucket}/{k}" for k in OUTSIDE} <= everything
    # A prefix with nothing under it: one empty, final page.
    assert list(prov.list_pages(f"{bucket}/vol", None, 1000, prefix="nope/")) == [
        Page([], [], None)
    ]


def test_folder_markers_and_slash_keys_are_skipped_with_a_reason(seaweed, tree):
    bucket = tree["bucket"]
    prov = provider(seaweed)
    skipped = {
        s.key: s.reason for p in prov.list_pages(f"{bucket}/vol", None, 1000) for s in p.skipped
    }
    # SeaweedFS stores a key ending in '/' as a folder and drops its bytes: every one of them is
    # a folder marker there.
    assert set(skipped) == {f"{bucket}/{m}" for m in [*MARKERS, NOT_A_FILE]}
    assert all("folder marker" in reason for reason in skipped.values())


def test_a_slash_key_with_bytes_is_skipped_as_nameless(moto_s3):
    client = moto_s3.client()
    bucket = new_bucket(client)
    client.put_object(Bucket=bucket, Key="a/", Body=b"")
    client.put_object(Bucket=bucket, Key="a/has-bytes/", Body=b"content")
    client.put_object(Bucket=bucket, Key="a/file.txt", Body=b"file")
    (page,) = provider(moto_s3).list_pages(bucket, None, 1000)
    assert [i.key for i in page.items] == [f"{bucket}/a/file.txt"]
    reasons = {s.key: s.reason for s in page.skipped}
    assert "folder marker" in reasons[f"{bucket}/a/"]
    assert "no file name" in reasons[f"{bucket}/a/has-bytes/"]


def test_tricky_keys_open_and_presigned_urls_return_their_bytes(seaweed, tree):
    bucket = tree["bucket"]
    prov = provider(seaweed, presign_expiry_seconds=120)
    items = {i.key: i for p in prov.list_pages(f"{bucket}/vol", None, 1000) for i in p.items}
    for key, body in TRICKY.items():
        item = items[f"{bucket}/{key}"]
        with prov.open(item) as f:
            assert f.read() == body
        url = prov.blob_url(item)
        assert "X-Amz-Expires=120" in url and "X-Amz-Signature=" in url
        assert fetch(url) == body, key


def test_open_and_enrich_of_a_vanished_object(seaweed):
    client = seaweed.client()
    bucket = new_bucket(client)
    put_many(client, bucket, {"a.txt": b"a", "b.txt": b"b"})
    prov = provider(seaweed)
    a, b = next(iter(prov.list_pages(bucket, None, 1000))).items
    client.delete_object(Bucket=bucket, Key="a.txt")
    with pytest.raises(FileVanished, match=r"a\.txt"):
        prov.open(a)
    out = prov.enrich([a, b])
    assert out[0] is a  # unchanged: no metadata, no content type, nothing failed
    assert out[1].metadata["tags"] == {} and out[1].content_type is not None


def test_overwrite_moves_the_etag_fingerprint(seaweed):
    client = seaweed.client()
    bucket = new_bucket(client)
    client.put_object(Bucket=bucket, Key="k.txt", Body=b"one")
    prov = provider(seaweed)
    (before,) = next(iter(prov.list_pages(bucket, None, 10))).items
    client.put_object(Bucket=bucket, Key="k.txt", Body=b"two!")
    (after,) = next(iter(prov.list_pages(bucket, None, 10))).items
    assert before.fingerprint == md5(b"one") and after.fingerprint == md5(b"two!")


# ---------------------------------------------------------------- moto: versions, tags, metadata


def test_versioned_bucket_lists_latest_versions_only(moto_s3):
    client = moto_s3.client()
    bucket = new_bucket(client, versioned=True)
    for key in ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]:
        for n in range(3):  # three versions each: a page boundary falls inside a key's versions
            client.put_object(Bucket=bucket, Key=key, Body=f"{key} v{n}".encode())
    client.delete_object(Bucket=bucket, Key="c.txt")  # a delete marker: c is gone
    prov = provider(moto_s3)
    assert prov.is_versioned(bucket)
    for page_size in (1, 2, 3, 1000):
        pages = list(prov.list_pages(bucket, None, page_size))
        keys = [i.key for p in pages for i in p.items]
        assert keys == [f"{bucket}/{k}" for k in ["a.txt", "b.txt", "d.txt", "e.txt"]], page_size
        # Resume from every position: the rest, no more, no less.
        for i, p in enumerate(pages[:-1]):
            rest = [
                x.key for q in prov.list_pages(bucket, p.next_position, page_size) for x in q.items
            ]
            assert rest == [x.key for q in pages[i + 1 :] for x in q.items], (page_size, i)
    items = {i.rel_path: i for p in prov.list_pages(bucket, None, 1000) for i in p.items}
    latest = client.head_object(Bucket=bucket, Key="a.txt")
    a = items["a.txt"]
    assert a.metadata == {"version_id": latest["VersionId"]}
    assert a.fingerprint == f"{latest['ETag'].strip(chr(34))}:{latest['VersionId']}"
    assert fetch(prov.blob_url(a)) == b"a.txt v2"


def test_versioned_paging_at_1000_keys_a_page(moto_s3):
    """Thousands of keys with extra versions and delete markers, seeded through moto's backend
    in process (its HTTP listing is slow), listed over HTTP in pages of 1,000 entries."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    client = moto_s3.client()
    bucket = new_bucket(client, versioned=True)
    n = 2_400
    moto_s3.seed(bucket, ((f"v/{i:05d}.bin", b"first") for i in range(n)))
    moto_s3.seed(bucket, ((f"v/{i:05d}.bin", b"second") for i in range(0, n, 7)))
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    gone = set(range(3, n, 11))
    for i in gone:
        backend.delete_object(bucket, f"v/{i:05d}.bin")  # a delete marker on top
    want = [f"{bucket}/v/{i:05d}.bin" for i in range(n) if i not in gone]
    prov = provider(moto_s3)
    pages = list(prov.list_pages(f"{bucket}/v", None, 1000))
    assert len(pages) >= 3  # 2,400 + 343 versions + 218 markers = 2,961 entries
    keys = [i.key for p in pages for i in p.items]
    assert keys == want
    sizes = {i.rel_path: i.size for p in pages for i in p.items}
    assert sizes["00007.bin"] == len(b"second") and sizes["00001.bin"] == len(b"first")
    for k, page in enumerate(pages[:-1]):
        rest = [
            i.key for p in prov.list_pages(f"{bucket}/v", page.next_position, 1000) for i in p.items
        ]
        assert rest == [i.key for p in pages[k + 1 :] for i in p.items], k


def test_versioned_overwrite_with_same_bytes_moves_the_fingerprint(moto_s3):
    client = moto_s3.client()
    bucket = new_bucket(client, versioned=True)
    client.put_object(Bucket=bucket, Key="k.bin", Body=b"same")
    prov = provider(moto_s3)
    (v1,) = next(iter(prov.list_pages(bucket, None, 10))).items
    client.put_object(Bucket=bucket, Key="k.bin", Body=b"same")
    (v2,) = next(iter(prov.list_pages(bucket, None, 10))).items
    assert v1.etag == v2.etag and v1.fingerprint != v2.fingerprint
    client.put_object(Bucket=bucket, Key="k.bin", Body=b"different")
    (v3,) = next(iter(prov.list_pages(bucket, None, 10))).items
    assert v3.etag != v2.etag
    # URLs, reads and metadata address the listed version, not whatever is latest now.
    assert fetch(prov.blob_url(v1)) == b"same"
    with prov.open(v1) as f:
        assert f.read() == b"same"
    assert "versionId=" in prov.blob_url(v1)
    (enriched,) = prov.enrich([v1])
    assert enriched.metadata["version_id"] == v1.metadata["version_id"]
    client.delete_object(Bucket=bucket, Key="k.bin")
    assert list(prov.list_pages(bucket, None, 10)) == [Page([], [], None)]


def test_enrich_reads_content_type_user_metadata_and_tags_concurrently(moto_s3):
    client = moto_s3.client()
    bucket = new_bucket(client, versioned=True)
    n = 24
    for i in range(n):
        client.put_object(
            Bucket=bucket,
            Key=f"clip{i:02d}.bin",
            Body=b"x" * i,
            ContentType="video/mp4",
            Metadata={"Title": f"Clip {i}", "tags": "user value loses"},
            Tagging=f"team={'video' if i % 2 else 'audio'}&n={i}",
        )
    prov = provider(moto_s3, metadata_concurrency=4)
    items = [i for p in prov.list_pages(bucket, None, 1000) for i in p.items]
    moto_s3.reset_counts()
    out = prov.enrich(items)
    assert [o.key for o in out] == [i.key for i in items]  # input order kept
    for i, o in enumerate(out):
        assert o.content_type == "video/mp4"
        assert o.metadata["title"] == f"Clip {i}"  # S3 lowercases user metadata keys
        assert o.metadata["tags"] == {"team": "video" if i % 2 else "audio", "n": str(i)}
        assert o.metadata["storage_class"] == "STANDARD"
        assert o.metadata["version_id"] == items[i].metadata["version_id"]
        assert (o.fingerprint, o.size, o.etag) == (
            items[i].fingerprint,
            items[i].size,
            items[i].etag,
        )
    # One HEAD and one GetObjectTagging per file, never more than metadata_concurrency at once.
    assert moto_s3.count("HEAD", bucket=bucket) == n
    assert moto_s3.count("GET", bucket=bucket, query="tagging") == n
    assert 1 < moto_s3.max_in_flight <= 4
    moto_s3.reset_counts()
    assert prov.enrich([]) == []
    assert moto_s3.requests == []


# ---------------------------------------------------------------- credentials and missing buckets


def assert_secret_free(err: BaseException, *secrets: str) -> None:
    text = "".join(traceback.format_exception(err)) + repr(err)
    for s in secrets:
        assert s not in text


def test_wrong_secret_is_an_auth_error_naming_the_connection(seaweed, tree):
    secret = "definitely-not-the-secret-9f3"
    prov = provider(
        seaweed,
        credentials={"access_key_id": seaweed.access_key, "secret_access_key": secret},
    )
    with pytest.raises(AuthError) as exc:
        list(prov.list_pages(f"{tree['bucket']}/vol", None, 1000))
    msg = str(exc.value)
    assert "connection 'src'" in msg
    for hint in ("secret_access_key", "region 'us-east-1'", "endpoint_url", "bucket policy"):
        assert hint in msg
    assert_secret_free(exc.value, secret)
    assert secret not in repr(prov)
    with pytest.raises(AuthError) as exc2:
        prov.check(f"{tree['bucket']}/vol")
    assert_secret_free(exc2.value, secret)


def test_unknown_key_and_refused_identity_are_auth_errors(seaweed, tree):
    bucket = tree["bucket"]
    unknown = provider(
        seaweed, credentials={"access_key_id": "AKIAUNKNOWN", "secret_access_key": "x"}
    )
    with pytest.raises(AuthError, match="InvalidAccessKeyId"):
        list(unknown.list_pages(bucket, None, 10))
    stranger = provider(
        seaweed, credentials={"access_key_id": STRANGER[0], "secret_access_key": STRANGER[1]}
    )
    with pytest.raises(AuthError, match="AccessDenied") as exc:
        list(stranger.list_pages(bucket, None, 10))
    assert_secret_free(exc.value, STRANGER[1])
    # An identity that may list but not read: the listing works, fetching metadata is refused.
    lister = provider(
        seaweed, credentials={"access_key_id": LISTER[0], "secret_access_key": LISTER[1]}
    )
    items = next(iter(lister.list_pages(f"{bucket}/vol", None, 5))).items
    assert items
    with pytest.raises(AuthError, match="connection 'src'") as exc:
        lister.enrich(items)
    assert_secret_free(exc.value, LISTER[1])


def test_missing_bucket_is_a_provider_error_naming_the_bucket(seaweed):
    prov = provider(seaweed)
    with pytest.raises(ProviderError, match="bucket 'no-such-bucket-77'") as exc:
        list(prov.list_pages("no-such-bucket-77/x", None, 10))
    assert not isinstance(exc.value, AuthError | TransientError)
    with pytest.raises(ProviderError, match="does not exist"):
        prov.check("no-such-bucket-77/x")


def test_check(seaweed, tree):
    prov = provider(seaweed)
    line = prov.check(f"{tree['bucket']}/vol/deep")
    assert f"bucket '{tree['bucket']}' reachable" in line and "unversioned" in line
    assert "\n" not in line
    assert "bucket(s)" in prov.check(None)


# ---------------------------------------------------------------- transient failures


def test_503s_and_dropped_connections_are_retried_within_the_budget(seaweed, tree, flaky):
    bucket = tree["bucket"]
    order = tree["order"]
    direct = flatten(provider(seaweed).list_pages(f"{bucket}/vol", None, 1000), order)
    for mode in ("503", "drop"):
        flaky.fail_next(3, mode)  # three of the default five attempts fail
        failed = flaky.failed
        prov = provider(seaweed, endpoint_url=flaky.endpoint)
        assert flatten(prov.list_pages(f"{bucket}/vol", None, 1000), order) == direct
        assert flaky.failed - failed == 3


def test_persistent_outage_is_a_transient_error_after_the_budget(seaweed, tree, flaky):
    flaky.outage("503")
    prov = provider(seaweed, endpoint_url=flaky.endpoint)
    started = time.monotonic()
    with pytest.raises(TransientError, match="SlowDown") as exc:
        list(prov.list_pages(f"{tree['bucket']}/vol", None, 1000))
    assert "connection 'src'" in str(exc.value)
    assert flaky.failed == s3mod.MAX_ATTEMPTS  # the budget, spent once, then no more
    assert time.monotonic() - started < 20  # backoff is capped: 1 + 2 + 4 + 8 s at most


def test_an_outage_mid_listing_raises_and_resuming_loses_nothing(seaweed, tree, flaky):
    bucket = tree["bucket"]
    order = tree["order"]
    full = flatten(provider(seaweed).list_pages(f"{bucket}/vol", None, 1000), order)
    prov = provider(seaweed, endpoint_url=flaky.endpoint, max_attempts=2)
    pages = prov.list_pages(f"{bucket}/vol", None, 1000)
    first = next(pages)
    flaky.outage("drop")
    with pytest.raises(TransientError, match="cannot reach S3"):
        next(pages)
    flaky.restore()
    rest = flatten(prov.list_pages(f"{bucket}/vol", first.next_position, 1000), order)
    assert entries(first, order) + rest == full


# ---------------------------------------------------------------- end to end through Dagster


def seed_media(server: S3Server, n: int = 12) -> tuple[str, dict[str, bytes]]:
    client = server.client()
    bucket = new_bucket(client)
    bodies = {f"in/clip_{i:02d}.mp4": f"video {i}".encode() for i in range(n)}
    bodies["in/sub dir/ünï+%.txt"] = b"tricky"
    bodies["in/sub dir/"] = b""
    bodies["out/ignored.mp4"] = b"outside the source path"
    put_many(client, bucket, bodies)
    return bucket, bodies


def s3_config(
    tmp_path: Path, server: S3Server, state_url: str, syncs: list[dict[str, Any]]
) -> Path:
    return write_config(
        tmp_path / "syncs.yaml", state_url=state_url, syncs=syncs, connection=server.connection()
    )


def by_key(state_url: str) -> dict[str, dict[str, Any]]:
    return {o["source_key"]: o for o in objects(state_url)}


def test_e2e_sync_change_and_delete(tmp_path, seaweed, state_url, instance):
    bucket, bodies = seed_media(seaweed)
    cfg = s3_config(tmp_path, seaweed, state_url, [{"name": "s3", "source_path": f"{bucket}/in"}])
    d = Driver(cfg, instance)
    assert d.run_pass("s3") == 1
    objs = by_key(state_url)
    want = {f"{bucket}/{k}" for k in bodies if k.startswith("in/") and not k.endswith("/")}
    assert set(objs) == want
    for key, o in objs.items():
        # The bucket keeps a stable locator; presigned URLs are made on demand, never stored.
        assert o["uri"] == f"s3://{key}"
        assert o["metadata"]["mixsync"]["provider"] == "s3"
    assert objs[f"{bucket}/in/clip_00.mp4"]["mime_type"] == "video/mp4"
    # An object changes: new ETag, the same object updated in place.
    client = seaweed.client()
    client.put_object(Bucket=bucket, Key="in/clip_03.mp4", Body=b"re-encoded, longer")
    assert d.run_pass("s3") == 1
    after = by_key(state_url)
    changed = after[f"{bucket}/in/clip_03.mp4"]
    assert changed["object_id"] == objs[f"{bucket}/in/clip_03.mp4"]["object_id"]
    assert changed["size_bytes"] == len(b"re-encoded, longer")
    assert changed["metadata"]["mixsync"]["fingerprint"] == md5(b"re-encoded, longer")
    assert len(after) == len(want)
    # An object is deleted: the pass completes, nothing fails, the bucket object stays
    # (reconcile_on_sync is false).
    client.delete_object(Bucket=bucket, Key="in/clip_05.mp4")
    last = StateStore(state_url).get_sync("s3")["last_sync_at"]
    assert d.run_pass("s3") == 0
    row = StateStore(state_url).get_sync("s3")
    assert row["last_sync_at"] > last and row["status"] == "ACTIVE"
    assert row["total_files_failed"] == 0 and row["consecutive_failures"] == 0
    assert set(by_key(state_url)) == want
    assert row["total_files_synced"] == len(want) + 1


def test_e2e_interrupted_mid_listing_resumes_every_key_exactly_once(tmp_path, seaweed, instance):
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    bucket, bodies = seed_media(seaweed, n=24)
    cfg = s3_config(
        tmp_path,
        seaweed,
        state_url,
        [{"name": "s3", "source_path": f"{bucket}/in", "max_objects_per_run": 10}],
    )
    d = Driver(cfg, instance)
    reqs, _ = d.tick("s3")
    assert len(reqs) == 1
    d.execute("s3", reqs[0])
    assert d.pass_row("s3").position == f"{bucket}/in/clip_09.mp4"  # the position is a key
    # The second chunk's run request is lost (the daemon died before launching it).
    reqs, _ = d.tick("s3")
    assert len(reqs) == 1
    # A restarted deployment carries the same pass on from the committed position.
    d2 = Driver(cfg, instance)
    assert d2.run_pass("s3") == 2
    objs = objects(state_url)
    want = sorted(f"{bucket}/{k}" for k in bodies if k.startswith("in/") and not k.endswith("/"))
    assert sorted(o["source_key"] for o in objs) == want  # every key, exactly once
    assert StateStore(state_url).get_sync("s3")["total_files_discovered"] == 25


def test_e2e_a_failed_listing_marks_nothing_and_the_pass_resumes(
    tmp_path, seaweed, flaky, instance, monkeypatch
):
    monkeypatch.setattr(s3mod, "MAX_ATTEMPTS", 2)  # a short retry budget keeps the test quick
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    bucket, _ = seed_media(seaweed, n=24)
    cfg = write_config(
        tmp_path / "syncs.yaml",
        state_url=state_url,
        syncs=[{"name": "s3", "source_path": f"{bucket}/in", "max_objects_per_run": 10}],
        connection=seaweed.connection(endpoint_url=flaky.endpoint),
    )
    store = StateStore(state_url)
    d = Driver(cfg, instance)

    def failing_ticks() -> None:
        before = d.pass_row("s3")
        for _ in range(2):
            with pytest.raises(Exception, match="connection 'src'") as exc:
                d.tick("s3")
            assert "TransientError" in "".join(traceback.format_exception(exc.value))
            after = d.pass_row("s3")
            assert after.is_open and after.retry_at is not None  # retried, not given up
            if before is not None and before.is_open:
                assert after.position == before.position  # a failed tick never moves it
            d.make_due("s3")

    # First pass: one chunk is listed and synced, then the store goes away mid-listing.
    reqs, _ = d.tick("s3")
    d.execute("s3", reqs[0])
    first_chunk = by_key(state_url)
    assert len(first_chunk) == 10
    flaky.outage("503")
    failing_ticks()
    assert by_key(state_url) == first_chunk
    row = store.get_sync("s3")
    assert row["last_sync_at"] is None  # the pass did not complete
    assert "connection 'src'" in row["last_error"] and "SlowDown" in row["last_error"]
    assert seaweed.secret_key not in row["last_error"]
    flaky.restore()
    d.run_pass("s3")
    synced = by_key(state_url)
    assert len(synced) == 25 and all(synced[k] == v for k, v in first_chunk.items())
    # A later pass fails at its very first listing request: nothing is marked or removed.
    sid = store.sync_id("s3")
    before = (store.get_sync("s3"), store.tracked_counts(sid))
    assert before[1] == {"synced": 25}
    d.make_due("s3")
    flaky.outage("drop")
    failing_ticks()
    assert by_key(state_url) == synced
    assert store.tracked_counts(sid) == before[1]
    assert store.get_sync("s3")["last_sync_at"] == before[0]["last_sync_at"]
    flaky.restore()
    assert d.run_pass("s3") == 0
    assert by_key(state_url) == synced


def test_e2e_metadata_filter_and_mapping_fetch_metadata_only_for_candidates(
    tmp_path, moto_s3, instance
):
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    client = moto_s3.client()
    bucket = new_bucket(client, versioned=True)
    files = {
        "lib/a.mp4": ("video", "Alpha"),
        "lib/b.mp4": ("audio", "Bravo"),
        "lib/c.mp4": ("video", "Charlie"),
        "lib/notes.txt": ("video", "Notes"),  # excluded by extension: never HEADed
        "lib/d.mp4": ("video", None),
    }
    for key, (team, title) in files.items():
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=key.encode(),
            ContentType="video/mp4" if key.endswith(".mp4") else "text/plain",
            Metadata={"title": title} if title else {},
            Tagging=f"team={team}",
        )
    sync = {
        "name": "lib",
        "source_path": f"{bucket}/lib",
        "file_filters": {
            "extensions": [".mp4"],
            "metadata_filters": [{"field": "tags.team", "operator": "equals", "value": "video"}],
        },
        "schema_mapping": {
            "field_mappings": {"title": {"source": "metadata.title"}},
            "mappings": {
                "team": {"source": {"type": "tag", "key": "team"}, "transform": "uppercase"}
            },
        },
    }
    cfg = s3_config(tmp_path, moto_s3, state_url, [sync])
    d = Driver(cfg, instance)
    moto_s3.reset_counts()
    assert d.run_pass("lib") == 1
    objs = by_key(state_url)
    assert set(objs) == {f"{bucket}/lib/{n}" for n in ("a.mp4", "c.mp4", "d.mp4")}
    assert objs[f"{bucket}/lib/a.mp4"]["fields"] == {"title": "Alpha", "team": "VIDEO"}
    assert objs[f"{bucket}/lib/c.mp4"]["fields"] == {"title": "Charlie", "team": "VIDEO"}
    assert objs[f"{bucket}/lib/d.mp4"]["fields"] == {"team": "VIDEO"}
    assert {o["mime_type"] for o in objs.values()} == {"video/mp4"}
    a = objs[f"{bucket}/lib/a.mp4"]
    assert a["uri"] == f"s3://{bucket}/lib/a.mp4"
    # Metadata was fetched for the four .mp4 files only: notes.txt failed a cheap filter first.
    assert moto_s3.count("HEAD", bucket=bucket) == 4
    assert moto_s3.count("GET", bucket=bucket, query="tagging") == 4
    # An unchanged pass launches no run and fetches no metadata.
    moto_s3.reset_counts()
    assert d.run_pass("lib") == 0
    assert moto_s3.count("HEAD", bucket=bucket) == 0


def test_e2e_refused_metadata_read_fails_the_run_and_keeps_the_secret(tmp_path, seaweed, instance):
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    bucket, _ = seed_media(seaweed, n=2)
    cfg = write_config(
        tmp_path / "syncs.yaml",
        state_url=state_url,
        syncs=[
            {
                "name": "s3",
                "source_path": f"{bucket}/in",
                "file_filters": {"metadata_filters": [{"field": "tags", "operator": "exists"}]},
            }
        ],
        connection=seaweed.connection(
            credentials={"access_key_id": LISTER[0], "secret_access_key": LISTER[1]}
        ),
    )
    d = Driver(cfg, instance)
    reqs, _ = d.tick("s3")
    result = d.execute("s3", reqs[0], raise_on_error=False)
    assert not result.success
    row = StateStore(state_url).get_sync("s3")
    assert row["status"] == "FAILED" and row["consecutive_failures"] == 1
    assert "AuthError" in row["last_error"] and "connection 'src'" in row["last_error"]
    assert LISTER[1] not in row["last_error"]
    for event in instance.all_logs(result.run_id):
        assert LISTER[1] not in repr(event)
    assert objects(state_url) == []


@pytest.fixture
def no_aws_env(monkeypatch) -> Iterator[None]:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield


def test_default_credential_chain(seaweed, tree, no_aws_env, monkeypatch):
    # No credentials in the chain: a clear AuthError, not a botocore traceback.
    prov = provider(seaweed, credentials=None)
    with pytest.raises(AuthError, match="no usable AWS credentials"):
        list(prov.list_pages(tree["bucket"], None, 1))
    # Credentials from the environment are used when the connection has none.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    prov = provider(seaweed, credentials=None)
    assert next(iter(prov.list_pages(f"{tree['bucket']}/vol", None, 5))).items


ROLE = "arn:aws:iam::123456789012:role/mixsync-reader"


def test_a_role_is_assumed_with_the_default_chain_and_its_credentials_sign(
    moto_s3, no_aws_env, monkeypatch
):
    """`credentials: {role_arn, external_id}` (Mixpeek's form): STS AssumeRole (moto's) is
    called with the chain's keys, the role, the external id and the session settings, and the
    temporary keys it returns sign the S3 requests; without a chain, a clear AuthError."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sts.models import sts_backends

    client = moto_s3.client()
    bucket = new_bucket(client)
    put_many(client, bucket, {"a.txt": b"a", "b/c.txt": b"c"})
    creds = {
        "role_arn": ROLE,
        "external_id": "ext-Zq7XK2pL",
        "role_session_name": f"mixsync-{uuid.uuid4().hex[:8]}",
        "duration_seconds": 1800,
        "sts_endpoint_url": moto_s3.endpoint,
    }
    with pytest.raises(AuthError, match="no usable AWS credentials to assume role") as err:
        list(provider(moto_s3, credentials=creds).list_pages(bucket, None, 10))
    assert ROLE in str(err.value) and "connection 'src'" in str(err.value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIABASECHAIN0000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "base-chain-secret")
    prov = provider(moto_s3, credentials=creds)
    signed: list[str] = []
    prov.client.meta.events.register(
        "before-send.s3.*",
        lambda request, **kw: signed.append(request.headers["Authorization"].decode()),
    )
    listed = [i.key for p in prov.list_pages(bucket, None, 10) for i in p.items]
    assert listed == [f"{bucket}/a.txt", f"{bucket}/b/c.txt"]
    (role,) = [
        r
        for r in sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assumed_roles
        if r.session_name == creds["role_session_name"]
    ]
    assert (role.role_arn, role.external_id) == (ROLE, "ext-Zq7XK2pL")
    assert signed and all(f"Credential={role.access_key_id}/" in h for h in signed)
    assert role.access_key_id != "AKIABASECHAIN0000001"
    # A second provider (the next tick, the next op) reuses the role's credentials.
    list(provider(moto_s3, credentials=creds).list_pages(bucket, None, 10))
    same = [
        r
        for r in sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assumed_roles
        if r.session_name == creds["role_session_name"]
    ]
    assert len(same) == 1


def test_a_refused_or_unreachable_role_is_an_auth_or_transient_error(
    seaweed, tree, no_aws_env, monkeypatch, flaky
):
    """STS answers that refuse the chain (a real 403, here from SeaweedFS, which does not know
    the chain's key) are an AuthError naming the role and what to check; an STS that is down
    (503s through the failing proxy) is a TransientError. Neither message has a secret."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIABASECHAIN0000002")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "base-chain-secret-2")
    creds = {"role_arn": ROLE, "external_id": "ext-9", "sts_endpoint_url": seaweed.endpoint}
    with pytest.raises(AuthError) as err:
        list(provider(seaweed, credentials=creds).list_pages(tree["bucket"], None, 10))
    text = str(err.value)
    assert "STS refused" in text and ROLE in text and "trust policy" in text, text
    assert "base-chain-secret-2" not in text
    flaky.outage("503")
    try:
        down = {**creds, "external_id": "ext-10", "sts_endpoint_url": flaky.endpoint}
        with pytest.raises(TransientError, match="STS could not assume role"):
            prov = provider(seaweed, credentials=down, max_attempts=2)
            list(prov.list_pages(tree["bucket"], None, 10))
    finally:
        flaky.restore()


def test_enrich_and_list_are_only_what_is_asked(moto_s3):
    """Counted on the provider's own client with botocore event hooks: a listing costs one
    LIST per page plus one versioning check per bucket, and nothing else."""
    client = moto_s3.client()
    bucket = new_bucket(client)
    for i in range(5):
        client.put_object(Bucket=bucket, Key=f"f{i}.txt", Body=b"x")
    prov = provider(moto_s3)
    calls: list[str] = []
    prov.client.meta.events.register(
        "before-call.s3.*", lambda model, **kw: calls.append(model.name)
    )
    list(prov.list_pages(bucket, None, 2))
    assert calls == ["GetBucketVersioning", "ListObjectsV2", "ListObjectsV2", "ListObjectsV2"]
    calls.clear()
    list(prov.list_pages(bucket, f"{bucket}/f1.txt", 1000))
    assert calls == ["ListObjectsV2"]  # versioning is asked once per bucket and provider
    calls.clear()
    items = next(iter(prov.list_pages(bucket, None, 2))).items
    prov.blob_url(items[0])
    assert calls == ["ListObjectsV2"]  # presigning is local
    calls.clear()
    prov.enrich(items[:1])
    assert sorted(calls) == ["GetObjectTagging", "HeadObject"]


def test_item_round_trips_through_the_work_list_json(moto_s3):
    client = moto_s3.client()
    bucket = new_bucket(client, versioned=True)
    client.put_object(Bucket=bucket, Key="ü/x y.mp4", Body=b"v1")
    prov = provider(moto_s3)
    (item,) = next(iter(prov.list_pages(bucket, None, 10))).items
    back = FileItem.from_json(item.to_json())
    assert back == item
    assert fetch(prov.blob_url(back)) == b"v1"
