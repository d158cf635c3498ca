"""reconcile_on_sync: after a complete pass, objects of gone or no-longer-matching files go."""

from __future__ import annotations

from mixsync_dagster.core.preview import PreviewTotals, preview
from mixsync_dagster.state import StateStore
from tests.harness import Driver, objects, tracked_rows, write_config


def files(root, names):
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(n)


def keys(url):
    return sorted(o["source_key"] for o in objects(url))


def tracked(url, key):
    return tracked_rows(url, "s1").get(key)


def make(tmp_path, src, url, instance, **sync):
    cfg = write_config(
        tmp_path / "syncs.yaml",
        root=src,
        state_url=url,
        syncs=[{"name": "s1", "reconcile_on_sync": True, "max_deletes_per_pass": "50%", **sync}],
    )
    return cfg, Driver(cfg, instance)


def test_deleted_file_deletes_its_object(tmp_path, src, state_url, instance):
    files(src, ["a.txt", "b.txt", "c.txt", "d.txt"])
    _, d = make(tmp_path, src, state_url, instance)
    d.run_pass("s1")
    assert keys(state_url) == ["a.txt", "b.txt", "c.txt", "d.txt"]
    (src / "b.txt").unlink()
    assert d.run_pass("s1") == 1  # one reconcile run, nothing new to sync
    assert keys(state_url) == ["a.txt", "c.txt", "d.txt"]
    assert tracked(state_url, "b.txt") is None
    run = d.runs[-1]
    mats = run.asset_materializations_for_node("finish_pass")
    assert mats[0].metadata["run_objects_deleted"].value == 1


def test_filter_drift_deletes_objects_that_no_longer_match(tmp_path, src, state_url, instance):
    files(src, ["a.mp4", "b.mp4", "c.txt", "d.mp4"])
    cfg, d = make(tmp_path, src, state_url, instance)
    d.run_pass("s1")
    assert len(objects(state_url)) == 4
    write_config(
        cfg,
        root=src,
        state_url=state_url,
        syncs=[
            {
                "name": "s1",
                "reconcile_on_sync": True,
                "max_deletes_per_pass": "50%",
                "file_filters": {"extensions": [".mp4"]},
            }
        ],
    )
    d.reload()
    d.run_pass("s1")
    assert keys(state_url) == ["a.mp4", "b.mp4", "d.mp4"]
    row = tracked(state_url, "c.txt")
    assert row["status"] == "excluded" and row["object_id"] is None  # still known, no object


def test_incomplete_pass_deletes_nothing(tmp_path, src, state_url, instance):
    files(src, ["a.txt", "b.txt", "c.txt"])
    _, d = make(tmp_path, src, state_url, instance)
    d.run_pass("s1")
    (src / "a.txt").unlink()
    files(src, ["new.txt"])
    d.make_due("s1")
    lost, _ = d.tick("s1")
    assert len(lost) == 1  # the run for new.txt is lost (never executed)
    # The pass is not over: the next tick asks again instead of closing (or reconciling) it.
    again, _ = d.tick("s1")
    assert len(again) == 1 and d.pass_row("s1").is_open
    assert keys(state_url) == ["a.txt", "b.txt", "c.txt"]
    d.execute("s1", again[0])  # lists to the end, then reconciles
    assert keys(state_url) == ["b.txt", "c.txt", "new.txt"]


def test_listing_error_deletes_nothing(tmp_path, state_url, instance):
    src = tmp_path / "src"
    files(src / "in", ["a.txt", "b.txt"])
    _, d = make(tmp_path, src, state_url, instance, source_path="in")
    d.run_pass("s1")
    (src / "in" / "a.txt").rename(tmp_path / "a.txt")
    (src / "in").rename(tmp_path / "in-moved")  # the whole source is unreachable
    d.make_due("s1")
    for _ in range(2):
        try:
            d.tick("s1")
        except Exception as e:  # the tick fails; nothing moves
            assert "does not exist" in str(e)
        d.make_due("s1")
    assert keys(state_url) == ["in/a.txt", "in/b.txt"]


def test_deletion_cap_fails_loudly_and_deletes_nothing(tmp_path, src, state_url, instance):
    files(src, [f"f{i}.txt" for i in range(10)])
    _, d = make(tmp_path, src, state_url, instance, max_deletes_per_pass="10%")
    d.run_pass("s1")
    for i in range(5):
        (src / f"f{i}.txt").unlink()
    d.make_due("s1")
    failed = None
    for _ in range(5):
        reqs, _ = d.tick("s1")
        for r in reqs:
            result = d.execute("s1", r, raise_on_error=False)
            if not result.success:
                failed = result
        if failed:
            break
    assert failed is not None
    assert len(objects(state_url)) == 10  # nothing deleted
    err = StateStore(state_url).get_sync("s1")["last_error"]
    assert "reconcile would delete 5 of 10" in err and "max_deletes_per_pass" in err
    # An absolute cap that allows it: the next pass deletes them.
    _, d2 = make(tmp_path, src, state_url, instance, max_deletes_per_pass=5)
    d2.run_pass("s1")
    assert keys(state_url) == [f"f{i}.txt" for i in range(5, 10)]


def test_cli_sync_reconciles_too(tmp_path, src, state_url, instance, monkeypatch):
    from click.testing import CliRunner

    from mixsync_dagster.cli import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    files(src, ["a.txt", "b.txt"])
    cfg, _ = make(tmp_path, src, state_url, instance)
    runner = CliRunner()
    assert runner.invoke(main, ["-c", str(cfg), "sync", "s1"]).exit_code == 0
    (src / "a.txt").unlink()
    out = runner.invoke(main, ["-c", str(cfg), "sync", "s1"])
    assert out.exit_code == 0 and "deleted 1" in out.output
    assert keys(state_url) == ["b.txt"]


def test_v082_reconcile_block_deletes_only_what_it_names(tmp_path, src, state_url, instance):
    """`reconcile: {on_delete: true, on_filter_drift: false}`: a gone file's object goes, the
    object of a file the filters now exclude stays; then the reverse."""
    files(src, ["a.mp4", "b.mp4", "c.txt", "d.mp4"])
    only_deletes = {"on_delete": True, "on_filter_drift": False}
    cfg, d = make(tmp_path, src, state_url, instance, reconcile_on_sync=None)

    def configure(reconcile, **more):
        sync = {"name": "s1", "reconcile": reconcile, "max_deletes_per_pass": "50%", **more}
        write_config(cfg, root=src, state_url=state_url, syncs=[sync])
        d.reload()

    configure(only_deletes)
    d.run_pass("s1")
    (src / "b.mp4").unlink()
    configure(only_deletes, file_filters={"extensions": [".mp4"]})
    d.run_pass("s1")
    assert keys(state_url) == ["a.mp4", "c.txt", "d.mp4"]  # c.txt no longer matches: kept
    configure({"on_delete": False, "on_filter_drift": True}, file_filters={"extensions": [".mp4"]})
    (src / "d.mp4").unlink()
    d.run_pass("s1")
    assert keys(state_url) == ["a.mp4", "d.mp4"]  # drift deleted c.txt's; d.mp4's kept


def test_on_update_false_keeps_a_changed_files_object_and_sees_the_change_once(
    tmp_path, src, state_url, instance
):
    """`reconcile: {on_update: false}`: a changed file's object stays as it was (same id, same
    bytes), the new version is recorded once, and the filters still judge it (drift)."""
    files(src, ["a.txt", "b.txt", "c.txt"])
    cfg, d = make(tmp_path, src, state_url, instance, reconcile_on_sync=None)
    sync = {
        "name": "s1",
        "reconcile": {"on_update": False},
        "max_deletes_per_pass": "50%",
        "file_filters": {"max_size_bytes": 100},
    }
    write_config(cfg, root=src, state_url=state_url, syncs=[sync])
    d.reload()
    d.run_pass("s1")
    before = {o["source_key"]: o for o in objects(state_url)}
    fp_before = tracked(state_url, "a.txt")["fp"]
    (src / "a.txt").write_text("a, edited")  # still matches
    (src / "b.txt").write_text("b" * 500)  # now too big: filter drift
    totals = PreviewTotals()
    shown = {r.rel_path: r for r in preview(d.defs.resources["mixsync"].runtime("s1"), totals)}
    assert shown["a.txt"].verdict == "kept" and "on_update is false" in (
        shown["a.txt"].reason or ""
    )
    assert shown["b.txt"].verdict == "excluded" and shown["c.txt"].verdict == "unchanged"
    assert totals.as_dict()["kept"] == 1
    assert d.run_pass("s1") == 1
    after = {o["source_key"]: o for o in objects(state_url)}
    assert sorted(after) == ["a.txt", "c.txt"]  # b.txt's object went with the drift
    assert after["a.txt"]["object_id"] == before["a.txt"]["object_id"]
    assert after["a.txt"]["sha256"] == before["a.txt"]["sha256"]  # the old bytes, untouched
    row = tracked(state_url, "a.txt")
    assert row["status"] == "synced" and row["object_id"] == before["a.txt"]["object_id"]
    assert row["fp"] != fp_before  # the change is recorded: later passes leave it alone
    log = "\n".join(e.user_message for e in instance.all_logs(d.runs[-1].run_id) if e.user_message)
    assert "1 changed file(s) kept their objects (on_update: false)" in log
    assert tracked(state_url, "b.txt")["status"] == "excluded"
    assert d.run_pass("s1") == 0  # nothing left to do
    # With on_update back on (the default), the next change reaches the object (the local
    # bucket keeps one object per file and rewrites it in place).
    sync["reconcile"] = {}
    write_config(cfg, root=src, state_url=state_url, syncs=[sync])
    d.reload()
    (src / "a.txt").write_text("a, edited again")
    d.run_pass("s1")
    again = {o["source_key"]: o for o in objects(state_url)}
    assert again["a.txt"]["sha256"] != before["a.txt"]["sha256"]
    assert again["a.txt"]["fingerprint"] != before["a.txt"]["fingerprint"]
