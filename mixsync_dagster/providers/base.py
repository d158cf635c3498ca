"""Providers list a source in resumable pages and open files. They know nothing of syncs."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol, cast

from mixsync_dagster.config import LocalConnection, MixsyncConfig, split_bucket_path
from mixsync_dagster.core.records import FileItem, Page
from mixsync_dagster.errors import ProviderError


class Provider(Protocol):
    """The whole interface a storage provider implements.

    One optional hook: `will_read(items)`, called before a group's files are opened one by
    one, lets a provider start fetching them together (the local folder asks the kernel to
    read ahead). A provider without it is simply read file by file."""

    name: str
    """Short provider id recorded on objects for source tracking (`local`, `s3`, ...)."""
    list_in_background: bool
    """True when listing waits on a server: the next page is then read in a thread while this
    one is judged. A local walk is CPU work that a thread would only slow (the GIL)."""
    cheap_open: bool
    """True when open() costs no network transfer; the local bucket then hashes the bytes."""
    url_fetchable: bool
    """False when a bucket cannot fetch a file by URL (Google Drive: every link needs the
    connection's OAuth token; Azure with only a SAS token: mixsync will not hand its token
    out). Targets then get no `fetch_url`, only `open_blob`, and must take the bytes from
    open() (the Mixpeek target uploads them as it uploads local files)."""

    def list_pages(
        self, source_path: str, position: str | None, page_size: int, prefix: str = ""
    ) -> Iterator[Page]:
        """Pages of files after `position` (None = from the start), in a stable order.

        Each page's `next_position` resumes right after it; the last page's is None. Only one
        page is held in memory at a time. `prefix` (relative to source_path) narrows the listing
        where the filters allow it; `rel_path` stays relative to source_path.
        """
        ...

    def enrich(self, items: list[FileItem]) -> list[FileItem]:
        """Add the metadata a listing lacks (S3 user metadata, tags): may cost a call per file.

        Called only for files that passed every cheap filter, and only when a metadata filter
        or a mapping needs it.
        """
        ...

    def blob_url(self, item: FileItem) -> str:
        """Where a bucket fetches the bytes (file://, presigned https://, rendition URL).

        Not called when `url_fetchable` is False."""
        ...

    def check(self, source_path: str | None) -> str:
        """Verify credentials and reachability (of `source_path` when given, else of the
        account); return a one-line summary, or raise AuthError / ProviderError saying what
        to check."""
        ...

    def open(self, item: FileItem) -> BinaryIO:
        """Open the file's bytes. Raises FileVanished if it is gone."""
        ...


def bucket_and_prefix(source_path: str, container: str = "bucket") -> tuple[str, str]:
    """`bucket/some/prefix` → ('bucket', 'some/prefix/'): the bucket (or Azure container) a
    source path names and the folder prefix under it, ending in `/` when there is one."""
    bucket, prefix = split_bucket_path(source_path)
    if not bucket:
        raise ProviderError(
            f"source path '{source_path}' names no {container} (use {container}/prefix)"
        )
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def get_provider(cfg: MixsyncConfig, connection_id: str) -> Provider:
    """Build the provider for a declared connection."""
    conn = cfg.connections[connection_id]
    if isinstance(conn, LocalConnection):
        from mixsync_dagster.providers.local import LocalProvider

        return LocalProvider(cfg.connection_root(conn), include_hidden=conn.include_hidden)
    # Cloud providers import their SDKs lazily: a local-only deployment never pays for them.
    if conn.provider == "s3":
        from mixsync_dagster.providers.s3 import S3Provider

        return S3Provider(connection_id, conn)
    if conn.provider == "gcs":
        from mixsync_dagster.providers.gcs import GCSProvider

        return GCSProvider(connection_id, conn)
    if conn.provider == "azure_blob":
        from mixsync_dagster.providers.azure_blob import AzureBlobProvider

        return AzureBlobProvider(connection_id, conn)
    if conn.provider == "google_drive":
        from mixsync_dagster.providers.google_drive import GoogleDriveProvider

        return GoogleDriveProvider(connection_id, conn)
    if conn.provider == "mux":
        from mixsync_dagster.providers.mux import MuxProvider

        return MuxProvider(connection_id, conn)
    raise AssertionError(f"unhandled connection type {type(conn).__name__}")


SPOOL_MEMORY_BYTES = 8 << 20
"""Downloads up to this size stay in memory; larger ones spill to a temporary file."""


def spooled(chunks: Iterable[bytes]) -> BinaryIO:
    """A downloaded file as a seekable stream, read from `chunks` (one chunk in memory at a time).

    For providers whose bytes a target must upload itself: the Mixpeek target rewinds the
    stream to retry a PUT, and sizes it with fstat when the listing could not (a Drive export)."""
    f = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 (returned)
    try:
        for chunk in chunks:
            f.write(chunk)
        if f.tell() > SPOOL_MEMORY_BYTES:
            f.rollover()
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return cast(BinaryIO, f)
