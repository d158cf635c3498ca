"""S3 and every S3-compatible store as a source: resumable key listings, metadata on demand.

A file's `key` is `bucket/s3-key`, the connection-wide name (a connection reaches every bucket its
credentials allow, exactly as a local connection's keys are relative to its root), so two syncs
of one connection reading different buckets never share an object identity. Positions are keys
of that same form.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, BinaryIO, NoReturn, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)
from pydantic import SecretStr

from mixsync_dagster.config import S3Connection
from mixsync_dagster.core.records import FileItem, Page, Skipped
from mixsync_dagster.errors import AuthError, FileVanished, ProviderError
from mixsync_dagster.providers import s3_errors, s3_listing, s3_role
from mixsync_dagster.providers.base import bucket_and_prefix
from mixsync_dagster.redaction import get_logger

log = get_logger(__name__)

MAX_ATTEMPTS = 5
"""botocore's standard retry mode: 1 try + 4 retries with full-jitter exponential backoff
(at most 1 + 2 + 4 + 8 s of sleeping) for throttling, 5xx and dropped connections."""
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 20
"""Short enough that a hung endpoint fails a sensor tick instead of stalling it."""
MAX_KEYS = 1_000
"""S3 returns at most 1,000 keys per LIST call."""

VERSIONING_UNAVAILABLE_CODES = frozenset(
    {"AccessDenied", "NotImplemented", "MethodNotAllowed", "XNotImplemented"}
)
"""GetBucketVersioning answers that mean "cannot tell": list as an unversioned bucket."""

_warned_unversioned: set[tuple[str, str]] = set()
"""(connection, bucket) pairs already warned about in this process: one warning, not one a tick."""


T = TypeVar("T")

_session_lock = threading.Lock()
_session: boto3.session.Session | None = None


def _shared_session() -> boto3.session.Session:
    """One boto3 session per process: it loads S3's service model once (~0.1 s), so a sensor
    tick or an op that builds a provider pays ~5 ms for its client, not the model load again.
    Sessions are not thread-safe: clients are created under `_session_lock`."""
    global _session
    if _session is None:
        _session = boto3.session.Session()
    return _session


def make_client(conn: S3Connection, *, max_attempts: int | None = None) -> Any:
    """A boto3 S3 client with the parameters dagster-aws's `S3Resource` takes, plus a Config.

    Not `S3Resource(...).get_client()`: dagster-aws 0.29's `construct_s3_client` builds its own
    `Config(retries={"max_attempts": n, "mode": "standard"})` and accepts no other botocore
    Config, so it cannot set the addressing style (path-style is what MinIO, SeaweedFS and most
    self-hosted stores without wildcard DNS need), SigV4 for presigned URLs (botocore presigns
    with SigV2 on custom endpoints otherwise), a connection pool as large as
    `metadata_concurrency` (botocore's default is 10 of up to 64 threads), or timeouts that keep
    a hung endpoint inside a sensor tick. Otherwise the arguments are the ones S3Resource passes
    to boto3: region, endpoint_url, use_ssl, verify and the keys (none: the default chain).
    """
    creds = conn.credentials
    config = Config(
        region_name=conn.region,
        signature_version="s3v4",
        s3={"addressing_style": conn.addressing_style},
        # total_max_attempts counts the first try; botocore's "max_attempts" key would not.
        retries={"mode": "standard", "total_max_attempts": max_attempts or MAX_ATTEMPTS},
        max_pool_connections=max(10, conn.metadata_concurrency),
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        user_agent_extra="mixsync",
    )
    with _session_lock:
        if creds is not None and creds.role_arn is not None:
            session, keys = s3_role.role_session(creds, conn.region), None
        else:
            session, keys = _shared_session(), creds
        return session.client(
            "s3",
            region_name=conn.region,
            endpoint_url=conn.endpoint_url,
            use_ssl=conn.use_ssl,
            verify=conn.verify_ssl,
            aws_access_key_id=_value(keys.access_key_id) if keys else None,
            aws_secret_access_key=_value(keys.secret_access_key) if keys else None,
            aws_session_token=_value(keys.session_token) if keys else None,
            config=config,
        )


def _value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:  # S3 always sends a zone; be safe with odd servers
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class S3Provider:
    """Lists `bucket/prefix` in the server's key order, resumable after any listed key.

    - Listing: ListObjectsV2, pages of up to 1,000 keys. The first request of a call starts
      after `position` (StartAfter), later ones follow the continuation token; every page's
      `next_position` is its last key, so a later call resumes there. A source prefix is a
      folder: `bucket/videos` lists `videos/...`, not `videos2/...`.
    - Versioned buckets (GetBucketVersioning says Enabled; asked once per bucket and provider):
      ListObjectVersions, keeping each key's latest entry unless it is a delete marker; the
      position is again the last key (KeyMarker), because every key's latest entry comes
      first among its versions. The fingerprint is `etag:version_id` and the version id travels
      in `metadata["version_id"]`, so metadata, URLs and reads address the listed version.
      When versioning cannot be read (AccessDenied, not implemented) the bucket is listed as
      unversioned: ETags still move on every content change.
    - Keys ending in `/` are never offered: zero-byte ones are folder markers (the console's
      "Create folder"), others have no file name. Both are reported as Skipped with a reason.
    - Errors: botocore's standard retry mode retries throttling, 5xx and dropped connections
      (MAX_ATTEMPTS attempts); what is left is raised as TransientError, refused credentials as
      AuthError naming the connection and what to check, a missing bucket as ProviderError.
      Messages never contain secrets.
    """

    name = "s3"
    list_in_background = True
    cheap_open = False
    url_fetchable = True

    def __init__(
        self,
        connection_id: str,
        conn: S3Connection,
        *,
        max_attempts: int | None = None,
    ):
        self.connection_id = connection_id
        self.conn = conn
        self.max_attempts = max_attempts or MAX_ATTEMPTS
        self.client = make_client(conn, max_attempts=self.max_attempts)
        s3_listing.keep_raw_listing(self.client)
        self._versioned: dict[str, bool] = {}
        self._context = s3_errors.ErrorContext(connection_id, conn, self.max_attempts)

    def __repr__(self) -> str:
        return f"S3Provider(connection={self.connection_id!r}, where={self._where()!r})"

    # ------------------------------------------------------------ listing

    def list_pages(
        self, source_path: str, position: str | None, page_size: int, prefix: str = ""
    ) -> Iterator[Page]:
        """Pages of up to `page_size` (at most 1,000) keys after `position`.

        `prefix` (relative to the source prefix, as the include patterns' common folder) narrows
        the listing; `rel_path` stays relative to the source prefix.
        """
        bucket, base = bucket_and_prefix(source_path)
        after: str | None = None
        if position is not None:
            if not position.startswith(bucket + "/"):
                raise ProviderError(
                    f"connection '{self.connection_id}': position '{position}' is not a key "
                    f"of bucket '{bucket}'"
                )
            after = position[len(bucket) + 1 :]
        max_keys = max(1, min(page_size, MAX_KEYS))
        if self.is_versioned(bucket):
            return self._list_versions(bucket, base, base + prefix, after, max_keys)
        return self._list_objects(bucket, base, base + prefix, after, max_keys)

    def _list_objects(
        self, bucket: str, base: str, prefix: str, after: str | None, max_keys: int
    ) -> Iterator[Page]:
        req: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if after:
            req["StartAfter"] = after
        what = f"listing s3://{bucket}/{prefix}"
        while True:
            resp = self._call(what, bucket, None, "list_objects_v2", req)
            answer = self._read(what, s3_listing.page_of, resp)
            contents = answer.contents
            page = self._page(
                bucket,
                base,
                [(o.key, o.size, o.last_modified, o.etag, None) for o in contents],
            )
            token = answer.next_token
            if not answer.is_truncated:
                yield Page(page.items, page.skipped, None)
                return
            if not contents and (not token or token == req.get("ContinuationToken")):
                raise ProviderError(
                    f"connection '{self.connection_id}': listing s3://{bucket}/{prefix} does not "
                    "advance (a truncated, empty page without a new continuation token)"
                )
            if contents:
                yield page
            # Inside one call the continuation token, not StartAfter: SeaweedFS restarts "after
            # key K" past everything under K/ when K is both a key and a folder.
            if token:
                req.pop("StartAfter", None)
                req["ContinuationToken"] = token
            else:
                req.pop("ContinuationToken", None)
                req["StartAfter"] = contents[-1].key

    def _list_versions(
        self, bucket: str, base: str, prefix: str, after: str | None, max_keys: int
    ) -> Iterator[Page]:
        req: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if after:
            req["KeyMarker"] = after
        what = f"listing versions of s3://{bucket}/{prefix}"
        while True:
            resp = self._call(what, bucket, None, "list_object_versions", req)
            answer = self._read(what, s3_listing.versions_of, resp)
            # A key's latest entry is its first; older versions and keys whose latest entry is
            # a delete marker (listed under DeleteMarkers) are not files now.
            latest = [
                (v.key, v.size, v.last_modified, v.etag, v.version_id)
                for v in answer.versions
                if v.is_latest
            ]
            page = self._page(bucket, base, latest, versioned=True)
            if not answer.is_truncated:
                yield Page(page.items, page.skipped, None)
                return
            key_marker = answer.next_key_marker
            if not key_marker:
                raise ProviderError(
                    f"connection '{self.connection_id}': the server truncated a version listing "
                    f"of s3://{bucket}/{prefix} without a NextKeyMarker"
                )
            version_marker = answer.next_version_id_marker
            if key_marker == req.get("KeyMarker") and version_marker == req.get("VersionIdMarker"):
                raise ProviderError(
                    f"connection '{self.connection_id}': version listing of s3://{bucket}/{prefix} "
                    "does not advance"
                )
            # Resuming a later call at KeyMarker=key skips that key's remaining versions, which
            # are all older than the latest one this page has already seen.
            yield Page(page.items, page.skipped, f"{bucket}/{key_marker}")
            req["KeyMarker"] = key_marker
            if version_marker:
                req["VersionIdMarker"] = version_marker
            else:
                req.pop("VersionIdMarker", None)

    def _read(self, what: str, read: Callable[[dict[str, Any]], T], resp: dict[str, Any]) -> T:
        """A listing answer read by `s3_listing`; one that is not a listing is a ProviderError."""
        try:
            return read(resp)
        except s3_listing.ListingParseError as e:
            raise ProviderError(
                f"connection '{self.connection_id}': S3 {what} at {self._where()}: {e}"
            ) from None

    def _page(
        self,
        bucket: str,
        base: str,
        entries: list[tuple[str, int, datetime, str, str | None]],
        *,
        versioned: bool = False,
    ) -> Page:
        """Listing entries (key, size, modified, etag, version id) as a page whose position is
        the last entry's key."""
        items: list[FileItem] = []
        skipped: list[Skipped] = []
        for key, size, modified, etag, version in entries:
            entry = self._entry(
                bucket, base, key, size, modified, etag, (version or "null") if versioned else None
            )
            if isinstance(entry, FileItem):
                items.append(entry)
            else:
                skipped.append(entry)
        return Page(items, skipped, f"{bucket}/{entries[-1][0]}" if entries else None)

    def _entry(
        self,
        bucket: str,
        base: str,
        key: str,
        size: int,
        modified: datetime,
        etag: str,
        version_id: str | None,
    ) -> FileItem | Skipped:
        full = f"{bucket}/{key}"
        if key.endswith("/"):
            if size == 0:
                return Skipped(full, "folder marker (a zero-byte key ending in '/'), not a file")
            return Skipped(full, f"key ends in '/' so it has no file name ({size} bytes)")
        tag = etag.strip('"')
        return FileItem(
            key=full,
            rel_path=key[len(base) :],
            size=int(size),
            modified_at=_utc(modified),
            fingerprint=tag if version_id is None else f"{tag}:{version_id}",
            content_type=None,  # not in a listing; enrich() reads it
            etag=tag,
            url=f"s3://{full}",
            metadata={} if version_id is None else {"version_id": version_id},
        )

    def is_versioned(self, bucket: str) -> bool:
        """Whether the bucket keeps versions (asked once per bucket for this provider)."""
        if bucket not in self._versioned:
            try:
                resp = self.client.get_bucket_versioning(Bucket=bucket)
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code not in VERSIONING_UNAVAILABLE_CODES and status != 501:
                    self._fail(e, f"reading versioning of bucket '{bucket}'", bucket)
                if (self.connection_id, bucket) not in _warned_unversioned:
                    _warned_unversioned.add((self.connection_id, bucket))
                    log.warning(
                        "connection '%s': cannot read versioning of bucket '%s' (%s); listing it "
                        "as unversioned (fingerprints from ETags only)",
                        self.connection_id,
                        bucket,
                        code or status,
                    )
                resp = {}
            except BotoCoreError as e:
                self._fail(e, f"reading versioning of bucket '{bucket}'", bucket)
            self._versioned[bucket] = resp.get("Status") == "Enabled"
        return self._versioned[bucket]

    # ------------------------------------------------------------ metadata, URLs, bytes

    def enrich(self, items: list[FileItem]) -> list[FileItem]:
        """HEAD + GetObjectTagging per file (metadata_concurrency at a time), in input order.

        Each returned file has `content_type` from HEAD and `metadata` = the object's user
        metadata (x-amz-meta-*, keys lowercased by S3) plus `tags` (a dict), `storage_class` and
        `version_id` (None when unversioned); those three names win over user metadata of the
        same name. On a versioned bucket the listed version is described, not a newer one; on
        an unversioned one an object overwritten since the listing is described as it is now
        (its new ETag makes the next pass sync it again).

        A file deleted since it was listed (404 on HEAD or tagging) is returned unchanged, with
        no metadata: one vanished file never fails the other files' run. The filters then judge
        it as a file without metadata (a metadata filter excludes it unless it accepts a
        missing field), and the next pass no longer lists it. Refused credentials raise
        AuthError at once; pending requests are cancelled.
        """
        if not items:
            return []
        workers = min(self.conn.metadata_concurrency, len(items))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mixsync-s3-meta")
        futures: list[Future[FileItem]] = [pool.submit(self._describe, item) for item in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)

    def _describe(self, item: FileItem) -> FileItem:
        bucket, key = self._locate(item)
        req: dict[str, Any] = {"Bucket": bucket, "Key": key}
        version = item.metadata.get("version_id")
        if version:
            req["VersionId"] = version
        what = f"reading metadata of s3://{item.key}"
        try:
            head = self._call(what, bucket, key, "head_object", req)
            tagging = self._call(what, bucket, key, "get_object_tagging", req)
        except FileVanished:
            return item
        meta: dict[str, Any] = dict(head.get("Metadata") or {})
        meta["tags"] = {t["Key"]: t["Value"] for t in tagging.get("TagSet") or []}
        meta["storage_class"] = head.get("StorageClass") or "STANDARD"
        meta["version_id"] = head.get("VersionId") or version
        return replace(item, content_type=head.get("ContentType"), metadata=meta)

    def blob_url(self, item: FileItem) -> str:
        """A presigned GET URL (SigV4, `presign_expiry_seconds`), of the listed version when
        the bucket is versioned. Computed locally: no request is made."""
        bucket, key = self._locate(item)
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if item.metadata.get("version_id"):
            params["VersionId"] = item.metadata["version_id"]
        try:
            return str(
                self.client.generate_presigned_url(
                    "get_object", Params=params, ExpiresIn=self.conn.presign_expiry_seconds
                )
            )
        except BotoCoreError as e:  # no credentials in the default chain, mostly
            self._fail(e, f"presigning s3://{item.key}", bucket)

    def open(self, item: FileItem) -> BinaryIO:
        """The object's bytes as a stream (the listed version when versioned)."""
        bucket, key = self._locate(item)
        req: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if item.metadata.get("version_id"):
            req["VersionId"] = item.metadata["version_id"]
        resp = self._call(f"reading s3://{item.key}", bucket, key, "get_object", req)
        return cast(BinaryIO, resp["Body"])

    def check(self, source_path: str | None) -> str:
        """HeadBucket and one key of `source_path`, or ListBuckets without one."""
        where = self._where()
        if source_path is None:
            resp = self._call("listing buckets", None, None, "list_buckets", {})
            return f"credentials accepted at {where}: {len(resp.get('Buckets') or [])} bucket(s)"
        bucket, base = bucket_and_prefix(source_path)
        self._call(f"reaching bucket '{bucket}'", bucket, None, "head_bucket", {"Bucket": bucket})
        versioned = self.is_versioned(bucket)
        first = next(iter(self.list_pages(source_path, None, 1)))
        seen = [i.key for i in first.items] + [k.key for k in first.skipped]
        under = f"s3://{bucket}/{base}"
        listed = f"first key {seen[0]!r}" if seen else f"no keys under {under} yet"
        return (
            f"bucket '{bucket}' reachable at {where} "
            f"({'versioned' if versioned else 'unversioned'}); {listed}"
        )

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _locate(item: FileItem) -> tuple[str, str]:
        bucket, _, key = item.key.partition("/")
        return bucket, key

    def _where(self) -> str:
        return self._context.where()

    def _call(
        self, what: str, bucket: str | None, key: str | None, op: str, req: dict[str, Any]
    ) -> dict[str, Any]:
        method: Callable[..., dict[str, Any]] = getattr(self.client, op)
        try:
            return method(**req)
        except (ClientError, BotoCoreError) as e:
            self._fail(e, what, bucket, key)

    def _fail(
        self, err: Exception, what: str, bucket: str | None, key: str | None = None
    ) -> NoReturn:
        exc = s3_errors.translate(err, what, bucket, key, self._context)
        # Auth errors drop botocore's own exception: nothing of a refused request is worth
        # carrying into logs. The others keep it as the cause, for debugging.
        raise exc from (None if isinstance(exc, AuthError) else err)
