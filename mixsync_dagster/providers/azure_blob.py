"""Azure Blob Storage as a source: marker-paged listings with metadata and tags, SAS URLs.

A file's `key` is `container/blob-name` (one connection is one storage account and may read
several containers), its `url` the stable locator `azure://container/blob-name` (never signed).

Listing. List Blobs in pages of up to 5,000 with `include=metadata,tags`, so user metadata, blob
index tags, the access tier and the content type come with the listing and `enrich` costs
nothing. The call goes through the SDK's pipeline and is parsed by `azure_listing` (2.5 times
faster than `list_blobs`). A position carries the server's continuation marker together with
the last name listed: the marker is replayed for the query it was issued for; if the service
refuses it (400), the listing restarts at the prefix and drops every name up to the last one
listed (Azure lists names in lexicographic order), so a refused marker loses and repeats nothing.
A source prefix is a folder: `media/videos` lists `videos/…`, not `videos_old/…`.

Identity. The fingerprint is the ETag (it moves with the content and with user metadata), plus
the version id on an account with versioning, plus a hash of the blob index tags (setting tags
does not move the ETag, and a tag edit must reach metadata filters).

URLs for the bucket. Read-only SAS URLs scoped to one blob (and its listed version) for
`sas_expiry_seconds`: signed with the account key, or with a user delegation key when the
connection authenticates with Entra ID (the default credential chain). A connection that has
only a SAS token hands out no URL at all (`url_fetchable` is False): mixsync does not pass its own
token on; targets upload the bytes from open() instead.

Errors. The SDK's retry policy (exponential backoff with jitter, MAX_RETRIES retries) retries
throttling and server errors (503 ServerBusy, 500 OperationTimedOut, other 5xx, 408) and dropped
connections; what is left becomes TransientError. Refused credentials become AuthError naming the
connection, a missing container a ProviderError naming it. Messages never contain secrets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, NoReturn
from urllib.parse import quote

from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ExponentialRetry,
    UserDelegationKey,
    generate_blob_sas,
)

from mixsync_dagster.config import AzureBlobConnection
from mixsync_dagster.core.records import FileItem, Page, Skipped
from mixsync_dagster.errors import AuthError, FileVanished, ProviderError, TransientError
from mixsync_dagster.providers.azure_listing import ListedBlob, list_segment
from mixsync_dagster.providers.base import bucket_and_prefix, spooled

log = logging.getLogger(__name__)

MAX_RESULTS = 5_000
"""Azure returns at most 5,000 blobs per List Blobs call."""
MAX_RETRIES = 3
"""Retries after the first attempt; the SDK's ExponentialRetry sleeps ~2, 4, 8 s (± 1 s)."""
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 20
"""Short enough that a hung endpoint fails a sensor tick instead of stalling it."""
CLOCK_SKEW = timedelta(minutes=5)
"""SAS start times are back-dated this much, for a bucket whose clock runs behind."""
AUTH_CODES = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "AuthorizationSourceIPMismatch",
        "AuthorizationProtocolMismatch",
        "InvalidAuthenticationInfo",
        "KeyBasedAuthenticationNotPermitted",
        "NoAuthenticationInformation",
    }
)
MARKER_CODES = frozenset({"OutOfRangeInput", "InvalidQueryParameterValue"})
"""What the service answers for a continuation marker it no longer accepts."""


@dataclass(frozen=True)
class _Position:
    """Where a listing resumes: the server's marker, valid for `prefix`, and the last name."""

    marker: str | None
    after: str | None
    prefix: str

    def dump(self) -> str:
        return json.dumps(
            {"marker": self.marker, "after": self.after, "prefix": self.prefix},
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def load(cls, text: str) -> _Position:
        try:
            d = json.loads(text)
            return cls(d.get("marker"), d.get("after"), str(d["prefix"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ProviderError(f"'{text[:200]}' is not an Azure listing position") from None


def _code(err: Exception) -> str:
    """The service's error code as plain text (the SDK gives a StorageErrorCode enum, whose
    hash is its member name, not its value)."""
    code = getattr(err, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _tags_hash(tags: dict[str, str]) -> str:
    text = json.dumps(tags, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class AzureBlobProvider:
    """Lists `container/prefix` in name order, resumable after any page; SAS URLs per blob."""

    name = "azure_blob"
    list_in_background = True
    cheap_open = False

    def __init__(
        self,
        connection_id: str,
        conn: AzureBlobConnection,
        *,
        max_retries: int = MAX_RETRIES,
        backoff_base: float = 2,
    ):
        self.connection_id = connection_id
        self.conn = conn
        self.max_retries = max_retries
        self._secrets = tuple(
            s.get_secret_value()
            for s in (conn.connection_string, conn.account_key, conn.sas_token)
            if s is not None and s.get_secret_value()
        ) + tuple(q for q in [(conn.account_url or "").partition("?")[2]] if q)
        # ExponentialRetry sleeps initial + base**n (n = 1, 2, ...) ± jitter before retry n.
        retry = ExponentialRetry(
            initial_backoff=0,
            increment_base=backoff_base,  # type: ignore[arg-type]  # floats work; typed int
            retry_total=max_retries,
            random_jitter_range=min(1, backoff_base / 2),  # type: ignore[arg-type]
        )
        options: dict[str, Any] = {
            "api_version": conn.api_version,
            "retry_policy": retry,
            "connection_timeout": CONNECT_TIMEOUT_SECONDS,
            "read_timeout": READ_TIMEOUT_SECONDS,
            "user_agent": "mixsync",
        }
        try:
            if conn.connection_string is not None:
                self.client = BlobServiceClient.from_connection_string(
                    conn.connection_string.get_secret_value(), **options
                )
            else:
                assert conn.account_url is not None
                self.client = BlobServiceClient(conn.account_url, self._credential(), **options)
        except ValueError:
            # The SDK's message may quote the string: keep it out of ours.
            what = "connection_string" if conn.connection_string else "account_url"
            raise AuthError(
                f"connection '{connection_id}': {what} is not usable (malformed, or no account "
                "name in it). Check: copy it again from the storage account's Access keys page"
            ) from None
        cred = self.client.credential
        self.signing_key: str | None = getattr(cred, "account_key", None)
        """Set when SAS URLs are signed with the account key (shared key credentials)."""
        self.token_auth = cred is not None and hasattr(cred, "get_token")
        """Entra ID (a token credential): SAS URLs are signed with a user delegation key."""
        self.url_fetchable = self.signing_key is not None or self.token_auth
        self._delegation: UserDelegationKey | None = None
        self._delegation_until = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    def _credential(self) -> Any:
        conn = self.conn
        if conn.account_key is not None:
            key = conn.account_key.get_secret_value()
            if conn.account_name:
                return {"account_name": conn.account_name, "account_key": key}
            return key  # the SDK pairs it with the account name in account_url
        if conn.sas_token is not None:
            return AzureSasCredential(conn.sas_token.get_secret_value().lstrip("?"))
        if "sig=" in (conn.account_url or "").partition("?")[2]:
            return None  # a SAS already in account_url (as the portal's "Blob SAS URL")
        # Imported lazily: azure-identity loads MSAL and friends, which key/SAS users never need.
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(exclude_interactive_browser_credential=True)

    def __repr__(self) -> str:
        return f"AzureBlobProvider(connection={self.connection_id!r}, account={self._where()!r})"

    # ------------------------------------------------------------ listing

    def list_pages(
        self, source_path: str, position: str | None, page_size: int, prefix: str = ""
    ) -> Iterator[Page]:
        """Pages of up to `page_size` (at most 5,000) blobs under source_path + prefix."""
        container, base = bucket_and_prefix(source_path, "container")
        listing = base + prefix
        pos = _Position.load(position) if position is not None else None
        if pos is not None and pos.after is not None and not pos.after.startswith(listing):
            raise ProviderError(
                f"connection '{self.connection_id}': position after '{pos.after}' is not inside "
                f"{container}/{listing}"
            )
        after = pos.after if pos is not None else None
        marker = pos.marker if pos is not None and pos.prefix == listing else None
        skip_to = after if marker is None else None  # without a marker: drop names ≤ after
        size = max(1, min(page_size, MAX_RESULTS))
        what = f"listing {container}/{listing}"
        cc = self.client.get_container_client(container)
        first = True
        while True:
            try:
                blobs, nxt = list_segment(cc, self.conn.api_version, listing, marker, size)
            except HttpResponseError as err:
                if first and marker is not None and _code(err) in MARKER_CODES:
                    log.warning(
                        "connection '%s': the service refused the saved listing marker (%s); "
                        "listing %s again after %r",
                        self.connection_id,
                        _code(err),
                        f"{container}/{listing}",
                        after,
                    )
                    marker, skip_to = None, after
                    continue
                self._fail(err, what, container)
            except AzureError as err:
                self._fail(err, what, container)
            first = False
            items: list[FileItem] = []
            skipped: list[Skipped] = []
            for b in blobs:
                if skip_to is not None and b.name <= skip_to:
                    continue  # listed before the marker was refused
                skip_to = None
                after = b.name
                entry = self._entry(container, base, b)
                if isinstance(entry, FileItem):
                    items.append(entry)
                else:
                    skipped.append(entry)
            if not nxt:
                yield Page(items, skipped, None)
                return
            if nxt == marker and not blobs:
                raise ProviderError(
                    f"connection '{self.connection_id}': listing {container}/{listing} does not "
                    "advance (an empty page that returns its own marker)"
                )
            marker = nxt
            yield Page(items, skipped, _Position(nxt, after, listing).dump())

    def _entry(self, container: str, base: str, b: ListedBlob) -> FileItem | Skipped:
        name = b.name
        key = f"{container}/{name}"
        meta: dict[str, Any] = dict(b.metadata)
        if name.endswith("/") or meta.get("hdi_isfolder") == "true":
            if not b.size:
                return Skipped(key, "folder marker (a zero-byte blob ending in '/'), not a file")
            return Skipped(key, f"name ends in '/' so it has no file name ({b.size} bytes)")
        fingerprint = b.etag + (f":{b.version_id}" if b.version_id else "")
        if b.tags:
            fingerprint += f"#{_tags_hash(b.tags)}"
        meta.update(
            {
                "tags": dict(b.tags),
                "access_tier": b.access_tier,
                "content_type": b.content_type,
                "blob_type": b.blob_type or "BlockBlob",
            }
        )
        if b.version_id:
            meta["version_id"] = b.version_id
        return FileItem(
            key=key,
            rel_path=name[len(base) :],
            size=b.size,
            modified_at=b.last_modified,
            fingerprint=fingerprint,
            content_type=b.content_type,
            etag=b.etag,
            url=f"azure://{key}",
            metadata=meta,
        )

    def enrich(self, items: list[FileItem]) -> list[FileItem]:
        """The listing already carries user metadata, tags, tier and content type."""
        return items

    # ------------------------------------------------------------ URLs and bytes

    def blob_url(self, item: FileItem) -> str:
        """A read-only SAS URL for this blob (its listed version), valid `sas_expiry_seconds`.

        Signed locally with the account key; with Entra ID, with a user delegation key fetched
        once and reused while it is valid for the whole expiry."""
        container, name = self._locate(item)
        now = datetime.now(UTC)
        expiry = now + timedelta(seconds=self.conn.sas_expiry_seconds)
        version = item.metadata.get("version_id")
        kwargs: dict[str, Any] = {
            "account_name": self.client.account_name,
            "container_name": container,
            "blob_name": name,
            "permission": BlobSasPermissions(read=True),
            "start": now - CLOCK_SKEW,
            "expiry": expiry,
        }
        if version:
            kwargs["version_id"] = version
        if self.signing_key is not None:
            kwargs["account_key"] = self.signing_key
        elif self.token_auth:
            kwargs["user_delegation_key"] = self._delegation_key(now, expiry)
        else:
            raise ProviderError(
                f"connection '{self.connection_id}': a SAS-token connection hands the bucket no "
                "URL (targets upload the bytes); use account_key or Entra ID to sign URLs"
            )
        sas = generate_blob_sas(**kwargs)
        url = self.client.get_blob_client(container, name).url
        pin = f"versionid={quote(version, safe='')}&" if version else ""
        return f"{url}?{pin}{sas}"

    def _delegation_key(self, now: datetime, expiry: datetime) -> UserDelegationKey:
        with self._lock:
            if self._delegation is None or self._delegation_until < expiry:
                # A key lives at most 7 days; ask for the longest so it serves many URLs.
                until = now + timedelta(days=7) - CLOCK_SKEW
                try:
                    self._delegation = self.client.get_user_delegation_key(now - CLOCK_SKEW, until)
                except AzureError as err:
                    self._fail(err, "getting a user delegation key to sign URLs", None)
                self._delegation_until = until
            return self._delegation

    def open(self, item: FileItem) -> BinaryIO:
        """The listed blob's bytes (its version, or its ETag: a blob overwritten since the
        listing is FileVanished, so the bytes always match the fingerprint)."""
        container, name = self._locate(item)
        version = item.metadata.get("version_id")
        blob = self.client.get_blob_client(container, name)
        what = f"reading {item.key}"
        kwargs: dict[str, Any] = {"version_id": version} if version else {}
        if item.etag and not version:
            from azure.core import MatchConditions

            kwargs.update(etag=item.etag, match_condition=MatchConditions.IfNotModified)
        try:
            stream = blob.download_blob(**kwargs)
            return spooled(stream.chunks())
        except (ResourceNotFoundError, ResourceModifiedError):
            raise FileVanished(f"{item.key} was deleted or replaced after it was listed") from None
        except AzureError as err:
            self._fail(err, what, container, name)

    def check(self, source_path: str | None) -> str:
        """The container's properties and first page, or one container of the account."""
        where = self._where()
        if source_path is None:
            try:
                pages: Any = self.client.list_containers(results_per_page=1).by_page()
                n = len(list(next(pages, [])))
            except AzureError as err:
                self._fail(err, "listing containers", None)
            return f"credentials accepted at {where} ({n} container(s) on the first page)"
        container, base = bucket_and_prefix(source_path, "container")
        # The first page alone: a container SAS may list without reading container properties.
        first = next(iter(self.list_pages(source_path, None, 1)))
        seen_keys = [i.key for i in first.items] + [s.key for s in first.skipped]
        listed = f"first blob {seen_keys[0]!r}" if seen_keys else f"no blobs under {base!r} yet"
        urls = "signs SAS URLs" if self.url_fetchable else "no SAS signing (bytes are uploaded)"
        return f"container '{container}' reachable at {where}; {listed}; {urls}"

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _locate(item: FileItem) -> tuple[str, str]:
        container, _, name = item.key.partition("/")
        return container, name

    def _where(self) -> str:
        """The account endpoint without its query: a SAS pasted into account_url stays out."""
        try:
            url = str(self.client.primary_endpoint)
        except AttributeError:  # during __init__
            url = self.conn.account_url or "the connection string's account"
        return url.partition("?")[0].rstrip("/")

    def _fail(
        self, err: Exception, what: str, container: str | None, name: str | None = None
    ) -> NoReturn:
        exc = self._translate(err, what, container, name)
        # Auth errors drop the SDK's exception: its text may quote request headers.
        raise exc from (None if isinstance(exc, AuthError) else err)

    def _translate(
        self, err: Exception, what: str, container: str | None, name: str | None
    ) -> ProviderError:
        who = f"connection '{self.connection_id}'"
        where = self._where()
        status = getattr(err, "status_code", None)
        code = _code(err)
        label = f"{code} (HTTP {status})" if code else f"HTTP {status}"
        if isinstance(err, ClientAuthenticationError) or code in AUTH_CODES or status in (401, 403):
            how = (
                "connection_string"
                if self.conn.connection_string
                else "account_key"
                if self.conn.account_key
                else "sas_token (its permissions: list and read, and t for tags)"
                if self.conn.sas_token
                else "the SAS in account_url (its permissions: list and read, and t for tags)"
                if self.client.credential is None
                else "the default Azure credential chain (AZURE_CLIENT_ID / managed identity / "
                "az login) and its role (Storage Blob Data Reader; Owner to read tags)"
            )
            detail = label if status else type(err).__name__
            on = f"container '{container}'" if container else where
            return AuthError(
                f"{who}: Azure refused the credentials while {what} ({detail}). Check: {how}, "
                f"and that they give access to {on} at {where}"
            )
        if isinstance(err, ResourceNotFoundError) and (name is None or code == "ContainerNotFound"):
            return ProviderError(
                f"{who}: container '{container}' does not exist at {where} ({what}). Check the "
                "sync's source_path and the connection's account"
            )
        if name is not None and isinstance(err, ResourceNotFoundError | ResourceModifiedError):
            return FileVanished(f"{container}/{name} was removed after it was listed")
        if isinstance(err, ServiceRequestError | ServiceResponseError):
            return TransientError(
                f"{who}: cannot reach Azure at {where} for {what} after "
                f"{self.max_retries + 1} attempt(s): {type(err).__name__}: {self._scrub(str(err))}"
            )
        if status is not None and (status in (408, 429) or status >= 500):
            return TransientError(
                f"{who}: Azure {what} failed with {label} after {self.max_retries + 1} "
                "attempt(s); the account is throttling or unavailable, the next tick or step "
                "retries"
            )
        message = self._scrub(str(getattr(err, "message", None) or err).splitlines()[0])
        return ProviderError(f"{who}: Azure {what} failed with {label}: {message}")

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text
