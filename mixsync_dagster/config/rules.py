"""The shape of a sync's rules: `file_filters` and `schema_mapping` (what they mean at run time
lives in core/filters.py and core/mapping.py). Patterns and paths are checked here, with the
code that uses them later."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator

from mixsync_dagster.config.base import _Model
from mixsync_dagster.config.globs import pattern_problem
from mixsync_dagster.config.paths import parse_path

MIME_PATTERN_RE = re.compile(r"^[\w.+-]+/(\*|[\w.+-]+)$")


MetadataOperator = Literal[
    "equals", "not_equals", "contains", "not_contains", "gt", "lt", "gte", "lte", "exists"
]


class MetadataFilter(_Model):
    field: str = Field(min_length=1)
    operator: MetadataOperator
    value: Any = None

    @model_validator(mode="after")
    def _value_needed(self) -> MetadataFilter:
        if self.operator != "exists" and self.value is None:
            raise ValueError(f"operator '{self.operator}' needs a 'value'")
        if (
            self.operator == "exists"
            and self.value is not None
            and not isinstance(self.value, bool)
        ):
            raise ValueError("operator 'exists' takes value true, false or no value")
        return self


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} needs a time zone, e.g. 2025-01-01T00:00:00Z")
    return value


class FileFilters(_Model):
    include_patterns: list[Annotated[str, Field(min_length=1)]] = []
    exclude_patterns: list[Annotated[str, Field(min_length=1)]] = []
    case_sensitive: StrictBool = True
    min_size_bytes: StrictInt | None = Field(default=None, ge=0)
    max_size_bytes: StrictInt | None = Field(default=None, ge=0)
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    mime_types: list[str] = []
    extensions: list[str] = []
    metadata_filters: list[MetadataFilter] = []

    @field_validator("modified_after", "modified_before")
    @classmethod
    def _tz(cls, v: datetime | None, info: Any) -> datetime | None:
        return _aware(v, info.field_name)

    @field_validator("include_patterns", "exclude_patterns")
    @classmethod
    def _globs(cls, v: list[str]) -> list[str]:
        # Compiled now with the code that matches later (config.globs), so a pattern that
        # would silently match nothing is a config error, not an empty sync. Letter case
        # changes no compile error, so the check need not wait for case_sensitive.
        bad = [why for p in v if (why := pattern_problem(p)) is not None]
        if bad:
            raise ValueError("; ".join(bad))
        return v

    @field_validator("mime_types")
    @classmethod
    def _mime(cls, v: list[str]) -> list[str]:
        for m in v:
            if not MIME_PATTERN_RE.match(m):
                raise ValueError(f"'{m}' is not a MIME type like 'video/mp4' or 'video/*'")
        return v

    @field_validator("extensions")
    @classmethod
    def _ext(cls, v: list[str]) -> list[str]:
        out = []
        for e in v:
            e = e.strip().lower()
            if not e or "/" in e or e == ".":
                raise ValueError(f"'{e}' is not a file extension like '.mp4'")
            out.append(e if e.startswith(".") else "." + e)
        return out

    def range_problems(self) -> list[tuple[str, str, str]]:
        """(field, message, fix) for ranges that can never match a file."""
        out = []
        lo, hi = self.min_size_bytes, self.max_size_bytes
        if lo is not None and hi is not None and lo > hi:
            out.append(
                (
                    "file_filters.max_size_bytes",
                    f"max_size_bytes ({hi}) < min_size_bytes ({lo}), so no file matches",
                    "make max_size_bytes >= min_size_bytes",
                )
            )
        a, b = self.modified_after, self.modified_before
        if a is not None and b is not None and a >= b:
            out.append(
                (
                    "file_filters.modified_before",
                    "modified_before is not later than modified_after, so no file matches",
                    "make modified_before later than modified_after",
                )
            )
        return out


class FieldMapping(_Model):
    source: str

    @field_validator("source")
    @classmethod
    def _path(cls, v: str) -> str:
        parse_path(v)
        return v


class MappingSource(_Model):
    type: Literal["metadata", "tag", "filename_regex", "folder_path", "constant", "file"]
    key: str | None = None
    """metadata/tag: the (dotted) key to read."""
    pattern: str | None = None
    """filename_regex: a regex applied to the file name."""
    group: StrictInt | str | None = None
    """filename_regex: which group to take (default: the first group, else the whole match)."""
    default: str | None = None
    """filename_regex (Mixpeek v0.82): the value when the pattern does not match the name."""
    index: StrictInt | None = None
    """folder_path: which folder of the relative path (0 = first, -1 = last)."""
    segment: StrictInt | None = None
    """folder_path (Mixpeek v0.82's name for `index`)."""
    full_path: StrictBool | None = None
    """folder_path (Mixpeek v0.82): true = the whole folder path; false without a segment =
    the immediate parent folder. Neither `index`, `segment` nor `full_path` = the whole path."""
    value: Any = None
    """constant: the value."""

    @model_validator(mode="after")
    def _needs(self) -> MappingSource:
        if self.type in ("metadata", "tag") and not self.key:
            raise ValueError(f"source type '{self.type}' needs 'key'")
        if self.type != "filename_regex" and self.default is not None:
            raise ValueError("'default' belongs to source type 'filename_regex'")
        folder_keys = [k for k in ("index", "segment", "full_path") if getattr(self, k) is not None]
        if self.type != "folder_path" and folder_keys:
            raise ValueError(f"'{folder_keys[0]}' belongs to source type 'folder_path'")
        if self.index is not None and self.segment is not None:
            raise ValueError("give 'segment' or 'index' (the same thing), not both")
        if self.full_path and (self.index is not None or self.segment is not None):
            raise ValueError("full_path: true takes the whole folder path; drop the segment")
        if self.type == "filename_regex":
            if not self.pattern:
                raise ValueError("source type 'filename_regex' needs 'pattern'")
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"pattern is not a valid regular expression: {e}") from e
        if self.type == "file" and self.key:
            parse_path(self.key)
        if self.type == "constant" and self.value is None:
            raise ValueError("source type 'constant' needs 'value'")
        return self


BlobType = Literal["auto", "video", "image", "audio", "text", "pdf", "excel"]


class Mapping(_Model):
    target_type: Literal["field", "blob"] = "field"
    source: MappingSource
    transform: Literal["lowercase", "uppercase", "trim", "json_parse"] | None = None
    required: StrictBool = False
    blob_property: str | None = Field(default=None, min_length=1)
    """blob: the bucket schema property the blob fills (default: the mapping's name)."""
    blob_type: BlobType | None = None
    """blob: how the bucket processes it (default auto: from the MIME type)."""
    mime_type_override: str | None = None
    """blob: the MIME type to declare instead of the detected one."""

    @model_validator(mode="after")
    def _blob_keys(self) -> Mapping:
        if self.target_type != "blob":
            for k in ("blob_property", "blob_type", "mime_type_override"):
                if getattr(self, k) is not None:
                    raise ValueError(f"'{k}' belongs to target_type: blob mappings")
        mime = self.mime_type_override
        if mime is not None and (not MIME_PATTERN_RE.match(mime) or mime.endswith("/*")):
            raise ValueError(f"mime_type_override '{mime}' is not a MIME type like 'video/mp4'")
        return self


class SchemaMapping(_Model):
    field_mappings: dict[str, FieldMapping] = {}
    mappings: dict[str, Mapping] = {}

    @model_validator(mode="after")
    def _no_clash(self) -> SchemaMapping:
        both = set(self.field_mappings) & set(self.mappings)
        if both:
            raise ValueError(f"target(s) {sorted(both)} mapped twice (field_mappings and mappings)")
        return self
