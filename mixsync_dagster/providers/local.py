"""A local folder as a source: a sorted walk that can resume after any key."""

from __future__ import annotations

import functools
import mimetypes
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote_from_bytes

from mixsync_dagster.core.records import FileItem, Page, Skipped, utc_from_timestamp
from mixsync_dagster.errors import FileVanished, ProviderError


@functools.lru_cache(maxsize=4096)
def _guess_type(suffixes: str) -> str | None:
    """mimetypes.guess_type by the name's suffixes, which are all it looks at (cached: a tree
    has few distinct ones, and the guess costs more than the rest of a listed file)."""
    return mimetypes.guess_type("x" + suffixes, strict=False)[0]


# What urllib.parse.quote leaves as it is (with "/" safe): such keys go into a file:// URI
# unchanged.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~/-]*")


class LocalProvider:
    """Lists files under `root` in component-wise sorted order.

    The order makes a key a resumable position: a walk restarted "after key K" skips every folder
    that sorts before K's folder without reading it. Only one folder's entries are held at a time.
    Symlinks are followed only when they point to a file inside the root; hidden entries (dot
    names) are skipped unless `include_hidden`.
    """

    name = "local"
    cheap_open = True
    url_fetchable = True  # file:// URLs: the Mixpeek target uploads them (cheap_open)

    def __init__(self, root: Path, *, include_hidden: bool = False):
        self.root = root.resolve()
        self._root_uri = self.root.as_uri().rstrip("/") + "/"
        self.include_hidden = include_hidden

    def source_dir(self, source_path: str) -> Path:
        return (self.root / source_path.lstrip("/")).resolve()

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
            raise ProviderError(f"source folder {base} does not exist or is not a folder")
        base_key = base.relative_to(self.root).as_posix()
        strip = 0 if base_key == "." else len(base_key) + 1
        start = (base / prefix).resolve() if prefix else base
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
        for entry in self._walk(start, key_prefix, strip, after):
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
        self, folder: Path, key_prefix: str, strip: int, after: tuple[str, ...] | None
    ) -> Iterator[FileItem | Skipped]:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            return  # the folder vanished mid-walk: nothing in it to list
        except OSError as err:
            raise ProviderError(f"cannot list {folder}: {err.strerror}") from err
        for e in entries:
            sub_after: tuple[str, ...] | None = None
            if after is not None:
                if e.name < after[0]:
                    continue
                if e.name == after[0]:
                    if len(after) == 1:
                        continue  # this entry is the position itself: already listed
                    sub_after = after[1:]
            if not self.include_hidden and e.name.startswith("."):
                continue
            key = key_prefix + e.name
            try:
                if e.is_symlink():
                    if not os.path.exists(e.path):
                        yield Skipped(key, "broken symlink (its target does not exist)")
                        continue
                    target = Path(os.path.realpath(e.path))
                    if not target.is_relative_to(self.root):
                        yield Skipped(key, "symlink points outside the connection root (refused)")
                        continue
                    if target.is_dir():
                        yield Skipped(key, "symlinked folder not followed (avoids loops)")
                        continue
                if e.is_dir(follow_symlinks=False):
                    yield from self._walk(Path(e.path), key + "/", strip, sub_after)
                    continue
                st = e.stat(follow_symlinks=True)
            except FileNotFoundError:
                continue  # vanished between the folder read and the stat: not ours to list
            except OSError as err:  # a symlink loop, a permission problem on one entry
                yield Skipped(key, f"cannot read entry: {err.strerror}")
                continue
            if not stat.S_ISREG(st.st_mode):
                yield Skipped(key, "not a regular file")
                continue
            yield self._item(key, key[strip:], e.name, st)

    def _item(self, key: str, rel_path: str, name: str, st: os.stat_result) -> FileItem:
        dot = name.find(".", 1)
        ctype = _guess_type(name[dot:]) if dot > 0 else None
        # Positional: on the listing hot path, keyword arguments cost a measurable share.
        return FileItem(
            key,
            rel_path,
            st.st_size,
            utc_from_timestamp(st.st_mtime),
            f"{st.st_size}-{st.st_mtime_ns}",
            ctype,
            None,
            self.file_uri(key),
        )

    def file_uri(self, key: str) -> str:
        """`Path.as_uri()` of root/key, without building a Path per file (listing hot path):
        keys of unreserved characters need no quoting at all."""
        if _UNRESERVED.fullmatch(key):
            return self._root_uri + key
        return self._root_uri + quote_from_bytes(os.fsencode(key))

    def blob_url(self, item: FileItem) -> str:
        return item.url or self.file_uri(item.key)

    def check(self, source_path: str | None) -> str:
        """The folder (or the root) exists and can be listed."""
        first = next(iter(self.list_pages(source_path or "", None, 1)))
        where = self.source_dir(source_path or "")
        return f"{where} is readable ({len(first.items) + len(first.skipped)} entry seen)"

    def open(self, item: FileItem) -> BinaryIO:
        """Open a listed file for reading; FileVanished if it is gone."""
        try:
            return (self.root / item.key).open("rb")
        except FileNotFoundError:
            raise FileVanished(f"{item.key} was removed after it was listed") from None
        except IsADirectoryError:
            raise FileVanished(f"{item.key} is now a folder") from None
