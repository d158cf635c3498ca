"""The one record that travels provider → filters → mapping → target, and a page of them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mixsync_dagster.clock import utc_from_timestamp, utcnow

__all__ = ["FileItem", "Page", "Skipped", "utc_from_timestamp", "utcnow"]


@dataclass(frozen=True, slots=True)
class FileItem:
    """A listed file. `key` is unique inside a connection; `rel_path` is relative to source_path."""

    key: str
    rel_path: str
    size: int
    modified_at: datetime
    fingerprint: str
    """Moves whenever the content may have changed (etag/version, else size + mtime)."""
    content_type: str | None = None
    etag: str | None = None
    url: str | None = None
    """Where the bucket can fetch the bytes (file://, https://, s3://)."""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.rel_path.rsplit("/", 1)[-1]

    def to_json(self) -> str:
        return json.dumps(
            {
                "key": self.key,
                "rel_path": self.rel_path,
                "size": self.size,
                "modified_at": self.modified_at.isoformat(),
                "fingerprint": self.fingerprint,
                "content_type": self.content_type,
                "etag": self.etag,
                "url": self.url,
                "metadata": self.metadata,
            },
            separators=(",", ":"),
            default=str,
        )

    @classmethod
    def from_json(cls, text: str) -> FileItem:
        d = json.loads(text)
        d["modified_at"] = datetime.fromisoformat(d["modified_at"])
        return cls(**d)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A listed entry the provider will not offer, with the reason a user sees in preview/logs."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing. `next_position` is None when the listing is exhausted."""

    items: list[FileItem]
    skipped: list[Skipped]
    next_position: str | None
