"""Hostile local trees: every entry is listed, skipped with a reason, or refused at open time
with a reason; nothing outside the root is read, nothing blocks, nothing crashes.

One table. Each case builds entries next to a plain `good.txt` and may *swap* one listed file
for something else between the listing and the read (the window a hostile user aims for). The
swapped file is then read twice, by the provider's `open` and through the real local bucket
(`object_spec` → `LocalBucketTarget.put_objects`, what a run does): the outcome must be the
expected bytes, a vanished file, or a failure naming the reason, and the bucket must never hold
the bytes of the file outside the root.

A journey at the end runs `mixsync preview` and `mixsync sync` (subprocesses, real Dagster
instance) over one tree holding every hostile entry at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mixsync_dagster.config import load_config
from mixsync_dagster.core.judge import object_spec
from mixsync_dagster.core.mapping import Mapped
from mixsync_dagster.core.runtime import open_runtime
from mixsync_dagster.errors import FileVanished
from mixsync_dagster.providers import openat2
from mixsync_dagster.providers.local import MAX_FOLDER_DEPTH, LocalProvider, RefusedFile
from tests.harness import objects, write_config

OUTSIDE_BYTES = b"the bytes of a file outside the root"
INSIDE_BYTES = b"listed content"
BIN = Path(sys.executable).parent / "mixsync"
REPO = Path(__file__).resolve().parents[1]

Build = Callable[[Path, Path], None]
"""(root, outside folder) → None"""


def write(path: Path, data: bytes = INSIDE_BYTES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def raw_name(root: Path, name: bytes, data: bytes = b"x") -> None:
    """A file whose name is the given bytes (not necessarily UTF-8)."""
    fd = os.open(os.fsencode(root) + b"/" + name, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, data)
    os.close(fd)


def replace_with(path: Path, make: Callable[[Path], object]) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    make(path)


def fifo(path: Path) -> None:
    os.mkfifo(path)


def device(path: Path) -> None:
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is


def unix_socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()


def can_mknod() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class Case:
    id: str
    build: Build = lambda root, outside: None
    skipped: dict[str, str] = field(default_factory=dict)
    """Key → a word of the reason the listing gives."""
    swap: Callable[[Path, Path], None] | None = None
    """Applied after the listing to `a.txt` (or what `key` names)."""
    key: str = "a.txt"
    reads: bytes | None = None
    """Expected bytes of the swapped file; else `refused` or `vanished` applies."""
    refused: str | None = None
    """A word of the reason the read is refused with."""
    vanished: bool = False
    needs_root: bool = False


CASES = [
    # ---- at listing time
    Case(
        "non_utf8_name",
        build=lambda root, outside: raw_name(root, b"caf\xe9.txt"),
        skipped={"caf\\xe9.txt": "not valid UTF-8"},
    ),
    Case(
        "non_utf8_folder",
        build=lambda root, outside: (
            os.mkdir(os.fsencode(root) + b"/d\xff"),
            raw_name(root, b"d\xff/inner.txt"),
        ),
        skipped={"d\\xff": "not valid UTF-8"},
    ),
    Case(
        "symlink_loop",
        build=lambda root, outside: (
            (root / "loop1").symlink_to(root / "loop2"),
            (root / "loop2").symlink_to(root / "loop1"),
        ),
        skipped={"loop1": "loop", "loop2": "loop"},
    ),
    Case(
        "self_symlink",
        build=lambda root, outside: (root / "me").symlink_to(root / "me"),
        skipped={"me": "loop"},
    ),
    Case(
        "broken_symlink",
        build=lambda root, outside: (root / "dangling").symlink_to(root / "nowhere"),
        skipped={"dangling": "broken"},
    ),
    Case(
        "symlink_outside",
        build=lambda root, outside: (root / "leak.txt").symlink_to(outside / "secret.txt"),
        skipped={"leak.txt": "outside"},
    ),
    Case(
        "fifo_listed", build=lambda root, outside: fifo(root / "pipe"), skipped={"pipe": "regular"}
    ),
    Case(
        "socket_listed",
        build=lambda root, outside: unix_socket(root / "sock"),
        skipped={"sock": "regular"},
    ),
    Case(
        "device_listed",
        build=lambda root, outside: device(root / "null"),
        skipped={"null": "regular"},
        needs_root=True,
    ),
    Case(
        "folders_nested_past_the_limit",
        build=lambda root, outside: write(
            root.joinpath(*["d"] * (MAX_FOLDER_DEPTH + 5)) / "deep.txt", b"deep"
        ),
        skipped={"/".join(["d"] * (MAX_FOLDER_DEPTH + 1)): "deeper than"},
    ),
    # ---- swapped between the listing and the read
    Case(
        "swapped_for_symlink_outside",
        swap=lambda root, outside: replace_with(
            root / "a.txt", lambda p: p.symlink_to(outside / "secret.txt")
        ),
        refused="outside",
    ),
    Case(
        "swapped_for_relative_symlink_outside",
        swap=lambda root, outside: replace_with(
            root / "a.txt", lambda p: p.symlink_to(Path("..") / "outside" / "secret.txt")
        ),
        refused="outside",
    ),
    Case(
        "swapped_for_symlink_inside",
        build=lambda root, outside: write(root / "other.txt", b"other inside"),
        swap=lambda root, outside: replace_with(
            root / "a.txt", lambda p: p.symlink_to(root / "other.txt")
        ),
        reads=b"other inside",
    ),
    Case(
        "swapped_for_fifo",
        swap=lambda root, outside: replace_with(root / "a.txt", fifo),
        refused="FIFO",
    ),
    Case(
        "swapped_for_device",
        swap=lambda root, outside: replace_with(root / "a.txt", device),
        refused="device",
        needs_root=True,
    ),
    Case(
        "swapped_for_socket",
        swap=lambda root, outside: replace_with(root / "a.txt", unix_socket),
        refused="socket",
    ),
    Case(
        "swapped_for_symlink_loop",
        swap=lambda root, outside: replace_with(root / "a.txt", lambda p: p.symlink_to(p)),
        refused="loop",
    ),
    Case(
        "swapped_for_broken_symlink",
        swap=lambda root, outside: replace_with(
            root / "a.txt", lambda p: p.symlink_to(root / "gone")
        ),
        refused="broken",
    ),
    Case(
        "folder_swapped_for_symlink_outside",
        key="sub/a.txt",
        build=lambda root, outside: write(root / "sub" / "a.txt"),
        swap=lambda root, outside: (
            write(outside / "a.txt", OUTSIDE_BYTES),
            replace_with(root / "sub", lambda p: p.symlink_to(outside, target_is_directory=True)),
        ),
        refused="folder 'sub'",
    ),
    Case(
        "listed_link_retargeted_outside",
        key="alias.txt",
        build=lambda root, outside: (root / "alias.txt").symlink_to(root / "a.txt"),
        swap=lambda root, outside: replace_with(
            root / "alias.txt", lambda p: p.symlink_to(outside / "secret.txt")
        ),
        refused="outside",
    ),
    Case(
        "swapped_for_folder",
        swap=lambda root, outside: replace_with(root / "a.txt", lambda p: p.mkdir()),
        vanished=True,
    ),
    Case(
        "removed",
        swap=lambda root, outside: (root / "a.txt").unlink(),
        vanished=True,
    ),
    Case(
        "rewritten_in_place",
        swap=lambda root, outside: write(root / "a.txt", b"new bytes, same file"),
        reads=b"new bytes, same file",
    ),
]


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(outside / "secret.txt", OUTSIDE_BYTES)
    write(root / "good.txt", b"good")
    write(root / "a.txt")
    return root, outside


@pytest.fixture(params=["openat2", "walk"])
def open_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every case twice: with Linux's one-call openat2 tried first (as on this machine), and
    with the careful walk alone (as on a kernel without openat2)."""
    if request.param == "openat2":
        if not openat2.available():
            pytest.skip("openat2 is not available on this kernel")
    else:
        monkeypatch.setattr(openat2, "_enabled", False)
    return str(request.param)


@pytest.mark.timeout(60)  # a read that blocks on a FIFO fails the case instead of hanging
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_entry(tmp_path: Path, tree: tuple[Path, Path], case: Case, open_path: str) -> None:
    if case.needs_root and not can_mknod():
        pytest.skip("creating a device node needs root")
    root, outside = tree
    case.build(root, outside)
    provider = LocalProvider(root)
    pages = list(provider.list_pages("", None, 2))  # small pages: positions cross the odd names
    listed = {i.key: i for p in pages for i in p.items}
    reasons = {s.key: s.reason for p in pages for s in p.skipped}
    assert {"good.txt", "a.txt"} <= set(listed)
    for key, word in case.skipped.items():
        assert word.lower() in reasons[key].lower(), reasons
    for p in pages:  # every key and position is text a database and JSON accept
        for k in [*(i.key for i in p.items), *(s.key for s in p.skipped), p.next_position or ""]:
            k.encode("utf-8")
    with provider.open(listed["good.txt"]) as f:
        assert f.read() == b"good"
    if case.swap is None:
        return

    item = listed[case.key]
    case.swap(root, outside)
    provider.will_read([item])  # the read-ahead hint: never raises, never blocks, reads nothing
    if case.reads is not None:
        with provider.open(item) as f:
            assert f.read() == case.reads
    elif case.vanished:
        with pytest.raises(FileVanished):
            provider.open(item)
    else:
        assert case.refused is not None
        with pytest.raises(RefusedFile) as info:
            provider.open(item)
        assert case.refused.lower() in str(info.value).lower()

    # The same read through the bucket a run fills.
    cfg_path = write_config(
        tmp_path / "syncs.yaml",
        root=root,
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        syncs=[{"name": "hostile"}],
    )
    rt = open_runtime(load_config(cfg_path), "hostile")
    spec = object_spec(rt, item, Mapped({}, ()), replaces=None, interrupted=False)
    [res] = rt.target.put_objects([spec])
    stored = objects(f"sqlite:///{tmp_path / 'state.db'}")
    assert all(o["sha256"] != hashlib.sha256(OUTSIDE_BYTES).hexdigest() for o in stored)
    if case.reads is not None:
        assert res.object_id and stored[0]["sha256"] == hashlib.sha256(case.reads).hexdigest()
    elif case.vanished:
        assert res.vanished and not stored
    else:
        assert res.error and case.refused is not None and not stored
        assert case.refused.lower() in res.error.lower()
        assert item.key in res.error


def test_openat2_opens_plain_paths_and_refuses_every_symlink(tmp_path: Path) -> None:
    """The fast path itself, on this kernel: a plain path opens in one call; a symlink at its
    end or along it (even one pointing inside the root) is refused, for the walk to judge."""
    if not sys.platform.startswith("linux"):
        pytest.skip("openat2 is Linux's")
    assert openat2.available(), "openat2 should work on this machine's Linux kernel"
    write(tmp_path / "d" / "f.txt", b"plain")
    (tmp_path / "link.txt").symlink_to(tmp_path / "d" / "f.txt")
    (tmp_path / "dlink").symlink_to(tmp_path / "d")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = openat2.open_no_symlinks(os.fsencode(tmp_path / "d" / "f.txt"), flags)
    assert fd is not None
    try:
        assert os.read(fd, 100) == b"plain"
    finally:
        os.close(fd)
    for path in (tmp_path / "link.txt", tmp_path / "dlink" / "f.txt", tmp_path / "missing"):
        assert openat2.open_no_symlinks(os.fsencode(path), flags) is None
    assert openat2.available()  # a refusal does not turn the fast path off


# ---------------------------------------------------------------- the whole tree, by the CLI


def mixsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


@pytest.mark.timeout(600)
def test_preview_and_sync_of_a_hostile_tree(tmp_path: Path, tree: tuple[Path, Path]) -> None:
    root, outside = tree
    for case in CASES:
        if case.swap is None and not (case.needs_root and not can_mknod()):
            case.build(root, outside)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    cfg = write_config(
        tmp_path / "syncs.yaml", root=root, state_url=state_url, syncs=[{"name": "hostile"}]
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {"DAGSTER_HOME": str(home)}

    out = mixsync("-c", str(cfg), "preview", "hostile", env=env)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert "not valid UTF-8" in out.stdout and "loop" in out.stdout

    out = mixsync("-c", str(cfg), "sync", "hostile", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    keys = sorted(o["source_key"] for o in objects(state_url))
    assert keys == ["a.txt", "good.txt"]
    assert all(o["sha256"] != hashlib.sha256(OUTSIDE_BYTES).hexdigest() for o in objects(state_url))
    # A second pass over the same tree changes nothing and still does not crash.
    out = mixsync("-c", str(cfg), "sync", "hostile", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
