"""Alembic upgrades a state database made by mixsync 0.1 (schema v3) and keeps every row."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from mixsync_dagster.state import StateStore, hash64
from mixsync_dagster.state.migrate import HEAD, VERSION_TABLE, current_revision, upgrade
from mixsync_dagster.state.schema import _make_engine, dispose_engines

FIXTURE = Path(__file__).parent / "data" / "state_v3.db"
"""Made by mixsync 0.1 (commit 0903278) itself: `mixsync sync` of two syncs over a small tree
(one file excluded, 31 in the dead-letter queue, changed and deleted files)."""


def v3_rows(url: str) -> dict[str, list[dict[str, object]]]:
    eng = sa.create_engine(url)
    md = sa.MetaData()
    out = {}
    with eng.connect() as c:
        for name in (
            "mixsync_syncs",
            "mixsync_tracked_files",
            "mixsync_batches",
            "mixsync_failures",
            "local_bucket_objects",
            "local_bucket_batches",
        ):
            t = sa.Table(name, md, autoload_with=c)
            out[name] = [dict(r._mapping) for r in c.execute(sa.select(t))]
    eng.dispose()
    return out


def check_upgraded(url: str, before: dict[str, list[dict[str, object]]]) -> None:
    store = StateStore(url)  # migrates on first use
    with store.engine.connect() as c:
        assert current_revision(c) == HEAD
        names = set(sa.inspect(c).get_table_names())
        assert {"mixsync_tracked_files", "mixsync_work_items", "mixsync_leases"}.isdisjoint(names)
    for old in before["mixsync_syncs"]:
        row = store.get_sync(str(old["name"]))
        for k in (
            "status",
            "total_files_discovered",
            "total_files_synced",
            "total_files_failed",
            "total_bytes_synced",
            "consecutive_failures",
            "passes_completed",
        ):
            assert row[k] == old[k], (k, row[k], old[k])
    status_names = {
        "pending": "creating",
        "synced": "synced",
        "excluded": "excluded",
        "retry": "retry",
        "failed": "failed",
    }
    from tests.harness import batch_rows, tracked_rows

    syncs = {str(r["sync"]) for r in before["mixsync_tracked_files"]}
    now = {s: tracked_rows(url, s) for s in syncs}
    assert sum(len(v) for v in now.values()) == len(before["mixsync_tracked_files"])
    for old in before["mixsync_tracked_files"]:
        new = now[str(old["sync"])][str(old["source_key"])]
        assert new["fp"] == hash64(str(old["fingerprint"]))
        assert new["status"] == status_names[str(old["status"])]
        assert new["object_id"] == old["object_id"]
        assert new["attempts"] == old["attempts"] and new["last_error"] == old["last_error"]
        if old["filter_hash"]:
            assert new["filter_hash"] == hash64(str(old["filter_hash"]))
    assert sorted(b["batch_id"] for b in batch_rows(url)) == sorted(
        str(b["batch_id"]) for b in before["mixsync_batches"]
    )
    from tests.harness import objects

    buckets = {str(o["bucket"]) for o in before["local_bucket_objects"]}
    after = {o["object_id"]: o for b in buckets for o in objects(url, b)}
    assert len(after) == len(before["local_bucket_objects"])
    for old in before["local_bucket_objects"]:
        new = after[old["object_id"]]
        for k in ("source_ref", "source_key", "sha256", "fingerprint", "status", "size_bytes"):
            assert new[k] == old[k]
        assert new["uri"] == str(old["blob_url"]).split("?", 1)[0]
        assert "blob_url" not in new
    dispose_engines()


def test_sqlite_database_made_by_the_previous_release_upgrades_keeping_every_row(tmp_path):
    db = tmp_path / "state.db"
    shutil.copy(FIXTURE, db)
    url = f"sqlite:///{db}"
    before = v3_rows(url)
    assert len(before["mixsync_tracked_files"]) == 35 and len(before["local_bucket_objects"]) == 3
    check_upgraded(url, before)
    # Idempotent: a second open is one query and changes nothing.
    eng = _make_engine(url)
    upgrade(eng)
    with eng.connect() as c:
        assert c.execute(sa.text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar() == 1


def test_postgres_database_at_v3_upgrades_keeping_every_row(state_url):
    """The same on PostgreSQL: a v3 database (revision 0001 makes exactly 0.1's tables),
    filled the way 0.1 filled it, presigned URLs included."""
    if not state_url.startswith("postgresql"):
        return
    eng = _make_engine(state_url)
    upgrade(eng, "0001")
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with eng.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO mixsync_syncs VALUES "
                "('cams','ACTIVE',3,2,1,300,:t,:t,0,NULL,NULL,4,:t),"
                "('docs','SUSPENDED',1,0,0,0,NULL,NULL,5,'boom',NULL,0,:t)"
            ),
            {"t": now},
        )
        rows = [
            ("cams", "s3/a.mp4", "etag-a", "synced", "obj_1", 0, None, "fh1", "p1"),
            ("cams", "s3/b.mp4", "etag-b", "synced", "obj_2", 0, None, "fh1", "p1"),
            ("cams", "s3/c.mp4", "etag-c", "failed", None, 3, "too big", "fh1", "p1"),
            ("docs", "x.pdf", "1-2", "pending", None, 0, None, None, None),
        ]
        for sync, key, fp, status, oid, att, err, fh, seen in rows:
            c.execute(
                sa.text(
                    "INSERT INTO mixsync_tracked_files VALUES "
                    "(:s,:k,:f,:st,:o,:a,:e,10,:fh,:seen,NULL,:t)"
                ),
                {"s": sync, "k": key, "f": fp, "st": status, "o": oid, "a": att, "e": err}
                | {"fh": fh, "seen": seen, "t": now},
            )
        c.execute(
            sa.text(
                "INSERT INTO mixsync_batches VALUES "
                "('btch_1','cams','w1','submitted',2,'task_1',:t,:t,'COMPLETED',:t)"
            ),
            {"t": now},
        )
        c.execute(
            sa.text("INSERT INTO mixsync_failures VALUES ('run:1','docs','boom',:t)"), {"t": now}
        )
        for oid, key in (("obj_1", "s3/a.mp4"), ("obj_2", "s3/b.mp4")):
            c.execute(
                sa.text(
                    "INSERT INTO local_bucket_objects VALUES (:o,'media',:r,:k,:u,'video/mp4',"
                    "10,NULL,:f,'{}','{}','PROCESSED',:t,:t)"
                ),
                {
                    "o": oid,
                    "r": f"s3:cams:{key}",
                    "k": key,
                    "u": f"https://s3.example/{key}?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=f",
                    "f": "etag",
                    "t": now,
                },
            )
    eng.dispose()
    before = v3_rows(state_url)
    check_upgraded(state_url, before)
    with StateStore(state_url).engine.connect() as c:
        uris = [r[0] for r in c.execute(sa.text("SELECT uri FROM local_bucket_objects"))]
    assert uris and all("X-Amz" not in u for u in uris)
