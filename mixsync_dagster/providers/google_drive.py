"""Google Drive as a source: a folder (recursively) or a whole shared drive, listed in pages.

Talks to Drive v3 through google-api-python-client (static discovery: the API description
shipped in the package, no discovery request), one client per thread (httplib2 is not
thread-safe). Credentials: a service account (optionally impersonating a user), a user's OAuth
refresh token, or application default credentials; scope `drive.readonly`.

Files. `key` is the Drive file id (stable across renames and moves, unique; names are not:
Drive allows two files of one name in a folder), `url` the locator `drive://FILE_ID`, and
`rel_path` the path of names from the source folder (a `/` inside a name becomes `_`). Google
Docs, Sheets, Slides and Drawings are exported (PDF unless `export_formats` says otherwise; the
export's extension is added to `rel_path`, its MIME type is `content_type`); other Google types
(Forms, Sites, ...) and shortcuts are skipped with a reason. Exported files have no size until
exported: their `size` is 0. Fingerprint: `md5Checksum`, or `version` + `modifiedTime` + the
export format for exports, each plus a hash of the path and `properties` / `appProperties` (a
rename, a move or a property edit must reach filters and mappings). Metadata: `properties`,
`appProperties`, `owners` (email addresses), `mimeType`, `webViewLink`, `name`, `version`,
`createdTime`, `md5Checksum`, `export_mime_type`.

Listing. Depth first: a folder's files (`'ID' in parents`, not folders) page by page with
Drive's `nextPageToken`, then its subfolders one by one. The position is the stack of folders
being walked with each one's page token, so a later tick resumes after the last page; if Drive
refuses a saved token (400: tokens live hours), that folder's listing starts again from its
first page. Files listed twice come back unchanged (or re-sent onto their existing object),
never as duplicates.

The bucket gets bytes, not URLs: every Drive link needs this connection's OAuth token, so
`url_fetchable` is False and targets take the bytes from `open()` (the Mixpeek target uploads
them through its presigned upload flow; the local bucket hashes them). `open()` downloads into
a spooled temporary file, checking the md5 of a binary file against the listing.

Retries. 429, 403 rateLimitExceeded / userRateLimitExceeded, 5xx, 408 and dropped connections
are retried with exponential backoff and jitter (a 429's `Retry-After` is honoured) inside a
bounded budget; then TransientError. Refused credentials (401, other 403s, a refused token
grant) raise AuthError naming the connection. Secrets never appear in messages.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, cast

from mixsync_dagster.config import GoogleDriveConnection, split_drive_path
from mixsync_dagster.core.records import FileItem, Page, Skipped
from mixsync_dagster.errors import FileVanished, ProviderError
from mixsync_dagster.providers.base import SPOOL_MEMORY_BYTES
from mixsync_dagster.providers.google_drive_api import BadRequest, DriveApi

GOOGLE_APPS = "application/vnd.google-apps."
FOLDER = GOOGLE_APPS + "folder"
SHORTCUT = GOOGLE_APPS + "shortcut"
EXPORT_KINDS = {
    GOOGLE_APPS + "document": "document",
    GOOGLE_APPS + "spreadsheet": "spreadsheet",
    GOOGLE_APPS + "presentation": "presentation",
    GOOGLE_APPS + "drawing": "drawing",
}
DEFAULT_EXPORT = "application/pdf"
MAX_PAGE = 1_000
"""Drive's largest `pageSize`; subfolders are listed in pages of this size too."""
FILE_FIELDS = (
    "nextPageToken,files(id,name,mimeType,size,md5Checksum,version,modifiedTime,createdTime,"
    "properties,appProperties,owners(emailAddress),webViewLink,shortcutDetails(targetId))"
)
DOWNLOAD_CHUNK = 8 << 20


@dataclass
class _Frame:
    """One folder of the walk: its files' page token, then which subfolder page and entry."""

    id: str
    path: str
    phase: str = "files"  # files | folders
    token: str | None = None
    skip: int = 0


def _meta_hash(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class GoogleDriveProvider:
    """Lists a Drive folder tree (or a shared drive) and downloads or exports its files."""

    name = "google_drive"
    list_in_background = True
    cheap_open = False
    url_fetchable = False

    def __init__(
        self,
        connection_id: str,
        conn: GoogleDriveConnection,
        *,
        max_attempts: int = 5,
        max_retry_seconds: float = 30.0,
        backoff_initial: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.connection_id = connection_id
        self.conn = conn
        self.api = DriveApi(
            connection_id,
            conn,
            max_attempts=max_attempts,
            max_retry_seconds=max_retry_seconds,
            backoff_initial=backoff_initial,
            sleep=sleep,
        )
        self._roots: dict[str, tuple[str, str | None]] = {}
        self._formats: dict[str, list[str]] | None = None

    def __repr__(self) -> str:
        return f"GoogleDriveProvider(connection={self.connection_id!r})"

    # ------------------------------------------------------------ listing

    def _root(self, source_path: str) -> tuple[str, str | None]:
        """(folder id, shared drive id) of a source, checked once: it exists and is a folder."""
        if source_path not in self._roots:
            parsed = split_drive_path(source_path)
            if parsed is None:
                raise ProviderError(
                    f"'{source_path}' is not drive://FOLDER_ID or drive://shared/ID"
                )
            drive, folder = parsed
            if drive is not None:
                self.api.call(
                    f"reading shared drive {drive}",
                    lambda s: s.drives().get(driveId=drive, fields="id").execute(),
                )
            else:
                meta = self.api.call(
                    f"reading folder {folder}",
                    lambda s: (
                        s.files()
                        .get(fileId=folder, fields="id,mimeType,driveId", supportsAllDrives=True)
                        .execute()
                    ),
                )
                if meta.get("mimeType") != FOLDER:
                    raise ProviderError(
                        f"connection '{self.connection_id}': {source_path} is a "
                        f"{meta.get('mimeType')}, not a folder"
                    )
                drive = meta.get("driveId")
            self._roots[source_path] = (folder, drive)
        return self._roots[source_path]

    def _list(
        self,
        what: str,
        folder: str,
        drive: str | None,
        *,
        folders: bool,
        size: int,
        token: str | None,
    ) -> dict[str, Any]:
        op = "=" if folders else "!="
        kwargs: dict[str, Any] = {
            "q": f"'{folder}' in parents and trashed = false and mimeType {op} '{FOLDER}'",
            "pageSize": size,
            "orderBy": "name",
            "fields": "nextPageToken,files(id,name)" if folders else FILE_FIELDS,
            "supportsAllDrives": True,
            "includeItemsFromAllDrives": True,
        }
        if drive:
            kwargs.update(corpora="drive", driveId=drive)
        if token:
            kwargs["pageToken"] = token
        return cast(
            dict[str, Any], self.api.call(what, lambda s: s.files().list(**kwargs).execute())
        )

    def list_pages(
        self, source_path: str, position: str | None, page_size: int, prefix: str = ""
    ) -> Iterator[Page]:
        """Pages of up to `page_size` files, folder by folder, depth first (see the module
        docstring). `prefix` is ignored: Drive cannot list by path."""
        root, drive = self._root(source_path)
        size = max(1, min(page_size, MAX_PAGE))
        if position is None:
            stack = [_Frame(root, "")]
        else:
            try:
                stack = [_Frame(**f) for f in json.loads(position)["stack"]]
            except (ValueError, TypeError, KeyError):
                raise ProviderError(f"'{position[:200]}' is not a Drive listing position") from None
            if not stack or stack[0].id != root:
                raise ProviderError(f"position does not belong to {source_path}")
        cached: dict[str, tuple[str | None, list[dict[str, Any]], str | None]] = {}
        while stack:
            f = stack[-1]
            folders = f.phase == "folders"
            if folders and f.id in cached and cached[f.id][0] == f.token:
                _, entries, nxt = cached[f.id]
            else:
                what = f"listing {'subfolders' if folders else 'files'} of folder {f.id}"
                try:
                    resp = self._list(
                        what,
                        f.id,
                        drive,
                        folders=folders,
                        size=MAX_PAGE if folders else size,
                        token=f.token,
                    )
                except BadRequest:
                    if f.token is None:
                        raise
                    # A refused page token ("discard it and restart from the first page", as
                    # Drive's FileList documents): this folder's phase starts again.
                    f.token, f.skip = None, 0
                    continue
                entries, nxt = resp.get("files") or [], resp.get("nextPageToken")
                if folders:
                    cached[f.id] = (f.token, entries, nxt)
            if not folders:
                page = [self._entry(e, f.path) for e in entries]
                f.token = nxt
                if nxt is None:
                    f.phase, f.skip = "folders", 0
                items = [p for p in page if isinstance(p, FileItem)]
                skipped = [p for p in page if isinstance(p, Skipped)]
                pos = json.dumps({"stack": [asdict(x) for x in stack]}, separators=(",", ":"))
                yield Page(items, skipped, pos)
            elif f.skip < len(entries):
                child = entries[f.skip]
                f.skip += 1
                name = str(child.get("name", child["id"])).replace("/", "_")
                stack.append(_Frame(child["id"], f"{f.path}{name}/"))
            elif nxt:
                f.token, f.skip = nxt, 0
            else:
                stack.pop()
                cached.pop(f.id, None)
        yield Page([], [], None)

    def _entry(self, f: dict[str, Any], path: str) -> FileItem | Skipped:
        fid = str(f["id"])
        mime = str(f.get("mimeType") or "")
        rel = path + str(f.get("name") or fid).replace("/", "_")
        if mime == SHORTCUT:
            target = (f.get("shortcutDetails") or {}).get("targetId", "?")
            return Skipped(fid, f"'{rel}' is a shortcut (to {target}); shortcuts are not followed")
        export: str | None = None
        if mime.startswith(GOOGLE_APPS):
            kind = EXPORT_KINDS.get(mime)
            if kind is None:
                what = mime.removeprefix(GOOGLE_APPS)
                return Skipped(fid, f"'{rel}' is a Google {what}, which Drive cannot export")
            export = self.conn.export_formats.get(kind, DEFAULT_EXPORT)  # type: ignore[call-overload]
            offered = self._export_formats().get(mime, [])
            if export not in offered:
                return Skipped(
                    fid,
                    f"'{rel}': Drive exports {kind}s as {', '.join(offered) or 'nothing'}, "
                    f"not {export} (set export_formats.{kind})",
                )
            ext = mimetypes.guess_extension(export or "") or ""
            if ext and not rel.lower().endswith(ext):
                rel += ext
        props = dict(f.get("properties") or {})
        app_props = dict(f.get("appProperties") or {})
        md5 = f.get("md5Checksum")
        version = str(f.get("version") or "")
        modified = str(f.get("modifiedTime") or "1970-01-01T00:00:00Z")
        tail = _meta_hash(rel, props, app_props)
        if export:
            fingerprint = f"v{version}-{modified}-{export}-{tail}"
        elif md5:
            fingerprint = f"{md5}-{tail}"
        else:
            fingerprint = f"v{version}-{modified}-{tail}"
        return FileItem(
            key=fid,
            rel_path=rel,
            size=int(f.get("size") or 0),
            modified_at=datetime.fromisoformat(modified.replace("Z", "+00:00")).astimezone(UTC),
            fingerprint=fingerprint,
            content_type=export or mime or None,
            etag=md5 or (f"v{version}" if version else None),
            url=f"drive://{fid}",
            metadata={
                "properties": props,
                "appProperties": app_props,
                "owners": [o.get("emailAddress") for o in f.get("owners") or []],
                "mimeType": mime,
                "webViewLink": f.get("webViewLink"),
                "name": f.get("name"),
                "version": int(version) if version.isdigit() else None,
                "createdTime": f.get("createdTime"),
                "md5Checksum": md5,
                "export_mime_type": export,
            },
        )

    def _export_formats(self) -> dict[str, list[str]]:
        """Drive's own table of export formats (about.exportFormats), asked once."""
        formats = self._formats
        if formats is None:
            about = self.api.call(
                "reading the export formats",
                lambda s: s.about().get(fields="exportFormats").execute(),
            )
            formats = self._formats = dict(about.get("exportFormats") or {})
        return cast(dict[str, list[str]], formats)

    def enrich(self, items: list[FileItem]) -> list[FileItem]:
        """The listing already carries every field the provider offers."""
        return items

    # ------------------------------------------------------------ bytes

    def blob_url(self, item: FileItem) -> str:
        """Drive has no URL a bucket can fetch without this connection's token."""
        raise ProviderError(
            f"connection '{self.connection_id}': Drive files reach the bucket as bytes "
            "(url_fetchable is False): targets upload what open() returns"
        )

    def open(self, item: FileItem) -> BinaryIO:
        """The file's bytes (an export for Google documents) in a spooled temporary file.

        A binary file whose bytes no longer match the listed md5 (replaced since) is
        FileVanished; a document Drive will not export (too large) is PermanentFileError."""
        import tempfile

        from googleapiclient.http import MediaIoBaseDownload

        fid = item.key
        export = item.metadata.get("export_mime_type")
        what = f"downloading {item.rel_path} ({fid})"
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        digest = hashlib.md5()
        try:
            request = (
                self.api.service().files().export_media(fileId=fid, mimeType=export)
                if export
                else self.api.service().files().get_media(fileId=fid, supportsAllDrives=True)
            )
            download = MediaIoBaseDownload(_Tee(out, digest), request, chunksize=DOWNLOAD_CHUNK)
            done = False
            while not done:
                _, done = self.api.call(what, lambda s: download.next_chunk(), file_id=fid)
        except BaseException:
            out.close()
            raise
        md5 = item.metadata.get("md5Checksum")
        if md5 and digest.hexdigest() != md5:
            out.close()
            raise FileVanished(f"Drive file {fid} ({item.rel_path}) changed after it was listed")
        out.seek(0)
        return cast(BinaryIO, out)

    def check(self, source_path: str | None) -> str:
        """The folder (or shared drive) and its first page; without one, the account."""
        if source_path is None:
            about = self.api.call(
                "reading the account",
                lambda s: s.about().get(fields="user(emailAddress)").execute(),
            )
            who = (about.get("user") or {}).get("emailAddress") or "the account"
            return f"credentials accepted by Drive as {who}"
        root, drive = self._root(source_path)
        first = next(iter(self.list_pages(source_path, None, 1)))
        seen = [i.rel_path for i in first.items] + [s.key for s in first.skipped]
        where = f"shared drive {drive}" if drive == root else f"folder {root}"
        listed = f"first file {seen[0]!r}" if seen else "no files at its top level"
        return f"{source_path} reachable ({where}); {listed}"


class _Tee:
    """A write-only file that also feeds a hash (MediaIoBaseDownload writes each chunk)."""

    def __init__(self, out: Any, digest: Any):
        self.out, self.digest = out, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return int(self.out.write(data))
