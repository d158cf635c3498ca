"""Bucket targets: where synced files become objects. One small interface, several backends."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from mixsync_dagster.errors import FileVanished, PermanentFileError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from mixsync_dagster.config import MixsyncConfig


@dataclass(frozen=True, slots=True)
class BlobSpec:
    """An extra blob of an object, from a `target_type: blob` mapping."""

    property: str
    """The bucket schema property the blob fills."""
    value: Any
    """What the mapping produced: a URL the bucket can fetch, or inline text. A value equal to
    the spec's `uri` is the file itself (sent as the target sends the file: presigned URL or
    upload)."""
    blob_type: str | None = None
    """auto | video | image | audio | text | pdf | excel; None or auto: from the MIME type."""
    mime_type_override: str | None = None
    """The MIME type to declare instead of the detected one."""


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """What a target needs to register one file (at one content version) as an object."""

    source_ref: str
    """provider:connection:source key. At most one live object per ref per bucket."""
    source_key: str
    fingerprint: str
    """The content version; an object holding another fingerprint is stale."""
    idempotency_key: str
    """Derived from (sync, source key, fingerprint): a retried create returns the same object."""
    uri: str
    """A stable locator of the source file (file://, s3://, gs://, mux://): safe to store and
    print, never signed."""
    mime_type: str | None
    size: int
    """From the listing; 0 when the provider cannot tell before reading (a Drive export)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    blobs: tuple[BlobSpec, ...] = ()
    fetch_url: Callable[[], str] | None = None
    """Makes a URL the bucket can fetch (may presign): called only by targets that need one,
    at the moment they need it. The URL is never stored or printed."""
    open_blob: Callable[[], BinaryIO] | None = None
    """Reads the bytes, for targets that ingest them; raises FileVanished if the file is gone."""
    replaces: str | None = None
    """The object holding the previous version of this file: retired once the new one exists."""
    name: str | None = None
    """The file's name (`rel_path`'s last part), for targets that upload bytes: a source key
    may be an opaque id (Drive)."""
    interrupted: bool = False
    """An earlier attempt may have created objects for this ref without recording them: reuse
    the one holding this fingerprint, retire the others."""


READ_ERRORS = (FileVanished, PermanentFileError, OSError)
"""What `ObjectSpec.open_blob` (or reading what it returns) raises for one file."""


def unreadable(spec: ObjectSpec, e: Exception) -> ObjectResult:
    """The result for a file whose bytes could not be read (`e` is one of READ_ERRORS)."""
    if isinstance(e, FileVanished):
        return ObjectResult(error=str(e), vanished=True)
    if isinstance(e, OSError):
        return ObjectResult(error=f"cannot read {spec.source_key}: {e.strerror or e}")
    return ObjectResult(error=str(e))  # e.g. a Drive document too large to export


def idempotency_key(sync: str, source_key: str, fingerprint: str) -> str:
    """A create key that names one content version of one file of one sync (≤ 255 chars)."""
    digest = hashlib.sha256(f"{sync}\0{source_key}\0{fingerprint}".encode()).hexdigest()
    return f"mixsync-{digest[:48]}"


@dataclass(frozen=True, slots=True)
class ObjectResult:
    """Outcome for one spec, in the order given. Exactly one of object_id / error is set."""

    object_id: str | None = None
    created: bool = False
    """False when an existing object was reused (idempotent replay, adoption after a crash)."""
    error: str | None = None
    vanished: bool = False
    """The file was gone when the target read it: not a failure of the sync."""


@dataclass(frozen=True, slots=True)
class SubmittedBatch:
    batch_id: str
    task_id: str | None = None


class BucketTarget(Protocol):
    """Put objects (idempotently), delete them, and hand them to the processing pipeline."""

    one_object_per_ref: bool
    """True when the bucket itself keeps one object per source reference (updating it in
    place); False when a retry could leave a second object, so the engine records its intent
    before each put and marks interrupted specs."""

    def put_objects(self, specs: list[ObjectSpec]) -> list[ObjectResult]:
        """For each spec, leave exactly one live object holding the file at its fingerprint and
        return that object's id (results in the order of `specs`).

        Creates are idempotent by `idempotency_key`; `replaces` is retired only after the new
        object exists; an `interrupted` spec first looks up what an earlier attempt made. A
        failure of one file is its ObjectResult.error; an outage raises TransientError; refused
        credentials raise AuthError.
        """
        ...

    def delete_objects(self, object_ids: list[str]) -> dict[str, str]:
        """Delete objects; returns an error message by object id for those that could not be
        deleted. An object that is gone already counts as deleted."""
        ...

    def submit_batch(self, object_ids: list[str]) -> SubmittedBatch:
        """Hand objects to the processing pipeline at once (never left as a draft)."""
        ...

    def submit_batches(self, groups: list[list[str]]) -> list[SubmittedBatch]:
        """`submit_batch` for each group, in order (a target may do them in one go)."""
        ...

    def batch_status(self, batch_id: str) -> str:
        """The batch's processing status as the bucket reports it (COMPLETED, FAILED, ...)."""
        ...

    def check(self) -> str:
        """Verify credentials and that the bucket exists; a one-line summary, or raise."""
        ...


TERMINAL_BATCH_STATUSES = frozenset(
    {
        "COMPLETED",
        "COMPLETED_WITH_ERRORS",
        "FAILED",
        "CANCELED",
        "CANCELLED",
        "INTERRUPTED",
        "SKIPPED",
    }
)
"""Batch statuses that never change again: no need to ask the bucket about them."""
FAILED_BATCH_STATUSES = frozenset(
    {"FAILED", "CANCELED", "CANCELLED", "COMPLETED_WITH_ERRORS", "INTERRUPTED"}
)


def get_target(cfg: MixsyncConfig, bucket: str, engine: Engine) -> BucketTarget:
    """The target for a declared bucket; the local bucket lives in the state database."""
    spec = cfg.buckets[bucket]
    if spec.target == "local":
        from mixsync_dagster.targets.local import LocalBucketTarget

        return LocalBucketTarget(engine, bucket)
    if spec.target == "mixpeek":
        from mixsync_dagster.targets.mixpeek import MixpeekTarget

        return MixpeekTarget(bucket, spec)
    raise AssertionError(f"unhandled bucket target {spec.target}")
