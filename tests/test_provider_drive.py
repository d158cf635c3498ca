"""The Google Drive provider against a Drive double (tests/fake_drive.py) whose requests and
answers are checked against the Drive v3 discovery document shipped in google-api-python-client,
spoken to by the real client library; and end to end through the real sensor and job (SQLite
and PostgreSQL state, the local bucket and the Mixpeek double's upload flow)."""

from __future__ import annotations

import hashlib
import json
import traceback
from pathlib import Path
from typing import Any

import pytest

from mixsync_dagster.config import GoogleDriveConnection
from mixsync_dagster.core.records import FileItem, Page
from mixsync_dagster.errors import (
    AuthError,
    FileVanished,
    PermanentFileError,
    ProviderError,
    TransientError,
)
from mixsync_dagster.providers.google_drive import GoogleDriveProvider
from mixsync_dagster.state import StateStore
from tests.fake_drive import (
    EXPORT_LIMIT,
    GOOGLE_DOC,
    GOOGLE_FORM,
    GOOGLE_SHEET,
    GOOGLE_SLIDES,
    SHORTCUT,
    FakeDrive,
)
from tests.gcs_server import service_account_info
from tests.harness import Driver, listing_position, objects, pass_finished, write_config

pytest_plugins = ["tests.fake_drive"]  # the drive fixture

ROOT = "root-folder-0001"


def credentials(drive: FakeDrive) -> str:
    return json.dumps(service_account_info(drive.url + "token"))


def conn(drive: FakeDrive, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"provider": "google_drive", "endpoint_url": drive.url}
    if "oauth" not in kw:
        out["credentials_json"] = credentials(drive)
    out.update(kw)
    return out


def provider(drive: FakeDrive, **kw: Any) -> GoogleDriveProvider:
    opts = {k: kw.pop(k) for k in ("max_attempts", "sleep", "max_retry_seconds") if k in kw}
    return GoogleDriveProvider("gd", GoogleDriveConnection(**conn(drive, **kw)), **opts)


def keys(pages: list[Page]) -> list[str]:
    return [i.key for p in pages for i in p.items]


def paths(pages: list[Page]) -> list[str]:
    return [i.rel_path for p in pages for i in p.items]


def tree(drive: FakeDrive) -> dict[str, str]:
    """rel path -> file id of a small tree: 23 files at the top, nested folders, an empty one."""
    drive.folder("Root", "my-drive", id=ROOT)
    ids: dict[str, str] = {}
    for i in range(23):
        ids[f"top_{i:02d}.mp4"] = drive.add(f"top_{i:02d}.mp4", ROOT, "video/mp4", b"v%d" % i).id
    a = drive.folder("a", ROOT)
    for i in range(7):
        ids[f"a/clip {i}.mov"] = drive.add(f"clip {i}.mov", a.id, "video/quicktime", b"a%d" % i).id
    b = drive.folder("b ünï+%", a.id)
    for i in range(3):
        ids[f"a/b ünï+%/deep_{i}.txt"] = drive.add(f"deep_{i}.txt", b.id, "text/plain", b"d").id
    drive.folder("empty", ROOT)
    slash = drive.folder("x/y", ROOT)
    ids["x_y/in a slashed folder.txt"] = drive.add("in a slashed folder.txt", slash.id).id
    return ids


# ---------------------------------------------------------------- listing and positions


def test_a_folder_tree_is_listed_once_and_resumes_from_every_page(drive):
    ids = tree(drive)
    p = provider(drive)
    pages = list(p.list_pages(f"drive://{ROOT}", None, 5))
    assert sorted(paths(pages)) == sorted(ids) and len(keys(pages)) == len(ids)
    assert {i.rel_path: i.key for pg in pages for i in pg.items} == ids
    assert pages[-1].next_position is None and all(pg.next_position for pg in pages[:-1])
    assert max(len(pg.items) for pg in pages) == 5
    everything = keys(pages)
    done = 0
    for pg in pages[:-1]:
        done += len(pg.items)
        rest = keys(list(provider(drive).list_pages(f"drive://{ROOT}", pg.next_position, 5)))
        assert rest == everything[done:], pg.next_position
    # One files request per page of a folder, one subfolder request per folder: no re-listing.
    drive.requests.clear()
    list(provider(drive).list_pages(f"drive://{ROOT}", None, 1000))
    lists = [q for _, path, q in drive.requests if path.endswith("/files")]
    assert len(lists) == 2 * 5  # five folders: Root, a, b, empty, x/y
    assert all(q["pageSize"] in (["1000"],) for q in lists)


def test_a_refused_page_token_restarts_that_folder_only(drive):
    ids = tree(drive)
    p = provider(drive)
    pages = list(p.list_pages(f"drive://{ROOT}", None, 10))
    first, second = pages[0], pages[1]  # both pages of the top folder's 23 files
    drive.expire_page_tokens()
    drive.requests.clear()
    rest = keys(list(provider(drive).list_pages(f"drive://{ROOT}", first.next_position, 10)))
    # The top folder starts again (its first 10 files come back) and nothing is lost.
    assert set(rest) == set(ids.values())
    assert rest[:10] == [i.key for i in first.items] and rest[10:20] == [
        i.key for i in second.items
    ]
    refused = [q for _, path, q in drive.requests if "pageToken" in q]
    assert refused and drive.requests[1][2].get("pageToken") == refused[0].get("pageToken")


def test_shared_drive_source_lists_with_the_drive_corpus(drive):
    shared = drive.shared_drive("Marketing")
    sub = drive.folder("2025", shared)
    drive.add("launch.mp4", shared, "video/mp4", b"launch")
    drive.add("teaser.mp4", sub.id, "video/mp4", b"teaser")
    p = provider(drive)
    assert sorted(paths(list(p.list_pages(f"drive://shared/{shared}", None, 100)))) == [
        "2025/teaser.mp4",
        "launch.mp4",
    ]
    lists = [q for _, path, q in drive.requests if path.endswith("/files")]
    assert all(q["corpora"] == ["drive"] and q["driveId"] == [shared] for q in lists)
    assert all(q["supportsAllDrives"] == ["true"] for q in lists)
    assert "shared drive" in p.check(f"drive://shared/{shared}")


# ---------------------------------------------------------------- what a listed file says


def test_exports_skips_metadata_and_fingerprints(drive):
    drive.folder("Root", "my-drive", id=ROOT)
    video = drive.add(
        "clip.mp4",
        ROOT,
        "video/mp4",
        b"video bytes",
        properties={"status": "approved"},
        appProperties={"crm_id": "42"},
    )
    doc = drive.add("Q3 plan", ROOT, GOOGLE_DOC, b"doc text")
    sheet = drive.add("Budget", ROOT, GOOGLE_SHEET, b"a,b")
    slides = drive.add("Deck", ROOT, GOOGLE_SLIDES, b"slides")
    form = drive.add("Survey", ROOT, GOOGLE_FORM)
    drawing = drive.add("Sketch", ROOT, "application/vnd.google-apps.drawing")
    short = drive.add("link", ROOT, SHORTCUT, shortcut_target="elsewhere")
    p = provider(drive, export_formats={"spreadsheet": "text/csv"})
    (page,) = [pg for pg in p.list_pages(f"drive://{ROOT}", None, 100) if pg.items]
    items = {i.key: i for i in page.items}
    assert set(items) == {video.id, doc.id, sheet.id, slides.id}
    reasons = {s.key: s.reason for s in page.skipped}
    assert reasons[form.id] == "'Survey' is a Google form, which Drive cannot export"
    assert "shortcut (to elsewhere)" in reasons[short.id]
    assert "exports drawings as nothing, not application/pdf" in reasons[drawing.id]
    v = items[video.id]
    assert (v.rel_path, v.size, v.content_type, v.url) == (
        "clip.mp4",
        11,
        "video/mp4",
        f"drive://{video.id}",
    )
    assert v.fingerprint.startswith(hashlib.md5(b"video bytes").hexdigest() + "-")
    assert v.metadata["properties"] == {"status": "approved"}
    assert v.metadata["appProperties"] == {"crm_id": "42"}
    assert v.metadata["owners"] == ["ann@example.com"]
    assert v.metadata["webViewLink"].endswith(f"/file/d/{video.id}/view")
    assert v.metadata["mimeType"] == "video/mp4" and v.metadata["export_mime_type"] is None
    d, s = items[doc.id], items[sheet.id]
    assert (d.rel_path, d.content_type, d.size) == ("Q3 plan.pdf", "application/pdf", 0)
    assert (s.rel_path, s.content_type) == ("Budget.csv", "text/csv")
    assert d.fingerprint.startswith(f"v{doc.version}-{doc.modifiedTime}-application/pdf-")
    assert d.metadata["mimeType"] == GOOGLE_DOC
    assert FileItem.from_json(d.to_json()) == d
    # Bytes: downloads as they are, exports in the configured format.
    with p.open(v) as f:
        assert f.read() == b"video bytes"
    with p.open(s) as f:
        assert f.read() == f"%export of {sheet.id} v1 as text/csv\n".encode() + b"a,b"
    with pytest.raises(ProviderError, match="bytes"):
        p.blob_url(v)
    # A property edit, a rename, a content change each move the fingerprint.
    before = v.fingerprint
    for change in ({"properties": {"status": "draft"}}, {"name": "clip2.mp4"}, {"content": b"x"}):
        drive.update(video.id, **change)
        (now,) = [
            i
            for pg in p.list_pages(f"drive://{ROOT}", None, 100)
            for i in pg.items
            if i.key == video.id
        ]
        assert now.fingerprint != before
        before = now.fingerprint
    # Replaced since the listing: the md5 no longer matches; deleted: gone.
    with pytest.raises(FileVanished, match="changed after it was listed"):
        p.open(v)
    drive.delete(video.id)
    with pytest.raises(FileVanished):
        p.open(now)
    drive.update(doc.id, content=b"x" * EXPORT_LIMIT)
    (big,) = [
        i for pg in p.list_pages(f"drive://{ROOT}", None, 100) for i in pg.items if i.key == doc.id
    ]
    with pytest.raises(PermanentFileError, match="exportSizeLimitExceeded"):
        p.open(big)


def test_large_downloads_come_in_chunks(drive, monkeypatch):
    from mixsync_dagster.providers import google_drive

    monkeypatch.setattr(google_drive, "DOWNLOAD_CHUNK", 1000)
    drive.folder("Root", "my-drive", id=ROOT)
    data = bytes(range(256)) * 20
    drive.add("big.bin", ROOT, content=data)
    p = provider(drive)
    (item,) = keys_items(p)
    drive.requests.clear()
    with p.open(item) as f:
        assert f.read() == data
    assert len([r for r in drive.requests if r[2].get("alt") == ["media"]]) == 6


def keys_items(p: GoogleDriveProvider) -> list[FileItem]:
    return [i for pg in p.list_pages(f"drive://{ROOT}", None, 100) for i in pg.items]


# ---------------------------------------------------------------- rate limits and credentials


def test_rate_limits_are_backed_off_then_a_transient_error(drive):
    tree(drive)
    slept: list[float] = []
    p = provider(drive, sleep=slept.append, max_attempts=4)
    drive.fail_next(1, 403, "rateLimitExceeded")
    drive.fail_next(2, 429, "rateLimitExceeded", {"Retry-After": "7"})
    drive.faults.insert(0, (403, "userRateLimitExceeded", {}))
    assert len(keys(list(p.list_pages(f"drive://{ROOT}", None, 100)))) == 34
    assert len(slept) == 3 and slept[1] >= 7 and slept[2] >= 7  # Retry-After honoured
    drive.fail_next(10, 503, "backendError")
    with pytest.raises(TransientError, match=r"connection 'gd'.*4 attempt\(s\).*503") as e:
        list(
            provider(drive, sleep=slept.append, max_attempts=4).list_pages(
                f"drive://{ROOT}", None, 10
            )
        )
    assert "backendError" in str(e.value)


def test_refused_credentials_fail_fast_and_never_leak(drive):
    tree(drive)
    # The API refuses the account (no access to the folder): fail fast, no retries.
    p = provider(drive)
    list(p.list_pages(f"drive://{ROOT}", None, 10))
    drive.requests.clear()
    drive.fail_next(1, 403, "insufficientFilePermissions")
    with pytest.raises(AuthError, match="connection 'gd': Drive refused") as e:
        list(provider(drive).list_pages(f"drive://{ROOT}", None, 10))
    assert len(drive.requests) == 1 and "credentials_json" in str(e.value)
    # A refresh token the token endpoint rejects.
    drive.oauth_clients["good-refresh-token"] = ("client-1", "client-secret-Zq9")
    bad = {
        "client_id": "client-1",
        "client_secret": "client-secret-Zq9",
        "refresh_token": "revoked-refresh-token-Xy7",
        "token_uri": drive.url + "token",
    }
    with pytest.raises(AuthError, match="invalid_grant") as e:
        list(provider(drive, oauth=bad).list_pages(f"drive://{ROOT}", None, 10))
    shown = "".join(traceback.format_exception(e.value))
    assert "revoked-refresh-token-Xy7" not in shown and "client-secret-Zq9" not in shown
    good = {**bad, "refresh_token": "good-refresh-token"}
    assert (
        len(keys(list(provider(drive, oauth=good).list_pages(f"drive://{ROOT}", None, 100)))) == 34
    )
    assert drive.grants[-1] == {"grant": "refresh_token", "client_id": "client-1"}
    # A service-account key that is not one.
    broken = provider(drive, credentials_json='{"private_key": "hunter2"')
    with pytest.raises(AuthError, match="not a usable service-account key") as e:
        list(broken.list_pages(f"drive://{ROOT}", None, 10))
    assert "hunter2" not in "".join(traceback.format_exception_only(e.value))
    # The service account asked for drive.readonly only, impersonating the subject.
    sa = provider(drive, subject="editor@example.com")
    list(sa.list_pages(f"drive://{ROOT}", None, 10))
    claims = drive.grants[-1]
    assert claims["scope"] == "https://www.googleapis.com/auth/drive.readonly"
    assert claims["sub"] == "editor@example.com"


def test_missing_folder_a_file_as_source_and_check(drive):
    ids = tree(drive)
    p = provider(drive)
    with pytest.raises(ProviderError, match="not found") as e:
        list(p.list_pages("drive://no-such-folder", None, 10))
    assert not isinstance(e.value, AuthError | TransientError)
    with pytest.raises(ProviderError, match="not a folder"):
        list(p.list_pages(f"drive://{ids['top_00.mp4']}", None, 10))
    assert (
        p.check(None) == "credentials accepted by Drive as mixsync@example.iam.gserviceaccount.com"
    )
    assert p.check(f"drive://{ROOT}").startswith(f"drive://{ROOT} reachable (folder {ROOT})")


# ---------------------------------------------------------------- end to end through Dagster


def drive_config(
    tmp_path: Path, drive: FakeDrive, state_url: str, syncs: list[dict[str, Any]], **kw: Any
) -> Path:
    return write_config(
        tmp_path / "syncs.yaml", state_url=state_url, syncs=syncs, connection=conn(drive), **kw
    )


def by_key(state_url: str) -> dict[str, dict[str, Any]]:
    return {o["source_key"]: o for o in objects(state_url)}


def test_e2e_first_pass_change_and_delete_with_reconcile(tmp_path, drive, state_url, instance):
    ids = tree(drive)
    doc = drive.add("Brief", ROOT, GOOGLE_DOC, b"the brief")
    sync = {
        "name": "gd",
        "source_path": f"drive://{ROOT}",
        "reconcile_on_sync": True,
        "max_deletes_per_pass": 5,
    }
    d = Driver(drive_config(tmp_path, drive, state_url, [sync]), instance)
    assert d.run_pass("gd") == 1
    objs = by_key(state_url)
    assert set(objs) == {*ids.values(), doc.id}
    o = objs[ids["a/clip 3.mov"]]
    assert o["uri"] == f"drive://{ids['a/clip 3.mov']}" and o["mime_type"] == "video/quicktime"
    assert o["metadata"]["mixsync"]["provider"] == "google_drive"
    # The local bucket took the bytes from open(): its sha256 is the file's (the export's).
    assert o["sha256"] == hashlib.sha256(b"a3").hexdigest()
    export = f"%export of {doc.id} v1 as application/pdf\n".encode() + b"the brief"
    assert objs[doc.id]["sha256"] == hashlib.sha256(export).hexdigest()
    assert objs[doc.id]["mime_type"] == "application/pdf"
    # A changed file and an edited document: the same objects updated in place.
    drive.update(ids["top_04.mp4"], content=b"a new cut")
    drive.update(doc.id, content=b"the brief, v2")
    assert d.run_pass("gd") == 1
    after = by_key(state_url)
    assert after[ids["top_04.mp4"]]["object_id"] == objs[ids["top_04.mp4"]]["object_id"]
    assert after[ids["top_04.mp4"]]["sha256"] == hashlib.sha256(b"a new cut").hexdigest()
    assert after[doc.id]["sha256"] != objs[doc.id]["sha256"]
    assert after[ids["top_00.mp4"]]["updated_at"] == objs[ids["top_00.mp4"]]["updated_at"]
    # Deleted (and a folder trashed), reconcile on: their objects go.
    drive.delete(ids["a/clip 0.mov"])
    drive.update(next(f.id for f in drive.files.values() if f.name == "x/y"), trashed=True)
    assert d.run_pass("gd") == 1
    gone = {ids["a/clip 0.mov"], ids["x_y/in a slashed folder.txt"]}
    assert set(by_key(state_url)) == {*ids.values(), doc.id} - gone
    row = StateStore(state_url).get_sync("gd")
    assert row["status"] == "ACTIVE" and row["total_files_failed"] == 0


def test_e2e_interrupted_listing_resumes_every_file_exactly_once(
    tmp_path, drive, state_url, instance
):
    ids = tree(drive)
    sync = {"name": "gd", "source_path": f"drive://{ROOT}", "max_objects_per_run": 10}
    cfg = drive_config(tmp_path, drive, state_url, [sync])
    d = Driver(cfg, instance)
    reqs, _ = d.tick("gd")
    assert len(reqs) == 1
    d.execute("gd", reqs[0])
    stack = json.loads(listing_position(d, "gd") or "")["stack"]
    assert stack[0]["id"] == ROOT and stack[0]["token"]  # a Drive position mid-folder
    reqs, _ = d.tick("gd")  # this chunk's run request is lost: the daemon died
    assert len(reqs) == 1
    # A restarted deployment carries the same pass on from the committed position.
    d2 = Driver(cfg, instance)
    d2.run_pass("gd")
    assert pass_finished(d2, "gd")
    assert sorted(o["source_key"] for o in objects(state_url)) == sorted(ids.values())
    assert StateStore(state_url).get_sync("gd")["total_files_discovered"] == len(ids)


def test_e2e_drive_to_mixpeek_uploads_the_bytes(tmp_path, drive, instance, monkeypatch):
    from mixsync_dagster.targets import mixpeek
    from tests.fake_mixpeek import FakeMixpeek
    from tests.test_target_mixpeek import FAST, KEY, NS

    monkeypatch.setenv("MIXPEEK_API_KEY", KEY)
    monkeypatch.setenv("MIXPEEK_NAMESPACE", NS)
    monkeypatch.setattr(mixpeek, "DEFAULT_BUDGET", FAST)
    drive.folder("Root", "my-drive", id=ROOT)
    clip = drive.add("clip.mp4", ROOT, "video/mp4", b"video bytes", properties={"title": "Alpha"})
    doc = drive.add("Q3 plan", ROOT, GOOGLE_DOC, b"plan")
    drive.add("Survey", ROOT, GOOGLE_FORM)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    with FakeMixpeek(api_key=KEY, namespace=NS) as fake:
        bucket = {
            "target": "mixpeek",
            "bucket_id": "bkt_test",
            "namespace": {"env": "MIXPEEK_NAMESPACE"},
            "api_key": {"env": "MIXPEEK_API_KEY"},
            "base_url": fake.url,
            "timeout_seconds": 5,
        }
        sync = {
            "name": "gd",
            "source_path": f"drive://{ROOT}",
            "schema_mapping": {
                "field_mappings": {"title": {"source": "metadata.properties.title"}}
            },
        }
        cfg = drive_config(tmp_path, drive, state_url, [sync], buckets={"media": bucket})
        Driver(cfg, instance).run_pass("gd")
        objs = {o["metadata"]["mixsync"]["source_key"]: o for o in fake.list_objects()}
        assert set(objs) == {clip.id, doc.id}
        blob = objs[clip.id]["blobs"][0]
        assert blob["properties"]["upload_id"] and "data" not in blob  # bytes uploaded, no URL
        assert blob["details"]["filename"] == "clip.mp4"
        assert blob["details"]["hash"] == hashlib.sha256(b"video bytes").hexdigest()
        assert objs[clip.id]["metadata"]["title"] == "Alpha"
        pdf = objs[doc.id]["blobs"][0]["details"]
        assert (pdf["filename"], pdf["mime_type"]) == ("Q3 plan.pdf", "application/pdf")
        exported = f"%export of {doc.id} v1 as application/pdf\n".encode() + b"plan"
        assert pdf["size_bytes"] == len(exported)


def test_cli_check_reports_each_source(tmp_path, drive):
    from click.testing import CliRunner

    from mixsync_dagster.cli import main

    tree(drive)
    syncs = [
        {"name": "ok", "source_path": f"drive://{ROOT}"},
        {"name": "gone", "source_path": "drive://missing-folder"},
    ]
    cfg = drive_config(tmp_path, drive, f"sqlite:///{tmp_path / 's.db'}", syncs)
    res = CliRunner().invoke(main, ["-c", str(cfg), "check", "src"])
    assert res.exit_code == 1
    assert f"src drive://{ROOT}: OK: drive://{ROOT} reachable" in res.output
    assert (
        "src drive://missing-folder: FAILED: connection 'src': Drive says not found" in res.output
    )


def test_the_double_refuses_what_the_discovery_document_does_not_declare(drive, monkeypatch):
    """The double is only as good as its contract checks: each kind of violation is caught."""
    import urllib.error
    import urllib.request

    from tests import fake_drive

    drive.tokens.add("t")
    drive.folder("R", "my-drive", id="R")
    drive.add("a.txt", "R", "text/plain", b"a")

    def status(path: str) -> int:
        req = urllib.request.Request(drive.url + path, headers={"Authorization": "Bearer t"})
        try:
            return int(urllib.request.urlopen(req).status)
        except urllib.error.HTTPError as e:
            return e.code

    base = "drive/v3/files?q=%27R%27+in+parents"
    assert status(base + "&pageSize=10") == 200
    bad = [
        base + "&bogus=1",  # undeclared parameter
        base + "&pageSize=abc",  # not an integer
        base + "&supportsAllDrives=yes",  # not a boolean
        base + "&corpus=everything",  # not in the enum
        base + "&fields=files(id,bogus)",  # a field the File schema does not declare
        "drive/v3/files/R/export",  # required mimeType missing
        "drive/v3/nothing",  # no such method
    ]
    assert [status(p) for p in bad] == [400] * len(bad)
    assert len(drive.violations) == len(bad)
    # Answers are checked too: a File property the schema does not declare is refused.
    real = fake_drive.DriveFile.resource
    monkeypatch.setattr(
        fake_drive.DriveFile, "resource", lambda self, root: {**real(self, root), "colour": "red"}
    )
    assert status(base) == 400
    assert "answer: drive.files.list.files[0]: File declares no property 'colour'" in (
        drive.violations
    )
    drive.violations.clear()  # expected ones: the fixture must not fail this test


def test_e2e_a_document_drive_will_not_export_goes_to_the_dlq(tmp_path, drive, instance):
    from click.testing import CliRunner

    from mixsync_dagster.cli import main

    drive.folder("Root", "my-drive", id=ROOT)
    ok = drive.add("notes.txt", ROOT, "text/plain", b"fine")
    big = drive.add("Huge plan", ROOT, GOOGLE_DOC, b"x" * EXPORT_LIMIT)  # too large to export
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    sync = {"name": "gd", "source_path": f"drive://{ROOT}", "retry_backoff_seconds": 0}
    cfg = drive_config(tmp_path, drive, state_url, [sync])
    d = Driver(cfg, instance)
    for _ in range(3):  # three attempts, then the file is `failed`
        d.run_pass("gd")
    assert set(by_key(state_url)) == {ok.id}  # the run went on; only that file failed
    res = CliRunner().invoke(main, ["-c", str(cfg), "dlq", "list", "gd", "--json"])
    (dead,) = json.loads(res.output)["files"]
    assert (dead["source_key"], dead["status"], dead["attempts"]) == (big.id, "failed", 3)
    assert "exportSizeLimitExceeded" in dead["last_error"]
    # Trimmed below the limit: the new version syncs on the next pass.
    drive.update(big.id, content=b"a shorter plan")
    d.run_pass("gd")
    assert set(by_key(state_url)) == {ok.id, big.id}
