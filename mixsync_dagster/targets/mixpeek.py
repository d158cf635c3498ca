"""The Mixpeek bucket target: files become objects, objects go to the processing pipeline.

The contract is the vendor's SDK (`mixpeek` 1.3.783, OpenAPI v0.82; see
`../shared/reference/mixpeek-api.md` section 3), and `tests/fake_mixpeek.py` checks every
request this module sends with the SDK's own models. HTTP, retries and errors live in
`targets/mixpeek_http.py`. Calls, under `/v1/buckets/{bucket_id}`:

- `POST .../objects/batch {objects: [CreateObjectRequest] (≤ 100)}` → `{succeeded, failed:
  [{object_index, error, error_type}]}`, 200, or 422 with the same body when every object failed.
  Each object: `{blobs, metadata, idempotency_key, skip_duplicates: false}`.
- `POST .../objects/list?limit=&cursor=` `{filters, select}` → `{results, pagination:
  {next_cursor}}`; `DELETE .../objects/{id}`.
- Local files: `POST .../uploads {filename, content_type, file_size_bytes, blob_property,
  blob_type, create_object_on_confirm: false, skip_duplicates: false}`, then `PUT` the bytes
  to the presigned URL with `Content-Type: <content_type>` (the URL enforces it), then
  `POST .../uploads/{id}/confirm {etag, file_size_bytes}`; the object references the upload
  by `upload_id`. Every object, local or remote, is created by the same bulk call.
- `POST .../batches {object_ids, dedup_strategy: replace}` then at once
  `POST .../batches/{id}/submit`; `GET .../batches/{id}`, `GET /v1/tasks/{id}`.

One object per file version (ObjectSpec, `targets/base.py`):
1. Every create carries the spec's `idempotency_key` (sync, source key, fingerprint): a retried
   or replayed create returns the object that already exists (`replayed`), so an ambiguous
   failure (5xx, a dropped connection after the API acted) is simply retried.
2. A spec marked `interrupted` (an earlier attempt may have created objects without recording
   them, or an object predates idempotency keys) first lists the bucket's objects by
   `metadata.mixsync.source_ref`: one holding the spec's fingerprint is reused, the others are
   retired.
3. A changed file is a new object with the new bytes (`PUT` cannot replace blobs); the object
   it `replaces` is deleted only once the new one exists. The engine then submits the new one.
4. Batches are submitted the moment they are created, so none waits in DRAFT for the reaper.
   A lost create reply can leave an empty-handed DRAFT behind: it is never submitted, and the
   API cancels it after its draft TTL (nothing is processed twice). A lost submit reply is
   settled by reading the batch: not DRAFT any more means it was submitted. A batch the reaper
   cancelled before its submit (a long outage) is replaced by a new one.
5. `dedup_strategy: replace`: a batch holds objects mixsync wants processed as they are now.
   A new object has no documents (replace = skip); an object sent again (`skip_duplicates:
   false`, or adopted after a crash) is reprocessed rather than skipped.

Where the data goes: `metadata` = the sync's `metadata`, then the mapped fields (a mapped field
wins over a sync metadata key of the same name), then `mixsync`: `{sync, provider, connection,
source_key, fingerprint, source_ref}`. A mapped field named `mixsync` fails that file. Blob
`type` is the bucket's `blob_type`, or with `auto` derived from the MIME type (`video/*`,
`image/*`, `audio/*`, `text/*` and JSON/XML/YAML → text, PDF → pdf, Excel/ODS → excel; a file
whose type cannot be told fails with a message saying to set `blob_type`). Blob mappings
(`ObjectSpec.blobs`) add blobs: a URL value is sent as `data`, other text inline (as a data URI
when `mime_type_override` names its type); a value equal to the spec's `uri` is the file
itself; a mapping onto the primary property (`blob_property`) replaces the primary blob.
`mime_type_override` sets the type a blob is derived from and an upload's `content_type`.

Failures: a file the API refuses (by `object_index`, or by location in a refused body) fails
alone, with the API's text; an outage raises TransientError (the run fails, files stay
pending); refused credentials raise AuthError. Secrets stay out of every message.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from mixsync_dagster.config import MixpeekBucket
from mixsync_dagster.errors import AuthError, FileVanished, ProviderError, TransientError
from mixsync_dagster.targets.base import BlobSpec, ObjectResult, ObjectSpec, SubmittedBatch
from mixsync_dagster.targets.mixpeek_http import (
    ApiError,
    MixpeekHttp,
    MixpeekRejected,
    RetryBudget,
    loc_text,
)

__all__ = ["DEFAULT_BUDGET", "MixpeekRejected", "MixpeekTarget", "RetryBudget", "blob_type_for"]

DEFAULT_BUDGET = RetryBudget()
MAX_OBJECTS_PER_CALL = 100
"""The API's cap on `objects/batch`."""
LOOKUP_REFS_PER_CALL = 100
LIST_PAGE_SIZE = 1000
"""The API's cap on `limit` for objects/list."""
TRACKING_KEY = "mixsync"
SOURCE_REF_FIELD = f"metadata.{TRACKING_KEY}.source_ref"
UPLOAD_CHUNK_BYTES = 1 << 20
SMALL_FILE_BYTES = 8 << 20
"""Files up to this size are PUT from memory in one piece; larger ones are streamed."""
DEDUP_STRATEGY = "replace"
SUBMIT_TRIES = 3
"""Batches created per submit_batch when the reaper keeps cancelling the draft first."""

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


def blob_type_for(mime_type: str | None, configured: str | None = "auto") -> str | None:
    """The Mixpeek blob type of a file: the configured one, else from its MIME type (or None)."""
    if configured and configured != "auto":
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


def _size_of(f: BinaryIO, fallback: int) -> int:
    try:
        return os.fstat(f.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        return fallback


def _is_url(value: str) -> bool:
    return value.startswith(("https://", "http://", "s3://"))


@dataclass
class _Prepared:
    """One spec's create body; `upload` is set while its primary blob still needs one."""

    body: dict[str, Any]
    upload: tuple[ObjectSpec, str, str] | None = None
    """(spec, content type, blob type) of a local file to upload first."""


class _Failed(Exception):
    """This one file cannot be sent as it is."""


_UPLOAD: Any = object()
"""Stands for the upload id of the spec's file until the upload is confirmed."""


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
        self.upload_concurrency = max(1, upload_concurrency)
        self.http = MixpeekHttp(
            bucket_name,
            self.base_url,
            spec.api_key.get_secret_value(),
            spec.namespace.get_secret_value(),
            timeout_seconds=spec.timeout_seconds,
            retry=retry or DEFAULT_BUDGET,
            pool_size=self.upload_concurrency + 4,
        )
        self._prefix = f"/v1/buckets/{quote(self.bucket_id, safe='')}"

    def __repr__(self) -> str:
        return (
            f"MixpeekTarget(bucket={self.bucket_name!r}, bucket_id={self.bucket_id!r}, "
            f"base_url={self.base_url!r})"
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> MixpeekTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ BucketTarget

    def put_objects(self, specs: list[ObjectSpec]) -> list[ObjectResult]:
        """Leave one live object per spec holding its fingerprint (see the module docstring)."""
        results: list[ObjectResult | None] = [None] * len(specs)
        retire: list[set[str]] = [{s.replaces} if s.replaces else set() for s in specs]
        interrupted = [i for i, s in enumerate(specs) if s.interrupted]
        if interrupted:
            found = self.find_objects([specs[i].source_ref for i in interrupted])
            for i in interrupted:
                objs = found.get(specs[i].source_ref, [])
                same = [oid for oid, fp in objs if fp == specs[i].fingerprint]
                if same:
                    results[i] = ObjectResult(object_id=same[0], created=False)
                retire[i] |= {oid for oid, _ in objs}
        todo = [i for i, r in enumerate(results) if r is None]
        ready: list[tuple[int, dict[str, Any]]] = []
        for i, p in zip(todo, self._prepare([specs[i] for i in todo]), strict=True):
            if isinstance(p, ObjectResult):
                results[i] = p
            else:
                ready.append((i, p))
        for chunk in _chunks(ready, MAX_OBJECTS_PER_CALL):
            for (i, _), res in zip(chunk, self._create_chunk([b for _, b in chunk]), strict=True):
                results[i] = res
        done = [r if r is not None else ObjectResult(error="not processed") for r in results]
        return self._retire(specs, done, retire)

    def _retire(
        self, specs: list[ObjectSpec], results: list[ObjectResult], retire: list[set[str]]
    ) -> list[ObjectResult]:
        """Delete the objects the new ones replace, once the new ones exist."""
        doomed = {
            i: sorted(retire[i] - {res.object_id})
            for i, res in enumerate(results)
            if res.object_id and retire[i] - {res.object_id}
        }
        errors = self.delete_objects(sorted({oid for ids in doomed.values() for oid in ids}))
        for i, ids in doomed.items():
            bad = [f"{oid}: {errors[oid]}" for oid in ids if oid in errors]
            if bad:
                results[i] = ObjectResult(
                    error=f"{specs[i].source_key}: the new object {results[i].object_id} exists "
                    f"but the one it replaces could not be deleted ({'; '.join(bad)})"
                )
        return results

    def delete_objects(self, object_ids: list[str]) -> dict[str, str]:
        """Delete objects; one that is gone already counts as deleted."""
        errors: dict[str, str] = {}
        for oid in object_ids:
            path = f"{self._prefix}/objects/{quote(oid, safe='')}"
            try:
                self.http.call("DELETE", path, accept=(404,))
            except MixpeekRejected as e:
                errors[oid] = str(e)
        return errors

    def submit_batch(self, object_ids: list[str]) -> SubmittedBatch:
        """Create a batch and submit it at once; a submit whose answer was lost is settled by
        reading the batch, a draft the reaper cancelled first is replaced."""
        for _ in range(SUBMIT_TRIES):
            data = self.http.json(
                "POST",
                f"{self._prefix}/batches",
                body={"object_ids": list(object_ids), "dedup_strategy": DEDUP_STRATEGY},
            )
            batch_id = str(data["batch_id"])
            status, task_id = self._submit(batch_id)
            if status not in ("CANCELED", "CANCELLED"):
                return SubmittedBatch(batch_id, task_id)
        raise TransientError(
            f"Mixpeek bucket '{self.bucket_name}' cancelled {SUBMIT_TRIES} draft batches "
            "before they could be submitted"
        )

    def _submit(self, batch_id: str) -> tuple[str, str | None]:
        """(status after submitting, task id) of a DRAFT batch."""
        seen: dict[str, Any] = {}

        def submitted() -> bool:
            batch = self.get_batch(batch_id)
            seen.update(batch)
            return str(batch.get("status", "")).upper() != "DRAFT"

        path = f"{self._prefix}/batches/{quote(batch_id, safe='')}/submit"
        resp = self.http.call("POST", path, body={}, accept=(400,), recheck=submitted)
        if resp is not None and resp.is_success:
            task = resp.json().get("task_id")
            return str(resp.json().get("status") or "PENDING"), str(task) if task else None
        if resp is not None and not submitted():  # 400 for a DRAFT: refused for another reason
            raise self.http.refused(resp, f"POST {path}")
        task = seen.get("task_id")
        return str(seen.get("status", "")).upper(), str(task) if task else None

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """The batch record: DRAFT → PENDING → IN_PROGRESS → COMPLETED | FAILED | ..."""
        data: dict[str, Any] = self.http.json(
            "GET", f"{self._prefix}/batches/{quote(batch_id, safe='')}"
        )
        return data

    def batch_status(self, batch_id: str) -> str:
        """The batch's status (upper case), read from the batch record."""
        return str(self.get_batch(batch_id).get("status", "UNKNOWN")).upper()

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        """The task's record, or None once the API has forgotten it (read the batch then)."""
        resp = self.http.call("GET", f"/v1/tasks/{quote(task_id, safe='')}", accept=(404,))
        if resp is None or resp.status_code == 404:
            return None
        data: dict[str, Any] = resp.json()
        return data

    def find_objects(self, source_refs: list[str]) -> dict[str, list[tuple[str, str | None]]]:
        """The bucket's objects by source reference: [(object id, fingerprint)], oldest first."""
        wanted = list(dict.fromkeys(source_refs))
        out: dict[str, list[tuple[str, str | None]]] = {}
        for chunk in _chunks(wanted, LOOKUP_REFS_PER_CALL):
            refs = set(chunk)
            body = {
                "filters": {
                    "AND": [{"field": SOURCE_REF_FIELD, "operator": "in", "value": list(chunk)}],
                    "case_sensitive": True,
                },
                "select": [f"metadata.{TRACKING_KEY}"],
            }
            cursor: str | None = None
            while True:
                params: dict[str, Any] = {"limit": LIST_PAGE_SIZE}
                if cursor:
                    params["cursor"] = cursor
                data = self.http.json(
                    "POST", f"{self._prefix}/objects/list", params=params, body=body
                )
                for obj in data.get("results") or []:
                    track = (obj.get("metadata") or {}).get(TRACKING_KEY) or {}
                    ref = track.get("source_ref")
                    if isinstance(ref, str) and ref in refs:
                        out.setdefault(ref, []).append(
                            (str(obj["object_id"]), track.get("fingerprint"))
                        )
                cursor = (data.get("pagination") or {}).get("next_cursor")
                if not cursor:
                    break
        return out

    def check(self) -> str:
        """Verify the key, the namespace and the bucket (and that the blob property exists)."""
        try:
            resp = self.http.call("GET", self._prefix, accept=(400, 404))
        except AuthError:
            raise AuthError(
                f"Mixpeek refused the API key of bucket '{self.bucket_name}' (HTTP 401/403): "
                "check api_key"
            ) from None
        assert resp is not None
        if resp.status_code == 400:
            raise ProviderError(
                f"Mixpeek refused the namespace of bucket '{self.bucket_name}': "
                f"{self.http.redact(str(self.http.refused(resp, 'GET bucket')))}; check namespace"
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

    # ------------------------------------------------------------ creating

    def _create_chunk(self, bodies: Sequence[dict[str, Any]]) -> list[ObjectResult]:
        """One bulk create of ≤ 100 objects. Retried creates replay by idempotency key."""
        path = f"{self._prefix}/objects/batch"
        results: dict[int, ObjectResult] = {}
        pending = list(range(len(bodies)))
        while pending:
            resp = self.http.call(
                "POST",
                path,
                body={"objects": [bodies[i] for i in pending]},
                accept=(400, 413, 422),
            )
            assert resp is not None
            data = resp.json() if resp.headers.get("content-type", "").startswith("app") else {}
            sent, pending = pending, []
            if isinstance(data, dict) and "succeeded" in data and "failed" in data:
                self._read_bulk(data, sent, results)
                continue
            # The whole call was refused: fail the objects the API named, send the others again.
            err = self.http.refused(resp, f"POST {path}")
            if not isinstance(err, MixpeekRejected):
                raise err
            blamed = self._blame(err.error, len(sent))
            if not blamed:
                for i in sent:
                    results[i] = ObjectResult(error=str(err))
                continue
            for pos, msgs in blamed.items():
                results[sent[pos]] = ObjectResult(
                    error=f"Mixpeek rejected the object (HTTP {err.status}): " + "; ".join(msgs)
                )
            pending = [i for pos, i in enumerate(sent) if pos not in blamed]
        return [results.get(i, ObjectResult(error="not processed")) for i in range(len(bodies))]

    def _blame(self, error: ApiError, sent: int) -> dict[int, list[str]]:
        blamed: dict[int, list[str]] = {}
        for loc, msg in error.problems():
            rest = [p for p in loc if p != "body"]
            pos = rest[1] if len(rest) >= 2 and rest[0] == "objects" else None
            if isinstance(pos, int) and 0 <= pos < sent:
                text = f"{loc_text(rest[2:])}: {self.http.redact(msg)}"
                blamed.setdefault(pos, []).append(text)
        return blamed

    def _read_bulk(
        self, data: dict[str, Any], sent: list[int], results: dict[int, ObjectResult]
    ) -> None:
        """Rows by `object_index` (the position in this request)."""
        for row in data.get("failed") or []:
            pos = row.get("object_index")
            if isinstance(pos, int) and 0 <= pos < len(sent):
                kind = f" ({row['error_type']})" if row.get("error_type") else ""
                text = self.http.redact(str(row.get("error") or "no reason given"))
                results[sent[pos]] = ObjectResult(
                    error=f"Mixpeek rejected the object{kind}: {text}"
                )
        for row in data.get("succeeded") or []:
            pos = row.get("object_index")
            if isinstance(pos, int) and 0 <= pos < len(sent) and row.get("object_id"):
                results[sent[pos]] = ObjectResult(
                    object_id=str(row["object_id"]), created=not row.get("replayed", False)
                )
        for i in sent:
            results.setdefault(i, ObjectResult(error="Mixpeek's answer did not mention the object"))

    # ------------------------------------------------------------ object bodies

    def _metadata(self, spec: ObjectSpec) -> dict[str, Any]:
        if TRACKING_KEY in spec.fields:
            raise _Failed(
                f"mapped field '{TRACKING_KEY}' clashes with the source-tracking metadata key; "
                "rename the mapping target"
            )
        meta = {k: v for k, v in spec.metadata.items() if k != TRACKING_KEY}
        meta.update(spec.fields)
        tracking = dict(spec.metadata.get(TRACKING_KEY) or {})
        tracking.update(
            source_key=spec.source_key, fingerprint=spec.fingerprint, source_ref=spec.source_ref
        )
        meta[TRACKING_KEY] = tracking
        return meta

    def _blob_type(self, mime: str | None, configured: str | None, what: str) -> str:
        btype = blob_type_for(mime, configured)
        if btype is None:
            raise _Failed(
                f"cannot tell the Mixpeek blob type of {what} (MIME type {mime or 'unknown'}); "
                f"set blob_type on bucket '{self.bucket_name}' or on the blob mapping"
            )
        return btype

    def _body(self, spec: ObjectSpec) -> _Prepared:
        """The create body of one spec; a local file's blobs wait for its upload."""
        mapped = {b.property: b for b in spec.blobs}
        primary = mapped.pop(self.blob_property, None)
        upload = None
        blobs: list[dict[str, Any]] = []
        if primary is not None and primary.value != spec.uri:
            blobs.append(self._extra_blob(primary))  # the mapping replaces the file's blob
        else:
            mime = (primary.mime_type_override if primary else None) or spec.mime_type
            configured = primary.blob_type if primary and primary.blob_type else self.blob_type
            btype = self._blob_type(mime, configured, spec.source_key)
            url = spec.fetch_url() if spec.fetch_url is not None else None
            if url is not None and _is_url(url):
                source: dict[str, Any] = {"data": url}
            elif spec.open_blob is not None:
                source = {"upload_id": _UPLOAD}
                upload = (spec, mime or "application/octet-stream", btype)
            else:
                raise _Failed("the provider gave no URL the bucket can fetch")
            blobs.append({"property": self.blob_property, "type": btype, **source})
            for b in mapped.values():
                if b.value == spec.uri:  # the file itself, under another property too
                    other = b.blob_type if b.blob_type and b.blob_type != "auto" else btype
                    blobs.append({"property": b.property, "type": other, **source})
        blobs += [self._extra_blob(b) for b in mapped.values() if b.value != spec.uri]
        body = {
            "blobs": blobs,
            "metadata": self._metadata(spec),
            "idempotency_key": spec.idempotency_key,
            "skip_duplicates": False,
        }
        return _Prepared(body, upload)

    def _extra_blob(self, b: BlobSpec) -> dict[str, Any]:
        """A mapped blob: a URL the API fetches, or inline content."""
        value = str(b.value)
        url = _is_url(value)
        mime = b.mime_type_override
        if mime is None and not url:
            mime = "text/plain"
        guess = mime or _guess_mime(value)
        btype = self._blob_type(guess, b.blob_type, f"blob mapping '{b.property}'")
        if url:
            data: Any = value
        elif b.mime_type_override and b.mime_type_override != "text/plain":
            data = f"data:{mime};base64,{base64.b64encode(value.encode()).decode()}"
        else:
            data = value  # inline text (the API takes it for type text)
        return {"property": b.property, "type": btype, "data": data}

    def _prepare(self, specs: Sequence[ObjectSpec]) -> list[dict[str, Any] | ObjectResult]:
        """Each spec's create body, uploading local files first; or its failure."""
        out: list[dict[str, Any] | ObjectResult] = []
        waiting: list[tuple[int, _Prepared]] = []
        for spec in specs:
            try:
                p = self._body(spec)
            except _Failed as e:
                out.append(ObjectResult(error=f"{spec.source_key}: {e}"))
                continue
            out.append(p.body)
            if p.upload is not None:
                waiting.append((len(out) - 1, p))
        if waiting:
            workers = min(self.upload_concurrency, len(waiting))
            with ThreadPoolExecutor(workers, thread_name_prefix="mixpeek-upload") as pool:
                done = list(pool.map(self._upload, [p for _, p in waiting]))
            for (i, p), res in zip(waiting, done, strict=True):
                if isinstance(res, ObjectResult):
                    out[i] = res
                    continue
                for blob in p.body["blobs"]:
                    if blob.get("upload_id") is _UPLOAD:
                        blob["upload_id"] = res
        return out

    def _upload(self, p: _Prepared) -> str | ObjectResult:
        """Upload a local file through a presigned URL; returns the confirmed upload id."""
        assert p.upload is not None
        spec, content_type, btype = p.upload
        assert spec.open_blob is not None
        try:
            f = spec.open_blob()
        except FileVanished as e:
            return ObjectResult(error=str(e), vanished=True)
        except OSError as e:
            return ObjectResult(error=f"cannot read {spec.source_key}: {e.strerror or e}")
        with f:
            size = _size_of(f, spec.size)
            sized = {"file_size_bytes": size} if size > 0 else {}
            try:
                up = self.http.json(
                    "POST",
                    f"{self._prefix}/uploads",
                    body={
                        "filename": _upload_name(spec.source_key),
                        "content_type": content_type,
                        **sized,
                        "blob_property": self.blob_property,
                        "blob_type": btype.upper(),
                        "create_object_on_confirm": False,
                        "skip_duplicates": False,
                    },
                )
                upload_id = str(up["upload_id"])
                etag = self.http.put_presigned(
                    str(up["presigned_url"]), _reader(f, size), size, content_type
                )
                confirm = {**sized, **({"etag": etag} if etag else {})}
                self.http.call(
                    "POST",
                    f"{self._prefix}/uploads/{quote(upload_id, safe='')}/confirm",
                    body=confirm,
                )
            except MixpeekRejected as e:
                return ObjectResult(error=f"{spec.source_key}: upload refused: {e}")
            except OSError as e:
                return ObjectResult(error=f"cannot read {spec.source_key}: {e.strerror or e}")
        return upload_id


def _reader(f: BinaryIO, size: int) -> Any:
    """A body factory for one PUT attempt: the bytes of a small file, a stream of a big one."""

    def stream() -> Iterator[bytes]:
        f.seek(0)
        while chunk := f.read(UPLOAD_CHUNK_BYTES):
            yield chunk

    def body() -> bytes | Iterator[bytes]:
        if size > SMALL_FILE_BYTES:
            return stream()  # streamed: memory stays at one chunk
        f.seek(0)
        return f.read()  # one write for a small file

    return body


def _upload_name(source_key: str) -> str:
    """CreateUploadRequest.filename: a name without path characters, ≤ 255 characters."""
    name = source_key.rsplit("/", 1)[-1].replace("\\", "_")[-255:] or "file"
    return name if name not in (".", "..") else "file"


def _guess_mime(url: str) -> str | None:
    import mimetypes

    return mimetypes.guess_type(urlsplit(url).path, strict=False)[0]
