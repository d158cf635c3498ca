"""The embedded bucket: objects and batches in the state database, no account needed."""

from __future__ import annotations

import hashlib
import random
import time
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)

from mixsync_dagster.core.records import utcnow
from mixsync_dagster.targets.base import (
    READ_ERRORS,
    ObjectResult,
    ObjectSpec,
    SubmittedBatch,
    unreadable,
)

local_metadata = MetaData()

objects = Table(
    "local_bucket_objects",
    local_metadata,
    Column("object_id", String(40), primary_key=True),
    Column("bucket", String(64), nullable=False),
    Column("source_ref", Text, nullable=False),
    Column("source_key", Text, nullable=False),
    Column("uri", Text),
    Column("mime_type", String(255)),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64)),
    Column("fingerprint", Text, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("fields", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # DRAFT | PROCESSED
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
    UniqueConstraint("bucket", "source_ref", name="uq_local_object_source"),
)

batches = Table(
    "local_bucket_batches",
    local_metadata,
    Column("batch_id", String(40), primary_key=True),
    Column("bucket", String(64), nullable=False),
    Column("object_ids", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # DRAFT | COMPLETED
    Column("task_id", String(40)),
    Column("created_at", DateTime(timezone=True)),
    Column("submitted_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
)


def new_id(prefix: str) -> str:
    """A unique id that sorts by creation time (nanoseconds, then 48 random bits): inserts land
    at the end of the primary-key index instead of all over it, which keeps a bucket of
    millions of objects fast to fill. `random` (reseeded in every forked child) rather than
    os.urandom: ids need to be unique, not secret, and a syscall per object showed up in the
    first pass's profile."""
    return f"{prefix}{time.time_ns():016x}{random.getrandbits(48):012x}"


UPDATE_CHUNK = 500
"""Object ids per UPDATE: well under SQLite's bound-variable limit."""
READ_CHUNK = 1 << 16
"""Bytes per read while hashing. 64 KiB stays below malloc's mmap threshold: 1 MiB reads of
small files mapped and unmapped a buffer per file, a fifth of a million-file first pass."""


def _digest(spec: ObjectSpec) -> str | None:
    if spec.open_blob is None:
        return None
    h = hashlib.sha256()
    with spec.open_blob() as f:
        while chunk := f.read(READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read(spec: ObjectSpec) -> str | ObjectResult | None:
    """The blob's sha256, or the ObjectResult that says why it could not be read."""
    try:
        return _digest(spec)
    except READ_ERRORS as e:
        return unreadable(spec, e)


class LocalBucketTarget:
    """A bucket kept in SQL. Reads each blob once (sha256), so a vanished file is noticed.

    One object per source reference (a unique constraint): a new version of a file replaces
    the object's content in place, which this bucket, unlike Mixpeek's, can do.
    """

    one_object_per_ref = True

    def __init__(self, engine: Engine, bucket: str):
        self.engine = engine
        self.bucket = bucket

    def put_objects(self, specs: list[ObjectSpec]) -> list[ObjectResult]:
        results: list[ObjectResult | None] = [None] * len(specs)
        digests: dict[int, str | None] = {}
        for i, read in enumerate(map(_read, specs)):
            if isinstance(read, ObjectResult):
                results[i] = read
            else:
                digests[i] = read
        live = [i for i in range(len(specs)) if results[i] is None]
        now = utcnow()
        with self.engine.begin() as c:
            refs = [specs[i].source_ref for i in live]
            existing = (
                {
                    r.source_ref: (r.object_id, r.fingerprint)
                    for r in c.execute(
                        select(
                            objects.c.source_ref, objects.c.object_id, objects.c.fingerprint
                        ).where(
                            and_(objects.c.bucket == self.bucket, objects.c.source_ref.in_(refs))
                        )
                    )
                }
                if refs
                else {}
            )
            rows: list[dict[str, Any]] = []
            for i in live:
                spec = specs[i]
                found = existing.get(spec.source_ref)
                if found is not None:
                    oid, fingerprint = found
                    if fingerprint != spec.fingerprint:
                        c.execute(
                            update(objects)
                            .where(objects.c.object_id == oid)
                            .values(**self._row(spec, digests[i], now))
                        )
                        existing[spec.source_ref] = (oid, spec.fingerprint)
                    results[i] = ObjectResult(object_id=oid, created=False)
                    continue
                oid = new_id("obj_")
                existing[spec.source_ref] = (oid, spec.fingerprint)
                rows.append(
                    self._row(spec, digests[i], now) | {"object_id": oid, "created_at": now}
                )
                results[i] = ObjectResult(object_id=oid, created=True)
            if rows:
                c.execute(insert(objects), rows)
        return [r if r is not None else ObjectResult(error="not processed") for r in results]

    def _row(self, spec: ObjectSpec, sha: str | None, now: datetime) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "source_ref": spec.source_ref,
            "source_key": spec.source_key,
            "uri": spec.uri,
            "mime_type": spec.mime_type,
            "size_bytes": spec.size,
            "sha256": sha,
            "fingerprint": spec.fingerprint,
            "metadata": spec.metadata,
            "fields": spec.fields,
            "status": "DRAFT",
            "updated_at": now,
        }

    def delete_objects(self, object_ids: list[str]) -> dict[str, str]:
        with self.engine.begin() as c:
            c.execute(
                delete(objects).where(
                    and_(objects.c.object_id.in_(object_ids), objects.c.bucket == self.bucket)
                )
            )
        return {}

    def submit_batch(self, object_ids: list[str]) -> SubmittedBatch:
        """The local pipeline: process at once, marking the batch's objects PROCESSED."""
        return self.submit_batches([object_ids])[0]

    def submit_batches(self, groups: list[list[str]]) -> list[SubmittedBatch]:
        """Several batches in one transaction: a page's worth cost 20 commits before."""
        now = utcnow()
        out = [SubmittedBatch(new_id("btch_"), new_id("task_")) for _ in groups]
        if not groups:
            return out
        ids = [oid for g in groups for oid in g]
        with self.engine.begin() as c:
            c.execute(
                insert(batches),
                [
                    {
                        "batch_id": b.batch_id,
                        "bucket": self.bucket,
                        "object_ids": list(g),
                        "status": "COMPLETED",
                        "task_id": b.task_id,
                        "created_at": now,
                        "submitted_at": now,
                        "completed_at": now,
                    }
                    for b, g in zip(out, groups, strict=True)
                ],
            )
            # By primary key only: with `bucket = ?` in the WHERE, SQLite picks the
            # (bucket, source_ref) index and scans the whole bucket for every batch.
            for i in range(0, len(ids), UPDATE_CHUNK):
                c.execute(
                    update(objects)
                    .where(objects.c.object_id.in_(ids[i : i + UPDATE_CHUNK]))
                    .values(status="PROCESSED", updated_at=now)
                )
        return out

    def batch_status(self, batch_id: str) -> str:
        with self.engine.connect() as c:
            status = c.execute(
                select(batches.c.status).where(batches.c.batch_id == batch_id)
            ).scalar_one_or_none()
        return str(status or "UNKNOWN")

    def check(self) -> str:
        with self.engine.connect() as c:
            n = c.execute(
                select(func.count()).select_from(objects).where(objects.c.bucket == self.bucket)
            ).scalar_one()
        return f"local bucket '{self.bucket}' in the state store ({n} object(s))"

    def list_objects(self) -> list[dict[str, Any]]:
        """Every object in the bucket, oldest first (for `mixsync objects`)."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(objects)
                .where(objects.c.bucket == self.bucket)
                .order_by(objects.c.created_at, objects.c.source_key)
            ).mappings()
            return [dict(r) for r in rows]
