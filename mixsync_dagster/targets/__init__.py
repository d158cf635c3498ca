"""Bucket targets: where synced files become objects. One small interface, several backends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from mixsync_dagster.config import MixsyncConfig


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """What a target needs to register one file as an object."""

    source_ref: str
    """Idempotency key: provider:connection:source key. One object per ref per bucket, ever."""
    source_key: str
    blob_url: str | None
    mime_type: str | None
    size: int
    fingerprint: str
    metadata: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    open_blob: Callable[[], BinaryIO] | None = None
    """Reads the bytes, for targets that ingest them; raises FileVanished if the file is gone."""


@dataclass(frozen=True, slots=True)
class ObjectResult:
    """Outcome for one spec, in the order given. Exactly one of object_id / error is set."""

    object_id: str | None = None
    created: bool = False
    """False when the object already existed for this source_ref (idempotent replay)."""
    error: str | None = None
    vanished: bool = False


class BucketTarget(Protocol):
    """Create objects in bulk (idempotently), update, delete, and batch them for processing."""

    def create_objects(self, specs: list[ObjectSpec]) -> list[ObjectResult]: ...

    def find_objects(self, source_refs: list[str]) -> dict[str, str]:
        """Existing objects by source reference (ref -> object id): how a retry learns what an
        interrupted attempt already created."""
        ...

    def update_object(self, object_id: str, spec: ObjectSpec) -> ObjectResult: ...

    def delete_object(self, object_id: str) -> None: ...

    def create_batch(self, object_ids: list[str]) -> str: ...

    def check(self) -> str:
        """Verify credentials and that the bucket exists; a one-line summary, or raise."""
        ...

    def batch_status(self, batch_id: str) -> str:
        """The batch's processing status as the bucket reports it (COMPLETED, FAILED, ...)."""
        ...

    def submit_batch(self, batch_id: str) -> str | None:
        """Hand the batch to the processing pipeline; returns a task id when there is one."""
        ...


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
