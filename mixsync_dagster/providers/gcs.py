"""Google Cloud Storage as a source: paged listing with a resumable position, signed URLs.

One listing request is one page: `maxResults` is the page size, and a page's position carries the
server's page token for the next page together with the last object name listed. GCS lists in
lexicographic order, so the name is a fallback that always works (`startOffset`, inclusive, and
the already-listed name dropped): the token is replayed only for the query it was issued for.

Retries are google-cloud-storage's own (`DEFAULT_RETRY`: 429, 408, 5xx, dropped connections,
exponential backoff with jitter); when they give up the error becomes a `TransientError`. A
401/403 or a refused token becomes an `AuthError` naming the connection, and a missing bucket a
`ProviderError` naming the bucket. None of them ever means "the file was deleted".
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast
from urllib.parse import quote

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials, Signing
from google.cloud import storage
from google.cloud.storage.fileio import BlobReader
from google.cloud.storage.retry import DEFAULT_RETRY

from mixsync_dagster.config import GCSConnection
from mixsync_dagster.core.records import FileItem, Page, Skipped
from mixsync_dagster.errors import AuthError, FileVanished, ProviderError, TransientError
from mixsync_dagster.providers.base import bucket_and_prefix

LIST_RETRY_SECONDS = 20.0
"""Retry budget of one listing request. Listing runs inside a sensor tick, which Dagster stops
after 60 s, so it gives up sooner than the library's default 120 s (downloads keep that)."""
LIST_REQUEST_TIMEOUT_SECONDS = 15.0
"""Timeout of one HTTP request while listing (the library's default is 60 s)."""


@dataclass(frozen=True)
class _Position:
    """Where a listing resumes: the next page's token, valid for (prefix, size), and the last
    object name listed, usable with any page size."""

    token: str | None
    after: str | None
    prefix: str
    size: int

    def dump(self) -> str:
        return json.dumps(
            {"token": self.token, "after": self.after, "prefix": self.prefix, "size": self.size},
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def load(cls, text: str) -> _Position:
        try:
            d = json.loads(text)
            return cls(d.get("token"), d.get("after"), str(d["prefix"]), int(d["size"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ProviderError(f"'{text[:200]}' is not a GCS listing position") from None


class _Reader(BlobReader):
    """A streaming download that reports a blob gone mid-read as FileVanished."""

    def __init__(self, blob: storage.Blob, provider: GCSProvider):
        super().__init__(blob, retry=DEFAULT_RETRY)
        self._provider = provider

    def read(self, size: int | None = -1) -> bytes:
        try:
            return cast(bytes, super().read(size))
        except gexc.NotFound:
            raise FileVanished(f"{self._provider.where(self._blob)} is gone") from None
        except Exception as err:
            raise self._provider.translate(err, "downloading", self._blob.bucket.name) from err


class GCSProvider:
    """Lists `bucket/prefix` one page per request; hands the bucket a V4 signed URL per file.

    `key` is `bucket/name`, unique inside the connection (one connection may read several
    buckets); `rel_path` is the name relative to the source prefix, which is a folder: a
    `source_path` of `bucket/videos` lists `videos/`, not `videos_old/`.
    """

    name = "gcs"
    list_in_background = True
    cheap_open = False
    url_fetchable = True

    def __init__(
        self,
        connection_id: str,
        conn: GCSConnection,
        *,
        list_retry_seconds: float | None = None,
    ):
        self.connection_id = connection_id
        self.conn = conn
        self.list_retry = DEFAULT_RETRY.with_timeout(
            LIST_RETRY_SECONDS if list_retry_seconds is None else list_retry_seconds
        )

    # ------------------------------------------------------------------ client and errors

    @functools.cached_property
    def client(self) -> storage.Client:
        """The client, made on first use. An emulator (`endpoint_url` without credentials) gets
        anonymous credentials and the endpoint as an explicit client option: nothing is read
        from or written to the process environment (no STORAGE_EMULATOR_HOST)."""
        conn = self.conn
        options = {"api_endpoint": conn.endpoint_url} if conn.endpoint_url else None
        if conn.credentials_json is not None:
            try:
                info = json.loads(conn.credentials_json.get_secret_value())
            except ValueError:
                raise AuthError(
                    f"connection '{self.connection_id}': credentials_json is not valid JSON. "
                    "Check: it holds the whole service-account key file (write it as {env: VAR})"
                ) from None
            kwargs: dict[str, Any] = {"client_options": options}
            if conn.project:
                kwargs["project"] = conn.project
            try:
                return storage.Client.from_service_account_info(info, **kwargs)
            except (ValueError, TypeError, AttributeError):
                # The library's message may quote key material: keep it out of the error.
                raise AuthError(
                    f"connection '{self.connection_id}': credentials_json is not a usable "
                    "service-account key (a field such as client_email, token_uri or "
                    "private_key is missing or unreadable). Check: download a fresh JSON key "
                    "for the service account"
                ) from None
        if conn.endpoint_url:
            return storage.Client(
                project=conn.project or "<none>",
                credentials=AnonymousCredentials(),
                client_options=options,
            )
        from dagster_gcp import GCSResource

        try:
            return GCSResource(project=conn.project).get_client()
        except auth_exc.DefaultCredentialsError:
            raise AuthError(
                f"connection '{self.connection_id}': no application default credentials found. "
                "Check: set credentials_json (a service-account key, as {env: VAR}), or "
                "GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default login`, or "
                "the workload's service account"
            ) from None
        except OSError:
            raise ProviderError(
                f"connection '{self.connection_id}': no GCP project given or found in the "
                "environment. Fix: set 'project' on the connection"
            ) from None

    def where(self, blob: storage.Blob) -> str:
        gen = f" (generation {blob.generation})" if blob.generation else ""
        return f"gs://{blob.bucket.name}/{blob.name}{gen}"

    def translate(self, err: BaseException, what: str, bucket: str | None) -> ProviderError:
        """A client-library error as one of ours, naming the connection; never holds secrets."""
        who = f"connection '{self.connection_id}'"
        if isinstance(err, ProviderError):
            return err
        if isinstance(err, gexc.RetryError):
            return TransientError(
                f"{who}: {what} still failing after the client's retries: {_describe(err.cause)}"
            )
        if isinstance(
            err,
            gexc.Unauthorized
            | gexc.Forbidden
            | auth_exc.RefreshError
            | auth_exc.DefaultCredentialsError,
        ):
            target = f"bucket '{bucket}'" if bucket else "the project"
            return AuthError(
                f"{who}: GCS refused the credentials while {what} ({_describe(err)}). Check: "
                "the service-account JSON in credentials_json (or the application default "
                f"credentials when it is unset), the project ({self.conn.project or 'unset'}), "
                f"and that the account may list and read objects in {target} "
                "(IAM role roles/storage.objectViewer)"
            )
        if isinstance(err, gexc.NotFound) and bucket:
            return ProviderError(
                f"{who}: bucket '{bucket}' does not exist or is not visible to these "
                f"credentials ({what})"
            )
        if (isinstance(err, gexc.GoogleAPICallError) and err.code in (408, 429)) or isinstance(
            err,
            gexc.ServerError
            | auth_exc.TransportError
            | requests.RequestException
            | ConnectionError
            | TimeoutError,
        ):
            return TransientError(f"{who}: {what} failed: {_describe(err)}")
        if isinstance(err, gexc.GoogleAPICallError):
            return ProviderError(f"{who}: GCS refused {what}: {_describe(err)}")
        return ProviderError(f"{who}: {what} failed: {_describe(err)}")

    # ------------------------------------------------------------------ listing

    def list_pages(
        self, source_path: str, position: str | None, page_size: int, prefix: str = ""
    ) -> Iterator[Page]:
        """Pages of up to `page_size` objects under `source_path` + `prefix`, after `position`.

        One page is one listing request. Names ending in `/` are never offered, and are
        reported as Skipped with a reason (as the S3 provider does): zero-byte ones are folder
        placeholders (the console's "Create folder"), others have no file name.
        """
        bucket, base = bucket_and_prefix(source_path)
        listing = base + prefix
        pos = _Position.load(position) if position is not None else None
        if pos is not None and pos.after is not None and not pos.after.startswith(listing):
            raise ProviderError(
                f"position after '{pos.after}' is not inside gs://{bucket}/{listing}"
            )
        token = None
        after = pos.after if pos is not None else None
        if pos is not None and pos.token and pos.prefix == listing and pos.size == page_size:
            token = pos.token
        start = after if token is None else None
        it = self._list(bucket, listing, page_size, token, start)
        pages = it.pages
        first = True
        while True:
            try:
                page = next(pages)
            except StopIteration:
                break
            except gexc.BadRequest as err:
                if first and token is not None and after is not None:
                    # The saved token is refused (expired, or from an older server): carry on
                    # from the last name listed instead.
                    token, start = None, after
                    it = self._list(bucket, listing, page_size, None, start)
                    pages = it.pages
                    continue
                raise self.translate(err, f"listing gs://{bucket}/{listing}", bucket) from err
            except Exception as err:
                raise self.translate(err, f"listing gs://{bucket}/{listing}", bucket) from err
            first = False
            items: list[FileItem] = []
            skipped: list[Skipped] = []
            for blob in page:
                if blob.name == start:
                    continue  # startOffset is inclusive: this one was on the previous page
                after = blob.name
                entry = self._entry(bucket, base, blob)
                if isinstance(entry, FileItem):
                    items.append(entry)
                else:
                    skipped.append(entry)
            nxt = it.next_page_token
            if nxt is None:
                yield Page(items, skipped, None)
                return
            yield Page(items, skipped, _Position(nxt, after, listing, page_size).dump())
        yield Page([], [], None)

    def _list(
        self, bucket: str, prefix: str, page_size: int, token: str | None, start: str | None
    ) -> Any:
        return self.client.list_blobs(
            bucket,
            prefix=prefix or None,
            page_size=page_size,
            page_token=token,
            start_offset=start,
            retry=self.list_retry,
            timeout=LIST_REQUEST_TIMEOUT_SECONDS,
        )

    def _entry(self, bucket: str, base: str, blob: storage.Blob) -> FileItem | Skipped:
        """One listed blob as a FileItem (or a Skipped folder placeholder)."""
        name: str = blob.name
        key = f"{bucket}/{name}"
        if name.endswith("/"):
            if not blob.size:
                return Skipped(
                    key, "folder placeholder (a zero-byte object ending in '/'), not a file"
                )
            return Skipped(key, f"name ends in '/' so it has no file name ({blob.size} bytes)")
        md5, crc = blob.md5_hash, blob.crc32c
        when = blob.updated or blob.time_created or datetime.fromtimestamp(0, UTC)
        return FileItem(
            key=key,
            rel_path=name[len(base) :],
            size=int(blob.size or 0),
            modified_at=when.astimezone(UTC),
            # The custom metadata too: a metadata-only edit (status: draft -> approved) must
            # reach metadata filters and mappings though the bytes did not change. Hashing it
            # (not metageneration) also keeps ACL-only changes from re-processing objects.
            fingerprint=f"{blob.generation}-{md5 or crc or ''}-{_meta_hash(blob.metadata)}",
            content_type=blob.content_type,
            etag=blob.etag,
            url=f"gs://{key}",
            metadata={
                **(blob.metadata or {}),
                "gcs": {
                    "bucket": bucket,
                    "generation": blob.generation,
                    "metageneration": blob.metageneration,
                    "storage_class": blob.storage_class,
                    "md5_hash": md5,
                    "crc32c": crc,
                    "time_created": blob.time_created.isoformat() if blob.time_created else None,
                },
            },
        )

    def enrich(self, items: list[FileItem]) -> list[FileItem]:
        """The listing already carries custom metadata and every system field: nothing to add."""
        return items

    # ------------------------------------------------------------------ reading

    def _blob(self, item: FileItem) -> storage.Blob:
        bucket, _, name = item.key.partition("/")
        gen = (item.metadata.get("gcs") or {}).get("generation")
        return self.client.bucket(bucket).blob(name, generation=int(gen) if gen else None)

    def blob_url(self, item: FileItem) -> str:
        """A V4 signed GET URL for the listed generation, valid `signed_url_expiry_seconds`.

        Signing needs a key: a service-account JSON signs locally; credentials that hold only an
        account email (GCE, GKE, Cloud Run metadata credentials) sign through the IAM
        signBlob API (the account needs roles/iam.serviceAccountTokenCreator on itself).
        Anonymous credentials (an emulator) cannot sign: the URL is then the JSON API's media
        download link for the generation, `{endpoint}/download/storage/v1/b/{bucket}/o/{name}
        ?alt=media&generation=N`, which needs no signature there (or a public object on GCS).
        Credentials that can do neither (a user's `gcloud` login) give `gs://bucket/name`, for a
        target that reads GCS with its own access.
        """
        blob = self._blob(item)
        creds = getattr(self.client, "_credentials", None)
        if isinstance(creds, AnonymousCredentials):
            endpoint = (self.conn.endpoint_url or "https://storage.googleapis.com").rstrip("/")
            url = (
                f"{endpoint}/download/storage/v1/b/{quote(blob.bucket.name, safe='')}"
                f"/o/{quote(blob.name, safe='')}?alt=media"
            )
            return url + (f"&generation={blob.generation}" if blob.generation else "")
        kwargs: dict[str, Any] = {
            "version": "v4",
            "method": "GET",
            "expiration": timedelta(seconds=self.conn.signed_url_expiry_seconds),
            "generation": blob.generation,
            "api_access_endpoint": self.conn.endpoint_url,
        }
        try:
            if not isinstance(creds, Signing):
                email = getattr(creds, "service_account_email", None)
                if creds is None or email is None:
                    return f"gs://{blob.bucket.name}/{blob.name}"
                if not creds.valid:  # the email is known once the token is fetched
                    from google.auth.transport.requests import Request

                    creds.refresh(Request())
                kwargs["service_account_email"] = creds.service_account_email
                kwargs["access_token"] = creds.token
            return cast(str, blob.generate_signed_url(**kwargs))
        except Exception as err:
            raise self.translate(err, f"signing a URL for {self.where(blob)}", None) from err

    def open(self, item: FileItem) -> BinaryIO:
        """Stream the listed generation; FileVanished if it was deleted or overwritten since."""
        blob = self._blob(item)
        try:
            blob.reload(retry=DEFAULT_RETRY)
        except gexc.NotFound:
            raise FileVanished(
                f"{self.where(blob)} was deleted or replaced after listing"
            ) from None
        except Exception as err:
            raise self.translate(err, f"reading {self.where(blob)}", blob.bucket.name) from err
        return cast(BinaryIO, _Reader(blob, self))

    def check(self, source_path: str | None) -> str:
        """Credentials and reachability: the source's first page, else the project's buckets."""
        if source_path is not None:
            bucket, base = bucket_and_prefix(source_path)
            first = next(iter(self.list_pages(source_path, None, 1)))
            seen = len(first.items) + len(first.skipped)
            return f"gs://{bucket}/{base} is listable ({seen} object(s) on the first page)"
        project = self.conn.project or self.client.project
        try:
            buckets = list(
                self.client.list_buckets(
                    max_results=1, retry=self.list_retry, timeout=LIST_REQUEST_TIMEOUT_SECONDS
                )
            )
        except Exception as err:
            raise self.translate(err, f"listing the buckets of project {project}", None) from err
        shown = "unset" if project in (None, "<none>") else project
        return f"credentials accepted by GCS (project {shown}, {len(buckets)} bucket(s) seen)"


def _describe(err: BaseException | None) -> str:
    if err is None:
        return "no detail"
    if isinstance(err, gexc.GoogleAPICallError):
        return f"{err.code} {err.message}".strip()
    return f"{type(err).__name__}: {err}"


def _meta_hash(meta: dict[str, str] | None) -> str:
    text = json.dumps(meta or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
