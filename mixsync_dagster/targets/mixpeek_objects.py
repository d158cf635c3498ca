"""Mixpeek object bodies: what one file version becomes in a create call, uploads included.

See `targets/mixpeek.py` for the calls and the guarantees; this module builds the
CreateObjectRequest of each ObjectSpec: the primary blob (a URL the API fetches, or an upload
of a local file: create upload, PUT the bytes with the signed Content-Type, confirm), extra
blobs from blob mappings, the metadata with source tracking, and the idempotency key.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from mixsync_dagster.targets.base import READ_ERRORS, BlobSpec, ObjectResult, ObjectSpec, unreadable
from mixsync_dagster.targets.mixpeek_http import MixpeekHttp, MixpeekRejected

TRACKING_KEY = "mixsync"
UPLOAD_CHUNK_BYTES = 1 << 20
SMALL_FILE_BYTES = 8 << 20
"""Files up to this size are PUT from memory in one piece; larger ones are streamed."""

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


class ObjectBodies:
    """Builds create bodies for one bucket, uploading local files first."""

    def __init__(
        self,
        http: MixpeekHttp,
        prefix: str,
        *,
        bucket_name: str,
        blob_property: str,
        blob_type: str,
        upload_concurrency: int,
    ):
        self.http = http
        self._prefix = prefix
        self.bucket_name = bucket_name
        self.blob_property = blob_property
        self.blob_type = blob_type
        self.upload_concurrency = upload_concurrency

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

    def prepare(self, specs: Sequence[ObjectSpec]) -> list[dict[str, Any] | ObjectResult]:
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
        except READ_ERRORS as e:
            return unreadable(spec, e)
        with f:
            size = _size_of(f, spec.size)
            sized = {"file_size_bytes": size} if size > 0 else {}
            try:
                up = self.http.json(
                    "POST",
                    f"{self._prefix}/uploads",
                    body={
                        # A Drive key is an opaque id: the provider's name is the file's name.
                        "filename": _upload_name(spec.name or spec.source_key),
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
    return mimetypes.guess_type(urlsplit(url).path, strict=False)[0]
