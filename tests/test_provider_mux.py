"""MuxProvider against a fake Mux Video API on real loopback HTTP, then end to end in Dagster."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from mixsync_dagster.config import MuxConnection
from mixsync_dagster.config.loader import load_config
from mixsync_dagster.core.preview import PreviewTotals, preview
from mixsync_dagster.core.records import FileItem, Page
from mixsync_dagster.core.runtime import open_runtime
from mixsync_dagster.errors import AuthError, FileVanished, ProviderError, TransientError
from mixsync_dagster.providers.mux import NO_RENDITION, MuxProvider
from mixsync_dagster.state import StateStore
from tests.fake_mux import FakeMux
from tests.harness import Driver, objects, write_config

# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def server() -> Iterator[FakeMux]:
    fake = FakeMux().start()
    yield fake
    fake.stop()


@pytest.fixture
def mux(server: FakeMux) -> FakeMux:
    server.reset()
    return server


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def connection(fake: FakeMux, page_size: int = 100, secret: str | None = None) -> MuxConnection:
    return MuxConnection(
        provider="mux",
        access_token_id=SecretStr(fake.token_id),
        access_token_secret=SecretStr(secret if secret is not None else fake.token_secret),
        api_base_url=fake.url,
        stream_base_url=fake.url,
        page_size=page_size,
    )


def provider(fake: FakeMux, page_size: int = 100, **kw: Any) -> MuxProvider:
    """A provider with a fast retry budget unless a test asks otherwise."""
    opts: dict[str, Any] = {
        "max_attempts": 4,
        "max_retry_seconds": 5.0,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
    }
    opts.update(kw)
    secret = opts.pop("secret", None)
    return MuxProvider("src", connection(fake, page_size, secret), **opts)


def pages(
    p: MuxProvider, source: str = "mux://", pos: str | None = None, size: int = 1000
) -> list[Page]:
    return list(p.list_pages(source, pos, size))


def entry_keys(page: Page) -> list[str]:
    """Items and skipped entries of a page, in listing order (both are assets)."""
    return [i.key for i in page.items] + [s.key for s in page.skipped]


def listed_ids(pgs: list[Page]) -> list[str]:
    return [k for pg in pgs for k in entry_keys(pg)]


def items_of(pgs: list[Page]) -> list[FileItem]:
    return [i for pg in pgs for i in pg.items]


def mux_conn_dict(fake: FakeMux, page_size: int = 100) -> dict[str, Any]:
    return {
        "provider": "mux",
        "access_token_id": fake.token_id,
        "access_token_secret": fake.token_secret,
        "api_base_url": fake.url,
        "stream_base_url": fake.url,
        "page_size": page_size,
    }


def list_gaps(fake: FakeMux) -> list[tuple[int, float]]:
    """(status, seconds until the next listing request) for each listing request."""
    reqs = [r for r in fake.requests if r.path == "/video/v1/assets"]
    return [(a.status, b.at - a.at) for a, b in pairwise(reqs)]


# ---------------------------------------------------------------- listing and paging


def test_pages_through_hundreds_of_assets_newest_first(mux: FakeMux):
    mux.add_assets(320)
    p = provider(mux, page_size=7)
    pgs = pages(p)
    assert [len(pg.items) for pg in pgs[:-1]] == [7] * (len(pgs) - 1)
    ids = listed_ids(pgs)
    assert ids == mux.ordered_ids()  # every asset, once, newest first
    assert len(set(ids)) == 320
    assert pgs[-1].next_position is None
    assert all(pg.next_position for pg in pgs[:-1])
    # One API call per page; a full last page costs one more (empty) call to learn the end.
    assert mux.count("/video/v1/assets") == math.ceil(320 / 7)
    limits = {r.query["limit"] for r in mux.requests}
    assert limits == {"7"}


def test_page_size_is_the_smaller_of_connection_and_caller(mux: FakeMux):
    mux.add_assets(30)
    pgs = pages(provider(mux, page_size=50), size=10)  # the engine's max_objects_per_run
    assert [len(pg.items) for pg in pgs] == [10, 10, 10, 0]
    assert {r.query["limit"] for r in mux.requests} == {"10"}
    mux.requests.clear()
    pages(provider(mux, page_size=100), size=1000)
    assert {r.query["limit"] for r in mux.requests} == {"100"}


def test_resume_from_every_page_position_loses_and_repeats_nothing(mux: FakeMux):
    for i in range(150):  # skipped assets are part of the positions too
        mux.add_asset(status="preparing" if i % 11 == 0 else "ready")
    p = provider(mux, page_size=9)
    full = pages(p)
    for i, pg in enumerate(full[:-1]):
        resumed = next(iter(p.list_pages("mux://", pg.next_position, 1000)))
        assert entry_keys(resumed) == entry_keys(full[i + 1]), f"resume after page {i}"
        assert resumed.next_position == full[i + 1].next_position
    # Resuming from the middle to the end yields exactly the rest.
    mid = len(full) // 2
    head = listed_ids(full[: mid + 1])
    tail = listed_ids(pages(p, pos=full[mid].next_position))
    assert len(head + tail) == len(set(head + tail)) == 150
    assert set(head + tail) == set(mux.ordered_ids())


def test_assets_created_or_deleted_mid_listing(mux: FakeMux):
    mux.add_assets(40)
    before = mux.ordered_ids()
    p = provider(mux, page_size=10)
    it = p.list_pages("mux://", None, 1000)
    first = [next(it), next(it)]
    seen = listed_ids(first)
    # Mid-pass: two new assets arrive, one listed and one unlisted asset are deleted.
    new = [mux.add_asset()["id"] for _ in range(2)]
    mux.delete_asset(seen[3])
    mux.delete_asset(before[25])
    rest = listed_ids(pages(p, pos=first[-1].next_position))
    assert rest == [a for a in before[20:] if a != before[25]]  # no shift, nothing lost
    assert not set(rest) & set(seen)
    assert not set(rest) & set(new)  # newer than the position: left for the next pass ...
    assert listed_ids(pages(p))[:2] == new[::-1]  # ... which lists them first


def test_unknown_position_restarts_from_the_newest_asset(mux: FakeMux, caplog):
    mux.add_assets(12)
    ids = listed_ids(pages(provider(mux, page_size=5), pos="not-a-mux-cursor"))
    assert ids == mux.ordered_ids()
    assert "listing again from the newest asset" in caplog.text


def test_prefix_is_ignored(mux: FakeMux):
    mux.add_assets(3)
    p = provider(mux)
    assert listed_ids(list(p.list_pages("mux://", None, 100, "some/folder/"))) == (
        mux.ordered_ids()
    )


# ---------------------------------------------------------------- what becomes a file


def test_statuses_and_missing_renditions_are_skipped_with_reasons(mux: FakeMux):
    ready = [mux.add_asset()["id"] for _ in range(3)]
    preparing = [mux.add_asset(status="preparing")["id"] for _ in range(2)]
    errored = mux.add_asset(status="errored")["id"]
    no_static = mux.add_asset(static=None)["id"]
    audio_only = mux.add_asset(static="audio_only")["id"]
    static_preparing = mux.add_asset(static="preparing")["id"]
    signed = mux.add_asset(policy="signed")["id"]
    legacy = mux.add_asset(static="legacy")["id"]
    pgs = pages(provider(mux, page_size=4))
    items = {i.key: i for i in items_of(pgs)}
    skipped = {s.key: s.reason for pg in pgs for s in pg.skipped}
    assert set(items) == {*ready, legacy}
    assert len(skipped) == 7
    assert all(skipped[a] == "status preparing" for a in preparing)
    assert skipped[errored].startswith("status errored")
    assert "could not be decoded" in skipped[errored]
    assert skipped[no_static] == NO_RENDITION
    assert skipped[no_static] == "no static MP4 rendition; enable static renditions on the asset"
    assert skipped[audio_only] == NO_RENDITION  # an audio-only rendition is no MP4
    assert "not ready" in skipped[static_preparing] and "preparing" in skipped[static_preparing]
    assert "public playback id" in skipped[signed]
    # The older mp4_support shape (one status for all files): the best MP4 is chosen.
    assert items[legacy].rel_path == f"{legacy}/high.mp4"
    assert all(items[a].rel_path == f"{a}/highest.mp4" for a in ready)


def test_file_item_describes_the_rendition_and_the_asset(mux: FakeMux):
    raw = mux.add_asset(
        title="Keynote 2025",
        creator_id="user-7",
        external_id="ext-42",
        passthrough='{"order": 1}',
        duration=123.45,
        filesize=4321,
    )
    p = provider(mux)
    (item,) = items_of(pages(p))
    playback = raw["playback_ids"][0]["id"]
    assert item.key == raw["id"]
    assert item.rel_path == f"{raw['id']}/highest.mp4"
    assert item.name == "highest.mp4"
    assert item.size == 4321 and isinstance(item.size, int)
    assert item.modified_at == datetime.fromtimestamp(int(raw["created_at"]), tz=UTC)
    assert item.content_type == "video/mp4"
    assert item.url == f"{mux.url}/{playback}/highest.mp4"
    assert p.blob_url(item) == item.url
    md = item.metadata
    assert md["status"] == "ready"
    assert md["duration"] == 123.45
    assert md["aspect_ratio"] == "16:9"
    assert md["resolution"] == "1080p" and md["max_resolution_tier"] == "1080p"
    assert md["passthrough"] == '{"order": 1}'
    assert md["meta"] == {"title": "Keynote 2025", "creator_id": "user-7", "external_id": "ext-42"}
    assert md["created_at"] == item.modified_at.isoformat()
    assert md["playback_ids"] == [{"id": playback, "policy": "public"}]
    assert md["video_quality"] == "plus"
    assert "tags" not in md  # mux-python's Asset has no tags: Mux does not send them
    assert md["rendition"]["name"] == "highest.mp4" and md["rendition"]["filesize"] == 4321
    assert p.enrich([item]) == [item]
    # open() streams the rendition bytes from the stream base URL.
    with p.open(item) as f:
        data = f.read()
    assert data == FakeMux.rendition_bytes(mux.asset(raw["id"]), "highest.mp4")
    assert len(data) == 4321
    mux.delete_asset(raw["id"])
    with pytest.raises(FileVanished):
        p.open(item)


def test_fingerprint_moves_with_relevant_fields_only(mux: FakeMux):
    ids = [mux.add_asset(title=f"t{i}", passthrough="p")["id"] for i in range(5)]
    p = provider(mux)

    def prints() -> dict[str, str]:
        return {i.key: i.fingerprint for i in items_of(pages(p))}

    base = prints()
    assert prints() == base  # stable across listings
    assert len(set(base.values())) == 5
    mux.update_asset(ids[0], meta={"title": "renamed"})
    mux.update_asset(ids[1], passthrough="q")
    mux.update_asset(ids[2], static="ready", filesize=9999)  # rendition re-generated
    mux.update_asset(ids[3], duration=99.0)
    after = prints()
    assert [after[a] != base[a] for a in ids] == [True, True, True, True, False]


def test_single_asset_source_path(mux: FakeMux):
    mux.add_assets(5)
    target = mux.add_asset(title="only me")["id"]
    preparing = mux.add_asset(status="preparing")["id"]
    p = provider(mux)
    (pg,) = pages(p, f"mux://{target}")
    assert [i.key for i in pg.items] == [target] and pg.next_position is None
    assert mux.count("/video/v1/assets/") == 1 and mux.count("/video/v1/assets?") == 0
    assert [r.path for r in mux.requests] == [f"/video/v1/assets/{target}"]
    (pg,) = pages(p, f"mux://{preparing}")
    assert pg.items == [] and [s.reason for s in pg.skipped] == ["status preparing"]
    with pytest.raises(ProviderError, match="Mux asset 'nope123' was not found") as e:
        pages(p, "mux://nope123")
    assert "connection 'src'" in str(e.value)
    with pytest.raises(ProviderError, match="not a Mux source"):
        pages(p, "s3-bucket/prefix")


# ---------------------------------------------------------------- throttling and failures


def test_429_waits_what_retry_after_asks(mux: FakeMux):
    mux.add_assets(12)
    p = provider(mux, page_size=5)
    it = p.list_pages("mux://", None, 1000)
    next(it)
    mux.rate_limit_next(1, retry_after=1, reset_in=1)  # the second page is throttled once
    rest = list(it)
    assert len(items_of(rest)) == 7
    gaps = list_gaps(mux)
    throttled = [gap for status, gap in gaps if status == 429]
    assert len(throttled) == 1
    assert 0.95 <= throttled[0] < 2.5  # honoured the header, not the 0.01 s backoff


def test_429_without_retry_after_uses_the_rate_limit_reset(mux: FakeMux):
    mux.add_assets(3)
    mux.rate_limit_next(1, retry_after=None, reset_in=1)
    assert len(items_of(pages(provider(mux)))) == 3
    (status, gap), *_ = list_gaps(mux)
    assert status == 429 and 0.9 <= gap < 3.0


def test_429_asking_beyond_the_budget_gives_up_at_once(mux: FakeMux):
    mux.add_assets(3)
    mux.rate_limit_next(1, retry_after=120)
    started = time.monotonic()
    with pytest.raises(TransientError, match="rate limited") as e:
        pages(provider(mux, max_retry_seconds=5.0))
    assert time.monotonic() - started < 1.0
    assert "asked to wait 120 s" in str(e.value) and "connection 'src'" in str(e.value)
    assert mux.count() == 1


def test_persistent_5xx_becomes_transient_error_within_budget(mux: FakeMux):
    mux.add_assets(3)
    mux.fail_next(503, times=100)
    started = time.monotonic()
    with pytest.raises(TransientError, match="HTTP 503") as e:
        pages(provider(mux, max_attempts=4))
    assert mux.count() == 4  # bounded by attempts
    assert "4 attempt(s)" in str(e.value)
    assert time.monotonic() - started < 2.0
    # Bounded by time too: many attempts allowed, but never past max_retry_seconds.
    mux.requests.clear()
    started = time.monotonic()
    with pytest.raises(TransientError):
        pages(
            provider(
                mux, max_attempts=100, max_retry_seconds=1.0, backoff_initial=0.2, backoff_max=1.0
            )
        )
    assert time.monotonic() - started <= 1.6
    assert 2 <= mux.count() < 10


def test_5xx_then_success_and_dropped_connections_are_retried(mux: FakeMux):
    mux.add_assets(25)
    p = provider(mux, page_size=10, max_attempts=6)
    mux.fail_next(500, times=2)
    mux.drop_next(2)
    it = p.list_pages("mux://", None, 1000)
    first = next(it)
    mux.drop_next(1)  # mid-listing, on the second page
    ids = listed_ids([first, *it])
    assert ids == mux.ordered_ids()
    assert mux.count(status=0) == 3 and mux.count(status=500) == 2


def test_stream_download_retries_and_vanishes(mux: FakeMux):
    asset = mux.add_asset()
    p = provider(mux)
    (item,) = items_of(pages(p))
    playback = asset["playback_ids"][0]["id"]
    mux.fail_next(502, times=1, match=f"/{playback}/")
    mux.drop_next(1, match=f"/{playback}/")
    with p.open(item) as f:
        assert f.read() == FakeMux.rendition_bytes(asset, "highest.mp4")
    mux.update_asset(asset["id"], static=None)  # renditions removed
    with pytest.raises(FileVanished, match="gone"):
        p.open(item)


def test_bad_credentials_fail_fast_naming_the_connection(mux: FakeMux):
    mux.add_assets(2)
    secret = "wrong-secret-Zq9"
    p = provider(mux, secret=secret)
    with pytest.raises(AuthError) as e:
        pages(p)
    msg = str(e.value)
    assert "connection 'src'" in msg and "HTTP 401" in msg
    assert "access_token_id" in msg and "access_token_secret" in msg and "permission" in msg
    assert secret not in msg and mux.token_id not in msg
    assert mux.count() == 1  # never retried
    with pytest.raises(AuthError):
        p.check(None)
    assert secret not in repr(p) and mux.token_secret not in repr(provider(mux))


def test_check_makes_one_authenticated_call(mux: FakeMux):
    p = provider(mux)
    assert "no assets yet" in p.check(None)
    mux.add_assets(3)
    newest = mux.ordered_ids()[0]
    assert newest in p.check(None) and "accepted the access token" in p.check(None)
    mux.requests.clear()
    assert "is ready" in p.check(f"mux://{newest}")
    assert mux.count() == 1
    preparing = mux.add_asset(status="preparing")["id"]
    assert "status preparing" in p.check(f"mux://{preparing}")
    with pytest.raises(ProviderError, match="not found"):
        p.check("mux://missing")


# ---------------------------------------------------------------- end to end (Dagster)


def test_e2e_sync_change_and_delete_assets(tmp_path, mux: FakeMux, state_url, instance):
    ready = [mux.add_asset(title=f"clip {i}")["id"] for i in range(12)]
    preparing = mux.add_asset(status="preparing")["id"]
    mux.add_asset(static=None)
    cfg = write_config(
        tmp_path / "syncs.yaml",
        state_url=state_url,
        connection=mux_conn_dict(mux, page_size=5),
        syncs=[{"name": "videos", "source_path": "mux://"}],
    )
    d = Driver(cfg, instance)
    assert d.run_pass("videos") == 1
    objs = {o["source_key"]: o for o in objects(state_url)}
    assert set(objs) == set(ready)
    one = objs[ready[0]]
    asset0 = mux.asset(ready[0])
    assert one["uri"] == f"{mux.url}/{asset0['playback_ids'][0]['id']}/highest.mp4"
    assert one["mime_type"] == "video/mp4"
    assert one["size_bytes"] == int(asset0["static_renditions"]["files"][0]["filesize"])
    assert one["metadata"]["mixsync"]["provider"] == "mux"
    row = StateStore(state_url).get_sync("videos")
    assert row["total_files_discovered"] == 12 and row["total_files_synced"] == 12
    # Unchanged: no run.
    assert d.run_pass("videos") == 0
    # A title edit and a re-generated rendition update their objects in place.
    mux.update_asset(ready[1], meta={"title": "renamed"})
    mux.update_asset(ready[2], static="ready", filesize=7777)
    assert d.run_pass("videos") == 1
    after = {o["source_key"]: o for o in objects(state_url)}
    assert len(after) == 12
    for key in ready[1:3]:
        assert after[key]["object_id"] == objs[key]["object_id"]
        assert (
            after[key]["metadata"]["mixsync"]["fingerprint"]
            != (objs[key]["metadata"]["mixsync"]["fingerprint"])
        )
    assert after[ready[2]]["size_bytes"] == 7777
    assert after[ready[3]]["updated_at"] == objs[ready[3]]["updated_at"]
    # A deleted asset: the pass completes, its object stays (reconcile_on_sync is off).
    mux.delete_asset(ready[4])
    mux.make_ready(preparing)  # and a finished upload arrives
    assert d.run_pass("videos") == 1
    final = {o["source_key"]: o for o in objects(state_url)}
    assert set(final) == {*ready, preparing}
    row = StateStore(state_url).get_sync("videos")
    assert row["status"] == "ACTIVE" and row["consecutive_failures"] == 0
    assert row["total_files_synced"] == 15
    # The access token never reaches what Dagster stores or shows.
    for record in instance.get_run_records():
        run = record.dagster_run
        blob = repr(run.run_config) + repr(run.tags)
        blob += "".join(repr(e) for e in instance.all_logs(run.run_id))
        assert mux.token_secret not in blob
    assert mux.token_secret not in (d.cursors["videos"] or "")


def test_e2e_resume_after_interruption_mid_listing(tmp_path, mux: FakeMux, sqlite_url, instance):
    mux.add_assets(3, status="preparing")  # the oldest: on the last page
    mux.add_assets(25)
    cfg = write_config(
        tmp_path / "syncs.yaml",
        state_url=sqlite_url,
        connection=mux_conn_dict(mux),
        syncs=[{"name": "m", "source_path": "mux://", "max_objects_per_run": 10}],
    )
    d = Driver(cfg, instance)
    reqs, _ = d.tick("m")
    assert len(reqs) == 1
    d.execute("m", reqs[0])
    assert len(objects(sqlite_url)) == 10
    late = mux.add_asset(title="uploaded mid-pass")["id"]
    # The second chunk's run request is lost (the daemon died before launching it).
    reqs, _ = d.tick("m")
    assert len(reqs) == 1
    # A restarted deployment continues the listing from the stored Mux cursor.
    d2 = Driver(cfg, instance)
    assert d2.run_pass("m") == 2  # 15 assets left, at most 10 a run
    keys = [o["source_key"] for o in objects(sqlite_url)]
    assert len(keys) == 25 and late not in keys  # the late asset comes with the next pass
    d2.run_pass("m")
    objs = objects(sqlite_url)
    keys = [o["source_key"] for o in objs]
    assert len(keys) == len(set(keys)) == 26
    ready_ids = {a for a in mux.ordered_ids() if mux.asset(a)["status"] == "ready"}
    assert set(keys) == ready_ids
    assert StateStore(sqlite_url).get_sync("m")["total_files_discovered"] == 26


def test_e2e_metadata_filter_and_mapping(tmp_path, mux: FakeMux, sqlite_url, instance):
    keynotes = [mux.add_asset(title=f"Keynote {y}", creator_id="cto")["id"] for y in (2024, 2025)]
    mux.add_asset(title="Cat video")
    mux.add_asset()  # no title: a missing field fails `contains`
    cfg = write_config(
        tmp_path / "syncs.yaml",
        state_url=sqlite_url,
        connection=mux_conn_dict(mux),
        syncs=[
            {
                "name": "talks",
                "source_path": "mux://",
                "file_filters": {
                    "include_patterns": ["*.mp4"],
                    "metadata_filters": [
                        {"field": "meta.title", "operator": "contains", "value": "Keynote"},
                        {"field": "duration", "operator": "gt", "value": 1},
                    ],
                },
                "schema_mapping": {
                    "field_mappings": {
                        "title": {"source": "metadata.meta.title"},
                        "creator": {"source": "metadata.meta.creator_id"},
                    }
                },
            }
        ],
    )
    d = Driver(cfg, instance)
    d.run_pass("talks")
    objs = {o["source_key"]: o for o in objects(sqlite_url)}
    assert set(objs) == set(keynotes)
    assert objs[keynotes[1]]["fields"]["title"] == "Keynote 2025"
    assert objs[keynotes[0]]["fields"]["creator"] == "cto"
    store = StateStore(sqlite_url)
    assert store.tracked_counts(store.sync_id("talks")).get("excluded") == 2


def test_preview_and_check_show_skipped_assets_with_reasons(
    tmp_path, mux: FakeMux, sqlite_url, monkeypatch
):
    ready = mux.add_asset(title="ok")["id"]
    preparing = mux.add_asset(status="preparing")["id"]
    no_static = mux.add_asset(static=None)["id"]
    monkeypatch.setenv("MUX_TEST_SECRET", mux.token_secret)
    conn = mux_conn_dict(mux) | {"access_token_secret": {"env": "MUX_TEST_SECRET"}}
    cfg_path = write_config(
        tmp_path / "syncs.yaml",
        state_url=sqlite_url,
        connection=conn,
        syncs=[{"name": "v", "source_path": "mux://"}],
    )
    rt = open_runtime(load_config(cfg_path), "v")
    totals = PreviewTotals()
    rows = {r.key: r for r in preview(rt, totals)}
    assert rows[ready].verdict == "would_sync" and rows[ready].action == "new"
    assert rows[ready].rel_path == f"{ready}/highest.mp4"
    assert rows[preparing].verdict == "skipped" and rows[preparing].reason == "status preparing"
    assert rows[no_static].verdict == "skipped" and rows[no_static].reason == NO_RENDITION
    assert totals.as_dict()["skipped"] == 2 and totals.as_dict()["would_sync"] == 1
    # `mixsync check`: one authenticated call per source path, secrets never echoed.
    from mixsync_dagster.cli import main

    res = CliRunner().invoke(main, ["-c", str(cfg_path), "check", "src"])
    assert res.exit_code == 0, res.output
    assert "accepted the access token" in res.output
    monkeypatch.setenv("MUX_TEST_SECRET", "not-the-secret-Xy")
    res = CliRunner().invoke(main, ["-c", str(cfg_path), "check", "src"])
    assert res.exit_code == 1
    assert "connection 'src'" in res.output and "not-the-secret-Xy" not in res.output


def test_the_fake_serves_only_what_mux_python_parses(mux: FakeMux):
    """The fake's contract is mux-python: a rendition resolution Mux does not send, or a key
    its models do not know, is refused; what the fake serves parses with the SDK."""
    import httpx
    from mux_python.api_client import ApiClient

    asset = mux.add_asset()
    files = asset["static_renditions"]["files"]
    assert {f["name"]: f["resolution"] for f in files} == {
        "highest.mp4": "highest",
        "audio.m4a": "audio-only",
    }
    bad_files = [{**f, "resolution": "audio"} for f in files]  # what the fake used to send
    with pytest.raises(ValueError, match="resolution"):
        mux.update_asset(asset["id"], static_renditions={"files": bad_files})
    with pytest.raises(AssertionError, match="Mux sends no 'tags'"):
        mux.update_asset(asset["id"], tags=["launch"])
    mux.delete_asset(asset["id"])
    mux.add_assets(3)
    mux.add_asset(static="legacy")
    body = httpx.get(
        f"{mux.url}/video/v1/assets", auth=(mux.token_id, mux.token_secret), params={"limit": 10}
    ).json()
    parsed = ApiClient()._ApiClient__deserialize(body, "ListAssetsResponse")
    assert len(parsed.data) == 4 and parsed.data[0].static_renditions.files
