"""Schema mapping: carry provider metadata onto bucket fields.

Two forms, both accepted together: the feature page's `field_mappings` (dotted paths into the
file record) and the reference's richer `mappings` (typed sources, transforms, `required`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mixsync_dagster.config import Mapping, SchemaMapping
from mixsync_dagster.config.paths import MISSING, parse_path, resolve
from mixsync_dagster.core.records import FileItem
from mixsync_dagster.errors import PermanentFileError
from mixsync_dagster.redaction import redact
from mixsync_dagster.targets.base import BlobSpec


@dataclass(frozen=True, slots=True)
class Mapped:
    fields: dict[str, Any]
    blobs: tuple[BlobSpec, ...] = ()
    """The `target_type: blob` mappings' values, as extra blobs for the target."""


def file_record(item: FileItem) -> dict[str, Any]:
    """The record that mapping paths address (`metadata.*`, `name`, `path`, ...)."""
    from mixsync_dagster.core.filters import mime_type_of

    return {
        "metadata": item.metadata,
        "name": item.name,
        "path": item.rel_path,
        "key": item.key,
        "size": item.size,
        "modified_at": item.modified_at.isoformat(),
        "mime_type": mime_type_of(item),
        "etag": item.etag,
        "fingerprint": item.fingerprint,
    }


_TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "lowercase": lambda v: v.lower() if isinstance(v, str) else v,
    "uppercase": lambda v: v.upper() if isinstance(v, str) else v,
    "trim": lambda v: v.strip() if isinstance(v, str) else v,
    "json_parse": lambda v: json.loads(v) if isinstance(v, str | bytes) else v,
}


def mapping_needs_metadata(sm: SchemaMapping) -> bool:
    """True when a mapping reads provider metadata (which may cost a call per file)."""
    if any(parse_path(fm.source)[0] == "metadata" for fm in sm.field_mappings.values()):
        return True
    return any(
        m.source.type in ("metadata", "tag")
        or (m.source.type == "file" and (m.source.key or "").startswith("metadata"))
        for m in sm.mappings.values()
    )


def compile_mapping(sm: SchemaMapping) -> Callable[[FileItem], Mapped]:
    """Turn a SchemaMapping into one function FileItem -> Mapped (raises PermanentFileError)."""
    paths = {target: parse_path(fm.source) for target, fm in sm.field_mappings.items()}
    rich = dict(sm.mappings)
    regexes = {
        t: re.compile(m.source.pattern or "")
        for t, m in rich.items()
        if m.source.type == "filename_regex"
    }

    def apply(item: FileItem) -> Mapped:
        if not paths and not rich:
            return Mapped({})
        record = file_record(item)
        fields: dict[str, Any] = {}
        blobs: list[BlobSpec] = []
        for target, steps in paths.items():
            value = resolve(record, steps)
            if value is not MISSING and value is not None:
                fields[target] = value
        for target, m in rich.items():
            value = _source_value(m, item, record, regexes.get(target))
            if value is not MISSING and value is not None and m.transform:
                try:
                    value = _TRANSFORMS[m.transform](value)
                except (ValueError, TypeError) as e:
                    if m.required:
                        raise PermanentFileError(
                            f"schema_mapping '{target}': {m.transform} failed on {value!r}: {e}"
                        ) from None
                    value = MISSING
            if value is MISSING or value is None:
                if m.required:
                    raise PermanentFileError(
                        f"schema_mapping '{target}' is required but its source "
                        f"({m.source.type} {m.source.key or m.source.pattern or ''}) has no value"
                    )
                continue
            if m.target_type == "blob":
                blobs.append(
                    BlobSpec(
                        property=m.blob_property or target,
                        value=str(value),
                        blob_type=m.blob_type,
                        mime_type_override=m.mime_type_override,
                    )
                )
            else:
                fields[target] = value
        return Mapped(fields, tuple(blobs))

    return apply


def _regex_value(group: int | str | None, match: re.Match[str] | None) -> Any:
    if match is None:
        return MISSING
    if group is not None:
        try:
            value = match.group(group)
        except IndexError:
            return MISSING
        return MISSING if value is None else value
    return match.group(1) if match.groups() else match.group(0)


def _source_value(m: Mapping, item: FileItem, record: dict[str, Any], rx: Any) -> Any:
    src = m.source
    if src.type == "metadata":
        return resolve(item.metadata, [s for s in (src.key or "").split(".") if s])
    if src.type == "tag":
        tags = item.metadata.get("tags")
        if isinstance(tags, dict):
            return tags.get(src.key, MISSING)
        return MISSING
    if src.type == "filename_regex":
        value = _regex_value(src.group, rx.search(item.name))
        return src.default if value is MISSING and src.default is not None else value
    if src.type == "folder_path":
        folders = item.rel_path.split("/")[:-1]
        segment = src.segment if src.segment is not None else src.index
        if segment is None and src.full_path is False:
            segment = -1  # v0.82: no segment and full_path false = the immediate parent
        if segment is None:
            return "/".join(folders) if folders else MISSING
        try:
            return folders[segment]
        except IndexError:
            return MISSING
    if src.type == "constant":
        return src.value
    # "file": the file itself (its URL), or a named field of the file record.
    if src.key:
        return resolve(record, parse_path(src.key))
    # The same masking as the object's uri (core.judge), so "the file itself" still compares
    # equal to it and no URL made from a setting read from the environment is stored.
    return redact(item.url) if item.url else MISSING
