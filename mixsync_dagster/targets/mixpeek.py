"""The Mixpeek bucket target: objects, uploads, batches and tasks over Mixpeek's HTTP API.

Written from `../shared/reference/mixpeek-api.md` (Mixpeek's v0.81 OpenAPI spec) and Mixpeek's
public API pages. Where those drift, the shape below is the one this module speaks, and
`tests/fake_mixpeek.py` implements exactly this shape.

Every call sends `Authorization: Bearer <api_key>` and `X-Namespace: <namespace>` (JSON bodies):

- `GET /v1/buckets/{b}` → `{bucket_id, bucket_name, bucket_schema: {properties}, object_count}`
- `POST /v1/buckets/{b}/objects/batch` `{objects: [Object] (1..100)}` →
  `{succeeded: [obj], failed: [{object_index, error, error_type}]}` (partial success, HTTP 200)
- `POST /v1/buckets/{b}/objects/list?limit=1..100&offset=N`
  `{filters: {AND: [{field, operator, value}]}, sort: {field, direction}, select: [...]}` →
  `{results: [obj], pagination: {total, limit, offset, has_more}}`; we filter on
  `metadata.mixsync.source_ref` with operator `in`
- `GET` / `PUT` / `DELETE /v1/buckets/{b}/objects/{id}`; PUT takes an Object (blobs replaced,
  metadata merged key by key, as Mixpeek's update documents) and answers the object
- `POST /v1/buckets/{b}/uploads` `{filename, content_type, file_size_bytes, blob_property,
  create_object_on_confirm}` → `{upload_id, presigned_url, status, ...}`; then
  `PUT <presigned_url>` with the bytes and no API headers; then
  `POST /v1/buckets/{b}/uploads/{u}/confirm` `{file_size_bytes}` →
  `{upload_id, status: COMPLETED, object_id}` (idempotent)
- `POST /v1/buckets/{b}/batches` `{object_ids}` → `{batch_id, status: DRAFT, ...}`;
  `POST /v1/buckets/{b}/batches/{id}/submit` `{}` → `{batch_id, status, task_id}`, 409 when it
  was submitted already; `GET /v1/buckets/{b}/batches/{id}` and `GET /v1/tasks/{t}` for status

An Object is `{blobs: [{property, type, data | upload_id}], metadata, skip_duplicates: false}`.
`type` is the bucket's `blob_type`, or with `auto` derived from the MIME type (`video/*`,
`image/*`, `audio/*`, `text/*` and JSON/XML/YAML → text, PDF → pdf, Excel/ODS → excel; a file
whose type cannot be told fails with a message saying to set `blob_type`). `data` is the
provider's URL (presigned https for S3/GCS, rendition URL for Mux). A local file (`file://`) is
uploaded first (create upload with `create_object_on_confirm: false`, PUT the bytes to the
presigned URL, confirm) and the object references it by `upload_id`, so every object, local or
remote, is created through the same bulk call with the same per-object partial success.

Where the data goes. `metadata` = the sync's `metadata`, then the mapped fields at top level (a
mapped field wins over a sync metadata key of the same name; the v0.81 object has no other place
for user fields), then `mixsync`: `{sync, provider, connection, source_key, fingerprint,
source_ref}`: the source tracking that ties every object to its file. A mapped field named
`mixsync` fails that file rather than overwrite the tracking. `skip_duplicates` is sent `false`:
Mixpeek's skips blobs by content hash, but mixsync's identity is the source reference, so two
files with the same bytes stay two objects.

Idempotency (never a second object for one source reference):
1. `create_objects` first lists the bucket's objects whose `metadata.mixsync.source_ref` is among
   the specs' (one list call per 100 references) and returns those as `created=False`, before any
   upload. This covers a run killed between the API's answer and the state store's commit, in
   the same work list (where the engine calls `find_objects` itself) or in a later pass.
2. A bulk create that fails ambiguously (5xx, dropped connection, read timeout: the API may have
   created the objects) is retried only after another lookup, for the objects still missing. A
   429 or a refused connection is unambiguous and retried as it is.
3. Uploads: create-upload is not idempotent, but an upload no object references is an orphan the
   API expires; the PUT and the confirm are idempotent.
4. `create_batch` after an ambiguous failure may leave an orphan DRAFT batch that is never
   submitted; `submit_batch` treats 409 "already submitted" as success and reads the task id.

Failures. 429 and 5xx (and connection errors, timeouts) are retried with exponential backoff and
jitter, honouring `Retry-After` (up to `RetryBudget.max_wait_seconds`), within a bounded budget;
after it a `TransientError` fails the run and the files stay pending. 401/403 raise `AuthError`.
Another 4xx is permanent: for one object it is that file's error (with the field the API named);
for a whole call that concerns files it is their error; otherwise it raises `MixpeekRejected`.
The API key and namespace never appear in messages, logs or `repr`: the API's error text is
scrubbed of both before it is used.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import socket
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from mixsync_dagster.config import MixpeekBucket
from mixsync_dagster.errors import (
    AuthError,
    FileVanished,
    PermanentFileError,
    ProviderError,
    TransientError,
)
from mixsync_dagster.targets.base import ObjectResult, ObjectSpec, SubmittedBatch

log = logging.getLogger("mixsync.targets.mixpeek")

MAX_OBJECTS_PER_CALL = 100
"""The API's cap on `objects/batch`."""
LIST_PAGE_SIZE = 100
TRACKING_KEY = "mixsync"
SOURCE_REF_FIELD = f"metadata.{TRACKING_KEY}.source_ref"
UPLOAD_CHUNK_BYTES = 1 << 20
SMALL_FILE_BYTES = 8 << 20
"""Files up to this size are PUT from memory in one piece; larger ones are streamed."""


@dataclass(frozen=True)
class RetryBudget:
    """How hard one call tries before the target is declared unavailable (TransientError)."""

    attempts: int = 6
    initial_seconds: float = 0.5
    """First backoff; doubles per attempt, each wait drawn from [half, full] (jitter)."""
    max_wait_seconds: float = 30.0
    """Cap on one wait, Retry-After included."""
    deadline_seconds: float = 120.0
    """No new attempt starts after this long."""


DEFAULT_BUDGET = RetryBudget()


class MixpeekRejected(ProviderError):
    """The API refused a call for good (a 4xx other than 401/403/429)."""

    def __init__(self, message: str, *, status: int, problems: list[tuple[tuple[Any, ...], str]]):
        super().__init__(message)
        self.status = status
        self.problems = problems


class _Retry(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, reason: str, *, ambiguous: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.ambiguous = ambiguous
        """True when the API may have acted on the request before the failure."""
        self.retry_after = retry_after


_EXACT_TYPES = {
    "application/pdf": "pdf",
    "application/vnd.ms-excel": "excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "excel",
    "application/vnd.oasis.opendocument.spreadsheet": "excel",
    "application/json": "text",
    "application/xml": "text",
    "application/yaml": "text",
    "application/x-yaml": "text",
    "application/javascript": "text",
    "application/x-ndjson": "text",
}
_FAMILY_TYPES = {"video": "video", "image": "image", "audio": "audio", "text": "text"}


def blob_type_for(mime_type: str | None, configured: str = "auto") -> str | None:
    """The Mixpeek blob type of a file: the configured one, else from its MIME type (or None)."""
    if configured != "auto":
        return configured
    if not mime_type:
        return None
    mime = mime_type.split(";", 1)[0].strip().lower()
    if mime in _EXACT_TYPES:
        return _EXACT_TYPES[mime]
    if mime.endswith("+json") or mime.endswith("+xml"):
        return "image" if mime == "image/svg+xml" else "text"
    return _FAMILY_TYPES.get(mime.split("/", 1)[0])


def _chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _loc_text(loc: Sequence[Any]) -> str:
    """['body', 'objects', 3, 'blobs', 0, 'foo'] -> 'objects[3].blobs[0].foo'."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _problems(resp: httpx.Response) -> list[tuple[tuple[Any, ...], str]]:
    """(location, message) pairs from an error body, in the shapes the API is known to use."""
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip()
        return [((), text[:500] or resp.reason_phrase)]
    if isinstance(body, dict):
        detail = body.get("detail", body.get("error", body.get("message")))
        if isinstance(detail, list):
            out = []
            for d in detail:
                if isinstance(d, dict):
                    out.append((tuple(d.get("loc") or ()), str(d.get("msg") or d)))
                else:
                    out.append(((), str(d)))
            return out
        if isinstance(detail, dict):
            return [((), str(detail.get("message") or detail))]
        if detail is not None:
            return [((), str(detail))]
    return [((), json.dumps(body)[:500])]


def _describe(problems: list[tuple[tuple[Any, ...], str]]) -> str:
    return "; ".join(f"{_loc_text(loc)}: {msg}" if loc else msg for loc, msg in problems)


def _size_of(f: BinaryIO, fallback: int) -> int:
    try:
        return os.fstat(f.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        return fallback


def _transport(pool: httpx.Limits) -> httpx.HTTPTransport:
    """Keep-alive pool without Nagle: httpx writes a request's headers and body separately,
    and Nagle would hold the body back until the headers are acknowledged."""
    return httpx.HTTPTransport(
        limits=pool, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    )


class MixpeekTarget:
    """A Mixpeek bucket: one keep-alive connection pool per target, secrets kept out of sight."""

    def __init__(
        self,
        bucket_name: str,
        spec: MixpeekBucket,
        *,
        retry: RetryBudget | None = None,
        upload_concurrency: int = 8,
    ):
        self.bucket_name = bucket_name
        self.bucket_id = spec.bucket_id
        self.base_url = spec.base_url.rstrip("/")
        self.blob_property = spec.blob_property
        self.blob_type = spec.blob_type
        self.retry = retry or DEFAULT_BUDGET
        self.upload_concurrency = max(1, upload_concurrency)
        key = spec.api_key.get_secret_value()
        namespace = spec.namespace.get_secret_value()
        # Scrubbed from any text the API sends back (an API may echo what it refused).
        self._secrets = sorted((s for s in (key, namespace) if len(s) >= 4), key=len, reverse=True)
        timeout = httpx.Timeout(spec.timeout_seconds, connect=min(10.0, spec.timeout_seconds))
        pool = httpx.Limits(
            max_connections=self.upload_concurrency + 4,
            max_keepalive_connections=self.upload_concurrency + 4,
        )
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {key}",
                "X-Namespace": namespace,
                "Accept": "application/json",
                "User-Agent": "mixsync-dagster",
            },
            timeout=timeout,
            transport=_transport(pool),
        )
        # Presigned URLs carry their own authorisation: never send them the API key.
        self._storage = httpx.Client(timeout=timeout, transport=_transport(pool))
        self._prefix = f"/v1/buckets/{quote(self.bucket_id, safe='')}"

    def __repr__(self) -> str:
        return (
            f"MixpeekTarget(bucket={self.bucket_name!r}, bucket_id={self.bucket_id!r}, "
            f"base_url={self.base_url!r})"
        )

    def close(self) -> None:
        self._client.close()
        self._storage.close()

    def __enter__(self) -> MixpeekTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ HTTP plumbing

    def _redact(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One attempt. Raises _Retry for what is worth retrying; returns any other answer."""
        what = f"{method} {path}"
        content = None
        headers = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":"), default=str).encode()
            headers = {"Content-Type": "application/json"}
        try:
            resp = self._client.request(
                method, path, content=content, params=params, headers=headers
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            raise _Retry(
                f"{what}: cannot connect to {self.base_url} ({type(e).__name__})", ambiguous=False
            ) from None
        except httpx.TransportError as e:
            raise _Retry(
                f"{what}: {type(e).__name__}: {self._redact(str(e)) or 'no answer'}",
                ambiguous=True,
            ) from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retry(
                f"{what}: HTTP {resp.status_code}: {self._redact(_describe(_problems(resp)))}",
                ambiguous=resp.status_code != 429,
                retry_after=_retry_after(resp),
            )
        return resp

    def _wait(self, rs: RetryCallState) -> float:
        b = self.retry
        backoff = min(b.max_wait_seconds, b.initial_seconds * 2 ** (rs.attempt_number - 1))
        wait = random.uniform(backoff / 2, backoff)
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            wait = min(b.max_wait_seconds, exc.retry_after) + random.uniform(0, 0.05)
        return wait

    def _log_retry(self, rs: RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome else None
        sleep = rs.next_action.sleep if rs.next_action else 0.0
        log.warning(
            "Mixpeek bucket %r: %s; retry %d/%d in %.2f s",
            self.bucket_name,
            exc,
            rs.attempt_number,
            self.retry.attempts - 1,
            sleep,
        )

    def _attempts(self) -> Retrying:
        b = self.retry
        return Retrying(
            retry=retry_if_exception_type(_Retry),
            stop=stop_after_attempt(b.attempts) | stop_after_delay(b.deadline_seconds),
            wait=self._wait,
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _transient(self, e: _Retry) -> TransientError:
        return TransientError(
            f"Mixpeek bucket '{self.bucket_name}' unavailable: {e.reason} "
            f"(gave up after the retry budget: {self.retry.attempts} attempts / "
            f"{self.retry.deadline_seconds:g} s)"
        )

    def _refuse(self, resp: httpx.Response, method: str, path: str) -> Exception:
        """The exception for a 4xx answer to a whole call."""
        problems = [(loc, self._redact(msg)) for loc, msg in _problems(resp)]
        detail = _describe(problems)
        where = f"{method} {path}"
        if resp.status_code in (401, 403):
            return AuthError(
                f"Mixpeek refused the credentials of bucket '{self.bucket_name}' "
                f"(HTTP {resp.status_code} on {where}: {detail}); check api_key and namespace"
            )
        return MixpeekRejected(
            f"Mixpeek rejected {where} (HTTP {resp.status_code}): {detail}",
            status=resp.status_code,
            problems=problems,
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """A call retried within the budget: 2xx (or an `accept`ed status) or an exception."""
        resp: httpx.Response | None = None
        try:
            for attempt in self._attempts():
                with attempt:
                    resp = self._send(method, path, body=body, params=params)
        except _Retry as e:
            raise self._transient(e) from None
        assert resp is not None
        if resp.is_success or resp.status_code in accept:
            return resp
        raise self._refuse(resp, method, path)

    # ------------------------------------------------------------ object bodies

    def _metadata(self, spec: ObjectSpec) -> dict[str, Any]:
        if TRACKING_KEY in spec.fields:
            raise ValueError(
                f"mapped field '{TRACKING_KEY}' clashes with the source-tracking metadata key; "
                "rename the mapping target"
            )
        meta = {k: v for k, v in spec.metadata.items() if k != TRACKING_KEY}
        meta.update(spec.fields)
        tracking = dict(spec.metadata.get(TRACKING_KEY) or {})
        tracking.update(
            source_key=spec.source_key,
            fingerprint=spec.fingerprint,
            source_ref=spec.source_ref,
        )
        meta[TRACKING_KEY] = tracking
        return meta

    def _prepare(self, specs: Sequence[ObjectSpec]) -> list[dict[str, Any] | ObjectResult]:
        """Each spec's object body, uploading local files first; or its failure."""
        out: list[dict[str, Any] | ObjectResult] = []
        uploads: list[tuple[int, ObjectSpec]] = []
        for i, spec in enumerate(specs):
            btype = blob_type_for(spec.mime_type, self.blob_type)
            if btype is None:
                out.append(
                    ObjectResult(
                        error=f"{spec.source_key}: cannot tell the Mixpeek blob type of MIME "
                        f"type {spec.mime_type or 'unknown'}; set blob_type on bucket "
                        f"'{self.bucket_name}'"
                    )
                )
                continue
            try:
                meta = self._metadata(spec)
            except ValueError as e:
                out.append(ObjectResult(error=f"{spec.source_key}: {e}"))
                continue
            blob: dict[str, Any] = {"property": self.blob_property, "type": btype}
            body: dict[str, Any] = {"blobs": [blob], "metadata": meta, "skip_duplicates": False}
            url = spec.fetch_url() if spec.fetch_url is not None else None
            if url is None and spec.open_blob is None:
                out.append(ObjectResult(error=f"{spec.source_key}: the provider gave no blob URL"))
                continue
            if url is None or urlsplit(url).scheme == "file":
                uploads.append((i, spec))
            else:
                blob["data"] = url
            out.append(body)
        if uploads:
            workers = min(self.upload_concurrency, len(uploads))
            if workers == 1:
                done = [self._upload(s) for _, s in uploads]
            else:
                with ThreadPoolExecutor(workers, thread_name_prefix="mixpeek-upload") as pool:
                    done = list(pool.map(self._upload, [s for _, s in uploads]))
            for (i, _), res in zip(uploads, done, strict=True):
                prepared = out[i]
                assert isinstance(prepared, dict)
                if isinstance(res, ObjectResult):
                    out[i] = res
                else:
                    prepared["blobs"][0]["upload_id"] = res
        return out

    def _upload(self, spec: ObjectSpec) -> str | ObjectResult:
        """Upload a local file through a presigned URL; returns the confirmed upload id."""
        if spec.open_blob is None:
            return ObjectResult(error=f"{spec.source_key}: a file:// blob the provider cannot open")
        try:
            f = spec.open_blob()
        except FileVanished as e:
            return ObjectResult(error=str(e), vanished=True)
        except PermanentFileError as e:  # e.g. a Drive document too large to export
            return ObjectResult(error=str(e))
        except OSError as e:
            return ObjectResult(error=f"cannot read {spec.source_key}: {e.strerror or e}")
        with f:
            size = _size_of(f, spec.size)
            try:
                up = self._call(
                    "POST",
                    f"{self._prefix}/uploads",
                    body={
                        "filename": spec.name or spec.source_key.rsplit("/", 1)[-1],
                        "content_type": spec.mime_type or "application/octet-stream",
                        "file_size_bytes": size,
                        "blob_property": self.blob_property,
                        "create_object_on_confirm": False,
                    },
                ).json()
                upload_id = str(up["upload_id"])
                self._put_bytes(str(up["presigned_url"]), f, size)
                self._call(
                    "POST",
                    f"{self._prefix}/uploads/{quote(upload_id, safe='')}/confirm",
                    body={"file_size_bytes": size},
                )
            except MixpeekRejected as e:
                return ObjectResult(error=f"{spec.source_key}: upload refused: {e}")
            except OSError as e:
                return ObjectResult(error=f"cannot read {spec.source_key}: {e.strerror or e}")
        return upload_id

    def _put_bytes(self, url: str, f: BinaryIO, size: int) -> None:
        def stream() -> Iterator[bytes]:
            f.seek(0)
            while chunk := f.read(UPLOAD_CHUNK_BYTES):
                yield chunk

        def body() -> bytes | Iterator[bytes]:
            if size > SMALL_FILE_BYTES:
                return stream()  # streamed: memory stays at one chunk
            f.seek(0)
            return f.read()  # one write for a small file

        where = f"PUT {urlsplit(url).path}"
        resp: httpx.Response | None = None
        try:
            for attempt in self._attempts():
                with attempt:
                    try:
                        resp = self._storage.put(
                            url,
                            content=body(),
                            headers={"Content-Length": str(size)},
                        )
                    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                        raise _Retry(
                            f"{where}: cannot connect ({type(e).__name__})", ambiguous=False
                        ) from None
                    except httpx.TransportError as e:
                        raise _Retry(f"{where}: {type(e).__name__}", ambiguous=True) from None
                    if resp.status_code == 429 or resp.status_code >= 500:
                        raise _Retry(
                            f"{where}: HTTP {resp.status_code}",
                            ambiguous=True,
                            retry_after=_retry_after(resp),
                        )
        except _Retry as e:
            raise self._transient(e) from None
        assert resp is not None
        if not resp.is_success:
            raise MixpeekRejected(
                f"presigned upload refused (HTTP {resp.status_code}): "
                f"{self._redact(_describe(_problems(resp)))}",
                status=resp.status_code,
                problems=[],
            )

    # ------------------------------------------------------------ BucketTarget

    def put_objects(self, specs: list[ObjectSpec]) -> list[ObjectResult]:
        """Changed files update their object; new ones are created (see create_objects)."""
        results: list[ObjectResult | None] = [None] * len(specs)
        new = []
        for i, spec in enumerate(specs):
            if spec.replaces:
                results[i] = self.update_object(spec.replaces, spec)
            else:
                new.append(i)
        for i, res in zip(new, self.create_objects([specs[i] for i in new]), strict=True):
            results[i] = res
        return [r if r is not None else ObjectResult(error="not processed") for r in results]

    def delete_objects(self, object_ids: list[str]) -> dict[str, str]:
        for oid in object_ids:
            self.delete_object(oid)
        return {}

    def submit_batch(self, object_ids: list[str]) -> SubmittedBatch:
        batch_id = self.create_batch(object_ids)
        return SubmittedBatch(batch_id, self._submit_draft(batch_id))

    def create_objects(self, specs: list[ObjectSpec]) -> list[ObjectResult]:
        """Create objects in bulk; a spec whose source reference has an object already gets it
        back (created=False). Results are in the order of `specs`."""
        results: list[ObjectResult | None] = [None] * len(specs)
        found = self.find_objects([s.source_ref for s in specs]) if specs else {}
        todo = []
        for i, spec in enumerate(specs):
            if spec.source_ref in found:
                results[i] = ObjectResult(object_id=found[spec.source_ref], created=False)
            else:
                todo.append(i)
        prepared = self._prepare([specs[i] for i in todo])
        ready: list[tuple[int, dict[str, Any]]] = []
        for i, p in zip(todo, prepared, strict=True):
            if isinstance(p, ObjectResult):
                results[i] = p
            else:
                ready.append((i, p))
        for chunk in _chunks(ready, MAX_OBJECTS_PER_CALL):
            outcome = self._create_chunk([(specs[i].source_ref, body) for i, body in chunk])
            for (i, _), res in zip(chunk, outcome, strict=True):
                results[i] = res
        return [r if r is not None else ObjectResult(error="not processed") for r in results]

    def _create_chunk(self, items: list[tuple[str, dict[str, Any]]]) -> list[ObjectResult]:
        """One bulk create of ≤ 100 prepared objects (ref, body), never duplicating any."""
        path = f"{self._prefix}/objects/batch"
        results: dict[int, ObjectResult] = {}
        pending = list(range(len(items)))
        while pending:
            resp = self._post_objects(path, items, pending, results)
            if resp is None:  # everything turned out to exist already
                break
            sent, pending = pending, []
            if resp.is_success:
                self._read_bulk(resp.json(), items, sent, results)
                continue
            error = self._refuse(resp, "POST", path)
            if not isinstance(error, MixpeekRejected) or error.status not in (400, 413, 422):
                raise error  # credentials, a missing bucket...: not the files' fault
            # A whole-call rejection: blame the objects the API named, resend the others.
            blamed: dict[int, list[str]] = {}
            for loc, msg in error.problems:
                rest = [p for p in loc if p != "body"]
                if (
                    len(rest) >= 2
                    and rest[0] == "objects"
                    and isinstance(rest[1], int)
                    and 0 <= rest[1] < len(sent)
                ):
                    blamed.setdefault(rest[1], []).append(f"{_loc_text(rest[2:])}: {msg}")
            if not blamed:
                for i in sent:
                    results[i] = ObjectResult(error=str(error))
                continue
            for pos, msgs in blamed.items():
                results[sent[pos]] = ObjectResult(
                    error=f"Mixpeek rejected the object (HTTP {error.status}): " + "; ".join(msgs)
                )
            pending = [i for pos, i in enumerate(sent) if pos not in blamed]
        return [results.get(i, ObjectResult(error="not processed")) for i in range(len(items))]

    def _post_objects(
        self,
        path: str,
        items: list[tuple[str, dict[str, Any]]],
        pending: list[int],
        results: dict[int, ObjectResult],
    ) -> httpx.Response | None:
        """POST the pending objects, retrying; after an ambiguous failure, first adopt what
        the API did create. Shrinks `pending` in place; None when nothing is left to send."""
        resp: httpx.Response | None = None
        ambiguous = False
        try:
            for attempt in self._attempts():
                with attempt:
                    if ambiguous:
                        found = self.find_objects([items[i][0] for i in pending])
                        for i in pending:
                            ref = items[i][0]
                            if ref in found:
                                results[i] = ObjectResult(object_id=found[ref], created=False)
                        pending[:] = [i for i in pending if i not in results]
                        if not pending:
                            return None
                    try:
                        resp = self._send(
                            "POST", path, body={"objects": [items[i][1] for i in pending]}
                        )
                    except _Retry as e:
                        ambiguous = ambiguous or e.ambiguous
                        raise
        except _Retry as e:
            raise self._transient(e) from None
        return resp

    def _read_bulk(
        self,
        data: dict[str, Any],
        items: list[tuple[str, dict[str, Any]]],
        sent: list[int],
        results: dict[int, ObjectResult],
    ) -> None:
        failed = {}
        for f in data.get("failed") or []:
            pos = f.get("object_index")
            if isinstance(pos, int) and 0 <= pos < len(sent):
                failed[pos] = f
        succeeded = list(data.get("succeeded") or [])
        by_ref = {}
        for obj in succeeded:
            ref = ((obj.get("metadata") or {}).get(TRACKING_KEY) or {}).get("source_ref")
            if ref is not None:
                by_ref[ref] = obj["object_id"]
        in_order = iter(succeeded)
        for pos, i in enumerate(sent):
            if pos in failed:
                f = failed[pos]
                kind = f" ({f['error_type']})" if f.get("error_type") else ""
                results[i] = ObjectResult(
                    error=f"Mixpeek rejected the object{kind}: "
                    f"{self._redact(str(f.get('error') or 'no reason given'))}"
                )
                continue
            oid = by_ref.get(items[i][0])
            if oid is None:  # no tracking echoed back: the API answers in request order
                obj = next(in_order, None)
                oid = obj.get("object_id") if obj else None
            results[i] = (
                ObjectResult(object_id=str(oid), created=True)
                if oid
                else ObjectResult(error="Mixpeek reported success but returned no object id")
            )

    def find_objects(self, source_refs: list[str]) -> dict[str, str]:
        """Existing objects by source reference (the oldest, should there be several)."""
        wanted = list(dict.fromkeys(source_refs))
        out: dict[str, str] = {}
        for chunk in _chunks(wanted, LIST_PAGE_SIZE):
            refs = set(chunk)
            offset = 0
            while True:
                data = self._call(
                    "POST",
                    f"{self._prefix}/objects/list",
                    params={"limit": LIST_PAGE_SIZE, "offset": offset},
                    body={
                        "filters": {
                            "AND": [
                                {"field": SOURCE_REF_FIELD, "operator": "in", "value": list(chunk)}
                            ]
                        },
                        "sort": {"field": "created_at", "direction": "asc"},
                        "select": ["object_id", "metadata", "created_at"],
                    },
                ).json()
                page = data.get("results") or []
                for obj in page:
                    ref = ((obj.get("metadata") or {}).get(TRACKING_KEY) or {}).get("source_ref")
                    if isinstance(ref, str) and ref in refs and ref not in out:
                        out[ref] = str(obj["object_id"])
                more = (data.get("pagination") or {}).get("has_more")
                if not page or not more:
                    break
                offset += len(page)
        return out

    def update_object(self, object_id: str, spec: ObjectSpec) -> ObjectResult:
        """Replace the object's blob and metadata (same object id)."""
        (prepared,) = self._prepare([spec])
        if isinstance(prepared, ObjectResult):
            return prepared
        path = f"{self._prefix}/objects/{quote(object_id, safe='')}"
        try:
            resp = self._call("PUT", path, body=prepared, accept=(404,))
        except MixpeekRejected as e:
            return ObjectResult(error=f"Mixpeek rejected the update: {e}")
        if resp.status_code == 404:
            # Deleted behind our back: create it afresh rather than lose the file.
            found = self.find_objects([spec.source_ref])
            if spec.source_ref in found:
                return self.update_object(found[spec.source_ref], spec)
            return self._create_chunk([(spec.source_ref, prepared)])[0]
        return ObjectResult(object_id=object_id, created=False)

    def delete_object(self, object_id: str) -> None:
        """Delete an object; one that is gone already counts as deleted."""
        self._call("DELETE", f"{self._prefix}/objects/{quote(object_id, safe='')}", accept=(404,))

    def create_batch(self, object_ids: list[str]) -> str:
        data = self._call(
            "POST", f"{self._prefix}/batches", body={"object_ids": list(object_ids)}
        ).json()
        return str(data["batch_id"])

    def _submit_draft(self, batch_id: str) -> str | None:
        """Submit a batch for processing; a batch submitted already returns its task id."""
        path = f"{self._prefix}/batches/{quote(batch_id, safe='')}/submit"
        resp = self._call("POST", path, body={}, accept=(409,))
        if resp.status_code == 409:
            return self.get_batch(batch_id).get("task_id")
        task = resp.json().get("task_id")
        return str(task) if task else None

    # ------------------------------------------------------------ status and checks

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """The batch's record: `status` DRAFT → QUEUED/PENDING → PROCESSING → COMPLETED|FAILED."""
        resp = self._call("GET", f"{self._prefix}/batches/{quote(batch_id, safe='')}")
        data: dict[str, Any] = resp.json()
        return data

    def batch_status(self, batch_id: str) -> str:
        """The batch's status (upper case), read from the batch record."""
        return str(self.get_batch(batch_id).get("status", "UNKNOWN")).upper()

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        """The task's record, or None once the API has forgotten it (read the batch then)."""
        resp = self._call("GET", f"/v1/tasks/{quote(task_id, safe='')}", accept=(404,))
        if resp.status_code == 404:
            return None
        data: dict[str, Any] = resp.json()
        return data

    def check(self) -> str:
        """Verify the key, the namespace and the bucket (and that the blob property exists)."""
        try:
            resp = self._call("GET", self._prefix, accept=(400, 404))
        except AuthError:
            raise AuthError(
                f"Mixpeek refused the API key of bucket '{self.bucket_name}' (HTTP 401/403): "
                "check api_key"
            ) from None
        if resp.status_code == 400:
            raise ProviderError(
                f"Mixpeek refused the namespace of bucket '{self.bucket_name}': "
                f"{self._redact(_describe(_problems(resp)))}; check namespace"
            )
        if resp.status_code == 404:
            raise ProviderError(
                f"bucket_id '{self.bucket_id}' of bucket '{self.bucket_name}' was not found in "
                f"the namespace at {self.base_url}; check bucket_id"
            )
        data = resp.json()
        props = ((data.get("bucket_schema") or {}).get("properties")) or {}
        if props and self.blob_property not in props:
            raise ProviderError(
                f"bucket '{self.bucket_id}' has no schema property '{self.blob_property}' "
                f"(it has: {', '.join(sorted(props))}); set blob_property"
            )
        count = data.get("object_count")
        objects = f", {count} object(s)" if count is not None else ""
        return (
            f"bucket '{self.bucket_id}' at {self.base_url} accepts the key and namespace"
            f"{objects}; blob property '{self.blob_property}'"
        )
