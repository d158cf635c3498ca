"""LocalProvider against real temp folders: names, hidden entries, symlinks, paging, resuming."""

from __future__ import annotations

import os
from datetime import UTC
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from mixsync_dagster.core.records import FileItem, Page, Skipped
from mixsync_dagster.errors import FileVanished, ProviderError
from mixsync_dagster.providers.local import LocalProvider


def touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def pages(
    provider: LocalProvider,
    source_path: str = "",
    position: str | None = None,
    page_size: int = 1000,
) -> list[Page]:
    return list(provider.list_pages(source_path, position, page_size))


def items(provider: LocalProvider, source_path: str = "", **kw: object) -> list[FileItem]:
    return [i for p in pages(provider, source_path, **kw) for i in p.items]  # type: ignore[arg-type]


def skipped(provider: LocalProvider, source_path: str = "", **kw: object) -> list[Skipped]:
    return [s for p in pages(provider, source_path, **kw) for s in p.skipped]  # type: ignore[arg-type]


def keys(provider: LocalProvider, source_path: str = "", **kw: object) -> list[str]:
    return [i.key for i in items(provider, source_path, **kw)]


def all_keys(provider: LocalProvider, source_path: str = "", **kw: object) -> list[str]:
    """Every entry key in listing order, items and skipped entries interleaved."""
    out: list[str] = []
    for p in pages(provider, source_path, **kw):  # type: ignore[arg-type]
        merged = [*(i.key for i in p.items), *(s.key for s in p.skipped)]
        out.extend(sorted(merged, key=component_key))
    return out


def component_key(key: str) -> tuple[str, ...]:
    return tuple(key.split("/"))


def url_path(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file"
    return Path(unquote(parsed.path))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


# ---------------------------------------------------------------- names and folders


def test_unicode_names(root: Path) -> None:
    name = "vidéo 日本.mp4"
    touch(root / "dossier été" / "日本語" / name, b"unicode bytes")
    provider = LocalProvider(root)
    [item] = items(provider)
    assert item.key == f"dossier été/日本語/{name}"
    assert item.rel_path == item.key
    assert item.name == name
    assert item.size == len(b"unicode bytes")
    assert item.content_type == "video/mp4"
    assert url_path(item.url or "") == root.resolve() / item.key
    with provider.open(item) as fh:
        assert fh.read() == b"unicode bytes"


def test_spaces_in_names_and_folders(root: Path) -> None:
    touch(root / "my folder" / "sub folder" / "a file with spaces.txt", b"hello")
    touch(root / " leading space.txt")
    touch(root / "trailing space .txt")
    provider = LocalProvider(root)
    got = items(provider)
    assert sorted(i.key for i in got) == sorted(
        [" leading space.txt", "my folder/sub folder/a file with spaces.txt", "trailing space .txt"]
    )
    for item in got:
        assert " " not in (item.url or ""), "spaces must be percent-encoded in the URI"
        assert url_path(item.url or "") == root.resolve() / item.key
        with provider.open(item) as fh:
            assert fh.read() == (root / item.key).read_bytes()


def test_nested_folders(root: Path) -> None:
    touch(root / "a" / "b" / "c" / "d" / "deep.txt")
    touch(root / "a" / "b" / "c" / "mid.txt")
    touch(root / "a" / "top.txt")
    touch(root / "z.txt")
    provider = LocalProvider(root)
    assert keys(provider) == ["a/b/c/d/deep.txt", "a/b/c/mid.txt", "a/top.txt", "z.txt"]
    assert keys(provider, "a/b") == ["a/b/c/d/deep.txt", "a/b/c/mid.txt"]
    assert [i.rel_path for i in items(provider, "a/b")] == ["c/d/deep.txt", "c/mid.txt"]


def test_empty_files_are_listed(root: Path) -> None:
    touch(root / "empty.bin", b"")
    touch(root / "nested" / "empty.txt", b"")
    provider = LocalProvider(root)
    got = items(provider)
    assert [(i.key, i.size) for i in got] == [("empty.bin", 0), ("nested/empty.txt", 0)]
    with provider.open(got[0]) as fh:
        assert fh.read() == b""


def test_empty_source_folder_is_one_empty_last_page(root: Path) -> None:
    (root / "empty").mkdir()
    assert pages(LocalProvider(root), "empty") == [Page([], [], None)]


# ---------------------------------------------------------------- hidden entries


def _hidden_tree(root: Path) -> None:
    touch(root / "visible.txt")
    touch(root / ".hidden.txt")
    touch(root / ".git" / "config")
    touch(root / "sub" / ".DS_Store")
    touch(root / "sub" / "shown.txt")
    touch(root / "sub" / ".cache" / "deep" / "blob.bin")


def test_hidden_files_and_folders_skipped_by_default(root: Path) -> None:
    _hidden_tree(root)
    provider = LocalProvider(root)
    assert keys(provider) == ["sub/shown.txt", "visible.txt"]
    assert provider.include_hidden is False


def test_hidden_listed_with_include_hidden(root: Path) -> None:
    _hidden_tree(root)
    provider = LocalProvider(root, include_hidden=True)
    assert sorted(keys(provider)) == sorted(
        [
            ".git/config",
            ".hidden.txt",
            "sub/.DS_Store",
            "sub/.cache/deep/blob.bin",
            "sub/shown.txt",
            "visible.txt",
        ]
    )


# ---------------------------------------------------------------- symlinks


def test_symlink_outside_root_is_refused(tmp_path: Path, root: Path) -> None:
    outside = touch(tmp_path / "outside" / "secret.txt", b"not yours")
    (root / "leak.txt").symlink_to(outside)
    (root / "leakdir").symlink_to(outside.parent, target_is_directory=True)
    touch(root / "ok.txt")
    provider = LocalProvider(root)
    assert keys(provider) == ["ok.txt"]
    refused = {s.key: s.reason for s in skipped(provider)}
    assert set(refused) == {"leak.txt", "leakdir"}
    for reason in refused.values():
        assert "outside" in reason


def test_relative_symlink_escaping_root_is_refused(tmp_path: Path, root: Path) -> None:
    touch(tmp_path / "sibling.txt")
    (root / "sub").mkdir()
    (root / "sub" / "up.txt").symlink_to(Path("..") / ".." / "sibling.txt")
    provider = LocalProvider(root)
    assert keys(provider) == []
    [s] = skipped(provider)
    assert s.key == "sub/up.txt" and "outside" in s.reason


def test_symlink_to_file_inside_root_is_listed(root: Path) -> None:
    target = touch(root / "real" / "data.txt", b"twelve bytes")
    (root / "alias.txt").symlink_to(target)
    provider = LocalProvider(root)
    got = {i.key: i for i in items(provider)}
    assert set(got) == {"alias.txt", "real/data.txt"}
    alias = got["alias.txt"]
    assert alias.size == len(b"twelve bytes")
    assert alias.content_type == "text/plain"
    with provider.open(alias) as fh:
        assert fh.read() == b"twelve bytes"
    assert skipped(provider) == []


def test_symlinked_folder_is_skipped_with_reason(root: Path) -> None:
    touch(root / "real" / "a.txt")
    (root / "linked").symlink_to(root / "real", target_is_directory=True)
    (root / "real" / "loop").symlink_to(root, target_is_directory=True)
    provider = LocalProvider(root)
    assert keys(provider) == ["real/a.txt"]
    reasons = {s.key: s.reason for s in skipped(provider)}
    assert set(reasons) == {"linked", "real/loop"}
    assert all("folder" in r for r in reasons.values())


def test_symlink_loop_is_skipped_not_fatal(root: Path) -> None:
    touch(root / "a.txt")
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    touch(root / "z.txt")
    provider = LocalProvider(root)
    listed = pages(provider)  # must not raise: one bad entry is not a failed listing
    assert [i.key for p in listed for i in p.items] == ["a.txt", "z.txt"]
    assert {s.key for p in listed for s in p.skipped} == {"loop1", "loop2"}


def test_broken_symlink_is_never_an_item_and_says_why(root: Path) -> None:
    (root / "dangling.txt").symlink_to(root / "gone.txt")
    touch(root / "ok.txt")
    assert keys(LocalProvider(root)) == ["ok.txt"]
    assert [(s.key, "broken" in s.reason) for s in skipped(LocalProvider(root))] == [
        ("dangling.txt", True)
    ]


def test_fifo_is_skipped_as_not_regular(root: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(root / "pipe")
    touch(root / "ok.txt")
    provider = LocalProvider(root)
    assert keys(provider) == ["ok.txt"]
    [s] = skipped(provider)
    assert s.key == "pipe" and "regular" in s.reason


# ---------------------------------------------------------------- errors


def test_file_removed_between_listing_and_open(root: Path) -> None:
    path = touch(root / "soon gone.txt")
    provider = LocalProvider(root)
    [item] = items(provider)
    path.unlink()
    with pytest.raises(FileVanished) as info:
        provider.open(item)
    assert isinstance(info.value, ProviderError)
    assert item.key in str(info.value)


def test_file_replaced_by_folder_before_open(root: Path) -> None:
    path = touch(root / "thing")
    provider = LocalProvider(root)
    [item] = items(provider)
    path.unlink()
    path.mkdir()
    with pytest.raises(FileVanished):
        provider.open(item)


def test_missing_source_folder(root: Path) -> None:
    provider = LocalProvider(root)
    with pytest.raises(ProviderError, match="does not exist"):
        pages(provider, "no/such/folder")


def test_source_path_that_is_a_file(root: Path) -> None:
    touch(root / "file.txt")
    with pytest.raises(ProviderError):
        pages(LocalProvider(root), "file.txt")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ProviderError):
        pages(LocalProvider(tmp_path / "nope"))


def test_source_path_escaping_root(root: Path) -> None:
    with pytest.raises(ProviderError, match="leaves"):
        pages(LocalProvider(root), "../")


def test_position_outside_source_path(root: Path) -> None:
    touch(root / "inbox" / "a.txt")
    touch(root / "other" / "b.txt")
    with pytest.raises(ProviderError):
        pages(LocalProvider(root), "inbox", position="other/b.txt")


# ---------------------------------------------------------------- paging and resuming


def test_paging_2500_files(root: Path) -> None:
    for i in range(2500):
        sub = f"d{i % 7}"
        touch(root / sub / f"f{i:05d}.txt", b"")
    provider = LocalProvider(root)
    listed = pages(provider, page_size=1000)
    assert [len(p.items) for p in listed] == [1000, 1000, 500]
    assert [p.skipped for p in listed] == [[], [], []]
    assert listed[0].next_position is not None
    assert listed[1].next_position is not None
    assert listed[-1].next_position is None
    for p in listed[:-1]:
        assert p.next_position == p.items[-1].key

    full = [i.key for p in listed for i in p.items]
    assert len(full) == len(set(full)) == 2500
    assert full == sorted(full, key=component_key)

    for n, p in enumerate(listed[:-1]):
        rest = keys(provider, position=p.next_position, page_size=1000)
        assert rest == full[(n + 1) * 1000 :]


def test_exact_multiple_of_page_size_ends_with_an_empty_last_page(root: Path) -> None:
    for i in range(6):
        touch(root / f"{i}.txt")
    listed = pages(LocalProvider(root), page_size=3)
    assert [len(p.items) for p in listed][:2] == [3, 3]
    assert sum(len(p.items) for p in listed) == 6
    assert listed[-1].next_position is None
    assert all(p.next_position is not None for p in listed[:-1])


def _tricky_tree(root: Path, tmp_path: Path) -> None:
    """Names whose string order differs from component order ('a b' < 'a/…' < 'a.txt')."""
    for rel in [
        "a/b/c/1.txt",
        "a/b/c/2.txt",
        "a/b/d.txt",
        "a/b.txt",
        "a b/x.txt",
        "a b.txt",
        "a-/y.txt",
        "a.txt",
        "aa/z.txt",
        "B/upper.txt",
        "é/accent.txt",
        "日本/file.txt",
        "space dir/sub dir/leaf.mp4",
        "zz/kept.txt",
        ".hidden/never.txt",
    ]:
        touch(root / rel)
    (root / "empty_dir").mkdir()
    (root / "zz" / "empty").mkdir()
    (root / "a" / "link_in.txt").symlink_to(root / "a.txt")
    touch(tmp_path / "elsewhere.txt")
    (root / "a" / "link_out.txt").symlink_to(tmp_path / "elsewhere.txt")
    (root / "m_dirlink").symlink_to(root / "aa", target_is_directory=True)


def test_resume_from_every_position(root: Path, tmp_path: Path) -> None:
    _tricky_tree(root, tmp_path)
    provider = LocalProvider(root)
    full = all_keys(provider)
    assert len(full) == len(set(full))
    assert full == sorted(full, key=component_key)
    assert "a/link_out.txt" in full and "m_dirlink" in full  # skipped entries are positions too
    assert not any(k.startswith(".hidden") for k in full)

    for idx, k in enumerate(full):
        assert all_keys(provider, position=k) == full[idx + 1 :], f"resume after {k!r}"
        # and resuming page by page with a tiny page size loses nothing and repeats nothing
        got: list[str] = []
        pos: str | None = k
        while True:
            [first, *_] = pages(provider, position=pos, page_size=2)
            got += sorted(
                [*(i.key for i in first.items), *(s.key for s in first.skipped)],
                key=component_key,
            )
            if first.next_position is None:
                break
            pos = first.next_position
        assert got == full[idx + 1 :], f"chained pages after {k!r}"


def test_resume_with_a_source_path(root: Path, tmp_path: Path) -> None:
    _tricky_tree(root, tmp_path)
    provider = LocalProvider(root)
    full = all_keys(provider, "a")
    assert full[0].startswith("a/") and all(k.startswith("a/") for k in full)
    for idx, k in enumerate(full):
        assert all_keys(provider, "a", position=k) == full[idx + 1 :]


def test_resume_from_a_key_that_no_longer_exists(root: Path) -> None:
    for rel in ["a/1.txt", "b/1.txt", "b/2.txt", "b/3.txt", "c/1.txt"]:
        touch(root / rel)
    provider = LocalProvider(root)
    (root / "b" / "2.txt").unlink()
    assert keys(provider, position="b/2.txt") == ["b/3.txt", "c/1.txt"]
    (root / "b" / "3.txt").unlink()
    (root / "b" / "1.txt").unlink()
    (root / "b").rmdir()
    assert keys(provider, position="b/2.txt") == ["c/1.txt"]


def test_resume_after_last_key_is_empty(root: Path) -> None:
    touch(root / "only.txt")
    assert pages(LocalProvider(root), position="only.txt") == [Page([], [], None)]


def test_order_is_stable(root: Path, tmp_path: Path) -> None:
    _tricky_tree(root, tmp_path)
    provider = LocalProvider(root)
    first = all_keys(provider)
    assert all_keys(provider) == first
    assert all_keys(LocalProvider(root), page_size=3) == first
    assert first == sorted(first, key=component_key)


# ---------------------------------------------------------------- item fields


@pytest.mark.parametrize("source_path", ["inbox", "inbox/", "/inbox", "./inbox", "inbox/../inbox"])
def test_rel_path_is_relative_to_source_key_to_root(root: Path, source_path: str) -> None:
    touch(root / "inbox" / "sub" / "clip.mp4")
    touch(root / "inbox" / "top.txt")
    touch(root / "other" / "no.txt")
    got = items(LocalProvider(root), source_path)
    assert [(i.key, i.rel_path) for i in got] == [
        ("inbox/sub/clip.mp4", "sub/clip.mp4"),
        ("inbox/top.txt", "top.txt"),
    ]
    assert [i.name for i in got] == ["clip.mp4", "top.txt"]


def test_root_source_path_keys_equal_rel_paths(root: Path) -> None:
    touch(root / "x" / "y.txt")
    for sp in ["", "/", "."]:
        [item] = items(LocalProvider(root), sp)
        assert item.key == item.rel_path == "x/y.txt"


def test_fingerprint_changes_with_content_and_mtime(root: Path) -> None:
    path = touch(root / "f.txt", b"one")
    provider = LocalProvider(root)
    [a] = items(provider)
    [again] = items(provider)
    assert again.fingerprint == a.fingerprint

    st = path.stat()
    path.write_bytes(b"three")  # different size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime
    [b] = items(provider)
    assert b.fingerprint != a.fingerprint
    assert b.size == 5

    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same size, new mtime
    [c] = items(provider)
    assert c.size == b.size
    assert c.fingerprint != b.fingerprint
    assert c.modified_at > b.modified_at


def test_modified_at_is_utc(root: Path) -> None:
    path = touch(root / "f.txt")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    [item] = items(LocalProvider(root))
    assert item.modified_at.tzinfo is not None
    assert item.modified_at.utcoffset() == UTC.utcoffset(None)
    assert item.modified_at.timestamp() == 1_700_000_000


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("clip.mp4", "video/mp4"),
        ("CLIP.MP4", "video/mp4"),
        ("movie.mov", "video/quicktime"),
        ("photo.jpg", "image/jpeg"),
        ("photo.JPEG", "image/jpeg"),
        ("logo.svg", "image/svg+xml"),
        ("data.json", "application/json"),
        ("notes.txt", "text/plain"),
        ("report.pdf", "application/pdf"),
        ("vidéo 日本.mp4", "video/mp4"),
        ("archive.unknownext", None),
        ("Makefile", None),
    ],
)
def test_content_type_from_extension(root: Path, name: str, expected: str | None) -> None:
    touch(root / name)
    [item] = items(LocalProvider(root))
    assert item.content_type == expected


def test_url_is_a_file_uri(root: Path) -> None:
    touch(root / "dir with space" / "naïve #1 %.txt", b"q")
    [item] = items(LocalProvider(root))
    assert item.url is not None
    assert item.url.startswith("file:///")
    assert " " not in item.url and "#" not in item.url
    assert url_path(item.url) == root.resolve() / item.key
    assert url_path(item.url).read_bytes() == b"q"


def test_root_given_through_a_symlink_is_resolved(tmp_path: Path, root: Path) -> None:
    touch(root / "a.txt")
    via = tmp_path / "via"
    via.symlink_to(root, target_is_directory=True)
    provider = LocalProvider(via)
    [item] = items(provider)
    assert item.key == "a.txt"
    assert skipped(provider) == []
    assert url_path(item.url or "") == root.resolve() / "a.txt"
