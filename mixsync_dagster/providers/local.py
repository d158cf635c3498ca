"""A local folder as a source: a sorted walk that can resume after any key, and an open that
reads nothing but the regular file it listed, inside the root.

The tree may change, or be changed by someone hostile, between the listing and the read. So
`open` trusts nothing the listing saw: it walks the key's folders from the root one component
at a time with `O_NOFOLLOW` (a folder swapped for a symlink is refused), looks at the file
without following it, opens it with `O_NOFOLLOW | O_NONBLOCK` (a FIFO never blocks) and checks
with `fstat` that what it opened is the regular file it looked at. A symlink inside the root
(which the listing offers) is resolved and its target opened the same way, once. On Linux the
common case (no symlink anywhere on the path, a regular file at its end) is first tried in one
`openat2` call that refuses any symlink (`openat2.py`); everything else takes the walk.
"""

from __future__ import annotations

import errno
import functools
import mimetypes
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote_from_bytes

from mixsync_dagster.core.records import FileItem, Page, Skipped
from mixsync_dagster.errors import FileVanished, ProviderError
from mixsync_dagster.providers import openat2
from mixsync_dagster.redaction import redact

MAX_FOLDER_DEPTH = 200
"""Folders nested deeper are skipped with a reason: keys and paths that long are of no use to
anyone, and a hostile tree thousands of levels deep must not make the walk hold thousands of
open folder listings."""
_first = itemgetter(0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class RefusedFile(OSError):
    """The listed file is now something mixsync will not read: a symlink leaving the root, a
    FIFO, a device. An OSError, so the target fails that one file with the reason (it is
    retried later, and listed again as whatever it has become)."""

    def __init__(self, key: str, reason: str):
        super().__init__(errno.EPERM, f"{reason}; not read")
        self.key = key


def safe_name(name: str) -> str:
    """A folder entry's name as text that any database or JSON accepts: itself when it is
    valid UTF-8, else with the undecodable bytes written as `\\xNN` (shown, never opened)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


def _is_loop(path: str) -> bool:
    try:
        os.stat(path)
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


@functools.lru_cache(maxsize=4096)
def _guess_type(suffixes: str) -> str | None:
    """mimetypes.guess_type by the name's suffixes, which are all it looks at (cached: a tree
    has few distinct ones, and the guess costs more than the rest of a listed file)."""
    return mimetypes.guess_type("x" + suffixes, strict=False)[0]


# What urllib.parse.quote leaves as it is (with "/" safe): such keys go into a file:// URI
# unchanged.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~/-]*")
_from_timestamp = datetime.fromtimestamp


def _uri_part(name: str) -> str:
    """A path (or one component of it) as a file:// URI has it, quoted only when it needs to
    be; "/" stays as it is."""
    if _UNRESERVED.fullmatch(name):
        return name
    return quote_from_bytes(os.fsencode(name))


class LocalProvider:
    """Lists files under `root` in component-wise sorted order.

    The order makes a key a resumable position: a walk restarted "after key K" skips every folder
    that sorts before K's folder without reading it. Only one folder's entries are held at a time.
    Symlinks are followed only when they point to a file inside the root; hidden entries (dot
    names) are skipped unless `include_hidden`; names that are not UTF-8 are skipped with a reason.
    """

    name = "local"
    list_in_background = False
    cheap_open = True
    url_fetchable = True  # file:// URLs: the Mixpeek target uploads them (cheap_open)

    def __init__(self, root: Path, *, include_hidden: bool = False):
        # realpath, not Path.resolve: a root that is a symlink loop must not raise here.
        self.root = Path(os.path.realpath(root))
        self.include_hidden = include_hidden
        base = str(self.root).rstrip("/") + "/"
        self._root_bytes = os.fsencode(base)
        # The root may come from the environment: its URL form is masked once, here.
        self._url_prefix = redact("file://" + quote_from_bytes(self._root_bytes))

    def source_dir(self, source_path: str) -> Path:
        return Path(os.path.realpath(self.root / source_path.lstrip("/")))

    def list_pages(
        self, source_path: str, position: str | None, page_size: int, prefix: str = ""
    ) -> Iterator[Page]:
        """Pages of up to `page_size` entries after `position`; the last page has no position.

        `prefix` (a folder path relative to source_path, ending in `/`) narrows the walk to that
        folder; `rel_path` stays relative to source_path.
        """
        base = self.source_dir(source_path)
        if not base.is_relative_to(self.root):
            raise ProviderError(f"source path '{source_path}' leaves the connection root")
        if not base.is_dir():
            what = (
                "is a symlink loop" if _is_loop(str(base)) else "does not exist or is not a folder"
            )
            raise ProviderError(f"source folder {base} {what}")
        base_key = base.relative_to(self.root).as_posix()
        strip = 0 if base_key == "." else len(base_key) + 1
        start = Path(os.path.realpath(base / prefix)) if prefix else base
        if not start.is_relative_to(base) or not start.is_dir():
            yield Page([], [], None)  # nothing under the pushed-down prefix (yet)
            return
        start_key = start.relative_to(self.root).as_posix()
        key_prefix = "" if start_key == "." else start_key + "/"
        after: tuple[str, ...] | None = None
        if position is not None:
            if not position.startswith(key_prefix):
                raise ProviderError(f"position '{position}' is not inside '{source_path}{prefix}'")
            after = tuple(position[len(key_prefix) :].split("/"))
        items: list[FileItem] = []
        skipped: list[Skipped] = []
        last: str | None = None
        depth = key_prefix.count("/")
        for entry in self._walk(start, key_prefix, strip, after, depth):
            if isinstance(entry, FileItem):
                items.append(entry)
            else:
                skipped.append(entry)
            last = entry.key
            if len(items) + len(skipped) >= page_size:
                yield Page(items, skipped, last)
                items, skipped = [], []
        yield Page(items, skipped, None)

    def enrich(self, items: list[FileItem]) -> list[FileItem]:
        """A local listing already carries everything there is to know."""
        return items

    def _walk(
        self,
        folder: Path,
        key_prefix: str,
        strip: int,
        after: tuple[str, ...] | None,
        depth: int,
    ) -> Iterator[FileItem | Skipped]:
        """Depth-first, each folder's entries sorted, resuming after `after`.

        An explicit stack, not recursion: a file then passes through one generator instead of
        one per folder level (a measurable share of a listing), and a hostile tree thousands of
        levels deep cannot exhaust Python's stack."""
        # A frame: [sorted entries, next index, key prefix, the position left in this folder,
        # depth, the folder's file:// URI prefix]. Only the folders on the path to the position
        # carry a position.
        top = [self._entries(folder), 0, key_prefix, after, depth, self.file_uri(key_prefix)]
        stack: list[list[Any]] = [top]
        include_hidden = self.include_hidden
        while stack:
            frame = stack[-1]
            entries, i, kp, after, depth, uri = frame
            descend: list[Any] | None = None
            while i < len(entries):
                name, e = entries[i]
                i += 1
                sub_after: tuple[str, ...] | None = None
                if after is not None:
                    if name < after[0]:
                        continue
                    if name == after[0]:
                        if len(after) == 1:
                            continue  # this entry is the position itself: already listed
                        sub_after = after[1:]
                if not include_hidden and name[0] == ".":
                    continue
                key = kp + name
                if name != e.name:
                    yield Skipped(
                        key, "the name is not valid UTF-8 (shown escaped); rename it to sync it"
                    )
                    continue
                try:
                    if e.is_symlink():
                        refused = self._symlink_problem(e.path)
                        if refused:
                            yield Skipped(key, refused)
                            continue
                    if e.is_dir(follow_symlinks=False):
                        if depth >= MAX_FOLDER_DEPTH:
                            yield Skipped(
                                key,
                                f"folder nested deeper than {MAX_FOLDER_DEPTH} levels; not listed",
                            )
                            continue
                        descend = [
                            self._entries(e.path),
                            0,
                            key + "/",
                            sub_after,
                            depth + 1,
                            uri + _uri_part(name) + "/",
                        ]
                        break
                    st = e.stat(follow_symlinks=True)
                except FileNotFoundError:
                    continue  # vanished between the folder read and the stat: not ours to list
                except OSError as err:  # a permission problem on one entry
                    yield Skipped(key, f"cannot read entry: {err.strerror}")
                    continue
                if not stat.S_ISREG(st.st_mode):
                    yield Skipped(key, "not a regular file")
                    continue
                dot = name.find(".", 1)
                # Built in place, positionally: this line runs once per listed file.
                yield FileItem(
                    key,
                    key[strip:],
                    st.st_size,
                    _from_timestamp(st.st_mtime, UTC),
                    f"{st.st_size}-{st.st_mtime_ns}",
                    _guess_type(name[dot:]) if dot > 0 else None,
                    None,
                    uri + _uri_part(name),
                )
            frame[1] = i
            if descend is None:
                stack.pop()
            else:
                stack.append(descend)

    @staticmethod
    def _entries(folder: str | Path) -> list[tuple[str, os.DirEntry[str]]]:
        """A folder's entries sorted by the name as keys show it, so positions compare like the
        walk; none when it vanished mid-walk."""
        try:
            with os.scandir(folder) as it:
                return sorted([(safe_name(e.name), e) for e in it], key=_first)
        except FileNotFoundError:
            return []  # the folder vanished mid-walk: nothing in it to list
        except OSError as err:
            raise ProviderError(f"cannot list {folder}: {err.strerror}") from err

    def _symlink_problem(self, path: str) -> str | None:
        """Why a symlink is not offered, or None for a link to a file inside the root."""
        try:
            os.stat(path)
        except OSError as err:
            if err.errno == errno.ELOOP:
                return "symlink loop (the link leads back to itself)"
            return "broken symlink (its target does not exist)"
        target = Path(os.path.realpath(path))
        if not target.is_relative_to(self.root):
            return "symlink points outside the connection root (refused)"
        if target.is_dir():
            return "symlinked folder not followed (avoids loops)"
        return None

    def file_uri(self, key: str) -> str:
        """`Path.as_uri()` of root/key, without building a Path per file (listing hot path):
        keys of unreserved characters need no quoting at all."""
        return self._url_prefix + _uri_part(key)

    def blob_url(self, item: FileItem) -> str:
        return item.url or self.file_uri(item.key)

    def check(self, source_path: str | None) -> str:
        """The folder (or the root) exists and can be listed."""
        first = next(iter(self.list_pages(source_path or "", None, 1)))
        where = self.source_dir(source_path or "")
        return f"{where} is readable ({len(first.items) + len(first.skipped)} entry seen)"

    def open(self, item: FileItem) -> BinaryIO:
        """Open a listed file for reading: FileVanished if it is gone, RefusedFile if it is no
        longer a regular file inside the root."""
        fd = self._open_fast(item.key)
        if fd is None:
            fd = self._open_beneath(item.key, follow=True)
            os.set_blocking(fd, True)
        # A regular file ignores O_NONBLOCK. Unbuffered: readers take large chunks (hashing,
        # uploads), and a buffer per small file cost more than reading it.
        return os.fdopen(fd, "rb", buffering=0)

    def _open_fast(self, key: str) -> int | None:
        """The common case in one system call: a plain key whose path holds no symlink at all
        (the root is a real path) and ends at a regular file. None for anything else, which
        the careful walk then opens or refuses with its reason."""
        if not openat2.available() or any(p in ("", ".", "..") for p in key.split("/")):
            return None
        path = self._root_bytes + os.fsencode(key)
        # Looked at before it is opened, as the walk does: a FIFO or device is never opened.
        try:
            before = os.stat(path, follow_symlinks=False)
        except OSError:
            return None
        if not stat.S_ISREG(before.st_mode):
            return None
        fd = openat2.open_no_symlinks(path, _FILE_FLAGS)
        if fd is None:
            return None
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (before.st_dev, before.st_ino):
            return fd
        os.close(fd)
        return None

    def will_read(self, items: list[FileItem]) -> None:
        """Ask the kernel to start reading these files now (POSIX_FADV_WILLNEED), before they
        are read one by one. A file that has left the page cache otherwise costs a disk wait
        each (small files on the benchmark machine: ~200 µs cold, ~20 µs cached); hinted as a
        group, the disk serves them together. Only files the fast path would open are hinted;
        a hint never fails a file."""
        advise = getattr(os, "posix_fadvise", None)
        if advise is None or not openat2.available():
            return
        for item in items:
            fd = self._open_fast(item.key)
            if fd is None:
                continue
            try:
                advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)

    def _open_beneath(self, key: str, *, follow: bool) -> int:
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise RefusedFile(key, f"'{key}' is not a plain path inside the connection root")
        dir_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for i, part in enumerate(parts[:-1]):
                try:
                    sub = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
                except FileNotFoundError:
                    raise FileVanished(f"{key} was removed after it was listed") from None
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    folder = "/".join(parts[: i + 1])
                    raise RefusedFile(
                        key, f"the folder '{folder}' was replaced by a symlink or a file"
                    ) from None
                os.close(dir_fd)
                dir_fd = sub
            return self._open_file(dir_fd, parts[-1], key, follow=follow)
        finally:
            os.close(dir_fd)

    def _open_file(self, dir_fd: int, name: str, key: str, *, follow: bool) -> int:
        try:
            before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise FileVanished(f"{key} was removed after it was listed") from None
        mode = before.st_mode
        if stat.S_ISLNK(mode):
            if not follow:
                raise RefusedFile(key, "the file was replaced by a symlink while being opened")
            return self._open_link(key)
        if stat.S_ISDIR(mode):
            raise FileVanished(f"{key} is now a folder")
        if not stat.S_ISREG(mode):
            # Looked at, never opened: opening a FIFO or a device may block or act.
            raise RefusedFile(key, f"the file was replaced by {_kind(mode)}")
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            raise FileVanished(f"{key} was removed after it was listed") from None
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise RefusedFile(
                key, "the file was replaced by a symlink while being opened"
            ) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            os.close(fd)
            raise RefusedFile(key, "the file was replaced while being opened")
        return fd

    def _open_link(self, key: str) -> int:
        """A symlink at `key`: open its target if it is a file inside the root (as listed)."""
        problem = self._symlink_problem(str(self.root / key))
        if problem is not None:
            raise RefusedFile(key, f"the file is now a {problem}")
        target = Path(os.path.realpath(self.root / key)).relative_to(self.root).as_posix()
        # The target is opened component by component without following anything: a link
        # swapped again in between is refused, never followed out of the root.
        return self._open_beneath(target, follow=False)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "something that is not a regular file"
