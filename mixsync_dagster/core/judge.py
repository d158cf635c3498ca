"""Judging files: filters (cheap first, provider metadata only for survivors) and the object
spec a target receives for a file that passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mixsync_dagster.core.filters import Verdict, compile_filters, mime_type_of
from mixsync_dagster.core.mapping import Mapped, mapping_needs_metadata
from mixsync_dagster.core.records import FileItem
from mixsync_dagster.redaction import redact
from mixsync_dagster.targets.base import ObjectSpec, idempotency_key

if TYPE_CHECKING:
    from mixsync_dagster.core.runtime import SyncRuntime

ENRICH_CHUNK = 100


def make_evaluator(rt: SyncRuntime) -> Callable[[list[FileItem]], list[tuple[FileItem, Verdict]]]:
    """A function that judges files against the sync's filters, in input order.

    Cheap checks run first; provider metadata is fetched (`enrich`) only for survivors and
    only when a metadata filter or a mapping needs it. Each file comes back enriched.
    """
    compiled = compile_filters(rt.sync.file_filters)
    need_meta = compiled.needs_metadata or mapping_needs_metadata(rt.sync.schema_mapping)

    def evaluate(items: list[FileItem]) -> list[tuple[FileItem, Verdict]]:
        out: list[tuple[FileItem, Verdict]] = [(item, compiled.cheap(item)) for item in items]
        if not need_meta:
            return out
        survivors = [i for i, (_, v) in enumerate(out) if v.ok]
        for start in range(0, len(survivors), ENRICH_CHUNK):
            group = survivors[start : start + ENRICH_CHUNK]
            enriched = rt.provider.enrich([out[i][0] for i in group])
            for i, item in zip(group, enriched, strict=True):
                out[i] = (item, compiled.metadata(item))
        return out

    return evaluate


def object_spec(
    rt: SyncRuntime,
    item: FileItem,
    mapped: Mapped,
    *,
    replaces: str | None,
    interrupted: bool,
) -> ObjectSpec:
    """What the target needs for one file at its listed version."""
    provider = rt.provider
    metadata: dict[str, Any] = {
        **rt.sync.metadata,
        "mixsync": {
            "sync": rt.name,
            "provider": provider.name,
            "connection": rt.sync.connection_id,
            "source_key": item.key,
            "fingerprint": item.fingerprint,
        },
    }
    return ObjectSpec(
        source_ref=rt.source_ref(item.key),
        source_key=item.key,
        fingerprint=item.fingerprint,
        idempotency_key=idempotency_key(rt.name, item.key, item.fingerprint),
        # Stored and printed: a URL made from a setting read from the environment (a Mux
        # stream_base_url, a local root) is masked; fetch_url hands the target the real one.
        uri=redact(item.url or item.key),
        mime_type=mime_type_of(item),
        size=item.size,
        metadata=metadata,
        fields=mapped.fields,
        blobs=mapped.blobs,
        name=item.name,
        # A provider whose URLs a bucket cannot fetch (Drive) hands over bytes instead.
        fetch_url=(lambda: provider.blob_url(item)) if provider.url_fetchable else None,
        open_blob=(
            (lambda: provider.open(item))
            if provider.cheap_open or not provider.url_fetchable
            else None
        ),
        replaces=replaces,
        interrupted=interrupted,
    )
