"""The Mixpeek bucket target: files become objects, objects go to the processing pipeline.

The contract is the vendor's SDK (`mixpeek` 1.3.783, OpenAPI v0.82; see
`../shared/reference/mixpeek-api.md` section 3), and `tests/fake_mixpeek.py` checks every
request this module sends with the SDK's own models. HTTP, retries and errors live in
`targets/mixpeek_http.py`; create bodies and uploads in `targets/mixpeek_objects.py`. Calls,
under `/v1/buckets/{bucket_id}`:

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
pending); refused credentials raise AuthError. A bucket with a `unique_key` (read once per
target from `GET /v1/buckets/{id}`) raises ProviderError before anything is uploaded: Mixpeek
refuses bulk creates there. Secrets stay out of every message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

from mixsync_dagster.config import MixpeekBucket
from mixsync_dagster.errors import AuthError, ProviderError, TransientError
from mixsync_dagster.redaction import redact
from mixsync_dagster.targets.base import ObjectResult, ObjectSpec, SubmittedBatch
from mixsync_dagster.targets.mixpeek_http import (
    ApiError,
    MixpeekHttp,
    MixpeekRejected,
    RetryBudget,
    loc_text,
)
from mixsync_dagster.targets.mixpeek_objects import TRACKING_KEY, ObjectBodies, blob_type_for

__all__ = ["DEFAULT_BUDGET", "MixpeekRejected", "MixpeekTarget", "RetryBudget", "blob_type_for"]

DEFAULT_BUDGET = RetryBudget()
MAX_OBJECTS_PER_CALL = 100
"""The API's cap on `objects/batch`."""
LOOKUP_REFS_PER_CALL = 100
LIST_PAGE_SIZE = 1000
"""The API's cap on `limit` for objects/list."""
SOURCE_REF_FIELD = f"metadata.{TRACKING_KEY}.source_ref"
DEDUP_STRATEGY = "replace"
SUBMIT_TRIES = 3
"""Batches created per submit_batch when the reaper keeps cancelling the draft first."""


def _chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class MixpeekTarget:
    """A Mixpeek bucket: one keep-alive connection pool per target, secrets kept out of sight."""

    one_object_per_ref = False

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
        self._bucket: dict[str, Any] | None = None
        self.bodies = ObjectBodies(
            self.http,
            self._prefix,
            bucket_name=bucket_name,
            blob_property=spec.blob_property,
            blob_type=spec.blob_type,
            upload_concurrency=self.upload_concurrency,
        )

    def __repr__(self) -> str:
        return (
            f"MixpeekTarget(bucket={self.bucket_name!r}, bucket_id={redact(self.bucket_id)!r}, "
            f"base_url={redact(self.base_url)!r})"
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
        if specs:
            self._refuse_unique_key()
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

    def submit_batches(self, groups: list[list[str]]) -> list[SubmittedBatch]:
        return [self.submit_batch(g) for g in groups]

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

    def _read_bucket(self) -> dict[str, Any]:
        """The bucket's record (BucketResponse), read once per target."""
        if self._bucket is not None:
            return self._bucket
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
        self._bucket = data if isinstance(data, dict) else {}
        return self._bucket

    def _refuse_unique_key(self) -> None:
        """Mixpeek refuses bulk creates in a bucket with a unique_key (422 for the whole call,
        says create_objects_batch) and mixsync creates in bulk: say so once, before any upload,
        instead of failing every file with the same 422."""
        unique = self._read_bucket().get("unique_key")
        if unique:
            fields = ", ".join(str(f) for f in unique.get("fields") or []) or "?"
            raise ProviderError(
                f"Mixpeek bucket '{self.bucket_name}' ({self.bucket_id}) has a unique_key "
                f"({fields}); Mixpeek refuses bulk object creates in such a bucket, and mixsync "
                "creates objects in bulk. Point the sync at a bucket without a unique_key "
                "(nothing was uploaded or created)"
            )

    def check(self) -> str:
        """Verify the key, the namespace and the bucket (and that the blob property exists)."""
        self._bucket = None
        data = self._read_bucket()
        self._refuse_unique_key()
        props = ((data.get("bucket_schema") or {}).get("properties")) or {}
        if props and self.blob_property not in props:
            raise ProviderError(
                f"bucket '{self.bucket_id}' has no schema property '{self.blob_property}' "
                f"(it has: {', '.join(sorted(props))}); set blob_property"
            )
        count = data.get("object_count")
        objects = f", {count} object(s)" if count is not None else ""
        return redact(
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
            try:
                data = resp.json()
            except ValueError:
                data = {}
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

    def _prepare(self, specs: Sequence[ObjectSpec]) -> list[dict[str, Any] | ObjectResult]:
        """Each spec's create body (local files uploaded first), or its failure."""
        return self.bodies.prepare(specs)
